"""The claims table at the top of ``report.md``: every claim of the paper that the report checks, its
verdict, the paired interval it rests on, the scale it was measured at, and -- from the numbers -- whether
the comparison *can* be informative at that scale.

Inputs are structured verdicts (:class:`dpir.report.stats.Verdict`), never the rendered Markdown: the
ablation tables' ``expect`` entries (built by :mod:`dpir.report.ablation_rows`, collected by
:func:`dpir.report.ablations.render_ablations`, written to ``<out>/ablations/claims.json`` by
``dpir ablations``), the acceleration check (``report.acceleration``) and the paper-size Table 9 count.

The rule that marks a comparison "not informative here" (:data:`INACTIVE_RULE`): DP-IR's output is its IR
network's estimate refined by a diffusion jump and a fusion net.  When every DP-IR row a claim compares
is, on PSNR, within the equivalence margin of its IR network's own output (the paired difference to the
``backbone`` method whose ``network`` is the row's ``ir:``, 95 % interval wholly inside ±margin), the
diffusion part changes nothing measurable at this scale: the claim's rows then differ only as their IR
networks and fusions do, so no verdict about the diffusion part can be read from them.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from dpir.report import paired as P
from dpir.report.stats import (
    Verdict,
    common_images,
    finite_images,
    with_unit,
)

NOT_INFORMATIVE = "**no**"
INACTIVE_RULE = ("\"Informative at this scale?\" is **no** by this rule: every DP-IR row the claim compares has a paired PSNR difference "
                 "to its IR network's own output (the `backbone` row whose `network` is the DP-IR row's `ir:`) "
                 "whose 95 % interval lies within the equivalence margin (`report.margins`): the diffusion part "
                 "changes nothing measurable at this scale, so the rows differ only as their IR networks and fusions "
                 "do.")


@dataclass(frozen=True)
class Claim:
    """One row of the claims table."""
    source: str                  # "Table 4", "acceleration (sr)", "Table 9 (paper size)"
    task: str
    dataset: str
    verdict: Verdict
    informative: str = ""        # "" (not assessed), or the scale check's sentence
    scale: str = ""              # "" (from the config: :func:`scale_text`), or the scale it was checked at

    def to_json(self) -> dict:
        return {"source": self.source, "task": self.task, "dataset": self.dataset,
                "verdict": asdict(self.verdict), "informative": self.informative, "scale": self.scale}

    @classmethod
    def from_json(cls, d: dict) -> Claim:
        v = dict(d["verdict"])
        v["rows"] = tuple(v.get("rows") or ())
        return cls(d["source"], d["task"], d["dataset"], Verdict(**v), d.get("informative", ""), d.get("scale", ""))


def claims_path(config: dict) -> Path:
    from dpir import paths

    return paths.claims(config)


def write_claims(config: dict, claims: list[Claim]) -> Path:
    from dpir.checkpoint import atomic_write_text

    path = claims_path(config)
    atomic_write_text(path, json.dumps({"format": "dpir-claims/1", "claims": [c.to_json() for c in claims]},
                                       indent=1) + "\n")
    return path


def read_claims(config: dict) -> list[Claim] | None:
    """The ablation claims written by ``dpir ablations``, or None when it has not run (or wrote another format)."""
    try:
        data = json.loads(claims_path(config).read_text())
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != "dpir-claims/1":
        return None
    return [Claim.from_json(c) for c in data["claims"]]


def backbone_of(methods: dict, method: str) -> str | None:
    """The ``backbone`` method running a DP-IR row's IR network (its ``ir:``), or None."""
    mcfg = methods.get(method) or {}
    if mcfg.get("kind") != "dpir" or not mcfg.get("ir"):
        return None
    return next((n for n, m in methods.items() if m.get("kind") == "backbone" and m.get("network") == mcfg["ir"]), None)


class ScaleCheck:
    """The :data:`INACTIVE_RULE` over a task's runs, with the paired comparisons cached (a DP-IR row is in
    several claims; each comparison is one bootstrap).  :func:`scale_check` shares one per (task, dataset)."""

    def __init__(self, config: dict, task: str, dataset: str):
        from dpir.config import all_methods
        from dpir.score import load_scores

        self.methods = all_methods(config, task)
        self.margins = (config.get("report") or {}).get("margins")
        self.runs: dict[str, list[dict]] = {}
        for r in load_scores(config["out"], task):
            if r["dataset"] == dataset:
                self.runs.setdefault(r["method"], []).append(r)
        for rs in self.runs.values():
            rs.sort(key=lambda r: r["seed"])
        self._cache: dict[str, tuple[str, P.Interval] | None] = {}

    def _metric(self, runs: list[dict]) -> str | None:
        for r in runs:
            for m, e in r["metrics"].items():
                if m.startswith("psnr") and e.get("available"):
                    return m
        return None

    def to_backbone(self, method: str) -> tuple[str, P.Interval] | None:
        """(metric, paired difference DP-IR row - its IR backbone row) on their common images, or None."""
        if method not in self._cache:
            b = backbone_of(self.methods, method)
            got = None
            if b and method in self.runs and b in self.runs:
                metric = self._metric(self.runs[method])
                a_runs, b_runs = self.runs[method], self.runs[b]
                imgs = finite_images([*a_runs, *b_runs], metric, common_images({method: a_runs, b: b_runs})) \
                    if metric else []
                a, bm = (P.score_matrix(a_runs, metric, imgs), P.score_matrix(b_runs, metric, imgs)) if imgs else (None, None)
                got = (metric, P.paired_difference(a, bm)) if a is not None and bm is not None else None
            self._cache[method] = got
        return self._cache[method]

    def sentence(self, rows: tuple[str, ...]) -> str:
        """The rule's verdict for a claim over ``rows`` (DP-IR rows without a backbone row are not assessed)."""
        dp = [m for m in rows if backbone_of(self.methods, m)]
        if not dp:
            return ""
        parts, failing, last = [], [], None
        for m in dp:
            got = self.to_backbone(m)
            if got is None:
                return ""
            metric, iv = got
            margin = P.margin_for(metric, self.margins)
            if margin is None:
                return ""
            text = (f"{m} − {backbone_of(self.methods, m)} {P.format_interval(iv, 3, signed=True)}"
                    f"{with_unit(metric)}")
            parts.append(text)
            if P.equivalence_verdict(iv, margin) != "close":
                failing.append(text)
            last = (metric, margin)
        metric, margin = last
        band = f"±{margin:g}{with_unit(metric)}"
        if not failing:
            return f"{NOT_INFORMATIVE} — every DP-IR row is within {band} of its IR network's output ({'; '.join(parts)})"
        return f"yes — not every DP-IR row is within {band} of its IR output ({'; '.join(failing)})"


def scale_check(config: dict, task: str, dataset: str, cache: dict | None) -> ScaleCheck:
    """The :class:`ScaleCheck` of (task, dataset), from ``cache`` when it holds one (``cache`` None: a new one)."""
    if cache is None:
        return ScaleCheck(config, task, dataset)
    if (task, dataset) not in cache:
        cache[(task, dataset)] = ScaleCheck(config, task, dataset)
    return cache[(task, dataset)]


def scale_text(config: dict, task: str, dataset: str) -> str:
    """The scale a claim was measured at, from the config: its description and whether the test data are
    the bundled sample images or a real dataset."""
    ds = (config.get("datasets") or {}).get(dataset) or {}
    kind = ds.get("kind", "?")
    data = ("bundled sample images" + (f", {ds['test_crop']}px crops" if ds.get("test_crop") else "")
            if kind == "bundled" else f"dataset `{dataset}` ({kind})")
    desc = str(config.get("description") or "embedded default").split(" (")[0]
    return f"{desc}; {data}"


def meaning(claim: Claim) -> str:
    """One sentence, from the numbers, on what the sample size means for the claim."""
    v = claim.verdict
    if v.kind == "not checked" and v.stand_in:
        return (f"{v.stand_in} was not computed in this run: the claimed size cannot be read from the stand-in "
                f"`{v.metric}`.")
    if v.kind == "not checked":
        return "Not measured in this run."
    if v.interval == EXACT:
        return "Exact laws of the Gaussian world (no sampling noise): the verdict does not depend on any data."
    if claim.source.startswith("Gaussian world") and v.half_width is not None:
        return (f"Estimated from {v.n} of an exactly known world: only the sampling error (the interval, ± 2 SE) "
                "limits the verdict.")
    if claim.informative.startswith(NOT_INFORMATIVE):
        return "The diffusion part is inactive at this scale: no verdict on the paper's claim can be read here."
    if v.half_width is None:
        if v.n:
            return f"{v.n}: too few images for an interval; the verdict cannot be decided at this scale."
        return "An exact count (no sampling noise): the verdict does not depend on the data."
    unit = with_unit(v.metric or "")
    on = f" (on the stand-in `{v.metric}`, not {v.stand_in})" if v.stand_in else ""
    return (f"On {v.n} the 95 % interval is ±{v.half_width:.2g}{unit} wide{on}: differences smaller than that "
            "cannot be seen at this scale.")


def acceleration_claims(config: dict, task: str, dataset: str, records: list[dict], acc: dict,
                        check: ScaleCheck, checks: list | None = None) -> list[Claim]:
    """The acceleration check as claims: each variant's :class:`dpir.report.analysis.AccelerationCheck`, the
    same structured verdict the report's acceleration table prints (``checks``: ones already made from these
    records, e.g. for that table; otherwise made here)."""
    from dpir.report.analysis import acceleration_checks

    if checks is None:
        checks = acceleration_checks(records, acc["reference"], acc["compare"], acc.get("metrics", ["psnr_y", "ssim_y"]),
                                     (config.get("report") or {}).get("margins"))
    return [Claim(f"acceleration ({task})", task, dataset, c.verdict(), check.sentence((c.method, c.reference)))
            for c in checks]


def table9_claims(data: dict | None) -> list[Claim]:
    """The paper-size Table 9 verdicts (exact FLOP counts: no interval, no sampling)."""
    from dpir.report import paper_cost as C
    from dpir.report.tables import plain_number

    if not data:
        return []
    out = []
    for task in dict.fromkeys(r["task"] for r in data["rows"]):
        ref = C.reference(data["rows"], task)
        if ref is None:
            continue
        for r in C.competitors(data["rows"], task):
            text = C.verdict(r["tflops"] / ref["tflops"])
            v = Verdict(f"{ref['label']} costs 2x-100x fewer TFLOPs than {r['label']}", text, text.split(" (")[0],
                        f"{plain_number(r['tflops'] / ref['tflops'])}x (exact count)", "", "tflops", (ref["label"], r["label"]))
            out.append(Claim("Table 9 (paper size)", task, "", v, "yes — an exact count, no sampling"))
    return out


#: the interval cell of a claim read off exact laws (no sampling): :func:`gaussian_claims`
EXACT = "exact"


def gaussian_claims(data: dict | None) -> list[Claim]:
    """The Gaussian-world section's claims (``dpir gaussian``'s JSON, :mod:`dpir.report.gaussian`) as rows of
    the claims table: the exact ones (verdicts from exact laws: no interval, no sampling) and, with
    ``gaussian.learned``, those on the learned parts (their 95 % interval: estimate ± 2 standard errors;
    "inconclusive" when it straddles the criterion)."""
    if not data:
        return []
    out = []
    size = data["settings"]["size"]
    for g in data["degradations"]:
        for c in g["claims"]:
            kind = "agrees" if c["holds"] else "disagrees"
            v = Verdict(c["claim"], f"{kind} — {c['criterion']}", kind, EXACT, "", None, (), None,
                        f"- Gaussian world ({g['degradation']}): {c['claim']}: {c['text']} → **{kind}**.")
            out.append(Claim(f"Gaussian world ({g['degradation']})", "", "", v, "yes — exact laws, no sampling",
                             f"exact Gaussian world, {size}x{size}"))
    learned = data.get("learned") or {}
    for g in learned.get("degradations") or []:
        s = learned["settings"]
        for c in g["claims"]:
            kind = {True: "agrees", False: "disagrees", None: "inconclusive"}[c["holds"]]
            v = Verdict(c["claim"], f"{kind} — {c['criterion']}", kind, c["interval"], c["n"], None, (),
                        c["half_width"], f"- Gaussian world ({g['degradation']}, learned parts): {c['claim']}: "
                        f"{c['text']} → **{kind}**.")
            out.append(Claim(f"Gaussian world ({g['degradation']}, learned parts)", "", "", v,
                             f"yes — estimated from {s['samples']} samples of an exactly known world",
                             f"Gaussian world, {s['size']}x{s['size']}, parts trained here ({s['steps']} steps)"))
    return out


def claims_section(config: dict, claims: list[Claim]) -> list[str]:
    """The Markdown section: the table, then the rule that marks a comparison not informative."""
    lines = ["## Claims checked", "",
             "Each claim of the paper this report checks, with its verdict (paired per-image differences, 95 % "
             "percentile bootstrap; details in the sections below).", ""]
    if not claims:
        lines += ["No claim was checked in this run.", ""]
    else:
        lines += ["| Source | Claim | Verdict | Paired Δ [95 % CI] | Sample | Scale | Informative at this scale? "
                  "| What the scale means |", "|---|---|---|---|---|---|---|---|"]
        for c in claims:
            v = c.verdict
            scale = c.scale or ("paper architectures, counted on the meta device" if c.source.startswith("Table 9 (paper")
                                else scale_text(config, c.task, c.dataset))
            cells = [c.source, v.claim, v.verdict, v.interval or "—", v.n or "—", scale,
                     c.informative or "not assessed (no DP-IR row with its IR backbone row)", meaning(c)]
            lines.append("| " + " | ".join(x.replace("|", "\\|").replace("\n", " ") for x in cells) + " |")
        lines += ["", INACTIVE_RULE, ""]
        if any(c.source.startswith("Gaussian world") for c in claims):
            lines += ["The Gaussian-world rows are not paired image differences: their verdicts are read off exact laws "
                      "(interval \"exact\") or, for learned parts, estimated from samples of the exactly known world "
                      "(95 % interval: estimate ± 2 standard errors); see the Gaussian-world section.", ""]
    from dpir.config import ablation_tables

    cost = [t["title"].split(":")[0] for t in ablation_tables(config).values() if t["kind"] in ("training_cost", "flops")]
    if cost:
        lines += [f"Not in this table: the cost ablations ({', '.join(dict.fromkeys(cost))}), exact counts at this "
                  "run's scale; their verdicts are in the Ablations section.", ""]
    return lines
