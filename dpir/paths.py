"""Where every stage reads and writes.  The Snakemake rules and the command line both use these
helpers, so a stage run by hand writes exactly where the workflow expects it.

    <data_dir>/<task>/<dataset>/<split>/{gt,lq}/<id>.png, manifest.json      prepared data
    <out>/networks/<network>/model.safetensors, model.json, train_log.json    trained networks
    <out>/restored/<task>/<dataset>/<method>/seed<k>/<id>.png, run.json       restored images
    <out>/scores/<task>/<dataset>/<method>/seed<k>.json                       results (one per run)
    <out>/tables/<name>.{md,csv}, <out>/figures/*.png, <out>/report.md
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
