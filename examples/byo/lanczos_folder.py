#!/usr/bin/env python
"""Restore a folder of low-resolution images with OpenCV's Lanczos resize: code that knows nothing about dpir.

The producer of the ``outputs`` method example: it reads every ``<id>.png`` (8-bit) of ``--lq`` (the
prepared ``<data_dir>/<task>/<dataset>/test/lq/`` folder), upsamples it by ``--scale`` with
``cv2.resize(..., interpolation=cv2.INTER_LANCZOS4)`` (8x8 Lanczos window) and writes ``<id>.png`` to
``--out``; dpir-bench then imports the folder (``kind: outputs``) and scores it like its own runs::

    python examples/byo/lanczos_folder.py --lq data/sr/bundled/test/lq --out results/byo/lanczos --scale 4
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np


def upscale(img: np.ndarray, scale: int) -> np.ndarray:
    """(h, w, 3) uint8 -> (scale*h, scale*w, 3) uint8, Lanczos-4, rounded and clipped by OpenCV."""
    h, w = img.shape[:2]
    return cv2.resize(img, (w * scale, h * scale), interpolation=cv2.INTER_LANCZOS4)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lq", required=True, type=Path, help="folder of low-resolution <id>.png images")
    p.add_argument("--out", required=True, type=Path, help="folder to write the restored <id>.png images to")
    p.add_argument("--scale", type=int, default=4, help="upscaling factor (default 4)")
    args = p.parse_args(argv)
    if args.scale < 1:
        p.error(f"--scale must be >= 1, got {args.scale}")
    files = sorted(f for f in args.lq.glob("*.png") if not f.name.startswith("."))
    if not files:
        p.error(f"no .png images in {args.lq}")
    args.out.mkdir(parents=True, exist_ok=True)
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)          # 8-bit BGR; channel order is kept on writing
        if img is None:
            print(f"lanczos_folder: cannot read {f}", file=sys.stderr)
            return 1
        tmp = args.out / f".{f.stem}.tmp.png"
        if not cv2.imwrite(str(tmp), upscale(img, args.scale)):
            print(f"lanczos_folder: cannot write {tmp}", file=sys.stderr)
            return 1
        tmp.replace(args.out / f"{f.stem}.png")
    print(f"wrote {len(files)} images to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
