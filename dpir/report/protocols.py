"""``dpir protocols``: the same restored PNGs re-scored under each published evaluation protocol.

Published numbers are not comparable across papers unless they were measured the same way (REFERENCE
sec. 6: Y versus RGB, border crop, LPIPS backbone, linear versus sRGB for bursts).  This table takes the
restored images of the main table (``<out>/restored/<task>/<dataset>/<method>/seed<k>/``, the runs the
results files list) and scores every one of them under each protocol:

- **SR**: PSNR/SSIM on Y (BT.601) with a border crop of ``scale`` px (SwinIR, DiffIR, BasicSR), on RGB
  without a crop (SRDiff);
- **deblurring**: PSNR/SSIM on RGB without a crop (Restormer, FFTformer, DiffIR);
- **bursts**: the official SyntheticBurst score (PSNR in linear sensor space on 14-bit predictions with
  40 px ignored at each border; deep-burst-sr, NTIRE 2021, BSRT: the protocol of the published rows of
  DP-IR's Table 1, :mod:`dpir.metrics.burst_official`), and PSNR on sRGB with the same border (which
  separates the border's effect from the colour space's);
- **every task**: LPIPS with the AlexNet and the VGG-16 trunk, inputs mapped to [-1, 1] as SRDiff and
  BasicSR-based code (DiffIR) do (``normalize=True`` on [0, 1] images).

Each protocol belongs to a family (psnr, ssim, lpips) and is set against the config's default of that
family: the task's first metric of the family in ``tasks.<task>.metrics`` with the task's
``crop_border``, read from the results files (so the default column is the main table's cell).  For each
protocol the table gives every method's mean (over images, then seeds, exactly as the main table), the
shift from the default, the ranking of the methods and whether it differs from the default ranking of
its family, naming each pair of methods that swaps.  Rows scored on fewer images than the others (a
method's ``max_images``) are shown apart and left out of the rankings, as in the main table.

A metric that cannot run here (LPIPS weights not cached; images too small for the official burst border)
is "n/a" with a footnote saying why and the command that fixes it, never a number.

Output: ``paths.protocols(cfg)`` (JSON) and the same name with ``.md``, which the report embeds.
Optional config key ``report.protocols.burst_border`` (default 40, the official value).
"""
from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dpir import paths
from dpir.atomic import atomic_write_text
from dpir.config import enabled_tasks
from dpir.errors import DpirError, MetricUnavailable
from dpir.score import load_scores

SCHEMA = 1
FAMILIES = ("psnr", "ssim", "lpips")
#: the default families' metric prefixes in ``tasks.<task>.metrics``
FAMILY_PREFIX = {"psnr": "psnr", "ssim": "ssim", "lpips": "lpips"}


@dataclass(frozen=True)
class Protocol:
    """One way of scoring: what is computed (``label``) and who reports numbers this way (``used_by``)."""
    name: str
    family: str
    label: str
    used_by: str
    lower_better: bool
    digits: int
    preset: str | None = None        # a metric preset of dpir.metrics (built with ``crop``)
    crop: int = 0
    official_burst: bool = False     # dpir.metrics.burst_official on the inverse-ISP'd prediction


def burst_border(config: dict) -> int:
    """``report.protocols.burst_border`` (default: the official 40 px)."""
    from dpir.metrics.burst_official import OFFICIAL_BORDER

    v = ((config.get("report") or {}).get("protocols") or {}).get("burst_border", OFFICIAL_BORDER)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise DpirError(f"report.protocols.burst_border must be a non-negative integer (the official value is "
                        f"{OFFICIAL_BORDER}), got {v!r}; fix it in the config")
    return v


def _lpips() -> list[Protocol]:
    return [
        Protocol("lpips_alex", "lpips", "LPIPS v0.1, AlexNet, inputs [-1, 1]", "SRDiff, DiffIR", True, 4, "lpips_alex"),
        Protocol("lpips_vgg", "lpips", "LPIPS v0.1, VGG-16, inputs [-1, 1]", "the other LPIPS backbone (DP-IR does "
                 "not name its own)", True, 4, "lpips_vgg"),
    ]


def protocols_for(tcfg: dict, config: dict) -> list[Protocol]:
    """The protocols of a task, by its kind."""
    kind = tcfg.get("kind")
    if kind == "sr":
        s = int(tcfg.get("scale", 4))
        return [
            Protocol(f"psnr_y_crop{s}", "psnr", f"PSNR, Y (BT.601), crop {s}", "SwinIR, DiffIR", False, 2, "psnr_y", s),
            Protocol(f"ssim_y_crop{s}", "ssim", f"SSIM, Y (BT.601), crop {s}", "SwinIR, DiffIR", False, 4, "ssim_y", s),
            Protocol("psnr_rgb_crop0", "psnr", "PSNR, RGB, no crop", "SRDiff", False, 2, "psnr_rgb", 0),
            Protocol("ssim_rgb_crop0", "ssim", "SSIM, RGB, no crop", "SRDiff", False, 4, "ssim_rgb", 0),
            *_lpips()]
    if kind == "deblur":
        return [
            Protocol("psnr_rgb_crop0", "psnr", "PSNR, RGB, no crop", "Restormer, FFTformer, DiffIR", False, 2,
                     "psnr_rgb", 0),
            Protocol("ssim_rgb_crop0", "ssim", "SSIM, RGB, no crop", "Restormer, FFTformer, DiffIR", False, 4,
                     "ssim_rgb", 0),
            *_lpips()]
    if kind == "burst":
        b = burst_border(config)
        return [
            Protocol("psnr_linear_official", "psnr", f"PSNR, linear sensor RGB, 14-bit predictions, {b} px border "
                     "(official SyntheticBurst score)", "deep-burst-sr, NTIRE 2021, BSRT (Table 1's published rows)",
                     False, 2, None, b, official_burst=True),
            Protocol(f"psnr_srgb_crop{b}", "psnr", f"PSNR, sRGB, {b} px border", "(the official border on DP-IR's "
                     "sRGB protocol)", False, 2, "psnr_rgb", b),
            *_lpips()]
    return []


# ------------------------------------------------------------------------------------------ scoring

class _Scorer:
    """One protocol's per-image score, or the reason it cannot run (``unavailable``)."""

    def __init__(self, p: Protocol):
        self.p = p
        self.metric = None
        self.unavailable: dict | None = None
        if p.official_burst:
            from dpir.metrics.burst_official import CONVENTION

            self.convention = CONVENTION.format(border=p.crop)
            return
        if p.preset == "lpips_vgg":
            from dpir.metrics.lpips_vgg import LPIPSVgg

            self.metric = LPIPSVgg(p.crop)
        else:
            from dpir.metrics import get_metric

            self.metric = get_metric(p.preset, crop_border=p.crop)
        self.convention = self.metric.convention
        try:
            self.metric.check_available()
        except MetricUnavailable as e:
            self.unavailable = {"reason": e.reason, "fix": e.fix}

    def score(self, out, ref, linear=None, meta=None) -> float:
        import torch

        with torch.no_grad():
            if self.p.official_burst:
                from dpir.metrics.burst_official import official_psnr_from_srgb

                return float(official_psnr_from_srgb(out, linear, meta, self.p.crop)[0])
            return float(self.metric(out, ref)[0])


def _default_of(tcfg: dict, family: str) -> str | None:
    return next((m for m in (tcfg.get("metrics") or []) if m.startswith(FAMILY_PREFIX[family])), None)


def _run_mean(values: dict[str, float], images: list[str]) -> float | None:
    finite = [values[i] for i in images if i in values and math.isfinite(values[i])]
    if any(i in values and math.isinf(values[i]) for i in images) and not finite:
        return math.inf
    return statistics.fmean(finite) if finite else None


def _method_mean(per_run: list[dict[str, float]], images: list[str]) -> float | None:
    """Mean over seeds of each run's mean over ``images`` (finite values; the main table's rule)."""
    means = [_run_mean(v, images) for v in per_run]
    if not means or any(m is None for m in means):
        return None
    return statistics.fmean(means)


def ranking(scores: dict[str, float | None], lower_better: bool, order: list[str]) -> list[str]:
    """Methods with a score, best first; ties keep ``order`` (the config's)."""
    have = [m for m in order if scores.get(m) is not None and not math.isnan(scores[m])]
    return sorted(have, key=lambda m: (scores[m] if lower_better else -scores[m], order.index(m)))


def swapped_pairs(default: dict[str, float | None], default_lower: bool, other: dict[str, float | None],
                  other_lower: bool, order: list[str]) -> list[list[str]]:
    """Pairs ``[a, b]`` that ``default`` ranks strictly a before b and ``other`` strictly b before a (methods
    scored under both only; a tie on either side is not a swap), in the default ranking's order."""
    def better(s, lower, a, b):
        return s[a] < s[b] if lower else s[a] > s[b]

    common = [m for m in ranking(default, default_lower, order) if other.get(m) is not None
              and not math.isnan(other[m])]
    out = []
    for i, a in enumerate(common):
        for b in common[i + 1:]:
            if better(default, default_lower, a, b) and better(other, other_lower, b, a):
                out.append([a, b])
    return out


def _burst_truth(root: Path, image_id: str):
    """(linear gt (1, 3, H, W), metadata) of one prepared burst, read by the harness's one burst reader."""
    from dpir.data.burst_io import read_burst
    from dpir.data.layouts import BurstSample

    bursts, gt_dir = root / "burst" / "bursts" / image_id, root / "burst" / "gt" / image_id
    meta = gt_dir / "meta_info.json"
    if not meta.is_file():
        meta = gt_dir / "meta_info.pkl"
    for f in (bursts / "im_raw_00.png", gt_dir / "im_rgb.png", meta):
        if not f.is_file():
            raise DpirError(f"{f} is missing (burst {image_id} of the prepared test set): re-run `dpir prepare` "
                            f"for the burst task")
    # the first frame only: read_burst checks the gt's size against it; the others are not needed here
    _, gt, m = read_burst(BurstSample(image_id, [bursts / "im_raw_00.png"], gt_dir / "im_rgb.png", meta))
    return gt[None], m


def table_for(config: dict, task: str, dataset: str, records: list[dict]) -> dict | None:
    """The protocol table of one (task, test dataset): JSON-ready."""
    from dpir.data.images import read_image
    from dpir.report.tables import method_order, published_record
    from dpir.workflow_facts import is_published

    tcfg = config["tasks"][task]
    protos = protocols_for(tcfg, config)
    if not protos:
        return None
    recs = [r for r in records if r["dataset"] == dataset and r["method"] in tcfg["methods"]]
    if not recs:
        return None
    order = method_order(recs, list(tcfg["methods"]))
    by_method: dict[str, list[dict]] = {}
    for r in sorted(recs, key=lambda r: r["seed"]):
        by_method.setdefault(r["method"], []).append(r)
    images = {m: sorted(set.intersection(*(set(r["images"]) for r in rs))) for m, rs in by_method.items()}
    n_full = max(len(v) for v in images.values())
    apart = [m for m in order if len(images[m]) < n_full]
    scorers = [_Scorer(p) for p in protos]
    test = paths.prepared(config, task, dataset) / "test"
    # per protocol, method -> one {image: score} per run (seed)
    per: dict[str, dict[str, list[dict[str, float]]]] = {p.name: {m: [{} for _ in by_method[m]] for m in order}
                                                        for p in protos}
    problems: dict[str, dict] = {}
    for s in scorers:
        if s.unavailable:
            problems[s.p.name] = s.unavailable
    ceiling: dict[str, float] = {}
    all_ids = sorted({i for rs in by_method.values() for r in rs for i in r["images"]})
    for image_id in all_ids:
        ref_path = test / "gt" / f"{image_id}.png"
        if not ref_path.is_file():
            raise DpirError(f"{ref_path} is missing (the target of image {image_id}): run `dpir prepare --task {task} "
                            f"--dataset {dataset}` again")
        ref = read_image(ref_path)[None]
        linear = meta = None
        if any(s.p.official_burst and s.p.name not in problems for s in scorers):
            linear, meta = _burst_truth(test, image_id)
            for s in scorers:                  # the protocol's ceiling: the target's own sRGB PNG scored this way
                if s.p.official_burst and s.p.name not in problems:
                    try:
                        ceiling[image_id] = s.score(ref, ref, linear, meta)
                    except DpirError as e:
                        problems[s.p.name] = {"reason": f"{e}.", "fix": None}
        for m in order:
            for k, r in enumerate(by_method[m]):
                if image_id not in r["images"]:
                    continue
                run_dir = paths.restored_dir(config, task, dataset, m, r["seed"])
                out_path = run_dir / f"{image_id}.png"
                if not out_path.is_file():
                    raise DpirError(f"{out_path} is missing (listed in the results file of {m} seed {r['seed']}): run "
                                    f"`dpir restore --task {task} --dataset {dataset} --method {m} --seed {r['seed']}` "
                                    f"and `dpir score` again")
                out = read_image(out_path)[None]
                if out.shape != ref.shape:
                    raise DpirError(f"{out_path} is {tuple(out.shape[-2:])} but its target {ref_path} is "
                                    f"{tuple(ref.shape[-2:])}: restore it again")
                for s in scorers:
                    if s.p.name in problems:
                        continue
                    try:
                        per[s.p.name][m][k][image_id] = s.score(out, ref, linear, meta)
                    except DpirError as e:       # e.g. images too small for the border: n/a with the reason
                        problems[s.p.name] = {"reason": f"{e}.", "fix": None}
    methods = [{"method": m, "label": by_method[m][0]["label"], "seeds": len(by_method[m]),
                "images": len(images[m]), "apart": m in apart} for m in order]
    ranked = [m for m in order if m not in apart]
    defaults = {}
    for fam in FAMILIES:
        name = _default_of(tcfg, fam)
        if name is None:
            continue
        entry = {"metric": name, "crop_border": int(tcfg.get("crop_border", 0)), "scores": {}, "available": True}
        for m in order:
            es = [r["metrics"].get(name) for r in by_method[m]]
            if any(e is None for e in es):
                entry["scores"][m] = None
                entry.setdefault("missing", f"`{name}` was not scored for every run; run `dpir score` again")
            elif not all(e["available"] for e in es):
                e = next(e for e in es if not e["available"])
                entry["scores"][m] = None
                entry["available"] = False
                entry["reason"], entry["fix"] = e["reason"], e["fix"]
            else:
                entry["scores"][m] = _method_mean([e["per_image"] for e in es], images[m])
            entry["lower_better"] = bool(es[0]["lower_better"]) if es and es[0] else fam == "lpips"
        entry["ranking"] = ranking({m: entry["scores"][m] for m in ranked}, entry["lower_better"], ranked)
        defaults[fam] = entry
    published = [p for name, mc in tcfg["methods"].items() if is_published(mc)
                 if (p := published_record(name, mc, dataset))]
    for d in defaults.values():      # a published score under the default metric's name goes in its column
        d["published"] = {r["method"]: r["scores"][d["metric"]] for r in published if d["metric"] in r["scores"]}
    out_protocols = []
    for s in scorers:
        p = s.p
        prob = problems.get(p.name)
        scores = {m: (None if prob else _method_mean(per[p.name][m], images[m])) for m in order}
        d = defaults.get(p.family)
        shift = {m: (scores[m] - d["scores"][m] if d and scores[m] is not None and d["scores"].get(m) is not None
                     else None) for m in order}
        rank = ranking({m: scores[m] for m in ranked}, p.lower_better, ranked)
        swaps = None
        if d and rank and d["ranking"]:
            swaps = swapped_pairs({m: d["scores"][m] for m in ranked}, d["lower_better"],
                                  {m: scores[m] for m in ranked}, p.lower_better, ranked)
        entry = {"name": p.name, "family": p.family, "label": p.label, "used_by": p.used_by,
                 "lower_better": p.lower_better, "digits": p.digits, "convention": s.convention,
                 "available": prob is None, "reason": prob and prob["reason"], "fix": prob and prob["fix"],
                 "default": d["metric"] if d else None, "scores": scores, "shift": shift, "ranking": rank,
                 "ranking_changed": None if swaps is None else bool(swaps), "swapped": swaps,
                 "published": {r["method"]: r["scores"][p.name] for r in published if p.name in r["scores"]}}
        if p.official_burst and not prob and ceiling:
            entry["ceiling"] = statistics.fmean(ceiling.values())
        out_protocols.append(entry)
    return {"task": task, "dataset": dataset, "title": tcfg.get("title", task), "kind": tcfg.get("kind"),
            "methods": methods, "defaults": defaults, "protocols": out_protocols,
            "published": [{"method": r["method"], "label": r["label"], "source": r["source"]} for r in published]}


def compute(config: dict) -> dict:
    """Every enabled task's protocol tables (JSON-ready); a one-line error when there is nothing to score."""
    t0 = time.perf_counter()
    root = Path(config["out"]) / "scores"
    if not root.is_dir():
        raise DpirError(f"no results folder {root}: run the workflow (`snakemake --cores all`) or `dpir restore` and "
                        f"`dpir score` first")
    tables = []
    for task in enabled_tasks(config):
        records = load_scores(config["out"], task)
        for ds in config["tasks"][task]["test_datasets"]:
            t = table_for(config, task, ds, records)
            if t:
                tables.append(t)
    if not tables:
        raise DpirError(f"no results files under {root} for the enabled tasks: run the workflow "
                        f"(`snakemake --cores all`) or `dpir score` first")
    return {"schema": SCHEMA, "burst_border": burst_border(config), "tables": tables,
            "seconds": round(time.perf_counter() - t0, 3)}


# ------------------------------------------------------------------------------------------ rendering

def _fmt(v: float | None, digits: int, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if math.isinf(v):
        return "+inf" if v > 0 else "-inf"
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def markdown(data: dict, prefix: str = "proto-") -> str:
    """The protocol tables as Markdown, with numbered footnotes (``[^proto-N]``)."""
    from dpir.report.tables import ARROW, Footnotes

    parts = []
    for t in data["tables"]:
        fn = Footnotes(f"{prefix}{t['task']}-{t['dataset']}-")
        methods = [m for m in t["methods"]]
        labels = {m["method"]: m["label"] for m in methods}
        cols = ["Method"]
        for fam, d in t["defaults"].items():
            cols.append(f"default {d['metric']} (crop {d['crop_border']}) {ARROW[d['lower_better']]}")
        why = {}            # protocol -> the footnote of its n/a cells (the header and every cell carry it)
        for p in t["protocols"]:
            mark = ""
            if not p["available"]:
                fix = f" Fix: `{p['fix']}`, then re-run `dpir protocols`." if p["fix"] else ""
                why[p["name"]] = f"{p['label']}: n/a: {p['reason']}{fix}"
                mark = fn.mark(why[p["name"]])
            if "ceiling" in p:
                mark += fn.mark(f"{p['label']}: the predictions are the stored sRGB PNGs taken back to linear by the "
                                f"exact inverse of each burst's ISP (dpir.metrics.burst_official); what the forward ISP "
                                f"clipped and the PNG's quantisation are lost, so the targets' own sRGB PNGs scored "
                                f"this way give {_fmt(p['ceiling'], 2)} dB: no method can score above this ceiling.")
            cols.append(f"{p['label']} {ARROW[p['lower_better']]}{mark}")
        rows, apart_rows = [], []
        for m in methods:
            name = m["method"]
            label = labels[name]
            if m["apart"]:
                label += fn.mark(f"{labels[name]}: scored on {m['images']} images only (its `max_images`): not "
                                 "comparable with the other rows, left out of the rankings.")
            row = [label]
            for fam, d in t["defaults"].items():
                v = d["scores"].get(name)
                cell = _fmt(v, 2 if fam == "psnr" else 4)
                if v is None and not d["available"]:
                    cell += fn.mark(f"default `{d['metric']}`: {d['reason']} Fix: `{d['fix']}`, then re-run the workflow.")
                elif v is None and d.get("missing"):
                    cell += fn.mark(f"default: {d['missing']}.")
                row.append(cell)
            for p in t["protocols"]:
                v, s = p["scores"].get(name), p["shift"].get(name)
                cell = _fmt(v, p["digits"])
                if cell == "n/a":          # every n/a cell says why (the protocol's reason, or no finite score)
                    cell += fn.mark(why.get(p["name"]) or f"{p['label']}: no finite score for {labels[name]} under "
                                    "this protocol (a NaN or infinite mean over its images).")
                elif v is not None and s is not None:
                    cell += f" ({_fmt(s, p['digits'], signed=True)})"
                row.append(cell)
            (apart_rows if m["apart"] else rows).append(row)
        for pub in t.get("published", []):
            row = [pub["label"] + fn.mark(f"{pub['label']}: copied from {pub['source']}, not measured here; "
                                          "not ranked.")]
            row += [_fmt(d["published"][pub["method"]], 2 if fam == "psnr" else 4)
                    if pub["method"] in d.get("published", {}) else "—" for fam, d in t["defaults"].items()]
            row += [_fmt(p["published"].get(pub["method"]), p["digits"]) if pub["method"] in p["published"] else "—"
                    for p in t["protocols"]]
            rows.append(row)
        parts += [f"### Protocol sensitivity: {t['title']} — dataset `{t['dataset']}`", "",
                  "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        parts += ["| " + " | ".join(r) + " |" for r in rows + apart_rows]
        parts += ["", ("Each cell: mean over images (then seeds) of the same restored PNGs, and in parentheses its "
                       "shift from the config's default of the same family (PSNR, SSIM or LPIPS)."), ""]
        parts += ["| Protocol | used by | ranking (best first) | same ranking as the default? | pairs that swap |",
                  "|---|---|---|---|---|"]
        def none(text: str) -> str:       # an n/a ranking cell, with why (a footnote only where one is printed)
            return "n/a" + fn.mark(text)

        for fam, d in t["defaults"].items():
            ranking = " > ".join(d["ranking"]) or none(f"default {d['metric']}: no method has a score to rank (see "
                                                       "its column).")
            parts.append(f"| default {d['metric']} (crop {d['crop_border']}) | this config | {ranking} | — | — |")
        for p in t["protocols"]:
            reason = why.get(p["name"]) or (f"{p['label']}: no ranking to compare: no method has a finite score "
                                             "under this protocol or under its default.")
            if p["ranking_changed"] is None:
                same, swaps = none(reason), "—"
            else:
                same = "no" if p["ranking_changed"] else "yes"
                swaps = ", ".join(f"{a} ↔ {b}" for a, b in p["swapped"]) or "none"
            ranking = " > ".join(p["ranking"]) or none(reason)
            parts.append(f"| {p['label']} | {p['used_by']} | {ranking} | {same} | {swaps} |")
        parts += ["", "Conventions:", ""]
        parts += [f"- `{p['name']}`: {p['convention']}." for p in t["protocols"]]
        parts += ["", *fn.lines(), ""]
    return "\n".join(parts)


def write_protocols(config: dict) -> tuple[Path, Path, dict]:
    """Compute and write ``paths.protocols(config)`` (JSON) and its ``.md`` twin."""
    data = compute(config)
    out = paths.protocols(config)
    md = out.with_suffix(".md")
    atomic_write_text(out, json.dumps(data, indent=1, allow_nan=True) + "\n")
    atomic_write_text(md, "## Protocol sensitivity\n\n" + markdown(data) + "\n")
    return out, md, data


def read_protocols(path: Path) -> dict[str, Any] | None:
    """The protocol tables written by ``dpir protocols``, or None when the file does not exist."""
    if not Path(path).is_file():
        return None
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise DpirError(f"{path} is not readable JSON ({e}); delete it and run `dpir protocols` again") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("tables"), list):
        raise DpirError(f"{path} is not a protocol table of schema {SCHEMA}; delete it and run `dpir protocols` again")
    return data
