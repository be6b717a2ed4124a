"""``dpir score``: score the restored PNGs of one run against the ground truth.

Writes one results JSON per (task, dataset, method, seed) with the per-image score of every
metric preset, the run's cost record and provenance.  Tables and the report are rendered from
these files only.  A metric that cannot be computed here (weights not cached, no network) is
recorded as unavailable with the reason and the command that fixes it, never as a number.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from dpir import paths
from dpir.checkpoint import atomic_write_text
from dpir.config import config_hash, task_config
from dpir.data.images import read_image
from dpir.errors import DpirError, MetricUnavailable

SCHEMA_VERSION = 1
DEFAULT_METRICS = ["psnr_y", "ssim_y", "lpips_alex", "topiq_delta"]


def metric_options(task: dict) -> dict:
    return {"crop_border": int(task.get("crop_border", 0))}


def score_run(config: dict, task: str, dataset: str, method: str, seed: int) -> dict:
    tcfg = task_config(config, task)
    run_dir = paths.restored_dir(config, task, dataset, method, seed)
    run_path = run_dir / "run.json"
    if not run_path.exists():
        raise DpirError(f"{run_path} is missing: run `dpir restore --task {task} --dataset {dataset} "
                        f"--method {method} --seed {seed}` first")
    run = json.loads(run_path.read_text())
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
    root = Path(out) / "scores"
    files = sorted(root.glob(f"{task or '*'}/*/*/seed*.json"))
    records = []
    for f in files:
        try:
            records.append(json.loads(f.read_text()))
        except json.JSONDecodeError as e:
            raise DpirError(f"results file {f} is not valid JSON ({e}); delete it and run `dpir score` again") from None
    return records
