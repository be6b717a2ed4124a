"""The command line: subcommands listed, one-line errors (exit 2) for bad input."""
import subprocess
import sys

import pytest

from dpir.cli import main
from helpers import ROOT, write_yaml


def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "dpir", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_help_lists_every_stage():
    r = run("--help")
    assert r.returncode == 0
    for sub in ("prepare", "train", "restore", "score", "tables", "report", "fetch", "validate"):
        assert sub in r.stdout


def test_config_typo_is_one_line_error(tmp_path, capsys):
    bad = write_yaml(tmp_path / "typo.yaml", {"tasks": {"sr": {"seedz": [0]}}})
    code = main(["validate", "-c", str(ROOT / "config" / "config.yaml"), "-c", str(bad)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == ("dpir: error: config key 'tasks.sr.seedz' is not a known setting. Did you mean 'seeds'? "
                   "Allowed here: crop_border, degradation, enabled_methods, kind, methods, metrics, scale, seeds, table, "
                   "test_datasets, title, train_dataset")


@pytest.mark.parametrize("args, message", [
    (["restore", "--task", "sr", "--dataset", "bundled", "--method", "swinr"],
     "dpir: error: unknown method of task 'sr' 'swinr'. Did you mean 'swinir'"),
    (["train", "--network", "nope"], "dpir: error: unknown network 'nope'."),
    (["prepare", "--task", "srr", "--dataset", "bundled"], "dpir: error: unknown task 'srr'. Did you mean 'sr'?"),
])
def test_unknown_names_suggest(args, message, capsys, tmp_path):
    code = main([*args, "--set", f"out={tmp_path}", "--set", f"data_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(message) and "Traceback" not in err and err.count("\n") == 1


def test_unknown_metric_in_config(tmp_path, capsys):
    from dpir.data.prepare import prepare
    from helpers import base_config

    cfg = base_config(tmp_path)
    prepare(cfg, "sr", "bundled", splits=("test",))
    common = ["--set", f"out={tmp_path}/results", "--set", f"data_dir={tmp_path}/data", "-c",
              str(ROOT / "config" / "config.yaml"), "-c", str(ROOT / "config" / "test.yaml")]
    assert main(["restore", "--task", "sr", "--dataset", "bundled", "--method", "bicubic", "-q", *common]) == 0
    capsys.readouterr()
    code = main(["score", "--task", "sr", "--dataset", "bundled", "--method", "bicubic",
                 "--set", "tasks.sr.metrics=[psnr_y, lpipz]", *common])
    err = capsys.readouterr().err
    # caught when the config is validated, before any scoring starts
    assert code == 2 and "'tasks.sr.metrics[1]': unknown metric preset 'lpipz'" in err and "lpips_alex" in err


def test_score_before_restore_says_what_to_run(tmp_path, capsys):
    code = main(["score", "--task", "sr", "--dataset", "bundled", "--method", "bicubic", "--set", f"out={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2 and "run.json is missing: run `dpir restore --task sr --dataset bundled --method bicubic --seed 0` first" in err


def test_report_without_results(tmp_path, capsys):
    code = main(["report", "--set", f"out={tmp_path}"])
    assert code == 2 and "no results under" in capsys.readouterr().err
