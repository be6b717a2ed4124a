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


def test_enabled_methods_select_rows_everywhere_and_refuse_bad_names():
    """tasks.<task>.enabled_methods keeps only the named rows (the DAG, restore and the tables read one
    selection); a typo, or an enabled ablation table reading a row switched off, is one line naming the key."""
    from dpir.workflow_facts import all_runs

    sel = {"tasks": {"sr": {"enabled_methods": ["swinir", "bicubic"]}}, "run_ablations": False}
    cfg = load_config([CONFIG / "config.yaml"], sel)
    assert list(cfg["tasks"]["sr"]["methods"]) == ["bicubic", "swinir"]         # the methods' own order
    assert {m for t, _, m, _ in all_runs(cfg) if t == "sr"} == {"bicubic", "swinir"}
    assert load_config([CONFIG / "config.yaml"], {})["tasks"]["sr"]["methods"].keys() > {"bicubic", "swinir"}
    from dpir.config import validate_config
    assert validate_config(dict(cfg))["tasks"]["sr"]["methods"].keys() == {"bicubic", "swinir"}   # idempotent
    with pytest.raises(DpirError, match=r"^config key 'tasks.sr.enabled_methods\[1\]': 'swinirr' is not a method "
                                        r"of tasks.sr.methods. Did you mean 'swinir'\?$"):
        load_config([CONFIG / "config.yaml"], {"tasks": {"sr": {"enabled_methods": ["bicubic", "swinirr"]}}})
    with pytest.raises(DpirError, match=r"^config key 'ablations.tables.t10_ddim.rows': row 'dpir_jump' is switched "
                                        r"off by tasks.sr.enabled_methods; enable it there, or leave the table out "
                                        r"of ablations.enabled_tables$"):
        load_config([CONFIG / "config.yaml"], {"tasks": {"sr": {"enabled_methods": ["bicubic"]}},
                                              "ablations": {"enabled_tables": ["t10_ddim"]}})


def test_metric_weights_are_fetch_jobs_only_where_the_config_asks():
    from dpir.workflow_facts import metric_fetches

    paper = load_config([CONFIG / "config.yaml", CONFIG / "paper.yaml"])
    assert metric_fetches(paper, "sr") == ["lpips_alexnet", "topiq_nr_koniq", "timm_resnet50"]
    default = load_config([CONFIG / "config.yaml"])
    assert default["fetch_metric_weights"] is False and metric_fetches(default, "sr") == []


def test_a_selected_config_round_trips_through_its_resolved_yaml(tmp_path):
    """The workflow writes its (selected) config to resolved.yaml and every job re-validates it: the rows
    switched off are remembered there, so tables that read them (switched off too) still validate."""
    import yaml

    sel = {"tasks": {"sr": {"enabled_methods": ["bicubic", "swinir", "dpir_jump", "dpir_jump_ddim"]}},
           "ablations": {"enabled_tables": ["t10_ddim"]}}
    cfg = load_config([CONFIG / "config.yaml"], sel)
    assert "dpir_full" in cfg["_switched_off"]["sr"] and "t8_acceleration" in cfg["ablations"]["tables"]
    resolved = tmp_path / "resolved.yaml"
    resolved.write_text(yaml.safe_dump({k: v for k, v in cfg.items() if k != "_sources"}, sort_keys=False))
    again = load_config([resolved])
    assert again["tasks"] == cfg["tasks"] and again["_switched_off"] == cfg["_switched_off"]
    assert "_switched_off" not in load_config([CONFIG / "config.yaml"])
