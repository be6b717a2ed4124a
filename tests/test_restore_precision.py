"""Restore precision (a method entry's ``precision`` and ``channels_last``, dpir.restore): bf16 autocast on
the CPU for one restore of every registered method kind stays within a stated tolerance of fp32, and an
unsupported setting (fp16 on the CPU) is one line naming the key before anything is written.

Tolerance, measured on this project's CPU (oneDNN bf16 kernels) for the tiny cases of
tests/test_method_contract.py at 16x16 observations: the largest max-abs difference to fp32 was 0.029
(SRDiff: 101 chained steps), the lowest PSNR between the two [0, 1]-clamped outputs 49.7 dB
(burst_bicubic's demosaic); the bounds below (max abs <= 0.05, PSNR >= 40 dB) leave that margin.
"""
from __future__ import annotations

import json
import math

import pytest
import torch

from dpir.methods import METHODS
from dpir.restore import _restore_one
from helpers import base_config, write_yaml
from test_method_contract import CASES, _build_case, gens, observations

MAX_ABS = 0.05
MIN_PSNR_DB = 40.0
CPU = torch.device("cpu")


def restore(method, task, precision):
    y, meta = observations(task, 1, size=(16, 16))
    extra = {} if meta is None else {"meta": meta}
    x, _ = _restore_one(method, y, gens(0, ["img0"]), extra, CPU, False, precision)   # as `dpir restore` calls it
    return x


def test_every_registered_kind_is_covered():
    assert {c.kind for c in CASES.values()} == set(METHODS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bf16_restore_is_within_tolerance_of_fp32(name, tmp_path):
    method, task = _build_case(CASES[name], tmp_path)
    ref = restore(method, task, "fp32")
    low = restore(method, task, "bf16")
    assert low.dtype == torch.float32 and low.shape == ref.shape and low.is_contiguous()
    diff = (low - ref).abs().max().item()
    assert diff <= MAX_ABS, f"{name}: max abs difference {diff:.4g} to fp32"
    mse = ((low.clamp(0, 1) - ref.clamp(0, 1)) ** 2).mean().item()
    assert mse == 0 or 10 * math.log10(1 / mse) >= MIN_PSNR_DB, f"{name}: PSNR to fp32 {10 * math.log10(1 / mse):.1f} dB"
    if method.nfe_groups():        # the networks really ran in bf16 (an fp32 run would be bit-identical)
        assert diff > 0
    assert torch.equal(ref, restore(method, task, "fp32"))     # fp32 is untouched by the precision wiring


def test_channels_last_restore_equals_the_default_layout(tmp_path):
    method, task = _build_case(CASES["backbone"], tmp_path)
    y, _ = observations(task, 1, size=(16, 16))
    ref, _ = _restore_one(method, y, gens(0, ["img0"]), {}, CPU, False)
    for module in method.modules().values():     # as dpir.restore does for channels_last: true
        module.to(memory_format=torch.channels_last)
    x, _ = _restore_one(method, y.contiguous(memory_format=torch.channels_last), gens(0, ["img0"]), {}, CPU, False)
    assert x.is_contiguous()
    torch.testing.assert_close(x, ref, rtol=0, atol=1e-5)     # kernels of another layout: last-bit rounding


def _cli_config(tmp_path, **bicubic):
    cfg = base_config(tmp_path, device="cpu", threads=1)
    cfg["tasks"]["sr"]["methods"]["bicubic"].update(bicubic)
    cfg.pop("_sources", None)
    return write_yaml(tmp_path / "cfg.yaml", cfg)


def test_fp16_on_cpu_is_one_line_through_dpir_restore_before_anything_is_written(tmp_path, capsys):
    from dpir import paths
    from dpir.cli import main

    path = _cli_config(tmp_path, precision="fp16")
    rc = main(["restore", "--config", str(path), "--task", "sr", "--dataset", "bundled", "--method", "bicubic",
               "--seed", "0", "-q"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err == ("dpir: error: config key tasks.sr.methods.bicubic.precision is fp16, which needs a CUDA device "
                   "(this job runs on cpu); set tasks.sr.methods.bicubic.precision: bf16 or fp32")
    cfg = base_config(tmp_path, device="cpu")
    assert not paths.restored_dir(cfg, "sr", "bundled", "bicubic", 0).parent.exists()


def test_bf16_channels_last_run_records_its_setting_and_default_run_json_has_no_new_key(tmp_path):
    from dpir.data.prepare import prepare
    from dpir.restore import restore_dataset

    cfg = base_config(tmp_path, device="cpu", threads=1)
    prepare(cfg, "sr", "bundled", splits=("test",))
    base = restore_dataset(cfg, "sr", "bundled", "bicubic", 0, progress=False)
    assert "precision" not in base and "precision" not in base["method_config"]
    cfg["tasks"]["sr"]["methods"]["bicubic"].update(precision="bf16", channels_last=True)
    rec = restore_dataset(cfg, "sr", "bundled", "bicubic", 0, progress=False)
    assert rec["method_config"]["precision"] == "bf16" and rec["method_config"]["channels_last"] is True
    assert rec["method_config_hash"] != base["method_config_hash"] and rec["run_key"] != base["run_key"]
    assert list(rec) == list(base)         # the setting lives in method_config: run.json keeps its keys
    assert json.loads(json.dumps(rec))["images"] == base["images"]
