"""Task kinds as objects (dpir.tasks): one object per kind, the schema's enum, golden outputs, torch-free import."""
import subprocess
import sys

import pytest
import torch
import yaml

from dpir import tasks
from dpir.errors import DpirError
from dpir.tasks import BURST, DEBLUR, SR, TASK_KINDS, task_kind
from helpers import ROOT

SR_TASK = {"kind": "sr", "scale": 4, "degradation": {"name": "bicubic"}}
DEBLUR_TASK = {"kind": "deblur", "scale": 1,
               "degradation": {"name": "motion_blur", "kernel_size": 17, "length": [4.0, 12.0], "noise_sigma": 0.01}}
BURST_TASK = {"kind": "burst", "scale": 4, "degradation": {"name": "synthetic_burst", "burst_size": 3}}


def image():
    return torch.rand(3, 48, 48, generator=torch.Generator().manual_seed(7))


def test_schema_enum_lists_exactly_the_task_kinds():
    schema = yaml.safe_load((ROOT / "dpir" / "schemas" / "config.schema.yaml").read_text())
    task = schema["properties"]["tasks"]["additionalProperties"]
    if "$ref" in task:                      # "#/$defs/task"
        for part in task["$ref"].lstrip("#/").split("/"):
            schema = schema[part]
        task = schema
    enum = task["properties"]["kind"]["enum"]
    assert set(enum) == set(TASK_KINDS) == {"sr", "deblur", "burst"}
    assert [TASK_KINDS[k] for k in ("sr", "deblur", "burst")] == [SR, DEBLUR, BURST]
    assert all(task_kind(k).name == k for k in TASK_KINDS)


def test_unknown_kind_is_one_line_listing_the_known_kinds():
    for bad in ({"kind": "denoise"}, "denoise"):
        with pytest.raises(DpirError) as e:
            task_kind(bad)
        assert str(e.value) == "unknown task kind 'denoise'; known kinds: sr, deblur, burst"
    with pytest.raises(DpirError, match="unknown task kind None; known kinds: sr, deblur, burst"):
        task_kind({})


def test_flags_of_each_kind():
    assert (SR.image_input, DEBLUR.image_input, BURST.image_input) == (True, True, False)
    assert (SR.linear_train_target, DEBLUR.linear_train_target, BURST.linear_train_target) == (False, False, True)
    assert (SR.restore_kwargs, BURST.restore_kwargs) == ((), ("meta",))
    assert [task_kind(t).train_crop_scale(t) for t in (SR_TASK, DEBLUR_TASK, BURST_TASK)] == [4, 1, 1]
    # golden values of the code before the kinds became objects
    assert [tasks.output_scale(t) for t in (SR_TASK, DEBLUR_TASK, BURST_TASK)] == [4, 1, 8]
    assert [tasks.train_margin(t) for t in (SR_TASK, DEBLUR_TASK, BURST_TASK)] == [0, 0, 24]
    assert {k: list(tasks.degradations(k)) for k in TASK_KINDS} == {
        "sr": ["bicubic"], "deblur": ["motion_blur"], "burst": ["synthetic_burst"]}
    assert sorted(tasks.degradations("deblur")["motion_blur"]) == [
        "anxiety", "clip", "exposure", "kernel_size", "length", "noise_sigma", "num_steps"]
    assert "burst_size" in BURST.degradations()["synthetic_burst"] and SR.degradations()["bicubic"] == frozenset()


def test_observe_gives_the_values_of_before():
    """Golden sums computed with dpir.tasks before the refactor (same seeded inputs)."""
    y, extras = tasks.observe(SR_TASK, image(), "img0")
    assert tuple(y.shape) == (3, 12, 12) and extras == {}
    assert y.double().sum().item() == pytest.approx(216.51538130640984, abs=1e-6)
    y, extras = DEBLUR.observe(DEBLUR_TASK, image(), "img0")
    assert tuple(y.shape) == (3, 48, 48)
    assert y.double().sum().item() == pytest.approx(3463.980828151107, abs=1e-6)
    assert float((extras["kernel"] ** 2).sum()) == pytest.approx(0.09708410501480103, abs=1e-9)
    with pytest.raises(DpirError, match="cannot be prepared from single images"):
        tasks.observe(BURST_TASK, image(), "img0")


def test_train_degradation_gives_the_values_of_before():
    assert tasks.train_degradation(SR_TASK) is None
    assert tasks.train_degradation(SR_TASK, {"kind": "div2k", "lr": "official"}) is None
    assert tasks.train_degradation(DEBLUR_TASK, {"kind": "gopro"}) is None
    assert tasks.train_degradation(DEBLUR_TASK, {"kind": "hide"}) is None
    out = tasks.train_degradation(DEBLUR_TASK, {"kind": "bundled"})(image(), torch.Generator().manual_seed(3))
    assert tuple(out.shape) == (3, 48, 48)
    assert out.double().sum().item() == pytest.approx(3460.543509334326, abs=1e-6)
    rgb = torch.rand(3, 80, 80, generator=torch.Generator().manual_seed(11))
    o = BURST.train_degradation(BURST_TASK, {"kind": "div2k", "lr": "official"})(rgb, torch.Generator().manual_seed(5))
    assert tuple(o["lq"].shape) == (3, 4, 4, 4) and tuple(o["gt"].shape) == (3, 32, 32)
    assert o["lq"].double().sum().item() == pytest.approx(30.8091042637825, abs=1e-6)
    assert o["gt"].double().sum().item() == pytest.approx(426.27202990069054, abs=1e-6)
    assert o["meta"]["rgb_gain"] == pytest.approx(1.3437421806437027, abs=1e-12)
    assert o["meta"]["translations"][1] == pytest.approx([5.1085710525512695, 3.0994205474853516], abs=1e-12)


def test_burst_settings_delegate_to_the_kind():
    assert tasks.burst_settings(BURST_TASK) == BURST.settings(BURST_TASK)
    assert tasks.burst_settings(BURST_TASK)[0] == 3 and tasks.burst_margin(BURST_TASK) == 24
    with pytest.raises(DpirError, match="degradation.burst_size must be a positive integer"):
        BURST.settings({**BURST_TASK, "degradation": {"burst_size": 0}})


def test_degradation_keys_match_the_degradations_and_need_no_torch():
    """The key lists of dpir.tasks mirror the options the degradation code reads."""
    from dpir.data.blur import BLUR_KEYS
    from dpir.data.burst import DEFAULTS

    assert DEBLUR.degradations()["motion_blur"] == frozenset(BLUR_KEYS)
    assert BURST.degradations()["synthetic_burst"] == frozenset({"burst_size", *DEFAULTS})
    code = ("import sys; from dpir.tasks import degradations; "
            "print([sorted(degradations(k)) for k in ('sr', 'deblur', 'burst')], 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[['bicubic'], ['motion_blur'], ['synthetic_burst']] False"


def test_tasks_imports_without_torch_or_numpy():
    """dpir.workflow_facts and the config checks read TASK_KINDS without loading torch."""
    code = ("import sys; import dpir.tasks as t; "
            "assert t.task_kind({'kind': 'burst'}).image_input is False; "
            "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
