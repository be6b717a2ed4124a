"""``dpir score``: score the restored PNGs of one run against the ground truth.

Writes one results JSON per (task, dataset, method, seed) with the per-image score of every
metric preset, the run's cost record and provenance.  Tables and the report are rendered from
these files only.  A metric that cannot be computed here (weights not cached, no network) is
recorded as unavailable with the reason and the command that fixes it, never as a number.

The results file is written atomically through a temporary name unique per process and thread
(:func:`dpir.atomic.atomic_write_text`), so two scorings of the same run never share a file.
:func:`load_scores` checks that every file is a results record (valid JSON is not enough) and names
the file and the command that rewrites it.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from dpir import paths
from dpir.atomic import atomic_write_text, exclusive_lock, old_path, recover
from dpir.config import config_hash, task_config
from dpir.data.images import read_image
from dpir.errors import DpirError, MetricUnavailable

SCHEMA_VERSION = 1
#: the keys of run.json that scoring reads
RUN_KEYS = ("images", "label", "kind", "stochastic", "png_bits", "n_images", "method_config", "method_config_hash",
            "provenance", "nfe", "nfe_groups", "nfe_note", "params_total", "params_trained", "flops_per_image",
            "flops_input_size", "seconds_per_image", "timing_note", "peak_rss_mib", "peak_cuda_mib")
DEFAULT_METRICS = ["psnr_y", "ssim_y", "lpips_alex", "topiq_delta"]


def metric_options(task: dict) -> dict:
    return {"crop_border": int(task.get("crop_border", 0))}


def score_run(config: dict, task: str, dataset: str, method: str, seed: int) -> dict:
    tcfg = task_config(config, task)
    run_dir = paths.restored_dir(config, task, dataset, method, seed)
    run_path = run_dir / "run.json"
    if not run_path.exists() and old_path(run_dir).exists():
        with exclusive_lock(run_dir, f"the restore of {run_dir}"):
            recover(run_dir)    # a restore interrupted while replacing its previous run: that one is back
    again = f"run `dpir restore --task {task} --dataset {dataset} --method {method} --seed {seed}`"
    if not run_path.exists():
        raise DpirError(f"{run_path} is missing: {again} first")
    try:
        run = json.loads(run_path.read_text())
    except ValueError as e:
        raise DpirError(f"{run_path} is not valid JSON ({e}); {again} again") from None
    lacking = [k for k in RUN_KEYS if not isinstance(run, dict) or k not in run]
    if lacking:
        raise DpirError(f"{run_path} is not a run record (no {', '.join(lacking[:4])}); {again} again")
    gt_dir = paths.prepared(config, task, dataset) / "test" / "gt"
    names = tcfg.get("metrics") or DEFAULT_METRICS
    opts = metric_options(tcfg)
    results = {}
    metrics = [_preset(name, opts) for name in names]
    available = []
    for m in metrics:
        try:
            m.check_available()
            available.append(m)
            results[m.name] = {"available": True, "lower_better": m.lower_better, "convention": m.convention,
                               "per_image": {}}
        except MetricUnavailable as e:
            results[m.name] = {"available": False, "lower_better": m.lower_better, "convention": m.convention,
                               "reason": e.reason, "fix": e.fix}
    for image_id in run["images"]:
        out = read_image(run_dir / f"{image_id}.png")[None]
        ref = read_image(gt_dir / f"{image_id}.png")[None]
        if out.shape != ref.shape:
            raise DpirError(f"{run_dir / (image_id + '.png')} is {tuple(out.shape[-2:])} but its target "
                            f"{gt_dir / (image_id + '.png')} is {tuple(ref.shape[-2:])}: restore it again")
        with torch.no_grad():
            for m in available:
                v = float(m(out, ref)[0])
                results[m.name]["per_image"][image_id] = v
    for name, r in results.items():
        if r["available"]:
            vals = list(r["per_image"].values())
            finite = [v for v in vals if math.isfinite(v)]
            r["mean"] = sum(finite) / len(finite) if finite else float("nan")
            r["n_nonfinite"] = len(vals) - len(finite)
    record = {
        "schema": SCHEMA_VERSION, "task": task, "dataset": dataset, "method": method, "seed": seed,
        "label": run["label"], "kind": run["kind"], "stochastic": run["stochastic"],
        "metrics": results, "metric_options": opts, "scored_from": f"{run['png_bits']}-bit PNG",
        "cost": {k: run[k] for k in ("nfe", "nfe_groups", "nfe_note", "params_total", "params_trained",
                                     "flops_per_image", "flops_input_size", "seconds_per_image", "timing_note",
                                     "peak_rss_mib", "peak_cuda_mib")},
        "n_images": run["n_images"], "images": run["images"],
        "method_config": run["method_config"], "method_config_hash": run["method_config_hash"],
        "config_hash": config_hash({"task": tcfg, "dataset": config["datasets"][dataset]}),
        "provenance": run["provenance"],
    }
    atomic_write_text(paths.scores(config, task, dataset, method, seed), json.dumps(record, indent=2))
    return record


def _preset(name: str, opts: dict):
    """Build a metric preset, passing the task's options the preset accepts."""
    from dpir.metrics import get_metric

    return get_metric(name, **opts)


def load_scores(out: str | Path, task: str | None = None) -> list[dict]:
    """Every results record under ``<out>/scores`` (of ``task``), each checked by :func:`check_record`."""
    root = Path(out) / "scores"
    files = sorted(root.glob(f"{task or '*'}/*/*/seed*.json"))
    records = []
    for f in files:
        fix = _rescore_hint(f, root)
        try:
            rec = json.loads(f.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DpirError(f"results file {f} is not valid JSON ({e}); {fix}") from None
        problem = check_record(rec, f.relative_to(root).parts)
        if problem:
            raise DpirError(f"results file {f} is not a results record ({problem}); {fix}")
        records.append(rec)
    return records


def _rescore_hint(f: Path, root: Path) -> str:
    task, dataset, method, name = f.relative_to(root).parts
    return (f"delete it and run `dpir score --task {task} --dataset {dataset} --method {method} "
            f"--seed {name[len('seed'):-len('.json')]}` again")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_record(rec, where: tuple[str, ...] | None = None) -> str | None:
    """What makes ``rec`` unusable as a results record (the keys tables and the report read), or None.

    ``where``: the (task, dataset, method, seed<k>.json) parts of its path, which it must match."""
    if not isinstance(rec, dict):
        return f"a JSON {type(rec).__name__}, not an object"
    missing = [k for k in ("task", "dataset", "method", "seed", "label", "metrics", "cost", "n_images", "images")
               if k not in rec]
    if missing:
        return "no " + ", ".join(f"`{k}`" for k in missing)
    schema = rec.get("schema", SCHEMA_VERSION)
    if not isinstance(schema, int) or isinstance(schema, bool) or schema > SCHEMA_VERSION:
        return f"`schema` {schema!r}: written by another version of dpir (this one reads schema {SCHEMA_VERSION})"
    for k in ("task", "dataset", "method", "label"):
        if not isinstance(rec[k], str):
            return f"`{k}` is {rec[k]!r}, not a string"
    if not isinstance(rec["seed"], int) or isinstance(rec["seed"], bool):
        return f"`seed` is {rec['seed']!r}, not an integer"
    if not isinstance(rec["images"], list) or not isinstance(rec["n_images"], int):
        return "`images` must be a list and `n_images` an integer"
    if where is not None:
        task, dataset, method, name = where
        if (rec["task"], rec["dataset"], rec["method"], f"seed{rec['seed']}.json") != (task, dataset, method, name):
            return (f"it records the run {rec['task']}/{rec['dataset']}/{rec['method']} seed {rec['seed']}, "
                    f"not the one its path names")
    metrics = rec["metrics"]
    if not isinstance(metrics, dict):
        return "`metrics` is not a mapping"
    for name, e in metrics.items():
        if not isinstance(e, dict) or not isinstance(e.get("available"), bool):
            return f"`metrics.{name}` has no `available` flag"
        need = ("mean", "per_image") if e["available"] else ("reason", "fix")
        lacking = [k for k in ("lower_better", "convention", *need) if k not in e]
        if lacking:
            return f"`metrics.{name}` has no " + ", ".join(f"`{k}`" for k in lacking)
        if e["available"] and (not _is_number(e["mean"]) or not isinstance(e["per_image"], dict)):
            return f"`metrics.{name}`: `mean` must be a number and `per_image` a mapping"
    cost = rec["cost"]
    if not isinstance(cost, dict):
        return "`cost` is not a mapping"
    for k in ("params_total", "params_trained", "seconds_per_image"):
        if not _is_number(cost.get(k)):
            return f"`cost.{k}` is {cost.get(k)!r}, not a number"
    if "nfe" not in cost:
        return "no `cost.nfe`"
    prov = rec.get("provenance")
    if prov is not None and not (isinstance(prov, dict) and isinstance(prov.get("git"), dict) and "date" in prov):
        return "`provenance` lacks `git` or `date`"
    return None
