"""Where the main job's time went: sum the Snakemake benchmark files (results/benchmarks/) by task and stage.

    python scripts/job_times.py [--out results] [--config config/config.yaml ...]

Each train / restore / tflops job writes `<out>/benchmarks/<rule>/<name>.tsv` (wall seconds and peak
RSS of that job).  Networks are attributed to their config `task`; restore jobs carry the task in their
name; ablation-only methods (`ablations.methods`) are counted as "ablations".  Job seconds are per
job: with two jobs side by side the wall time of the run is about half their sum.
"""
from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def read_tsv(path: Path) -> tuple[float, float]:
    rows = list(csv.DictReader(path.open(), delimiter="\t"))
    return float(rows[-1]["s"]), float(rows[-1]["max_rss"])


def summarise(out: Path, config: dict) -> dict[tuple[str, str], list[float]]:
    from dpir import paths
    from dpir import workflow_facts as F
    from dpir.config import ablation_methods

    abl_nets = {n for task in config["tasks"] for m in ablation_methods(config, task).values() for n in F.networks_of(m)}
    main_nets = {n for t in config["tasks"].values() for m in t["methods"].values() for n in F.networks_of(m)}
    # networks only the ablations use (and what their training loads)
    only_abl = set(F.training_chain(config, sorted(abl_nets))) - set(F.training_chain(config, sorted(main_nets)))
    # restore benchmark names (dpir.paths.RUN_NAME) of the config's runs -> (task, method)
    run_names = {paths.RUN_NAME.format(task=t, dataset=d, method=m, seed=s): (t, m) for t, d, m, s in F.all_runs(config)}
    totals: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    for rule_dir in sorted((out / "benchmarks").glob("*")):
        for f in sorted(rule_dir.glob("*.tsv")):
            secs, rss = read_tsv(f)
            name = f.stem
            if rule_dir.name == "train":
                group = ("ablations" if name in only_abl else F.task_of_network(config, name)) \
                    if name in config["networks"] else "?"
            elif rule_dir.name == "restore":
                task, method = run_names.get(name) or _parse_run_name(name)
                group = "ablations" if task in config["tasks"] and method in ablation_methods(config, task) else task
            else:
                group = name
            t = totals[(group, rule_dir.name)]
            t[0] += secs
            t[1] = max(t[1], rss)
            t[2] += 1
    return totals


def _parse_run_name(name: str) -> tuple[str, str]:
    """(task, method) of a restore job name not among the config's runs (dataset names without ``_``)."""
    task, _, rest = name.partition("_")
    return task, (rest.split("_", 1)[1] if "_" in rest else rest).rsplit("_seed", 1)[0]


def main(argv=None) -> int:
    from dpir.config import load_config

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results")
    p.add_argument("--config", action="append")
    a = p.parse_args(argv)
    cfg = load_config(a.config or [ROOT / "config" / "config.yaml"])
    totals = summarise(Path(a.out), cfg)
    print("| group | stage | jobs | job seconds | largest job RSS (MiB) |\n|---|---|---|---|---|")
    by_group: dict[str, float] = defaultdict(float)
    for (group, stage), (secs, rss, n) in sorted(totals.items()):
        print(f"| {group} | {stage} | {n} | {secs:.0f} | {rss:.0f} |")
        by_group[group] += secs
    print("\n| group | job seconds |\n|---|---|")
    for g, s in sorted(by_group.items()):
        print(f"| {g} | {s:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
