#!/usr/bin/env python
"""The cost of counting FLOPs during a real restoration, side by side in one process.

    .venv/bin/python scripts/bench_flop_counter.py [--config config/config.yaml ...] [--task sr]
        [--methods dpir_jump_ddim t6_tau50]

Needs the trained networks (run the workflow first).  For each method, one image (the first test image)
is restored three times with the same seed: without any counter, with FlopCounterMode around every op
(what `dpir restore` did before), and with dpir.measure.count_flops(<the method's per-step networks>),
which counts each network once per call signature and replays the other calls outside the counter.
Prints JSON: seconds of each, the ratios to the uncounted run, and whether both counters give the same
FLOPs and the same output.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append")
    p.add_argument("--task", default="sr")
    p.add_argument("--methods", nargs="+", default=["dpir_jump_ddim"])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()

    import torch

    from dpir import paths
    from dpir.config import load_config
    from dpir.data.images import read_image
    from dpir.data.prepare import read_manifest
    from dpir.measure import count_flops
    from dpir.restore import build
    from dpir.rng import make_generator

    cfg = load_config(args.config or [str(ROOT / "config" / "config.yaml")])
    torch.set_num_threads(args.threads)
    rows = []
    for method in args.methods:
        m, _, tcfg, device = build(cfg, args.task, method)
        ds = tcfg["test_datasets"][0]
        image_id = read_manifest(cfg, args.task, ds)["splits"]["test"]["ids"][0]
        y = read_image(paths.prepared(cfg, args.task, ds) / "test" / "lq" / f"{image_id}.png")[None].to(device)
        per_step = [mod for mods in m.nfe_groups().values() for mod in mods]

        def run(counter):
            with torch.no_grad(), counter as fc:
                t0 = time.perf_counter()
                x = m.restore(y, [make_generator(0, image_id)])
                return x, time.perf_counter() - t0, fc

        class _NoCounter:
            def __enter__(self):
                return None

            def __exit__(self, *exc):
                return False

        run(_NoCounter())                                   # warm-up
        x0, plain, _ = run(_NoCounter())
        x1, every_op, fc1 = run(count_flops())
        x2, recorded, fc2 = run(count_flops(per_step))
        rows.append({"method": method, "image": image_id, "seconds_plain": round(plain, 3),
                     "seconds_every_op": round(every_op, 3), "seconds_recorded": round(recorded, 3),
                     "ratio_every_op": round(every_op / plain, 3), "ratio_recorded": round(recorded / plain, 3),
                     "flops_every_op": fc1.get_total_flops(), "flops_recorded": fc2.get_total_flops(),
                     "same_flops": fc1.get_total_flops() == fc2.get_total_flops(),
                     "same_output": bool(torch.equal(x0, x1) and torch.equal(x0, x2)),
                     "counted_calls": fc2.counted_calls, "replayed_calls": fc2.replayed_calls})
        print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
