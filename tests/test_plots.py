"""Figures show intervals, comparable points only, and never draw sub-margin noise as a trend."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from dpir.report import plots  # noqa: E402


def test_error_bars_are_the_bootstrap_intervals_else_the_seed_std():
    rows = [{"psnr_y": 28.0, "psnr_y_ci_low": 27.5, "psnr_y_ci_high": 28.25, "psnr_y_std": 9.0},
            {"psnr_y": 30.0, "psnr_y_std": 0.1},
            {"psnr_y": 31.0, "psnr_y_ci_low": float("nan"), "psnr_y_ci_high": float("nan")}]
    assert plots._err(rows, "psnr_y") == [[0.5, 0.1, 0.0], [0.25, 0.1, 0.0]]


def test_an_axis_spans_at_least_twice_the_margin():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ys = [28.570, 28.572, 28.574]                   # 0.004 dB apart: seed noise, not a trend
    ax.plot([1, 2, 3], ys)
    plots._at_least(ax.set_ylim, ax.get_ylim, ys, "psnr_y")
    lo, hi = ax.get_ylim()
    assert abs((hi - lo) - 0.2) < 1e-9 and lo < 28.570 and hi > 28.574     # 2 x the 0.1 dB margin
    plt.close(fig)


def test_rows_on_fewer_images_and_copied_scores_are_not_plotted(tmp_path):
    rows = [{"label": "a", "psnr_y": 28.0, "gmsd": 0.1, "nfe": 1},
            {"label": "few", "psnr_y": 29.0, "gmsd": 0.09, "nfe": 1, "partial": True},
            {"label": "copied", "psnr_y": 30.0, "gmsd": 0.08, "nfe": 1, "published": True}]
    import matplotlib.pyplot as plt

    seen = []
    original = plt.Axes.errorbar

    def spy(self, x, y, *a, **k):
        seen.append(k.get("label"))
        return original(self, x, y, *a, **k)
    plt.Axes.errorbar = spy
    try:
        plots.perception_distortion(rows, "gmsd", "psnr_y", tmp_path / "pd.png", "t")
    finally:
        plt.Axes.errorbar = original
    assert seen == ["a (NFE 1)"] and (tmp_path / "pd.png").exists()
