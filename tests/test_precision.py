"""Precision of a job (dpir.precision): bf16 autocast on the CPU for a training step, fp16 and
unsupported settings refused with one line, TF32 and channels_last switches."""
import pytest
import torch

import dpir.precision as P
from dpir import paths
from dpir.checkpoint import load_network
from dpir.data.prepare import prepare
from dpir.errors import DpirError
from dpir.train.loop import train_network
from helpers import base_config

NET = "mirnet_s"
# bf16 keeps 8 bits of mantissa (relative rounding 2^-9 = 0.2 %) in every conv of the forward pass, and
# the rounding errors of the ~10^4 outputs average out in the MSE: measured here 1.4e-4 relative
# (0.083968 against 0.083956 in fp32); the tolerance leaves a factor ~14
BF16_RTOL = 2e-3


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prec")
    cfg = base_config(tmp, device="cpu", threads=1, networks={NET: {"train": {"steps": 1, "batch": 2, "patch": 32}}})
    prepare(cfg, "sr", "bundled", splits=("train",))
    return cfg


def run(cfg, tag, **train):
    c = dict(cfg, out=f"{cfg['out']}_{tag}")
    c["networks"] = {**cfg["networks"], NET: {**cfg["networks"][NET],
                                              "train": {**cfg["networks"][NET]["train"], **train}}}
    rec = train_network(c, NET, progress=False)
    return rec, load_network(paths.network_dir(c, NET)).state_dict()


def test_bf16_training_step_on_cpu_is_close_to_fp32(cfg):
    ref, w32 = run(cfg, "fp32")
    rec, w16 = run(cfg, "bf16", precision="bf16")
    assert rec["precision"] == "bf16" and "precision" not in ref
    assert torch.isfinite(torch.tensor(rec["final_loss"]))
    assert rec["final_loss"] != ref["final_loss"]                    # it did run in bf16
    assert abs(rec["final_loss"] - ref["final_loss"]) <= BF16_RTOL * ref["final_loss"]
    assert all(w16[k].dtype == w32[k].dtype == torch.float32 for k in w32 if w32[k].is_floating_point())
    cl, wcl = run(cfg, "cl", channels_last=True)                     # channels_last: same numbers in fp32
    assert abs(cl["final_loss"] - ref["final_loss"]) <= 1e-5 * ref["final_loss"]


def test_fp16_on_cpu_is_one_line_naming_the_key(cfg):
    with pytest.raises(DpirError, match=r"^config key train.precision is fp16, which needs a CUDA device \(this "
                                        r"job runs on cpu\); set train.precision: bf16 or fp32$"):
        run(cfg, "fp16", precision="fp16")
    assert not paths.network_file(dict(cfg, out=f"{cfg['out']}_fp16"), NET).exists()


def test_bf16_on_a_gpu_without_it_and_unknown_precision(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla V100")
    with pytest.raises(DpirError, match=r"^config key precision is bf16, which this GPU \(Tesla V100\) does not "
                                        r"support; set precision: fp16 or fp32$"):
        P.check_precision("bf16", "cuda")
    assert P.check_precision("fp16", "cuda") == "fp16" and P.check_precision("bf16", "cpu") == "bf16"
    with pytest.raises(DpirError, match=r"config key methods.x.precision must be one of fp32, bf16, fp16, got 'fp8'"):
        P.check_precision("fp8", "cpu", "methods.x.precision")


def test_autocast_scaler_backends_and_memory_format():
    lin = torch.nn.Linear(4, 4)
    x = torch.rand(2, 4)
    with P.autocast("bf16", "cpu"):
        assert lin(x).dtype == torch.bfloat16
    with P.autocast("fp32", "cpu"):
        assert lin(x).dtype == torch.float32
    assert not P.grad_scaler("bf16", "cpu").is_enabled() and not P.grad_scaler("fp32", "cpu").is_enabled()
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    try:
        P.setup_backends("cpu")
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
                torch.backends.cudnn.benchmark) == before
        P.setup_backends("cuda")
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        P.setup_backends("cuda", tf32=False)
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    finally:
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
         torch.backends.cudnn.benchmark) = before
    b = P.to_memory_format({"gt": torch.rand(2, 3, 4, 5), "meta": [{}], "v": torch.rand(3)}, True)
    assert b["gt"].is_contiguous(memory_format=torch.channels_last) and b["meta"] == [{}]
    assert P.to_memory_format(b, False) is b
