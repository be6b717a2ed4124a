"""Derived tables of the report: cost relative to a reference method, and the acceleration check
(each accelerated DP-IR variant against the full chain on the images both ran).  Both read the
results JSON files only.  The acceleration decision is made once, as structured checks
(:func:`acceleration_checks`), which both this table's verdict lines and the claims table
(:func:`dpir.report.claims.acceleration_claims`) render."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from dpir.report import paired as P
from dpir.report.stats import Verdict, cell_interval, paired_comparison, with_unit
from dpir.report.tables import (
    Footnotes,
    Table,
    digits_for,
    lower_better_of,
    ratio_number,
)
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
                         "× ref": ratio_number(ratio_f), "s/img": "n/a", "× ref ": "n/a",
                         "peak RSS (MiB)": "n/a"})
            numeric.append({"method": m, **{k: v for k, v in c.items() if k != "size"}, "tflops_ratio": ratio_f,
                            "seconds_ratio": ratio_s})
            continue
        # no FLOPs: a method that runs outside torch (the main table's footnote says the same)
        no_flops = "" if c["tflops"] is not None else fn.mark(
            f"{c['label']}: runs outside torch (numpy), where FlopCounterMode counts nothing: no TFLOPs, no ratio.")
        rows.append({"Method": c["label"], "NFE": str(c["nfe"]),
                     "TFLOPs/img": f"{c['tflops']:.3g}" if c["tflops"] is not None else "n/a" + no_flops,
                     "× ref": ratio_number(ratio_f) + (no_flops if ratio_f is None else ""),
                     "s/img": f"{c['seconds']:.3f}", "× ref ": ratio_number(ratio_s),
                     "peak RSS (MiB)": f"{c['rss']:.0f}"})
        numeric.append({"method": m, **{k: v for k, v in c.items() if k != "size"}, "tflops_ratio": ratio_f,
                        "seconds_ratio": ratio_s})
    size = ref["size"]
    notes = [f"Ratios are to {ref['label']}. FLOPs: FlopCounterMode during the first image's restoration"
             + (f" (input {size[0]}x{size[1]})" if size else "") + "; seconds: mean wall time per image of the other "
             "images, measured inside the workflow's restore jobs (Snakemake may run two jobs side by side); peak "
             "RSS: the restore process's high-water mark, including the Python/torch baseline.", *fn.lines()]
    return Table(name=name, title=title, columns=columns, rows=rows, numeric=numeric, footnotes=notes)


@dataclass(frozen=True)
class MetricCheck:
    """One metric of an acceleration check: the variant's cell, the paired difference to the reference on
    their common images, the margin and the non-inferiority verdict ("no loss", "a loss", "inconclusive")."""
    metric: str
    cell: P.Interval
    diff: P.Interval
    margin: float | None
    verdict: str

    def text(self) -> str:
        """``"psnr_y Δ +0.01 [-0.02, +0.03] dB (margin 0.1 dB: no loss)"``."""
        unit = with_unit(self.metric)
        head = f"{self.metric} Δ {P.format_interval(self.diff, digits_for(self.metric), signed=True)}{unit}"
        if self.margin is None:
            return f"{head} (no margin declared: set report.margins.{self.metric})"
        return f"{head} (margin {self.margin:g}{unit}: {self.verdict})"


#: the verdict of an acceleration check, by its kind: (the claims table's text, the end of the report's line)
_ACCELERATION_VERDICTS = {
    "agrees": ("agrees — no loss beyond the margin",
               "no loss beyond the margin (95 % interval): agrees with the paper's claim."),
    "disagrees": ("disagrees — a loss beyond the margin",
                  "a loss beyond the margin: does not reproduce the paper's claim on this run."),
    "inconclusive": ("inconclusive — a loss beyond the margin is not ruled out",
                     "inconclusive: the interval is too wide to rule out a loss larger than the margin ({n})."),
}


@dataclass(frozen=True)
class AccelerationCheck:
    """One accelerated variant against the reference (the full chain): the structured verdict that both the
    report's verdict line (:meth:`line`) and the claims table (:meth:`verdict`) are rendered from, so the
    decision is made once.  Its kind: "agrees" when every metric with numbers is "no loss", "disagrees" when
    one is "a loss", "inconclusive" otherwise, "not checked" when no metric has numbers on the common images."""
    method: str
    label: str
    nfe: int
    seeds: int
    reference: str
    ref_label: str
    ref_nfe: int
    ref_seeds: int
    images: tuple[str, ...]
    metrics: tuple[MetricCheck, ...]

    @property
    def kind(self) -> str:
        kinds = {c.verdict for c in self.metrics}
        if not kinds:
            return "not checked"
        return "disagrees" if "a loss" in kinds else "agrees" if kinds == {"no loss"} else "inconclusive"

    @property
    def n(self) -> str:
        return f"{len(self.images)} image(s) × {self.seeds} vs {self.ref_seeds} seed(s)"

    def line(self) -> str:
        """The report's verdict line (empty when no metric has numbers)."""
        if self.kind == "not checked":
            return ""
        end = _ACCELERATION_VERDICTS[self.kind][1].format(n=self.n)
        return (f"- {self.label}: NFE {self.ref_nfe} → {self.nfe} ({self.ref_nfe / self.nfe:.1f}× fewer); "
                + "; ".join(c.text() for c in self.metrics) + f"; {self.n} → " + end)

    def verdict(self) -> Verdict:
        """The claims table's structured verdict (the interval and half-width of the first metric)."""
        claim = (f"{self.label} ({self.nfe} NFE) loses nothing against {self.ref_label} ({self.ref_nfe} NFE)")
        rows = (self.method, self.reference)
        if self.kind == "not checked":
            return Verdict(claim, "not checked", "not checked", "", self.n, None, rows, None, "")
        first = self.metrics[0]
        interval = "; ".join(f"{c.metric} {P.format_interval(c.diff, digits_for(c.metric), signed=True)}"
                             f"{with_unit(c.metric)}" for c in self.metrics)
        half = None if math.isnan(first.diff.low) else first.diff.half_width
        return Verdict(claim, _ACCELERATION_VERDICTS[self.kind][0], self.kind, interval, self.n, first.metric, rows,
                       half, self.line())


def acceleration_checks(records: list[dict], reference: str, compare: list[str], metrics: list[str],
                        margins: dict | None = None) -> list[AccelerationCheck]:
    """Each variant of ``compare`` that has records against ``reference``, on the images both restored: per
    metric the paired per-image difference and a non-inferiority verdict against the declared margin
    (``report.margins``, :func:`dpir.report.paired.margin_for`): "no loss" only when the whole interval of the
    variant's gain lies above ``-margin``, "a loss" when it lies wholly below, inconclusive otherwise -- so
    seed noise alone can never read as "no loss".  A metric without numbers on those images is left out."""
    runs = _by_method(records)
    if reference not in runs:
        return []
    ref = runs[reference]
    out = []
    for m in [c for c in compare if c in runs]:
        images = sorted(set(runs[m][0]["images"]) & set(ref[0]["images"]))
        checks = []
        for metric in metrics:
            got = paired_comparison(runs[m], ref, metric, images)
            if got is None:
                continue
            cell, _, diff = got
            margin = P.margin_for(metric, margins)
            verdict = ("inconclusive" if margin is None else
                       P.noninferiority_verdict(diff, lower_better_of(metric, records), margin))
            checks.append(MetricCheck(metric, cell, diff, margin, verdict))
        out.append(AccelerationCheck(m, runs[m][0]["label"], runs[m][0]["cost"]["nfe"], len(runs[m]), reference,
                                     ref[0]["label"], ref[0]["cost"]["nfe"], len(ref), tuple(images), tuple(checks)))
    return out


def acceleration_table(records: list[dict], reference: str, compare: list[str], metrics: list[str], name: str,
                       title: str, margins: dict | None = None,
                       checks: list[AccelerationCheck] | None = None) -> tuple[Table, list[str]] | None:
    """Each variant vs the reference on the images both restored: each cell's mean with its 95 % bootstrap
    interval (images and seeds), the paired per-image difference with its interval, and the verdict line of
    each variant's :class:`AccelerationCheck` (:func:`acceleration_checks`; ``checks``: ones already made from
    the same records, so that the claims table and this table share one computation)."""
    runs = _by_method(records)
    if reference not in runs or not any(c in runs for c in compare):
        return None
    if checks is None:
        checks = acceleration_checks(records, reference, compare, metrics, margins)
    columns = ["Method", "NFE", "NFE cut", "images × seeds", *[f"{m}" for m in metrics], *[f"Δ{m}" for m in metrics]]
    rows, numeric = [], []
    ref_nfe = runs[reference][0]["cost"]["nfe"]
    ref_images = sorted(runs[reference][0]["images"])
    ref_cells = {metric: cell_interval(runs[reference], metric, ref_images) for metric in metrics}
    for c in [None, *checks]:
        m = reference if c is None else c.method
        images = ref_images if c is None else list(c.images)
        nfe = runs[m][0]["cost"]["nfe"]
        row = {"Method": runs[m][0]["label"], "NFE": str(nfe), "NFE cut": f"{ref_nfe / nfe:.1f}×",
               "images × seeds": f"{len(images)} × {len(runs[m])}"}
        num = {"method": m, "nfe": nfe, "nfe_cut": ref_nfe / nfe, "images": len(images)}
        got = ({k: (iv, None) for k, iv in ref_cells.items() if iv is not None} if c is None else
               {k.metric: (k.cell, k.diff) for k in c.metrics})
        for metric in metrics:
            d = digits_for(metric)
            if metric not in got:
                row[metric], row[f"Δ{metric}"] = "n/a", "n/a"
                continue
            cell, diff = got[metric]
            row[metric] = P.format_interval(cell, d)
            row[f"Δ{metric}"] = P.format_interval(diff, d, signed=True) if diff is not None else "—"
            num[metric], num[f"{metric}_ci_low"], num[f"{metric}_ci_high"] = cell.estimate, cell.low, cell.high
            num[f"delta_{metric}"] = diff.estimate if diff is not None else 0.0
        rows.append(row)
        numeric.append(num)
    notes = [f"Each variant is compared with {runs[reference][0]['label']} on the images both restored (the full "
             "chain may run on fewer images in the default config); cells are means with 95 % percentile-bootstrap "
             "intervals over images and seeds; Δ is the mean paired per-image difference with its interval "
             "(dpir.report.paired, scipy.stats.bootstrap)."]
    verdicts = [c.line() for c in checks if c.line()]
    return Table(name=name, title=title, columns=columns, rows=rows, numeric=numeric, footnotes=notes), verdicts
