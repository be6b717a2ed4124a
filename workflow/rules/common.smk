# Config validation and targets.  The package owns the layout (dpir.paths), the schema (dpir.config)
# and what the workflow runs (dpir.workflow_facts: which task and dataset train a network, what its
# training loads, a method's networks and seeds, the run list); this file only turns them into
# Snakemake targets.  Parsing it writes nothing (a dry run leaves no results/ folder behind).
import shlex
import sys
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError

from dpir import paths as P
from dpir import workflow_facts as F
from dpir.config import NAME_PATTERN, ablation_tables, check_out_owner, config_hash, enabled_tasks, method_config, validate_config
from dpir.errors import DpirError

try:
    CFG = validate_config(dict(config))
    check_out_owner(CFG)            # each config its own folder: never another config's results
except DpirError as e:
    raise WorkflowError(f"invalid config: {e}") from None
CFG["_sources"] = [str(p) for p in workflow.configfiles]

PY = sys.executable
OUT = CFG["out"]
THREADS = CFG["threads"]
REPORT = str(P.report(CFG))

# The CLI reads exactly the config Snakemake resolved (all --configfile merges and --config
# overrides).  It is written when a run starts (onstart: never by a dry run or by parsing), and only
# when its content changes, so its mtime never triggers reruns; reruns are driven by the per-rule
# `params` hashes of the relevant config sections.
RESOLVED = P.resolved_config(CFG)


def write_resolved_config():
    text = yaml.safe_dump(CFG, sort_keys=False)
    if not RESOLVED.exists() or RESOLVED.read_text() != text:
        RESOLVED.parent.mkdir(parents=True, exist_ok=True)
        RESOLVED.with_suffix(".tmp").write_text(text)
        RESOLVED.with_suffix(".tmp").replace(RESOLVED)


onstart:
    write_resolved_config()


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


def net_file(name):
    return str(P.network_file(CFG, name))


def manifest_file(task, dataset):
    return str(P.manifest(CFG, task, dataset))


def score_files(run_list):
    return [str(P.scores(CFG, *r)) for r in run_list]


def ablation_inputs():
    """Score files, TFLOPs files and trained networks the ablation tables read."""
    files = score_files(F.ablation_runs(CFG))
    files += [str(P.tflops(CFG, s["task"])) for s in ablation_tables(CFG).values() if s["kind"] == "flops"]
    files += [net_file(n) for n in F.training_cost_networks(CFG)]
    return sorted(set(files))


def method_cfg(w):
    return method_config(CFG, w.task, w.method)


def checkpoint_input(mcfg):
    """A ``checkpoint`` row's file when the workflow can see it: it exists, or it is an export of this
    workflow (``<out>/exports/``, made by rule export_network).  A file still to be downloaded by hand is
    not an input, so the rest of the DAG runs and its restore job names the missing file in one line."""
    path = F.checkpoint_file(CFG, mcfg)
    if path is None:
        return None
    exports = Path(OUT, "exports").resolve()
    return path if Path(path).is_file() or Path(path).resolve().is_relative_to(exports) else None


def method_nets(w):
    """What a restore reads besides the prepared data: its networks, a ``checkpoint`` method's file (an
    export of this workflow is made by rule export_network), an ``outputs`` row's folder unless the row
    makes it (``make:``, run by the restore job itself)."""
    mcfg = method_cfg(w)
    files = [net_file(n) for n in F.networks_of(mcfg)]
    ckpt = checkpoint_input(mcfg)
    if ckpt:
        files.append(ckpt)
    elif mcfg.get("kind") == "checkpoint" and (entry := fetch_entry(F.expand_path(CFG, mcfg["path"]))):
        files += fetch_stamps([entry])        # a registry name: downloaded by its own fetch job
    if F.is_outputs(mcfg) and not mcfg.get("make"):
        folder = F.expand_path(CFG, mcfg["path"], task=w.task, dataset=w.dataset)
        if Path(folder).is_dir():           # a missing folder: `dpir restore` names it
            files.append(folder)
    return files


def make_outputs(w):
    """An ``outputs`` row's ``make:`` command with its placeholders filled, then ``&&``; else nothing.

    Placeholders: ``{python}`` (this interpreter), ``{root}`` (the dpir-bench checkout), ``{lq}`` (the prepared test inputs), ``{gt}``, ``{path}``
    (the row's folder), ``{task}``, ``{dataset}``, ``{scale}``; every value shell-quoted."""
    mcfg = method_cfg(w)
    if not (F.is_outputs(mcfg) and mcfg.get("make")):
        return ""
    test = P.prepared(CFG, w.task, w.dataset) / "test"
    fields = {"python": PY, "root": F.ROOT, "lq": str(test / "lq"), "gt": str(test / "gt"), "task": w.task, "dataset": w.dataset,
              "path": F.expand_path(CFG, mcfg["path"], task=w.task, dataset=w.dataset),
              "scale": str(CFG["tasks"][w.task].get("scale", 1))}
    cmd = str(mcfg["make"])
    for k, v in fields.items():
        cmd = cmd.replace(f"{{{k}}}", shlex.quote(v))
    return f"{cmd} && "


def train_manifest(w):
    return manifest_file(F.task_of_network(CFG, w.network), F.train_dataset(CFG, w.network))


def train_deps(w):
    return [net_file(n) for n in F.training_deps(CFG, w.network)]


def tflops_nets(w):
    """The networks the TFLOPs count loads, and the checkpoint files of its ``checkpoint`` rows."""
    ckpts = [checkpoint_input(m) for m in CFG["tasks"][w.task]["methods"].values()]
    return [*(net_file(n) for n in F.tflops_networks(CFG, w.task)), *sorted({c for c in ckpts if c})]


# ---- input functions of fetch.smk and shard.smk (kept here: `snakemake --lint` flags rule files with functions)

def fetch_entry(spec):
    """The registry entry named by ``spec`` (a name or an alias), or None for a path."""
    from dpir.fetch import registry

    if not isinstance(spec, str) or Path(spec).name != spec or spec.endswith((".pth", ".pt", ".ckpt", ".safetensors")):
        return None
    try:
        return registry.get(spec).name
    except DpirError:
        return None


def fetch_stamps(names):
    """The fetch jobs' outputs for registry entries ``names`` (rule fetch)."""
    return [str(P.fetch_stamp(CFG, n)) for n in dict.fromkeys(names)]


def prepare_input(w):
    """A paper dataset's archives, each downloaded and verified by its own fetch job first."""
    return fetch_stamps(F.dataset_fetches(CFG, w.task, w.dataset))


def official_input(w):
    """A plain path is an input (its mtime reruns the import); a fetch name is its fetch job's output."""
    spec = str(CFG["networks"][w.network]["official"])
    entry = fetch_entry(spec)
    return fetch_stamps([entry]) if entry else ([spec] if Path(spec).is_file() else [])


def fetch_entries():
    """Every registry entry the DAG reads: paper datasets, official weights, checkpoint rows' files."""
    names = [n for t, d in F.prepared_datasets(CFG) for n in F.dataset_fetches(CFG, t, d)]
    names += [fetch_entry(str(CFG["networks"][n]["official"])) for n in F.needed_networks(CFG) if F.is_official(CFG, n)]
    names += [fetch_entry(F.expand_path(CFG, m["path"])) for t in enabled_tasks(CFG)
              for m in F.all_methods(CFG, t).values() if m.get("kind") == "checkpoint"]
    names += [n for t in enabled_tasks(CFG) for n in F.metric_fetches(CFG, t)]
    return sorted({n for n in names if n})


def metric_stamps(w):
    """The fetch stamps of the weights a score job's metric presets read (fetch_metric_weights: true)."""
    return [str(P.fetch_stamp(CFG, n)) for n in F.metric_fetches(CFG, w.task)]


def shards_of(task, method):
    return F.shards_of(CFG, task, method)


def shard_runs(w):
    n = shards_of(w.task, w.method)
    return [str(P.shard_record(CFG, w.task, w.dataset, w.method, w.seed, k, n)) for k in range(n)]
