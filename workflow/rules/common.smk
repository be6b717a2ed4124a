# Path helpers and config validation.  The package owns the layout (dpir.paths) and the schema
# (dpir.config); this file only turns them into Snakemake targets.
import shlex
import sys
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError

from dpir import paths as P
from dpir.config import (NAME_PATTERN, ablation_dataset, ablation_tables, all_methods, config_hash, enabled_tasks,
                         method_config, validate_config)
from dpir.errors import DpirError
from dpir.workflow_facts import networks_of, seeds_of

try:
    CFG = validate_config(dict(config))
except DpirError as e:
    raise WorkflowError(f"invalid config: {e}") from None
CFG["_sources"] = [str(p) for p in workflow.configfiles]

PY = sys.executable
OUT = CFG["out"]
THREADS = CFG["threads"]
REPORT = str(P.report(CFG))

# The CLI reads exactly the config Snakemake resolved (all --configfile merges and --config
# overrides).  Written only when its content changes, so its mtime never triggers reruns; reruns
# are driven by the per-rule `params` hashes of the relevant config sections.
RESOLVED = Path(OUT) / ".config" / "resolved.yaml"
_text = yaml.safe_dump(CFG, sort_keys=False)
if not RESOLVED.exists() or RESOLVED.read_text() != _text:
    RESOLVED.parent.mkdir(parents=True, exist_ok=True)
    RESOLVED.with_suffix(".tmp").write_text(_text)
    RESOLVED.with_suffix(".tmp").replace(RESOLVED)
# Every value that reaches a shell line is quoted: the interpreter and config paths here, every
# wildcard in the rules ({wildcards.x:q}); the config's names are restricted to NAME_PATTERN
# (dpir.config) and the wildcards below, so a name can never become shell syntax.
DPIR = f"{shlex.quote(PY)} -m dpir"
CFGARG = f"--config {shlex.quote(str(RESOLVED))}"
_NAME = NAME_PATTERN.strip("^$")


wildcard_constraints:
    task=_NAME,
    dataset=_NAME,
    method=_NAME,
    network=_NAME,
    seed=r"\d+",


def task_of_network(name):
    net = CFG["networks"][name]
    return net.get("task") or next(iter(CFG["tasks"]))


def train_dataset(name):
    net, task = CFG["networks"][name], CFG["tasks"][task_of_network(name)]
    return (net.get("train") or {}).get("dataset") or task.get("train_dataset") or task["test_datasets"][0]


def network_deps(name):
    """Networks a network's training loads (any train value naming another network)."""
    train = CFG["networks"][name].get("train", {})
    return [v for v in train.values() if isinstance(v, str) and v in CFG["networks"] and v != name]


def net_file(name):
    return str(P.network_file(CFG, name))


def runs():
    """Every (task, dataset, method, seed) the report needs."""
    for task in enabled_tasks(CFG):
        tcfg = CFG["tasks"][task]
        for ds in tcfg["test_datasets"]:
            for method, mcfg in tcfg["methods"].items():
                for seed in seeds_of(mcfg, tcfg):
                    yield task, ds, method, seed


def ablation_runs():
    """Every (task, dataset, method, seed) the ablation tables read (some are main-table runs too)."""
    seen = set()
    for spec in ablation_tables(CFG).values():
        if spec["kind"] not in ("rows", "tau_sweep", "flops"):
            continue
        task, ds = spec["task"], ablation_dataset(CFG, spec)
        methods = all_methods(CFG, task)
        for method in spec["rows"]:
            for seed in seeds_of(methods[method], CFG["tasks"][task]):
                key = (task, ds, method, seed)
                if key not in seen:
                    seen.add(key)
                    yield key


def ablation_inputs():
    """Score files, TFLOPs files and trained networks the ablation tables read."""
    files = [f"{OUT}/scores/{t}/{d}/{m}/seed{s}.json" for t, d, m, s in ablation_runs()]
    for spec in ablation_tables(CFG).values():
        if spec["kind"] == "flops":
            files.append(f"{OUT}/cost/{spec['task']}_tflops_1280x720.json")
        if spec["kind"] == "training_cost":
            methods = all_methods(CFG, spec["task"])
            files += [net_file(n) for m in spec["rows"] for n in networks_of(methods[m])]
    return sorted(set(files))


def method_cfg(w):
    return method_config(CFG, w.task, w.method)


# ---- input functions of fetch.smk and shard.smk (kept here: `snakemake --lint` flags rule files with functions)

def official_input(w):
    """A plain path is an input (its mtime reruns the import); a fetch name is resolved by the job."""
    spec = str(CFG["networks"][w.network]["official"])
    return [spec] if Path(spec).is_file() else []


def shards_of(task, method):
    return int(CFG["tasks"][task]["methods"][method].get("shards") or 1)


def shard_runs(w):
    n = shards_of(w.task, w.method)
    return [f"{OUT}/restored/{w.task}/{w.dataset}/{w.method}/seed{w.seed}.shard{k}of{n}/run.json" for k in range(n)]
