#!/usr/bin/env python
"""Benchmark every method of a task on the same input, one fresh process per method.

    .venv/bin/python scripts/benchmark.py [--config config/config.yaml ...] [--task sr] [--reps 3]

Needs the trained networks (run the workflow first).  For each method it reports NFE (forward-call
counting), FLOPs (FlopCounterMode), seconds per image (median of --reps runs after one warm-up run;
methods with more than 200 NFE run once) and the peak resident memory of its process above the
baseline after imports, then ratios to --reference.  Writes results/benchmark/<task>.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def one(args) -> dict:
    import torch

    from dpir.config import load_config
    from dpir.data.images import read_image
    from dpir.data.prepare import read_manifest
    from dpir import paths
    from dpir.measure import count_flops, count_nfe, count_params
    from dpir.restore import build
    from dpir.rng import make_generator

    cfg = load_config(args.config)
    torch.set_num_threads(args.threads)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    m, mcfg, tcfg, device = build(cfg, args.task, args.one)
    ds = tcfg["test_datasets"][0]
    image_id = read_manifest(cfg, args.task, ds)["splits"]["test"]["ids"][0]
    y = read_image(paths.prepared(cfg, args.task, ds) / "test" / "lq" / f"{image_id}.png")[None].to(device)
    after_build = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with torch.no_grad(), count_nfe(m) as counter, count_flops() as fc:
        m.restore(y, [make_generator(0, image_id)])
    nfe, flops = counter.total, (fc.get_total_flops() if m.flops_counted else None)
    reps = 1 if nfe > 200 else args.reps
    times = []
    with torch.no_grad():
        for r in range(reps):
            t0 = time.perf_counter()
            m.restore(y, [make_generator(r, image_id)])
            times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"method": args.one, "label": mcfg.get("label", args.one), "nfe": nfe, "flops": flops,
            "input": list(y.shape[-2:]), "seconds": statistics.median(times), "reps": reps,
            "params_total": count_params(m.modules()), "rss_baseline_mib": round(base, 1),
            "rss_model_mib": round(after_build - base, 1), "rss_peak_mib": round(peak, 1),
            "rss_restore_mib": round(peak - after_build, 1), "threads": args.threads, "device": str(device)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append")
    p.add_argument("--task", default="sr")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reference", default="dpir_jump_ddim")
    p.add_argument("--methods", nargs="*")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.config = args.config or [str(ROOT / "config" / "config.yaml")]
    if args.one:
        print(json.dumps(one(args)))
        return
    from dpir.config import load_config
    from dpir.workflow_facts import is_published

    cfg = load_config(args.config)
    methods = args.methods or [m for m, mc in cfg["tasks"][args.task]["methods"].items() if not is_published(mc)]
    rows = []
    for m in methods:
        cmd = [sys.executable, __file__, "--task", args.task, "--one", m, "--reps", str(args.reps),
               "--threads", str(args.threads)] + [a for c in args.config for a in ("--config", c)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"benchmark of {m} failed:\n{out.stderr[-2000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"{m}: {rows[-1]['seconds']:.3f} s, NFE {rows[-1]['nfe']}", file=sys.stderr)
    ref = next((r for r in rows if r["method"] == args.reference), None)
    lines = [f"Input {rows[0]['input'][0]}x{rows[0]['input'][1]} (LR), {args.threads} thread(s), device {rows[0]['device']}; "
             f"ratios to {ref['label'] if ref else 'n/a'}.", "",
             "| method | NFE | GFLOPs | × ref | s/img | × ref | params (M) | peak RSS MiB (baseline + model + restore) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fr = f"{r['flops'] / ref['flops']:.3g}" if ref and r["flops"] is not None and ref["flops"] else "n/a"
        sr = f"{r['seconds'] / ref['seconds']:.3g}" if ref else "n/a"
        gf = f"{r['flops'] / 1e9:.3g}" if r["flops"] is not None else "n/a"
        lines.append(f"| {r['label']} | {r['nfe']} | {gf} | {fr} | {r['seconds']:.3f} | {sr} | {r['params_total'] / 1e6:.3f} | "
                     f"{r['rss_peak_mib']:.0f} ({r['rss_baseline_mib']:.0f} + {r['rss_model_mib']:.0f} + {r['rss_restore_mib']:.0f}) |")
    out_dir = Path(cfg["out"]) / "benchmark"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{args.task}.json").write_text(json.dumps(rows, indent=2))
    (out_dir / f"{args.task}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
