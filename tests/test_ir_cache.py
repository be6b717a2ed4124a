"""Fusion training with ``train.cache_ir``: the frozen IR net's estimates of the whole training
observations are computed once, stored, and cropped with the ground truth."""
import json

import pytest
import torch

import dpir.data.store as store_mod
import dpir.train.loop as loop
from dpir.checkpoint import load_network, read_meta, save_network
from dpir.data.loader import StepBatches, train_loader
from dpir.data.patches import dihedral
from dpir.data.prepare import prepare
from dpir.data.store import (IR_DTYPE, build_ir_store, ir_store_dir, open_ir_store, open_store, weights_key)
from dpir.errors import DpirError
from dpir.rng import sample_generators
from helpers import base_config

IR = "swinir_sr"
#: a narrower, one-stage SwinIR than the default config's: every store build and every reference estimate
#: runs the IR net on all six whole training images (up to 352x352 lq), ~7x faster at this width
SMALL_IR = {"embed_dim": 12, "depths": [1], "num_heads": [2]}


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    cfg = base_config(tmp_path_factory.mktemp("ircache"), device="cpu", threads=1,
                      networks={IR: {"kwargs": SMALL_IR}})
    assert cfg["networks"][IR]["kwargs"]["window_size"] == 8      # merged over the default SwinIR's kwargs
    prepare(cfg, "sr", "bundled", splits=("train",))
    for net in (IR, "mirnet_s"):
        loop.train_network(cfg, net, progress=False)
    return cfg


def ir_dir(cfg):
    from pathlib import Path

    return Path(cfg["out"]) / "networks" / IR


def with_cache(cfg, on=True, workers=0):
    import copy

    c = copy.deepcopy(cfg)
    c["networks"]["fusion_sr"]["train"].update(cache_ir=on, workers=workers)
    return c


def placement(store, n, seed, patch, scale):
    """(image, top, left, k) of sample ``n``: the draws of TrainPatches.__getitem__, in its order."""
    g = sample_generators(seed, [n], "data")[0]
    i = int(torch.randint(len(store), (1,), generator=g))
    H, W = store.size(i)
    top = int(torch.randint((H - patch) // scale + 1, (1,), generator=g)) * scale
    left = int(torch.randint((W - patch) // scale + 1, (1,), generator=g)) * scale
    return i, top, left, int(torch.randint(8, (1,), generator=g))


_ESTIMATES: dict = {}


def whole_estimates(cfg, store):
    """IR(whole lq image) of every training image, for the IR weights now in the checkpoint."""
    key = weights_key(ir_dir(cfg))
    if key not in _ESTIMATES:
        net = load_network(ir_dir(cfg), "cpu")
        with torch.no_grad():
            _ESTIMATES[key] = [net(store.crop(i, "lq", 0, 0, *store.images[i]["lq"])[None])[0]
                               for i in range(len(store))]
    return _ESTIMATES[key]


def smallest(store, n=2):
    """The store with its ``n`` smallest images only (a short build)."""
    import dataclasses

    return dataclasses.replace(store, images=sorted(store.images, key=lambda e: e["gt"][0] * e["gt"][1])[:n])


class CountCalls:
    """Counts forward calls of the IR network that the fusion trainer loads."""

    def __init__(self, monkeypatch):
        self.calls = 0
        load = loop._CheckedTrainContext.load

        def counted(ctx, network):
            net = load(ctx, network)
            if network == IR:
                net.register_forward_hook(lambda *a: setattr(self, "calls", self.calls + 1))
            return net
        monkeypatch.setattr(loop._CheckedTrainContext, "load", counted)


def test_stored_estimate_crops_equal_the_ir_net_on_the_whole_image(cfg):
    store = open_store(cfg, "sr", "bundled")
    key = weights_key(ir_dir(cfg))
    build_ir_store(store, IR, key, load_network(ir_dir(cfg), "cpu"), "cpu")
    st = open_ir_store(store, IR, key)
    assert st.dtype == IR_DTYPE == "float16" and st.folder == ir_store_dir(store, IR, key)
    assert st.folder.name == f"train.ir-{IR}-{key[:12]}.store"
    for i, full in enumerate(whole_estimates(cfg, store)):
        H, W = store.size(i)
        assert full.shape == (3, H, W)
        assert torch.equal(st.crop(i, 0, 0, H, W), full.half().float())       # exactly the float16 rounding
        for top, left, h, w, k in ((4, 8, 32, 32, 0), (H - 32, W - 20, 32, 20, 5), (0, 12, 24, 24, 3)):
            got, ref = st.crop(i, top, left, h, w, k), dihedral(full[:, top: top + h, left: left + w], k)
            assert got.dtype == torch.float32 and got.shape == ref.shape
            assert ((got - ref).abs() <= ref.abs() * 2.0 ** -11 + 2.0 ** -25).all()   # float16's precision
    H, W = store.size(0)
    with pytest.raises(DpirError, match=rf"^a {H + 4}x8 crop at \(0, 0\) does not fit the IR estimate of "
                                        rf"'{store.images[0]['id']}' \({H}x{W}\) in "):
        st.crop(0, 0, 0, H + 4, 8)


@pytest.mark.parametrize("workers", [0, 2])
def test_training_batches_carry_the_crop_of_the_stored_estimate(cfg, monkeypatch, workers):
    seen, fit = {}, loop.fit

    def spy(spec, data, train_cfg, *a, **k):
        seen.update(data=data, train_cfg=train_cfg)
        return fit(spec, data, train_cfg, *a, **k)
    monkeypatch.setattr(loop, "fit", spy)
    counter = CountCalls(monkeypatch)
    c = with_cache(cfg, workers=workers)
    rec = loop.train_network(c, "fusion_sr", progress=False)
    store = open_store(cfg, "sr", "bundled")
    key = weights_key(ir_dir(cfg))
    assert rec["cache_ir"] == ir_store_dir(store, IR, key).name
    assert counter.calls == 0        # the store of the first test is current: the IR net never ran
    data, tc = seen["data"], seen["train_cfg"]
    assert data.ir is not None and tc["cache_ir"] is True
    steps, batch, patch = tc["steps"], tc["batch"], tc["patch"]
    estimates = whole_estimates(cfg, store)
    got = list(train_loader(data, StepBatches(batch, steps), workers=workers))
    assert len(got) == steps
    for s, b in enumerate(got):
        assert b["ir"].shape == b["gt"].shape == (batch, 3, patch, patch)
        for j in range(batch):
            i, top, left, k = placement(store, s * batch + j, tc["seed"], patch, 4)
            ref = dihedral(estimates[i][:, top: top + patch, left: left + patch], k).half().float()
            assert torch.equal(b["ir"][j], ref)
            assert torch.equal(b["gt"][j], store.crop(i, "gt", top, left, patch, patch, k))
    if workers:
        return
    # the fusion net learns from the cached crops, not from IR(lq crop): another result, another hash
    plain = loop.train_network(with_cache(cfg, on=False), "fusion_sr", progress=False)
    assert counter.calls == steps                                   # one batched IR call per step without it
    assert plain["config_hash"] != rec["config_hash"] and plain["final_loss"] != rec["final_loss"]
    assert "cache_ir" not in plain


def test_store_is_rebuilt_when_the_ir_weights_change_and_only_then(cfg, monkeypatch):
    store = open_store(cfg, "sr", "bundled")
    old = ir_store_dir(store, IR, weights_key(ir_dir(cfg)))
    loop.train_network(with_cache(cfg), "fusion_sr", progress=False)
    stamp = (old / "pixels.bin").stat()
    counter = CountCalls(monkeypatch)
    loop.train_network(with_cache(cfg), "fusion_sr", progress=False)        # nothing changed: reused
    assert counter.calls == 0 and (old / "pixels.bin").stat().st_mtime_ns == stamp.st_mtime_ns
    # the same weights written again (a retrain with the same config is bitwise the same): still reused
    meta = read_meta(ir_dir(cfg))
    net = load_network(ir_dir(cfg), "cpu")
    extra = {k: v for k, v in meta.items() if k not in ("arch", "kwargs")}
    save_network(net, ir_dir(cfg), meta["arch"], meta["kwargs"], **extra)
    loop.train_network(with_cache(cfg), "fusion_sr", progress=False)
    assert counter.calls == 0 and (old / "pixels.bin").stat().st_mtime_ns == stamp.st_mtime_ns
    # the IR checkpoint replaced by other weights: a new store, built by running the new net once per
    # image; the old one is deleted once the new one is complete
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(0.9)
    save_network(net, ir_dir(cfg), meta["arch"], meta["kwargs"], **extra)
    key = weights_key(ir_dir(cfg))
    new = ir_store_dir(store, IR, key)
    assert new != old
    rec = loop.train_network(with_cache(cfg), "fusion_sr", progress=False)
    assert counter.calls == len(store) and rec["cache_ir"] == new.name
    assert not old.exists() and sorted(f.name for f in new.iterdir()) == ["index.json", "pixels.bin"]
    st = open_ir_store(store, IR, key)
    for i, full in enumerate(whole_estimates(cfg, store)):
        assert torch.equal(st.crop(i, 0, 0, *store.size(i)), full.half().float())
    # the data store rebuilt for re-prepared data: the estimates are stale and rebuilt
    manifest = store.folder.parent / "manifest.json"
    manifest.write_text(manifest.read_text() + "\n")
    counter.calls = 0
    loop.train_network(with_cache(cfg), "fusion_sr", progress=False)
    assert counter.calls == len(store)
    assert json.loads((new / "index.json").read_text())["key"]["data"] == open_store(cfg, "sr", "bundled").key


@pytest.mark.parametrize("network, task", [("fusion_deblur", "deblur"), ("fusion_burst", "burst")])
def test_cache_ir_with_on_the_fly_observations_is_one_line_naming_the_key(cfg, network, task):
    c = with_cache(cfg)
    c["networks"][network]["train"]["cache_ir"] = True
    msg = (f"networks.{network}.train.cache_ir: true needs stored training observations, but task {task!r} makes "
           f"them on the fly from dataset 'bundled' (a new random degradation per sample: no fixed image to "
           f"estimate once); set it to false")
    with pytest.raises(DpirError) as e:
        loop.train_network(c, network, progress=False)
    assert str(e.value) == msg


def test_cache_ir_on_a_trainer_without_an_ir_net_is_refused(cfg):
    c = with_cache(cfg)
    c["networks"]["rrdb_sr"]["train"]["cache_ir"] = True
    with pytest.raises(DpirError, match=r"^networks.rrdb_sr.train.cache_ir: true applies to fusion training only"):
        loop.train_network(c, "rrdb_sr", progress=False)


@pytest.mark.parametrize("when", ["mid-build", "before the index"])
def test_a_killed_build_leaves_nothing_half_written(cfg, monkeypatch, when):
    store = smallest(open_store(cfg, "sr", "bundled"), 3)
    net = load_network(ir_dir(cfg), "cpu")
    name, key = f"killed{len(when)}", "f" * 64   # a folder of its own, which no other test reads
    folder = ir_store_dir(store, name, key)
    calls = {"n": 0}

    def dies(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3 or when == "before the index":
            raise KeyboardInterrupt
    if when == "mid-build":
        net.register_forward_pre_hook(dies)        # the third image's forward pass is killed
    else:
        monkeypatch.setattr(store_mod, "atomic_write_text", dies)
    with pytest.raises(KeyboardInterrupt):
        build_ir_store(store, name, key, net, "cpu")
    monkeypatch.undo()
    left = sorted(f.name for f in folder.iterdir())
    assert left == ([] if when == "mid-build" else ["pixels.bin"])     # never an index: never a store
    with pytest.raises(DpirError, match=rf"^the IR estimate store {folder} is missing or stale"):
        open_ir_store(store, name, key)
    build_ir_store(store, name, key, load_network(ir_dir(cfg), "cpu"), "cpu")   # the next build completes
    assert sorted(f.name for f in folder.iterdir()) == ["index.json", "pixels.bin"]
    assert len(open_ir_store(store, name, key).images) == len(store)
