"""Aggregate results JSON files into tables (Markdown + CSV).

A cell is the mean over images of one run (for stochastic methods, over images and seeds) with its 95 %
bootstrap interval ``mean [low, high]`` over images (and seeds), computed on the images the row was
scored on (:mod:`dpir.report.paired`); the CSV carries ``<metric>_ci_low`` / ``<metric>_ci_high`` and the
std over seeds (``<metric>_std``; the plots' error bars are the interval, the std only without one).
Cost ratios are printed by :func:`ratio_number` / :func:`ratio_text`, readable at any magnitude.  A row scored on fewer images than the others
(a method's ``max_images``) is not comparable with them: it is set apart below the table, marked, with
a footnote naming its images.  A metric that could not be computed is "n/a" with a footnote naming why
and the command that fixes it.
"""
from __future__ import annotations

import math
import statistics
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dpir.checkpoint import atomic_write_text
from dpir.report import paired as P
from dpir.report.stats import cell_interval, common_images
from dpir.results import architecture_of, declared_cost

ARROW = {True: "↓", False: "↑"}


@dataclass
class Table:
    name: str
    title: str
    columns: list[str]
    rows: list[dict]                # display strings
    numeric: list[dict]             # numbers, for CSV and plots
    footnotes: list[str] = field(default_factory=list)
    apart: list[dict] = field(default_factory=list)     # rows on fewer images, shown below the table
    apart_note: str = ""
    per_image: list[dict] = field(default_factory=list)  # (method, seed, image, one column per metric), for CSV

    def markdown(self) -> str:
        df = pd.DataFrame(self.rows, columns=self.columns)
        body = df.to_markdown(index=False, disable_numparse=True)
        if self.apart:
            rest = pd.DataFrame(self.apart, columns=self.columns).to_markdown(index=False, disable_numparse=True)
            body = f"{body}\n\n{self.apart_note}\n\n{rest}"
        notes = "\n".join(f"{n}" for n in self.footnotes)
        return f"{body}\n\n{notes}\n" if notes else body + "\n"

    def write(self, directory: str | Path) -> None:
        directory = Path(directory)
        atomic_write_text(directory / f"{self.name}.md", f"## {self.title}\n\n{self.markdown()}")
        atomic_write_text(directory / f"{self.name}.csv", pd.DataFrame(self.numeric).to_csv(index=False))
        if self.per_image:
            atomic_write_text(directory / f"{self.name}_per_image.csv",
                              pd.DataFrame(self.per_image).to_csv(index=False))


def per_image_rows(records: list[dict], metrics: list[str]) -> list[dict]:
    """One row per (method, seed, image) of measured records: the per-image scores behind a table's cells
    (published rows have none); an image a metric did not score is empty."""
    out = []
    for r in sorted((r for r in records if not r.get("published")), key=lambda r: (r["method"], r["seed"])):
        for i in r["images"]:
            row = {"method": r["method"], "seed": r["seed"], "image": i}
            for m in metrics:
                e = (r.get("metrics") or {}).get(m) or {}
                row[m] = (e.get("per_image") or {}).get(i) if e.get("available") else None
            out.append(row)
    return out


def _fmt(v: float | None, digits: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if math.isinf(v):
        return "inf"
    return f"{v:.{digits}f}"


def plain_number(v: float) -> str:
    """3 significant digits without an exponent: ``"45"``, ``"8.37"``, ``"0.0222"``, ``"3,940"``."""
    if v == 0 or not math.isfinite(v):
        return f"{v:g}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{float(f'{v:.3g}'):g}"


def ratio_number(r: float | None) -> str:
    """A cost ratio for a table cell, readable at any magnitude: two decimals, and at least two significant
    digits below 1 (``"3.00"``, ``"0.50"``, ``"0.022"`` for 1/45, never ``"0.00"``); "n/a" for None."""
    if r is None:
        return "n/a"
    if r <= 0 or not math.isfinite(r) or r >= 1:
        return f"{r:,.2f}" if math.isfinite(r) else "inf"
    return f"{r:.{max(2, 1 - math.floor(math.log10(r)))}f}"


def ratio_text(r: float) -> str:
    """A ratio in a sentence: ``"8.37×"``, and below 1 also as a fraction, ``"1/45 (0.022×)"`` -- so that a
    ratio of 1/45 never prints as ``"0.0×"``."""
    if 0 < r < 1:
        return f"1/{plain_number(1 / r)} ({ratio_number(r)}×)"
    return f"{plain_number(r)}×"


def metric_column(metric: str, lower_better: bool) -> str:
    """The header of a metric column: name, direction arrow and unit (``psnr_y ↑ [dB]``)."""
    from dpir.metrics import unit_of

    unit = unit_of(metric)
    return f"{metric} {ARROW[lower_better]}" + (f" [{unit}]" if unit else "")


def interval_text(estimate: float, iv, digits: int) -> str:
    """``"28.41 [28.30, 28.52]"``: the estimate and its 95 % interval (the estimate alone without one)."""
    if iv is None or math.isnan(iv.low):
        return _fmt(estimate, digits)
    return f"{_fmt(estimate, digits)} [{iv.low:.{digits}f}, {iv.high:.{digits}f}]"


def digits_for(metric: str) -> int:
    """Decimals shown for ``metric``: its preset's declared ``digits`` (dpir.metrics.preset)."""
    from dpir.metrics import display_digits

    return display_digits(metric)


def lower_better_of(metric: str, records: list[dict] = ()) -> bool:
    """Whether lower is better for ``metric``: its preset's declaration; for a name that is not a
    registered preset, what the results records say (False if they do not name it)."""
    from dpir.metrics import lower_is_better

    declared = lower_is_better(metric)
    if declared is not None:
        return declared
    for r in records:
        e = (r.get("metrics") or {}).get(metric)
        if e is not None and "lower_better" in e:
            return bool(e["lower_better"])
    return False


class Footnotes:
    """Numbered footnotes, deduplicated by text."""

    def __init__(self, prefix: str = ""):
        self.prefix = prefix
        self.notes: OrderedDict[str, int] = OrderedDict()

    def mark(self, text: str) -> str:
        if text not in self.notes:
            self.notes[text] = len(self.notes) + 1
        return f"[^{self.prefix}{self.notes[text]}]"

    def lines(self) -> list[str]:
        return [f"[^{self.prefix}{n}]: {t}" for t, n in self.notes.items()]


def method_order(records: list[dict], config_methods: list[str] | None) -> list[str]:
    seen = list(dict.fromkeys(r["method"] for r in records))
    if config_methods:
        return [m for m in config_methods if m in seen] + [m for m in seen if m not in config_methods]
    return seen


def published_record(method: str, mcfg: dict, dataset: str) -> dict | None:
    """A results-like record for a row of scores copied from a paper (method kind ``published``), or
    None when the config gives no scores for ``dataset``."""
    scores = (mcfg.get("scores") or {}).get(dataset)
    if not scores:
        return None
    return {"method": method, "label": mcfg.get("label", method), "published": True, "source": mcfg["source"],
            "scores": dict(scores), "seed": 0, "n_images": None}


def _published_row(rec: dict, metrics: list[str], metric_cols: list[str], fn: "Footnotes") -> tuple[dict, dict]:
    mark = fn.mark(f"{rec['label']}: scores copied from {rec['source']}, not measured by this harness (the method "
                   "has no public code); its evaluation protocol may differ from ours.")
    row = {"Method": f"*{rec['label']}* (published){mark}"}
    num = {"method": rec["method"], "label": rec["label"], "published": True, "seeds": 0, "images": None}
    for m, col in zip(metrics, metric_cols):
        v = rec["scores"].get(m)
        row[col] = _fmt(float(v), digits_for(m)) if v is not None else "—"
        num[m] = float(v) if v is not None else None
    for col in ("NFE", "Params total (M)", "Params trained (M)", "TFLOPs/img", "s/img", "images × seeds"):
        row[col] = "—"
    num.update(nfe=None, params_total=None, params_trained=None, tflops=None, seconds=None)
    return row, num


def _declared(v, text: str) -> str:
    return f"{text} (declared)" if v is not None else "n/a"


def _declared_cells(rec: dict, declared: dict, fn: "Footnotes") -> dict:
    """The cost cells of an imported row (kind ``outputs``): the declared values, marked, or n/a."""
    mark = fn.mark(f"{rec['label']}: restored outside the harness and imported from a folder (kind `outputs`); "
                   "its NFE, parameters and TFLOPs are the values its config entry declares, not measured "
                   "(n/a: not declared), and its time is not measured.")
    p = declared["params"]
    ptext = f"{p / 1e6:.3f}" if p is not None else ""
    t = declared["tflops"]
    return {"NFE": _declared(declared["nfe"], str(declared["nfe"])) + mark,
            "Params total (M)": _declared(p, ptext), "Params trained (M)": _declared(p, ptext),
            "TFLOPs/img": _declared(t, f"{t:.3g}" if t is not None else ""), "s/img": "n/a"}


def build_table(records: list[dict], name: str, title: str, metrics: list[str],
                method_names: list[str] | None = None, note_prefix: str = "") -> Table:
    """One row per method (seeds aggregated) for the records of one (task, dataset)."""
    fn = Footnotes(note_prefix or name.replace("_", "-") + "-")
    by_method: dict[str, list[dict]] = {}
    for r in records:
        by_method.setdefault(r["method"], []).append(r)
    conventions = {}
    for r in records:
        for m, v in (r.get("metrics") or {}).items():
            conventions[m] = v["convention"]
    metric_cols = [metric_column(m, lower_better_of(m, records)) for m in metrics]
    columns = ["Method", *metric_cols, "NFE", "Params total (M)", "Params trained (M)", "TFLOPs/img", "s/img", "images × seeds"]
    rows, numeric, apart = [], [], []
    scored = {m: common_images({m: rs}) for m, rs in by_method.items() if not rs[0].get("published")}
    n_full = max((len(v) for v in scored.values()), default=0)
    for method in method_order(records, method_names):
        runs = sorted(by_method[method], key=lambda r: r["seed"])
        first = runs[0]
        label = first["label"]
        if first.get("published"):
            row, num = _published_row(first, metrics, metric_cols, fn)
            rows.append(row)
            numeric.append(num)
            continue
        images = scored[method]
        row = {"Method": label}
        arch = architecture_of(first)
        if arch:
            row["Method"] += fn.mark(f"{label}: network architecture {arch}.")
        fewer = len(images) < n_full
        if fewer:
            row["Method"] += fn.mark(f"{label}: scored on {len(images)} of the {n_full} test images ({', '.join(images)}; "
                                     "the method's `max_images`): its cells are means over those images only, not "
                                     "comparable with the rows above.")
        num = {"method": method, "label": label, "seeds": len(runs), "images": len(images), "partial": fewer}
        target = apart if fewer else rows
        for m, col in zip(metrics, metric_cols):
            entries = [r["metrics"].get(m) for r in runs]
            if any(e is None for e in entries):
                row[col] = "n/a" + fn.mark(f"`{m}` was not in the metric list when this run was scored; run `dpir score` again.")
                num[m] = None
                continue
            if not all(e["available"] for e in entries):
                e = next(e for e in entries if not e["available"])
                row[col] = "n/a" + fn.mark(f"`{m}`: {e['reason']} Fix: `{e['fix']}`, then re-run the workflow.")
                num[m] = None
                continue
            means = [e["mean"] for e in entries]
            mu = statistics.fmean(means)
            d = digits_for(m)
            iv = cell_interval(runs, m, images)
            row[col] = interval_text(mu, iv, d)
            if len(means) > 1:
                num[f"{m}_std"] = statistics.stdev(means)
            num[m] = mu
            if iv is not None and not math.isnan(iv.low):
                num[f"{m}_ci_low"], num[f"{m}_ci_high"] = iv.low, iv.high
            if any(e.get("n_nonfinite") for e in entries):
                row[col] += fn.mark(f"`{m}`: some images scored a non-finite value (identical images give infinite PSNR); they are left out of the mean.")
        declared = declared_cost(first)
        if declared is not None:
            row.update(_declared_cells(first, declared, fn))
            row["images × seeds"] = f"{len(images)} × {len(runs)}"
            num.update(nfe=declared["nfe"], params_total=declared["params"], params_trained=declared["params"],
                       tflops=declared["tflops"], seconds=None, cost_declared=True)
            target.append(row)
            numeric.append(num)
            continue
        c = first["cost"]
        nfe_text = str(c["nfe"])
        if c.get("nfe_groups") and len(c["nfe_groups"]) > 1:
            breakdown = " + ".join(f"{v} {k}" for k, v in c["nfe_groups"].items())
            nfe_text += fn.mark(f"{label}: NFE = {breakdown}. {c.get('nfe_note', '')}".strip())
        row["NFE"] = nfe_text
        row["Params total (M)"] = f"{c['params_total'] / 1e6:.3f}"
        row["Params trained (M)"] = f"{c['params_trained'] / 1e6:.3f}"
        fl = c.get("flops_per_image")
        row["TFLOPs/img"] = (f"{fl / 1e12:.3g}" if fl is not None else
                             "n/a" + fn.mark(f"{label}: runs outside torch (numpy), where FlopCounterMode counts nothing."))
        if fl is not None and c.get("flops_input_size"):
            h, w = c["flops_input_size"]
            row["TFLOPs/img"] += fn.mark(f"TFLOPs per image measured with torch FlopCounterMode (2 x MACs of conv/matmul; elementwise ops not counted) on a {h}x{w} input.")
        secs = [r["cost"]["seconds_per_image"] for r in runs]
        row["s/img"] = f"{statistics.fmean(secs):.3f}"
        row["images × seeds"] = f"{len(images)} × {len(runs)}"
        num.update(nfe=c["nfe"], params_total=c["params_total"], params_trained=c["params_trained"],
                   tflops=(fl / 1e12 if fl is not None else None), seconds=statistics.fmean(secs))
        target.append(row)
        numeric.append(num)
    notes = fn.lines()
    conv = [f"- `{m}`: {conventions[m]}" for m in metrics if m in conventions]
    if conv:
        notes = ["Metric presets:", *conv, "", *notes]
    seeds_note = (f"Cells: mean [95 % interval], a percentile bootstrap ({P.RESAMPLES} resamples, seed {P.BOOTSTRAP_SEED}) over the row's images and, for "
                  "stochastic methods, its seeds (resampled independently); n images × seeds per row in the last "
                  "column. Deterministic methods run once. Images are scored as written to disk (8-bit PNG).")
    notes = [seeds_note, "", *notes]
    note = (f"Rows scored on fewer than the {n_full} test images of the rows above (a method's `max_images`): their "
            "means are over fewer images and are not comparable with the rows above.")
    return Table(name=name, title=title, columns=columns, rows=rows, numeric=numeric, footnotes=notes, apart=apart,
                 apart_note=note if apart else "", per_image=per_image_rows(records, metrics))
