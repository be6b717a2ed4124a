"""The harness's burst files: the SyntheticBurst layout (Bhat et al., CVPR 2021), written and read.

    <root>/bursts/<id>/im_raw_XX.png    uint16 RAW frame, value * 2^14, 4 channels (RGGB packed)
    <root>/gt/<id>/im_rgb.png           uint16 linear RGB ground truth, value * 2^14
    <root>/gt/<id>/meta_info.json       the burst's camera metadata (ours; the official set has
                                        meta_info.pkl, which :func:`read_burst` reads too)

The pixel files are in OpenCV's BGR(A) file order, as the official generator wrote them, so the
official loader (``cv2.imread(IMREAD_UNCHANGED)``) reads ours, and :func:`read_burst` -- the one
reader of this layout in the harness -- reads the official validation bursts
(:func:`dpir.data.layouts.syntheticburst_val` lists them) and the harness's own
(:func:`list_bursts`) alike.  The synthesis that makes bursts is :mod:`dpir.data.burst`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dpir.atomic import atomic_write_text
from dpir.data import layouts
from dpir.data.layouts import BURST_SCALE, BurstSample
from dpir.errors import DpirError

# cv2 (which wrote and reads the official files) keeps colour PNGs in BGR(A) order; a plain PNG
# decoder sees the file's RGB(A) order.  These index maps turn the file order into the arrays the
# official loader returns (R, G, G, B for RAW frames, linear R, G, B for gt) and back: each is its
# own inverse.
CV2_ORDER = {3: [2, 1, 0], 4: [2, 1, 0, 3]}


def _to_u16(x: torch.Tensor) -> np.ndarray:
    return np.round(x.detach().cpu().double().clamp(0.0, 1.0).numpy() * BURST_SCALE).astype(np.uint16)


def write_burst(root: str | Path, burst_id: str, frames: torch.Tensor, gt: torch.Tensor, meta: dict[str, Any]) -> None:
    """Write one burst in the SyntheticBurst layout under ``root`` (values rounded to 1/2^14).

    Channel order in the files is OpenCV's (BGR / BGRA of the arrays the official loader returns), so
    the frames' R,G_r,G_b,B are stored as G_b,G_r,R,B and the gt's R,G,B as B,G,R.
    """
    root = Path(root)
    if frames.dim() != 4 or frames.shape[1] != 4:
        raise DpirError(f"burst {burst_id}: frames must be (N, 4, h, w), got {tuple(frames.shape)}")
    n, _, h, w = frames.shape
    if gt.shape != (3, 8 * h, 8 * w):
        raise DpirError(f"burst {burst_id}: gt must be (3, {8 * h}, {8 * w}) for {h}x{w} frames, got {tuple(gt.shape)}")
    if n > 100:
        raise DpirError(f"burst {burst_id}: {n} frames do not fit the im_raw_XX.png naming (max 100)")
    try:
        text = json.dumps(meta, indent=1, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise DpirError(f"burst {burst_id}: metadata is not plain JSON ({e})") from None
    for i in range(n):
        arr = _to_u16(frames[i]).transpose(1, 2, 0)                  # h, w, [R, Gr, Gb, B]
        layouts.write_png16(root / "bursts" / burst_id / f"im_raw_{i:02d}.png", arr[..., CV2_ORDER[4]])
    layouts.write_png16(root / "gt" / burst_id / "im_rgb.png", _to_u16(gt).transpose(1, 2, 0)[..., CV2_ORDER[3]])
    atomic_write_text(root / "gt" / burst_id / "meta_info.json", text)


def list_bursts(root: str | Path, burst_size: int | None = None) -> list[BurstSample]:
    """The bursts under ``root`` (our ``meta_info.json`` or the official ``meta_info.pkl``), sorted.

    ``burst_size`` None takes every ``im_raw_XX.png`` of each burst (they must be numbered from 00
    without gaps); a number takes the first ``burst_size`` frames and requires them.
    """
    root = Path(root)
    bursts = root / "bursts"
    if not bursts.is_dir():
        raise DpirError(f"burst folder {bursts} does not exist; run `dpir prepare` for the burst task")
    out = []
    for d in sorted(p for p in bursts.iterdir() if p.is_dir()):
        n = burst_size if burst_size is not None else len(list(d.glob("im_raw_*.png")))
        frames = [d / f"im_raw_{i:02d}.png" for i in range(n)]
        for f in frames:
            if not f.is_file():
                raise DpirError(f"{f} is missing (frame of burst {d.name}); re-run `dpir prepare`")
        gt_dir = root / "gt" / d.name
        meta = gt_dir / "meta_info.json"
        if not meta.is_file():
            meta = gt_dir / "meta_info.pkl"
        for f in (gt_dir / "im_rgb.png", meta):
            if not f.is_file():
                raise DpirError(f"{f} is missing (ground truth of burst {d.name}); re-run `dpir prepare`")
        if n == 0:
            raise DpirError(f"burst {d} has no im_raw_XX.png frames")
        out.append(BurstSample(d.name, frames, gt_dir / "im_rgb.png", meta))
    if not out:
        raise DpirError(f"no bursts found in {bursts}")
    return out


def _read_cv2_order(path: Path, channels: int) -> np.ndarray:
    arr = layouts.read_png_unchanged(path)      # the official loader's cv2.imread(IMREAD_UNCHANGED)
    if arr.dtype != np.uint16 or arr.ndim != 3 or arr.shape[2] != channels:
        shape = "x".join(map(str, arr.shape))
        raise DpirError(f"{path} is a {shape} {arr.dtype} image; expected {channels} channels of uint16")
    return arr


def _read_meta(path: Path) -> dict[str, Any]:
    """Our ``meta_info.json`` or the official ``meta_info.pkl`` (:func:`dpir.data.layouts.load_meta_info`,
    a restricted unpickler)."""
    if path.suffix != ".json":
        return layouts.load_meta_info(path)
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DpirError(f"{path} is not readable JSON ({e}); re-run `dpir prepare`") from None
    if not isinstance(meta, dict):
        raise DpirError(f"{path} holds a {type(meta).__name__}, expected a JSON object")
    return meta


def read_burst(sample: BurstSample) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Decode one burst as the official ``SyntheticBurstVal`` does, from either metadata format.

    Returns frames ``(N, 4, h, w)`` float32 (RGGB packed, value / 2^14), gt ``(3, 8h, 8w)`` float32
    linear RGB (value / 2^14) and the metadata dict (with ``burst_name`` added, as upstream).
    """
    frames = []
    for f in sample.frames:
        a = _read_cv2_order(f, 4)
        if frames and a.shape != frames[0].shape:
            raise DpirError(f"{f} is {a.shape[1]}x{a.shape[0]} but {sample.frames[0]} is "
                            f"{frames[0].shape[1]}x{frames[0].shape[0]}: frames of a burst must match")
        frames.append(a)
    gt = _read_cv2_order(sample.gt, 3)
    h, w = frames[0].shape[:2]
    if gt.shape[:2] != (8 * h, 8 * w):
        raise DpirError(f"{sample.gt} is {gt.shape[1]}x{gt.shape[0]}; expected {8 * w}x{8 * h} "
                        f"(8x the {w}x{h} RAW frames: 2x for the RGGB packing times the 4x SR factor)")
    meta = _read_meta(sample.meta)
    meta["burst_name"] = sample.id
    x = torch.from_numpy(np.stack(frames).astype(np.float32)).permute(0, 3, 1, 2) / BURST_SCALE
    y = torch.from_numpy(gt.astype(np.float32)).permute(2, 0, 1) / BURST_SCALE
    return x.contiguous(), y.contiguous(), meta
