"""dpir.workflow_facts: the one place that says which task and dataset train a network, what its training
loads, which networks and seeds a method needs and which runs the workflow makes.  Checked on the shipped
configs, against the code's own declarations, and against the Snakemake dry run's job list."""
import re
import subprocess
import sys
from collections import Counter

import pytest

from dpir import paths as P
from dpir import workflow_facts as F
from dpir.report.paper_cost import paper_cost_path
from dpir.config import ablation_dataset, ablation_tables, all_methods, enabled_tasks, load_config, method_config
from helpers import ROOT

CONFIGS = {"test": ["config/config.yaml", "config/test.yaml"], "paper": ["config/config.yaml", "config/paper.yaml"],
           "default": ["config/config.yaml"]}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def cfg(request):
    return load_config([ROOT / p for p in CONFIGS[request.param]])


@pytest.fixture(scope="module")
def test_cfg():
    return load_config([ROOT / p for p in CONFIGS["test"]])


def test_network_keys_match_the_code_declarations():
    """The torch-free key lists equal what the registry entries mark as network references."""
    from dpir.keys import network_keys
    from dpir.methods import METHODS
    from dpir.train import TRAINERS

    trainers = {k for name in TRAINERS for k in network_keys(TRAINERS.meta(name)["keys"])}
    methods = {k for name in METHODS for k in network_keys(METHODS.meta(name)["keys"])}
    assert trainers == set(F.TRAIN_NETWORK_KEYS)
    assert methods == set(F.NETWORK_KEYS)


def test_selectors_are_defined_once():
    """dpir.config's selectors of what is switched on are dpir.workflow_facts' (one definition)."""
    import dpir.config as C

    for name in ("enabled_tasks", "ablation_tables", "ablation_methods", "all_methods", "ablation_dataset"):
        assert getattr(C, name) is getattr(F, name), name
        assert getattr(F, name).__module__ == "dpir.workflow_facts"
    assert not any(hasattr(F, f"_{n}") for n in ("enabled_tasks", "ablation_tables", "all_methods", "ablation_dataset"))


def test_selectors_on_a_small_config():
    from dpir.errors import UnknownNameError

    c = {"tasks": {"sr": {"methods": {"a": {}, "b": {}}, "test_datasets": ["d1", "d2"]},
                   "deblur": {"methods": {"c": {}}, "test_datasets": ["d3"]}},
         "ablations": {"methods": {"sr": {"z": {}}},
                       "tables": {"t1": {"task": "sr"}, "t2": {"task": "deblur", "dataset": "d3"},
                                  "t3": {"task": "sr", "dataset": "d2"}}}}
    assert enabled_tasks(c) == ["sr", "deblur"]
    assert list(ablation_tables(c)) == ["t1", "t2", "t3"]
    assert [ablation_dataset(c, t) for t in ablation_tables(c).values()] == ["d1", "d3", "d2"]
    assert list(all_methods(c, "sr")) == ["a", "b", "z"] and list(all_methods(c, "deblur")) == ["c"]
    assert list(ablation_tables({**c, "enabled_tasks": ["deblur"]})) == ["t2"]
    assert ablation_tables({**c, "run_ablations": False}) == {}
    with pytest.raises(UnknownNameError, match="unknown task 'rs'. Did you mean 'sr'"):
        method_config(c, "rs", "a")
    assert method_config(c, "sr", "z") is c["ablations"]["methods"]["sr"]["z"]


def test_every_network_has_a_task_a_training_dataset_and_known_deps(cfg):
    for n, net in cfg["networks"].items():
        task = F.task_of_network(cfg, n)
        assert task == (net.get("task") or next(iter(cfg["tasks"])))
        if net.get("train"):
            assert F.train_dataset(cfg, n) in cfg["datasets"]
        for d in F.training_deps(cfg, n):
            assert d in cfg["networks"] and d != n
        chain = F.training_chain(cfg, [n])
        assert chain[-1] == n and len(set(chain)) == len(chain)
        for i, x in enumerate(chain):   # training order: what a network loads comes before it
            assert set(F.training_deps(cfg, x)) <= set(chain[:i])


def test_training_facts_on_the_test_config(test_cfg):
    c = test_cfg
    assert F.training_deps(c, "fusion_sr") == ["swinir_sr", "mirnet_s"]
    assert F.training_deps(c, "srdiff") == ["srdiff_rrdb"]
    assert F.training_deps(c, "diffir_s2") == ["diffir_s1"]
    assert F.training_deps(c, "diffir_s2_deblur") == ["diffir_s1_deblur"]
    # a trainer named like a network is not a network reference (the old copies made indi_deblur wait
    # for the network `indi` because its trainer is `indi`)
    assert F.training_deps(c, "indi_deblur") == [] and F.training_deps(c, "diffir_s1_deblur") == []
    assert F.training_chain(c, ["diffir_s2", "fusion_sr"]) == ["diffir_s1", "diffir_s2", "swinir_sr", "mirnet_s",
                                                               "fusion_sr"]
    assert F.training_chain(c, ["fusion_sr"], skip={"mirnet_s"}) == ["swinir_sr", "fusion_sr"]
    for n in ("swinir_sr", "fusion_sr", "srdiff", "indi"):
        assert (F.task_of_network(c, n), F.train_dataset(c, n)) == ("sr", "bundled")
    assert F.task_of_network(c, "fusion_deblur") == "deblur" and F.task_of_network(c, "fusion_burst") == "burst"


def test_official_networks_load_nothing_for_training():
    c = load_config([ROOT / p for p in CONFIGS["paper"]])
    official = [n for n in c["networks"] if F.is_official(c, n)]
    assert official and all(F.training_deps(c, n) == [] for n in official)


def test_methods_networks_and_seeds(cfg):
    for t in cfg["tasks"]:
        tcfg = cfg["tasks"][t]
        for mcfg in all_methods(cfg, t).values():
            assert set(F.networks_of(mcfg)) <= set(cfg["networks"])
            seeds = F.seeds_of(mcfg, tcfg)
            if F.is_published(mcfg):
                assert seeds == [] and F.networks_of(mcfg) == []
            elif mcfg["kind"] in F.DETERMINISTIC_KINDS:
                assert len(seeds) == 1


def test_run_list(test_cfg, cfg):
    c = test_cfg
    runs = F.runs(c)
    assert ("sr", "bundled", "bicubic", 0) in runs and ("sr", "bundled", "bicubic", 1) not in runs
    # config/test.yaml runs one seed; the default config's stochastic rows run on both of its seeds
    assert ("sr", "bundled", "indi", 0) in runs and ("sr", "bundled", "indi", 1) not in runs
    assert ("sr", "bundled", "indi", 1) in F.runs({**c, "tasks": {**c["tasks"], "sr": {**c["tasks"]["sr"], "seeds": [0, 1]}}})
    assert len(runs) == len(set(runs))
    assert all(m not in F.all_methods(c, t) or not F.is_published(F.method_of(c, t, m)) for t, _, m, _ in runs)
    # on every config: the runs are the enabled tasks' datasets x methods x seeds, ablations add theirs
    for r in F.runs(cfg):
        t, d, m, s = r
        assert t in enabled_tasks(cfg) and d in cfg["tasks"][t]["test_datasets"]
        assert s in F.seeds_of(cfg["tasks"][t]["methods"][m], cfg["tasks"][t])
    assert set(F.all_runs(cfg)) == set(F.runs(cfg)) | set(F.ablation_runs(cfg))
    assert set(F.needed_networks(cfg)) >= {n for t, _, m, _ in F.all_runs(cfg)
                                           for n in F.networks_of(F.method_of(cfg, t, m))}


def _predicted_jobs(c) -> Counter:
    """(rule, first output) of every job a fresh `snakemake all` runs, from the facts."""
    jobs = Counter()
    for t, d in F.prepared_datasets(c):
        jobs[("prepare", str(P.manifest(c, t, d)))] += 1
    for n in F.needed_networks(c):
        jobs[("import_official" if F.is_official(c, n) else "train", str(P.network_file(c, n)))] += 1
    for r in F.all_runs(c):
        n = F.shards_of(c, r[0], r[2])
        if n > 1:
            jobs[("merge_shards", str(P.run_record(c, *r)))] += 1
            for k in range(n):
                jobs[("restore_shard", str(P.shard_record(c, *r, k, n)))] += 1
        else:
            jobs[("restore", str(P.run_record(c, *r)))] += 1
        jobs[("score", str(P.scores(c, *r)))] += 1
    for t in F.tflops_tasks(c):
        jobs[("tflops", str(P.tflops(c, t)))] += 1
    for f in F.exported_checkpoints(c):            # trained networks written in a foreign layout
        jobs[("export_network", f)] += 1
    jobs[("report", str(P.report(c)))] += 1
    jobs[("protocols", str(P.protocols(c)))] += 1
    if c.get("gaussian"):                          # the exact Gaussian world (dpir.report.gaussian)
        jobs[("gaussian", str(P.gaussian_dir(c) / "gaussian.json"))] += 1
    jobs[("paper_table9", str(paper_cost_path(c)))] += 1     # Table 9 at paper size, counted for the report
    if ablation_tables(c):
        jobs[("ablations", str(P.ablations(c)))] += 1
    jobs[("all", "")] += 1
    return jobs


def _dry_run_jobs(stdout: str) -> Counter:
    jobs, rule = Counter(), None
    for line in stdout.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line)
        if m:
            if rule is not None:
                jobs[(rule, "")] += 1
            rule = m.group(1)
        elif rule is not None and line.startswith("    output: "):
            jobs[(rule, line[len("    output: "):].split(", ")[0])] += 1
            rule = None
        elif rule is not None and line.startswith("    jobid: "):   # a job without output (rule all)
            jobs[(rule, "")] += 1
            rule = None
    return jobs


def test_dry_run_jobs_are_what_the_facts_predict_and_it_writes_nothing(tmp_path, test_cfg):
    r = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
                        "--configfile", str(ROOT / "config" / "test.yaml"), "--cores", "2", "-n"],
                       check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert _dry_run_jobs(r.stdout) == _predicted_jobs(test_cfg)
    # parsing the Snakefile and a dry run create nothing but Snakemake's own .snakemake/
    assert sorted(p.name for p in tmp_path.iterdir()) == [".snakemake"]


def test_snakefile_parses_and_dry_runs_without_torch(tmp_path):
    """`snakemake -n` with an `import torch` that fails (tests/torch_block.py): parsing the Snakefile,
    validating the config (names, declared keys) and building the DAG never import torch."""
    from torch_block import pending_only, run_without_torch, torch_chain

    args = ["-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path / "w"),
            "--configfile", str(ROOT / "config" / "test.yaml"), "--cores", "1", "-n", "-q"]
    r = run_without_torch(args, tmp_path)
    chain = torch_chain(r.stdout + r.stderr)
    if chain and pending_only(chain):
        # PENDING (issue 12, other helpers): dpir.tasks / dpir.metrics still import torch; the chain
        # shows that everything this test owns (registries, declared keys, selectors) was torch-free
        pytest.xfail(f"torch still imported by a module being made torch-free separately: {chain}")
    assert chain is None, f"torch imported at parse time via: {chain}"
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]


def test_a_method_key_typo_fails_the_dry_run_in_one_line_without_torch(tmp_path):
    """The declared keys are data: a typo in a method key fails `snakemake -n` with its one line even
    when torch cannot be imported (the key checks run before anything that may import torch)."""
    from torch_block import run_without_torch, torch_chain

    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks:\n  sr:\n    methods:\n      indi: {stepz: 3}\n")
    args = ["-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path / "w"),
            "--configfile", str(ROOT / "config" / "test.yaml"), str(bad), "--cores", "1", "-n", "-q"]
    r = run_without_torch(args, tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and torch_chain(out) is None, out[-3000:]
    assert ("invalid config: config key 'tasks.sr.methods.indi.stepz' is not a setting of method kind 'indi'. "
            "Did you mean 'steps'?") in out, out[-3000:]


def test_rule_files_import_no_torch():
    """What the Snakefile imports at parse time is torch-free: the rule files' own import lines, run in a
    fresh interpreter (validate_config's run: test_snakefile_parses_and_dry_runs_without_torch)."""
    files = [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]
    lines = [ln for f in files for ln in f.read_text().splitlines() if re.match(r"^(import|from) \S+", ln)]
    assert any("dpir" in ln for ln in lines)
    code = "\n".join(lines + ["import sys", "assert 'torch' not in sys.modules, 'torch imported'"])
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]


def test_a_network_only_an_exported_checkpoint_reads_is_needed_and_imported():
    """The CI rehearsal cut keeps `rrdb_checkpoint` (rrdb_sr exported in the BasicSR layout) but not the
    `rrdb` row: rrdb_sr must still be needed, and as an official network it is imported, never trained
    (before the fix the DAG planned a paper-size training job for it)."""
    cfg = load_config([ROOT / "config" / n for n in ("config.yaml", "paper.yaml", "rehearsal.yaml", "rehearsal_ci.yaml")])
    assert "rrdb" not in cfg["tasks"]["sr"]["methods"] and "rrdb_checkpoint" in cfg["tasks"]["sr"]["methods"]
    assert any(f.endswith("/exports/rrdb_sr.basicsr.pth") for f in F.exported_checkpoints(cfg))
    assert "rrdb_sr" in F.needed_networks(cfg) and F.is_official(cfg, "rrdb_sr")
