"""Patch throughput of the training data path: the patch store + DataLoader against decoding PNGs.

Synthesises ``--images`` 2040x1356 8-bit PNGs (DIV2K's size; smooth random colour fields plus noise,
so they compress like photographs rather than like white noise), builds their patch store
(:mod:`dpir.data.store`), then measures side by side in one run:

- ``store``: :class:`dpir.data.loader.TrainPatches` (random 256x256 crops with the dihedral
  augmentation) read by torch's DataLoader with 0, 1 and 2 workers;
- ``png``: the lazy path that training used before the store (:class:`dpir.data.patches.PatchSampler`
  with ``cache=False``: the whole PNG of every drawn image decoded for its one crop).

Prints a table and writes JSON (``--out``).  Usage::

    PYTHONPATH=. python scripts/bench_loader.py [--images 8] [--patch 256] [--batch 16] [--out bench_loader.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def synth_pngs(folder: Path, n: int, h: int = 1356, w: int = 2040) -> list:
    from dpir.data.images import write_png
    from dpir.data.prepare import StoredPair

    g = torch.Generator().manual_seed(0)
    pairs = []
    for i in range(n):
        field = F.interpolate(torch.rand(1, 3, h // 64 + 1, w // 64 + 1, generator=g), size=(h, w), mode="bicubic",
                              align_corners=False)[0]
        x = (field + 0.03 * torch.randn(3, h, w, generator=g)).clamp(0, 1)
        write_png(folder / f"{i:04d}.png", x)
        pairs.append(StoredPair(id=f"{i:04d}", gt=folder / f"{i:04d}.png", lq=None, size=(h, w), lq_size=None,
                                task="sr", dataset="bench"))
    return pairs


def bench_store(store, patch: int, batch: int, workers: int, seconds: float) -> dict:
    from dpir.data.loader import StepBatches, TrainPatches, train_loader

    data = TrainPatches(store, patch, seed=0, with_lq=False)
    loader = iter(train_loader(data, StepBatches(batch, 10**9), workers=workers))
    next(loader)                                   # worker start-up and the first batch: not counted
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += next(loader)["gt"].shape[0]
    dt = time.perf_counter() - t0
    del loader
    return {"path": "store", "workers": workers, "patches": n, "seconds": round(dt, 3),
            "patches_per_s": round(n / dt, 1)}


def bench_png(pairs, patch: int, batch: int, seconds: float) -> dict:
    from dpir.data.patches import PatchSampler

    sampler = PatchSampler(pairs, patch, cache=False)
    g = torch.Generator().manual_seed(0)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n == 0:
        n += sampler.sample(batch, g, with_lq=False)["gt"].shape[0]
    dt = time.perf_counter() - t0
    return {"path": "png", "workers": 0, "patches": n, "seconds": round(dt, 3), "patches_per_s": round(n / dt, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--patch", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=8.0, help="measuring time per configuration")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="bench_loader.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from dpir.data.store import PatchStore, _build_locked

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pairs = synth_pngs(tmp, args.images)
        png_mb = sum(p.gt.stat().st_size for p in pairs) / 2**20
        t0 = time.perf_counter()
        _build_locked(tmp / "train.store", pairs, key="bench")
        build_s = time.perf_counter() - t0
        idx = json.loads((tmp / "train.store" / "index.json").read_text())
        store = PatchStore(folder=tmp / "train.store", dtype=idx["dtype"], images=idx["images"])
        rows = [bench_png(pairs, args.patch, args.batch, args.seconds)]
        rows += [bench_store(store, args.patch, args.batch, w, args.seconds) for w in args.workers]
    png = rows[0]["patches_per_s"]
    for r in rows:
        r["x_png"] = round(r["patches_per_s"] / png, 1)
    out = {"images": args.images, "size": [1356, 2040], "patch": args.patch, "batch": args.batch,
           "png_mib": round(png_mb, 1), "store_build_s": round(build_s, 2), "cpus": os.cpu_count(),
           "machine": platform.processor() or platform.machine(), "torch": torch.__version__, "rows": rows}
    print(f"{args.images} PNGs of 2040x1356 ({png_mb:.0f} MiB), {args.patch}x{args.patch} crops, batch {args.batch}; "
          f"store built in {build_s:.1f} s")
    print(f"{'path':8} {'workers':>7} {'patches/s':>10} {'x png':>7}")
    for r in rows:
        print(f"{r['path']:8} {r['workers']:>7} {r['patches_per_s']:>10.1f} {r['x_png']:>7.1f}")
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
