"""The patch store: a prepared train split decoded once into one memory-mapped array.

    <data_dir>/<task>/<dataset>/<split>.store/pixels.bin   uint8 (or uint16) HWC images, back to back
    <data_dir>/<task>/<dataset>/<split>.store/index.json   per image: id, offset, shape (gt and lq); the key

Training crops read only their bytes (numpy memmap slicing: 256x256x3 bytes of a 2K image instead of
decoding its whole PNG), in any number of data-loader workers, which share the file's pages through
the OS cache.  Pixels are the prepared PNGs' integers, so ``crop / 255`` (``/ 65535`` for 16-bit
PNGs) equals the crop of :func:`dpir.data.images.read_image` bit for bit.

``key`` is the sha256 of the dataset's ``manifest.json``: ``dpir prepare`` rewrites the manifest
whenever it prepares the split again, so a store built for other images or settings is detected
(:func:`open_store`).  ``dpir prepare`` builds the store of every train split (:func:`build_store`);
training builds a missing or stale store itself only when the split is small (below
:data:`dpir.data.patches.CACHE_BYTES` as float32, milliseconds to build: the bundled default
config), and otherwise stops with one line naming ``dpir prepare``: a paper-scale build (DIV2K train:
~10 min) belongs to the prepare job, not to every training job that finds it missing.

Writes are crash-safe: ``pixels.bin`` and then ``index.json`` (the completion marker, carrying the
key) are each written under a private temporary name and renamed in (:func:`dpir.atomic.atomic_file`),
under the store's exclusive lock; a killed build leaves the old store or none, never a half-written
one that passes the key check.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dpir import paths
from dpir.atomic import atomic_file, atomic_write_text, exclusive_lock
from dpir.errors import DpirError

log = logging.getLogger(__name__)

PIXELS, INDEX = "pixels.bin", "index.json"
FORMAT = 1


def store_dir(config: dict, task: str, dataset: str, split: str = "train") -> Path:
    return paths.prepared(config, task, dataset) / f"{split}.store"


def manifest_key(config: dict, task: str, dataset: str) -> str:
    path = paths.manifest(config, task, dataset)
    if not path.exists():
        raise DpirError(f"{path} is missing: run `dpir prepare --task {task} --dataset {dataset}` first")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _integers(x) -> tuple[np.ndarray, str]:
    """A decoded (3, H, W) float image in [0, 1] -> its stored integers HWC and their dtype name."""
    a = x.permute(1, 2, 0).numpy()
    u8 = np.round(a * 255.0)
    if np.array_equal(u8.astype(np.float32) / 255.0, a):
        return u8.astype(np.uint8), "uint8"
    u16 = np.round(a * 65535.0)
    if np.array_equal(u16.astype(np.float32) / 65535.0, a):
        return u16.astype(np.uint16), "uint16"
    raise DpirError("a prepared training image is neither 8- nor 16-bit; run `dpir prepare` again")


def build_store(config: dict, task: str, dataset: str, split: str = "train") -> Path | None:
    """Decode the prepared ``split`` once into its store (see the module docstring); returns the
    store folder, or None when the split has no images.  Rebuilt only when stale."""
    from dpir.data.prepare import stored_split

    key = manifest_key(config, task, dataset)
    pairs = stored_split(config, task, dataset, split)
    if not pairs:
        return None
    folder = store_dir(config, task, dataset, split)
    with exclusive_lock(folder, f"the patch store {folder}"):
        if _current(folder, key):
            return folder
        _build_locked(folder, pairs, key)
    return folder


def _current(folder: Path, key: str) -> bool:
    try:
        idx = json.loads((folder / INDEX).read_text())
        return idx.get("key") == key and idx.get("format") == FORMAT and \
            (folder / PIXELS).stat().st_size == idx["nbytes"]
    except (OSError, ValueError, KeyError):
        return False


def _build_locked(folder: Path, pairs: list, key: str) -> None:
    # two passes: the first decodes each image to learn its dtype (16-bit PNGs need uint16), the
    # second writes; decoding twice costs less than holding a 26 GB split in memory
    entries, dtype, offset = [], None, 0
    for p in pairs:
        lq, gt = p.read(with_lq=p.lq is not None)
        for x in (gt, lq):
            if x is not None:
                d = _integers(x)[1]
                dtype = d if dtype in (None, d) else "uint16"
        entries.append({"id": p.id, "gt": list(gt.shape[-2:]), "lq": None if lq is None else list(lq.shape[-2:])})
    dt = np.dtype(dtype)
    for e in entries:
        e["gt_offset"] = offset
        offset += e["gt"][0] * e["gt"][1] * 3
        if e["lq"] is not None:
            e["lq_offset"] = offset
            offset += e["lq"][0] * e["lq"][1] * 3
    (folder / INDEX).unlink(missing_ok=True)          # no index: no store, whatever happens below
    with atomic_file(folder / PIXELS) as tmp:
        out = np.memmap(tmp, dtype=dt, mode="w+", shape=(max(offset, 1),))
        for p, e in zip(pairs, entries):
            lq, gt = p.read(with_lq=e["lq"] is not None)
            for x, name in ((gt, "gt"), (lq, "lq")):
                if x is None:
                    continue
                a, d = _integers(x)
                if d != dtype:       # 8-bit integers are not 16-bit ones: /255 and /65535 differ
                    raise DpirError(f"the training split mixes 8- and 16-bit images ({p.id}); prepare it again")
                out[e[f"{name}_offset"]: e[f"{name}_offset"] + a.size] = a.reshape(-1)
        out.flush()
        del out
    atomic_write_text(folder / INDEX, json.dumps({"format": FORMAT, "key": key, "dtype": dtype, "nbytes":
                                                  max(offset, 1) * dt.itemsize, "images": entries}))
    log.info("patch store %s: %d images, %.2f GB (%s)", folder, len(entries), offset * dt.itemsize / 2**30, dtype)


class _LazyPixels:
    """The pixel array is opened on first use in each process and never pickled (DataLoader workers
    open their own memory map)."""

    def __post_init__(self):
        self._pixels = None

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_pixels"} | {"_pixels": None}


@dataclass
class PatchStore(_LazyPixels):
    """A built store, opened lazily in each process (a memmap is not sent to data-loader workers:
    each opens the file itself)."""

    folder: Path
    dtype: str
    images: list[dict]
    in_memory: bool = False
    key: str = ""            # the manifest hash it was built for (what an IR estimate store is keyed by)

    @property
    def pixels(self) -> np.ndarray:
        if self._pixels is None:
            path = self.folder / PIXELS
            self._pixels = np.fromfile(path, dtype=self.dtype) if self.in_memory else \
                np.memmap(path, dtype=self.dtype, mode="r")
        return self._pixels

    def __len__(self) -> int:
        return len(self.images)

    def size(self, i: int) -> tuple[int, int]:
        return tuple(self.images[i]["gt"])

    def crop(self, i: int, which: str, top: int, left: int, h: int, w: int, k: int = 0):
        """The (3, h, w) float32 tensor in [0, 1] of image ``i``'s ``gt`` or ``lq`` at (top, left), with
        the dihedral symmetry ``k`` (:func:`dpir.data.patches.dihedral`) applied first, to the integers
        (a permutation of the pixels: the same values as transforming the float crop, 4x fewer bytes moved)."""
        from dpir.data.patches import dihedral

        x = dihedral(self.crop_integers(i, which, top, left, h, w), k)
        scale = 255.0 if self.dtype == "uint8" else 65535.0
        return x.float().div_(scale)

    def crop_integers(self, i: int, which: str, top: int, left: int, h: int, w: int):
        """The stored integers of a crop as a (3, h, w) uint8/uint16 tensor (a view, no copy of the image)."""
        import torch

        e = self.images[i]
        H, W = e[which]
        if top < 0 or left < 0 or top + h > H or left + w > W:
            raise DpirError(f"a {h}x{w} crop at ({top}, {left}) does not fit the stored {which} image "
                            f"{e['id']!r} ({H}x{W}) of {self.folder}; lower `train.patch` in the config")
        img = self.pixels[e[f"{which}_offset"]: e[f"{which}_offset"] + H * W * 3].reshape(H, W, 3)
        a = np.ascontiguousarray(img[top: top + h, left: left + w])
        if a.dtype == np.uint16:            # torch has no uint16 arithmetic before 2.3: int32 holds it exactly
            a = a.astype(np.int32)
        return torch.from_numpy(a).permute(2, 0, 1)


def open_store(config: dict, task: str, dataset: str, split: str = "train", *, build_below: int | None = None,
               in_memory: bool = False) -> PatchStore:
    """The current store of a prepared split.  Missing or stale (the split was prepared again since):
    built here when the split's float32 size is below ``build_below`` bytes, else a DpirError naming
    the fix."""
    from dpir.data.prepare import stored_split

    key = manifest_key(config, task, dataset)
    folder = store_dir(config, task, dataset, split)
    if not _current(folder, key):
        pairs = stored_split(config, task, dataset, split)
        if not pairs:
            raise DpirError(f"no training images: the {split} split of {task}/{dataset} is empty (check the dataset "
                            f"and `dpir prepare --task {task} --dataset {dataset}`)")
        state = "stale (built for other prepared data)" if (folder / INDEX).exists() else "missing"
        small = build_below is not None and sum(p.nbytes() for p in pairs) < build_below
        if not small:
            raise DpirError(f"the patch store {folder} is {state}: run `dpir prepare --task {task} "
                            f"--dataset {dataset}` (it builds the store of the train split)")
        log.info("building the %s patch store %s (small split)", state, folder)
        build_store(config, task, dataset, split)
    idx = json.loads((folder / INDEX).read_text())
    return PatchStore(folder=folder, dtype=idx["dtype"], images=idx["images"], in_memory=in_memory, key=idx["key"])


# ------------------------------------------------------------------------------------------------
# the frozen IR network's estimates of a store's observations (fusion training, ``train.cache_ir``)

#: dtype of stored IR estimates.  float16 halves the disk and the bytes a crop reads (DIV2K train at
#: 2040x1356: 13 GB instead of 26.5 GB) for an error of at most 2**-11 relative (<= 2.5e-4 in [0, 1]),
#: an eighth of one 8-bit level of the ground truth it is compared with and far below the IR net's own
#: error (~30 dB PSNR: 3e-2 RMS); the stored values are exactly the float16 rounding of the float32
#: run (tested).  The dtype is in the index and the key, so changing it rebuilds the stores.
IR_DTYPE = "float16"
IR_FORMAT = 1


def weights_key(directory: str | Path) -> str:
    """The sha256 of a checkpoint's weights and architecture (``model.safetensors`` + ``model.json``): an
    IR estimate store is rebuilt exactly when the network that made it changes (retrained to other
    weights, replaced by an import), and not when the same weights are written again."""
    from dpir.checkpoint import META_FILE, MODEL_FILE

    h = hashlib.sha256()
    for name in (META_FILE, MODEL_FILE):
        path = Path(directory) / name
        if not path.exists():
            raise DpirError(f"no trained network at {directory} ({name} missing): run `dpir train` for it first")
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 24), b""):
                h.update(chunk)
    return h.hexdigest()


def ir_store_dir(store: PatchStore, network: str, ir_key: str) -> Path:
    """``<prepared>/train.ir-<network>-<12 hex of the IR weights' key>.store`` beside the data store."""
    return store.folder.parent / f"{store.folder.name.removesuffix('.store')}.ir-{network}-{ir_key[:12]}.store"


def _ir_key(store: PatchStore, ir_key: str) -> dict:
    return {"data": store.key, "ir": ir_key, "dtype": IR_DTYPE, "format": IR_FORMAT}


def _ir_current(folder: Path, key: dict) -> bool:
    try:
        idx = json.loads((folder / INDEX).read_text())
        return idx.get("key") == key and (folder / PIXELS).stat().st_size == idx["nbytes"]
    except (OSError, ValueError, KeyError):
        return False


def build_ir_store(store: PatchStore, network: str, ir_key: str, ir, device, *, tile: int | None = None,
                   overlap: int = 16) -> Path:
    """Run the frozen network ``ir`` once over every full observation (``lq``) of ``store`` and store its
    estimates (at gt size, ``IR_DTYPE``, HWC) in :func:`ir_store_dir`; returns the folder.

    On ``device``, without gradients, in eval mode; images larger than ``tile`` LR px go through
    :class:`dpir.tiling.TiledModule` (``tile``/``tile_overlap`` of the config: what restore does at test
    time).  Rebuilt only when the data store or the IR weights changed (the key); written like the data
    store (pixels, then the index as completion marker, each renamed in) under the folder's lock, and
    the stores of other weights of the same network are deleted once the new one is complete."""
    import shutil

    import torch

    folder = ir_store_dir(store, network, ir_key)
    key = _ir_key(store, ir_key)
    with exclusive_lock(folder, f"the IR estimate store {folder}"):
        if not _ir_current(folder, key):
            net = ir
            if tile is not None:
                from dpir.tiling import TiledModule

                net = TiledModule(ir, int(tile), int(overlap))
            was_training = ir.training
            ir.eval()
            try:
                _build_ir_locked(folder, store, net, torch.device(device), key)
            finally:
                ir.train(was_training)
        prefix = f"{store.folder.name.removesuffix('.store')}.ir-{network}-"
        for old in folder.parent.glob(f"{prefix}*.store"):
            tag = old.name[len(prefix): -len(".store")]
            if old != folder and old.is_dir() and re.fullmatch(r"[0-9a-f]{12}", tag):
                log.info("deleting %s: estimates of other %s weights", old, network)
                shutil.rmtree(old, ignore_errors=True)
    return folder


def _build_ir_locked(folder: Path, store: PatchStore, net, device, key: dict) -> None:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    entries, offset = [], 0
    for e in store.images:
        if e["lq"] is None:
            raise DpirError(f"the patch store {store.folder} holds no observations (lq) for the IR network to "
                            f"estimate from; set `train.cache_ir: false`")
        entries.append({"id": e["id"], "gt": list(e["gt"]), "gt_offset": offset})
        offset += e["gt"][0] * e["gt"][1] * 3
    dt = np.dtype(IR_DTYPE)
    (folder / INDEX).unlink(missing_ok=True)          # no index: no store, whatever happens below
    with atomic_file(folder / PIXELS) as tmp:
        out = np.memmap(tmp, dtype=dt, mode="w+", shape=(max(offset, 1),))
        with torch.no_grad():
            for i, e in enumerate(entries):
                h, w = store.images[i]["lq"]
                lq = store.crop(i, "lq", 0, 0, h, w)[None].to(device)
                y = net(lq)[0].float().cpu()
                if tuple(y.shape) != (3, *e["gt"]):
                    raise DpirError(f"the IR network's estimate of training image {e['id']!r} is "
                                    f"{tuple(y.shape)}, not the ground truth's (3, {e['gt'][0]}, {e['gt'][1]}); "
                                    f"it cannot be cropped with it: set `train.cache_ir: false`")
                a = y.permute(1, 2, 0).numpy().astype(dt)
                out[e["gt_offset"]: e["gt_offset"] + a.size] = a.reshape(-1)
        out.flush()
        del out
    atomic_write_text(folder / INDEX, json.dumps({"key": key, "dtype": IR_DTYPE, "nbytes": max(offset, 1) * dt.itemsize,
                                                  "images": entries}))
    log.info("IR estimate store %s: %d images, %.2f GB (%s)", folder, len(entries), offset * dt.itemsize / 2**30,
             IR_DTYPE)


@dataclass
class IrStore(_LazyPixels):
    """The stored IR estimates of a data store's images, cropped in gt coordinates (opened lazily per process)."""

    folder: Path
    dtype: str
    images: list[dict]

    @property
    def pixels(self) -> np.ndarray:
        if self._pixels is None:
            self._pixels = np.memmap(self.folder / PIXELS, dtype=self.dtype, mode="r")
        return self._pixels

    def crop(self, i: int, top: int, left: int, h: int, w: int, k: int = 0):
        """The (3, h, w) float32 estimate of image ``i`` at gt pixels (top, left), dihedral ``k`` applied
        (exactly as :meth:`PatchStore.crop` does to the gt crop at the same place)."""
        import torch

        from dpir.data.patches import dihedral

        e = self.images[i]
        H, W = e["gt"]
        if top < 0 or left < 0 or top + h > H or left + w > W:
            raise DpirError(f"a {h}x{w} crop at ({top}, {left}) does not fit the IR estimate of {e['id']!r} "
                            f"({H}x{W}) in {self.folder}")
        img = self.pixels[e["gt_offset"]: e["gt_offset"] + H * W * 3].reshape(H, W, 3)
        a = np.ascontiguousarray(img[top: top + h, left: left + w])
        return dihedral(torch.from_numpy(a).permute(2, 0, 1), k).float()


def open_ir_store(store: PatchStore, network: str, ir_key: str) -> IrStore:
    """The current IR estimate store of ``store`` and these IR weights; a DpirError if none is built."""
    folder = ir_store_dir(store, network, ir_key)
    if not _ir_current(folder, _ir_key(store, ir_key)):
        raise DpirError(f"the IR estimate store {folder} is missing or stale; it is built by `dpir train` of "
                        f"the fusion network (train.cache_ir: true)")
    idx = json.loads((folder / INDEX).read_text())
    if [e["id"] for e in idx["images"]] != [e["id"] for e in store.images]:
        raise DpirError(f"the IR estimate store {folder} lists other images than {store.folder}; delete it")
    return IrStore(folder=folder, dtype=idx["dtype"], images=idx["images"])
