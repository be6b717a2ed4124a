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


def perception_distortion(rows: list[dict], x_metric: str, y_metric: str, path: str | Path, title: str,
                          x_lower_better: bool | None = None) -> Path:
    """PSNR (distortion) against a perceptual metric, one point per method, seed std as error bars.
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
        if x is None or y is None or r.get("published"):   # copied scores: other protocol, not plotted
            continue
        ax.errorbar(x, y, xerr=r.get(f"{x_metric}_std") or 0, yerr=r.get(f"{y_metric}_std") or 0, fmt="o",
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
    a.errorbar(xs, ys, xerr=[r.get(f"{x_metric}_std") or 0 for r in pts],
               yerr=[r.get(f"{y_metric}_std") or 0 for r in pts], fmt="-o", capsize=3)
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
