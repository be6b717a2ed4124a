"""Ablation tables of kind ``rows`` and ``tau_sweep``: one row per method, metric cells the mean and
its 95 % bootstrap interval over the images that *every* row restored (and the row's seeds), and the
verdict lines of the table's ``expect`` entries, decided on paired per-image differences of two rows
on their common images (or the trend over tau; :mod:`dpir.report.stats`); a claim on the ``perceptual`` axis decided on a
stand-in for LPIPS says so, and its size, if it states one, is not checked there.  Rows declared ``partial``
(run on fewer images) are set apart below the table and compared on the images they share."""
from __future__ import annotations

import math
import statistics

from dpir.config import ablation_dataset, all_methods
from dpir.errors import DpirError
from dpir.report import paired as P
from dpir.report.ablation_cells import extra_cell, header_label
from dpir.report.stats import (
    Verdict,
    cell_interval,
    claimed_magnitude,
    common_images,
    difference_check,
    direction_only,
    on_stand_in,
    paired_comparison,
    seed_stats,
    trend_check,
)
from dpir.report.tables import (
    Footnotes,
    Table,
    digits_for,
    interval_text,
    lower_better_of,
    metric_column,
    per_image_rows,
)


def scored_runs(config: dict, task: str, dataset: str, rows: list[str]) -> dict[str, list[dict]]:
    """The results records of ``rows`` on ``task``/``dataset``, by method, each sorted by seed."""
    from dpir.score import load_scores

    out: dict[str, list[dict]] = {}
    for r in load_scores(config["out"], task):
        if r["dataset"] == dataset and r["method"] in rows:
            out.setdefault(r["method"], []).append(r)
    for rs in out.values():
        rs.sort(key=lambda r: r["seed"])
    return out


def resolve_metric(alias: str, metrics: list[str], runs: dict[str, list[dict]]) -> str | None:
    """A metric preset name for ``psnr`` / ``ssim`` / ``perceptual`` (the first of
    :data:`dpir.metrics.PERCEPTUAL_AXES` that was computed), or the name itself."""
    from dpir.metrics import PERCEPTUAL_AXES

    def available(m):
        return any(r["metrics"].get(m, {}).get("available") for rs in runs.values() for r in rs)

    if alias in ("psnr", "ssim"):
        return next((m for m in metrics if m.startswith(alias) and available(m)), None)
    if alias == "perceptual":
        return next((m for m in PERCEPTUAL_AXES if available(m)), None)
    return alias if available(alias) else None


def stand_in_for(alias: str, metric: str) -> str:
    """The metric a claim names when ``metric`` only stands in for it, else "": the ``perceptual`` axis is
    LPIPS (the paper's perceptual metric, the first of :data:`dpir.metrics.PERCEPTUAL_AXES`); another metric
    there (TOPIQ, or GMSD when no perceptual weights are cached offline) is a stand-in for it."""
    from dpir.metrics import PERCEPTUAL_AXES

    family = PERCEPTUAL_AXES[0].split("_")[0]
    if alias != "perceptual" or metric.split("_")[0] == family:
        return ""
    return family.upper()


def rows_table(config: dict, name: str, spec: dict) -> tuple[Table, list[str], dict]:
    """Table (and verdicts) of a ``rows`` or ``tau_sweep`` ablation."""
    task = spec["task"]
    dataset = ablation_dataset(config, spec)
    methods = all_methods(config, task)
    runs = scored_runs(config, task, dataset, spec["rows"])
    missing = [m for m in spec["rows"] if m not in runs]
    if missing:
        raise DpirError(f"ablation {name!r}: no scores for {', '.join(missing)} on {task}/{dataset}; run "
                        f"`snakemake --cores all ablations` (or `dpir restore`/`dpir score` for them) first")
    partial = [m for m in spec.get("partial") or [] if m in runs]
    images = common_images({m: rs for m, rs in runs.items() if m not in partial})
    if not images:
        raise DpirError(f"ablation {name!r}: its rows share no test image; give them common images (max_images)")
    row_images = {m: images for m in runs}
    for m in partial:
        row_images[m] = sorted(set(images) & set(common_images({m: runs[m]}))) or common_images({m: runs[m]})
    metrics = spec.get("metrics") or config["tasks"][task].get("metrics") or []
    metrics = [m for m in metrics if any(r["metrics"].get(m) for rs in runs.values() for r in rs)]
    records = [r for rs in runs.values() for r in rs]
    lower = {m: lower_better_of(m, records) for m in dict.fromkeys(m for r in records for m in r["metrics"])}
    fn = Footnotes(f"{name.replace('_', '-')}-")
    extra = spec.get("columns") or []
    columns = ["Method", *[header_label(c) for c in extra], *[metric_column(m, lower.get(m, False)) for m in metrics],
               "NFE", "s/img", "images × seeds"]
    rows, numeric, apart = [], [], []
    stats: dict[str, dict[str, tuple]] = {}
    for method in spec["rows"]:
        rs = runs[method]
        mcfg = methods[method]
        row = {"Method": rs[0]["label"]}
        num: dict = {"method": method, "label": rs[0]["label"]}
        for c in extra:
            text, value = extra_cell(config, c, mcfg)
            row[header_label(c)] = text
            num[c] = value
        stats[method] = {}
        if method in partial:
            row["Method"] += fn.mark(f"{rs[0]['label']}: scored on {len(row_images[method])} image(s) "
                                     f"({', '.join(row_images[method])}) only; verdicts against it use those images.")
        for m in metrics:
            s = seed_stats(rs, m, row_images[method])
            col = metric_column(m, lower.get(m, False))
            if s is None:
                e = next((r["metrics"][m] for r in rs if not r["metrics"].get(m, {}).get("available", True)), None)
                why = f"`{m}`: {e['reason']} Fix: `{e['fix']}`." if e and e.get("reason") else f"`{m}` not computed."
                row[col] = "n/a" + fn.mark(why)
                num[m] = None
                continue
            stats[method][m] = s
            iv = cell_interval(rs, m, row_images[method])
            row[col] = interval_text(s[0], iv, digits_for(m))
            num[m], num[f"{m}_std"] = s[0], s[1]
            if iv is not None and not math.isnan(iv.low):
                num[f"{m}_ci_low"], num[f"{m}_ci_high"] = iv.low, iv.high
        c = rs[0]["cost"]
        row["NFE"] = str(c["nfe"])
        row["s/img"] = f"{statistics.fmean(r['cost']['seconds_per_image'] for r in rs):.2f}"
        row["images × seeds"] = f"{len(row_images[method])} × {len(rs)}"
        num.update(nfe=c["nfe"], seconds=statistics.fmean(r["cost"]["seconds_per_image"] for r in rs), seeds=len(rs),
                   images=len(row_images[method]), partial=method in partial)
        (apart if method in partial else rows).append(row)
        numeric.append(num)
    seeds = sorted({len(rs) for rs in runs.values()})
    header = (f"{len(images)} test image(s) of `{task}/{dataset}` common to every row ({', '.join(images)}); "
              f"seeds per row: {', '.join(map(str, seeds))}. Cells: mean [95 % interval], a percentile bootstrap "
              f"({P.RESAMPLES} resamples, seed {P.BOOTSTRAP_SEED}) over those images and the row's seeds; "
              "n images × seeds per row in the last column.")
    notes = [header, *([spec["note"]] if spec.get("note") else []), *fn.lines()]
    note = "Rows run on fewer images (compared with the rows above on the images they share):"
    table = Table(name=name, title=spec["title"], columns=columns, rows=rows, numeric=numeric, footnotes=notes,
                  apart=apart, apart_note=note if apart else "", per_image=per_image_rows(records, metrics))
    margins = (config.get("report") or {}).get("margins")
    checks = _verdicts(spec, runs, stats, metrics, lower, methods, row_images, margins)
    return table, [c.line for c in checks], {"images": images, "runs": runs, "stats": stats, "metrics": metrics,
                                             "lower": lower, "claims": checks}


def _verdicts(spec: dict, runs: dict, stats: dict, metrics: list[str], lower: dict, methods: dict,
              row_images: dict[str, list[str]], margins: dict | None = None) -> list[Verdict]:
    """The structured verdict of each ``expect`` entry (its ``line`` is what the table prints)."""
    out = []
    for e in spec.get("expect") or []:
        metric = resolve_metric(e["metric"], metrics, runs)
        if metric is None:
            out.append(_not_checked(e["paper"], f"`{e['metric']}` was not computed in this run", e["metric"]))
            continue
        v = _verdict(e, metric, spec, runs, stats, lower, methods, row_images, margins)
        named, size = stand_in_for(e["metric"], metric), claimed_magnitude(e["paper"])
        out.append(on_stand_in(v, named, size) if named else direction_only(v, size) if size else v)
    return out


def _verdict(e: dict, metric: str, spec: dict, runs: dict, stats: dict, lower: dict, methods: dict,
             row_images: dict[str, list[str]], margins: dict | None) -> Verdict:
    """The verdict of one ``expect`` entry on ``metric`` (its alias resolved), before any stand-in label."""
    lb = lower.get(metric, False)
    d = digits_for(metric)
    if e.get("trend"):
        taus, vals, names = [], [], []
        for method in spec["rows"]:
            tau = methods[method].get("tau")
            if tau is not None and metric in stats.get(method, {}):
                taus.append(int(tau))
                vals.append(stats[method][metric][0])
                names.append(method)
        if len(taus) < 3:
            return _not_checked(e["paper"], "fewer than 3 τ values", metric)
        order = sorted(range(len(taus)), key=lambda i: taus[i])
        lo, hi = names[order[0]], names[order[-1]]
        both = sorted(set(row_images[lo]) & set(row_images[hi]))
        got = paired_comparison(runs[hi], runs[lo], metric, both)
        return trend_check([taus[i] for i in order], [vals[i] for i in order], metric, lb, e["trend"],
                           e["paper"], got[2] if got else None, d, margins).with_rows(*names)
    row, vs = e["row"], e["vs"]
    if metric not in stats.get(row, {}) or metric not in stats.get(vs, {}):
        return _not_checked(e["paper"], f"`{metric}` missing for a row", metric, (row, vs))
    both = sorted(set(row_images[row]) & set(row_images[vs]))
    return difference_check(runs[row][0]["label"], runs[row], runs[vs][0]["label"], runs[vs], both, metric,
                            lb, e.get("direction", "better"), e["paper"], d, margins).with_rows(row, vs)


def _not_checked(paper: str, why: str, metric: str | None, rows: tuple[str, ...] = ()) -> Verdict:
    return Verdict(paper, "not checked", "not checked", metric=metric, rows=rows,
                   line=f"- Paper: {paper}. Ours: {why} → **not checked**.")
