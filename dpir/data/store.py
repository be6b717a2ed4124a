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


@dataclass
class PatchStore:
    """A built store, opened lazily in each process (a memmap is not sent to data-loader workers:
    each opens the file itself)."""

    folder: Path
    dtype: str
    images: list[dict]
    in_memory: bool = False

    def __post_init__(self):
        self._pixels = None

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_pixels"} | {"_pixels": None}

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
    return PatchStore(folder=folder, dtype=idx["dtype"], images=idx["images"], in_memory=in_memory)
