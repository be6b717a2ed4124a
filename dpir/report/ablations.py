"""The paper's ablation tables (Zhussip et al., NeurIPS 2024, Tables 4-10, 12, 13), from results JSON.

Each table is declared in the config under ``ablations.tables`` (see config/config.yaml); its rows
are methods of the task or of ``ablations.methods.<task>``, restored and scored by the ordinary
``dpir restore`` / ``dpir score`` jobs, so a method shared by two tables (or by a table and the main
report) runs once.  Kinds:

``rows``          one row per method; metric cells are mean +- std over seeds of the per-seed mean
                  over the images that *every* row restored (rows may run on different subsets).
``tau_sweep``     the same, plus a perception-distortion curve and quality against NFE (Tables 6, 13).
``training_cost`` parameters trained, iterations, samples and training images of each method's
                  networks, read from their ``train_log.json`` (Table 7).
``flops``         TFLOPs per 1280x720 image as per-step cost x steps + once-per-image cost, from the
                  ``dpir tflops`` file, with the ratio to a reference row and measured seconds (Table 9).

``expect`` entries are the directions the paper states; each gives a verdict line that compares the
difference of two rows (or the trend over tau) with seed noise: a difference counts only when it is
larger than 2 * sqrt(sd_a^2 + sd_b^2), the standard deviations over seeds of the two rows (0 for a
deterministic or single-seed row, so then any difference counts).
"""
from __future__ import annotations

import json
import math
import os
import statistics
from pathlib import Path

from dpir import paths, workflow_facts
from dpir.checkpoint import atomic_write_text
from dpir.config import ablation_dataset, ablation_tables, all_methods
from dpir.errors import DpirError
from dpir.report.tables import ARROW, Footnotes, Table, digits_for
from dpir.workflow_facts import networks_of

ALIASES = ("psnr", "ssim", "perceptual")


def ablations_dir(config: dict) -> Path:
    return Path(config["out"]) / "ablations"


def ablations_report(config: dict) -> Path:
    return paths.ablations(config)


# --------------------------------------------------------------------------------------------
# statistics over seeds on common images

def _records(config: dict, task: str, dataset: str, rows: list[str]) -> dict[str, list[dict]]:
    from dpir.score import load_scores

    out: dict[str, list[dict]] = {}
    for r in load_scores(config["out"], task):
        if r["dataset"] == dataset and r["method"] in rows:
            out.setdefault(r["method"], []).append(r)
    for rs in out.values():
        rs.sort(key=lambda r: r["seed"])
    return out


def common_images(runs: dict[str, list[dict]]) -> list[str]:
    sets = [set(r["images"]) for rs in runs.values() for r in rs]
    return sorted(set.intersection(*sets)) if sets else []


def seed_stats(runs: list[dict], metric: str, images: list[str]) -> tuple[float, float, int] | None:
    """(mean over seeds, sample std over seeds (0 for one seed), seeds) of the per-seed mean over ``images``."""
    per_seed = []
    for r in runs:
        e = r["metrics"].get(metric)
        if not e or not e.get("available"):
            return None
        vals = [e["per_image"][i] for i in images if i in e["per_image"] and math.isfinite(e["per_image"][i])]
        if not vals:
            return None
        per_seed.append(statistics.fmean(vals))
    if not per_seed:
        return None
    return statistics.fmean(per_seed), (statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0), len(per_seed)


def resolve_metric(alias: str, metrics: list[str], runs: dict[str, list[dict]]) -> str | None:
    """A metric preset name for ``psnr`` / ``ssim`` / ``perceptual`` (LPIPS, then TOPIQ_delta, then the
    weight-free perceptual metric, whichever was computed), or the name itself."""
    from dpir.metrics import OFFLINE_PERCEPTUAL

    def available(m):
        return any(r["metrics"].get(m, {}).get("available") for rs in runs.values() for r in rs)

    if alias in ("psnr", "ssim"):
        return next((m for m in metrics if m.startswith(alias) and available(m)), None)
    if alias == "perceptual":
        return next((m for m in ("lpips_alex", "topiq_delta", OFFLINE_PERCEPTUAL) if available(m)), None)
    return alias if available(alias) else None


# --------------------------------------------------------------------------------------------
# verdicts

def difference_verdict(name_a: str, a: tuple, name_b: str, b: tuple, metric: str, lower_better: bool,
                       direction: str, paper: str, digits: int = 3) -> str:
    """One line: does ``a`` differ from ``b`` on ``metric`` the way the paper says (better / worse / close)?"""
    diff = a[0] - b[0]
    noise = 2 * math.sqrt(a[1] ** 2 + b[1] ** 2)
    gain = -diff if lower_better else diff          # > 0: a is better than b
    beyond = abs(diff) > noise
    fact = (f"{name_a} vs {name_b}: {metric} {a[0]:.{digits}f} vs {b[0]:.{digits}f} "
            f"(Δ {diff:+.{digits}f}, seed noise ±{noise:.{digits}f})")
    if round(diff, digits) == 0 and direction != "close":
        return f"- Paper: {paper}. Ours: {fact} → **inconclusive — no difference at this precision**."
    if direction == "close":
        ok = not (beyond and gain < 0)
        verdict = ("agrees" if ok else "disagrees") + (" — no loss beyond seed noise" if ok else
                                                        " — a loss beyond seed noise")
    else:
        want = 1 if direction == "better" else -1
        if gain * want > 0:
            verdict = "agrees" + ("" if beyond else " in direction, but within seed noise")
        elif gain == 0:
            verdict = "inconclusive — no difference"
        else:
            verdict = "disagrees" + ("" if beyond else " in direction, within seed noise")
    return f"- Paper: {paper}. Ours: {fact} → **{verdict}**."


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    def ranks(v):
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2 + 1
            i = j + 1
        return r
    rx, ry = ranks(xs), ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    num = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    den = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
    return num / den if den else 0.0


def trend_verdict(taus: list[int], values: list[float], metric: str, lower_better: bool, trend: str, paper: str,
                  stds: list[float] | None = None) -> str:
    """``trend`` is the paper's direction of the *quality* as tau grows (increasing = gets better).
    A sweep whose whole range is within 2 x the largest seed std is inconclusive, whatever its ranks."""
    rho = spearman([float(t) for t in taus], values)
    quality_rho = -rho if lower_better else rho
    want = 1 if trend == "increasing" else -1
    pairs = ", ".join(f"τ={t}: {v:.4g}" for t, v in zip(taus, values))
    noise = 2 * max(stds or [0.0])
    if stds and max(values) - min(values) <= noise:
        return (f"- Paper: {paper}. Ours: {metric} over τ ({pairs}) spans {max(values) - min(values):.2g}, within "
                f"seed noise ±{noise:.2g} → **inconclusive — τ makes no measurable difference here**.")
    if quality_rho * want > 0:
        verdict = "agrees" + (" (monotone)" if abs(rho) == 1 else " (not monotone)")
    elif rho == 0:
        verdict = "inconclusive — no trend"
    else:
        verdict = "disagrees"
    return (f"- Paper: {paper}. Ours: {metric} over τ ({pairs}); Spearman ρ(τ, {metric}) = {rho:+.2f} → **{verdict}**.")


# --------------------------------------------------------------------------------------------
# table builders

def _network_params(config: dict, name: str) -> int | None:
    """Parameters of a trained or imported network: its training log, else its checkpoint's tensor shapes
    (official weights have no log; the safetensors header is read, not the tensors)."""
    log = paths.network_dir(config, name) / "train_log.json"
    if log.exists():
        return int(json.loads(log.read_text())["trained_params"])
    weights = paths.network_file(config, name)
    if weights.exists():
        from safetensors import safe_open

        with safe_open(str(weights), "pt") as f:
            return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    return None


def _extra_cells(config: dict, column: str, mcfg: dict) -> tuple[str, object]:
    nets = config["networks"]
    if column in ("denoiser", "ir", "fusion"):
        name = mcfg.get(column)
        return (f"`{name}` ({nets[name]['arch']})" if name else "—"), name
    if column == "fusion_arch":
        name = mcfg.get("fusion")
        return (nets[name]["arch"] if name else "—"), (nets[name]["arch"] if name else None)
    if column == "fusion_params":
        p = _network_params(config, mcfg["fusion"]) if mcfg.get("fusion") else None
        return (f"{p:,}" if p is not None else "n/a"), p
    if column == "mode":
        mode = mcfg.get("mode", "jump") if mcfg.get("kind") == "dpir" else mcfg.get("kind")
        text = {"jump": "one-step jump", "sdedit": "SDEdit/CCDF start", "full": "full chain"}.get(mode, mode)
        return text, mode
    if column == "tau":
        tau = mcfg.get("tau", mcfg.get("T", 1000) if mcfg.get("mode") == "full" else None)
        return (str(tau) if tau is not None else "—"), tau
    if column == "ddim":
        s = mcfg.get("ddim_stride")
        return (f"stride {s}" if s else "no"), s
    raise DpirError(f"unknown ablation column {column!r}")


def _header_label(column: str) -> str:
    return {"denoiser": "Denoiser", "ir": "IR net", "fusion": "Fusion net", "fusion_arch": "Fusion arch",
            "fusion_params": "Fusion params", "mode": "Start", "tau": "τ", "ddim": "DDIM"}[column]


def rows_table(config: dict, name: str, spec: dict) -> tuple[Table, list[str], dict]:
    """Table (and verdicts) of a ``rows`` or ``tau_sweep`` ablation."""
    task = spec["task"]
    dataset = ablation_dataset(config, spec)
    methods = all_methods(config, task)
    runs = _records(config, task, dataset, spec["rows"])
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
    lower = {m: e["lower_better"] for rs in runs.values() for r in rs for m, e in r["metrics"].items()}
    fn = Footnotes(f"{name.replace('_', '-')}-")
    extra = spec.get("columns") or []
    columns = ["Method", *[_header_label(c) for c in extra], *[f"{m} {ARROW[lower.get(m, False)]}" for m in metrics],
               "NFE", "s/img", "seeds"]
    rows, numeric = [], []
    stats: dict[str, dict[str, tuple]] = {}
    for method in spec["rows"]:
        rs = runs[method]
        mcfg = methods[method]
        row = {"Method": rs[0]["label"]}
        num: dict = {"method": method, "label": rs[0]["label"]}
        for c in extra:
            text, value = _extra_cells(config, c, mcfg)
            row[_header_label(c)] = text
            num[c] = value
        stats[method] = {}
        if method in partial:
            row["Method"] += fn.mark(f"{rs[0]['label']}: scored on {len(row_images[method])} image(s) "
                                     f"({', '.join(row_images[method])}) only; verdicts against it use those images.")
        for m in metrics:
            s = seed_stats(rs, m, row_images[method])
            col = f"{m} {ARROW[lower.get(m, False)]}"
            if s is None:
                e = next((r["metrics"][m] for r in rs if not r["metrics"].get(m, {}).get("available", True)), None)
                why = f"`{m}`: {e['reason']} Fix: `{e['fix']}`." if e and e.get("reason") else f"`{m}` not computed."
                row[col] = "n/a" + fn.mark(why)
                num[m] = None
                continue
            stats[method][m] = s
            d = digits_for(m)
            row[col] = f"{s[0]:.{d}f} ± {s[1]:.{d}f}" if s[2] > 1 else f"{s[0]:.{d}f}"
            num[m], num[f"{m}_std"] = s[0], s[1]
        c = rs[0]["cost"]
        row["NFE"] = str(c["nfe"])
        row["s/img"] = f"{statistics.fmean(r['cost']['seconds_per_image'] for r in rs):.2f}"
        row["seeds"] = str(len(rs))
        num.update(nfe=c["nfe"], seconds=statistics.fmean(r["cost"]["seconds_per_image"] for r in rs), seeds=len(rs))
        rows.append(row)
        numeric.append(num)
    seeds = sorted({len(rs) for rs in runs.values()})
    header = (f"{len(images)} test image(s) of `{task}/{dataset}` common to every row ({', '.join(images)}); "
              f"seeds per row: {', '.join(map(str, seeds))}. Cells: mean ± std over seeds of the per-seed mean "
              "(one value for deterministic or single-seed rows).")
    notes = [header, *([spec["note"]] if spec.get("note") else []), *fn.lines()]
    table = Table(name=name, title=spec["title"], columns=columns, rows=rows, numeric=numeric, footnotes=notes)
    verdicts = _verdicts(spec, runs, stats, metrics, lower, config, row_images)
    return table, verdicts, {"images": images, "runs": runs, "stats": stats, "metrics": metrics, "lower": lower}


def _verdicts(spec: dict, runs: dict, stats: dict, metrics: list[str], lower: dict, config: dict,
              row_images: dict[str, list[str]]) -> list[str]:
    out = []
    for e in spec.get("expect") or []:
        metric = resolve_metric(e["metric"], metrics, runs)
        if metric is None:
            out.append(f"- Paper: {e['paper']}. Ours: `{e['metric']}` was not computed in this run → **not checked**.")
            continue
        lb = lower.get(metric, False)
        if e.get("trend"):
            taus, vals, sds = [], [], []
            for method in spec["rows"]:
                tau = all_methods(config, spec["task"])[method].get("tau")
                if tau is not None and metric in stats.get(method, {}):
                    taus.append(int(tau))
                    vals.append(stats[method][metric][0])
                    sds.append(stats[method][metric][1])
            if len(taus) < 3:
                out.append(f"- Paper: {e['paper']}. Ours: fewer than 3 τ values → **not checked**.")
                continue
            order = sorted(range(len(taus)), key=lambda i: taus[i])
            out.append(trend_verdict([taus[i] for i in order], [vals[i] for i in order], metric, lb, e["trend"],
                                     e["paper"], [sds[i] for i in order]))
            continue
        a, b = stats.get(e["row"], {}).get(metric), stats.get(e["vs"], {}).get(metric)
        if a is not None and b is not None and row_images[e["row"]] != row_images[e["vs"]]:
            both = sorted(set(row_images[e["row"]]) & set(row_images[e["vs"]]))
            a, b = seed_stats(runs[e["row"]], metric, both), seed_stats(runs[e["vs"]], metric, both)
        if a is None or b is None:
            out.append(f"- Paper: {e['paper']}. Ours: `{metric}` missing for a row → **not checked**.")
            continue
        la, lb_ = runs[e["row"]][0]["label"], runs[e["vs"]][0]["label"]
        out.append(difference_verdict(la, a, lb_, b, metric, lb, e.get("direction", "better"), e["paper"],
                                      digits_for(metric)))
    return out


def training_chain(config: dict, names: list[str], skip: set[str]) -> list[str]:
    """``names`` and, recursively, the networks their training loads (SRDiff's RRDB encoder, DiffIR's
    stage-1 teacher), in training order; networks in ``skip`` and their dependencies are left out.
    (:func:`dpir.workflow_facts.training_chain`: the workflow's rule train uses the same facts.)"""
    return workflow_facts.training_chain(config, names, skip)


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
        reuse_txt = "; ".join(f"`{n}` ({why}, {(_network_params(config, n) or 0) / 1e6:.3f}M)" for n, why in reused.items())
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
    runs = _records(config, task, dataset, spec["rows"])
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
                     "× ref": f"{ratio:.2f}" if ratio is not None else "n/a", "s/img on this CPU": srow})
        numeric.append({"method": method, "label": r["label"], "nfe": r["nfe"], "per_step_tflops": r["per_step_tflops"],
                        "steps": r["steps"], "once_tflops": r["once_tflops"], "total_tflops": r["total_tflops"],
                        "ratio": ratio, "seconds": secs})
    notes = [f"FLOPs: torch FlopCounterMode on one forward of each network at the input size that gives a "
             f"{data['width']}x{data['height']} output (a forward at that size, no scaling; 2 x MACs of conv/matmul, "
             "FFTs and elementwise ops not counted); per-image calls counted by forward hooks. Ratios are to "
             f"{by[ref]['label'] if ref in by else ref}.", *([spec["note"]] if spec.get("note") else []), *fn.lines()]
    table = Table(name=name, title=spec["title"], columns=columns, rows=rows, numeric=numeric, footnotes=notes)
    verdicts = []
    num = {n["method"]: n for n in numeric}
    for e in spec.get("expect") or []:
        a, b = num.get(e.get("row")), num.get(e.get("vs"))
        if not a or not b:
            continue
        ratio = b["total_tflops"] / a["total_tflops"] if a["total_tflops"] else math.inf
        want_fewer = e.get("direction", "better") == "better"
        ok = (ratio > 1) == want_fewer
        verdicts.append(f"- Paper: {e['paper']}. Ours: {b['label']} needs {ratio:.1f}× the TFLOPs of {a['label']} "
                        f"({b['total_tflops']:.4g} vs {a['total_tflops']:.4g}) → **{'agrees' if ok else 'disagrees'}**.")
    return table, verdicts


# --------------------------------------------------------------------------------------------
# plots

def tau_sweep_plots(numeric: list[dict], x_metric: str, y_metric: str, fig_path: Path, title: str,
                    x_lower_better: bool) -> Path:
    """Left: perception-distortion curve over tau; right: both metrics against NFE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    pts = sorted((r for r in numeric if r.get("tau") is not None and r.get(x_metric) is not None
                  and r.get(y_metric) is not None), key=lambda r: r["tau"])
    sns.set_theme(style="whitegrid", context="notebook")
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    xs, ys = [r[x_metric] for r in pts], [r[y_metric] for r in pts]
    a.errorbar(xs, ys, xerr=[r.get(f"{x_metric}_std") or 0 for r in pts],
               yerr=[r.get(f"{y_metric}_std") or 0 for r in pts], fmt="-o", capsize=3)
    for r in pts:
        a.annotate(f"τ={r['tau']}", (r[x_metric], r[y_metric]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    a.set_xlabel(f"{x_metric} ({'lower' if x_lower_better else 'higher'} is better)")
    a.set_ylabel(f"{y_metric} (higher is better)")
    a.set_title("perception-distortion over τ", fontsize=10)
    nfe = [r["nfe"] for r in pts]
    b.plot(nfe, ys, "-o", color="C0", label=y_metric)
    b.set_xscale("log")
    from matplotlib.ticker import NullLocator, ScalarFormatter

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
    fig.tight_layout()
    fig_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(fig_path)
    plt.close(fig)
    return fig_path


# --------------------------------------------------------------------------------------------
# the ablations section

def render_ablations(config: dict, report_dir: Path | None = None) -> list[str]:
    """Write every ablation table (md + csv) and figure under ``<out>/ablations/``; return the Markdown
    section (figure links relative to ``report_dir``, default ``<out>``)."""
    from dpir.metrics import get_metric

    tables = ablation_tables(config)
    if not tables:
        return []
    out_dir = ablations_dir(config)
    report_dir = Path(report_dir or config["out"])
    parts = ["## Ablations", "",
             "The paper's ablations regenerated by this run (`snakemake --cores all ablations`). Every cell is "
             "read from results files of ordinary restore/score jobs or training logs; rows shared with the main "
             "tables are the same runs. A verdict compares a difference with 2 × the combined seed standard "
             "deviation.", ""]
    for name, spec in tables.items():
        kind = spec["kind"]
        if kind in ("rows", "tau_sweep"):
            table, verdicts, info = rows_table(config, name, spec)
        elif kind == "training_cost":
            table, verdicts = training_cost_table(config, name, spec)
            info = None
        else:
            table, verdicts = flops_table(config, name, spec)
            info = None
        table.write(out_dir)
        parts += [f"### {spec['title']}", "", table.markdown(), ""]
        if kind == "tau_sweep" and info:
            x = resolve_metric("perceptual", info["metrics"], info["runs"])
            y = resolve_metric("psnr", info["metrics"], info["runs"])
            if x and y:
                fig = out_dir / "figures" / f"{name}.png"
                tau_sweep_plots(table.numeric, x, y, fig, spec["title"], get_metric(x).lower_better)
                parts += [f"![{name}]({os.path.relpath(fig, report_dir)})", "",
                          f"*Left: {y} against {x} as τ varies (error bars: std over seeds); right: both against "
                          "NFE.*", ""]
        if verdicts:
            parts += ["Does our run agree with the paper?", "", *verdicts, ""]
    return parts


def write_ablations_report(config: dict) -> Path:
    parts = render_ablations(config)
    if not parts:
        raise DpirError("no ablation table to render: `run_ablations` is false or `ablations.tables` is empty "
                        "for the enabled tasks")
    path = ablations_report(config)
    atomic_write_text(path, "# dpir-bench ablations\n\n" + "\n".join(parts[2:]) + "\n")
    return path
