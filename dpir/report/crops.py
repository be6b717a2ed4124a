"""Zoomed crops of one test image for each (task, dataset) table: ground truth, the degraded input and
every method's restored image, the same window in each -- chosen where the methods differ most, by a
stated rule (:data:`RULE`), so the picture shows the differences the table measures rather than a
hand-picked flattering patch.

Reads only files: the results records (per-image scores), the restored PNGs under
``<out>/restored/<task>/<dataset>/<method>/seed<k>/<id>.png`` and the prepared ``test/gt`` and
``test/lq`` PNGs (:mod:`dpir.paths`).  numpy and Pillow only (a 96x96 image: milliseconds).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dpir import paths

#: the crop window's side: at most this, at most half the image's shorter side
CROP = 48
#: panels per row of the figure
COLUMNS = 7

RULE = ("Image: the test image with the largest spread (max − min) of per-image {metric} across the rows "
        "(each row's mean over its seeds), among the images every row scored (when rows run on fewer images "
        "share none: every row run on all of them); crop: the {side}x{side} "
        "window (on a stride-{stride} grid) with the largest mean per-pixel variance across the methods' "
        "outputs (the first seed of each row); panels enlarged with nearest-neighbour interpolation.")


@dataclass(frozen=True)
class Choice:
    image: str
    top: int
    left: int
    side: int
    stride: int
    metric: str
    spread: float


def _read(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0


def _psnr_metric(records: list[dict]) -> str | None:
    for r in records:
        for m, e in (r.get("metrics") or {}).items():
            if m.startswith("psnr") and e.get("available"):
                return m
    return None


def pick_image(runs: dict[str, list[dict]], metric: str, images: list[str]) -> tuple[str, float] | None:
    """(image id, spread) of the image whose per-image ``metric`` (mean over each row's seeds) varies most
    across rows; ties go to the first id in sorted order."""
    best = None
    for i in sorted(images):
        vals = []
        for rs in runs.values():
            v = [((r["metrics"].get(metric) or {}).get("per_image") or {}).get(i) for r in rs]
            v = [x for x in v if x is not None and np.isfinite(x)]
            if v:
                vals.append(float(np.mean(v)))
        if len(vals) >= 2 and (best is None or max(vals) - min(vals) > best[1]):
            best = (i, max(vals) - min(vals))
    return best


def pick_window(outputs: list[np.ndarray], side: int, stride: int) -> tuple[int, int]:
    """(top, left) of the ``side`` x ``side`` window on a ``stride`` grid whose mean per-pixel variance
    across ``outputs`` (arrays of the same (H, W, C) shape) is largest; ties go to the first (top, left)."""
    var = np.stack(outputs).var(axis=0).sum(axis=-1)
    integral = np.pad(var.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    h, w = var.shape
    best, where = -1.0, (0, 0)
    for top in range(0, h - side + 1, stride):
        for left in range(0, w - side + 1, stride):
            s = (integral[top + side, left + side] - integral[top, left + side]
                 - integral[top + side, left] + integral[top, left])
            if s > best + 1e-12:
                best, where = s, (top, left)
    return where


def crop_figure(config: dict, task: str, dataset: str, records: list[dict], order: list[str],
                fig_path: Path) -> tuple[Path, str] | None:
    """Write the crops figure of one (task, dataset); return (path, caption), or None when fewer than two
    methods have restored images to compare."""
    runs: dict[str, list[dict]] = {}
    for r in records:
        if not r.get("published"):
            runs.setdefault(r["method"], []).append(r)
    for rs in runs.values():
        rs.sort(key=lambda r: r["seed"])
    metric = _psnr_metric([r for rs in runs.values() for r in rs])
    if metric is None or len(runs) < 2:
        return None
    every = set.intersection(*(set(rs[0]["images"]) for rs in runs.values()))
    n_full = max(len(rs[0]["images"]) for rs in runs.values())
    full = set.intersection(*(set(rs[0]["images"]) for rs in runs.values() if len(rs[0]["images"]) == n_full))
    got = pick_image(runs, metric, sorted(every or full))
    if got is None:
        return None
    image, spread = got
    gt_path = paths.prepared(config, task, dataset) / "test" / "gt" / f"{image}.png"
    if not gt_path.exists():
        return None
    gt = _read(gt_path)
    methods, outs = [], []
    for m in [m for m in order if m in runs] + [m for m in runs if m not in order]:
        p = paths.restored_dir(config, task, dataset, m, runs[m][0]["seed"]) / f"{image}.png"
        if p.exists() and (o := _read(p)).shape == gt.shape:
            methods.append(m)
            outs.append(o)
    if len(outs) < 2:
        return None
    h, w = gt.shape[:2]
    side = max(8, min(CROP, min(h, w) // 2))
    stride = max(1, side // 4)
    top, left = pick_window(outs, side, stride)
    lq_path = paths.prepared(config, task, dataset) / "test" / "lq" / f"{image}.png"
    panels = [("ground truth", gt, None)]
    note = ""
    if lq_path.exists():
        lq = _read(lq_path)
        fy, fx = h // lq.shape[0], w // lq.shape[1]
        if fy >= 1 and fx >= 1 and lq.shape[0] * fy == h and lq.shape[1] * fx == w:
            panels.append(("input" + (f" (×{fy} nearest)" if fy > 1 else ""), np.repeat(np.repeat(lq, fy, 0), fx, 1),
                           None))
    else:
        note = (" The input panel is left out: the prepared data have no `test/lq` image (a burst's observation is "
                "a set of raw frames).")
    for m, o in zip(methods, outs):
        r = runs[m][0]
        v = ((r["metrics"].get(metric) or {}).get("per_image") or {}).get(image)
        panels.append((r["label"], o, v))
    _draw(panels, gt, (top, left, side), fig_path, f"{task} / {dataset}: `{image}`", metric)
    caption = (f"Zoomed crops of `{image}` ({h}x{w}, window at row {top}, column {left}); per-image {metric} "
               f"under each restored panel (spread across rows: {spread:.2f}). Rule — "
               + RULE.format(metric=metric, side=side, stride=stride) + note)
    return fig_path, caption


def _draw(panels: list, gt: np.ndarray, window: tuple[int, int, int], path: Path, title: str, metric: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from dpir.report.plots import _save

    top, left, side = window
    n = len(panels) + 1
    cols = min(n, COLUMNS)
    rows = -(-n // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.2 * rows + 0.2), dpi=110, squeeze=False)
    axes = list(grid.ravel())
    for ax in axes[n:]:
        ax.axis("off")
    axes[0].imshow(gt)
    axes[0].add_patch(Rectangle((left - 0.5, top - 0.5), side, side, fill=False, edgecolor="red", linewidth=1.2))
    axes[0].set_title("window", fontsize=7)
    for ax, (name, img, v) in zip(axes[1:], panels):
        ax.imshow(img[top:top + side, left:left + side], interpolation="nearest")
        ax.set_title(name, fontsize=7)
        if v is not None:
            ax.set_xlabel(f"{v:.2f}" if np.isfinite(v) else "inf", fontsize=7)
    for ax in axes[:n]:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{title} (label: {metric} of this image)", fontsize=8)
    return _save(fig, path)
