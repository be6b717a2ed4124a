"""Figures of the report (matplotlib/seaborn, Agg backend, written as PNG)."""
from __future__ import annotations

from pathlib import Path


def direction(metric: str, lower_better: bool | None = None) -> str:
    """``"lower is better"`` or ``"higher is better"``, from the metric's preset declaration
    (``lower_better`` overrides it, for names that are not registered presets)."""
    from dpir.metrics import lower_is_better

    lower = lower_better if lower_better is not None else lower_is_better(metric, False)
    return f"{'lower' if lower else 'higher'} is better"


def axis_label(metric: str, lower_better: bool | None = None) -> str:
    """``"psnr_y [dB] (higher is better)"``: direction and unit from the metric's preset declaration
    (``lower_better`` overrides the direction, for names that are not registered presets)."""
    from dpir.metrics import unit_of

    u = unit_of(metric)
    return f"{metric}{f' [{u}]' if u else ''} ({direction(metric, lower_better)})"


def _nfe_text(row: dict) -> str:
    """``NFE 20``; an imported row's declared count is marked (``NFE 1, declared``; ``NFE n/a``)."""
    if row.get("cost_declared"):
        return f"NFE {row['nfe']}, declared" if row.get("nfe") is not None else "NFE n/a"
    return f"NFE {row['nfe']}"


def _err(rows: list[dict], metric: str):
    """Error bars of ``metric``: the 95 % bootstrap interval (``<metric>_ci_low`` / ``_ci_high``, asymmetric)
    where the row has one, else the seed std, else none; matplotlib's (2, n) form."""
    lo, hi = [], []
    for r in rows:
        v, a, b = r.get(metric), r.get(f"{metric}_ci_low"), r.get(f"{metric}_ci_high")
        if v is not None and a is not None and b is not None and a == a and b == b:     # not NaN
            lo.append(max(v - a, 0.0))
            hi.append(max(b - v, 0.0))
        else:
            sd = r.get(f"{metric}_std") or 0.0
            lo.append(sd)
            hi.append(sd)
    return [lo, hi]


def _at_least(ax_lim, get_lim, values: list[float], metric: str) -> None:
    """Widen an axis to at least twice the metric's equivalence margin (``dpir.report.paired``), so that
    differences smaller than the margin never fill the plot and read as a trend."""
    from dpir.report.paired import margin_for

    m = margin_for(metric)
    if not values or m is None:
        return
    lo, hi = get_lim()
    span = 2 * m
    if hi - lo < span:
        mid = (max(values) + min(values)) / 2
        ax_lim(mid - span / 2, mid + span / 2)


def perception_distortion(rows: list[dict], x_metric: str, y_metric: str, path: str | Path, title: str,
                          x_lower_better: bool | None = None) -> Path:
    """PSNR (distortion) against a perceptual metric, one point per method (rows on fewer images and copied
    scores left out), 95 % bootstrap intervals as error bars.
    Axis directions and units come from the presets (``x_lower_better`` overrides the x direction)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    palette = sns.color_palette("tab10", n_colors=max(3, len(rows)))
    for i, r in enumerate(rows):
        x, y = r.get(x_metric), r.get(y_metric)
        # copied scores (another protocol) and rows scored on fewer images are not comparable points
        if x is None or y is None or r.get("published") or r.get("partial"):
            continue
        (xl, xh), (yl, yh) = _err([r], x_metric), _err([r], y_metric)
        ax.errorbar(x, y, xerr=[xl, xh], yerr=[yl, yh], fmt="o",
                    color=palette[i % len(palette)], capsize=3, label=f"{r['label']} ({_nfe_text(r)})")
        ax.annotate(r["label"], (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel(axis_label(x_metric, x_lower_better))
    ax.set_ylabel(axis_label(y_metric))
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def tau_sweep_plots(numeric: list[dict], x_metric: str, y_metric: str, fig_path: Path, title: str,
                    x_lower_better: bool | None = None) -> Path:
    """Left: perception-distortion curve over tau; right: both metrics against NFE (the ``tau_sweep``
    ablations).  Directions come from the presets (``x_lower_better`` overrides the x direction)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.ticker import NullLocator, ScalarFormatter

    pts = sorted((r for r in numeric if r.get("tau") is not None and r.get(x_metric) is not None
                  and r.get(y_metric) is not None), key=lambda r: r["tau"])
    sns.set_theme(style="whitegrid", context="notebook")
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    xs, ys = [r[x_metric] for r in pts], [r[y_metric] for r in pts]
    a.errorbar(xs, ys, xerr=_err(pts, x_metric), yerr=_err(pts, y_metric), fmt="-o", capsize=3)
    for r in pts:
        a.annotate(f"τ={r['tau']}", (r[x_metric], r[y_metric]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    a.set_xlabel(f"{x_metric} ({direction(x_metric, x_lower_better)})")
    a.set_ylabel(f"{y_metric} ({direction(y_metric)})")
    a.set_title("perception-distortion over τ", fontsize=10)
    nfe = [r["nfe"] for r in pts]
    b.plot(nfe, ys, "-o", color="C0", label=y_metric)
    b.set_xscale("log")
    b.xaxis.set_minor_locator(NullLocator())          # label the NFE values themselves, not powers of ten
    b.set_xticks(sorted(set(nfe)))
    b.xaxis.set_major_formatter(ScalarFormatter())
    b.set_xlabel("NFE")
    b.set_ylabel(y_metric, color="C0")
    b2 = b.twinx()
    b2.plot(nfe, xs, "-s", color="C1", label=x_metric)
    b2.set_ylabel(x_metric, color="C1")
    b2.grid(False)
    b.set_title("quality against NFE", fontsize=10)
    for ax in (a, b, b2):      # plain numbers, no "+2.7e1" offset: the differences can be tiny
        ax.yaxis.get_major_formatter().set_useOffset(False)
    _at_least(a.set_ylim, a.get_ylim, ys, y_metric)        # no sub-margin wiggle drawn as a trend
    _at_least(a.set_xlim, a.get_xlim, xs, x_metric)
    _at_least(b.set_ylim, b.get_ylim, ys, y_metric)
    _at_least(b2.set_ylim, b2.get_ylim, xs, x_metric)
    a.xaxis.get_major_formatter().set_useOffset(False)
    fig.suptitle(title, fontsize=11)
    return _save(fig, fig_path)


def _save(fig, path) -> Path:
    """Lay out, write and close a figure; the folder is created."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
