"""Training data at paper scale: lazy (per-batch) decoding identical to the cached mode, and datasets
with their own observations (GoPro's real blur, DIV2K's official LR) trained on their stored pairs."""
import dataclasses
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import dpir.data.patches as patches
import dpir.data.prepare as prepare_mod
import dpir.train.loop as loop
from dpir.data.blur import make_blur_pair
from dpir.data.patches import PatchSampler
from dpir.data.prepare import StoredPair, load_split, prepare, stored_split
from dpir.errors import DpirError
from dpir.tasks import train_degradation, train_margin
from helpers import base_config

PATCH = 32


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    cfg = base_config(tmp_path_factory.mktemp("data"), device="cpu", threads=1)
    for task in ("sr", "deblur", "burst"):
        prepare(cfg, task, "bundled", splits=("train",))
    return cfg


def make_sampler(cfg, task_name, cache, pairs=None):
    task = cfg["tasks"][task_name]
    scale = 1 if task["kind"] == "burst" else int(task.get("scale", 1))
    return PatchSampler(stored_split(cfg, task_name, "bundled", "train") if pairs is None else pairs, PATCH,
                        scale=scale, degrade=train_degradation(task, cfg["datasets"]["bundled"]),
                        margin=train_margin(task), cache=cache)


def draw(sampler, seed=7):
    g = torch.Generator().manual_seed(seed)
    return [sampler.sample(3, g) for _ in range(3)] + [sampler.sample(2, g, with_lq=False)]


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def tensors_in(obj, seen=None) -> list:
    """Every tensor reachable from an object's attributes (lists, tuples, dicts, dataclasses)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in tensors_in(v, seen)]
    if isinstance(obj, (list, tuple, set)):
        return [t for v in obj for t in tensors_in(v, seen)]
    if dataclasses.is_dataclass(obj) or hasattr(obj, "__dict__"):
        return [t for v in vars(obj).values() for t in tensors_in(v, seen)]
    return []


@pytest.mark.parametrize("task_name", ["sr", "deblur", "burst"])
def test_lazy_cached_and_in_memory_batches_are_bitwise_identical(cfg, task_name):
    lazy, cached = make_sampler(cfg, task_name, cache=False), make_sampler(cfg, task_name, cache=True)
    assert (lazy.cached, cached.cached) == (False, True)
    assert make_sampler(cfg, task_name, cache=None).cached     # the bundled split is far below 1 GB
    # the pre-lazy way: every image decoded by load_split, tensors handed to the sampler
    legacy = make_sampler(cfg, task_name, cache=None,
                          pairs=[(lq, gt) for _, lq, gt in load_split(cfg, task_name, "bundled", "train")])
    ref = draw(legacy)
    assert same(draw(lazy), ref) and same(draw(cached), ref)
    assert not same(draw(lazy, seed=8), ref)      # the comparison can fail
    b = ref[0]
    if task_name == "sr":
        assert b["gt"].shape == (3, 3, PATCH, PATCH) and b["lq"].shape == (3, 3, PATCH // 4, PATCH // 4)
    elif task_name == "deblur":
        assert b["lq"].shape == b["gt"].shape == (3, 3, PATCH, PATCH)
    else:
        assert b["lq"].shape == (3, 14, 4, PATCH // 8, PATCH // 8) and len(b["meta"]) == 3


def test_lazy_sampler_holds_no_pixels_and_decodes_only_the_batch(cfg, monkeypatch):
    stored = stored_split(cfg, "sr", "bundled", "train")
    # 2,000 images (the same files under new ids) cost the lazy sampler paths and sizes only
    many = [dataclasses.replace(stored[i % len(stored)], id=f"img{i}") for i in range(2000)]
    lazy = make_sampler(cfg, "sr", cache=False, pairs=many)
    assert tensors_in(lazy) == [] and len(lazy.pairs) == 2000
    reads = []
    real = prepare_mod.read_image
    monkeypatch.setattr(prepare_mod, "read_image", lambda p, *a: reads.append(p.parent.name) or real(p, *a))
    g = torch.Generator().manual_seed(0)
    lazy.sample(1, g)
    assert sorted(reads) == ["gt", "lq"]          # sr: the one drawn pair
    reads.clear()
    lazy.sample(1, g, with_lq=False)
    assert reads == ["gt"]                        # clean-image training (denoiser) never reads lq
    reads.clear()
    make_sampler(cfg, "deblur", cache=False).sample(1, g)
    assert reads == ["gt"]                        # deblur blurs on the fly: the stored lq is not decoded
    assert tensors_in(lazy) == []                 # nothing kept after sampling
    assert tensors_in(make_sampler(cfg, "sr", cache=True))  # the cached mode does hold the images


def test_cache_threshold_and_sizes(cfg, monkeypatch):
    p = StoredPair(id="a", gt=None, lq=None, size=(8, 12), lq_size=(2, 3), task="sr", dataset="x")
    assert (p.nbytes(), p.nbytes(with_lq=False)) == (12 * (96 + 6), 12 * 96)
    # the brief's paper-scale figures: Zurich 46,839 448x448 JPGs; GoPro train 2,103 1280x720 pairs
    zurich = StoredPair(id="z", gt=None, lq=None, size=(448, 448), lq_size=None, task="burst", dataset="zurich")
    gopro = StoredPair(id="g", gt=None, lq=None, size=(720, 1280), lq_size=(720, 1280), task="deblur", dataset="gopro")
    assert round(46839 * zurich.nbytes() / 1e9, 1) == 112.8 and round(2103 * gopro.nbytes() / 1e9, 1) == 46.5
    assert patches.CACHE_BYTES == 2**30
    stored = stored_split(cfg, "sr", "bundled", "train")
    total = sum(12 * (h * w + (h // 4) * (w // 4)) for h, w in (s.size for s in stored))
    assert total == sum(s.nbytes() for s in stored) and total < 2**30
    monkeypatch.setattr(patches, "CACHE_BYTES", total)
    assert not make_sampler(cfg, "sr", cache=None).cached      # at the threshold: lazy
    monkeypatch.setattr(patches, "CACHE_BYTES", total + 1)
    assert make_sampler(cfg, "sr", cache=None).cached
    with pytest.raises(DpirError, match=r"train.cache_images must be true, false or null.*got 'yes'"):
        make_sampler(cfg, "sr", cache="yes")


def test_missing_corrupt_or_resized_training_image_names_file_and_fix(cfg, tmp_path):
    pair = stored_split(cfg, "sr", "bundled", "train")[0]
    gt = tmp_path / "gt.png"
    shutil.copy(pair.gt, gt)
    bad = dataclasses.replace(pair, gt=gt)
    fix = r"run `dpir prepare --task sr --dataset bundled` again"
    sampler = make_sampler(cfg, "sr", cache=False, pairs=[bad])   # lazy: nothing is read yet
    g = torch.Generator().manual_seed(0)
    sampler.sample(1, g)                                           # intact: fine
    gt.unlink()
    with pytest.raises(DpirError, match=rf"training image {gt} does not exist; .*{fix}"):
        sampler.sample(1, g)
    gt.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DpirError, match=rf"training image {gt} cannot be decoded .*{fix}"):
        sampler.sample(1, g)
    with pytest.raises(DpirError, match=rf"training image {gt} cannot be decoded .*{fix}"):
        make_sampler(cfg, "sr", cache=True, pairs=[bad])           # cached: at construction
    Image.fromarray(np.zeros((40, 44, 3), np.uint8)).save(gt)
    with pytest.raises(DpirError, match=rf"training image {gt} is \(40, 44\), its manifest says "
                                        rf"\({pair.size[0]}, {pair.size[1]}\); .*{fix}"):
        sampler.sample(1, g)


def test_train_degradation_follows_the_dataset_config():
    deblur = {"kind": "deblur", "scale": 1,
              "degradation": {"name": "motion_blur", "kernel_size": 9, "length": [2.0, 4.0], "noise_sigma": 0.01}}
    sr, burst = {"kind": "sr", "scale": 4}, {"kind": "burst", "scale": 4, "degradation": {"burst_size": 2}}
    # stored real observations: GoPro/HIDE blur, DIV2K official LR
    assert train_degradation(deblur, {"kind": "gopro"}) is None
    assert train_degradation(deblur, {"kind": "hide"}) is None
    assert train_degradation(sr, {"kind": "div2k", "lr": "official"}) is None
    assert train_degradation(sr, {"kind": "div2k"}) is None and train_degradation(sr) is None  # sr: always stored
    # no observations of their own: deblur blurs on the fly, bursts are always synthesised
    x = torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(1))
    want = make_blur_pair(x, torch.Generator().manual_seed(2), {k: v for k, v in deblur["degradation"].items()
                                                                 if k != "name"})[0]
    for ds in (None, {"kind": "bundled"}, {"kind": "folder", "path": "x"}, {"kind": "div2k", "lr": "regenerate"}):
        f = train_degradation(deblur, ds)
        assert torch.equal(f(x, torch.Generator().manual_seed(2)), want)
    for ds in (None, {"kind": "zurich"}, {"kind": "gopro"}):
        out = train_degradation(burst, ds)(torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(3)),
                                           torch.Generator().manual_seed(4))
        assert out["lq"].shape == (2, 4, 2, 2)


def test_training_on_gopro_crops_the_stored_real_blur(tmp_path, monkeypatch):
    """The loop's sampler for a GoPro-trained network crops the stored blurred frames (here the
    negative of the sharp one, which no synthetic blur makes), lazily when asked."""
    root = tmp_path / "gopro"
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        sharp = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
        for sub, img in (("target", sharp), ("input", 255 - sharp)):
            (root / "train" / "GoPro" / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / "train" / "GoPro" / sub / f"{name}.png")
    cfg = base_config(tmp_path, device="cpu", threads=1,
                      datasets={"gopro": {"kind": "gopro", "path": str(root)}},
                      networks={"nafnet_deblur": {"train": {"dataset": "gopro", "cache_images": False}}})
    prepare(cfg, "deblur", "gopro", splits=("train",))
    seen = {}

    def fake_fit(spec, sampler, train_cfg, out_dir, **kw):
        seen["sampler"] = sampler
        seen["batch"] = sampler.sample(4, torch.Generator().manual_seed(0))
        return {}

    monkeypatch.setattr(loop, "fit", fake_fit)
    loop.train_network(cfg, "nafnet_deblur", progress=False)
    s, b = seen["sampler"], seen["batch"]
    assert s.degrade is None and s.cached is False and [p.id for p in s.pairs] == ["a", "b"]
    assert b["lq"].shape == b["gt"].shape == (4, 3, PATCH, PATCH)
    assert torch.allclose(b["lq"], 1 - b["gt"], atol=1e-6, rtol=0)
    # the same network trained on the bundled images still blurs on the fly
    cfg["networks"]["nafnet_deblur"]["train"].update(dataset="bundled", cache_images=None)   # None: automatic
    prepare(cfg, "deblur", "bundled", splits=("train",))
    loop.train_network(cfg, "nafnet_deblur", progress=False)
    assert seen["sampler"].degrade is not None and seen["sampler"].cached is True
