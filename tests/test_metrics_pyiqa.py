"""Any pyiqa metric by name (``pyiqa:<name>``, dpir.metrics.pyiqa_any): scored numbers for weight-free
ones, pyiqa's direction and FR/NR, n/a with the file and the fix for one whose weights are not cached
(never a download), and torch-free name checks for validation."""
from __future__ import annotations

import math
import socket

import numpy as np
import pytest
import torch

from dpir.errors import DpirError, MetricUnavailable
from dpir.metrics import METRICS, display_digits, evaluate, get_metric, lower_is_better, unit_of, unknown_metric

PYIQA_VERSION = "0.1.16"   # pinned in pyproject.toml; the convention string names it


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty torch hub cache, and a list of every network connection anyone attempted (refused)."""
    attempts = []

    def refuse(sock, address, *args, **kwargs):
        attempts.append(address)
        raise OSError("test: network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub", attempts, refuse


def images(b=2, size=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    ref = torch.nn.functional.avg_pool2d(torch.rand(b, 3, size, size, generator=g), 5, 1, 2)
    out = ((ref + 0.05 * torch.randn(ref.shape, generator=g)).clamp(0, 1) * 255).round() / 255
    return out, (ref * 255).round() / 255


# ---------------------------------------------------------------------------------------------
# names, direction, display (torch-free data)


def test_pyiqa_names_are_presets_with_pyiqa_direction_and_display():
    for good in ("pyiqa:niqe", "pyiqa:dists", "pyiqa:fsim", "pyiqa:psnr", "pyiqa:lpips-vgg+"):
        assert good in METRICS, good
    # not names: unknown, set-level (over a folder of images), or not spelled as pyiqa's
    for bad in ("pyiqa:nope", "pyiqa:fid", "pyiqa:inception_score", "pyiqa:", "niqe"):
        assert bad not in METRICS, bad
    # iterating lists the registered presets only
    assert not any(n.startswith("pyiqa:") for n in METRICS)
    # direction from pyiqa's table: NIQE, DISTS, GMSD lower; FSIM, PSNR higher
    assert [lower_is_better(n) for n in ("pyiqa:niqe", "pyiqa:dists", "pyiqa:gmsd", "pyiqa:fsim", "pyiqa:psnr")] == [
        True, True, True, False, False]
    assert (display_digits("pyiqa:psnr"), unit_of("pyiqa:psnr")) == (2, "dB")
    assert (display_digits("pyiqa:dists"), unit_of("pyiqa:dists")) == (4, "")


def test_unknown_pyiqa_name_is_one_line_with_close_matches():
    e = unknown_metric("pyiqa:nique")
    assert str(e) == ("unknown metric preset 'pyiqa:nique': pyiqa has no per-image metric 'nique'. Did you mean "
                      "'pyiqa:unique', 'pyiqa:niqe', 'pyiqa:ilniqe'? pyiqa's names: "
                      "python -c \"import pyiqa; print(pyiqa.list_models())\"")
    assert "\n" not in str(unknown_metric("pyiqa:nope"))
    assert "whole set of images" in str(unknown_metric("pyiqa:fid"))
    with pytest.raises(DpirError, match="pyiqa has no per-image metric 'nope'"):
        get_metric("pyiqa:nope")
    with pytest.raises(DpirError, match="has no option 'window'"):
        get_metric("pyiqa:psnr", window=3)


def test_pyiqa_names_are_checked_without_torch(tmp_path):
    """The name table is read from pyiqa's source with ast: no pyiqa, no torch (tests/torch_block.py)."""
    from torch_block import run_without_torch, torch_chain

    code = ("import sys\n"
            "from dpir.metrics import METRICS, lower_is_better, unknown_metric\n"
            "print('pyiqa:niqe' in METRICS, 'pyiqa:nope' in METRICS, lower_is_better('pyiqa:niqe'))\n"
            "print(unknown_metric('pyiqa:nope'))\n"
            "assert 'torch' not in sys.modules and 'pyiqa' not in sys.modules\n")
    r = run_without_torch(["-c", code], tmp_path)
    assert torch_chain(r.stderr) is None and r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert lines[0] == "True False True"
    assert lines[1].startswith("unknown metric preset 'pyiqa:nope': pyiqa has no per-image metric 'nope'. "
                               "Did you mean 'pyiqa:"), lines[1]
    assert len(lines) == 2


def _validate(tmp_path, metrics):
    from torch_block import run_without_torch, torch_chain

    code = ("import sys\n"
            "from dpir.config import load_config\n"
            "from dpir.errors import DpirError\n"
            "try:\n"
            f"    load_config(['config/config.yaml'], {{'tasks': {{'sr': {{'metrics': {metrics!r}}}}}}})\n"
            "    print('valid')\n"
            "except DpirError as e:\n"
            "    print(e)\n"
            "assert 'torch' not in sys.modules\n")
    r = run_without_torch(["-c", code], tmp_path)
    assert torch_chain(r.stderr) is None and r.returncode == 0, r.stderr[-2000:]
    return r.stdout.splitlines()


def test_config_with_pyiqa_metrics_validates_without_torch(tmp_path):
    assert _validate(tmp_path, ["psnr_y", "pyiqa:niqe", "pyiqa:dists", "pyiqa:fsim"]) == ["valid"]
    lines = _validate(tmp_path, ["psnr_y", "pyiqa:nope"])
    assert len(lines) == 1 and lines[0].startswith("config key 'tasks.sr.metrics[1]': unknown metric preset 'pyiqa:nope'")


def test_unknown_pyiqa_name_in_config_suggests_pyiqa_names(tmp_path):
    lines = _validate(tmp_path, ["psnr_y", "pyiqa:nique"])
    assert lines == ["config key 'tasks.sr.metrics[1]': " + str(unknown_metric("pyiqa:nique"))]


# ---------------------------------------------------------------------------------------------
# scores of metrics that need no weights


def test_pyiqa_psnr_matches_an_independent_psnr_with_the_crop(offline):
    out, ref = images(2, 40)
    m = get_metric("pyiqa:psnr", crop_border=3)
    got = evaluate([m], out, ref)["pyiqa:psnr"]
    a, b = out.double().numpy()[..., 3:-3, 3:-3], ref.double().numpy()[..., 3:-3, 3:-3]
    mse = ((a - b) ** 2).reshape(2, -1).mean(axis=1)
    want = 10 * np.log10(1.0 / (mse + 1e-8))      # pyiqa's psnr: data range 1, eps 1e-8, RGB
    assert got.dtype == torch.float64 and got.shape == (2,)
    assert np.allclose(got.numpy(), want, rtol=0, atol=2e-4), (got, want)
    # and it is the harness's own RGB PSNR (float64, 8-bit levels) up to float32
    assert torch.allclose(got, get_metric("psnr_rgb", crop_border=3)(out, ref), rtol=0, atol=2e-4)
    assert m.convention == (f"pyiqa {PYIQA_VERSION} 'psnr' with pyiqa's default options, full-reference, "
                            "input RGB in [0, 1] float32, border crop 3")
    assert offline[1] == []


@pytest.mark.parametrize("name, lower", [("gmsd", True), ("fsim", False)])
def test_direction_is_pyiqa_own(offline, name, lower):
    import pyiqa

    m = get_metric(f"pyiqa:{name}")
    assert m.lower_better is lower is pyiqa.create_metric(name, device=torch.device("cpu")).lower_better
    out, ref = images(1, 40)
    # the same number as the registered preset of that name (both are pyiqa's defaults, uncropped)
    assert torch.equal(m(out, ref), get_metric(name)(out, ref))
    worse = (out + 0.1 * (torch.rand(out.shape, generator=torch.Generator().manual_seed(1)) - 0.5)).clamp(0, 1)
    better, bad = float(m(out, ref)[0]), float(m(worse, ref)[0])
    assert (better < bad) if lower else (better > bad)


def test_no_reference_metric_ignores_the_reference(offline):
    m = get_metric("pyiqa:piqe", crop_border=2)
    assert not m.needs_reference and m.lower_better is True
    out, ref = images(2, 48)
    s = m(out, None)
    assert s.shape == (2,) and bool(torch.isfinite(s).all())
    assert torch.equal(evaluate([m], out, ref)["pyiqa:piqe"], s)
    assert torch.equal(m(out, torch.zeros_like(ref)), s)
    assert "no-reference (the target is not used)" in m.convention


def test_metric_error_is_one_line(offline):
    out, ref = images(1, 32)
    with pytest.raises(DpirError, match=r"pyiqa's 'ms_ssim' failed on 32x32 images after the border crop "
                                        r"\(RuntimeError: .*\); use larger images"):
        get_metric("pyiqa:ms_ssim")(out, ref)


# ---------------------------------------------------------------------------------------------
# weights that are not cached: n/a, the file, the fix, no download


def test_weights_not_cached_is_unavailable_with_file_and_fix(offline):
    hub, attempts, refuse = offline
    m = get_metric("pyiqa:niqe")
    with pytest.raises(MetricUnavailable) as e:
        m.check_available()
    path = hub / "pyiqa" / "niqe_modelparameters.mat"
    url = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/niqe_modelparameters.mat"
    assert e.value.metric == "pyiqa:niqe"
    assert e.value.fix == f"curl -L --create-dirs -o {path} {url}"
    assert e.value.reason.startswith(f"pyiqa {PYIQA_VERSION} 'niqe' reads the file {path} (from {url}), which is "
                                     "not cached, and metrics never download")
    assert "\n" not in str(e.value)
    out, _ = images(1, 32)
    with pytest.raises(MetricUnavailable):      # scoring raises the same, and downloads nothing either
        m(out)
    assert not path.exists() and attempts == []
    assert [f for f in hub.rglob("*") if f.is_file()] == []     # not even a partial download
    assert socket.socket.connect is refuse        # the guard put the test's socket back


def test_a_file_of_ours_names_dpir_fetch(offline):
    """pyiqa's LPIPS reads torchvision's AlexNet, the very file `dpir fetch lpips_alex` fetches."""
    hub, attempts, _ = offline
    with pytest.raises(MetricUnavailable) as e:
        get_metric("pyiqa:lpips").check_available()
    assert e.value.fix == "dpir fetch lpips_alex"
    assert str(hub / "checkpoints" / "alexnet-owt-7be5be79.pth") in e.value.reason
    assert attempts == []


def test_score_run_records_na_and_the_report_renders_the_columns(tmp_path, offline):
    """End to end through `dpir score` and the report's table: numbers for pyiqa:psnr, n/a with the
    footnote for pyiqa:niqe (empty cache), the arrows from pyiqa's direction."""
    from dpir.data.prepare import prepare
    from dpir.report.tables import build_table
    from dpir.restore import restore_dataset
    from dpir.score import score_run
    from helpers import base_config

    attempts = offline[1]
    cfg = base_config(tmp_path, device="cpu", threads=1)
    cfg["tasks"]["sr"]["metrics"] = ["psnr_rgb", "pyiqa:psnr", "pyiqa:niqe"]
    prepare(cfg, "sr", "bundled", splits=("test",))
    restore_dataset(cfg, "sr", "bundled", "bicubic", 0, progress=False)
    rec = score_run(cfg, "sr", "bundled", "bicubic", 0)
    ours, theirs, niqe = (rec["metrics"][n] for n in ("psnr_rgb", "pyiqa:psnr", "pyiqa:niqe"))
    assert theirs["available"] and theirs["lower_better"] is False and theirs["per_image"].keys() == ours["per_image"].keys()
    for k, v in theirs["per_image"].items():
        assert math.isclose(v, ours["per_image"][k], abs_tol=2e-4), (k, v, ours["per_image"][k])
    assert niqe["available"] is False and niqe["lower_better"] is True
    assert niqe["fix"].startswith("curl -L --create-dirs -o ") and "niqe_modelparameters.mat" in niqe["reason"]
    t = build_table([rec], "sr_bundled", "SR", ["psnr_rgb", "pyiqa:psnr", "pyiqa:niqe"])
    md = t.markdown()
    assert "pyiqa:psnr ↑" in md and "pyiqa:niqe ↓" in md
    assert f"{theirs['mean']:.2f}" in md
    assert f"`pyiqa:niqe`: {niqe['reason']} Fix: `{niqe['fix']}`" in md
    assert attempts == []
