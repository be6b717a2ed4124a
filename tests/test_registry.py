"""Registries as data (dpir.registry): lazy "module:attr" entries, lookup errors, collisions, load
checks, dict-like reading; metric presets that carry their direction and digits; the dataset-kind
table against the config schema."""
import ast
import statistics
import sys
import types
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

import dpir.metrics as M
from dpir.errors import DpirError, UnknownNameError
from dpir.registry import Registry, RegistryError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_module(monkeypatch):
    mod = types.ModuleType("_dpir_registry_test_mod")
    mod.Net = type("Net", (nn.Module,), {"forward": lambda self, x: x})
    mod.make_net = lambda width=1: mod.Net()
    mod.not_a_net = lambda: "a string"
    mod.CONSTANT = 3
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    return mod


def test_dict_like_reading_and_lazy_load(fake_module):
    reg = Registry("widget", {"net": "_dpir_registry_test_mod:Net", "factory": "_dpir_registry_test_mod:make_net"})
    assert "net" in reg and "nope" not in reg
    assert reg["net"] == "_dpir_registry_test_mod:Net"
    assert sorted(reg) == ["factory", "net"] and len(reg) == 2 and list(reg) == ["net", "factory"]
    assert dict(reg.items()) == {"net": "_dpir_registry_test_mod:Net", "factory": "_dpir_registry_test_mod:make_net"}
    assert reg.get("nope", None) is None and reg.get("net", None) == "_dpir_registry_test_mod:Net"
    assert reg.get("net") is fake_module.Net and reg.load("factory") is fake_module.make_net
    assert reg.entry("net").module == "_dpir_registry_test_mod" and reg.entry("net").attr == "Net"


def test_unknown_name_suggests_close_matches():
    reg = Registry("widget", {"swinir": "a.b:c", "rrdb": "a.b:d"})
    with pytest.raises(UnknownNameError, match=r"unknown widget 'swinr'\. Did you mean 'swinir'\?.*Known widgets: rrdb, swinir"):
        reg.get("swinr")
    with pytest.raises(KeyError):          # UnknownNameError is a KeyError, so dict-style callers still work
        reg["swinr"]
    assert isinstance(pytest.raises(DpirError, reg.load, "x").value, UnknownNameError)


def test_registering_a_name_twice_names_both_targets():
    reg = Registry("widget", {"a": "pkg.one:f"})
    with pytest.raises(RegistryError, match=r"widget 'a' is registered twice: as 'pkg.one:f' and as 'pkg.two:g'"):
        reg.register("a", "pkg.two:g")
    with pytest.raises(RegistryError, match="registered twice"):
        Registry("widget", [("a", "pkg.one:f"), ("a", "pkg.two:g")])
    reg.register("a", "pkg.two:g", replace=True)
    assert reg["a"] == "pkg.two:g"
    for bad in ("no_colon", "a:b:c", ":f", "pkg:", 3):
        with pytest.raises(RegistryError, match="module:attr"):
            reg.register("b", bad)


def test_load_checks(fake_module):
    reg = Registry("architecture", returns=nn.Module, entries={
        "net": "_dpir_registry_test_mod:Net", "const": "_dpir_registry_test_mod:CONSTANT",
        "str": "_dpir_registry_test_mod:not_a_net", "missing_attr": "_dpir_registry_test_mod:Nope",
        "missing_module": "_dpir_no_such_module_xyz:f"})
    assert isinstance(reg.build("net"), nn.Module)
    with pytest.raises(RegistryError, match=r"architecture 'const': .* is a int, not a class or factory"):
        reg.load("const")
    with pytest.raises(RegistryError, match=r"returned a str, not a Module"):
        reg.build("str")
    with pytest.raises(RegistryError, match=r"has no 'Nope'"):
        reg.load("missing_attr")
    with pytest.raises(RegistryError, match=r"module '_dpir_no_such_module_xyz' .* does not exist"):
        reg.load("missing_module")


def test_required_metadata_and_item_assignment(monkeypatch):
    reg = Registry("metric", required_meta=("lower_better", "digits"))
    with pytest.raises(RegistryError, match="must declare lower_better, digits"):
        reg.register("x", "a.b:c")
    reg.register("x", "a.b:c", lower_better=True, digits=3)
    with pytest.raises(RegistryError, match="use register"):
        reg["new"] = "a.b:c"
    # monkeypatch.setitem overrides an entry (keeping its metadata) and restores it afterwards
    with monkeypatch.context() as mp:
        mp.setitem(reg, "x", "a.b:d")
        assert reg["x"] == "a.b:d" and reg.meta("x") == {"lower_better": True, "digits": 3}
    assert reg["x"] == "a.b:c"
    del reg["x"]
    assert "x" not in reg


# --- the project's registries ------------------------------------------------------------------

def _tables():
    from dpir.methods import METHODS
    from dpir.nets import ARCHS
    from dpir.train import TRAINERS

    return {"method kind": METHODS, "architecture": ARCHS, "trainer": TRAINERS, "metric": M.METRICS}


def test_project_tables_are_registries_of_module_attr_strings():
    for kind, table in _tables().items():
        assert isinstance(table, Registry) and table.kind == kind and len(table) > 0
        for name in table:
            module, attr = table[name].split(":")
            assert module.split(".")[0] in ("dpir", "baselines") and attr.isidentifier(), (kind, name)


def test_declarations_have_no_duplicate_names():
    """A dict literal drops a repeated key silently: check the declarations' source (the central tables
    and every package's ENTRIES)."""
    from dpir.registry import PACKAGES

    files = ["dpir/methods/__init__.py", "dpir/nets/__init__.py", "dpir/train/__init__.py",
             *(p.replace(".", "/") + "/__init__.py" for p in PACKAGES)]
    checked = 0
    for rel in files:
        tree = ast.parse((ROOT / rel).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("Registry", "Entries"):
                for kw in node.keywords:
                    if kw.arg in ("entries", "methods", "archs", "trainers") and isinstance(kw.value, ast.Dict):
                        keys = [k.value for k in kw.value.keys]
                        assert len(keys) == len(set(keys)), (rel, sorted(k for k in keys if keys.count(k) > 1))
                        checked += 1
    assert checked == 3 + 3 * len(PACKAGES)   # 3 central tables; methods, archs, trainers of each package


# --- packages that bring their own entries -----------------------------------------------------

def test_baseline_entries_come_from_their_packages():
    """Each baseline's names are registered from its own package, listed once in PACKAGES, with the
    same targets as the central tables had."""
    from dpir.methods import METHODS
    from dpir.nets import ARCHS
    from dpir.registry import PACKAGES
    from dpir.train import TRAINERS

    assert PACKAGES == ("baselines.srdiff", "baselines.indi", "baselines.diffir")
    by_package = {(t.kind, n): t.meta(n).get("package") for t in (METHODS, ARCHS, TRAINERS) for n in t}
    assert {k: v for k, v in by_package.items() if v} == {
        ("method kind", "srdiff"): "baselines.srdiff", ("method kind", "indi"): "baselines.indi",
        ("method kind", "diffir"): "baselines.diffir",
        ("architecture", "srdiff"): "baselines.srdiff", ("architecture", "srdiff_rrdb"): "baselines.srdiff",
        ("architecture", "indi"): "baselines.indi", ("architecture", "diffir_s1"): "baselines.diffir",
        ("architecture", "diffir_s2"): "baselines.diffir",
        ("trainer", "srdiff_rrdb"): "baselines.srdiff", ("trainer", "srdiff"): "baselines.srdiff",
        ("trainer", "indi"): "baselines.indi", ("trainer", "diffir_s1"): "baselines.diffir",
        ("trainer", "diffir_s2"): "baselines.diffir"}
    assert METHODS["srdiff"] == "baselines.srdiff.method:build" and TRAINERS["diffir_s2"] == "baselines.diffir.train:build_s2"
    assert ARCHS["indi"] == "baselines.indi.nets:InDINet"
    # every non-baseline entry is the core's own, in dpir/
    assert all(t[n].startswith("dpir.") for t in (METHODS, ARCHS, TRAINERS) for n in t if not t.meta(n).get("package"))


@pytest.fixture
def two_packages(monkeypatch):
    """Two fake torch-free packages that both register method kind 'clash'."""
    from dpir.keys import factory
    from dpir.registry import Entries

    for name in ("_dpir_pkg_a", "_dpir_pkg_b"):
        mod = types.ModuleType(name)
        mod.ENTRIES = Entries(methods={"clash": factory(f"{name}.method:build")}, archs={f"{name}_net": ".nets:Net"})
        monkeypatch.setitem(sys.modules, name, mod)
    bad = types.ModuleType("_dpir_pkg_no_entries")
    monkeypatch.setitem(sys.modules, bad.__name__, bad)


def test_two_packages_registering_one_name_is_an_error_naming_both(two_packages):
    from dpir.registry import include

    reg = Registry("method kind", required_meta=("keys",))
    with pytest.raises(RegistryError, match=r"method kind 'clash' is registered twice: as '_dpir_pkg_a.method:build' "
                                            r"\(package _dpir_pkg_a\) and as '_dpir_pkg_b.method:build' \(package _dpir_pkg_b\)"):
        include(reg, "methods", ("_dpir_pkg_a", "_dpir_pkg_b"))
    archs = Registry("architecture")
    assert include(archs, "archs", ("_dpir_pkg_a",)) == ["_dpir_pkg_a_net"]
    assert archs["_dpir_pkg_a_net"] == "_dpir_pkg_a.nets:Net"      # a relative target is the package's
    with pytest.raises(RegistryError, match=r"package '_dpir_pkg_no_entries' must export ENTRIES"):
        include(reg, "methods", ("_dpir_pkg_no_entries",))
    with pytest.raises(RegistryError, match=r"package '_dpir_no_such_pkg_xyz' \(dpir.registry.PACKAGES\) does not exist"):
        include(reg, "methods", ("_dpir_no_such_pkg_xyz",))


def test_add_package_clashing_with_a_builtin_registers_nothing(monkeypatch):
    from dpir.keys import factory
    from dpir.methods import METHODS
    from dpir.nets import ARCHS
    from dpir.registry import Entries, add_package

    mod = types.ModuleType("_dpir_pkg_clash")
    mod.ENTRIES = Entries(archs={"_dpir_pkg_clash_net": ".nets:Net"}, methods={"indi": factory(".method:build")})
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    before = (dict(METHODS.items()), dict(ARCHS.items()))
    with pytest.raises(RegistryError, match=r"method kind 'indi' is registered twice: as 'baselines.indi.method:build' "
                                            r"\(package baselines.indi\) and as '_dpir_pkg_clash.method:build' \(package _dpir_pkg_clash\)"):
        add_package(mod.__name__)
    assert (dict(METHODS.items()), dict(ARCHS.items())) == before


def test_method_and_trainer_entries_must_declare_keys_and_agree_with_a_decorator(fake_module):
    from dpir.keys import config_keys, declared, factory

    reg = Registry("method kind", required_meta=("keys",))
    with pytest.raises(RegistryError, match=r"method kind 'x' \(a.b:c\) must declare keys \(register it as "
                                            r"dpir.keys.factory\(target, \*\*keys\)\)"):
        reg.register("x", "a.b:c")
    fake_module.plain = lambda cfg, ctx: None
    fake_module.decorated = config_keys(steps={"type": "integer"})(lambda cfg, ctx: None)
    reg.register("plain", factory("_dpir_registry_test_mod:plain", required=("steps",), steps={"type": "integer"}))
    reg.register("same", factory("_dpir_registry_test_mod:decorated", steps={"type": "integer"}))
    reg.register("other", factory("_dpir_registry_test_mod:decorated", stepz={"type": "integer"}))
    # the entry's declaration goes onto the loaded factory: one source for validation and build time
    assert declared(reg.load("plain")) == {"properties": {"steps": {"type": "integer"}}, "required": ["steps"]}
    assert reg.load("same") is fake_module.decorated
    with pytest.raises(RegistryError, match=r"declares other config keys \(@config_keys: \['steps'\]\) than its "
                                            r"registry entry \(\['stepz'\]\)"):
        reg.load("other")
    with pytest.raises(TypeError, match="required keys"):
        factory("a.b:c", required=("network",))


def test_project_tables_import_no_torch_and_check_returns_lazily(fake_module):
    """The central tables are torch-free data (their ``returns`` type is a "module:attr" string)."""
    code = ("import sys; from dpir.methods import METHODS; from dpir.nets import ARCHS; from dpir.train import TRAINERS; "
            "assert len(METHODS) == 9 and len(ARCHS) == 21 and len(TRAINERS) == 8, (len(METHODS), len(ARCHS), len(TRAINERS)); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    import subprocess

    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    reg = Registry("architecture", returns="torch.nn:Module", entries={
        "net": "_dpir_registry_test_mod:Net", "str": "_dpir_registry_test_mod:not_a_net"})
    assert isinstance(reg.build("net"), nn.Module)
    with pytest.raises(RegistryError, match=r"returned a str, not a Module"):
        reg.build("str")


def test_existing_call_sites_keep_working():
    from dpir.methods import METHODS
    from dpir.nets import build_network, resolve
    from dpir.train import TRAINERS
    from dpir.train.loop import get_trainer

    assert resolve(METHODS, "method kind", "bicubic") is METHODS.get("bicubic")
    assert resolve({"x": "dpir.nets:build_network"}, "thing", "x") is build_network   # plain dicts too
    with pytest.raises(UnknownNameError, match="unknown method kind 'bicubc'. Did you mean 'bicubic'"):
        resolve(METHODS, "method kind", "bicubc")
    assert get_trainer("ir") is TRAINERS.get("ir")


# --- metric presets as data --------------------------------------------------------------------

class MAE(M.Metric):
    """Mean absolute error on the 0-255 scale (a weight-free metric defined only in this test)."""

    def _describe(self):
        return "MAE on RGB, 8-bit levels"

    def _score(self, out, ref):
        return (out - ref).abs().mul(255).flatten(1).mean(1)


def mae(crop_border: int = 0):
    return MAE(crop_border)


@pytest.fixture
def mae_preset(monkeypatch):
    mod = types.ModuleType("_dpir_test_mae")
    mod.mae = mae
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    M.preset("mae", "_dpir_test_mae:mae", lower_better=True, digits=3, unit="levels", description="test-only MAE")
    yield
    del M.METRICS["mae"]


def test_default_presets_declare_direction_digits_unit():
    for name in M.METRICS:
        info = M.preset_info(name)
        assert isinstance(info.lower_better, bool) and isinstance(info.digits, int) and info.description
        m = M.get_metric(name)
        assert (m.lower_better, m.digits, m.unit) == (info.lower_better, info.digits, info.unit)
    # the digits of the tables before presets carried them: PSNR 2, everything else 4
    assert {n: M.display_digits(n) for n in M.METRICS} == {n: 2 if n.startswith("psnr") else 4 for n in M.METRICS}
    assert M.unit_of("psnr_y") == "dB" and M.unit_of("ssim_y") == "" and M.display_digits("not_a_preset") == 4
    with pytest.raises(TypeError, match="digits"):
        M.preset("bad", "a.b:c", lower_better=True, digits="4")
    assert "bad" not in M.METRICS


def test_a_weight_free_metric_is_one_preset_entry(mae_preset, tmp_path):
    from dpir.report.plots import axis_label
    from dpir.report.tables import build_table

    # scored
    m = M.get_metric("mae", crop_border=1)
    assert m.name == "mae" and m.lower_better is True and m.convention == "MAE on RGB, 8-bit levels, border crop 1"
    ref = torch.zeros(2, 3, 8, 8)
    out = torch.full((2, 3, 8, 8), 1 / 255)
    out[1] = 3 / 255
    scores = M.evaluate([m, M.get_metric("psnr_y")], out, ref)
    assert scores["mae"].tolist() == pytest.approx([1.0, 3.0])
    # rendered: the arrow and the 3 digits come from the declaration, not from anything in the report
    images = ("a", "b")

    def rec(seed, vals):
        e = {"available": True, "lower_better": m.lower_better, "convention": m.convention,
             "mean": statistics.fmean(vals), "per_image": dict(zip(images, vals)), "n_nonfinite": 0}
        return {"method": "x", "seed": seed, "label": "x", "n_images": 2, "images": list(images), "metrics": {"mae": e},
                "cost": {"nfe": 1, "params_total": 1, "params_trained": 1, "flops_per_image": 1e9,
                         "flops_input_size": [8, 8], "seconds_per_image": 0.1}}
    t = build_table([rec(0, [1.0, 3.0]), rec(1, [2.0, 2.5])], "sr_x", "T", ["mae"])
    assert t.columns[1] == "mae ↓ [levels]" and t.rows[0]["mae ↓ [levels]"] == "2.125 [1.000, 3.000]"
    assert "- `mae`: MAE on RGB, 8-bit levels, border crop 1" in t.markdown()
    assert axis_label("mae") == "mae [levels] (lower is better)"
    assert axis_label("psnr_y") == "psnr_y [dB] (higher is better)"


# --- dataset kinds -----------------------------------------------------------------------------

def test_schema_dataset_kinds_are_the_table_keys():
    from dpir.data.prepare import DATASET_KINDS

    schema = yaml.safe_load((ROOT / "dpir/schemas/config.schema.yaml").read_text())
    assert schema["$defs"]["dataset"]["properties"]["kind"]["enum"] == list(DATASET_KINDS)
    assert all(k.description and callable(k.loader) for k in DATASET_KINDS.values())


def test_unknown_dataset_kind_is_a_user_error():
    from dpir.data.prepare import _source_images

    with pytest.raises(UnknownNameError, match=r"unknown dataset kind 'foldr'\. Did you mean 'folder'"):
        _source_images({"kind": "foldr"}, "test", {})
