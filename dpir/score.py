"""``dpir score``: score the restored PNGs of one run against the ground truth.

Writes one results JSON per (task, dataset, method, seed) with the per-image score of every
metric preset, the run's cost record and provenance.  Tables and the report are rendered from
these files only.  A metric that cannot be computed here (weights not cached, no network) is
recorded as unavailable with the reason and the command that fixes it, never as a number.

The results file is written atomically through a temporary name unique per process and thread
(:func:`dpir.atomic.atomic_write_text`), so two scorings of the same run never share a file.
The record is a :class:`dpir.results.ScoreRecord`, and run.json is read as a
:class:`dpir.results.RunRecord`.  :func:`load_scores` checks that every file is a results record
(:func:`dpir.results.check_record`: valid JSON is not enough) and names the file and the command that
rewrites it.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from dpir import paths
from dpir.atomic import atomic_write_text, exclusive_lock, old_path, recover
from dpir.config import config_hash, task_config
from dpir.data.images import read_image
from dpir.errors import DpirError, MetricUnavailable
# check_record and SCHEMA_VERSION live in dpir.results (the record types); re-exported for older imports
from dpir.results import SCHEMA_VERSION, Cost, MetricScore, RunRecord, ScoreRecord, check_record  # noqa: F401

#: the keys of run.json that scoring reads (:class:`dpir.results.RunRecord` checks every key of it)
RUN_KEYS = ("images", "label", "kind", "stochastic", "png_bits", "n_images", "method_config", "method_config_hash",
            "provenance", *Cost.keys())
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
    run = RunRecord.read(run_path, fix=f"{again} again")
    gt_dir = paths.prepared(config, task, dataset) / "test" / "gt"
    names = tcfg.get("metrics") or DEFAULT_METRICS
    opts = metric_options(tcfg)
    metrics = [_preset(name, opts) for name in names]
    available, unavailable = [], {}
    for m in metrics:
        try:
            m.check_available()
            available.append(m)
        except MetricUnavailable as e:
            unavailable[m.name] = MetricScore(False, m.lower_better, m.convention, reason=e.reason, fix=e.fix)
    per_image: dict[str, dict[str, float]] = {m.name: {} for m in available}
    for image_id in run.images:
        out = read_image(run_dir / f"{image_id}.png")[None]
        ref = read_image(gt_dir / f"{image_id}.png")[None]
        if out.shape != ref.shape:
            raise DpirError(f"{run_dir / (image_id + '.png')} is {tuple(out.shape[-2:])} but its target "
                            f"{gt_dir / (image_id + '.png')} is {tuple(ref.shape[-2:])}: restore it again")
        with torch.no_grad():
            for m in available:
                v = float(m(out, ref)[0])
                per_image[m.name][image_id] = v
    scored = {m.name: MetricScore.scored(m.lower_better, m.convention, per_image[m.name]) for m in available}
    record = ScoreRecord(
        schema=SCHEMA_VERSION, task=task, dataset=dataset, method=method, seed=seed,
        label=run.label, kind=run.kind, stochastic=run.stochastic,
        metrics={m.name: scored.get(m.name) or unavailable[m.name] for m in metrics},   # in the config's order
        metric_options=opts, scored_from=f"{run.png_bits}-bit PNG", cost=Cost.of_run(run),
        n_images=run.n_images, images=run.images,
        method_config=run.method_config, method_config_hash=run.method_config_hash,
        config_hash=config_hash({"task": tcfg, "dataset": config["datasets"][dataset]}),
        provenance=run.provenance,
    )
    atomic_write_text(paths.scores(config, task, dataset, method, seed), record.to_json())
    return record.to_dict()


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
