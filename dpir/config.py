"""Loading, merging and validating the harness config.

``load_config(paths)`` merges YAML files left to right (later files override earlier ones, nested
mappings merged key by key, like Snakemake's ``--configfile``), validates the result against
``dpir/schemas/config.schema.yaml`` and fills the schema's defaults.  Errors name the key path
(``tasks.sr.methods.swinir.network``) and say what is allowed.

Beyond the schema, every name is checked before any job runs: method kinds, trainers, architectures,
metric presets and degradations against their registries, each method entry and ``train:`` section
against the keys its factory declares (:mod:`dpir.keys`), and every task, dataset, method, network and
ablation-table name against :data:`NAME_PATTERN` (names become file names and shell words).
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from dpir.errors import DpirError, UnknownNameError
# the config's selectors of what is switched on are defined once, torch-free, in dpir.workflow_facts
from dpir.workflow_facts import (ablation_dataset, ablation_methods, ablation_tables, all_methods,  # noqa: F401
                                 enabled_tasks, is_published)

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent
SCHEMA_PATH = PACKAGE / "schemas" / "config.schema.yaml"
#: names of tasks, datasets, methods, networks and ablation tables: they become path components and
#: Snakemake wildcards that reach a shell, so only letters, digits, '_' and '-' (not first)
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$"
#: at most this many YAML nodes after expanding aliases (the default config has about 3,000)
MAX_YAML_NODES = 200_000
DEFAULT_CONFIG_NAME = "config.yaml"


def default_config_path(name: str = DEFAULT_CONFIG_NAME) -> Path:
    """A config shipped with the harness: ``config/<name>`` of the checkout, or the copy installed
    with the package (``dpir/defaults/<name>``, written by setup.py's build step)."""
    for candidate in (ROOT / "config" / name, PACKAGE / "defaults" / name):
        if candidate.is_file():
            return candidate
    raise DpirError(f"the harness's own config {name!r} is not installed (looked in {ROOT / 'config'} and "
                    f"{PACKAGE / 'defaults'}); reinstall dpir-bench")


def deep_merge(base: Mapping, override: Mapping) -> dict:
    out = copy.deepcopy(dict(base))
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def yaml_error_line(e: yaml.YAMLError) -> str:
    """One line for a YAML error: the problem and where (PyYAML's own text spans 3-8 lines)."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def _expanded_size(node, memo: dict, limit: int) -> int:
    """Number of nodes ``node`` stands for once every alias is expanded (memoised by node identity, so
    a billion-laughs document is measured without being expanded)."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = limit + 1  # a node that contains itself (recursive alias) is too large by definition
    n = 1
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            n += _expanded_size(child, memo, limit)
            if n > limit:
                break
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            n += _expanded_size(k, memo, limit) + _expanded_size(v, memo, limit)
            if n > limit:
                break
    memo[key] = n
    return n


# libyaml's parser when PyYAML was built with it (every wheel is): the config is read by every job, and the
# pure-Python parser took ~0.5 s of each job's start-up on paper.yaml + an overlay
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml_text(text: str, source: str) -> Any:
    """Safe-load YAML text, refusing alias bombs; errors are one line naming ``source``."""
    loader = _SAFE_LOADER(text)      # one parse: the node graph is size-checked, then constructed
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}, MAX_YAML_NODES) > MAX_YAML_NODES:
            raise DpirError(f"{source}: its YAML aliases expand to more than {MAX_YAML_NODES:,} values (an alias "
                            f"bomb?); write the repeated parts out or use fewer nested aliases")
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        raise DpirError(f"{source} is not valid YAML: {yaml_error_line(e)}") from None
    except RecursionError:
        raise DpirError(f"{source}: its YAML is nested too deeply") from None
    finally:
        loader.dispose()


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise DpirError(f"config file {path} does not exist")
    if not path.is_file():
        raise DpirError(f"config file {path} is not a regular file (a directory?); pass a YAML file to --config")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DpirError(f"config file {path} is not UTF-8 text (byte {e.start}); pass a YAML file to --config") from None
    except OSError as e:
        raise DpirError(f"cannot read config file {path}: {e.strerror}") from None
    data = parse_yaml_text(text, f"config file {path}")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DpirError(f"config file {path} must hold a mapping at the top level")
    return data


@functools.lru_cache(maxsize=1)
def _schema() -> dict:
    """The parsed schema, read once per process (validation reads it, never mutates it)."""
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
    _check_names(config)
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
    for key in ("out", "data_dir"):          # per-config output folders: results/<name>/, data/prepared/<name>/
        config[key] = config[key].replace("{name}", config["name"])
    _check_references(config, private.get("_switched_off") or {})
    if off := _select_methods(config, private.get("_switched_off") or {}):
        private["_switched_off"] = off
    _check_registered(config)
    config.update(private)
    return config


def _select_methods(config: dict, off: dict) -> dict:
    """Apply ``tasks.<task>.enabled_methods``: the task keeps only the named rows (in ``methods`` order), so
    every consumer (the DAG, restore, the tables) sees one selection.  Names were checked against the full
    method list first (:func:`_check_references`, so a typo in a row that is switched off is still caught);
    an enabled ablation table may not read a row that is switched off.  Returns every task's switched-off
    names (``off``: those of an earlier validation of this config, kept in its private ``_switched_off`` key,
    which the resolved config a workflow writes carries, so re-validating a selected config passes)."""
    import difflib

    abl = config.get("ablations") or {}
    off = {t: list(v) for t, v in off.items()}
    for tname, task in config["tasks"].items():
        chosen = task.get("enabled_methods")
        if chosen is None:
            continue
        for i, m in enumerate(chosen):
            if m not in task["methods"]:
                close = difflib.get_close_matches(m, list(task["methods"]), n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise DpirError(f"config key 'tasks.{tname}.enabled_methods[{i}]': {m!r} is not a method of "
                                f"tasks.{tname}.methods.{hint}")
        off[tname] = list(dict.fromkeys([*off.get(tname, []), *(k for k in task["methods"] if k not in chosen)]))
        task["methods"] = {k: v for k, v in task["methods"].items() if k in chosen}
    for aname, table in ablation_tables(config).items():
        task = config["tasks"][table["task"]]
        known = {**task["methods"], **((abl.get("methods") or {}).get(table["task"]) or {})}
        for row in table.get("rows", []):
            if row not in known:
                raise DpirError(f"config key 'ablations.tables.{aname}.rows': row {row!r} is switched off by "
                                f"tasks.{table['task']}.enabled_methods; enable it there, or leave the table out "
                                f"of ablations.enabled_tables")
    return {t: v for t, v in off.items() if v}


def check_out_owner(config: dict) -> None:
    """Refuse to run a config whose ``out`` folder holds another config's outputs.

    The folder's owner is the ``name`` in the resolved config a run wrote there
    (:func:`dpir.paths.resolved_config`).  Without this, a second config pointed at the same folder would
    retrain into the first one's network folders, overwrite its results, and a dry run could answer
    "Nothing to be done" with the other config's report.  Reads only; a fresh folder passes."""
    import yaml

    from dpir.paths import resolved_config

    path = resolved_config(config)
    if not path.exists():
        return
    try:
        owner = (yaml.safe_load(path.read_text()) or {}).get("name", "default")
    except yaml.YAMLError:
        return                  # a damaged record: the run rewrites it
    if owner != config["name"]:
        raise DpirError(f"{config['out']} holds the outputs of config {owner!r}, not of this config "
                        f"({config['name']!r}): give this config its own `name:` (outputs go to results/<name>/) "
                        f"or its own `out:` folder; nothing was changed")


def _name_sections(config: dict):
    """(config path, mapping) of every section whose keys are names that reach paths and shells."""
    def mapping(x):
        return x if isinstance(x, dict) else {}
    for section in ("tasks", "datasets", "networks"):
        yield section, mapping(config.get(section))
    for tname, task in mapping(config.get("tasks")).items():
        yield f"tasks.{tname}.methods", mapping(mapping(task).get("methods"))
    abl = mapping(config.get("ablations"))
    for tname, methods in mapping(abl.get("methods")).items():
        yield f"ablations.methods.{tname}", mapping(methods)
    yield "ablations.tables", mapping(abl.get("tables"))


def _check_names(config: dict) -> None:
    import re

    pattern = re.compile(NAME_PATTERN)
    for where, section in _name_sections(config):
        for name in section:
            if not isinstance(name, str) or not pattern.match(name):
                raise DpirError(f"config key '{where}' has the name {str(name)!r}: names may hold only letters, "
                                f"digits, '_' and '-' (not first), at most 100 characters, because they become "
                                f"file names and workflow wildcards; rename it")


#: keys every method entry accepts, whatever its kind (the schema's ``$defs.method``)
def _common_method_keys() -> dict:
    return _schema()["$defs"]["method"]["properties"]


def _common_train_keys() -> dict:
    """Keys the generic training loop reads for every trainer (the schema's ``$defs.train``)."""
    return _schema()["$defs"]["train"]["properties"]


#: the keys of a row whose restored images come from a folder made by other code (kind ``outputs``,
#: :mod:`dpir.outputs`): the folder, an optional command that makes it, and the cost its author declares
#: (shown marked as declared: the harness cannot measure code it does not run)
OUTPUTS_KEYS = {"properties": {
    "path": {"type": "string", "minLength": 1},
    "make": {"type": "string", "minLength": 1},
    "nfe": {"type": "integer", "minimum": 0},
    "params": {"type": "integer", "minimum": 0},
    "tflops": {"type": "number", "minimum": 0},
}, "required": ["path"]}


def _check_registered(config: dict) -> None:
    """Every name that selects code (method kind, trainer, architecture, metric preset, degradation)
    is registered, and every method entry and train section holds only the keys its code declares."""
    # method kinds, architectures and trainers first: their tables and declared keys are torch-free data
    from dpir.keys import check_keys, network_keys
    from dpir.methods import METHODS, PUBLISHED
    from dpir.nets import ARCHS
    from dpir.workflow_facts import OUTPUTS
    from dpir.train import TRAINERS

    networks = config["networks"]
    method_common = _common_method_keys()
    entries = [(f"tasks.{t}.methods.{m}", mc) for t, task in config["tasks"].items() for m, mc in task["methods"].items()]
    entries += [(f"ablations.methods.{t}.{m}", mc) for t, ms in ((config.get("ablations") or {}).get("methods") or {}).items()
                for m, mc in ms.items()]
    for where, m in entries:
        kind = m["kind"]
        if kind == PUBLISHED:
            unknown = sorted(set(m) - set(method_common) - {"source", "scores"})
            if unknown:
                raise DpirError(f"config key '{where}.{unknown[0]}' is not a setting of a published-scores row "
                                f"(allowed: kind, label, group, source, scores)")
            continue
        if kind == OUTPUTS:
            check_keys(where, m, OUTPUTS_KEYS, method_common, "a row of restored images from a folder (kind 'outputs')")
            continue
        if kind not in METHODS:
            raise DpirError(f"config key '{where}.kind': "
                            f"{UnknownNameError('method kind', kind, [*METHODS, PUBLISHED, OUTPUTS])}")
        decl = METHODS.meta(kind)["keys"]   # declared in the registry entry: nothing is imported
        check_keys(where, m, decl, method_common, f"method kind {kind!r}")
        _check_network_refs(where, m, decl, networks)
    train_common = _common_train_keys()
    for nname, net in networks.items():
        where = f"networks.{nname}"
        if net["arch"] not in ARCHS:
            raise DpirError(f"config key '{where}.arch': {UnknownNameError('architecture', net['arch'], ARCHS)}")
        if net["arch"] == "spandrel" and not net.get("official"):
            raise DpirError(f"config key '{where}.official' is required for 'arch: spandrel': the architecture is "
                            f"detected from a checkpoint (give its path or fetch name); to train a network, name "
                            f"its architecture instead")
        train = net.get("train")
        if train is None:
            continue
        if train["trainer"] not in TRAINERS:
            raise DpirError(f"config key '{where}.train.trainer': {UnknownNameError('trainer', train['trainer'], TRAINERS)}")
        decl = TRAINERS.meta(train["trainer"])["keys"]
        check_keys(f"{where}.train", train, decl, train_common, f"trainer {train['trainer']!r}")
        _check_network_refs(f"{where}.train", train, decl, networks)
        for key in network_keys(decl):
            if train.get(key) == nname:
                raise DpirError(f"config key '{where}.train.{key}' names the network itself; name another network")
    # then metric presets and degradations
    from dpir.metrics import METRICS, unknown_metric

    for tname, task in config["tasks"].items():
        for i, metric in enumerate(task.get("metrics") or []):
            if metric not in METRICS:
                raise DpirError(f"config key 'tasks.{tname}.metrics[{i}]': {unknown_metric(metric)}")
        _check_degradation(f"tasks.{tname}.degradation", task)


def _check_network_refs(where: str, entry: dict, decl: dict, networks: dict) -> None:
    from dpir.keys import network_keys

    for key in network_keys(decl):
        if key in entry and entry[key] not in networks:
            raise DpirError(f"config key '{where}.{key}': {UnknownNameError('network', entry[key], networks)}")


def _check_degradation(where: str, task: dict) -> None:
    """The degradation of a task: its ``name`` must be the task kind's, and its keys the degradation's."""
    from dpir.tasks import degradations

    deg = task.get("degradation")
    if deg is None:
        return
    if not isinstance(deg, dict):
        raise DpirError(f"config key '{where}' must be a mapping such as {{name: ...}}")
    name, allowed = deg.get("name"), degradations(task["kind"])
    if name is not None and name not in allowed:
        what = f"degradation of a {task['kind']} task"
        raise DpirError(f"config key '{where}.name': {UnknownNameError(what, name, allowed)}")
    keys = allowed[name or next(iter(allowed))]
    unknown = sorted(set(deg) - {"name"} - set(keys))
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], list(keys), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise DpirError(f"config key '{where}.{unknown[0]}' is not a setting of this degradation.{hint} "
                        f"Allowed: name, {', '.join(sorted(keys))}")


def _check_references(config: dict, off: dict | None = None) -> None:
    """Cross-references the schema cannot express: names of datasets, networks, methods (``off``: rows an
    earlier validation switched off with ``enabled_methods``, known though no longer defined)."""
    off = off or {}
    datasets, networks = config["datasets"], config["networks"]
    for tname, task in config["tasks"].items():
        for ds in task["test_datasets"]:
            if ds not in datasets:
                raise DpirError(f"config key 'tasks.{tname}.test_datasets' names dataset {ds!r}, which is not "
                                f"defined under 'datasets' (defined: {', '.join(sorted(datasets))})")
        for mname, m in task["methods"].items():
            if is_published(m):
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
    for i, aname in enumerate(abl.get("enabled_tables") or []):
        if aname not in (abl.get("tables") or {}):
            import difflib

            close = difflib.get_close_matches(aname, list(abl.get("tables") or {}), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise DpirError(f"config key 'ablations.enabled_tables[{i}]': {aname!r} is not a table of "
                            f"ablations.tables.{hint}")
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
            if row not in known and row not in off.get(table["task"], ()):
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


#: scores a published row may give beside the metric presets: protocols of ``dpir protocols`` only
PUBLISHED_PROTOCOL_SCORES = ("psnr_linear_official",)


def _check_published(where: str, m: dict, task: dict) -> None:
    """A row of scores copied from a paper: a citation and numbers per test dataset and metric preset."""
    from dpir.metrics import METRICS, unknown_metric

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
            # a score under a protocol of the protocol-sensitivity table (the official SyntheticBurst score)
            if metric not in METRICS and metric not in PUBLISHED_PROTOCOL_SCORES:
                raise unknown_metric(metric)
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


def task_config(config: dict, task: str) -> dict:
    if task not in config["tasks"]:
        raise UnknownNameError("task", task, config["tasks"])
    return config["tasks"][task]


def method_config(config: dict, task: str, method: str) -> dict:
    task_config(config, task)          # an unknown task is one line naming it, not a KeyError
    methods = all_methods(config, task)
    if method not in methods:
        raise UnknownNameError(f"method of task {task!r}", method, methods)
    return methods[method]


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
