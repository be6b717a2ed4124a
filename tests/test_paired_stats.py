"""Paired bootstrap intervals and equivalence verdicts (dpir.report.paired) against cases whose answer
is known: the normal-theory interval of a mean, an exact constant shift, and verdicts that must come
out "inconclusive" when the noise is large and "close" / "agrees" when it is small."""
from __future__ import annotations

import math

import numpy as np
import pytest

from dpir.report import paired as P


def test_mean_interval_matches_the_normal_theory_interval():
    rng = np.random.default_rng(3)
    x = rng.normal(1.0, 2.0, size=(1, 400))
    iv = P.mean_ci(x)
    half = 1.959964 * x.std(ddof=1) / math.sqrt(x.shape[1])
    assert iv.estimate == pytest.approx(x.mean())
    assert iv.low == pytest.approx(x.mean() - half, abs=0.08 * half)
    assert iv.high == pytest.approx(x.mean() + half, abs=0.08 * half)
    assert (iv.n_images, iv.n_seeds) == (400, 1)


def test_intervals_are_the_same_on_every_run():
    x = np.random.default_rng(0).normal(size=(2, 20))
    assert P.mean_ci(x) == P.mean_ci(x)


def test_a_constant_shift_has_a_zero_width_paired_interval():
    rng = np.random.default_rng(1)
    a = rng.normal(28.0, 3.0, size=(1, 12))       # hard and easy images: large spread between images
    b = a + 0.3
    iv = P.paired_difference(a, b)
    assert iv.estimate == pytest.approx(-0.3)
    assert iv.low == pytest.approx(-0.3) and iv.high == pytest.approx(-0.3)
    # unpaired, the same data says nothing: the cells' intervals overlap
    ca, cb = P.mean_ci(a), P.mean_ci(b)
    assert ca.high > cb.low
    assert P.direction_verdict(iv, lower_better=False, direction="worse") == "agrees"
    assert P.direction_verdict(iv, lower_better=False, direction="better") == "disagrees"
    # lower-is-better metrics flip the sign of the gain
    assert P.direction_verdict(iv, lower_better=True, direction="better") == "agrees"


def test_seed_spread_widens_the_interval():
    rng = np.random.default_rng(2)
    base = rng.normal(0, 1, size=(1, 30))
    same = np.repeat(base, 3, axis=0)
    spread = same + np.array([[-1.0], [0.0], [1.0]])
    assert P.mean_ci(spread).half_width > 2 * P.mean_ci(same).half_width


def test_direction_needs_the_whole_interval_on_one_side():
    rng = np.random.default_rng(4)
    a = rng.normal(0, 1, size=(1, 10))
    noisy = P.paired_difference(a + rng.normal(0.05, 1.0, size=(1, 10)), a)
    clear = P.paired_difference(a + rng.normal(0.5, 0.01, size=(1, 10)), a)
    assert P.direction_verdict(noisy, False, "better") == "inconclusive"
    assert P.direction_verdict(clear, False, "better") == "agrees"


def test_equivalence_is_inconclusive_under_large_noise_and_close_under_small_noise():
    rng = np.random.default_rng(5)
    # two seeds of a stochastic row: the same images, a little seed noise each
    a = rng.normal(28, 2, size=(1, 50)) + rng.normal(0, 0.01, size=(2, 50))
    small = P.paired_difference(a + rng.normal(0.01, 0.01, size=a.shape), a)
    large = P.paired_difference(a[:, :10] + rng.normal(0.0, 1.0, size=(2, 10)), a[:, :10])
    far = P.paired_difference(a + rng.normal(0.5, 0.01, size=a.shape), a)
    assert P.equivalence_verdict(small, 0.1) == "close"
    assert P.equivalence_verdict(large, 0.1) == "inconclusive"      # noise alone never reads as "close"
    assert P.equivalence_verdict(far, 0.1) == "not close"
    assert P.noninferiority_verdict(small, False, 0.1) == "no loss"
    assert P.noninferiority_verdict(large, False, 0.1) == "inconclusive"
    assert P.noninferiority_verdict(P.paired_difference(a, a + 0.5), False, 0.1) == "a loss"


def test_one_image_and_one_seed_has_no_interval():
    iv = P.mean_ci(np.array([[3.0]]))
    assert iv.estimate == 3.0 and math.isnan(iv.low)
    assert P.equivalence_verdict(iv, 0.1) == "inconclusive"
    assert P.format_interval(iv, 2) == "3.00"


def test_score_matrix_reads_results_records():
    recs = [{"metrics": {"psnr_y": {"available": True, "per_image": {"a": 1.0, "b": 2.0}}}},
            {"metrics": {"psnr_y": {"available": True, "per_image": {"a": 3.0, "b": 4.0}}}}]
    assert P.score_matrix(recs, "psnr_y", ["b", "a"]).tolist() == [[2.0, 1.0], [4.0, 3.0]]
    assert P.score_matrix(recs, "psnr_y", ["c"]) is None
    assert P.score_matrix(recs, "ssim_y", ["a"]) is None


def test_margins_by_preset_then_family_then_default():
    assert P.margin_for("psnr_y") == 0.1
    assert P.margin_for("ssim_rgb", {"ssim": 0.01}) == 0.01
    assert P.margin_for("psnr_y", {"psnr_y": 0.05, "psnr": 0.2}) == 0.05
    assert P.margin_for("niqe") is None
    with pytest.raises(ValueError):
        P.equivalence_verdict(P.mean_ci(np.ones((1, 3))), 0)
