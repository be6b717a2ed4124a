import pytest
import yaml

from dpir.config import deep_merge, load_config, validate_config
from dpir.errors import DpirError
from helpers import ROOT, write_yaml


def default():
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def test_default_configs_validate_and_fill_defaults():
    cfg = load_config([ROOT / "config" / "config.yaml"])
    assert cfg["tasks"]["sr"]["scale"] == 4
    assert cfg["tile_overlap"] == 16          # schema default filled
    assert "restore_batch" not in cfg         # the dead key is gone (issue 12)
    assert cfg["datasets"]["bundled"]["lr"] == "regenerate"
    load_config([ROOT / "config" / "config.yaml", ROOT / "config" / "test.yaml"])


def test_typo_at_top_level_names_key_and_suggests():
    cfg = default()
    cfg["taskss"] = cfg.pop("tasks")
    with pytest.raises(DpirError, match=r"'taskss'|tasks"):
        validate_config(cfg)
    cfg = default()
    cfg["devcie"] = "cpu"
    with pytest.raises(DpirError, match=r"config key 'devcie' is not a known setting. Did you mean 'device'\?"):
        validate_config(cfg)


def test_nested_typo_names_full_key_path():
    cfg = default()
    cfg["tasks"]["sr"]["methds"] = {}
    with pytest.raises(DpirError, match=r"config key 'tasks\.sr\.methds' is not a known setting\. Did you mean 'methods'\?"):
        validate_config(cfg)


def test_wrong_value_names_key():
    cfg = default()
    cfg["tasks"]["sr"]["scale"] = "four"
    with pytest.raises(DpirError, match=r"config key 'tasks\.sr\.scale'"):
        validate_config(cfg)
    cfg = default()
    cfg["device"] = "gpu0"
    with pytest.raises(DpirError, match=r"config key 'device'"):
        validate_config(cfg)


def test_unknown_network_reference_suggests():
    cfg = default()
    cfg["tasks"]["sr"]["methods"]["swinir"]["network"] = "swinir_rs"
    with pytest.raises(DpirError, match=r"tasks\.sr\.methods\.swinir\.network.*Did you mean 'swinir_sr'"):
        validate_config(cfg)


def test_unknown_dataset_reference():
    cfg = default()
    cfg["tasks"]["sr"]["test_datasets"] = ["div2k"]
    with pytest.raises(DpirError, match=r"tasks\.sr\.test_datasets.*'div2k'"):
        validate_config(cfg)


def test_merge_order_later_files_win(tmp_path):
    a = write_yaml(tmp_path / "a.yaml", {"threads": 3, "datasets": {"bundled": {"kind": "bundled", "test_crop": 64}}})
    cfg = load_config([ROOT / "config" / "config.yaml", a])
    assert cfg["threads"] == 3 and cfg["datasets"]["bundled"]["test_crop"] == 64
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(DpirError, match="does not exist"):
        load_config([tmp_path / "nope.yaml"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks: [unclosed")
    with pytest.raises(DpirError, match="not valid YAML"):
        load_config([bad])


def test_validating_the_shipped_configs_imports_no_torch(tmp_path):
    """dpir validate / the Snakefile's validate_config: names and declared keys are torch-free data, so
    the default, paper and test configs validate with `import torch` failing (tests/torch_block.py)."""
    from torch_block import pending_only, run_without_torch, torch_chain

    code = ("import sys\n"
            "from dpir.config import load_config\n"
            "for extra in ([], ['config/paper.yaml'], ['config/test.yaml']):\n"
            "    load_config(['config/config.yaml', *extra])\n"
            "assert 'torch' not in sys.modules\n"
            "print('validated 3')\n")
    r = run_without_torch(["-c", code], tmp_path)
    chain = torch_chain(r.stderr)
    if chain and pending_only(chain):
        # PENDING (issue 12, other helpers): dpir.tasks (degradations) and dpir.metrics (preset names)
        # still import torch; everything before them on the chain is torch-free
        pytest.xfail(f"torch still imported by a module being made torch-free separately: {chain}")
    assert chain is None, f"validate_config imported torch via: {chain}"
    assert r.returncode == 0 and r.stdout.strip() == "validated 3", r.stderr[-2000:]


def test_method_and_trainer_keys_are_checked_without_torch(tmp_path):
    """A typo in a method key and in a trainer key fails validation with its one line, torch blocked."""
    from torch_block import run_without_torch, torch_chain

    code = ("from dpir.config import load_config\n"
            "from dpir.errors import DpirError\n"
            "for over in ({'tasks': {'sr': {'methods': {'dpir_jump': {'taus': 5}}}}},\n"
            "             {'networks': {'indi': {'train': {'p_onee': 0.1}}}}):\n"
            "    try:\n"
            "        load_config(['config/config.yaml'], over)\n"
            "    except DpirError as e:\n"
            "        print(e)\n")
    r = run_without_torch(["-c", code], tmp_path)
    assert torch_chain(r.stderr) is None and r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("config key 'tasks.sr.methods.dpir_jump.taus' is not a setting of method kind "
                               "'dpir'. Did you mean 'tau'? Allowed: "), lines[0]
    assert lines[1].startswith("config key 'networks.indi.train.p_onee' is not a setting of trainer 'indi'. "
                               "Did you mean 'p_one'? Allowed: "), lines[1]
