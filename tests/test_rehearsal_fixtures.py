"""The dress rehearsal's fixtures (dpir.rehearsal): miniature archives and random-weight release checkpoints in
the official layouts, served on 127.0.0.1 as $DPIR_MIRROR, go through the real command line against the
committed registry -- `dpir fetch` (verified; only the hashes replaced through $DPIR_REGISTRY_OVERRIDES),
`dpir prepare` of every paper dataset and `dpir import-official` of every official network, with
config/paper.yaml + config/rehearsal.yaml."""
from __future__ import annotations

import json
import urllib.parse
import urllib.request

import pytest
import torch
from helpers import ROOT

from dpir import cli, rehearsal
from dpir.errors import DpirError

CONFIGS = [ROOT / "config" / "paper.yaml", ROOT / "config" / "rehearsal.yaml"]


@pytest.fixture(scope="module")
def merged():
    from dpir.config import load_config

    return load_config([ROOT / "config" / "config.yaml", *CONFIGS])


@pytest.fixture(scope="module")
def mirror(tmp_path_factory, merged):
    """Every needed fixture built once, served, and the environment of a rehearsal (every root in tmp)."""
    root = tmp_path_factory.mktemp("rehearsal")
    table = rehearsal.build_fixtures(root / "mirror", rehearsal.needed_names(merged))
    base, stop = rehearsal.serve(root / "mirror")
    requests: list[str] = []
    real_urlopen = urllib.request.urlopen

    def loopback_only(req, *a, **k):
        url = req.full_url if hasattr(req, "full_url") else req
        assert urllib.parse.urlparse(url).hostname == "127.0.0.1", f"the rehearsal tried to contact {url}"
        requests.append(url)
        return real_urlopen(req, *a, **k)

    with pytest.MonkeyPatch.context() as mp:
        for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
            mp.delenv(var, raising=False)
        mp.setenv("no_proxy", "127.0.0.1,localhost")
        mp.setenv("DPIR_MIRROR", base)
        mp.setenv("DPIR_REGISTRY_OVERRIDES", str(root / "mirror" / rehearsal.OVERRIDES_FILE))
        for var, sub in (("DPIR_DATA", "dl"), ("DPIR_WEIGHTS", "weights"), ("TORCH_HOME", "torch"),
                         ("HF_HUB_CACHE", "hf")):
            mp.setenv(var, str(root / sub))
        mp.setenv("DPIR_REGISTRY_LOCK", str(root / "registry.lock.json"))
        mp.setattr(urllib.request, "urlopen", loopback_only)
        yield {"root": root, "table": table, "requests": requests}
    stop()


def _cli(*argv: str) -> None:
    assert cli.main(list(argv)) == 0, argv


def _layers(root) -> list[str]:
    """paper.yaml + rehearsal.yaml, outputs and prepared data in tmp."""
    return [a for c in CONFIGS for a in ("-c", str(c))] + \
        ["--set", f"out={root / 'results'}", "--set", f"data_dir={root / 'prepared'}", "-q"]


def test_every_needed_name_has_a_fixture_at_its_mirror_path(merged):
    from dpir.fetch import registry

    needed = rehearsal.needed_names(merged)
    assert set(needed) <= set(rehearsal.BUILDERS)
    # the paper DAG's downloads: 8 dataset archives, 4 official networks, 4 competitor checkpoints, 3 metric files
    assert sorted(needed) == sorted([
        "div2k_valid_hr", "div2k_valid_lr_x4", "div2k_train_hr", "div2k_train_lr_x4", "gopro", "hide",
        "syntheticburst_val", "zurich_raw2rgb", "swinir_classical_x4", "rrdb_psnr_x4", "fftformer_gopro",
        "bsrt_weights", "esrgan_x4", "hat_srx4", "nafnet_gopro_width64", "restormer_motion_deblurring",
        "lpips_alexnet", "topiq_nr_koniq", "timm_resnet50"])
    e = registry.entries()
    assert rehearsal.fixture_path(ROOT, "hide") == ROOT / "www.dropbox.com/s/04w3wqxcuin9dy8/HIDE_dataset.zip"
    assert rehearsal.fixture_path(ROOT, "bsrt_weights") == ROOT / "drive.google.com" / e["bsrt_weights"].gdrive_id


def test_override_replaces_only_the_hashes(mirror, monkeypatch):
    from dpir.fetch import registry

    table = mirror["table"]
    entries = registry.entries()
    for name, rec in table.items():
        assert (entries[name].sha256, entries[name].size, entries[name].sha256_prefix) == \
            (rec["sha256"], rec["size"], None)
    monkeypatch.delenv("DPIR_REGISTRY_OVERRIDES")
    committed = registry.entries()
    assert committed["lpips_alexnet"].sha256_prefix == "7be5be79" and committed["hide"].sha256 is None
    for name in table:
        assert entries[name].urls == committed[name].urls and entries[name].target == committed[name].target
    bad = mirror["root"] / "bad.json"
    bad.write_text(json.dumps({"no_such_entry": {"sha256": "0" * 64, "size": 1}}))
    monkeypatch.setenv("DPIR_REGISTRY_OVERRIDES", str(bad))
    with pytest.raises(DpirError, match=r"DPIR_REGISTRY_OVERRIDES=.*bad\.json: 'no_such_entry' is not an entry"):
        registry.entries()
    bad.write_text(json.dumps({"hide": {"sha256": "abc", "size": 1}}))
    with pytest.raises(DpirError, match=r"entry 'hide' needs a 64-hex-digit 'sha256'"):
        registry.entries()


def test_fetch_prepare_and_import_every_fixture(mirror, merged):
    from dpir import fetch, paths
    from dpir.checkpoint import load_network
    from dpir.config import load_config
    from dpir.nets import build_network

    root, table = mirror["root"], mirror["table"]
    names = list(table)
    _cli("fetch", "-q", *names)
    # fetched from the mirror only, once each, every file verified against the fixtures' hashes
    assert len(mirror["requests"]) == len(names)
    assert all(u.startswith("http://127.0.0.1:") for u in mirror["requests"])
    assert {s["name"]: s["state"] for s in fetch.status() if s["name"] in table} == {n: "present" for n in names}
    assert not (root / "registry.lock.json").exists()     # published (overridden) hashes: nothing recorded

    cfg = load_config([ROOT / "config" / "config.yaml", *CONFIGS],
                      {"out": str(root / "results"), "data_dir": str(root / "prepared")})
    for task in cfg["enabled_tasks"]:
        t = cfg["tasks"][task]
        for ds in dict.fromkeys([*t["test_datasets"], t["train_dataset"]]):
            _cli("prepare", *_layers(root), "--task", task, "--dataset", ds)
            man = json.loads(paths.manifest(cfg, task, ds).read_text())
            kind, cap = cfg["datasets"][ds]["kind"], cfg["datasets"][ds].get("max_test_images")
            n = rehearsal.COUNTS[kind]
            expect_test = min(n["test"], cap) if cap else n["test"]
            assert (len(man["splits"]["test"]["ids"]), len(man["splits"]["train"]["ids"])) == \
                (expect_test, n["train"]), (task, ds)
    assert len(cfg["datasets"]) and cfg["datasets"]["div2k"]["max_test_images"] == 2

    official = {n: c for n, c in cfg["networks"].items() if c.get("official")}
    assert set(official) == {"swinir_sr", "rrdb_sr", "fftformer_deblur", "bsrt_burst"}
    for net, c in official.items():
        _cli("import-official", *_layers(root), "--network", net)
        folder = paths.network_dir(cfg, net)
        meta = json.loads((folder / "model.json").read_text())
        assert meta["official_source"] == f"fetch:{c['official']}"
        if c["official"] != "bsrt_weights":      # BSRT: the member taken out of the release zip
            assert meta["official_sha256"] == table[c["official"]]["sha256"]
        loaded = load_network(folder, expect_arch=c["arch"])
        ref = build_network(c["arch"], **c["kwargs"])           # the paper-size architecture
        assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in ref.parameters()), net
        assert meta["kwargs"] == c["kwargs"]
    # BSRT-Small as the paper states it: 4,915,665 parameters (dpir/nets/burst.py)
    assert sum(p.numel() for p in load_network(paths.network_dir(cfg, "bsrt_burst")).parameters()) == 4_915_665


def test_competitor_checkpoints_and_metric_weights_load(mirror):
    """The `kind: checkpoint` rows' files are detected by spandrel as their releases are, and the metric
    presets read the metric fixtures (no download at scoring time)."""
    from dpir import fetch
    from dpir.metrics import get_metric
    from dpir.nets.foreign import load_foreign

    detected = {}
    for name, arch in (("esrgan_x4", "ESRGAN"), ("hat_srx4", "HAT"), ("nafnet_gopro_width64", "NAFNet"),
                       ("restormer_motion_deblurring", "Restormer")):
        f = load_foreign(fetch.fetch(name, progress=False), name)
        detected[name] = (f.architecture, f.scale)
        assert f.architecture == arch
    assert [s for _, s in detected.values()] == [4, 4, 1, 1]
    g = torch.Generator().manual_seed(0)
    out, ref = torch.rand(1, 3, 64, 64, generator=g), torch.rand(1, 3, 64, 64, generator=g)
    for preset in ("lpips_alex", "topiq_delta"):
        m = get_metric(preset)
        m.check_available()
        v = m(out, ref)
        assert v.shape == (1,) and torch.isfinite(v).all(), preset
