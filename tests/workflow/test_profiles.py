"""The execution profiles parse and give each job the intended resources (dry runs, no cluster)."""
import re
import subprocess
import sys

import pytest
import yaml
from helpers import ROOT


def dry_run(tmp_path, profile, *extra):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "-n",
           "--workflow-profile", str(ROOT / "profiles" / profile), "--configfile", str(ROOT / "config" / "test.yaml"),
           *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    return r.stdout + r.stderr


def job_resources(plan: str) -> dict[str, list[dict[str, str]]]:
    """rule name -> the parsed `resources:` line of each of its jobs in a dry-run printout."""
    out: dict[str, list[dict[str, str]]] = {}
    rule = None
    for line in plan.splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):$", line):
            rule = m.group(1)
        elif rule and (m := re.match(r"^\s+resources: (.*)$", line)):
            out.setdefault(rule, []).append(dict(kv.split("=", 1) for kv in m.group(1).split(", ")))
            rule = None
    return out


@pytest.mark.parametrize("profile", ["gpu", "slurm"])
def test_profiles_are_valid_yaml_with_known_keys(profile):
    cfg = yaml.safe_load((ROOT / "profiles" / profile / "config.yaml").read_text())
    if profile == "gpu":
        assert cfg["resources"] == {"gpu": 1} and cfg["default-resources"]["gpu"] == 0
    else:
        assert cfg["executor"] == "slurm"
        assert set(cfg["set-resources"]) == {"train", "restore", "restore_shard"}
        assert all("gres" not in r for r in cfg["set-resources"].values())   # gpu and gres are exclusive


def test_gpu_profile_dry_run(tmp_path):
    res = job_resources(dry_run(tmp_path, "gpu"))
    assert {r["gpu"] for r in res["train"]} == {"1"} and {r["gpu"] for r in res["restore"]} == {"1"}
    for rule in ("prepare", "score", "report"):
        assert {r["gpu"] for r in res[rule]} == {"0"}, rule


def test_slurm_profile_dry_run(tmp_path):
    (tmp_path / "sh.yaml").write_text("tasks:\n  sr:\n    methods:\n      dpir_jump_ddim: {shards: 2}\n")
    res = job_resources(dry_run(tmp_path, "slurm", str(tmp_path / "sh.yaml")))
    for rule, runtime in (("train", "4320"), ("restore", "1440"), ("restore_shard", "720")):
        for r in res[rule]:
            assert (r["gpu"], r["slurm_partition"], r["runtime"]) == ("1", "gpu", runtime), (rule, r)
    assert {r["mem_mb"] for r in res["train"]} == {"64000"}
    assert len(res["restore_shard"]) == 1 * 2          # 1 seed (config/test.yaml) x 2 shards of dpir_jump_ddim
    for rule in ("prepare", "score", "report", "merge_shards"):
        for r in res[rule]:
            assert (r["gpu"], r["slurm_partition"], r["runtime"]) == ("0", "cpu", "60"), (rule, r)
