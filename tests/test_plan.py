"""`dpir plan`: META-device counting equals a real CPU run, a paper job checked by hand, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from dpir import plan
from dpir.nets import build_network

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def default_cfg(tmp_path_factory):
    from dpir.config import load_config

    tmp = tmp_path_factory.mktemp("plan")
    return load_config([ROOT / "config" / "config.yaml"], {"out": str(tmp / "results"), "data_dir": str(tmp / "data")})


@pytest.fixture(scope="module")
def paper_cfg(tmp_path_factory):
    from dpir.config import load_config

    tmp = tmp_path_factory.mktemp("paper")
    return load_config([ROOT / "config" / "config.yaml", ROOT / "config" / "paper.yaml"],
                       {"out": str(tmp / "results"), "data_dir": str(tmp / "data")})


def test_grouped_conv_backward_costs_its_forward():
    """torch's formula counts a depthwise conv's weight gradient as dense (64x too much here);
    the plan's counter charges each gradient exactly the forward's 2 x MACs."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, groups=64, bias=False)
    x = torch.rand(2, 64, 16, 16, requires_grad=True)
    fwd = 2 * (2 * 64 * 16 * 16) * 9            # 2 x MACs: batch x C_out x H x W x (C_in / groups = 1) x 3 x 3
    counter = plan.flop_counter()
    with counter:
        y = conv(x)
        assert counter.get_total_flops() == fwd
        y.sum().backward()
    assert counter.get_total_flops() == 3 * fwd          # grad input + grad weight
    with FlopCounterMode(display=False) as stock:
        conv(x).sum().backward()
    assert stock.get_total_flops() > 3 * fwd            # the overcount the plan corrects


def test_training_step_on_meta_equals_a_real_cpu_step(default_cfg):
    """The denoiser of the default config: the plan's META count of one step (its trainer's loss) equals
    FlopCounterMode around a real forward + backward of the same network on real CPU tensors."""
    c = plan.training_step(default_cfg, "mirnet_s")
    nc = default_cfg["networks"]["mirnet_s"]
    torch.manual_seed(0)
    net = build_network(nc["arch"], **nc["kwargs"])
    B, p = nc["train"]["batch"], nc["train"]["patch"]
    gt = torch.rand(B, 3, p, p)
    sigma = torch.rand(B) * 0.9
    counter = plan.flop_counter()
    with counter:
        loss = F.mse_loss(net(gt + sigma.view(-1, 1, 1, 1) * torch.randn_like(gt), sigma), gt)
        forward = counter.get_total_flops()
        loss.backward()
    assert c["forward_flops"] == forward > 0
    assert c["step_flops"] == counter.get_total_flops()
    assert c["trained_params"] == sum(q.numel() for q in net.parameters())
    assert (c["batch"], c["patch"]) == (B, p)


def test_fusion_step_counts_frozen_forwards_and_trained_backward(default_cfg):
    """A fusion step = IR net forward + denoiser forward (frozen, no backward) + fusion forward + backward,
    each counted on real CPU tensors here and summed by hand."""
    c = plan.training_step(default_cfg, "fusion_sr")
    nets = {n: build_network(default_cfg["networks"][n]["arch"], **default_cfg["networks"][n]["kwargs"])
            for n in ("swinir_sr", "mirnet_s", "fusion_sr")}
    B, p = default_cfg["networks"]["fusion_sr"]["train"]["batch"], default_cfg["networks"]["fusion_sr"]["train"]["patch"]
    counts = {}
    with torch.no_grad():
        for name, args in (("swinir_sr", (torch.rand(B, 3, p // 4, p // 4),)),
                           ("mirnet_s", (torch.rand(B, 3, p, p), torch.rand(B)))):
            with plan.flop_counter() as m:
                nets[name](*args)
            counts[name] = m.get_total_flops()
    fusion_counter = plan.flop_counter()
    with fusion_counter:
        out = nets["fusion_sr"](torch.rand(B, 3, p, p), torch.rand(B, 3, p, p), torch.randint(1, 250, (B,)))
        counts["fusion_fwd"] = fusion_counter.get_total_flops()
        out.square().mean().backward()
    counts["fusion_all"] = fusion_counter.get_total_flops()
    assert c["forward_flops"] == counts["swinir_sr"] + counts["mirnet_s"] + counts["fusion_fwd"]
    assert c["step_flops"] == counts["swinir_sr"] + counts["mirnet_s"] + counts["fusion_all"]
    assert set(c["frozen"]) == {"swinir_sr", "mirnet_s"}


def test_restore_on_meta_equals_a_real_cpu_restore(default_cfg):
    """DP-IR's one-step jump to tau = 10 of the default config at 32x32: the META count (its 10 repeated
    steps replayed from the first) equals FlopCounterMode around a real CPU restore with random weights;
    NFE = the method's formula."""
    from dpir.diffusion.schedule import linear_schedule
    from dpir.methods.dpir import DPIR

    r = plan.restore_image(default_cfg, "sr", "t6_tau10", 32, 32)
    assert r["nfe"] == r["expected_nfe"] == 11
    torch.manual_seed(0)
    n = default_cfg["networks"]
    nets = [build_network(n[k]["arch"], **n[k]["kwargs"]).eval() for k in ("swinir_sr", "mirnet_s", "fusion_sr")]
    m = DPIR(*nets, linear_schedule(1000, 1e-4, 2e-2), 10, ir_pad_multiple=8)
    counter = plan.flop_counter()
    with torch.no_grad(), counter:
        m.restore(torch.rand(1, 3, 8, 8), [torch.Generator().manual_seed(0)])
    assert r["image_flops"] == counter.get_total_flops() > 0


def test_paper_denoiser_job_by_hand(paper_cfg):
    """config/paper.yaml's MIRNet-S: forward = FlopCounterMode of one forward at batch 8 x 192^2, a step
    = forward + backward where backward = 2 x forward (input and weight gradients) less the input
    gradients of layers that read only the noisy image, 1M steps, hours = PFLOP / (989.4 TFLOP/s x assumed 35 %)."""
    nc = paper_cfg["networks"]["mirnet_s"]
    with torch.device("meta"):
        net = build_network(nc["arch"], **nc["kwargs"])
    with plan.flop_counter() as m:
        net(torch.empty(8, 3, 192, 192, device="meta"), torch.empty(8, device="meta"))
    forward = m.get_total_flops()
    first = [mod for mod in net.modules() if isinstance(mod, torch.nn.Conv2d)][0]
    # the first conv reads the noisy image and the noise-level map: no gradient is computed for them
    first_conv = 2 * 8 * 192 * 192 * first.out_channels * first.in_channels * first.kernel_size[0] * first.kernel_size[1]
    c = plan.training_step(paper_cfg, "mirnet_s")
    assert c["forward_flops"] == forward
    # layers reading only the input (the first conv, and skip branches from it) need no input gradient:
    # the step is 3 x forward less at least the first conv's input gradient, less 0.1 % at most
    assert first_conv <= 3 * forward - c["step_flops"] <= 0.001 * 3 * forward
    assert 6.3e12 < c["step_flops"] < 6.4e12          # the "~6 TFLOP a step"
    p = plan.make_plan({**paper_cfg, "tasks": {k: {**v, "methods": {}} for k, v in paper_cfg["tasks"].items()},
                        "ablations": {}, "networks": {k: v for k, v in paper_cfg["networks"].items()
                                                      if k in ("mirnet_s", "swinir_sr")}}, "h100", "bf16")
    (job,) = [j for j in p["jobs"] if j["job"] == "mirnet_s"]
    assert job["steps"] == 1_000_000 and job["total_flops"] == c["step_flops"] * 1_000_000
    assert job["hours"] == pytest.approx(c["step_flops"] * 1e6 / (989.4e12 * 0.35) / 3600, rel=1e-12)
    assert job["efficiency_source"] == "assumed 35%"
    assert job["memory_bytes"] == 16 * c["trained_params"]
    assert p["totals"]["largest_job"] == "mirnet_s"


def _bench(tmp_path, results, accelerator="h100"):
    f = tmp_path / "bench.json"
    f.write_text(json.dumps({"format": plan.BENCH_FORMAT, "accelerator": accelerator, "results": results}))
    return f


def test_measured_efficiency_from_the_bench_file(tmp_path):
    f = _bench(tmp_path, [
        {"job": "mirnet_s", "kind": "train", "precision": "bf16", "status": "ok", "achieved_tflops": 494.7},
        {"job": "fusion_sr", "kind": "train", "precision": "bf16", "status": "ok", "achieved_tflops": 98.94},
        {"job": "fusion_sr", "kind": "train", "precision": "fp32", "status": "oom"}], accelerator="a100")
    bench = plan.read_bench(f)
    acc = plan.accelerator("h100")
    # measured on an A100: efficiency = achieved / the A100's bf16 peak (312), whatever GPU is planned
    assert plan.efficiency(bench, "mirnet_s", "train", "bf16", acc) == (494.7 / 312.0, "measured (mirnet_s)")
    assert plan.efficiency(bench, "udp_denoiser", "train", "bf16", acc) == (494.7 / 312.0, "measured (median train)")
    assert plan.efficiency(bench, "fusion_sr", "train", "fp32", acc) == (0.35, "assumed 35%")
    assert plan.efficiency(bench, "sr/dpir", "restore", "bf16", acc) == (0.35, "assumed 35%")


def test_unknown_accelerator_is_one_line(capsys):
    assert plan.main(["--accelerator", "tpu9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err == f"dpir: error: --accelerator 'tpu9' is not known; known: {', '.join(plan.ACCELERATORS)}"


@pytest.mark.parametrize("content", ['{"format": "dpir-bench-gpu/1", "results": {}}', "[1, 2]", "not json",
                                     '{"format": "dpir-bench-gpu/1", "results": [{"job": "x", "precision": "bf16", '
                                     '"status": "ok"}]}'])
def test_bench_file_of_the_wrong_shape_is_one_line_naming_it(tmp_path, capsys, content):
    f = tmp_path / "mine.json"
    f.write_text(content)
    assert plan.main(["--bench", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"dpir: error: --bench {f}")
