"""The training data loader: batches independent of workers, resume point and DDP share; the patch
store's round trip, staleness and crash safety."""
import json
import shutil

import pytest
import torch

import dpir.data.store as store_mod
from dpir.cli import main
from dpir.data.images import read_image, write_png
from dpir.data.loader import StepBatches, TrainPatches, collate, train_loader
from dpir.data.prepare import StoredPair, prepare
from dpir.data.store import PatchStore, build_store, open_store, store_dir
from dpir.errors import DpirError
from dpir.tasks import train_degradation, train_margin
from helpers import base_config

PATCH = 32


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    cfg = base_config(tmp_path_factory.mktemp("loader"), device="cpu", threads=1)
    for task in ("deblur", "burst"):
        prepare(cfg, task, "bundled", splits=("train",))
        build_store(cfg, task, "bundled")
    return cfg


def dataset(cfg, task_name, seed=3):
    task = cfg["tasks"][task_name]
    return TrainPatches(open_store(cfg, task_name, "bundled"), PATCH, seed=seed, degrade=train_degradation(task),
                        margin=train_margin(task))


def batches(data, workers, batch=4, steps=4, start=0, rank=0, world=1):
    return list(train_loader(data, StepBatches(batch, steps, start=start, rank=rank, world=world), workers=workers))


def equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("task_name", ["deblur", "burst"])
def test_batches_do_not_depend_on_workers_resume_point_or_ddp_share(cfg, task_name):
    data = dataset(cfg, task_name)
    ref = batches(data, 0)
    assert len(ref) == 4 and ref[0]["gt"].shape[0] == 4
    assert equal(batches(data, 2), ref)                             # 2 worker processes
    assert equal(batches(data, 1, start=2), ref[2:])                # a run resumed at step 2
    # two DDP ranks: each takes its contiguous half of every global batch
    halves = [batches(data, 0, rank=r, world=2) for r in (0, 1)]
    for s in range(4):
        assert equal(collate([{k: v[j] if k != "meta" else v[j] for k, v in halves[r][s].items()}
                              for r in (0, 1) for j in range(2)]), ref[s])
    assert not equal(batches(dataset(cfg, task_name, seed=4), 0), ref)   # the comparison can fail
    if task_name == "burst":
        assert len(ref[0]["meta"]) == 4 and isinstance(ref[0]["meta"][0], dict)


def test_step_batches_are_global_sample_indices():
    assert list(StepBatches(4, 3)) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert list(StepBatches(4, 3, start=1, rank=1, world=2)) == [[6, 7], [10, 11]]
    assert len(StepBatches(4, 3, start=1)) == 2
    with pytest.raises(DpirError, match=r"^train.batch 6 is the global batch and must be divisible by the 4 training "
                                        r"processes; set train.batch to a multiple of 4$"):
        StepBatches(6, 3, world=4)
    with pytest.raises(DpirError, match=r"train.workers must be an integer >= 0, got -1"):
        train_loader(None, StepBatches(4, 3), workers=-1)


def test_store_round_trip_8_and_16_bit_equals_the_png_crop(tmp_path):
    g = torch.Generator().manual_seed(0)
    pairs = []
    for i, (bits, h, w) in enumerate([(8, 40, 52), (8, 36, 36)]):
        gt, lq = torch.rand(3, h, w, generator=g), torch.rand(3, h // 4, w // 4, generator=g)
        write_png(tmp_path / f"gt{i}.png", gt, bits=bits)
        write_png(tmp_path / f"lq{i}.png", lq, bits=bits)
        pairs.append(StoredPair(id=f"im{i}", gt=tmp_path / f"gt{i}.png", lq=tmp_path / f"lq{i}.png", size=(h, w),
                                lq_size=(h // 4, w // 4), task="sr", dataset="x"))
    for bits in (8, 16):
        if bits == 16:
            for i, p in enumerate(pairs):
                write_png(p.gt, read_image(p.gt) * 0.5 + 1 / 3, bits=16)   # values no 8-bit PNG holds
                write_png(p.lq, read_image(p.lq) * 0.5 + 1 / 3, bits=16)
        folder = tmp_path / f"store{bits}"
        store_mod._build_locked(folder, pairs, key="k")
        idx = json.loads((folder / "index.json").read_text())
        st = PatchStore(folder=folder, dtype=idx["dtype"], images=idx["images"])
        assert idx["dtype"] == ("uint8" if bits == 8 else "uint16")
        for i, p in enumerate(pairs):
            gt, lq = read_image(p.gt), read_image(p.lq)
            assert torch.equal(st.crop(i, "gt", 4, 8, 24, 20), gt[:, 4:28, 8:28])
            assert torch.equal(st.crop(i, "lq", 1, 2, 5, 6), lq[:, 1:6, 2:8])
            assert torch.equal(st.crop(i, "gt", 0, 0, *p.size), gt)
        with pytest.raises(DpirError, match=r"^a 64x64 crop at \(0, 0\) does not fit the stored gt image 'im1' "
                                            r"\(36x36\) of .*store\d+; lower `train.patch` in the config$"):
            st.crop(1, "gt", 0, 0, 64, 64)


def test_stale_or_missing_store_is_rebuilt_when_small_else_refused_with_the_fix(tmp_path, monkeypatch, capsys):
    cfg = base_config(tmp_path, device="cpu", threads=1)
    args = ["prepare", "--task", "sr", "--dataset", "bundled", "--set", f"out={cfg['out']}",
            "--set", f"data_dir={cfg['data_dir']}", "--quiet"]
    assert main(args) == 0                                           # `dpir prepare` builds the store
    folder = store_dir(cfg, "sr", "bundled")
    assert f"patch store: {folder}" in capsys.readouterr().out
    key = json.loads((folder / "index.json").read_text())["key"]
    st = open_store(cfg, "sr", "bundled")                          # current: opened as it is
    assert len(st) == 6
    manifest = tmp_path / "data" / "sr" / "bundled" / "manifest.json"
    manifest.write_text(manifest.read_text() + "\n")                # the split was prepared again
    fix = "run `dpir prepare --task sr --dataset bundled` (it builds the store of the train split)"
    with pytest.raises(DpirError, match=rf"^the patch store {folder} is stale \(built for other prepared data\): "
                                        rf"{fix.replace('(', '[(]').replace(')', '[)]')}$"):
        open_store(cfg, "sr", "bundled")
    open_store(cfg, "sr", "bundled", build_below=2**30)            # small: rebuilt
    assert json.loads((folder / "index.json").read_text())["key"] != key
    # a build killed before its index is written leaves no store that passes, and no temporary file
    manifest.write_text(manifest.read_text() + "\n")

    def killed(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(store_mod, "atomic_write_text", killed)
    with pytest.raises(KeyboardInterrupt):
        build_store(cfg, "sr", "bundled")
    monkeypatch.undo()
    assert sorted(f.name for f in folder.iterdir()) == ["pixels.bin"]
    with pytest.raises(DpirError, match=rf"^the patch store {folder} is missing: run `dpir prepare"):
        open_store(cfg, "sr", "bundled", build_below=1)            # large (above 1 byte): refused
    assert main(args[:5] + ["--set", f"out={cfg['out']}", "--set", f"data_dir={cfg['data_dir']}"]) == 0
    assert open_store(cfg, "sr", "bundled").images == st.images


def test_training_refuses_a_large_split_without_its_store(tmp_path, monkeypatch):
    import dpir.data.patches as patches
    from dpir.train.loop import train_network

    cfg = base_config(tmp_path, device="cpu", threads=1)
    prepare(cfg, "sr", "bundled", splits=("train",))
    shutil.rmtree(store_dir(cfg, "sr", "bundled"))                 # e.g. a data_dir copied without it
    monkeypatch.setattr(patches, "CACHE_BYTES", 1000)               # the bundled split counts as large
    with pytest.raises(DpirError, match=r"patch store .*train.store is missing: run `dpir prepare --task sr "
                                        r"--dataset bundled`"):
        train_network(cfg, "swinir_sr", progress=False)
    assert not store_dir(cfg, "sr", "bundled").exists()
