"""``dpir tables`` and ``dpir report``: render tables, figures and ``report.md`` from results JSON."""
from __future__ import annotations

import json
import os
from pathlib import Path

from dpir import paths
from dpir.checkpoint import atomic_write_text
from dpir.config import ablation_tables, config_hash, enabled_tasks
from dpir.errors import DpirError
from dpir.report.plots import perception_distortion
from dpir.report.tables import Table, build_table, published_record
from dpir.score import load_scores
from dpir.workflow_facts import is_published


def table_name(task: str, dataset: str) -> str:
    return f"{task}_{dataset}"


def paper_order(config: dict) -> list[str]:
    """The enabled tasks in the paper's table order (the number in a title "Table N: ..."; tasks without
    one keep their config order, after the numbered ones)."""
    import re

    def number(task):
        m = re.match(r"\s*Table\s+(\d+)", str(config["tasks"][task].get("title") or ""))
        return int(m.group(1)) if m else 10 ** 6
    tasks = enabled_tasks(config)
    return sorted(tasks, key=lambda t: (number(t), tasks.index(t)))


def render_tables(config: dict) -> list[tuple[str, str, Table]]:
    """Build and write every (task, test dataset) table, in the paper's order; returns (task, dataset, table)."""
    out = []
    for task in paper_order(config):
        tcfg = config["tasks"][task]
        records = load_scores(config["out"], task)
        for ds in tcfg["test_datasets"]:
            recs = [r for r in records if r["dataset"] == ds and r["method"] in tcfg["methods"]]
            if not recs:
                continue
            recs += [p for name, mcfg in tcfg["methods"].items() if is_published(mcfg)
                     if (p := published_record(name, mcfg, ds))]
            metrics = tcfg.get("metrics") or list(recs[0]["metrics"])
            title = f"{tcfg.get('title', task)} — dataset `{ds}`"
            t = build_table(recs, table_name(task, ds), title, metrics, list(tcfg["methods"]))
            t.write(paths.tables_dir(config))
            out.append((task, ds, t))
    if not out:
        raise DpirError(f"no results under {Path(config['out']) / 'scores'}: run the workflow "
                        f"(`snakemake --cores all`) or `dpir score` first")
    return out


def _perceptual_axis(table: Table) -> str | None:
    from dpir.metrics import PERCEPTUAL_AXES

    for m in PERCEPTUAL_AXES:
        if any(r.get(m) is not None for r in table.numeric):
            return m
    return None


def _provenance_block(config: dict) -> str:
    records = load_scores(config["out"])
    commits = sorted({(r["provenance"]["git"]["commit"] or "unknown")[:12] + (" (dirty)" if r["provenance"]["git"]["dirty"] else "")
                      for r in records})
    devices = sorted({str(r["provenance"].get("device")) for r in records})
    dates = sorted(r["provenance"]["date"] for r in records)
    pk = records[0]["provenance"]["packages"] if records else {}
    lines = [
        f"- code: git {', '.join(commits)}",
        f"- config hash: `{config_hash(config)}` (config files: {', '.join(config.get('_sources', [])) or 'n/a'})",
        f"- device: {', '.join(devices)}; torch threads: {records[0]['provenance'].get('torch_threads') if records else 'n/a'}",
        f"- runs: {len(records)} results files, dated {dates[0] if dates else '-'} to {dates[-1] if dates else '-'}",
        "- packages: " + ", ".join(f"{k} {v}" for k, v in pk.items() if v),
        "- seeds: image i of run seed s draws its noise from a generator seeded by sha256(f'{s}:{id}') (dpir.rng).",
    ]
    return "\n".join(lines)


def _data_notes(config: dict) -> list[str]:
    notes = []
    for task in enabled_tasks(config):
        for ds in config["tasks"][task]["test_datasets"]:
            p = paths.manifest(config, task, ds)
            if not p.exists():
                continue
            man = json.loads(p.read_text())
            test = man["splits"].get("test", {})
            sizes = sorted({tuple(s) for s in test.get("sizes", {}).values()})
            notes.append(f"- `{task}/{ds}`: {len(test.get('ids', []))} test images ({', '.join(test.get('ids', []))}); "
                         f"HR sizes {', '.join(f'{h}x{w}' for h, w in sizes)}; "
                         f"{len(man['splits'].get('train', {}).get('ids', []))} training images.")
            for s in man.get("skipped", []):
                notes.append(f"  - skipped `{s['id']}` ({s['split']}): {s['reason']}")
            for image_id, ns in man.get("notes", {}).items():
                notes.append(f"  - `{image_id}`: {'; '.join(ns)}")
    return notes


def _training_notes(config: dict) -> list[str]:
    lines = []
    for name in config["networks"]:
        log = paths.network_dir(config, name) / "train_log.json"
        if log.exists():
            r = json.loads(log.read_text())
            lines.append(f"| {name} | {config['networks'][name]['arch']} | {r['trained_params'] / 1e6:.3f} | {r['steps']} | "
                         f"{r['batch']} | {r.get('patch')} | {r['train_images']} | {r['final_loss']:.4g} | {r['seconds_this_run']:.0f} |")
    if not lines:
        return []
    return ["| network | arch | trained params (M) | steps | batch | patch | train images | final loss | seconds |",
            "|---|---|---|---|---|---|---|---|---|", *lines]


def _derived_sections(config: dict, rep_cfg: dict, task: str, ds: str, claims: list | None = None,
                      checks: dict | None = None) -> list[str]:
    """Acceleration check and cost ratios for one (task, dataset), when the config asks for them; the
    acceleration verdicts also go to ``claims`` (structured, for the claims table)."""
    from dpir.report.analysis import acceleration_table, cost_table

    tcfg = config["tasks"][task]
    records = [r for r in load_scores(config["out"], task) if r["dataset"] == ds and r["method"] in tcfg["methods"]]
    parts: list[str] = []
    acc = (rep_cfg.get("acceleration") or {}).get(task)
    if acc:
        from dpir.report.analysis import acceleration_checks

        # decided once, read by the table and by the claims table
        acc_checks = acceleration_checks(records, acc["reference"], acc["compare"],
                                         acc.get("metrics", ["psnr_y", "ssim_y"]), rep_cfg.get("margins"))
        res = acceleration_table(records, acc["reference"], acc["compare"], acc.get("metrics", ["psnr_y", "ssim_y"]),
                                 f"{task}_{ds}_acceleration", f"One-step acceleration vs the full chain ({task} / {ds})",
                                 margins=rep_cfg.get("margins"), checks=acc_checks)
        if res:
            t, verdicts = res
            t.write(paths.tables_dir(config))
            parts += [f"### {t.title}", "", t.markdown(), "", "Does our run agree with the paper?", "", *verdicts, ""]
            if claims is not None:
                from dpir.report.claims import acceleration_claims, scale_check

                claims += acceleration_claims(config, task, ds, records, acc, scale_check(config, task, ds, checks),
                                              checks=acc_checks)
    tfl = paths.tflops(config, task)
    if tfl.exists():
        data = json.loads(tfl.read_text())
        parts += [f"### TFLOPs per 1280x720 output image ({task}; the paper's Table 9 form)", "", data["markdown"], "",
                  "Per-call cost of each network measured by FlopCounterMode on a full-size forward (2 x MACs of "
                  "conv/matmul; FFTs and elementwise ops not counted); call counts by forward-call counting "
                  "(`dpir tflops`).", ""]
    ref = (rep_cfg.get("cost_reference") or {}).get(task)
    if ref:
        t = cost_table(records, ref, f"{task}_{ds}_cost", f"Cost per image relative to the reference ({task} / {ds})",
                       list(tcfg["methods"]))
        if t:
            t.write(paths.tables_dir(config))
            parts += [f"### {t.title}", "", t.markdown(), ""]
    return parts


def _crops_section(config: dict, task: str, ds: str, table: Table, fig_dir: Path, report_dir: Path) -> list[str]:
    """The zoomed-crops figure of one table (:mod:`dpir.report.crops`), or nothing without restored images."""
    from dpir.report.crops import crop_figure

    tcfg = config["tasks"][task]
    records = [r for r in load_scores(config["out"], task) if r["dataset"] == ds and r["method"] in tcfg["methods"]]
    got = crop_figure(config, task, ds, records, [r["method"] for r in table.numeric],
                      fig_dir / f"{table.name}_crops.png")
    if got is None:
        return []
    fig, caption = got
    return [f"![crops {task}/{ds}]({os.path.relpath(fig, report_dir)})", "", f"*{caption}*", ""]


def _protocols_section(config: dict) -> list[str]:
    """The protocol-sensitivity tables (``dpir protocols``, :mod:`dpir.report.protocols`) with their
    footnotes; nothing when they were not computed (a report rendered by hand before `dpir protocols`)."""
    from dpir.report.protocols import markdown, read_protocols

    data = read_protocols(paths.protocols(config))
    if data is None:
        return []
    order = {t: i for i, t in enumerate(paper_order(config))}      # the main tables' order
    data = {**data, "tables": sorted(data["tables"], key=lambda t: order.get(t["task"], len(order)))}
    intro = ("The restored PNGs of the tables above, re-scored under each published evaluation protocol (`dpir "
             "protocols`): the shift of every method from this config's default and whether the ranking of the "
             "methods changes.")
    return ["## Protocol sensitivity", "", intro, "", markdown(data), ""]


def _undertrained_lines(config: dict, task: str, ds: str) -> list[str]:
    """The rows of this table trained here that score below the task's trivial baseline
    (:mod:`dpir.report.undertrained`), one flagged line each."""
    from dpir.report.undertrained import diagnose, footnotes, undertrained

    tcfg = config["tasks"][task]
    records = [r for r in load_scores(config["out"], task) if r["dataset"] == ds and r["method"] in tcfg["methods"]]
    labels = {name: m.get("label", name) for name, m in tcfg["methods"].items()}
    flags = undertrained(config, task, records)
    splits = {m: diagnose(config, task, ds, [r for r in records if r["method"] == m])    # what dominates the
              for m in {f["method"] for f in flags}}                                   # error: cast, chroma, ...
    for f in flags:
        f["split"] = splits[f["method"]]
    lines = footnotes(flags, labels)
    return [*lines, ""] if lines else []


def render_report(config: dict) -> Path:
    tables = render_tables(config)
    fig_dir = paths.figures_dir(config)
    report_path = paths.report(config)
    parts = ["# dpir-bench report", "",
             f"{config.get('description', 'Embedded default configuration')}. Every number below is read from the "
             f"results JSON files under `{config['out']}/scores/`, produced by `dpir restore` and `dpir score`; "
             "nothing is typed in by hand.", "", "## Provenance", "", _provenance_block(config), ""]
    rep_cfg = config.get("report") or {}
    claims: list = []
    checks: dict = {}       # the claims' scale checks, shared by the acceleration check and the ablations
    top = parts.index("## Provenance")      # the claims table goes first, right under the description
    for task, ds, t in tables:
        parts += [f"## {t.title}", "", t.markdown(), ""]
        parts += _undertrained_lines(config, task, ds)
        parts += _derived_sections(config, rep_cfg, task, ds, claims, checks)
        x = _perceptual_axis(t)
        y = next((m for m in (config["tasks"][task].get("metrics") or []) if m.startswith("psnr")), None)
        if x and y and sum(1 for r in t.numeric if r.get(x) is not None) >= 2:
            fig = fig_dir / f"{t.name}_perception_distortion.png"
            perception_distortion(t.numeric, x, y, fig, f"Perception-distortion, {task} / {ds}")
            rel = os.path.relpath(fig, report_path.parent)
            from dpir.report.ablation_rows import stand_in_for

            stand_in = stand_in_for("perceptual", x)
            note = f" `{x}` stands in for {stand_in}, which this run did not compute." if stand_in else ""
            parts += [f"![perception-distortion {task}/{ds}]({rel})", "",
                      f"*Perception–distortion plane: {y} against {x}, one point per method (error bars: 95 % "
                      f"bootstrap intervals).{note}*", ""]
        parts += _crops_section(config, task, ds, t, fig_dir, report_path.parent)
    parts += _protocols_section(config)
    from dpir.report.gaussian import section as gaussian_section

    parts += gaussian_section(config, report_path.parent)      # the exact Gaussian world (`dpir gaussian`)
    from dpir.report.paper_cost import paper_cost_path, read_table9, table9_section

    t9 = paper_cost_path(config)
    t9_data = read_table9(t9)
    parts += table9_section(t9_data, f"{t9}")
    from dpir.report.ablations import render_ablations
    from dpir.report.claims import claims_section, gaussian_claims, table9_claims
    from dpir.report.gaussian import gaussian_json, read_gaussian

    ablation_claims: list = []        # the report renders the ablations itself (same inputs as `dpir ablations`)
    if ablation_tables(config):
        parts += render_ablations(config, report_path.parent, claims=ablation_claims, checks=checks)
    g_data = read_gaussian(gaussian_json(config)) if config.get("gaussian") else None      # `dpir gaussian`
    parts[top:top] = claims_section(config, ablation_claims + claims + table9_claims(t9_data) + gaussian_claims(g_data))
    data = _data_notes(config)
    if data:
        parts += ["## Data", "", *data, ""]
    train = _training_notes(config)
    if train:
        parts += ["## Trained networks", "", *train, ""]
    atomic_write_text(report_path, "\n".join(parts) + "\n")
    return report_path
