"""Flag rows whose networks, trained here, do not beat their task's trivial baseline.

A network trained for a few hundred CPU steps can be worse than doing nothing clever (bicubic
upsampling, the blurry input, one demosaicked frame).  Printing its numbers beside the others as if it
were the method would misinform, so every row whose networks this workflow trains is compared, on the
paired per-image differences (:func:`dpir.report.paired.paired_difference`), with the task's trivial
baseline row on each PSNR metric of the task; a row whose whole 95 % interval lies below the baseline
is flagged "under-trained" in a footnote of its table, with the interval.

The baseline row is ``report.trivial_baseline.<task>`` when set, else the task's first method of kind
``bicubic`` / ``burst_bicubic`` (for deblurring, the ``bicubic`` kind is the observation itself).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dpir.report.paired import format_interval, paired_difference, score_matrix

#: method kinds whose rows are the trivial baselines (no training)
TRIVIAL_KINDS = ("bicubic", "burst_bicubic")
#: method kinds that never run a network this workflow trained
UNTRAINED_KINDS = ("bicubic", "burst_bicubic", "published", "outputs", "python", "checkpoint")


def trivial_baseline(config: dict, task: str) -> str | None:
    """The trivial baseline row of ``task`` (see the module docstring), or None."""
    methods = config["tasks"][task]["methods"]
    chosen = ((config.get("report") or {}).get("trivial_baseline") or {}).get(task)
    if chosen:
        return chosen if chosen in methods else None
    return next((name for name, m in methods.items() if m.get("kind") in TRIVIAL_KINDS), None)


def _trained_here(config: dict, method_cfg: dict) -> bool:
    from dpir.workflow_facts import is_official, networks_of

    if method_cfg.get("kind") in UNTRAINED_KINDS:
        return False
    nets = [n for n in networks_of(method_cfg) if n in config["networks"]]
    return any(not is_official(config, n) for n in nets)


def undertrained(config: dict, task: str, records: Sequence[dict]) -> list[dict[str, Any]]:
    """One entry per (row, PSNR metric) whose paired difference to the trivial baseline lies wholly below
    zero: ``{"method", "baseline", "metric", "interval"}``.  ``records``: the task's results of one dataset."""
    base = trivial_baseline(config, task)
    if base is None:
        return []
    tcfg = config["tasks"][task]
    metrics = [m for m in tcfg.get("metrics") or [] if m.startswith("psnr")]
    by_method: dict[str, list[dict]] = {}
    for r in records:
        by_method.setdefault(r["method"], []).append(r)
    base_runs = by_method.get(base)
    if not base_runs:
        return []
    flags = []
    for name, runs in by_method.items():
        mcfg = tcfg["methods"].get(name)
        if name == base or mcfg is None or not _trained_here(config, mcfg):
            continue
        for metric in metrics:
            images = sorted(set.intersection(*(set(((r.get("metrics") or {}).get(metric) or {}).get("per_image") or {})
                                               for r in runs + base_runs)))
            a, b = score_matrix(runs, metric, images), score_matrix(base_runs, metric, images)
            if a is None or b is None or len(images) < 2:
                continue
            iv = paired_difference(a, b)
            if iv.high < 0:
                flags.append({"method": name, "baseline": base, "metric": metric, "interval": iv})
    return flags


#: an orthonormal opponent-colour basis of RGB: one luminance axis and two chroma axes, so the squared
#: error splits exactly into a luminance part and a chroma part (BT.601 Y is not orthogonal to its Cb/Cr)
OPPONENT = np.array([[1, 1, 1], [1, -1, 0], [1, 1, -2]], dtype=np.float64)
OPPONENT /= np.linalg.norm(OPPONENT, axis=1, keepdims=True)


def error_split(outputs: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> dict[str, Any]:
    """Where a row's RGB squared error lies, over its images (HxWx3 arrays in [0, 1]): ``offset`` (the
    per-channel mean error over all pixels, R, G, B), ``offset_share`` (the part of the mean squared error
    that this constant offset explains: a colour cast), ``chroma_share`` (the part on the two chroma axes
    of :data:`OPPONENT`: colour errors that a Y-channel PSNR does not see) and ``mse``."""
    err = np.concatenate([(o - t).reshape(-1, 3) for o, t in zip(outputs, targets)])
    mse = float(np.mean(np.sum(err ** 2, axis=1)))
    offset = err.mean(axis=0)
    opp = err @ OPPONENT.T
    chroma = float(np.mean(np.sum(opp[:, 1:] ** 2, axis=1)))
    return {"offset": [float(v) for v in offset], "offset_share": float(np.sum(offset ** 2)) / mse if mse else 0.0,
            "chroma_share": chroma / mse if mse else 0.0, "mse": mse / 3}


def cause(split: dict[str, Any]) -> str:
    """A sentence naming what dominates the error (:func:`error_split`), with its numbers."""
    r, g, b = (f"{v:+.3f}" for v in split["offset"])
    numbers = (f"{100 * split['offset_share']:.0f} % of its RGB squared error is a constant per-channel offset "
               f"(R {r}, G {g}, B {b} on [0, 1]), {100 * split['chroma_share']:.0f} % lies on the chroma axes")
    if split["offset_share"] >= 0.5:
        return f"a colour cast: {numbers}"
    if split["chroma_share"] >= 0.5:
        return f"colour error beyond a cast (chroma noise or wrong hues, which a Y-channel PSNR hides): {numbers}"
    return f"luminance and structure error, not colour: {numbers}"


def diagnose(config: dict, task: str, dataset: str, runs: Sequence[dict]) -> dict[str, Any] | None:
    """:func:`error_split` of a row's first seed against the ground truth (the task's ``crop_border``
    removed), read from the restored PNGs; None when they are not on disk or do not match in shape."""
    from dpir import paths
    from dpir.report.crops import _read

    if not runs:
        return None
    run = min(runs, key=lambda r: r["seed"])
    border = int(config["tasks"][task].get("crop_border") or 0)
    outs, gts = [], []
    for image in run.get("images") or []:
        out = paths.restored_dir(config, task, dataset, run["method"], run["seed"]) / f"{image}.png"
        gt = paths.prepared(config, task, dataset) / "test" / "gt" / f"{image}.png"
        if not (out.exists() and gt.exists()):
            return None
        o, t = _read(out), _read(gt)
        if o.shape != t.shape or o.ndim != 3 or o.shape[-1] != 3:
            return None
        if border:
            o, t = o[border:-border, border:-border], t[border:-border, border:-border]
        outs.append(o)
        gts.append(t)
    return error_split(outs, gts) if outs else None


def footnotes(flags: Sequence[dict], labels: dict[str, str] | None = None) -> list[str]:
    """The table's footnote lines, one per flagged row (its metrics joined, and the error's split when
    the flag carries one: ``flag["split"]``, :func:`error_split`)."""
    labels = labels or {}
    lines: dict[str, list[str]] = {}
    splits: dict[str, dict] = {}
    for f in flags:
        iv = f["interval"]
        lines.setdefault(f["method"], []).append(
            f"{f['metric']} {format_interval(iv, 2, signed=True)} dB vs `{f['baseline']}`")
        if f.get("split"):
            splits[f["method"]] = f["split"]
    out = []
    for m, parts in lines.items():
        why = f" What dominates its error: {cause(splits[m])}." if m in splits else ""
        out.append(f"**Under-trained**: {labels.get(m, m)} (`{m}`) scores below the trivial baseline on the "
                   f"paired per-image differences ({'; '.join(parts)}); its numbers reflect this scale's short "
                   f"training, not the method.{why}")
    return out


__all__ = ["OPPONENT", "cause", "diagnose", "error_split", "footnotes", "trivial_baseline", "undertrained"]
