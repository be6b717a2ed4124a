"""Paired evidence for the report: bootstrap confidence intervals over images (and seeds) and verdicts
decided on per-image differences, with equivalence margins for "close" claims.

Why paired: two rows restored on the same images differ far less from image to image than either
row's scores do (a hard image is hard for every method), so the per-image difference is the strongest
evidence a benchmark has.  Comparing two means against the spread of seed means ignores that pairing
and, worse, turns "no difference beyond the noise" into "no loss" whenever the noise is large.  Here:

- a cell's interval is a percentile bootstrap of its mean over images, and over seeds for a row with
  several seeds (images and seeds are resampled independently: a crossed design, since every seed
  restores every image) -- :func:`mean_ci`;
- a comparison's interval is the bootstrap of the mean per-image difference of the two rows on their
  common images (the same image indices for both rows in each resample; each row's seeds resampled on
  their own) -- :func:`paired_difference`;
- a direction claim ("a is better than b") agrees when the whole interval of the gain is on the
  claimed side, disagrees when it is on the other side, and is inconclusive otherwise
  (:func:`direction_verdict`);
- an equivalence claim ("a is close to b", "no loss") is a test against a declared margin: "close" only
  when the whole interval lies inside ``(-margin, +margin)`` (two one-sided tests at the same level);
  "not close" when it lies wholly outside; otherwise inconclusive (:func:`equivalence_verdict`).  So
  noise alone can never produce "close": a wide interval is inconclusive.

The resampling is ``scipy.stats.bootstrap`` (percentile intervals, a fixed seed, so the report is the
same on every run); nothing here reads a file or a config.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: confidence level of every interval in the report
CONFIDENCE = 0.95
#: bootstrap resamples per interval
RESAMPLES = 2000
#: the bootstrap's random seed: the same records give the same intervals on every run
BOOTSTRAP_SEED = 0
#: equivalence margins by metric family, used when the config declares none (``report.margins``)
DEFAULT_MARGINS = {"psnr": 0.1, "ssim": 0.005, "lpips": 0.005, "topiq": 0.01, "gmsd": 0.002}


@dataclass(frozen=True)
class Interval:
    """A statistic and its bootstrap interval, with the sample it rests on."""
    estimate: float
    low: float
    high: float
    n_images: int
    n_seeds: int          # seeds of the row (comparisons: "a x b")
    confidence: float = CONFIDENCE

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def score_matrix(runs: Sequence[dict], metric: str, images: Sequence[str]) -> np.ndarray | None:
    """The (seeds, images) per-image scores of one row's runs (results records), or None when a run lacks
    the metric or one of ``images``."""
    rows = []
    for r in runs:
        e = (r.get("metrics") or {}).get(metric)
        if not e or not e.get("available"):
            return None
        per = e.get("per_image") or {}
        vals = [per.get(i) for i in images]
        if any(v is None or not math.isfinite(v) for v in vals):
            return None
        rows.append(vals)
    return np.asarray(rows, dtype=np.float64) if rows else None


def _bootstrap(statistic, samples: list[np.ndarray], confidence: float, resamples: int, seed: int):
    from scipy.stats import bootstrap

    res = bootstrap(tuple(samples), statistic, vectorized=False, paired=False, confidence_level=confidence,
                    n_resamples=resamples, method="percentile", random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def mean_ci(matrix: np.ndarray, *, confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
            seed: int = BOOTSTRAP_SEED) -> Interval:
    """The mean of a (seeds, images) score matrix and its bootstrap interval over images and seeds."""
    m = np.asarray(matrix, dtype=np.float64)
    n_seeds, n_images = m.shape
    est = float(m.mean())
    if n_images < 2 and n_seeds < 2:
        return Interval(est, math.nan, math.nan, n_images, n_seeds, confidence)
    axes = [a for a, n in (("images", n_images), ("seeds", n_seeds)) if n >= 2]

    def stat(*idx):
        got = dict(zip(axes, idx))
        sub = m[got["seeds"]] if "seeds" in got else m
        sub = sub[:, got["images"]] if "images" in got else sub
        return sub.mean()

    low, high = _bootstrap(stat, [np.arange(n_images if a == "images" else n_seeds) for a in axes],
                           confidence, resamples, seed)
    return Interval(est, low, high, n_images, n_seeds, confidence)


def paired_difference(a: np.ndarray, b: np.ndarray, *, confidence: float = CONFIDENCE,
                      resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> Interval:
    """Mean per-image difference ``a - b`` of two (seeds, images) matrices over the same images (columns
    in the same order) and its bootstrap interval: images resampled together (the pairing), each row's
    seeds on their own."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"paired rows need the same images: {a.shape[1]} vs {b.shape[1]}")
    n_images = a.shape[1]
    est = float(a.mean() - b.mean())
    axes = [k for k, n in (("images", n_images), ("seeds_a", a.shape[0]), ("seeds_b", b.shape[0])) if n >= 2]
    if not axes or n_images < 2:
        return Interval(est, math.nan, math.nan, n_images, a.shape[0] * b.shape[0], confidence)
    sizes = {"images": n_images, "seeds_a": a.shape[0], "seeds_b": b.shape[0]}

    def stat(*idx):
        got = dict(zip(axes, idx))
        img = got.get("images", slice(None))
        sa = a[got["seeds_a"]] if "seeds_a" in got else a
        sb = b[got["seeds_b"]] if "seeds_b" in got else b
        return sa[:, img].mean() - sb[:, img].mean()

    low, high = _bootstrap(stat, [np.arange(sizes[k]) for k in axes], confidence, resamples, seed)
    return Interval(est, low, high, n_images, a.shape[0] * b.shape[0], confidence)


def gain(interval: Interval, lower_better: bool) -> tuple[float, float, float]:
    """(estimate, low, high) of the improvement of ``a`` over ``b`` (the difference, negated when lower is
    better), so that > 0 always means "a is better"."""
    if not lower_better:
        return interval.estimate, interval.low, interval.high
    return -interval.estimate, -interval.high, -interval.low


def direction_verdict(interval: Interval, lower_better: bool, direction: str) -> str:
    """``"agrees"``, ``"disagrees"`` or ``"inconclusive"`` for the claim that ``a`` is ``direction``
    ("better" or "worse") than ``b``, from the interval of the paired difference ``a - b``."""
    if direction not in ("better", "worse"):
        raise ValueError(f"direction must be 'better' or 'worse', got {direction!r}")
    _, low, high = gain(interval, lower_better)
    if math.isnan(low):
        return "inconclusive"
    want = 1 if direction == "better" else -1
    if (low > 0 and want > 0) or (high < 0 and want < 0):
        return "agrees"
    if (low > 0 and want < 0) or (high < 0 and want > 0):
        return "disagrees"
    return "inconclusive"


def equivalence_verdict(interval: Interval, margin: float) -> str:
    """``"close"`` when the whole interval of ``a - b`` lies inside ``(-margin, margin)``, ``"not close"``
    when it lies wholly outside it, else ``"inconclusive"`` (a wide interval never reads as close)."""
    if not margin > 0:
        raise ValueError(f"an equivalence margin must be positive, got {margin!r}")
    low, high = interval.low, interval.high
    if math.isnan(low):
        return "inconclusive"
    if -margin < low and high < margin:
        return "close"
    if low >= margin or high <= -margin:
        return "not close"
    return "inconclusive"


def noninferiority_verdict(interval: Interval, lower_better: bool, margin: float) -> str:
    """``"no loss"`` when the whole interval of the gain of ``a`` over ``b`` is above ``-margin``, ``"a loss"``
    when it is wholly below, else ``"inconclusive"``."""
    if not margin > 0:
        raise ValueError(f"a non-inferiority margin must be positive, got {margin!r}")
    _, low, high = gain(interval, lower_better)
    if math.isnan(low):
        return "inconclusive"
    if low > -margin:
        return "no loss"
    if high < -margin:
        return "a loss"
    return "inconclusive"


def margin_for(metric: str, margins: dict | None = None) -> float | None:
    """The equivalence margin of a metric: the config's ``report.margins`` by preset name, then by family
    (the preset's prefix before ``_``: ``psnr_y`` -> ``psnr``), then :data:`DEFAULT_MARGINS`."""
    for table in (margins or {}, DEFAULT_MARGINS):
        if metric in table:
            return float(table[metric])
        family = metric.split("_")[0].split(":")[-1]
        if family in table:
            return float(table[family])
    return None


def format_interval(iv: Interval, digits: int, signed: bool = False) -> str:
    """``"28.41 [28.30, 28.52]"`` (or the estimate alone when no interval exists); ``signed`` for
    differences: ``"+0.12 [-0.03, +0.27]"``."""
    s = "+" if signed else ""
    if math.isnan(iv.low):
        return f"{iv.estimate:{s}.{digits}f}"
    return f"{iv.estimate:{s}.{digits}f} [{iv.low:{s}.{digits}f}, {iv.high:{s}.{digits}f}]"
