"""The dress rehearsal in CI: `snakemake --configfile config/paper.yaml config/rehearsal.yaml
config/rehearsal_ci.yaml` on 2 cores (the workflow profile profiles/default), from the miniature archives
and random-weight release checkpoints of dpir.rehearsal served on 127.0.0.1 as $DPIR_MIRROR.

One run, killed with SIGKILL while its first restore jobs are in flight, unlocked and re-run, must
- execute every rule of the paper DAG (the rule set of `snakemake -n` on config/paper.yaml alone);
- fill every table of the report, each n/a cell footnoted;
- do nothing when run again;
- give the same tables as the killed jobs re-done from scratch.
Then the paper engine's distributed path (torchrun, 2 gloo processes on the CPU) trains MIRNet-S from
the patch store that the run's prepare job wrote, and matches the run's single-process training.
"""
from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT

pytestmark = pytest.mark.slow

CONFIGS = [ROOT / "config" / n for n in ("paper.yaml", "rehearsal.yaml", "rehearsal_ci.yaml")]
OUT = Path("results") / "rehearsal_ci"
RULE = re.compile(r"^(?:local)?rule (\w+):$", re.M)
STARTED = re.compile(r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    jobid: (\d+)$", re.M)
FINISHED = re.compile(r"^Finished jobid: (\d+)", re.M)
# measurements of the machine, not results: wall-clock time per image (and its ratio), peak memory
NUMERIC_COLUMNS_SKIPPED = {"seconds", "seconds_ratio", "rss"}


def _env(root: Path, base: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update(DPIR_MIRROR=base, DPIR_REGISTRY_OVERRIDES=str(root / "mirror" / "registry_overrides.json"),
               no_proxy="127.0.0.1,localhost", DPIR_DATA=str(root / "dl"), DPIR_WEIGHTS=str(root / "weights"),
               TORCH_HOME=str(root / "torch"), HF_HUB_CACHE=str(root / "hf"),
               DPIR_REGISTRY_LOCK=str(root / "registry.lock.json"))
    return env


def _cmd(work: Path, *args: str, configs=CONFIGS) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(work), "--cores", "2",
            "--configfile", *map(str, configs), *args]


def _job_stats(text: str) -> set[str]:
    """The rule names of a dry run's "Job stats" table."""
    block = text.split("Job stats:", 1)[1].split("total", 1)[0]
    return {line.split()[0] for line in block.splitlines()[3:] if line.strip()}


def _tables(work: Path) -> dict[str, list[dict]]:
    """Every CSV table of the run (main tables and ablations) without the wall-clock column."""
    out = {}
    for p in sorted((work / OUT).glob("**/*.csv")):
        rows = list(csv.DictReader(open(p)))
        out[str(p.relative_to(work))] = [{k: v for k, v in r.items() if k not in NUMERIC_COLUMNS_SKIPPED} for r in rows]
    return out


@pytest.fixture(scope="module")
def rehearsed(tmp_path_factory):
    from dpir import rehearsal
    from dpir.config import load_config

    root = tmp_path_factory.mktemp("rehearsal")
    cfg = load_config([ROOT / "config" / "config.yaml", *CONFIGS])
    rehearsal.build_fixtures(root / "mirror", rehearsal.needed_names(cfg))
    base, stop = rehearsal.serve(root / "mirror")
    env = _env(root, base)
    work = root / "work"
    try:
        dry = subprocess.run(_cmd(root / "dry", "-n", configs=CONFIGS[:1]), capture_output=True, text=True,
                             env=env, timeout=300)
        assert dry.returncode == 0, dry.stderr[-3000:]
        paper_rules = _job_stats(dry.stdout)

        # first run: killed (SIGKILL to the whole process group, as a node failure would) while restores run
        log1 = root / "run1.log"
        t0 = time.monotonic()
        with open(log1, "w") as fh:
            proc = subprocess.Popen(_cmd(work), stdout=fh, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
            while proc.poll() is None and len(re.findall(r"^(?:local)?rule restore:$", log1.read_text(), re.M)) < 3:
                assert time.monotonic() - t0 < 900, "the rehearsal never reached its restore jobs"
                time.sleep(0.5)
            time.sleep(1.0)
            assert proc.poll() is None, "the rehearsal finished before it could be killed:\n" + log1.read_text()[-3000:]
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        text1 = log1.read_text()
        started = {int(j): rule for rule, j in STARTED.findall(text1)}
        in_flight = {j: r for j, r in started.items() if j not in {int(f) for f in FINISHED.findall(text1)}}
        killed_restores = [m.group(1) for m in re.finditer(
            r"^(?:local)?rule restore:\n(?:    .*\n)*?    output: (\S+)\n(?:    .*\n)*?    jobid: (\d+)$", text1, re.M)
            if int(m.group(2)) in in_flight]
        assert killed_restores, "no restore job was in flight at the kill"

        # a SIGKILLed Snakemake leaves its directory lock: `--unlock` (README "Paper scale") releases it
        unlock = subprocess.run(_cmd(work, "--unlock"), capture_output=True, text=True, env=env, timeout=300)
        assert unlock.returncode == 0, unlock.stderr[-3000:]
        # the re-run: finishes (profiles/default: rerun-incomplete) every job, the killed ones included
        r2 = subprocess.run(_cmd(work), capture_output=True, text=True, env=env, timeout=1200)
        assert r2.returncode == 0, (r2.stdout + r2.stderr)[-5000:]
        seconds = time.monotonic() - t0
        yield {"work": work, "root": root, "env": env, "cfg": cfg, "paper_rules": paper_rules,
               "executed": set(RULE.findall(text1)) | set(RULE.findall(r2.stdout + r2.stderr)),
               "killed_restores": killed_restores, "seconds": seconds}
    finally:
        stop()


def test_every_rule_of_the_paper_dag_ran(rehearsed):
    paper = rehearsed["paper_rules"]
    # the paper DAG's rule kinds, fetch jobs included (downloads are their own rules)
    assert {"fetch", "prepare", "import_official", "train", "restore", "score", "tflops", "paper_table9",
            "ablations", "protocols", "gaussian", "report", "export_network", "all"} <= paper
    missing = paper - rehearsed["executed"]
    assert not missing, f"rules of the paper DAG the rehearsal never ran: {sorted(missing)}"


def test_every_table_is_filled_and_each_na_is_footnoted(rehearsed):
    work = rehearsed["work"]
    report = (work / OUT / "report.md").read_text()
    for title in ("Table 3: 4x super-resolution", "Table 2: dynamic-scene deblurring", "Table 1: burst JDD-SR",
                  "## Provenance"):
        assert title in report, title
    footnotes = set(re.findall(r"^\[\^([\w-]+)\]:", report, re.M))
    for line in report.splitlines():
        if not line.startswith("|") or set(line) <= set("|:- "):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert all(cells), f"an empty cell in the report: {line}"
        for c in cells:
            if c.startswith("n/a"):
                marks = re.findall(r"\[\^([\w-]+)\]", c)
                assert marks and set(marks) <= footnotes, f"an n/a without its footnote: {line}"
    tables = _tables(work)
    main = {t: rows for t, rows in tables.items()
            if Path(t).parent.name == "tables" and not t.endswith(("_per_image.csv", "_cost.csv"))}
    cfg = rehearsed["cfg"]
    assert {Path(t).name for t in main} == {f"{task}_{ds}.csv" for task in cfg["enabled_tasks"]
                                            for ds in cfg["tasks"][task]["test_datasets"]}
    assert {"sr", "deblur", "burst"} <= set(cfg["enabled_tasks"])
    for t, rows in main.items():
        task = Path(t).stem.split("_")[0]
        measured = [m for m, mc in cfg["tasks"][task]["methods"].items() if mc["kind"] != "published"]
        assert sorted(r["method"] for r in rows if r.get("published") != "True") == sorted(measured), t
        metrics = cfg["tasks"][task]["metrics"]
        for r in rows:
            if r.get("published") == "True":
                continue
            for metric in metrics:        # every metric computed: the metric weights were fetch jobs too
                assert r[metric] not in ("", "nan"), (t, r["method"], metric)
    # the LPIPS and TOPIQ weights came from the mirror, through fetch jobs the score jobs waited for
    assert (work / OUT / "fetched" / "lpips_alexnet.json").is_file()
    assert (work / OUT / "fetched" / "topiq_nr_koniq.json").is_file()


def test_a_second_run_does_nothing(rehearsed):
    r = subprocess.run(_cmd(rehearsed["work"]), capture_output=True, text=True, env=rehearsed["env"], timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Nothing to be done" in r.stdout + r.stderr and not RULE.findall(r.stdout + r.stderr)


def test_the_killed_jobs_redone_from_scratch_give_the_same_tables(rehearsed):
    work, env = rehearsed["work"], rehearsed["env"]
    before = _tables(work)
    # from scratch: the killed runs' folders removed, then `--forcerun` on their records, which re-runs their
    # restores and everything downstream (Snakemake does not remake a deleted intermediate file whose
    # consumers are up to date, README "Dress rehearsal")
    records = []
    for run_json in rehearsed["killed_restores"]:
        record = work / run_json.rstrip(",")
        shutil.rmtree(record.parent)
        records.append(str(record.relative_to(work)))
    r = subprocess.run(_cmd(work, "--forcerun", *records), capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    assert len(re.findall(r"^(?:local)?rule restore:$", r.stdout + r.stderr, re.M)) == len(records)
    assert all((work / rec).is_file() for rec in records)
    assert _tables(work) == before


def test_distributed_training_from_the_patch_store_matches_the_run(rehearsed):
    """torchrun with 2 gloo processes (the paper engine's DDP path, on the CPU) trains MIRNet-S from the
    patch store of the run's prepared DIV2K train split; the weights equal the run's 1-process training
    (the DDP test's tolerance: the all-reduce sums the half-batch gradients in another order)."""
    import torch

    from dpir import paths
    from dpir.checkpoint import load_network

    work, env, cfg = rehearsed["work"], rehearsed["env"], rehearsed["cfg"]
    store = work / "data" / "prepared" / "rehearsal_ci" / "sr" / "div2k" / "train.store"
    assert (store / "index.json").is_file() and (store / "pixels.bin").is_file(), \
        "the run wrote no patch store for the DIV2K training split"
    stamp = (store / "index.json").stat().st_mtime_ns
    ddp_out = rehearsed["root"] / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "dpir", "train", "-q", *[a for c in CONFIGS for a in ("-c", str(c))],
           "--set", f"out={ddp_out}", "--set", f"data_dir={work / 'data' / 'prepared' / 'rehearsal_ci'}",
           "--network", "mirnet_s"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    one = load_network(work / OUT / "networks" / "mirnet_s").state_dict()
    two = load_network(paths.network_file({**cfg, "out": str(ddp_out)}, "mirnet_s").parent).state_dict()
    assert one.keys() == two.keys()
    for k in one:
        torch.testing.assert_close(two[k], one[k], atol=1e-5, rtol=0, msg=k)
    assert (store / "index.json").stat().st_mtime_ns == stamp     # read, not rebuilt
