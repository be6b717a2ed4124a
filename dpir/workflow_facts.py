"""Workflow facts, once: what the Snakefile, ``dpir train``, the DVC generator, the report and the
scripts need to agree on, without torch.

- a method: its networks (:func:`networks_of`), its seeds (:func:`seeds_of`), whether it is a row of
  published scores (:func:`is_published`), its shard count (:func:`shards_of`);
- a network: its task (:func:`task_of_network`), its training dataset (:func:`train_dataset`), the
  networks its training loads (:func:`training_deps`, :func:`training_chain`), official or trained;
- the workflow: the report's runs (:func:`runs`), the ablations' (:func:`ablation_runs`), every run,
  network and prepared dataset a fresh ``snakemake all`` makes (:func:`all_runs`,
  :func:`needed_networks`, :func:`prepared_datasets`, :func:`tflops_tasks`).

It is plain dict logic and lives here, not in :mod:`dpir.methods` (which imports the networks and so
torch), so that the Snakefile, :mod:`dpir.report` and ``scripts/`` can ask without importing any
method or network code (``tests/test_import_rules.py``).  :mod:`dpir.methods` re-exports some names.
tests/test_workflow_facts.py checks the facts on the shipped configs and against the dry run's jobs.

It also holds the config's selectors of what is switched on (:func:`enabled_tasks`,
:func:`ablation_tables`, :func:`ablation_methods`, :func:`all_methods`, :func:`ablation_dataset`),
once: :mod:`dpir.config` re-exports them.

This module imports the standard library only (``tests/test_import_rules.py``): no torch, numpy or
anything under ``dpir``.
"""
from __future__ import annotations

#: the kind of a table row of scores copied from a paper: never built, never restored
PUBLISHED = "published"

#: the kind of a row whose restored images come from a folder (any code, any framework): imported, never built
OUTPUTS = "outputs"

#: method kinds with no randomness: they run on the first seed only (more seeds would repeat the numbers);
#: a ``python`` method says so itself with ``deterministic: true``
DETERMINISTIC_KINDS = frozenset({"bicubic", "backbone", "burst_bicubic", "checkpoint", OUTPUTS})

#: the method config keys that name a trained network (``networks.<name>``)
NETWORK_KEYS = ("network", "ir", "denoiser", "fusion")


def is_published(method_cfg: dict) -> bool:
    """Whether a method config is a row of published scores (kind ``published``)."""
    return method_cfg.get("kind") == PUBLISHED


def is_outputs(method_cfg: dict) -> bool:
    """Whether a method config is a folder of restored images made elsewhere (kind ``outputs``)."""
    return method_cfg.get("kind") == OUTPUTS


def is_deterministic(method_cfg: dict) -> bool:
    """Whether a method gives the same output for every seed (it then runs on the first seed only)."""
    return method_cfg["kind"] in DETERMINISTIC_KINDS or bool(method_cfg.get("deterministic"))


#: the dpir-bench checkout (the folder holding ``dpir/``, ``config/``, ``examples/``): ``{root}`` in paths
ROOT = __file__.replace("\\", "/").rsplit("/", 2)[0]


def expand_path(config: dict, text: str, **fields: str) -> str:
    """A path of a method config with its placeholders filled: ``{out}`` (the config's output folder),
    ``{root}`` (this dpir-bench checkout: the shipped examples, wherever Snakemake's working directory
    is) and any of ``fields`` (``{task}``, ``{dataset}``); other braces are left alone."""
    text = str(text).replace("{out}", str(config.get("out", "results"))).replace("{root}", ROOT)
    for k, v in fields.items():
        text = text.replace("{" + k + "}", str(v))
    return text


def checkpoint_file(config: dict, method_cfg: dict) -> str | None:
    """The file a ``checkpoint`` method reads, when its ``path`` is a file (``{out}`` filled in); None for
    other kinds and for a fetch registry name (a bare name: no folder, no suffix), which its job fetches."""
    if method_cfg.get("kind") != "checkpoint":
        return None
    path = expand_path(config, method_cfg["path"])
    return path if "/" in path or "." in path.rsplit("/", 1)[-1] else None


def exported_checkpoints(config: dict) -> list[str]:
    """The files ``checkpoint`` rows read from ``<out>/exports/`` (written by ``dpir export``, rule
    export_network), each once, for every enabled task's methods and ablation-only methods."""
    prefix = str(config.get("out", "results")).rstrip("/") + "/exports/"
    files = [checkpoint_file(config, m) for t in enabled_tasks(config) for m in all_methods(config, t).values()]
    return sorted({f for f in files if f and f.startswith(prefix)})


def networks_of(method_cfg: dict) -> list[str]:
    """Names of the trained networks a method config refers to (for workflow dependencies)."""
    return [method_cfg[k] for k in NETWORK_KEYS if k in method_cfg]


def seeds_of(method_cfg: dict, task_cfg: dict) -> list[int]:
    """Seeds a method runs with; none for a published-scores row (it never runs)."""
    if is_published(method_cfg):
        return []
    seeds = method_cfg.get("seeds") or task_cfg.get("seeds") or [0]
    return seeds[:1] if is_deterministic(method_cfg) else list(seeds)


# ------------------------------------------------------------------------------------------------
# networks: what trains them and what their training loads

#: the train-section keys that name another network (the trainers declare them with dpir.keys.NETWORK;
#: tests/test_workflow_facts.py checks this list against every trainer's declaration)
TRAIN_NETWORK_KEYS = ("ir", "denoiser", "rrdb", "teacher")


def is_official(config: dict, network: str) -> bool:
    """Whether a network is imported from released weights (``official:``), never trained."""
    return bool(config["networks"][network].get("official"))


def task_of_network(config: dict, network: str) -> str:
    """The task a network is trained for: its ``task``, else the config's first task."""
    return config["networks"][network].get("task") or next(iter(config["tasks"]))


def train_dataset(config: dict, network: str) -> str:
    """The dataset a network trains on: ``train.dataset``, else its task's ``train_dataset``, else the
    task's first test dataset."""
    train = config["networks"][network].get("train") or {}
    task = config["tasks"][task_of_network(config, network)]
    return train.get("dataset") or task.get("train_dataset") or task["test_datasets"][0]


def training_deps(config: dict, network: str) -> list[str]:
    """Networks a network's training loads (its train keys naming networks); none for an official one."""
    if is_official(config, network):
        return []
    train = config["networks"][network].get("train") or {}
    return [train[k] for k in TRAIN_NETWORK_KEYS if isinstance(train.get(k), str) and train[k] != network]


def training_chain(config: dict, names, skip=()) -> list[str]:
    """``names`` and, recursively, the networks their training loads, in training order (dependencies
    first); networks in ``skip`` and what only they load are left out."""
    out: list[str] = []

    def visit(n):
        if n in skip or n in out:
            return
        for d in training_deps(config, n):
            visit(d)
        out.append(n)
    for n in names:
        visit(n)
    return out


# ------------------------------------------------------------------------------------------------
# what the workflow runs (enabled tasks, ablation tables)

# The config's selectors of what is switched on, defined here once (dpir.config re-exports them).

def enabled_tasks(config: dict) -> list[str]:
    """The tasks the workflow runs: ``enabled_tasks``, else every task."""
    return list(config.get("enabled_tasks") or config["tasks"])


def ablation_tables(config: dict) -> dict:
    """The ablation tables whose task is enabled (and, when ``ablations.enabled_tables`` is set, that it
    names), or {} when ``run_ablations`` is false."""
    if not config.get("run_ablations", True):
        return {}
    abl = config.get("ablations") or {}
    tables = abl.get("tables") or {}
    chosen = abl.get("enabled_tables")
    on = set(enabled_tasks(config))
    return {name: t for name, t in tables.items() if t["task"] in on and (chosen is None or name in chosen)}


def ablation_methods(config: dict, task: str) -> dict:
    """Methods restored only for the ablation tables (``ablations.methods.<task>``)."""
    return ((config.get("ablations") or {}).get("methods") or {}).get(task) or {}


def all_methods(config: dict, task: str) -> dict:
    """The task's table methods followed by its ablation-only methods (names never collide: checked).
    A task of a validated config (``dpir.config.method_config`` names an unknown one in one line)."""
    return {**config["tasks"][task]["methods"], **ablation_methods(config, task)}


def ablation_dataset(config: dict, table: dict) -> str:
    """The dataset an ablation table reads: its ``dataset``, else its task's first test dataset."""
    return table.get("dataset") or config["tasks"][table["task"]]["test_datasets"][0]


def method_of(config: dict, task: str, method: str) -> dict:
    """A method's config entry: a table method of the task or an ablation-only one."""
    return all_methods(config, task)[method]


def shards_of(config: dict, task: str, method: str) -> int:
    """How many jobs restore a method (``shards: N``; 1 = one job)."""
    return int(method_of(config, task, method).get("shards") or 1)


def runs(config: dict) -> list[tuple[str, str, str, int]]:
    """Every (task, dataset, method, seed) the report's tables need."""
    out = []
    for task in enabled_tasks(config):
        tcfg = config["tasks"][task]
        for ds in tcfg["test_datasets"]:
            for method, mcfg in tcfg["methods"].items():
                out += [(task, ds, method, s) for s in seeds_of(mcfg, tcfg)]
    return out


def ablation_runs(config: dict) -> list[tuple[str, str, str, int]]:
    """Every (task, dataset, method, seed) the ablation tables read (some are main-table runs too)."""
    out: list = []
    for spec in ablation_tables(config).values():
        if spec["kind"] not in ("rows", "tau_sweep", "flops"):
            continue
        task = spec["task"]
        ds = ablation_dataset(config, spec)
        methods = all_methods(config, task)
        for method in spec["rows"]:
            out += [k for s in seeds_of(methods[method], config["tasks"][task]) if (k := (task, ds, method, s)) not in out]
    return out


def all_runs(config: dict) -> list[tuple[str, str, str, int]]:
    """The report's runs followed by the ablations' others: every run the workflow restores and scores."""
    main = runs(config)
    seen = set(main)
    return main + [r for r in ablation_runs(config) if r not in seen]


def tflops_tasks(config: dict) -> list[str]:
    """Tasks whose TFLOPs table is computed: enabled non-burst tasks (report) and flops ablations' tasks."""
    from dpir.tasks import task_kind

    tasks = [t for t in enabled_tasks(config) if task_kind(config["tasks"][t]).image_input]
    tasks += [s["task"] for s in ablation_tables(config).values() if s["kind"] == "flops"]
    return list(dict.fromkeys(tasks))


def tflops_networks(config: dict, task: str) -> list[str]:
    """Networks the TFLOPs count of a task loads: those of the task's table methods."""
    return sorted({n for m in config["tasks"][task]["methods"].values() for n in networks_of(m)})


def training_cost_networks(config: dict) -> list[str]:
    """Networks whose training logs the training-cost ablation tables read."""
    return sorted({n for spec in ablation_tables(config).values() if spec["kind"] == "training_cost"
                   for m in spec["rows"] for n in networks_of(all_methods(config, spec["task"])[m])})


def needed_networks(config: dict) -> list[str]:
    """Every network the workflow's targets need (restored runs, TFLOPs counts, training-cost tables) and
    what their training loads, in config order."""
    direct = {n for t, _, m, _ in all_runs(config) for n in networks_of(method_of(config, t, m))}
    direct |= {n for t in tflops_tasks(config) for n in tflops_networks(config, t)}
    direct |= set(training_cost_networks(config))
    # a `checkpoint` row read from <out>/exports/<network>.<layout>.pth needs that network (rule
    # export_network): without it an official network only an export reads was planned as a training job
    direct |= {f.rsplit("/", 1)[-1].split(".")[0] for f in exported_checkpoints(config)} & set(config["networks"])
    chain = set(training_chain(config, sorted(direct)))
    return [n for n in config["networks"] if n in chain]


#: metric preset -> the registry entries of the weights it reads (timm's ResNet-50 with TOPIQ, which
#: builds it when asked for ImageNet backbone weights)
METRIC_WEIGHTS = {"lpips_alex": ("lpips_alexnet",), "topiq_nr": ("topiq_nr_koniq", "timm_resnet50"),
                  "topiq_delta": ("topiq_nr_koniq", "timm_resnet50"), "topiq_fr": ("topiq_fr_kadid", "timm_resnet50")}


def metric_fetches(config: dict, task: str) -> list[str]:
    """The registry entries of the weights the task's metric presets read, when ``fetch_metric_weights``
    is on (config/paper.yaml): the score jobs wait for their fetch jobs.  Off (the embedded default,
    offline), a metric without cached weights is n/a with a footnote naming the fetch."""
    if not config.get("fetch_metric_weights"):
        return []
    names = [n for m in config["tasks"][task].get("metrics") or [] for n in METRIC_WEIGHTS.get(m, ())]
    return list(dict.fromkeys(names))


def paper_fetch_names(ds_cfg: dict, split: str, scale: int) -> list[str]:
    """The fetch registry entries a paper dataset's ``split`` is read from (:mod:`dpir.data.paper`, which
    calls this too); none when the split is given by ``path`` / ``train_path`` or is not a paper kind."""
    key = "train_path" if split == "train" and ds_cfg.get("train_path") else "path"
    if ds_cfg.get(key):
        return []
    kind = ds_cfg.get("kind")
    if kind == "div2k":
        d_split = ds_cfg.get("split", "valid") if split == "test" else "train"
        lr = ds_cfg.get("lr", "regenerate")
        return [f"div2k_{d_split}_hr"] + ([f"div2k_{d_split}_lr_x{scale}"] if lr == "official" else [])
    return {("gopro", "test"): ["gopro"], ("gopro", "train"): ["gopro"], ("hide", "test"): ["hide"],
            ("syntheticburst", "test"): ["syntheticburst_val"],
            ("zurich", "train"): ["zurich_raw2rgb"]}.get((kind, split), [])


def dataset_fetches(config: dict, task: str, dataset: str) -> list[str]:
    """Every registry entry ``dpir prepare --task T --dataset D`` reads (both splits, which it prepares):
    the inputs of the prepare job, each made by its own fetch job (rule fetch)."""
    scale = int(config["tasks"][task].get("scale", 4))
    names = [n for split in ("train", "test") for n in paper_fetch_names(config["datasets"][dataset], split, scale)]
    return list(dict.fromkeys(names))


def prepared_datasets(config: dict) -> list[tuple[str, str]]:
    """Every (task, dataset) prepared: those of the runs and of the needed networks' training."""
    pairs = [(t, d) for t, d, _, _ in all_runs(config)]
    pairs += [(task_of_network(config, n), train_dataset(config, n)) for n in needed_networks(config)
              if not is_official(config, n)]
    return list(dict.fromkeys(pairs))
