"""Reliability catalogue: the config, the command line, the workflow's shell lines and the install.

Each test's docstring is one catalogue line: the attempt, and the outcome the harness promises.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dpir.cli import main
from helpers import ROOT

DEFAULT = ROOT / "config" / "config.yaml"


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(code, err, *needles):
    assert code == 2, err
    assert err.startswith("dpir: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, (n, err)


def write(tmp_path, name, data) -> str:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return str(p)


# --- security -----------------------------------------------------------------------------------

@pytest.mark.parametrize("section,name", [
    ("method", "bicubic;touch${IFS}X;"),
    ("method", "a b"),
    ("dataset", "$(id)"),
    ("network", "../escape"),
    ("task", "-rf"),
])
def test_shell_syntax_in_a_name_is_refused_by_validate(tmp_path, capsys, section, name):
    """Attempt: a task, dataset, method or network name holding shell syntax or a path (`bicubic;touch${IFS}X;`).
    Expected: `dpir validate` refuses it in one line naming the key; nothing runs."""
    base = yaml.safe_load(DEFAULT.read_text())
    over: dict = {}
    if section == "method":
        over = {"tasks": {"sr": {"methods": {name: {"kind": "bicubic"}}}}}
        where = "tasks.sr.methods"
    elif section == "dataset":
        over = {"datasets": {name: base["datasets"]["bundled"]}}
        where = "datasets"
    elif section == "network":
        over = {"networks": {name: base["networks"]["swinir_sr"]}}
        where = "networks"
    else:
        over = {"tasks": {name: base["tasks"]["sr"]}}
        where = "tasks"
    code, _, err = run_cli(capsys, "validate", "--config", write(tmp_path, "bad.yaml", over))
    one_line_error(code, err, f"config key '{where}' has the name {name!r}", "letters, digits")


def test_every_wildcard_in_every_shell_line_is_quoted():
    """Attempt: read every rule's shell line.  Expected: every {wildcards.x} and {log} is written with
    Snakemake's `:q` quoting, and the interpreter and config paths are shell-quoted in common.smk."""
    rules = sorted((ROOT / "workflow" / "rules").glob("*.smk"))
    assert rules
    for f in rules:
        text = f.read_text()
        unquoted = re.findall(r"\{(wildcards\.\w+|log|input|output)\}", text)
        assert not unquoted, (f.name, unquoted)
    common = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    assert 'DPIR = f"{shlex.quote(PY)} -m dpir"' in common and "shlex.quote(str(RESOLVED))" in common


@pytest.mark.slow
def test_injection_through_snakemake_runs_nothing(tmp_path):
    """Attempt: `snakemake` with a config whose method name is `bicubic;touch${IFS}X;`, and a target path
    that smuggles shell syntax into a wildcard.  Expected: the workflow stops at config validation (or
    finds no rule for the target); the file X is never created."""
    bad = write(tmp_path, "bad.yaml", {"tasks": {"sr": {"methods": {"bicubic;touch${IFS}X;": {"kind": "bicubic"}}}}})
    base = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
            "--cores", "1", "--configfile", str(ROOT / "config" / "test.yaml")]
    r = subprocess.run([*base, bad], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode != 0 and "has the name" in (r.stdout + r.stderr)
    target = "results/test/restored/sr/bundled/bicubic;touch${IFS}X;/seed0/run.json"
    r = subprocess.run([*base, target], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode != 0
    assert not (tmp_path / "X").exists() and not (ROOT / "X").exists()


# --- silent wrong experiments -------------------------------------------------------------------

@pytest.mark.parametrize("override,where,hint", [
    ({"tasks": {"sr": {"methods": {"dpir_jump": {"taus": 5}}}}}, "tasks.sr.methods.dpir_jump.taus", "'tau'"),
    ({"tasks": {"sr": {"methods": {"dpir_jump_ddim": {"ddim_strid": 2}}}}}, "tasks.sr.methods.dpir_jump_ddim.ddim_strid",
     "'ddim_stride'"),
    ({"networks": {"swinir_sr": {"train": {"stepz": 1}}}}, "networks.swinir_sr.train.stepz", "'steps'"),
    ({"networks": {"fusion_sr": {"train": {"tua": 3}}}}, "networks.fusion_sr.train.tua", "'tau'"),
    ({"tasks": {"sr": {"methods": {"indi": {"step": 3}}}}}, "tasks.sr.methods.indi.step", "'steps'"),
])
def test_misspelled_key_in_a_method_or_train_section_fails_with_a_suggestion(tmp_path, capsys, override, where, hint):
    """Attempt: a misspelled key inside a method entry or a `train:` section (`taus: 5`, `ddim_strid: 2`,
    `stepz: 1`).  Expected: validate fails before any job, naming the key path and suggesting the key."""
    code, _, err = run_cli(capsys, "validate", "--config", write(tmp_path, "typo.yaml", override))
    one_line_error(code, err, f"'{where}'", f"Did you mean {hint}?")


def test_wrong_type_in_a_declared_key_names_it(tmp_path, capsys):
    """Attempt: `tau: five` in a DP-IR method.  Expected: one line naming the key and the expected type."""
    code, _, err = run_cli(capsys, "validate", "--config",
                           write(tmp_path, "t.yaml", {"tasks": {"sr": {"methods": {"dpir_jump": {"tau": "five"}}}}}))
    one_line_error(code, err, "tasks.sr.methods.dpir_jump.tau", "integer")


@pytest.mark.parametrize("override,needles", [
    ({"tasks": {"sr": {"methods": {"x": {"kind": "dpri"}}}}}, ["'tasks.sr.methods.x.kind'", "unknown method kind 'dpri'", "'dpir'"]),
    ({"networks": {"swinir_sr": {"arch": "swinri"}}}, ["'networks.swinir_sr.arch'", "unknown architecture", "'swinir'"]),
    ({"tasks": {"sr": {"metrics": ["psnr_y", "ssimy"]}}}, ["'tasks.sr.metrics[1]'", "unknown metric preset", "'ssim_y'"]),
    ({"tasks": {"sr": {"degradation": {"name": "bicubc"}}}}, ["'tasks.sr.degradation.name'", "'bicubic'"]),
    ({"tasks": {"deblur": {"degradation": {"kernel_sise": 9}}}}, ["'tasks.deblur.degradation.kernel_sise'", "'kernel_size'"]),
    ({"networks": {"swinir_sr": {"train": {"trainer": "ri"}}}}, ["'networks.swinir_sr.train.trainer'", "unknown trainer", "'ir'"]),
    ({"networks": {"fusion_sr": {"train": {"ir": "swinir_rs"}}}}, ["'networks.fusion_sr.train.ir'", "unknown network", "'swinir_sr'"]),
    ({"networks": {"srdiff": {"train": {"rrdb": "srdiff"}}}}, ["'networks.srdiff.train.rrdb' names the network itself"]),
])
def test_unknown_names_are_caught_by_validate_with_a_suggestion(tmp_path, capsys, override, needles):
    """Attempt: an unknown method kind, architecture, metric preset, degradation (or degradation key),
    trainer, or network reference.  Expected: `dpir validate` says so in one line with a suggestion."""
    code, _, err = run_cli(capsys, "validate", "--config", write(tmp_path, "names.yaml", override))
    one_line_error(code, err, *needles)


def test_every_registered_kind_and_trainer_declares_its_keys():
    """Attempt: list the registries.  Expected: every method kind and trainer entry declares its config
    keys as data (a new kind without a declaration cannot be registered), and the loaded factory carries
    that same declaration (one source for `dpir validate` and build time)."""
    from dpir.keys import declared
    from dpir.methods import METHODS
    from dpir.nets import resolve
    from dpir.registry import Registry, RegistryError
    from dpir.train import TRAINERS

    for table, what in ((METHODS, "method kind"), (TRAINERS, "trainer")):
        assert table.required_meta == ("keys",)
        for name in table:
            decl = table.meta(name)["keys"]
            assert set(decl) == {"properties", "required"} and set(decl["required"]) <= set(decl["properties"])
            assert declared(resolve(table, what, name)) == decl, name
    with pytest.raises(RegistryError, match="must declare keys"):
        Registry("trainer", required_meta=("keys",)).register("undeclared", "pkg.mod:train")


# --- config files and --set values --------------------------------------------------------------

def test_config_file_that_is_not_utf8_is_one_line(tmp_path, capsys):
    """Attempt: `--config` a binary (non-UTF-8) file.  Expected: one line naming the file."""
    p = tmp_path / "bin.yaml"
    p.write_bytes(b"\xff\xfe\x00tasks: {}\n")
    code, _, err = run_cli(capsys, "validate", "--config", str(p))
    one_line_error(code, err, str(p), "not UTF-8")


def test_directory_given_as_config_is_one_line(tmp_path, capsys):
    """Attempt: `--config` a directory.  Expected: one line naming it."""
    code, _, err = run_cli(capsys, "validate", "--config", str(tmp_path))
    one_line_error(code, err, str(tmp_path), "not a regular file")


def test_invalid_yaml_is_one_line_with_its_position(tmp_path, capsys):
    """Attempt: a config with a YAML syntax error (PyYAML's text spans several lines).  Expected: one line
    with the problem, the line and the column."""
    code, _, err = run_cli(capsys, "validate", "--config", write(tmp_path, "bad.yaml", "tasks:\n  sr: [1, 2\n  x: 1\n"))
    one_line_error(code, err, "is not valid YAML", "line ")


@pytest.mark.parametrize("item,needle", [
    ("tasks.sr.seeds=[0", "is not valid YAML"),
    ("novalue", "expects KEY=VALUE"),
    ("tasks..seeds=[0]", "empty part"),
])
def test_bad_set_values_are_one_line(capsys, item, needle):
    """Attempt: `--set` with a value that is not YAML, without `=`, or with an empty key part.
    Expected: one line naming the --set item."""
    code, _, err = run_cli(capsys, "validate", "--set", item)
    one_line_error(code, err, needle)


def test_yaml_alias_bomb_is_refused_before_expansion(tmp_path, capsys):
    """Attempt: a billion-laughs YAML alias bomb inside a method entry.  Expected: refused in one line
    when the file is read, in well under a second and without exhausting memory."""
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    bomb = "tasks:\n  sr:\n    methods:\n      bicubic:\n        kind: bicubic\n        label: &lab x\n" + \
        "\n".join("        " + ln for ln in lines) + "\n"
    code, _, err = run_cli(capsys, "validate", "--config", write(tmp_path, "bomb.yaml", bomb))
    one_line_error(code, err, "alias bomb")


def test_multi_line_error_is_one_line_and_minus_v_shows_the_detail():
    """Attempt: an error whose message spans lines (YAML context, torch's weights-only text).
    Expected: one line, with the detail behind `dpir -v`."""
    from dpir.cli import one_line

    msg = "cannot load x.pth\nWeights only load failed.\nPlease file an issue"
    assert one_line(msg) == "cannot load x.pth (run `dpir -v ...` for the details)"
    assert one_line(msg, verbose=True) == "cannot load x.pth | Weights only load failed. | Please file an issue"


# --- a new user ---------------------------------------------------------------------------------

def test_config_layers_over_the_default_like_snakemake(tmp_path, capsys):
    """Attempt: `dpir validate --config config/test.yaml` (a partial config, as Snakemake's --configfile
    takes it).  Expected: it layers over the default config and validates."""
    code, out, err = run_cli(capsys, "validate", "--config", str(ROOT / "config" / "test.yaml"), "--print")
    assert code == 0, err
    import json

    cfg = json.loads(out)
    assert cfg["_sources"] == [str(DEFAULT), str(ROOT / "config" / "test.yaml")]
    assert cfg["networks"]["swinir_sr"]["train"]["steps"] == yaml.safe_load(
        (ROOT / "config" / "test.yaml").read_text())["networks"]["swinir_sr"]["train"]["steps"]


def test_dpir_works_from_any_folder(tmp_path):
    """Attempt: run `dpir validate` from a folder outside the repository.  Expected: it finds the
    harness's default config and succeeds."""
    r = subprocess.run([sys.executable, "-m", "dpir", "validate"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("config OK"), r.stderr


def test_default_profile_reruns_incomplete_jobs():
    """Attempt: a plain `snakemake` after a crash.  Expected: the workflow profile read by default
    (profiles/default) sets rerun-incomplete, as the gpu and slurm profiles do."""
    for profile in ("default", "gpu", "slurm"):
        cfg = yaml.safe_load((ROOT / "profiles" / profile / "config.yaml").read_text())
        assert cfg.get("rerun-incomplete") is True, profile


@pytest.mark.slow
def test_wheel_installed_outside_the_repo_validates(tmp_path):
    """Attempt: build the wheel, install it outside the checkout, run `dpir validate` there (from another
    folder).  Expected: the schema and the default configs are package data; validation succeeds, also
    with the shipped paper config."""
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT),
                    "-w", str(wheels)], check=True, capture_output=True, timeout=300, cwd=tmp_path)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                    *map(str, wheels.glob("*.whl"))], check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run([sys.executable, "-c", "import dpir; print(dpir.__file__)"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(target), where
    for extra in ([], ["--config", str(target / "dpir" / "defaults" / "paper.yaml")]):
        r = subprocess.run([sys.executable, "-m", "dpir", "validate", *extra], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and r.stdout.startswith("config OK"), r.stderr
    # building in the checkout must not leave a build/ folder behind that git would see
    subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], check=True, capture_output=True)
