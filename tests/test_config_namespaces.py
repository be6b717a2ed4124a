"""Each config writes under its own folders (``results/<name>/``, ``data/prepared/<name>/``), and a config
pointed at another config's folder is refused: running one config never touches another's files."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from dpir.config import check_out_owner, load_config, validate_config
from dpir.errors import DpirError
from dpir.paths import resolved_config
from helpers import ROOT

CONFIG = ROOT / "config"


@pytest.mark.parametrize("layers, name", [
    (["config.yaml"], "default"),
    (["config.yaml", "paper.yaml"], "paper"),
    (["config.yaml", "test.yaml"], "test"),
])
def test_each_shipped_config_has_its_own_folders(layers, name):
    cfg = load_config([CONFIG / f for f in layers])
    assert cfg["name"] == name
    assert (cfg["out"], cfg["data_dir"]) == (f"results/{name}", f"data/prepared/{name}")


def test_name_placeholder_and_explicit_folders(tmp_path):
    cfg = load_config([CONFIG / "config.yaml"], {"name": "mine", "out": str(tmp_path / "{name}" / "o")})
    assert cfg["out"] == str(tmp_path / "mine" / "o") and cfg["data_dir"] == "data/prepared/mine"
    assert validate_config(cfg)["out"] == cfg["out"]          # validating twice changes nothing
    with pytest.raises(DpirError, match="config key 'name'"):
        load_config([CONFIG / "config.yaml"], {"name": "../up"})


def test_a_folder_of_another_config_is_refused(tmp_path):
    out = tmp_path / "results" / "default"
    default = load_config([CONFIG / "config.yaml"], {"out": str(out)})
    check_out_owner(default)                                   # a fresh folder passes
    resolved_config(default).parent.mkdir(parents=True)
    resolved_config(default).write_text(yaml.safe_dump({"name": "default"}))
    check_out_owner(default)                                   # its own folder passes
    paper = load_config([CONFIG / "config.yaml", CONFIG / "paper.yaml"], {"out": str(out)})
    with pytest.raises(DpirError) as e:
        check_out_owner(paper)
    msg = str(e.value)
    assert "\n" not in msg and f"{out} holds the outputs of config 'default'" in msg and "('paper')" in msg


def _snakemake(workdir, *configs, extra=()):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir), "-n", "--cores", "1",
           "-q", "rules", "--configfile", *[str(c) for c in configs], *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_paper_dry_run_beside_a_finished_default_run(tmp_path):
    """After a default run, a paper dry run plans its own folders (so it can never answer "Nothing to be
    done" with the default's report) and leaves the default's files alone; pointing paper.yaml at the
    default's folder is refused before any job."""
    default_out = tmp_path / "results" / "default"
    marker = default_out / ".config" / "resolved.yaml"
    marker.parent.mkdir(parents=True)
    marker.write_text(yaml.safe_dump({"name": "default"}))
    (default_out / "report.md").write_text("the default's report")
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "results").rglob("*"))
    r = _snakemake(tmp_path, CONFIG / "paper.yaml", extra=("--", "results/paper/report.md"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "report" in r.stdout and "Nothing to be done" not in r.stdout + r.stderr
    # nothing under results/ was written (Snakemake keeps its own metadata in .snakemake/)
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "results").rglob("*")) == before
    (tmp_path / "into_default.yaml").write_text(yaml.safe_dump({"out": "results/default"}))
    r = _snakemake(tmp_path, CONFIG / "paper.yaml", tmp_path / "into_default.yaml")
    assert r.returncode != 0
    assert "results/default holds the outputs of config 'default', not of this config ('paper')" in r.stdout + r.stderr


def test_enabled_ablation_tables():
    from dpir.workflow_facts import ablation_tables

    cfg = load_config([CONFIG / "config.yaml", CONFIG / "test.yaml"])
    assert sorted(ablation_tables(cfg)) == sorted(cfg["ablations"]["enabled_tables"])
    assert len(ablation_tables(load_config([CONFIG / "config.yaml"]))) == len(cfg["ablations"]["tables"])
    with pytest.raises(DpirError, match=r"'ablations.enabled_tables\[0\]': 't6_tauu' is not a table of "
                                        r"ablations.tables. Did you mean 't6_tau'\?"):
        load_config([CONFIG / "config.yaml"], {"ablations": {"enabled_tables": ["t6_tauu"]}})
