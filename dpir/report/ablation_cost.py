"""Ablation tables of kind ``training_cost`` and ``flops``: what each method trains (parameters,
iterations, samples, images of its networks, from their ``train_log.json``; the paper's Table 7) and
what it costs per image (TFLOPs per 1280x720 image = per-step cost x steps + once-per-image cost, from
the ``dpir tflops`` file, with the ratio to a reference row and measured seconds; Table 9)."""
from __future__ import annotations

import json
import math
import statistics

from dpir import paths
from dpir.config import ablation_dataset, all_methods
from dpir.errors import DpirError
from dpir.report.ablation_cells import network_params
from dpir.report.ablation_rows import scored_runs
from dpir.report.stats import claimed_range
from dpir.report.tables import Footnotes, Table, ratio_number, ratio_text
from dpir.workflow_facts import networks_of, training_chain


def training_cost_table(config: dict, name: str, spec: dict) -> tuple[Table, list[str]]:
    """Table 7: what each method trains, from the networks' own ``train_log.json``."""
    task = spec["task"]
    methods = all_methods(config, task)
    fn = Footnotes(f"{name.replace('_', '-')}-")
    columns = ["Method", "Networks trained for this task", "Params trained (M)", "Iterations", "Samples seen",
               "Training images", "Reused (not trained for this task)", "Train CPU s"]
    rows, numeric = [], []
    for method in spec["rows"]:
        mcfg = methods[method]
        reused = {}
        if mcfg.get("kind") == "dpir":   # the paper's point: only the fusion net is trained for a new task
            reused = {mcfg["denoiser"]: "denoiser, shared by all tasks", mcfg["ir"]: "IR backbone, off the shelf"}
        nets = training_chain(config, networks_of(mcfg), skip=set(reused))
        trained, cells, params, iters, samples, images, secs = [], [], 0, 0, 0, set(), 0.0
        missing = []
        for n in nets:
            if n in reused:
                continue
            log = paths.network_dir(config, n) / "train_log.json"
            if not log.exists():
                missing.append(n)
                continue
            r = json.loads(log.read_text())
            trained.append(n)
            params += int(r["trained_params"])
            iters += int(r["steps"])
            samples += int(r["steps"]) * int(r["batch"])
            images.add((r.get("dataset"), int(r["train_images"])))
            secs += float(r.get("seconds_this_run") or 0.0)
            cells.append(f"`{n}` ({r['trained_params'] / 1e6:.3f}M × {r['steps']} it)")
        reuse_txt = "; ".join(f"`{n}` ({why}, {(network_params(config, n) or 0) / 1e6:.3f}M)" for n, why in reused.items())
        label = mcfg.get("label", method)
        if missing:
            label += fn.mark(f"{', '.join(missing)}: no train_log.json (official weights or not trained yet); "
                             "left out of the sums.")
        n_images = sum(i for _, i in images) if images else 0
        rows.append({"Method": label, "Networks trained for this task": ", ".join(cells) or "—",
                     "Params trained (M)": f"{params / 1e6:.3f}", "Iterations": f"{iters:,}",
                     "Samples seen": f"{samples:,}", "Training images": str(max((i for _, i in images), default=0)),
                     "Reused (not trained for this task)": reuse_txt or "—", "Train CPU s": f"{secs:.0f}"})
        numeric.append({"method": method, "label": mcfg.get("label", method), "params_trained": params,
                        "iterations": iters, "samples": samples, "train_images": n_images, "seconds": secs,
                        "networks": trained, "reused": list(reused)})
    notes = ["Read from each network's `train_log.json` (written by `dpir train`). Params trained sums the "
             "networks trained for the method; a network trained in two stages (DiffIR's DIRformer) counts in "
             "both. Samples seen = iterations × batch (patches). DP-IR reuses its denoiser across tasks and takes "
             "its IR net off the shelf, so only the fusion net is trained for a new task (the paper's Table 7 point).",
             *([spec["note"]] if spec.get("note") else []), *fn.lines()]
    table = Table(name=name, title=spec["title"], columns=columns, rows=rows, numeric=numeric, footnotes=notes)
    verdicts = []
    by = {n["method"]: n for n in numeric}
    for e in spec.get("expect") or []:
        a, b = by.get(e.get("row")), by.get(e.get("vs"))
        if not a or not b or e["metric"] not in a:
            continue
        fewer = a[e["metric"]] < b[e["metric"]]
        want = e.get("direction", "better") == "better"
        verdicts.append(f"- Paper: {e['paper']}. Ours: {a['label']} {e['metric']} {a[e['metric']]:,} vs "
                        f"{b['label']} {b[e['metric']]:,} → **{'agrees' if fewer == want else 'disagrees'}**.")
    return table, verdicts


def flops_table(config: dict, name: str, spec: dict) -> tuple[Table, list[str]]:
    """Table 9: TFLOPs per 1280x720 image = per-step x steps + once-per-image, with ratios to a reference."""
    task = spec["task"]
    path = paths.tflops(config, task)
    if not path.exists():
        raise DpirError(f"{path} is missing: run `snakemake --cores all {path}` (or `dpir tflops --task {task}`)")
    data = json.loads(path.read_text())
    by = {r["method"]: r for r in data["rows"]}
    dataset = ablation_dataset(config, spec)
    runs = scored_runs(config, task, dataset, spec["rows"])
    ref = spec.get("reference") or spec["rows"][0]
    fn = Footnotes(f"{name.replace('_', '-')}-")
    columns = ["Method", "NFE", "TFLOPs per step (x)", "Steps", "TFLOPs once (y)", "TFLOPs/img at 1280x720",
               "× ref", "s/img on this CPU"]
    rows, numeric = [], []
    for method in spec["rows"]:
        if method not in by:
            raise DpirError(f"ablation {name!r}: {path} has no row for {method!r}; it is computed for the task's "
                            f"table methods only: add {method!r} to tasks.{task}.methods")
        r = by[method]
        ratio = r["total_tflops"] / by[ref]["total_tflops"] if ref in by and by[ref]["total_tflops"] else None
        secs = (statistics.fmean(x["cost"]["seconds_per_image"] for x in runs[method]) if method in runs else None)
        size = runs[method][0]["cost"].get("flops_input_size") if method in runs else None
        srow = f"{secs:.3f}" if secs is not None else "n/a" + fn.mark(f"{r['label']}: not restored in this run.")
        if size:
            srow += fn.mark(f"Seconds per image measured by the restore jobs on {size[0]}x{size[1]} inputs on this CPU.")
        rows.append({"Method": r["label"], "NFE": str(r["nfe"]), "TFLOPs per step (x)": f"{r['per_step_tflops']:.3g}",
                     "Steps": str(r["steps"]), "TFLOPs once (y)": f"{r['once_tflops']:.3g}",
                     "TFLOPs/img at 1280x720": f"{r['total_tflops']:.4g}",
                     "× ref": ratio_number(ratio), "s/img on this CPU": srow})
        numeric.append({"method": method, "label": r["label"], "nfe": r["nfe"], "per_step_tflops": r["per_step_tflops"],
                        "steps": r["steps"], "once_tflops": r["once_tflops"], "total_tflops": r["total_tflops"],
                        "ratio": ratio, "seconds": secs})
    notes = [f"FLOPs: torch FlopCounterMode on one forward of each network at the input size that gives a "
             f"{data['width']}x{data['height']} output (a forward at that size, no scaling; 2 x MACs of conv/matmul, "
             "FFTs and elementwise ops not counted); per-image calls counted by forward hooks. Ratios are to "
             f"{by[ref]['label'] if ref in by else ref}.", *([spec["note"]] if spec.get("note") else []), *fn.lines()]
    table = Table(name=name, title=spec["title"], columns=columns, rows=rows, numeric=numeric, footnotes=notes)
    num = {n["method"]: n for n in numeric}
    verdicts = [cost_verdict(e, num[e["row"]], num[e["vs"]]) for e in spec.get("expect") or []
                if e.get("row") in num and e.get("vs") in num]
    return table, verdicts


def cost_verdict(e: dict, a: dict, b: dict) -> str:
    """The line of one ``expect`` entry of a ``flops`` table: ``a`` (its ``row``) against ``b`` (its ``vs``),
    exact counts.  "better" is fewer TFLOPs; a claim that states a range of the ratio ("2x-100x fewer") agrees
    only inside it (above it: "agrees in direction"), since a count has no noise to hide behind."""
    ratio = b["total_tflops"] / a["total_tflops"] if a["total_tflops"] else math.inf
    fact = (f"{b['label']} needs {ratio_text(ratio)} the TFLOPs of {a['label']} "
            f"({b['total_tflops']:.4g} vs {a['total_tflops']:.4g})")
    size = claimed_range(e["paper"])
    if e.get("direction", "better") != "better":
        verdict = "agrees" if ratio < 1 else "disagrees"
    elif ratio <= 1:
        verdict = "disagrees"
    elif size is None or size[0] <= ratio <= size[1]:
        verdict = "agrees" + (f" — within the claimed {size[0]:g}x-{size[1]:g}x" if size else "")
    elif ratio > size[1]:
        verdict = f"agrees in direction — beyond the claimed {size[1]:g}x"
    else:
        verdict = f"disagrees — fewer, but under the claimed {size[0]:g}x"
    return f"- Paper: {e['paper']}. Ours: {fact} → **{verdict}**."
