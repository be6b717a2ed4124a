"""Loading, merging and validating the harness config.

``load_config(paths)`` merges YAML files left to right (later files override earlier ones, nested
mappings merged key by key, like Snakemake's ``--configfile``), validates the result against
``workflow/schemas/config.schema.yaml`` and fills the schema's defaults.  Errors name the key path
(``tasks.sr.methods.swinir.network``) and say what is allowed.
"""
from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from dpir.errors import DpirError, UnknownNameError

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "workflow" / "schemas" / "config.schema.yaml"


def deep_merge(base: Mapping, override: Mapping) -> dict:
    out = copy.deepcopy(dict(base))
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise DpirError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise DpirError(f"config file {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise DpirError(f"config file {path} must hold a mapping at the top level")
    return data


def _schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _key_path(error) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def _fill_defaults(node: Any, schema: dict, root: dict) -> None:
    if "$ref" in schema:
        ref = schema["$ref"].split("/")[-1]
        schema = root["$defs"][ref]
    if not isinstance(node, dict) or schema.get("type") not in (None, "object"):
        return
    for key, sub in schema.get("properties", {}).items():
        if key not in node and isinstance(sub, dict) and "default" in sub:
            node[key] = copy.deepcopy(sub["default"])
        if key in node:
            _fill_defaults(node[key], sub, root)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in node.items():
            if key not in schema.get("properties", {}):
                _fill_defaults(value, extra, root)


def validate_config(config: dict) -> dict:
    """Validate against the schema (naming the offending key) and fill defaults; returns a copy."""
    import jsonschema

    private = {k: v for k, v in config.items() if str(k).startswith("_")}
    config = {k: v for k, v in config.items() if not str(k).startswith("_")}
    schema = _schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(list(e.absolute_path)), str(e.absolute_path)))
    if errors:
        e = errors[0]
        where = _key_path(e)
        if e.validator == "additionalProperties":
            allowed = sorted(e.schema.get("properties", {}))
            extra = [k for k in e.instance if k not in allowed]
            bad = extra[0] if extra else "?"
            key = f"{where}.{bad}" if where != "<top level>" else bad
            import difflib

            close = difflib.get_close_matches(bad, allowed, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise DpirError(f"config key {key!r} is not a known setting.{hint} Allowed here: {', '.join(allowed)}")
        raise DpirError(f"config key {where!r}: {e.message}")
    config = copy.deepcopy(config)
    _fill_defaults(config, schema, schema)
    _check_references(config)
    config.update(private)
    return config


def _check_references(config: dict) -> None:
    """Cross-references the schema cannot express: names of datasets, networks, methods."""
    datasets, networks = config["datasets"], config["networks"]
    for tname, task in config["tasks"].items():
        for ds in task["test_datasets"]:
            if ds not in datasets:
                raise DpirError(f"config key 'tasks.{tname}.test_datasets' names dataset {ds!r}, which is not "
                                f"defined under 'datasets' (defined: {', '.join(sorted(datasets))})")
        for mname, m in task["methods"].items():
            if m["kind"] == "published":
                _check_published(f"tasks.{tname}.methods.{mname}", m, task)
            _check_networks(f"tasks.{tname}.methods.{mname}", m, networks)
    abl = config.get("ablations") or {}
    for tname, methods in (abl.get("methods") or {}).items():
        if tname not in config["tasks"]:
            raise DpirError(f"config key 'ablations.methods.{tname}' names task {tname!r}, which is not defined")
        for mname, m in methods.items():
            if mname in config["tasks"][tname]["methods"]:
                raise DpirError(f"config key 'ablations.methods.{tname}.{mname}': the task already has a method "
                                f"{mname!r}; list it in the table's rows instead of redefining it")
            _check_networks(f"ablations.methods.{tname}.{mname}", m, networks)
    for aname, table in (abl.get("tables") or {}).items():
        where = f"ablations.tables.{aname}"
        if table["task"] not in config["tasks"]:
            raise DpirError(f"config key '{where}.task' names task {table['task']!r}, which is not defined")
        task = config["tasks"][table["task"]]
        if table.get("dataset") and table["dataset"] not in task["test_datasets"]:
            raise DpirError(f"config key '{where}.dataset': {table['dataset']!r} is not a test dataset of task "
                            f"{table['task']!r} ({', '.join(task['test_datasets'])})")
        known = {**task["methods"], **((abl.get("methods") or {}).get(table["task"]) or {})}
        for row in table.get("rows", []):
            if row not in known:
                err = UnknownNameError(f"method of task {table['task']!r} or ablations.methods.{table['task']}", row, known)
                raise DpirError(f"config key '{where}.rows': {err}")
        for i, e in enumerate(table.get("expect") or []):
            for k in ("row", "vs"):
                if e.get(k) and e[k] not in table.get("rows", []):
                    raise DpirError(f"config key '{where}.expect[{i}].{k}': {e[k]!r} is not one of the table's rows")
            if not e.get("trend") and not (e.get("row") and e.get("vs")):
                raise DpirError(f"config key '{where}.expect[{i}]' needs either `trend` or both `row` and `vs`")
        if table.get("reference") and table["reference"] not in table.get("rows", []):
            raise DpirError(f"config key '{where}.reference': {table['reference']!r} is not one of the table's rows")
        if table["kind"] in ("rows", "tau_sweep", "training_cost", "flops") and not table.get("rows"):
            raise DpirError(f"config key '{where}.rows' is required for an ablation table of kind {table['kind']!r}")
    for nname, net in networks.items():
        if "task" in net and net["task"] not in config["tasks"]:
            raise DpirError(f"config key 'networks.{nname}.task' names task {net['task']!r}, which is not defined")
        train = net.get("train", {})
        if "dataset" in train and train["dataset"] not in datasets:
            raise DpirError(f"config key 'networks.{nname}.train.dataset' names dataset {train['dataset']!r}, "
                            f"which is not defined under 'datasets'")
    for t in config.get("enabled_tasks", []) or []:
        if t not in config["tasks"]:
            raise DpirError(f"config key 'enabled_tasks' names task {t!r}, which is not defined")


def _check_networks(where: str, m: dict, networks: dict) -> None:
    """Every network a method names (network / ir / denoiser / fusion) is defined."""
    for key in ("network", "ir", "denoiser", "fusion"):
        if key in m and m[key] not in networks:
            raise DpirError(f"config key '{where}.{key}': {UnknownNameError('network', m[key], networks)}")


def _check_published(where: str, m: dict, task: dict) -> None:
    """A row of scores copied from a paper: a citation and numbers per test dataset and metric preset."""
    from dpir.metrics import METRICS

    if not isinstance(m.get("source"), str) or not m["source"].strip():
        raise DpirError(f"config key '{where}.source': a published-scores row must cite its paper and table")
    scores = m.get("scores")
    if not isinstance(scores, dict) or not scores:
        raise DpirError(f"config key '{where}.scores': give {{dataset: {{metric: value}}}} for a published-scores row")
    for ds, vals in scores.items():
        if ds not in task["test_datasets"]:
            raise DpirError(f"config key '{where}.scores.{ds}': {ds!r} is not a test dataset of the task "
                            f"({', '.join(task['test_datasets'])})")
        if not isinstance(vals, dict):
            raise DpirError(f"config key '{where}.scores.{ds}' must map metric presets to numbers")
        for metric, v in vals.items():
            if metric not in METRICS:
                raise UnknownNameError("metric preset", metric, METRICS)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise DpirError(f"config key '{where}.scores.{ds}.{metric}' must be a number, got {v!r}")


def load_config(paths: str | Path | Iterable[str | Path], overrides: Mapping | None = None) -> dict:
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    merged: dict = {}
    for p in paths:
        merged = deep_merge(merged, read_yaml(p))
    if overrides:
        merged = deep_merge(merged, overrides)
    merged["_sources"] = [str(p) for p in paths]
    return validate_config(merged)


def config_hash(obj: Any) -> str:
    """Short stable hash of a (sub-)config, recorded in results and used as a Snakemake param."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def enabled_tasks(config: dict) -> list[str]:
    return list(config.get("enabled_tasks") or config["tasks"])


def task_config(config: dict, task: str) -> dict:
    if task not in config["tasks"]:
        raise UnknownNameError("task", task, config["tasks"])
    return config["tasks"][task]


def ablation_methods(config: dict, task: str) -> dict:
    """Methods restored only for the ablation tables (``ablations.methods.<task>``)."""
    return ((config.get("ablations") or {}).get("methods") or {}).get(task) or {}


def all_methods(config: dict, task: str) -> dict:
    """The task's table methods followed by its ablation-only methods (names never collide: checked)."""
    return {**task_config(config, task)["methods"], **ablation_methods(config, task)}


def method_config(config: dict, task: str, method: str) -> dict:
    methods = all_methods(config, task)
    if method not in methods:
        raise UnknownNameError(f"method of task {task!r}", method, methods)
    return methods[method]


def ablation_tables(config: dict) -> dict:
    """The ablation tables whose task is enabled, or {} when ``run_ablations`` is false."""
    if not config.get("run_ablations", True):
        return {}
    tables = (config.get("ablations") or {}).get("tables") or {}
    on = set(enabled_tasks(config))
    return {name: t for name, t in tables.items() if t["task"] in on}


def ablation_dataset(config: dict, table: dict) -> str:
    return table.get("dataset") or config["tasks"][table["task"]]["test_datasets"][0]


def network_config(config: dict, name: str) -> dict:
    if name not in config["networks"]:
        raise UnknownNameError("network", name, config["networks"])
    return config["networks"][name]


def resolve_device(config: dict):
    import torch

    dev = config.get("device", "auto")
    if dev == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise DpirError(f"config key 'device' is {dev!r} but CUDA is not available here; use 'auto' or 'cpu'")
    return torch.device(dev)
