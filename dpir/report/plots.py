"""Figures of the report (matplotlib/seaborn, Agg backend, written as PNG)."""
from __future__ import annotations

from pathlib import Path


def axis_label(metric: str, lower_better: bool | None = None) -> str:
    """``"psnr_y [dB] (higher is better)"``: direction and unit from the metric's preset declaration
    (``lower_better`` overrides the direction, for names that are not registered presets)."""
    from dpir.metrics import lower_is_better, unit_of

    lower = lower_better if lower_better is not None else lower_is_better(metric, False)
    u = unit_of(metric)
    return f"{metric}{f' [{u}]' if u else ''} ({'lower' if lower else 'higher'} is better)"


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
                    color=palette[i % len(palette)], capsize=3, label=f"{r['label']} (NFE {r['nfe']})")
        ax.annotate(r["label"], (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel(axis_label(x_metric, x_lower_better))
    ax.set_ylabel(axis_label(y_metric))
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
