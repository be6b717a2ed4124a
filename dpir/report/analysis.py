"""Derived tables of the report: cost relative to a reference method, and the acceleration check
(each accelerated DP-IR variant against the full chain on the images both ran).  Both read the
results JSON files only."""
from __future__ import annotations

import statistics

from dpir.report.tables import Footnotes, Table, digits_for, lower_better_of
from dpir.results import declared_cost


def _by_method(records: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in records:
        out.setdefault(r["method"], []).append(r)
    return out


def cost_table(records: list[dict], reference: str, name: str, title: str, order: list[str]) -> Table | None:
    """NFE, TFLOPs, seconds and peak memory per image, with ratios to ``reference``."""
    runs = _by_method(records)
    if reference not in runs:
        return None
    fn = Footnotes(name.replace("_", "-") + "-")

    def cost(m):
        rs = runs[m]
        c = rs[0]["cost"]
        declared = declared_cost(rs[0])
        if declared is not None:       # an imported row: its declared NFE and TFLOPs, nothing measured
            return {"label": rs[0]["label"], "nfe": declared["nfe"], "tflops": declared["tflops"], "seconds": None,
                    "rss": None, "size": None, "declared": True}
        return {"label": rs[0]["label"], "nfe": c["nfe"], "tflops": (c["flops_per_image"] / 1e12 if c["flops_per_image"] is not None else None),
                "seconds": statistics.fmean(r["cost"]["seconds_per_image"] for r in rs),
                "rss": max(r["cost"]["peak_rss_mib"] for r in rs), "size": c.get("flops_input_size")}
    ref = cost(reference)
    columns = ["Method", "NFE", "TFLOPs/img", "× ref", "s/img", "× ref ", "peak RSS (MiB)"]
    rows, numeric = [], []
    for m in [m for m in order if m in runs]:
        c = cost(m)
        ratio_f = (c["tflops"] / ref["tflops"]) if c["tflops"] is not None and ref["tflops"] else None
        ratio_s = c["seconds"] / ref["seconds"] if ref["seconds"] and c["seconds"] is not None else None
        if c.get("declared"):
            ratio_s = None
            mark = fn.mark(f"{c['label']}: restored outside the harness (kind `outputs`); NFE and TFLOPs as declared "
                           "in its config, not measured; time and memory not measured.")
            rows.append({"Method": c["label"] + mark, "NFE": f"{c['nfe']} (declared)" if c["nfe"] is not None else "n/a",
                         "TFLOPs/img": f"{c['tflops']:.3g} (declared)" if c["tflops"] is not None else "n/a",
                         "× ref": f"{ratio_f:.2f}" if ratio_f is not None else "n/a", "s/img": "n/a", "× ref ": "n/a",
                         "peak RSS (MiB)": "n/a"})
            numeric.append({"method": m, **{k: v for k, v in c.items() if k != "size"}, "tflops_ratio": ratio_f,
                            "seconds_ratio": ratio_s})
            continue
        rows.append({"Method": c["label"], "NFE": str(c["nfe"]),
                     "TFLOPs/img": f"{c['tflops']:.3g}" if c["tflops"] is not None else "n/a",
                     "× ref": f"{ratio_f:.2f}" if ratio_f is not None else "n/a",
                     "s/img": f"{c['seconds']:.3f}", "× ref ": f"{ratio_s:.2f}" if ratio_s is not None else "n/a",
                     "peak RSS (MiB)": f"{c['rss']:.0f}"})
        numeric.append({"method": m, **{k: v for k, v in c.items() if k != "size"}, "tflops_ratio": ratio_f,
                        "seconds_ratio": ratio_s})
    size = ref["size"]
    notes = [f"Ratios are to {ref['label']}. FLOPs: FlopCounterMode during the first image's restoration"
             + (f" (input {size[0]}x{size[1]})" if size else "") + "; seconds: mean wall time per image of the other "
             "images, measured inside the workflow's restore jobs (Snakemake may run two jobs side by side); peak "
             "RSS: the restore process's high-water mark, including the Python/torch baseline.", *fn.lines()]
    return Table(name=name, title=title, columns=columns, rows=rows, numeric=numeric, footnotes=notes)


def acceleration_table(records: list[dict], reference: str, compare: list[str], metrics: list[str], name: str,
                       title: str, margins: dict | None = None) -> tuple[Table, list[str]] | None:
    """Each variant vs the reference on the images both restored: each cell's mean with its 95 % bootstrap
    interval (images and seeds), the paired per-image difference with its interval, and a non-inferiority
    verdict per metric against the declared margin (``report.margins``, :func:`dpir.report.paired.margin_for`):
    "no loss" only when the whole interval of the variant's gain lies above ``-margin``, "a loss" when it lies
    wholly below, inconclusive otherwise -- so seed noise alone can never read as "no loss"."""
    from dpir.report import paired as P
    from dpir.report.stats import paired_comparison, with_unit

    runs = _by_method(records)
    if reference not in runs or not any(c in runs for c in compare):
        return None
    verdicts = []
    columns = ["Method", "NFE", "NFE cut", "images × seeds", *[f"{m}" for m in metrics], *[f"Δ{m}" for m in metrics]]
    rows, numeric = [], []
    ref_nfe = runs[reference][0]["cost"]["nfe"]
    lower = {metric: lower_better_of(metric, records) for metric in metrics}
    for m in [reference, *[c for c in compare if c in runs]]:
        checks = []
        images = sorted(set(runs[m][0]["images"]) & set(runs[reference][0]["images"]))
        nfe = runs[m][0]["cost"]["nfe"]
        row = {"Method": runs[m][0]["label"], "NFE": str(nfe), "NFE cut": f"{ref_nfe / nfe:.1f}×",
               "images × seeds": f"{len(images)} × {len(runs[m])}"}
        num = {"method": m, "nfe": nfe, "nfe_cut": ref_nfe / nfe, "images": len(images)}
        for metric in metrics:
            got = paired_comparison(runs[m], runs[reference], metric, images)
            d = digits_for(metric)
            if got is None:
                row[metric], row[f"Δ{metric}"] = "n/a", "n/a"
                continue
            cell, _, diff = got
            row[metric] = P.format_interval(cell, d)
            row[f"Δ{metric}"] = P.format_interval(diff, d, signed=True) if m != reference else "—"
            num[metric], num[f"{metric}_ci_low"], num[f"{metric}_ci_high"] = cell.estimate, cell.low, cell.high
            num[f"delta_{metric}"] = diff.estimate
            if m != reference:
                margin = P.margin_for(metric, margins)
                if margin is None:
                    checks.append(("inconclusive", f"{metric} Δ {P.format_interval(diff, d, signed=True)}{with_unit(metric)} "
                                                   f"(no margin declared: set report.margins.{metric})"))
                    continue
                v = P.noninferiority_verdict(diff, bool(lower.get(metric)), margin)
                checks.append((v, f"{metric} Δ {P.format_interval(diff, d, signed=True)}{with_unit(metric)} "
                                  f"(margin {margin:g}{with_unit(metric)}: {v})"))
        if m != reference and checks:
            kinds = {c[0] for c in checks}
            n = f"{len(images)} image(s) × {len(runs[m])} vs {len(runs[reference])} seed(s)"
            if "a loss" in kinds:
                end = "a loss beyond the margin: does not reproduce the paper's claim on this run."
            elif kinds == {"no loss"}:
                end = "no loss beyond the margin (95 % interval): agrees with the paper's claim."
            else:
                end = ("inconclusive: the interval is too wide to rule out a loss larger than the margin "
                       f"({n}).")
            verdicts.append(f"- {runs[m][0]['label']}: NFE {ref_nfe} → {nfe} ({ref_nfe / nfe:.1f}× fewer); "
                            + "; ".join(c[1] for c in checks) + f"; {n} → " + end)
        rows.append(row)
        numeric.append(num)
    notes = [f"Each variant is compared with {runs[reference][0]['label']} on the images both restored (the full "
             "chain may run on fewer images in the default config); cells are means with 95 % percentile-bootstrap "
             "intervals over images and seeds; Δ is the mean paired per-image difference with its interval "
             "(dpir.report.paired, scipy.stats.bootstrap)."]
    return Table(name=name, title=title, columns=columns, rows=rows, numeric=numeric, footnotes=notes), verdicts
