"""DVC on top of Snakemake: dvc.yaml is generated from the config and current; `dvc repro` reruns only
the stages whose code changed (end to end in a temporary git repository, tiny config)."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import gen_dvc

from dpir.report.paper_cost import paper_cost_path
from dpir.tflops import PAPER_TABLE9_FORMAT

# Two methods in a task of their own (a config merge cannot delete the default config's methods): the
# one whose code the test edits (InDI, a trained network) and one that must not rerun (bicubic, no network;
# `test_stage_dependencies_follow_imports` checks that no other method's or network's stage lists InDI's
# code).  A small InDI net keeps its `tflops` count at 1280x720 (part of the report stage) short.
TINY = {
    "description": "DVC test: two methods",
    "enabled_tasks": ["tiny"],
    "run_ablations": False,
    # the exact world only: its learned rows (tests/test_gaussian_learned.py) would run twice here, ~30 s each
    "gaussian": {"learned": None},
    "networks": {"indi": {"task": "tiny", "kwargs": {"hidden": 4, "dim_mults": [1, 2]}}},
    "tasks": {"tiny": {"kind": "sr", "scale": 4, "degradation": {"name": "bicubic"}, "test_datasets": ["bundled"],
                       "seeds": [0], "crop_border": 4, "metrics": ["psnr_y", "ssim_y"],
                       "methods": {"bicubic": {"kind": "bicubic"},
                                   "indi": {"kind": "indi", "network": "indi", "steps": 2}}}},
}


def test_committed_dvc_yaml_is_current():
    # (gen_dvc parses each module once per run: its _imports is memoised)
    assert gen_dvc.main(["--check"]) == 0, "run `python scripts/gen_dvc.py` and commit dvc.yaml"


def test_stage_dependencies_follow_imports():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    with_indi_sampler = {s for s, v in stages.items() if "baselines/indi/sampler.py" in v.get("deps", [])}
    assert {"train_indi", "sr_indi"} <= with_indi_sampler      # train imports sampler.degrade
    # ... and nothing but InDI's stages and the Gaussian world's and the report's (it trains InDI in the world)
    assert all("indi" in s or s in ("gaussian", "report") for s in with_indi_sampler)
    assert "baselines/srdiff/sampler.py" in stages["sr_srdiff"]["deps"]
    assert not any(d.startswith("baselines/") for d in stages["sr_dpir_jump"]["deps"])
    assert "dpir/methods/dpir.py" in stages["sr_dpir_jump"]["deps"] and "dpir/nets/fusion.py" in stages["sr_dpir_jump"]["deps"]
    # a method stage forces exactly its own Snakemake jobs and depends on its networks' folders
    assert stages["sr_indi"]["cmd"].endswith("--forcerun restore restore_shard merge_shards score")
    assert "results/default/networks/indi" in stages["sr_indi"]["deps"]
    assert {"results/default/networks/swinir_sr", "results/default/networks/mirnet_s"} <= set(stages["train_fusion_sr"]["deps"])
    assert stages["sr_indi"]["params"] == [{"config/config.yaml": ["tasks.sr.methods.indi", "tasks.sr.scale",
                                                                   "tasks.sr.metrics", "tasks.sr.crop_border",
                                                                   "tasks.sr.seeds"]}]
    assert all(o[k]["persist"] for s in stages.values() for o in s["outs"] for k in o)
    assert stages["report"]["metrics"] == [{"results/default/metrics.json": {"cache": False, "persist": True}}]


def test_metrics_json_from_tables(tmp_path):
    (tmp_path / "sr_bundled.csv").write_text("method,label,psnr_y,ssim_y\nbicubic,Bicubic,24.5,0.71\nindi,InDI,,0.8\n")
    out = gen_dvc.metrics(str(tmp_path), str(tmp_path / "m" / "metrics.json"))
    assert out == {"sr_bundled": {"bicubic": {"psnr_y": 24.5, "ssim_y": 0.71}, "indi": {"ssim_y": 0.8}}}
    assert (tmp_path / "m" / "metrics.json").exists()


def _ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.mark.slow
def test_dvc_repro_reruns_only_what_changed(tmp_path, monkeypatch):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file() and not f.startswith(("results/", "data/")):
            (repo / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, repo / f)
    (repo / "config" / "dvc_tiny.yaml").write_text(yaml.safe_dump(TINY))
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(repo),
           "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1", "GIT_CONFIG_NOSYSTEM": "1"}

    def run(*cmd, timeout=300, stdout_only=False):
        r = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, check=False, timeout=timeout)
        assert r.returncode == 0, f"{cmd}: {(r.stdout + r.stderr)[-4000:]}"
        return r.stdout if stdout_only else r.stdout + r.stderr

    # `python scripts/gen_dvc.py -c ... -c ...` run in the copy, in this process (no interpreter start);
    # the memoised imports are keyed by path, so the copy's files are parsed afresh
    monkeypatch.setattr(gen_dvc, "ROOT", repo)
    assert gen_dvc.main(["-c", "config/config.yaml", "-c", "config/test.yaml", "-c", "config/dvc_tiny.yaml"]) == 0
    run("git", "init", "-q")
    if not (repo / ".dvc").is_dir():  # the repository ships its .dvc/ folder; a bare copy needs init
        run(sys.executable, "-m", "dvc", "init", "-q")
    # Table 9 at paper size (rule paper_table9, ~40 s of META counting over config/paper.yaml) is an input
    # of the report that no stage here changes: a valid count file, newer than paper.yaml, stands in for it
    # (tests/test_paper_cost.py checks the count and `dpir plan --table9`).
    t9 = paper_cost_path({"out": str(repo / "results" / "test")})    # config/test.yaml: name test
    t9.parent.mkdir(parents=True)
    t9.write_text(json.dumps({"format": PAPER_TABLE9_FORMAT, "width": 1280, "height": 720, "tasks": [],
                              "config_sources": [], "rows": [], "count_seconds": 0}))
    first = _ran(run(sys.executable, "-m", "dvc", "repro"))
    # + the protocol table of the restored PNGs and the exact Gaussian world (config/test.yaml: 8x8)
    assert first == {"prepare_tiny_bundled", "train_indi", "tiny_bicubic", "tiny_indi", "protocols", "gaussian", "report"}
    assert (repo / "results" / "test" / "report.md").exists()
    assert not (repo / "results" / "test" / "logs" / "paper_table9.log").exists()      # the stand-in was used
    shown = run(sys.executable, "-m", "dvc", "metrics", "show", "--md")
    assert "psnr_y" in shown and "indi" in shown
    plots = json.loads(run(sys.executable, "-m", "dvc", "plots", "show", "--json", stdout_only=True))
    values = plots["data"]["results/test/tables/tiny_bundled.csv"][0]["content"]["data"]["values"]
    assert {v["method"] for v in values} == {"bicubic", "indi"}

    with open(repo / "baselines" / "indi" / "sampler.py", "a") as fh:
        fh.write("\n# an edit that DVC must notice\n")
    # InDI's stages, and the Gaussian world's: its code imports InDI's package (its learned rows, off here, train
    # InDI in the world), and a DVC stage's dependencies are the code it imports, whatever the config switches on
    assert _ran(run(sys.executable, "-m", "dvc", "repro")) == {"train_indi", "tiny_indi", "gaussian", "protocols",
                                                              "report"}
    assert _ran(run(sys.executable, "-m", "dvc", "repro")) == set()
