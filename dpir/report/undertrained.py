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


def footnotes(flags: Sequence[dict], labels: dict[str, str] | None = None) -> list[str]:
    """The table's footnote lines, one per flagged row (its metrics joined)."""
    labels = labels or {}
    lines: dict[str, list[str]] = {}
    for f in flags:
        iv = f["interval"]
        lines.setdefault(f["method"], []).append(
            f"{f['metric']} {format_interval(iv, 2, signed=True)} dB vs `{f['baseline']}`")
    return [f"**Under-trained**: {labels.get(m, m)} (`{m}`) scores below the trivial baseline on the paired "
            f"per-image differences ({'; '.join(parts)}); its numbers reflect this scale's short training, "
            f"not the method." for m, parts in lines.items()]


__all__ = ["footnotes", "trivial_baseline", "undertrained"]
