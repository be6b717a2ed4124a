"""Method kind ``python`` (dpir/methods/python.py): any Python model, from code outside the package.

The shipped example (``examples/byo/byo_sharp``) is used exactly as the README shows it, from the
repository root: ``entry: "byo_sharp:build"``, ``python_path: [examples/byo]``.
"""
from __future__ import annotations

import hashlib
import sys

import numpy as np
import pytest
import torch
from scipy import ndimage

from dpir import paths
from dpir.data.degrade import bicubic_resize
from dpir.data.prepare import prepare
from dpir.errors import DpirError
from dpir.keys import factory
from dpir.measure import count_nfe, count_params
from dpir.methods import METHODS, BuildContext
from dpir.methods.python import PythonMethod, build
from dpir.methods.simple import Backbone
from dpir.rng import make_generator
from helpers import ROOT, base_config

SHARP = {"kind": "python", "entry": "byo_sharp:build", "python_path": ["examples/byo"], "deterministic": True,
         "options": {"scale": 4, "amount": 0.5}}


@pytest.fixture(autouse=True)
def _repo_root_and_clean_path(monkeypatch):
    """Run from the repository root (python_path is relative to it) and undo the sys.path changes."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "path", list(sys.path))


def ctx(task=None, name="byo", tmp=".") -> BuildContext:
    c = BuildContext(task_name="sr", task=task or {"kind": "sr", "scale": 4}, networks_dir=str(tmp),
                     device=torch.device("cpu"))
    c.method_name = name
    return c


def _unsharp_reference(x: np.ndarray, amount: float) -> np.ndarray:
    """x + amount * (x - binomial_3x3(x)) with replicated borders, computed by scipy (independent of torch)."""
    g = np.array([1.0, 2.0, 1.0])
    k = np.outer(g, g) / 16
    blur = np.stack([ndimage.convolve(c, k, mode="nearest") for c in x])
    return x + amount * (x - blur)


def test_example_package_as_the_readme_shows_it():
    m = build(dict(SHARP), ctx())
    assert isinstance(m, Backbone) and not m.stochastic and m.scale == 4
    assert count_params(m.modules()) == 27 and m.expected_nfe() == 1
    y = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), count_nfe(m) as counter:
        x = m.restore(y, [make_generator(0, "a"), make_generator(0, "b")])
    assert counter.total == 1 and x.shape == (2, 3, 20, 28)
    # MATLAB bicubic (the harness's own resize-right implementation), then the unsharp mask (scipy)
    up = bicubic_resize(y, 4.0).double().numpy()
    ref = np.stack([_unsharp_reference(b, 0.5) for b in up])
    np.testing.assert_allclose(x.double().numpy(), ref, rtol=0, atol=2e-6)
    # amount 0: plain MATLAB bicubic
    plain = build({**SHARP, "options": {"scale": 4, "amount": 0.0}}, ctx())
    torch.testing.assert_close(plain.restore(y), bicubic_resize(y, 4.0), rtol=0, atol=1e-6)


def test_factory_gets_a_copy_of_the_config():
    cfg = {**SHARP, "options": {"scale": 4, "amount": 0.5}}
    build(cfg, ctx())
    assert cfg == SHARP


@pytest.fixture
def user_file(tmp_path):
    """A user's model file outside the package: a 2-parameter factory returning a restore object."""
    f = tmp_path / "my_model.py"
    f.write_text('''
import torch
from torch import nn

class Noisy:
    """Two calls of its network per restore, seeded noise from the harness's generators."""
    def __init__(self, scale, with_nfe=True):
        torch.manual_seed(0)
        self.net = nn.Conv2d(3, 3, 3, padding=1)
        self.scale = scale
        self.label = "not a network"
        if with_nfe:
            self.expected_nfe = lambda: 2

    def restore(self, y, generator):
        up = nn.functional.interpolate(y, scale_factor=self.scale, mode="nearest")
        gens = generator if isinstance(generator, list) else [generator]
        noise = torch.stack([torch.randn(up.shape[1:], generator=g) for g in gens])
        return self.net(self.net(up)) + 0.01 * noise

def build(cfg, ctx):
    return Noisy(ctx.task["scale"], **cfg.get("options", {}))

def only_cfg(cfg):
    return torch.nn.Identity()

VALUE = 3

def returns_int(cfg):
    return 42

def raises(cfg):
    raise KeyError("width")
''')
    return f


def test_a_file_entry_and_a_restore_object(user_file):
    m = build({"kind": "python", "entry": f"{user_file}:build"}, ctx())
    assert isinstance(m, PythonMethod) and m.stochastic            # no `deterministic: true`
    assert list(m.modules()) == ["net"] and count_params(m.modules()) == 3 * 3 * 9 + 3
    y = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), count_nfe(m) as counter:
        a = m.restore(y, [make_generator(0, "img")])
    assert counter.total == 2 == m.expected_nfe() and a.shape == (1, 3, 16, 16)
    assert torch.equal(a, m.restore(y, [make_generator(0, "img")]))
    assert not torch.equal(a, m.restore(y, [make_generator(1, "img")]))
    det = build({"kind": "python", "entry": f"{user_file}:build", "deterministic": True}, ctx())
    assert not det.stochastic
    # relative to the working directory, as a config would give it
    rel = user_file.relative_to(user_file.parent.parent)
    import os

    os.chdir(user_file.parent.parent)
    assert isinstance(build({"kind": "python", "entry": f"{rel}:only_cfg"}, ctx()), Backbone)


def test_without_expected_nfe_the_nfe_is_measured_only(user_file):
    m = build({"kind": "python", "entry": f"{user_file}:build", "options": {"with_nfe": False}}, ctx())
    with pytest.raises(NotImplementedError, match="declares no expected_nfe\\(\\); its NFE is measured only"):
        m.expected_nfe()
    with torch.no_grad(), count_nfe(m) as counter:
        m.restore(torch.rand(1, 3, 4, 4), [make_generator(0, "x")])
    assert counter.by_group() == {"model": 2}


KEY = "tasks.sr.methods.byo.entry"


@pytest.mark.parametrize("entry, extra, message", [
    ("no_such_module_xyz:build", {"python_path": ["examples/byo"]},
     f"{KEY}: cannot import module 'no_such_module_xyz' (python_path ['{ROOT / 'examples/byo'}']; working directory "
     f"{ROOT}); add the folder that holds it to `python_path`, or install its package"),
    ("no_such_module_xyz:build", {}, f"{KEY}: cannot import module 'no_such_module_xyz' (no python_path; "),
    ("byo_sharp:biuld", {"python_path": ["examples/byo"]}, f"{KEY}: 'byo_sharp' has no attribute 'biuld'; did you "
                                                           "mean 'build'?"),
    ("FILE:VALUE", {}, f"{KEY}: 'FILE:VALUE' is a int, not callable"),
    ("FILE:returns_int", {}, f"{KEY}: the factory 'FILE:returns_int' returned a int, which is neither an nn.Module "
                             "nor an object with restore(y, generator); return one of the two"),
    ("FILE:raises", {}, f"{KEY}: the factory 'FILE:raises' raised KeyError: 'width'; fix it or its `options` (run "
                        "with -v for the traceback)"),
    ("byo_sharp:build", {"python_path": ["examples/byo"], "options": {"amount": -1}},
     f"{KEY}: the factory 'byo_sharp:build' raised ValueError: options.amount must be a number >= 0, got -1"),
    ("byo_sharp:build", {"python_path": ["examples/nowhere"]}, "tasks.sr.methods.byo.python_path: 'examples/nowhere' "
                                                               "is not a folder"),
    ("no_colon", {}, f"{KEY}: expected \"package.module:factory\" or \"path/to/file.py:factory\", got 'no_colon'"),
    ("missing_file.py:build", {}, f"{KEY}: the file 'missing_file.py' does not exist"),
])
def test_entry_errors_are_one_line_naming_the_key(user_file, entry, extra, message):
    entry = entry.replace("FILE", str(user_file))
    message = message.replace("FILE", str(user_file))
    with pytest.raises(DpirError) as e:
        build({"kind": "python", "entry": entry, **extra}, ctx())
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_a_missing_dependency_of_the_user_module_is_named(tmp_path):
    f = tmp_path / "needs.py"
    f.write_text("import not_installed_pkg_q7\n\ndef build(cfg):\n    return None\n")
    with pytest.raises(DpirError, match=f"^{KEY}: importing '.*needs.py' failed: it needs the module "
                                        "'not_installed_pkg_q7', which is not installed; install it"):
        build({"kind": "python", "entry": f"{f}:build"}, ctx())


def test_bursts_need_a_restore_that_takes_meta(user_file):
    burst = {"kind": "burst", "scale": 4}
    with pytest.raises(DpirError, match=f"^{KEY}: task 'sr' restores bursts, but the restore\\(\\) of .* takes no "
                                        "`meta`"):
        build({"kind": "python", "entry": f"{user_file}:build"}, ctx(burst))


@pytest.fixture
def python_kind():
    """The ``python`` kind in the method registry (the lead registers it in dpir/methods/__init__.py)."""
    added = "python" not in METHODS
    if added:
        METHODS.register("python", factory("dpir.methods.python:build", required=("entry",),
                                           entry={"type": "string"}, python_path={"type": "array"},
                                           deterministic={"type": "boolean"}, pad_multiple={"type": "integer"},
                                           options={"type": "object"}))
    yield
    if added:
        METHODS.unregister("python")


def test_restore_and_score_the_example_through_the_harness(tmp_path, python_kind):
    from dpir.restore import restore_dataset
    from dpir.score import score_run

    cfg = base_config(tmp_path, device="cpu", threads=1)
    cfg["tasks"]["sr"]["metrics"] = ["psnr_y"]
    cfg["tasks"]["sr"]["methods"]["byo_sharp"] = {**SHARP, "label": "BYO sharp"}
    prepare(cfg, "sr", "bundled", splits=("test",))
    rec = restore_dataset(cfg, "sr", "bundled", "byo_sharp", 0, progress=False)
    assert (rec["kind"], rec["nfe"], rec["nfe_groups"], rec["params_total"], rec["stochastic"]) == \
        ("python", 1, {"ir": 1}, 27, False)
    assert rec["flops_per_image"] > 0 and "architecture" not in rec["provenance"]
    source = ROOT / "examples" / "byo" / "byo_sharp" / "__init__.py"
    assert rec["provenance"]["code"] == {"entry": "byo_sharp:build", "file": str(source),
                                         "sha256": hashlib.sha256(source.read_bytes()).hexdigest()}
    score = score_run(cfg, "sr", "bundled", "byo_sharp", 0)
    assert score["metrics"]["psnr_y"]["available"] and score["cost"]["nfe"] == 1
    assert (paths.restored_dir(cfg, "sr", "bundled", "byo_sharp", 0) / "astronaut.png").is_file()
    # the method's name is in the key of a bad entry's error, through `dpir restore`'s build
    cfg["tasks"]["sr"]["methods"]["bad"] = {**SHARP, "entry": "byo_sharp:nope"}
    with pytest.raises(DpirError, match=r"^tasks\.sr\.methods\.bad\.entry: 'byo_sharp' has no attribute 'nope'"):
        restore_dataset(cfg, "sr", "bundled", "bad", 0, progress=False)


def test_verbose_prints_the_users_traceback(monkeypatch, capsys):
    from dpir import cli

    def fail(args):
        try:
            raise ValueError("inside the user's factory")
        except ValueError as e:
            raise DpirError("tasks.sr.methods.byo.entry: the factory raised ValueError") from e
    monkeypatch.setattr(cli, "cmd_list", fail)
    assert cli.main(["list"]) == 2
    err = capsys.readouterr().err
    assert err == "dpir: error: tasks.sr.methods.byo.entry: the factory raised ValueError\n"
    assert cli.main(["-v", "list"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "ValueError: inside the user's factory" in err
    assert err.endswith("dpir: error: tasks.sr.methods.byo.entry: the factory raised ValueError\n")
