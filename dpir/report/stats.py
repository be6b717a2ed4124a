"""Statistics of the ablation tables: per-row cells with bootstrap intervals over images and seeds, and
the verdict lines that check the paper's stated differences (or trends over tau) on *paired* per-image
differences (:mod:`dpir.report.paired`).

Pure functions of results records and numbers; nothing here reads a config or a file.  A comparison is
made on the images both rows scored (finite in every seed of both), never on two means: the per-image
difference cancels how hard each image is.  A direction claim (better / worse) agrees only when the 95 %
interval of the paired difference is wholly on the claimed side; a "close" claim is an equivalence test
against the metric's margin (``report.margins``), so noise alone can never produce "close"; a direction
claim whose interval lies inside that margin is "no difference beyond the margin", never a direction.
A claim that names a metric the run did not compute (LPIPS offline, GMSD standing in) is said to be on
the stand-in, and a claim of a size is not checked on a stand-in (:func:`on_stand_in`).
"""
from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, replace

from dpir.report import paired as P


@dataclass(frozen=True)
class Verdict:
    """One checked claim, structured (the claims table at the top of the report reads these, never the
    Markdown): the paper's words, the bold verdict text, its first word(s) (``kind``: agrees, disagrees,
    inconclusive, not checked), the paired difference's interval as printed (with unit) and its sample,
    and the rendered line itself."""
    claim: str
    verdict: str
    kind: str
    interval: str = ""
    n: str = ""
    metric: str | None = None
    rows: tuple[str, ...] = ()
    half_width: float | None = None    # of the paired interval, in the metric's unit (None: no interval)
    line: str = ""
    stand_in: str = ""                  # the metric the claim names when ``metric`` only stands in for it ("LPIPS")

    def with_rows(self, *rows: str) -> Verdict:
        return replace(self, rows=tuple(rows))


def _kind(verdict: str) -> str:
    return verdict.split(" — ")[0].split(" (")[0]


def _made(paper: str, fact: str, verdict: str, metric: str | None, iv: P.Interval | None = None,
          interval: str = "", n: str = "") -> Verdict:
    half = iv.half_width if iv is not None and not math.isnan(iv.low) else None
    return Verdict(paper, verdict, _kind(verdict), interval, n, metric, (), half,
                   f"- Paper: {paper}. Ours: {fact} → **{verdict}**.")


def common_images(runs: dict[str, list[dict]]) -> list[str]:
    """The image ids that every run of every row scored, sorted (rows may run on different subsets)."""
    sets = [set(r["images"]) for rs in runs.values() for r in rs]
    return sorted(set.intersection(*sets)) if sets else []


def finite_images(runs: list[dict], metric: str, images: list[str]) -> list[str]:
    """The ids of ``images`` with a finite ``metric`` score in every run of ``runs`` (PSNR is +inf on an
    identical image; such an image is left out of the mean, as in the results file)."""
    out = []
    for i in images:
        ok = True
        for r in runs:
            e = (r.get("metrics") or {}).get(metric) or {}
            v = (e.get("per_image") or {}).get(i)
            if v is None or not math.isfinite(v):
                ok = False
                break
        if ok:
            out.append(i)
    return out


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


def cell_interval(runs: list[dict], metric: str, images: list[str],
                  resamples: int = P.RESAMPLES) -> P.Interval | None:
    """The mean of a row on ``images`` (its finite ones) and its 95 % bootstrap interval over images and
    seeds, or None when the metric is missing."""
    imgs = finite_images(runs, metric, images)
    m = P.score_matrix(runs, metric, imgs) if imgs else None
    return P.mean_ci(m, resamples=resamples) if m is not None else None


def with_unit(metric: str) -> str:
    """``" dB"`` for a PSNR preset, "" for a unitless metric: the suffix of a number of ``metric``."""
    from dpir.metrics import unit_of

    u = unit_of(metric)
    return f" {u}" if u else ""


def paired_comparison(runs_a: list[dict], runs_b: list[dict], metric: str, images: list[str]
                      ) -> tuple[P.Interval, P.Interval, P.Interval] | None:
    """(cell of a, cell of b, paired difference a - b) on the ``images`` finite in every run of both rows,
    or None when either row lacks the metric there."""
    imgs = finite_images([*runs_a, *runs_b], metric, images)
    if not imgs:
        return None
    a, b = P.score_matrix(runs_a, metric, imgs), P.score_matrix(runs_b, metric, imgs)
    if a is None or b is None:
        return None
    return P.mean_ci(a), P.mean_ci(b), P.paired_difference(a, b)


def _sample(iv: P.Interval, seeds_a: int, seeds_b: int) -> str:
    return f"{iv.n_images} image(s) × {seeds_a} vs {seeds_b} seed(s)"


def difference_verdict(name_a: str, runs_a: list[dict], name_b: str, runs_b: list[dict], images: list[str],
                       metric: str, lower_better: bool, direction: str, paper: str, digits: int = 3,
                       margins: dict | None = None) -> str:
    """The line of :func:`difference_check`."""
    return difference_check(name_a, runs_a, name_b, runs_b, images, metric, lower_better, direction, paper, digits,
                            margins).line


def difference_check(name_a: str, runs_a: list[dict], name_b: str, runs_b: list[dict], images: list[str],
                     metric: str, lower_better: bool, direction: str, paper: str, digits: int = 3,
                     margins: dict | None = None) -> Verdict:
    """Does ``a`` differ from ``b`` on ``metric`` the way the paper says (better / worse / close), decided on
    the paired per-image differences over ``images`` (the images both rows scored)?  The verdict and its line.

    better / worse: :func:`dpir.report.paired.direction_verdict` (the whole interval on one side); an
    interval wholly inside the metric's equivalence margin is "disagrees — no difference beyond ±margin"
    whichever side it is on: the very interval that makes a "close" claim agree cannot also show a
    stated difference (a 0.004 dB shift printed "-0.00 [-0.01, -0.00]" never reads as a direction).
    close: an equivalence test (:func:`dpir.report.paired.equivalence_verdict`): "agrees" only when the
    whole interval lies inside ``±margin``; a large improvement is "not close" and says so.
    """
    got = paired_comparison(runs_a, runs_b, metric, images)
    if got is None:
        return _made(paper, f"`{metric}` missing for a row on their common images", "not checked", metric)
    ca, cb, iv = got
    unit = with_unit(metric)
    margin = P.margin_for(metric, margins) if direction == "close" else None
    interval = f"{P.format_interval(iv, digits, signed=True)}{unit}"
    n = _sample(iv, len(runs_a), len(runs_b))
    fact = (f"{name_a} vs {name_b}: {metric} {ca.estimate:.{digits}f} vs {cb.estimate:.{digits}f}{unit}; "
            f"paired Δ {interval}")
    tail = f" (95 % bootstrap CI over {n}"

    def made(verdict):
        return _made(paper, fact, verdict, metric, iv, interval, n)
    if direction == "close":
        if margin is None:
            fact += tail + ")"
            return made(f"not checked — no equivalence margin for `{metric}`: declare one under `report.margins`")
        tail += f"; equivalence margin ±{margin:g}{unit}"
    fact += tail + ")"
    if math.isnan(iv.low):
        return made("inconclusive — one common image gives no interval")
    if direction == "close":
        v = P.equivalence_verdict(iv, margin)
        if v == "close":
            verdict = f"agrees — equivalent within ±{margin:g}{unit}"
        elif v == "not close":
            g, _, _ = P.gain(iv, lower_better)
            verdict = f"disagrees — {'better' if g > 0 else 'worse'} by more than ±{margin:g}{unit}"
        else:
            verdict = f"inconclusive — the interval is not within ±{margin:g}{unit}"
        return made(verdict)
    margin = P.margin_for(metric, margins)
    if margin is not None and P.equivalence_verdict(iv, margin) == "close":
        # the same interval that makes a "close" claim agree: no difference the report counts as one, whichever
        # side the estimate is on (so "-0.00 [-0.01, -0.00]" never reads as "disagrees" or "agrees")
        return made(f"disagrees — no difference beyond ±{margin:g}{unit}: equivalent within the margin")
    lo, hi = round(iv.low, digits), round(iv.high, digits)
    if lo == 0 and hi == 0:
        return made("inconclusive — no difference at this precision")
    v = P.direction_verdict(iv, lower_better, direction)
    if v == "inconclusive":
        v = "inconclusive — the interval includes no difference"
    return made(v)


#: a size stated in a claim's words: "about 30%", "about +0.2 dB", "2x-100x"
_MAGNITUDE = re.compile(r"(?:(?:about|approximately|roughly|~)\s*)?[+\-−]?\d+(?:\.\d+)?\s*(?:%|dB\b|[x×](?!\w))"
                        r"(?:\s*[-–]\s*\d+(?:\.\d+)?\s*[x×](?!\w))?", re.IGNORECASE)


def claimed_magnitude(paper: str) -> str | None:
    """The size a claim states (``"about 30%"``, ``"about +0.2 dB"``, ``"2x-100x"``), or None for a claim of a
    direction alone ("raises PSNR")."""
    m = _MAGNITUDE.search(paper or "")
    return m.group(0).strip() if m else None


def claimed_range(paper: str) -> tuple[float, float] | None:
    """The range of a ratio a claim states (``"2x-100x fewer"`` -> ``(2.0, 100.0)``), or None."""
    m = re.search(r"(\d+(?:\.\d+)?)\s*[x×]\s*[-–]\s*(\d+(?:\.\d+)?)\s*[x×](?!\w)", paper or "")
    return (float(m.group(1)), float(m.group(2))) if m else None


def _relined(v: Verdict, verdict: str, note: str = "") -> str:
    """``v``'s line with ``verdict`` in bold, and ``note`` added to what we measured (the line is
    ``"- Paper: … Ours: … → **verdict**."``, :func:`_made`)."""
    return f"{v.line.rsplit(' → **', 1)[0]}{'; ' + note if note else ''} → **{verdict}**."


def on_stand_in(v: Verdict, named: str, magnitude: str | None = None) -> Verdict:
    """``v``, decided on a metric (``v.metric``) that only stands in for the one the claim names (``named``:
    LPIPS when its weights are not cached offline and GMSD stands in), said as such.  A claim of a size
    (``magnitude``: "about 30 % worse LPIPS") is not checked on a stand-in -- a 0.7 % GMSD change says
    nothing about a 30 % LPIPS change -- so its verdict is "not checked (stand-in metric)", with the
    direction on the stand-in beside it; a claim of a direction keeps its verdict, marked as on the stand-in."""
    if v.kind == "not checked":
        return v
    note = f"`{v.metric}` stands in for {named}, which this run did not compute"
    if magnitude:
        verdict = (f"not checked (stand-in metric) — the claimed size ({magnitude}) is of {named}, which this run did "
                   f"not compute; the direction on the stand-in `{v.metric}`: {v.verdict}")
        kind = "not checked"
    else:
        verdict, kind = f"{v.verdict}; on the stand-in `{v.metric}`, not {named}", v.kind
    return replace(v, verdict=verdict, kind=kind, stand_in=named, line=_relined(v, verdict, note))


def direction_only(v: Verdict, magnitude: str) -> Verdict:
    """``v`` for a claim that states a size (``magnitude``) as well as a direction: the verdict is on the
    direction, and says that the size was not tested."""
    if v.kind == "not checked":
        return v
    verdict = f"{v.verdict}; direction only: the claimed size ({magnitude}) is not tested"
    return replace(v, verdict=verdict, line=_relined(v, verdict))


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
                  ends: P.Interval | None = None, digits: int = 3, margins: dict | None = None) -> str:
    """The line of :func:`trend_check`."""
    return trend_check(taus, values, metric, lower_better, trend, paper, ends, digits, margins).line


def trend_check(taus: list[int], values: list[float], metric: str, lower_better: bool, trend: str, paper: str,
                ends: P.Interval | None = None, digits: int = 3, margins: dict | None = None) -> Verdict:
    """``trend`` is the paper's direction of the *quality* as tau grows (increasing = gets better).

    The ranks decide the direction (Spearman's rho); ``ends`` -- the paired difference of the largest-tau
    row minus the smallest-tau row on their common images -- decides whether the sweep moves at all: an
    interval wholly inside the metric's equivalence margin is "no change beyond the margin" (the sweep is
    flat by the same test that makes a "close" claim agree; 0.004 dB is not a trend), and one that
    includes 0 makes the verdict inconclusive, whatever the ranks."""
    rho = spearman([float(t) for t in taus], values)
    quality_rho = -rho if lower_better else rho
    want = 1 if trend == "increasing" else -1
    pairs = ", ".join(f"τ={t}: {v:.4g}" for t, v in zip(taus, values))
    unit = with_unit(metric)
    interval = n = ""
    if ends is not None:
        interval = f"{P.format_interval(ends, digits, signed=True)}{unit}"
        n = f"{ends.n_images} image(s)"
        span = (f"paired Δ(τ={taus[-1]} − τ={taus[0]}) {interval} "
                f"(95 % bootstrap CI over {ends.n_images} image(s))")
        margin = P.margin_for(metric, margins)
        if margin is not None and P.equivalence_verdict(ends, margin) == "close":
            return _made(paper, f"{metric} over τ ({pairs}); {span}",
                         f"disagrees — τ changes {metric} by no more than ±{margin:g}{unit}: equivalent within the "
                         "margin", metric, ends, interval, n)
        if math.isnan(ends.low) or ends.low <= 0 <= ends.high:
            return _made(paper, f"{metric} over τ ({pairs}); {span} includes 0",
                         "inconclusive — τ makes no measurable difference here", metric, ends, interval, n)
        if round(ends.low, digits) == 0 and round(ends.high, digits) == 0:
            return _made(paper, f"{metric} over τ ({pairs}); {span}",
                         "inconclusive — τ makes no difference at this precision", metric, ends, interval, n)
        pairs += f"; {span}"
    if quality_rho * want > 0:
        verdict = "agrees" + (" (monotone)" if abs(rho) == 1 else " (not monotone)")
    elif rho == 0:
        verdict = "inconclusive — no trend"
    else:
        verdict = "disagrees"
    return _made(paper, f"{metric} over τ ({pairs}); Spearman ρ(τ, {metric}) = {rho:+.2f}", verdict, metric, ends,
                 interval, n)
