"""Where every stage reads and writes.  The Snakemake rules and the command line both use these
helpers, so a stage run by hand writes exactly where the workflow expects it.

    <data_dir>/<task>/<dataset>/<split>/{gt,lq}/<id>.png, manifest.json      prepared data
    <out>/networks/<network>/model.safetensors, model.json, train_log.json    trained networks
    <out>/restored/<task>/<dataset>/<method>/seed<k>/<id>.png, run.json       restored images
    <out>/scores/<task>/<dataset>/<method>/seed<k>.json                       results (one per run)
    <out>/cost/<task>_tflops_1280x720.json, <out>/logs/, <out>/benchmarks/    TFLOPs counts, job logs and times
    <out>/tables/<name>.{md,csv}, <out>/figures/*.png, <out>/report.md

Most helpers have a ``*_pattern`` twin: the same path with ``{wildcards}`` for the names (the Snakemake
rules build their inputs and outputs from them).
"""
from __future__ import annotations

from pathlib import Path


def prepared(config: dict, task: str, dataset: str) -> Path:
    return Path(config["data_dir"]) / task / dataset


def manifest(config: dict, task: str, dataset: str) -> Path:
    return prepared(config, task, dataset) / "manifest.json"


def network_dir(config: dict, network: str) -> Path:
    return Path(config["out"]) / "networks" / network


def network_file(config: dict, network: str) -> Path:
    return network_dir(config, network) / "model.safetensors"


def restored_dir(config: dict, task: str, dataset: str, method: str, seed: int) -> Path:
    return Path(config["out"]) / "restored" / task / dataset / method / f"seed{seed}"


def run_record(config: dict, task: str, dataset: str, method: str, seed: int) -> Path:
    return restored_dir(config, task, dataset, method, seed) / "run.json"


def scores(config: dict, task: str, dataset: str, method: str, seed: int) -> Path:
    return Path(config["out"]) / "scores" / task / dataset / method / f"seed{seed}.json"


def tables_dir(config: dict) -> Path:
    return Path(config["out"]) / "tables"


def figures_dir(config: dict) -> Path:
    return Path(config["out"]) / "figures"


def report(config: dict) -> Path:
    return Path(config["out"]) / "report.md"


def logs(config: dict) -> Path:
    return Path(config["out"]) / "logs"


def tflops(config: dict, task: str) -> Path:
    """The TFLOPs count of a task's methods at 1280x720 (``dpir tflops``)."""
    return Path(config["out"]) / "cost" / f"{task}_tflops_1280x720.json"


def shard_record(config: dict, task: str, dataset: str, method: str, seed: int, k: int, n: int) -> Path:
    """run.json of shard ``k`` of ``n`` (dpir.restore.shard_dir next to the run's folder)."""
    run = restored_dir(config, task, dataset, method, seed)
    return run.with_name(f"{run.name}.shard{k}of{n}") / "run.json"


def export_file(config: dict, network: str, layout: str) -> Path:
    """A trained network written in a foreign checkpoint layout (``dpir export``)."""
    return Path(config["out"]) / "exports" / f"{network}.{layout}.pth"


def claims(config: dict) -> Path:
    """The ablations' verdicts as data, for the report's claims table (``dpir ablations``)."""
    return Path(config["out"]) / "ablations" / "claims.json"


def ablations(config: dict) -> Path:
    return Path(config["out"]) / "ablations.md"


def protocols(config: dict) -> Path:
    """The protocol-sensitivity table (``dpir protocols``): JSON here, Markdown beside it (``.md``)."""
    return Path(config["out"]) / "protocols" / "protocols.json"


def gaussian_dir(config: dict) -> Path:
    """The exact Gaussian-world section (``dpir gaussian``): gaussian.json, gaussian.md, pd_plane.png."""
    return Path(config["out"]) / "gaussian"


def resolved_config(config: dict) -> Path:
    """The config the workflow resolved, written when a run starts; every job reads it (``--config``)."""
    return Path(config["out"]) / ".config" / "resolved.yaml"


def job_log(config: dict, rule: str, name: str) -> Path:
    return logs(config) / rule / f"{name}.log"


def benchmark(config: dict, rule: str, name: str) -> Path:
    return Path(config["out"]) / "benchmarks" / rule / f"{name}.tsv"


# ---- wildcard patterns for the Snakemake rules: the same helpers with {wildcards} for names

RUN_WILDCARDS = ("{task}", "{dataset}", "{method}", "{seed}")
#: the job name of a run in log and benchmark file names (scripts/job_times.py parses it back)
RUN_NAME = "{task}_{dataset}_{method}_seed{seed}"
SHARD_NAME = RUN_NAME + "_shard{k}of{n}"
MERGE_NAME = RUN_NAME + "_merge"


def fetch_stamp(config: dict, entry: str) -> Path:
    """The record of a verified fetch registry entry (rule fetch; ``dpir fetch NAME --stamp``): the input
    of the jobs that read the entry, so downloads are their own (local) jobs."""
    return Path(config["out"]) / "fetched" / f"{entry}.json"


def fetch_stamp_pattern(config: dict) -> str:
    return str(fetch_stamp(config, "{entry}"))


def manifest_pattern(config: dict) -> str:
    return str(manifest(config, "{task}", "{dataset}"))


def network_file_pattern(config: dict) -> str:
    return str(network_file(config, "{network}"))


def export_file_pattern(config: dict) -> str:
    return str(export_file(config, "{network}", "{layout}"))


def restored_dir_pattern(config: dict) -> str:
    return str(restored_dir(config, *RUN_WILDCARDS))


def run_record_pattern(config: dict) -> str:
    return str(run_record(config, *RUN_WILDCARDS))


def shard_record_pattern(config: dict) -> str:
    return str(shard_record(config, *RUN_WILDCARDS, "{k}", "{n}"))


def scores_pattern(config: dict) -> str:
    return str(scores(config, *RUN_WILDCARDS))


def tflops_pattern(config: dict) -> str:
    return str(tflops(config, "{task}"))


def job_log_pattern(config: dict, rule: str, name: str) -> str:
    """A rule's log file; ``name`` is a pattern such as RUN_NAME or ``"{network}"``."""
    return str(job_log(config, rule, name))


def benchmark_pattern(config: dict, rule: str, name: str) -> str:
    return str(benchmark(config, rule, name))
