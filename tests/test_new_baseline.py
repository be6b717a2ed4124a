"""The worked example of README "Adding a diffusion baseline": examples/examplediff/, a small
conditional diffusion model on the package's core (cosine schedule, DDIM), added through the one-line
package mechanism (:func:`dpir.registry.add_package` does at run time what its line in
:data:`dpir.registry.PACKAGES` does at import), configured by config entries only, validated, trained
for a few steps by the generic loop, restored by ``dpir restore``'s code and checked against the method
contract of tests/test_method_contract.py (its own check functions)."""
from __future__ import annotations

import json

import pytest
import torch

import test_method_contract as contract
from dpir import paths
from dpir.errors import DpirError
from dpir.methods import METHODS
from dpir.nets import ARCHS
from dpir.registry import PACKAGES, RegistryError, add_package, remove_package
from dpir.train import TRAINERS
from helpers import ROOT, base_config

PACKAGE = "examplediff"
T, STRIDE = 8, 2
NETWORKS = {"examplediff": {"arch": "examplediff", "task": "sr", "kwargs": {"scale": 4, "hidden": 8, "t_dim": 8, "T": T},
                            "train": {"trainer": "examplediff", "steps": 4, "batch": 2, "patch": 32, "lr": 1.0e-3,
                                      "seed": 3, "checkpoint_every": 2, "loss": "l2"}}}
METHOD = {"kind": "examplediff", "network": "examplediff", "stride": STRIDE, "max_images": 1, "label": "ExampleDiff"}


@pytest.fixture
def examplediff(monkeypatch):
    """The example package registered as a built-in baseline would be (examples/ on sys.path stands in
    for its folder under baselines/), and unregistered afterwards."""
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    added = add_package(PACKAGE)
    yield added
    remove_package(PACKAGE)
    assert PACKAGE not in METHODS and PACKAGE not in ARCHS and PACKAGE not in TRAINERS


def _config(tmp_path, method=METHOD, networks=NETWORKS):
    return base_config(tmp_path, device="cpu", threads=1, networks=networks,
                       tasks={"sr": {"methods": {"examplediff": method}}})


def test_the_package_registers_its_own_entries(examplediff):
    assert PACKAGE not in PACKAGES          # the example is not a built-in baseline
    assert examplediff == {"methods": ["examplediff"], "archs": ["examplediff"], "trainers": ["examplediff"]}
    # targets relative to the package (".method:build") are made absolute; the declared keys travel along
    assert (METHODS["examplediff"], ARCHS["examplediff"], TRAINERS["examplediff"]) == (
        "examplediff.method:build", "examplediff.nets:ExampleDiffNet", "examplediff.train:examplediff")
    assert METHODS.meta("examplediff")["keys"]["required"] == ["network"]
    assert sorted(METHODS.meta("examplediff")["keys"]["properties"]) == ["network", "stride"]
    assert METHODS.meta("examplediff")["package"] == PACKAGE
    with pytest.raises(RegistryError, match=r"method kind 'examplediff' is registered twice: .*\(package examplediff\)"):
        add_package(PACKAGE)


def test_config_entries_are_validated_against_the_package_declaration(examplediff, tmp_path):
    cfg = _config(tmp_path)
    assert cfg["tasks"]["sr"]["methods"]["examplediff"]["stride"] == STRIDE
    with pytest.raises(DpirError, match=r"^config key 'tasks.sr.methods.examplediff.strid' is not a setting of method "
                                        r"kind 'examplediff'. Did you mean 'stride'\? Allowed: "):
        _config(tmp_path, method={**METHOD, "strid": 2})
    with pytest.raises(DpirError, match=r"^config key 'networks.examplediff.train.loss': 'l3' is not one of \['l1', 'l2'\]"):
        _config(tmp_path, networks={"examplediff": {**NETWORKS["examplediff"],
                                                    "train": {**NETWORKS["examplediff"]["train"], "loss": "l3"}}})


def test_without_its_line_the_kind_is_unknown(tmp_path):
    with pytest.raises(DpirError, match=r"config key 'tasks.sr.methods.examplediff.kind': unknown method kind 'examplediff'"):
        _config(tmp_path)


def test_train_restore_and_the_method_contract(examplediff, tmp_path, monkeypatch):
    from dpir.data.prepare import prepare
    from dpir.restore import build, restore_dataset
    from dpir.train.loop import train_network

    cfg = _config(tmp_path)
    prepare(cfg, "sr", "bundled")
    rec = train_network(cfg, "examplediff", progress=False)
    log = json.loads((paths.network_dir(cfg, "examplediff") / "train_log.json").read_text())
    assert (log["network"], log["steps"], log["train_samples_seen"]) == ("examplediff", 4, 8)
    assert 0 < log["final_loss"] < 1     # finite: an MSE of residuals of [0, 1] images
    assert rec["trained_params"] == sum(p.numel() for p in ARCHS.build("examplediff", **NETWORKS["examplediff"]["kwargs"])
                                        .parameters())
    # one image restored by dpir restore's code: NFE counted = T / stride DDIM steps
    run = restore_dataset(cfg, "sr", "bundled", "examplediff", 0, progress=False)
    assert run["nfe"] == T // STRIDE and run["nfe_groups"] == {"denoiser": T // STRIDE}
    assert (run["kind"], run["n_images"], run["stochastic"]) == ("examplediff", 1, True)
    assert run["params_total"] == run["params_trained"] == rec["trained_params"]
    pngs = sorted(paths.restored_dir(cfg, "sr", "bundled", "examplediff", 0).glob("*.png"))
    assert len(pngs) == 1
    # the contract of every registered method kind, with the trained network (tests/test_method_contract.py)
    method, _, tcfg, _ = build(cfg, "sr", "examplediff")
    method.eval()
    monkeypatch.setitem(contract.CASES, "examplediff", contract.Case("examplediff", "sr"))
    built = ("examplediff", method, {"kind": "sr", "scale": tcfg["scale"]})
    contract.test_output_shape_and_dtype(built)
    contract.test_deterministic_for_a_seed_and_image_id(built)
    contract.test_batch_of_two_equals_two_batches_of_one(built)
    contract.test_no_state_kept_between_calls(built)
    contract.test_counted_nfe_is_the_declared_nfe(built)
    assert method.expected_nfe() == T // STRIDE and method.stochastic
    # trained and untrained weights give different outputs: the restore used the trained checkpoint
    y = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    fresh = type(method)(ARCHS.build("examplediff", **NETWORKS["examplediff"]["kwargs"]).eval(), STRIDE)
    assert (method.restore(y, contract.gens(0, ["img0"])) - fresh.restore(y, contract.gens(0, ["img0"]))).abs().max() > 1e-4
