"""README "Evaluate your own method": every snippet of the section is the real thing.

The YAML snippets are read out of README.md, merged over the default config and validated (so a key the
README shows is a key the harness reads); the rows the default config ships are the README's rows
verbatim; the HAT checkpoint of route 1 is detected and restored; the score-folder command line runs
as printed."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import numpy as np
import torch
import yaml
from helpers import ROOT
from PIL import Image

from dpir.config import deep_merge, load_config, validate_config

SECTION = "## Evaluate your own method"


def section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return text[start:end]


def blocks(lang: str) -> list[str]:
    return [textwrap.dedent(b) for b in re.findall(rf"```{lang}\n(.*?)```", section(), flags=re.S)]


def default_config() -> dict:
    return load_config([str(ROOT / "config" / "config.yaml")])


def test_the_section_has_the_five_routes():
    s = section()
    for kind in ("kind: checkpoint", "kind: python", "kind: outputs", "dpir score-folder", "pyiqa:"):
        assert kind in s, kind
    assert len(blocks("yaml")) == 5 and len(blocks("bash")) == 1


def test_each_yaml_snippet_validates_over_the_default_config():
    base = default_config()
    for snippet in blocks("yaml"):
        doc = yaml.safe_load(snippet)
        if "tasks" not in doc and "networks" not in doc:
            if "metrics" in doc:                  # a task's metrics line
                doc = {"tasks": {"sr": doc}}
            else:                                 # a method row of tasks.sr.methods
                doc = {"tasks": {"sr": {"methods": doc}}}
        validate_config(deep_merge(base, doc))


def test_the_default_configs_rows_are_the_readmes():
    methods = default_config()["tasks"]["sr"]["methods"]
    for snippet in blocks("yaml"):
        doc = yaml.safe_load(snippet)
        for name in ("byo_sharp", "lanczos"):
            if name in doc:
                shown = doc[name]
                assert {k: methods[name][k] for k in shown} == shown, name


def test_route_one_detects_and_restores_the_hat_checkpoint(tmp_path):
    from spandrel.architectures.HAT.__arch.HAT import HAT

    from dpir.methods.base import BuildContext
    from dpir.methods.checkpoint import build

    row = yaml.safe_load(blocks("yaml")[0])["tasks"]["sr"]["methods"]["my_hat"]
    torch.manual_seed(0)
    net = HAT(upscale=4, in_chans=3, img_size=8, window_size=4, compress_ratio=2, squeeze_factor=2, depths=[1],
              embed_dim=8, num_heads=[2], mlp_ratio=2.0, upsampler="pixelshuffle", resi_connection="1conv").eval()
    path = tmp_path / "HAT_SRx4.pth"
    torch.save({"params_ema": net.state_dict()}, path)
    ctx = BuildContext(task_name="sr", task={"kind": "sr", "scale": 4}, networks_dir="unused",
                       device=torch.device("cpu"), config={"out": str(tmp_path)})
    m = build({**row, "path": str(path)}, ctx)
    assert m.architecture.startswith("HAT x4")
    y = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(m.restore(y), net(y))          # 16 is a multiple of 16: no padding


def test_the_score_folder_command_runs_as_printed(tmp_path):
    (cmd,) = [line for b in blocks("bash") for line in b.splitlines() if line.startswith("dpir score-folder")]
    rng = np.random.default_rng(0)
    for folder, noise in (("hr", 0), ("restored", 8)):
        (tmp_path / folder).mkdir()
        for i in range(2):
            img = rng.integers(0, 256, (24, 24, 3)) if folder == "hr" else None
            if img is None:
                gt = np.asarray(Image.open(tmp_path / "hr" / f"im{i}.png")).astype(int)
                img = np.clip(gt + rng.integers(-noise, noise + 1, gt.shape), 0, 255)
            Image.fromarray(img.astype(np.uint8)).save(tmp_path / folder / f"im{i}.png")
    argv = [sys.executable, "-m", "dpir", *cmd.split()[1:]]
    r = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads((tmp_path / "scores.json").read_text())
    assert out["crop_border"] == 4 and set(out["presets"]) == {"psnr_y", "ssim_y"}
    assert "psnr_y" in r.stdout
    assert 20 < out["means"]["psnr_y"] < 60


def test_the_python_row_builds_from_any_working_directory(tmp_path, monkeypatch):
    """``{root}`` is the checkout, so the shipped row works where Snakemake's --directory puts the job."""
    from dpir.methods.base import BuildContext
    from dpir.methods.python import build

    row = default_config()["tasks"]["sr"]["methods"]["byo_sharp"]
    monkeypatch.chdir(tmp_path)
    ctx = BuildContext(task_name="sr", task={"kind": "sr", "scale": 4}, networks_dir="unused",
                       device=torch.device("cpu"), config={"out": "results"})
    m = build(row, ctx)
    assert m.restore(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)
