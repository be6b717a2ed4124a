"""Training data at paper scale: per-sample-index batches from the memory-mapped patch store, equal to
crops of the prepared PNGs, and datasets with their own observations (GoPro's real blur, DIV2K's
official LR) trained on their stored pairs."""
import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import dpir.data.patches as patches
import dpir.train.loop as loop
from dpir.data.blur import make_blur_pair
from dpir.data.loader import TrainPatches, collate
from dpir.data.patches import dihedral
from dpir.data.prepare import StoredPair, prepare, stored_split
from dpir.data.store import build_store, open_store
from dpir.errors import DpirError
from dpir.rng import sample_generators
from dpir.tasks import train_degradation, train_margin
from helpers import base_config

PATCH = 32


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    cfg = base_config(tmp_path_factory.mktemp("data"), device="cpu", threads=1)
    for task in ("sr", "deblur", "burst"):
        prepare(cfg, task, "bundled", splits=("train",))
        build_store(cfg, task, "bundled")
    return cfg


def make_data(cfg, task_name, seed=7, with_lq=True, **kw):
    task = cfg["tasks"][task_name]
    scale = 1 if task["kind"] == "burst" else int(task.get("scale", 1))
    return TrainPatches(open_store(cfg, task_name, "bundled", **kw), PATCH, seed=seed, scale=scale,
                        degrade=train_degradation(task, cfg["datasets"]["bundled"]), margin=train_margin(task),
                        with_lq=with_lq)


def png_sample(cfg, task_name, n, seed=7):
    """Sample n made by hand from the prepared PNGs (read_image) and the sample's own generator."""
    task = cfg["tasks"][task_name]
    pairs = stored_split(cfg, task_name, "bundled", "train")
    s = 1 if task["kind"] == "burst" else int(task.get("scale", 1))
    p = PATCH + 2 * train_margin(task)
    g = sample_generators(seed, [n], "data")[0]
    i = int(torch.randint(len(pairs), (1,), generator=g))
    lq, gt = pairs[i].read()
    H, W = pairs[i].size
    top = int(torch.randint((H - p) // s + 1, (1,), generator=g)) * s
    left = int(torch.randint((W - p) // s + 1, (1,), generator=g)) * s
    k = int(torch.randint(8, (1,), generator=g))
    out = {"gt": dihedral(gt[..., top: top + p, left: left + p], k)}
    degrade = train_degradation(task, cfg["datasets"]["bundled"])
    if degrade is None:
        out["lq"] = dihedral(lq[..., top // s: (top + p) // s, left // s: (left + p) // s], k)
    else:
        made = degrade(out["gt"], g)
        out.update(made if isinstance(made, dict) else {"lq": made})
    return out


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def tensors_in(obj, seen=None) -> list:
    """Every tensor or in-memory array reachable from an object's attributes (lists, dicts, dataclasses)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor) or (isinstance(obj, np.ndarray) and not isinstance(obj, np.memmap)):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in tensors_in(v, seen)]
    if isinstance(obj, (list, tuple, set)):
        return [t for v in obj for t in tensors_in(v, seen)]
    if dataclasses.is_dataclass(obj) or hasattr(obj, "__dict__"):
        return [t for v in vars(obj).values() for t in tensors_in(v, seen)]
    return []


@pytest.mark.parametrize("task_name", ["sr", "deblur", "burst"])
def test_store_samples_equal_the_png_crops_bitwise(cfg, task_name):
    data = make_data(cfg, task_name)
    for n in (0, 1, 5, 1234567):
        assert same(data[n], png_sample(cfg, task_name, n))
    assert not same(data[0], data[1])                          # the comparison can fail
    assert not same(make_data(cfg, task_name, seed=8)[0], data[0])
    b = collate([data[n] for n in range(3)])
    if task_name == "sr":
        assert b["gt"].shape == (3, 3, PATCH, PATCH) and b["lq"].shape == (3, 3, PATCH // 4, PATCH // 4)
    elif task_name == "deblur":
        assert b["lq"].shape == b["gt"].shape == (3, 3, PATCH, PATCH)
    else:
        assert b["lq"].shape == (3, 14, 4, PATCH // 8, PATCH // 8) and len(b["meta"]) == 3
        assert isinstance(b["meta"][0], dict) and b["meta"][0] != b["meta"][1]
    assert set(make_data(cfg, task_name, with_lq=False)[0]) == {"gt"}


def test_store_is_memory_mapped_and_holds_no_decoded_pixels(cfg):
    data = make_data(cfg, "sr")
    data[0]
    assert isinstance(data.store.pixels, np.memmap) and tensors_in(data) == []
    idx = json.loads((data.store.folder / "index.json").read_text())
    sizes = [tuple(e["gt"]) for e in idx["images"]]
    assert sizes == [p.size for p in stored_split(cfg, "sr", "bundled", "train")] and idx["dtype"] == "uint8"
    # uint8 HWC, gt then its lq, back to back: the file is exactly the split's integers
    assert idx["nbytes"] == sum(3 * (h * w + (h // 4) * (w // 4)) for h, w in sizes)
    # cache_images: true reads the store into memory; same samples
    mem = make_data(cfg, "sr", in_memory=True)
    assert same(mem[3], data[3]) and not isinstance(mem.store.pixels, np.memmap) and tensors_in(mem)
    assert patches.CACHE_BYTES == 2**30


def test_cache_threshold_and_sizes():
    p = StoredPair(id="a", gt=None, lq=None, size=(8, 12), lq_size=(2, 3), task="sr", dataset="x")
    assert (p.nbytes(), p.nbytes(with_lq=False)) == (12 * (96 + 6), 12 * 96)
    # the brief's paper-scale figures: Zurich 46,839 448x448 JPGs; GoPro train 2,103 1280x720 pairs
    zurich = StoredPair(id="z", gt=None, lq=None, size=(448, 448), lq_size=None, task="burst", dataset="zurich")
    gopro = StoredPair(id="g", gt=None, lq=None, size=(720, 1280), lq_size=(720, 1280), task="deblur", dataset="gopro")
    assert round(46839 * zurich.nbytes() / 1e9, 1) == 112.8 and round(2103 * gopro.nbytes() / 1e9, 1) == 46.5


def test_corrupt_training_image_stops_the_store_build_naming_file_and_fix(tmp_path):
    cfg = base_config(tmp_path, device="cpu", threads=1)
    prepare(cfg, "sr", "bundled", splits=("train",))
    folder = tmp_path / "data" / "sr" / "bundled" / "train.store"
    assert folder.is_dir()                # prepare builds the store of a train split
    shutil.rmtree(folder)                 # the images are damaged before a store is built from them
    pair = stored_split(cfg, "sr", "bundled", "train")[0]
    fix = r"run `dpir prepare --task sr --dataset bundled` again"
    pair.gt.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DpirError, match=rf"training image {pair.gt} cannot be decoded .*{fix}"):
        build_store(cfg, "sr", "bundled")
    Image.fromarray(np.zeros((40, 44, 3), np.uint8)).save(pair.gt)
    with pytest.raises(DpirError, match=rf"training image {pair.gt} is \(40, 44\), its manifest says "
                                        rf"\({pair.size[0]}, {pair.size[1]}\); .*{fix}"):
        build_store(cfg, "sr", "bundled")
    pair.gt.unlink()
    with pytest.raises(DpirError, match=rf"training image {pair.gt} does not exist; .*{fix}"):
        build_store(cfg, "sr", "bundled")
    assert not folder.exists()            # the images are checked before anything is written


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
    """The loop's data of a GoPro-trained network crop the stored blurred frames (here the
    negative of the sharp one, which no synthetic blur makes)."""
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

    def fake_fit(spec, data, train_cfg, out_dir, **kw):
        seen["data"] = data
        seen["batch"] = collate([data[n] for n in range(4)])
        return {}

    monkeypatch.setattr(loop, "fit", fake_fit)
    loop.train_network(cfg, "nafnet_deblur", progress=False)      # a small split: its store is built here
    s, b = seen["data"], seen["batch"]
    assert s.degrade is None and not s.store.in_memory and [e["id"] for e in s.store.images] == ["a", "b"]
    assert b["lq"].shape == b["gt"].shape == (4, 3, PATCH, PATCH)
    assert torch.allclose(b["lq"], 1 - b["gt"], atol=1e-6, rtol=0)
    # the same network trained on the bundled images still blurs on the fly
    cfg["networks"]["nafnet_deblur"]["train"].update(dataset="bundled", cache_images=True)
    prepare(cfg, "deblur", "bundled", splits=("train",))
    loop.train_network(cfg, "nafnet_deblur", progress=False)
    assert seen["data"].degrade is not None and seen["data"].store.in_memory is True
    cfg["networks"]["nafnet_deblur"]["train"]["cache_images"] = "yes"
    with pytest.raises(DpirError, match=r"train.cache_images must be true, false or null.*got 'yes'"):
        loop.train_network(cfg, "nafnet_deblur", progress=False)
