"""Peak memory of tiled vs untiled SR inference at DIV2K size (2040x1356 output, 510x339 LR input).

Each measurement runs in its own subprocess and reports ``resource.getrusage(RUSAGE_SELF).ru_maxrss``
(peak resident set size; tracemalloc does not see torch's allocator), plus the same figure taken
right before the forward pass, so the forward's own share is the difference.  The network is the
embedded default's small SwinIR (config/config.yaml ``networks.swinir_sr.kwargs``) with random
weights: memory does not depend on the weight values.

    python scripts/bench_tiling.py                 # untiled, then tile 128 / overlap 16
    python scripts/bench_tiling.py --tile 64 --tile 256 --threads 2
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _child(tile: int, overlap: int, threads: int, h: int, w: int) -> None:
    import resource

    import torch
    import yaml

    from dpir.nets import build_network
    from dpir.tiling import TiledModule

    torch.set_num_threads(threads)
    kwargs = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["networks"]["swinir_sr"]["kwargs"]
    torch.manual_seed(0)
    net = build_network("swinir", **kwargs).eval()
    if tile:
        net = TiledModule(net, tile, overlap)
    y = torch.rand((1, 3, h, w), generator=torch.Generator().manual_seed(0))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with torch.no_grad():
        x = net(y)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"tile": tile, "overlap": overlap, "output": list(x.shape[-2:]), "seconds": round(seconds, 1),
                      "maxrss_mib_before": round(before / 1024, 1), "maxrss_mib": round(peak / 1024, 1)}))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tile", type=int, action="append", help="tile size(s) in LR pixels (0 = untiled)")
    p.add_argument("--overlap", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--size", type=int, nargs=2, default=[339, 510], metavar=("H", "W"), help="LR input size")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    tiles = args.tile or [0, 128]
    if args.child:
        _child(tiles[0], args.overlap, args.threads, *args.size)
        return
    print(f"SwinIR (config.yaml swinir_sr, random weights), LR {args.size[0]}x{args.size[1]} -> x4, "
          f"{args.threads} thread(s), overlap {args.overlap}")
    print("| tile | output | seconds | peak RSS before forward (MiB) | peak RSS (MiB) |\n|---|---|---|---|---|")
    for tile in tiles:
        r = subprocess.run([sys.executable, __file__, "--child", "--tile", str(tile), "--overlap", str(args.overlap),
                            "--threads", str(args.threads), "--size", *map(str, args.size)],
                           capture_output=True, text=True, check=False, cwd=ROOT)
        if r.returncode != 0:
            sys.exit(r.stderr[-2000:])
        rec = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"| {tile or 'untiled'} | {rec['output'][0]}x{rec['output'][1]} | {rec['seconds']} | "
              f"{rec['maxrss_mib_before']} | {rec['maxrss_mib']} |")


if __name__ == "__main__":
    main()
