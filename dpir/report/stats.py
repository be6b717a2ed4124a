"""Statistics of the ablation tables over seeds: per-seed means on common images, and the verdict
lines that compare a difference (or a trend over tau) with seed noise.

Pure functions of results records and numbers; nothing here reads a config or a file.  A difference
counts only when it is larger than 2 * sqrt(sd_a^2 + sd_b^2), the standard deviations over seeds of
the two rows (0 for a deterministic or single-seed row, so then any difference counts).
"""
from __future__ import annotations

import math
import statistics


def common_images(runs: dict[str, list[dict]]) -> list[str]:
    """The image ids that every run of every row scored, sorted (rows may run on different subsets)."""
    sets = [set(r["images"]) for rs in runs.values() for r in rs]
    return sorted(set.intersection(*sets)) if sets else []


def seed_stats(runs: list[dict], metric: str, images: list[str]) -> tuple[float, float, int] | None:
    """(mean over seeds, sample std over seeds (0 for one seed), seeds) of the per-seed mean over ``images``."""
    per_seed = []
    for r in runs:
        e = r["metrics"].get(metric)
        if not e or not e.get("available"):
            return None
        vals = [e["per_image"][i] for i in images if i in e["per_image"] and math.isfinite(e["per_image"][i])]
        if not vals:
            return None
        per_seed.append(statistics.fmean(vals))
    if not per_seed:
        return None
    return statistics.fmean(per_seed), (statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0), len(per_seed)


def difference_verdict(name_a: str, a: tuple, name_b: str, b: tuple, metric: str, lower_better: bool,
                       direction: str, paper: str, digits: int = 3) -> str:
    """One line: does ``a`` differ from ``b`` on ``metric`` the way the paper says (better / worse / close)?"""
    diff = a[0] - b[0]
    noise = 2 * math.sqrt(a[1] ** 2 + b[1] ** 2)
    gain = -diff if lower_better else diff          # > 0: a is better than b
    beyond = abs(diff) > noise
    fact = (f"{name_a} vs {name_b}: {metric} {a[0]:.{digits}f} vs {b[0]:.{digits}f} "
            f"(Δ {diff:+.{digits}f}, seed noise ±{noise:.{digits}f})")
    if round(diff, digits) == 0 and direction != "close":
        return f"- Paper: {paper}. Ours: {fact} → **inconclusive — no difference at this precision**."
    if direction == "close":
        ok = not (beyond and gain < 0)
        verdict = ("agrees" if ok else "disagrees") + (" — no loss beyond seed noise" if ok else
                                                        " — a loss beyond seed noise")
    else:
        want = 1 if direction == "better" else -1
        if gain * want > 0:
            verdict = "agrees" + ("" if beyond else " in direction, but within seed noise")
        elif gain == 0:
            verdict = "inconclusive — no difference"
        else:
            verdict = "disagrees" + ("" if beyond else " in direction, within seed noise")
    return f"- Paper: {paper}. Ours: {fact} → **{verdict}**."


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    def ranks(v):
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2 + 1
            i = j + 1
        return r
    rx, ry = ranks(xs), ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    num = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    den = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
    return num / den if den else 0.0


def trend_verdict(taus: list[int], values: list[float], metric: str, lower_better: bool, trend: str, paper: str,
                  stds: list[float] | None = None) -> str:
    """``trend`` is the paper's direction of the *quality* as tau grows (increasing = gets better).
    A sweep whose whole range is within 2 x the largest seed std is inconclusive, whatever its ranks."""
    rho = spearman([float(t) for t in taus], values)
    quality_rho = -rho if lower_better else rho
    want = 1 if trend == "increasing" else -1
    pairs = ", ".join(f"τ={t}: {v:.4g}" for t, v in zip(taus, values))
    noise = 2 * max(stds or [0.0])
    if stds and max(values) - min(values) <= noise:
        return (f"- Paper: {paper}. Ours: {metric} over τ ({pairs}) spans {max(values) - min(values):.2g}, within "
                f"seed noise ±{noise:.2g} → **inconclusive — τ makes no measurable difference here**.")
    if quality_rho * want > 0:
        verdict = "agrees" + (" (monotone)" if abs(rho) == 1 else " (not monotone)")
    elif rho == 0:
        verdict = "inconclusive — no trend"
    else:
        verdict = "disagrees"
    return (f"- Paper: {paper}. Ours: {metric} over τ ({pairs}); Spearman ρ(τ, {metric}) = {rho:+.2f} → **{verdict}**.")
