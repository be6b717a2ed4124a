"""Measure the paper-scale jobs on one CUDA GPU: steps/s, achieved TFLOP/s and peak memory.

    PYTHONPATH=. python scripts/bench_gpu.py [--out benchmarks/bench_gpu.json] [--precisions bf16,tf32,fp32]

For each training job of ``benchmarks/paper_jobs.json`` (the denoiser and the SR / deblur / burst fusion
nets, at the paper's batch and crop) it runs 20 optimiser steps on synthetic data with random weights,
in bf16 (autocast), TF32 and fp32, and one DP-IR jump + DDIM restore of a 2040x1356 output.  FLOPs
are counted on the same device with :func:`dpir.plan.flop_counter` (one extra step under the counter,
as ``dpir plan`` counts them); achieved TFLOP/s = FLOPs per step x steps / measured seconds.  The JSON
it writes is what ``dpir plan --bench FILE`` reads for its efficiencies.

It needs only torch, torchvision, numpy, safetensors and spandrel (no YAML: the jobs come from the
committed JSON that ``python -m dpir.plan --config config/paper.yaml --export-jobs
benchmarks/paper_jobs.json`` writes), so it runs on a rented GPU without the full install.  A setting
that runs out of memory is recorded as ``oom`` and the next one runs; ``--budget-s`` (default 280)
skips what would not fit in the five minutes.  ``--device cpu --tiny`` runs every code path at toy
sizes in seconds (the import-closure test in tests/test_bench_gpu.py).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dpir.plan import ACCELERATORS, BENCH_FORMAT, JOBS_FILE, JOBS_FORMAT, flop_counter  # noqa: E402

#: --tiny: what replaces the paper sizes (CPU smoke run)
TINY = {"batch": 1, "steps": 1, "height": 32, "width": 32}
#: a (job, precision) is stopped after this many timed seconds even before its steps are done
MAX_SECONDS_PER_SETTING = 25.0


def accelerator_key(device: torch.device) -> str | None:
    """The dpir.plan.ACCELERATORS key of this GPU, from its name (None if unknown or CPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device).lower()
    if "h200" in name:
        return "h200"
    if "h100" in name:
        return "h100_pcie" if "pcie" in name else "h100"
    for key in ("a100", "l40s", "l4"):
        if key in name:
            return key
    return None


def build(net: dict, device) -> torch.nn.Module:
    from dpir.nets import build_network

    return build_network(net["arch"], **net["kwargs"]).to(device)


def set_precision(precision: str, device) -> None:
    if device.type == "cuda":
        tf32 = precision != "fp32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cudnn.benchmark = True


def autocast(precision: str, device):
    import contextlib

    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp16":
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def _burst_meta(job: dict):
    """One real burst's camera metadata (the ISP of the fusion target needs it), from a small image."""
    from dpir.data.burst import synthesize_burst

    g = torch.Generator().manual_seed(0)
    m = int(job["burst_margin"])
    _, _, meta = synthesize_burst(torch.rand(3, 32 + 2 * m, 32 + 2 * m, generator=g), int(job["burst_size"]), g,
                                  job["burst_cfg"])
    return meta


def training_step(job: dict, device, batch: int, patch: int):
    """(model, params, step(): loss) for one paper training job, as its trainer computes it (the
    denoiser: MSE(phi_D(gt + sigma n, sigma), gt); fusion: frozen IR net and denoiser forward, fusion
    forward + backward), on synthetic data."""
    g = torch.Generator(device=device).manual_seed(0)
    model = build(job["network"], device).train()
    gt = torch.rand(batch, 3, patch, patch, device=device, generator=g)
    if job["trainer"] == "denoiser":
        smax = float(job["sigma_max"])

        def loss_fn():
            sigma = smax * torch.rand(batch, device=device, generator=g)
            noisy = gt + sigma.view(-1, 1, 1, 1) * torch.randn(gt.shape, device=device, generator=g)
            return F.mse_loss(model(noisy, sigma), gt)
        return model, loss_fn
    ir = build(job["ir"], device).eval().requires_grad_(False)
    den = build(job["denoiser"], device).eval().requires_grad_(False)
    T, tau = int(job["T"]), int(job["tau"])
    betas = torch.linspace(1e-4, 2e-2, T, dtype=torch.float64)
    abar = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)]).to(device)
    d = int(job["lq_divisor"])
    lq = torch.rand(batch, *job["lq_dims"], patch // d, patch // d, device=device, generator=g)
    meta = [_burst_meta(job)] * batch if job["task_kind"] == "burst" else None

    def loss_fn():
        t = torch.randint(1, tau + 1, (batch,), device=device, generator=g)
        ab = abar[t].float().view(-1, 1, 1, 1)
        x_t = ab.sqrt() * gt + (1 - ab).sqrt() * torch.randn(gt.shape, device=device, generator=g)
        with torch.no_grad():
            x0_ir = ir(lq)
            if meta is not None:
                from dpir.isp import srgb_batch

                x0_ir = srgb_batch(x0_ir.float(), meta)
            x0_d = den(x_t / ab.sqrt(), ((1 - ab) / ab).sqrt().view(-1))
        return F.mse_loss(model(x0_ir, x0_d, t), gt)
    return model, loss_fn


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_train(job: dict, precision: str, device, steps: int, tiny: bool) -> dict:
    # tiny: the smallest crop whose observation is 8 px (SwinIR's window, BSRT's pyramid)
    batch, patch = (TINY["batch"], max(32, 8 * int(job.get("lq_divisor", 1)))) if tiny else (job["batch"], job["patch"])
    set_precision(precision, device)
    model, loss_fn = training_step(job, device, batch, patch)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-4)

    def step():
        with autocast(precision, device):
            loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.float().backward()
        opt.step()
    counter = flop_counter()
    with counter:              # one counted step (also the warm-up)
        step()
    flops = counter.get_total_flops()
    step()                     # a second warm-up outside the counter (cudnn autotuning)
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    done, t0 = 0, time.perf_counter()
    while done < steps and (done == 0 or time.perf_counter() - t0 < MAX_SECONDS_PER_SETTING):
        step()
        done += 1
        if device.type == "cuda" and done % 5 == 0:
            sync(device)
    sync(device)
    secs = time.perf_counter() - t0
    return {"batch": batch, "patch": patch, "steps": done, "seconds": secs, "steps_per_s": done / secs,
            "flops_per_step": flops, "achieved_tflops": flops * done / secs / 1e12}


def bench_restore(job: dict, precision: str, device, tiny: bool, tile: int | None) -> dict:
    from dpir.diffusion.schedule import linear_schedule
    from dpir.methods.dpir import DPIR

    h, w = (TINY["height"], TINY["width"]) if tiny else (job["height"], job["width"])
    set_precision(precision, device)
    nets = {k: build(job[k], device).eval().requires_grad_(False) for k in ("ir", "denoiser", "fusion")}
    pad = int(job["ir"]["kwargs"].get("window_size", 1) or 1)
    tau = int(job["tau"])
    stride = max(1, tau // 2) if tiny else int(job["ddim_stride"])    # tiny: 2 reverse steps, not 50
    m = DPIR(nets["ir"], nets["denoiser"], nets["fusion"], linear_schedule(int(job["T"]), 1e-4, 2e-2), tau,
             ddim_stride=stride, ir_pad_multiple=pad)
    if tile:
        from dpir.tiling import wrap_for_tiling

        wrap_for_tiling(m, tile, 32)
    s = int(job["scale"])
    y = torch.rand(1, 3, h // s, w // s, device=device, generator=torch.Generator(device=device).manual_seed(0))
    counter = flop_counter()
    with counter, autocast(precision, device):
        m.restore(y, [torch.Generator().manual_seed(0)])
    flops = counter.get_total_flops()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    with autocast(precision, device):
        m.restore(y, [torch.Generator().manual_seed(0)])
    sync(device)
    secs = time.perf_counter() - t0
    return {"height": h, "width": w, "tile": tile, "nfe": m.expected_nfe(), "images": 1, "seconds": secs, "steps_per_s": 1 / secs,
            "flops_per_image": flops, "achieved_tflops": flops / secs / 1e12}


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


def run(args) -> dict:
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_gpu: --device cuda but torch sees no CUDA GPU; use --device cpu --tiny for a smoke run")
    try:
        data = json.loads(Path(args.jobs).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"bench_gpu: cannot read the jobs file {args.jobs} ({e}); write it with "
                         f"`python -m dpir.plan --config config/paper.yaml --export-jobs {args.jobs}`")
    if data.get("format") != JOBS_FORMAT:
        raise SystemExit(f"bench_gpu: {args.jobs} is not a {JOBS_FORMAT!r} file; re-export it with dpir plan")
    precisions = [p for p in args.precisions.split(",") if p]
    bad = [p for p in precisions if p not in ("fp32", "tf32", "bf16", "fp16")]
    if bad:
        raise SystemExit(f"bench_gpu: --precisions {','.join(bad)}: use fp32, tf32, bf16 or fp16")
    if device.type == "cpu":       # no TF32 on the CPU: tf32 is fp32 there, counted once
        precisions = [p for p in precisions if p != "tf32"]
    steps = TINY["steps"] if args.tiny else args.steps
    key = accelerator_key(device)
    out = {"format": BENCH_FORMAT, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "accelerator": key, "peak_tflops": {p: ACCELERATORS[key][p] for p in ("fp32", "tf32", "bf16", "fp16")}
           if key else None, "torch": torch.__version__, "python": platform.python_version(),
           "tiny": bool(args.tiny), "steps": steps, "results": []}
    jobs = [j for j in data["jobs"] if not args.only or j["job"] in args.only.split(",")]
    t_start = time.perf_counter()
    for precision in precisions:
        for job in jobs:
            rec = {"job": job["job"], "kind": job["kind"], "precision": precision}
            if time.perf_counter() - t_start > args.budget_s:
                out["results"].append({**rec, "status": "skipped", "why": f"over the {args.budget_s:g} s budget"})
                continue
            tile = args.tile
            for attempt in range(2):
                try:
                    if job["kind"] == "train":
                        r = bench_train(job, precision, device, steps, args.tiny)
                    else:
                        r = bench_restore(job, precision, device, args.tiny, tile)
                    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
                    rec.update(status="ok", **r, peak_mem_gib=peak)
                    if key:
                        rec["efficiency"] = rec["achieved_tflops"] / ACCELERATORS[key][precision]
                    break
                except Exception as e:  # noqa: BLE001 - one setting failing must not stop the others
                    oom = _is_oom(e)
                    rec.update(status="oom" if oom else "error", why=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
                               if str(e) else type(e).__name__)
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                    if not (oom and job["kind"] == "restore" and not tile):
                        break
                    tile = 256        # the restore did not fit whole: retry tiled (256 LR px, dpir.tiling)
            out["results"].append(rec)
            print(f"{rec['job']:>20} {precision:>5}: {rec['status']}"
                  + (f", {rec['steps_per_s']:.3g} steps/s, {rec['achieved_tflops']:.3g} TFLOP/s"
                     + (f", peak {rec['peak_mem_gib']:.1f} GiB" if rec.get("peak_mem_gib") is not None else "")
                     if rec["status"] == "ok" else f" ({rec.get('why', '')})"), flush=True)
    out["seconds"] = time.perf_counter() - t_start
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", default=str(JOBS_FILE), help="jobs JSON exported by `dpir plan --export-jobs`")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "bench_gpu.json"))
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    p.add_argument("--precisions", default="bf16,tf32,fp32")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--only", help="comma-separated job names (default: all)")
    p.add_argument("--tile", type=int, help="tile the restore (LR px); default whole image, tiled 256 after an OOM")
    p.add_argument("--budget-s", type=float, default=280.0, help="skip the settings that start after this")
    p.add_argument("--tiny", action="store_true", help="toy sizes, 2 steps (a smoke run on the CPU)")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    out = run(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out} ({out['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
