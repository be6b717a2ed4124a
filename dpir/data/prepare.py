"""``dpir prepare``: turn a dataset config entry into the prepared layout every later stage reads.

    <data_dir>/<task>/<dataset>/<split>/gt/<id>.png    clean images (8-bit RGB PNG)
    <data_dir>/<task>/<dataset>/<split>/lq/<id>.png    observations made by the task's degradation
    <data_dir>/<task>/<dataset>/manifest.json          ids, sizes, conversions, skipped files, settings

The burst task stores RAW bursts instead of ``lq/`` (test split: ``<split>/burst/`` in the SyntheticBurst
layout, ``gt/<id>.png`` the sRGB target; train split: ``gt/`` only), see :meth:`dpir.tasks.TaskKind.prepare_image`.
The official SyntheticBurst validation bursts (dataset kind ``syntheticburst``) are stored as they are, in
the same layout (:func:`dpir.tasks.write_official_burst`), so restore and score treat both alike.

Odd inputs follow :mod:`dpir.data.images`' policy; the manifest records every conversion and skip,
and the report repeats them.  The manifest is written last and atomically, so a folder without a
manifest is never taken for a complete one.

Publishing is safe against concurrent runs and crashes (:func:`publish_dir`, with the helpers of
:mod:`dpir.atomic` that restore, score and train use too): everything, manifest last, is written into a
fresh folder private to this process (``.<dataset>.tmp-<host>-<pid>-*`` beside the target,
:func:`dpir.atomic.unique_temp_dir`), which then replaces ``<data_dir>/<task>/<dataset>`` under an
exclusive lock (``.<dataset>.lock``, :func:`dpir.atomic.exclusive_lock`): the old folder is renamed aside
to ``.<dataset>.old``, the new one renamed in, the old one deleted (:func:`dpir.atomic.swap_in`, with
``manifest.json`` as the completion marker).  Two runs of the same (task, dataset) build side by side
and publish one after the other, each a complete result; a crash at any point leaves the old or the
new complete folder, and the next prepare (or the next read of the manifest) puts back an old folder
stranded between the two renames and deletes the private folders of dead processes of this host
(:func:`dpir.atomic.recover`; a live build beside it is left alone).
"""
from __future__ import annotations

import json
import logging
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from dpir import paths
from dpir.atomic import (
    atomic_write_text,
    blocking_file,
    exclusive_lock,
    old_path,
    recover,
    swap_in,
    unique_temp_dir,
)
from dpir.data import bundled
from dpir.data.images import (
    SkippedFile,
    list_images,
    read_image,
    to_rgb_float,
)
from dpir.data.paper import PAPER_KINDS, TRAIN_ONLY_KINDS
from dpir.errors import DpirError, UnknownNameError
from dpir.tasks import SkipImage, task_kind, write_official_burst  # noqa: F401  (write_official_burst: re-exported)

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"      # the file name of paths.manifest


def centre_crop(x: torch.Tensor, size: int | None, align: int = 1) -> tuple[torch.Tensor, int, int]:
    """Centre crop to at most ``size`` x ``size``; offsets are multiples of ``align`` so that an LR
    counterpart can be cropped at offset / scale.  Returns (crop, top, left)."""
    if size is None:
        return x, 0, 0
    h, w = x.shape[-2:]
    th, tw = min(size, h), min(size, w)
    top, left = (h - th) // 2 // align * align, (w - tw) // 2 // align * align
    return x[..., top: top + th, left: left + tw], top, left


def _bundled_images(ds: dict, split: str, task: dict) -> list[tuple[str, object]]:
    def make(name):
        return lambda: (*_from_array(bundled.load(name), f"bundled:{name}"), None)
    return [(n, make(n)) for n in bundled.SPLITS[split]]


def _folder_images(ds: dict, split: str, task: dict) -> list[tuple[str, object]]:
    key = "path" if split == "test" else "train_path"
    if key not in ds:
        return []

    def load_file(p):
        notes: list[str] = []
        return read_image(p, notes), notes, None
    files = list_images(ds[key])
    _check_unique_ids(files)
    return [(p.stem, (lambda p=p: load_file(p))) for p in files]


def _paper_images(ds: dict, split: str, task: dict) -> list[tuple[str, object]]:
    from dpir.data.paper import source_images

    return source_images(ds, split, task)


@dataclass(frozen=True)
class DatasetKind:
    """A dataset ``kind`` of the config: ``loader(ds_cfg, split, task_cfg)`` lists its (id, loader) pairs."""
    loader: Callable[[dict, str, dict], list[tuple[str, object]]]
    description: str


#: every dataset kind the config accepts (``$defs.dataset.properties.kind.enum`` of the schema lists
#: exactly these keys; tests/test_registry.py checks it)
DATASET_KINDS: dict[str, DatasetKind] = {
    "bundled": DatasetKind(_bundled_images, "the few images shipped inside the package (dpir.data.bundled)"),
    "folder": DatasetKind(_folder_images, "image files of a folder: `path` (test), `train_path` (train)"),
    **{kind: DatasetKind(_paper_images, text) for kind, text in PAPER_KINDS.items()},
}


def _source_images(ds: dict, split: str, task: dict) -> list[tuple[str, object]]:
    """(id, loader) pairs of a dataset split; loaders return (gt (3,H,W), notes, official lq or None)."""
    kind = ds["kind"]
    if kind not in DATASET_KINDS:
        raise UnknownNameError("dataset kind", kind, DATASET_KINDS)
    return DATASET_KINDS[kind].loader(ds, split, task)


def _check_unique_ids(files: list[Path]) -> None:
    """Every image of a folder dataset is stored as ``<stem>.png``: two files with one stem (``a.png``,
    ``a.jpg``) would silently overwrite each other, so stop and name both."""
    seen: dict[str, Path] = {}
    for p in files:
        if p.stem in seen:
            raise DpirError(f"{seen[p.stem]} and {p} both give image id {p.stem!r} (prepared images are stored as "
                            f"<id>.png); rename one of them")
        seen[p.stem] = p


def _from_array(arr, source: str):
    rgb, notes = to_rgb_float(arr, source)
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous(), notes


def prepare(config: dict, task_name: str, dataset_name: str, splits=("train", "test")) -> dict:
    from dpir.config import task_config

    task = task_config(config, task_name)
    if dataset_name not in config["datasets"]:
        raise UnknownNameError("dataset", dataset_name, config["datasets"])
    ds = config["datasets"][dataset_name]
    root = paths.prepared(config, task_name, dataset_name)
    _check_data_dir(root)
    recover_dir(root)
    work = unique_temp_dir(root)
    try:
        manifest = _prepare_into(work, ds, task, task_name, dataset_name, splits)
        publish_dir(work, root)
    finally:
        shutil.rmtree(work, ignore_errors=True)       # nothing left when published, a failed attempt otherwise
    if manifest["splits"].get("train", {}).get("ids"):
        from dpir.data.store import build_store

        # the training crops' source, decoded once here and memory-mapped by every training job
        build_store(config, task_name, dataset_name, "train")
    return manifest


def _prepare_into(work: Path, ds: dict, task: dict, task_name: str, dataset_name: str, splits) -> dict:
    """Write the prepared splits and, last, the manifest into the empty folder ``work``; return the manifest."""
    kind = task_kind(task)
    scale = task.get("scale", 1)
    manifest: dict = {"task": task_name, "dataset": dataset_name, "dataset_config": ds, "kind": task["kind"],
                      "scale": scale, "degradation": task.get("degradation", {}), "splits": {}, "skipped": [],
                      "notes": {}}
    for split in splits:
        items = _source_images(ds, split, task)
        if split == "test" and ds.get("max_test_images"):
            items = items[: ds["max_test_images"]]
        split_dir = work / split
        ids, sizes = [], {}
        for image_id, loader in items:
            try:
                gt, notes, lq = loader()
            except DpirError as e:
                warnings.warn(f"skipping {e}", SkippedFile, stacklevel=2)
                manifest["skipped"].append({"id": image_id, "split": split, "reason": str(e)})
                continue
            try:    # the kind crops, observes and writes (dpir.tasks; bursts: their own synthesis and layout)
                size, notes = kind.prepare_image(split_dir, image_id, gt, lq, notes, task, split,
                                                 ds.get("test_crop"), dataset_name)
            except SkipImage as e:
                warnings.warn(f"skipping {e.reason}", SkippedFile, stacklevel=2)
                manifest["skipped"].append({"id": image_id, "split": split, "reason": e.reason})
                continue
            ids.append(image_id)
            sizes[image_id] = size
            _record_notes(manifest, dataset_name, image_id, notes)
        if not ids:
            shutil.rmtree(split_dir, ignore_errors=True)
        manifest["splits"][split] = {"ids": ids, "sizes": sizes}
    if not manifest["splits"].get("test", {}).get("ids") and "test" in splits and ds["kind"] not in TRAIN_ONLY_KINDS:
        raise DpirError(f"dataset {dataset_name!r} has no usable test image; check its path and the warnings above")
    atomic_write_text(work / MANIFEST, json.dumps(manifest, indent=2))
    return manifest


# --- publishing a prepared folder: private build, locked two-rename swap, crash recovery (dpir.atomic) ------

def _check_data_dir(root: Path) -> None:
    """The prepared folder's nearest existing ancestor must be a folder, else ``mkdir`` fails with a traceback."""
    p = blocking_file(root)
    if p is not None:
        raise DpirError(f"config key data_dir: {p} is a file, not a folder, so {root} cannot be created; set "
                        f"data_dir to a folder (e.g. --set data_dir=data/prepared) or move the file away")


def _lock(target: Path):
    return exclusive_lock(target, f"the prepared data {target}")


def recover_dir(target: Path) -> None:
    """Undo what an interrupted :func:`publish_dir` left behind (see the module docstring); cheap when
    there is nothing to do.  Private folders of other hosts are left alone: their processes cannot be checked."""
    target = Path(target)
    if not target.parent.is_dir():
        return
    with _lock(target):
        recover(target, MANIFEST, built_under_lock=False)


def publish_dir(src: Path, target: Path) -> None:
    """Replace the folder ``target`` by the complete folder ``src`` (same parent, manifest written), so
    that ``target`` is always either the old or the new complete folder, or missing with the old one at
    ``.<name>.old`` (put back by :func:`recover_dir`).  Concurrent publishers take turns under the lock."""
    with _lock(target):
        swap_in(src, target, MANIFEST, built_under_lock=False)


def _record_notes(manifest: dict, dataset_name: str, image_id: str, notes: list[str]) -> None:
    if notes:
        manifest["notes"][image_id] = notes
        for n in notes:
            log.warning("%s/%s: %s", dataset_name, image_id, n)


def read_manifest(config: dict, task: str, dataset: str) -> dict:
    path = paths.manifest(config, task, dataset)
    if not path.exists() and old_path(path.parent).exists():
        recover_dir(path.parent)        # a prepare interrupted while publishing: its previous result is back
    if not path.exists():
        raise DpirError(f"{path} is missing: run `dpir prepare --task {task} --dataset {dataset}` first")
    return json.loads(Path(path).read_text())


@dataclass(frozen=True)
class StoredPair:
    """One prepared image on disk: the file paths and the sizes its manifest records, no pixels.

    Training keeps these instead of decoded images (:class:`dpir.data.patches.PatchSampler`): the paper's
    training sets (46,839 Zurich JPGs, ~113 GB as float32; GoPro train ~46 GB) do not fit in memory,
    and the sizes alone are enough to draw a crop before the file is decoded."""
    id: str
    gt: Path
    lq: Path | None                 # None for the burst task (train: bursts synthesised on the fly)
    size: tuple[int, int]           # gt (H, W)
    lq_size: tuple[int, int] | None
    task: str
    dataset: str

    def nbytes(self, with_lq: bool = True) -> int:
        """Bytes of the decoded float32 (3, H, W) image(s)."""
        n = self.size[0] * self.size[1]
        if with_lq and self.lq_size is not None:
            n += self.lq_size[0] * self.lq_size[1]
        return 3 * 4 * n

    def read(self, with_lq: bool = True) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Decode (lq, gt); ``lq`` is None when not asked for or not stored.  A missing, corrupt or
        resized file is a DpirError naming it: the prepared split no longer matches its manifest."""
        lq = self._read(self.lq, self.lq_size) if with_lq and self.lq is not None else None
        return lq, self._read(self.gt, self.size)

    def _read(self, path: Path, size: tuple[int, int]) -> torch.Tensor:
        # the split was complete when its manifest was written (prepare writes it last), so any of these
        # means the files changed afterwards: preparing again is the fix, not skipping the image
        fix = (f"the prepared {self.task}/{self.dataset} data no longer match their manifest: run "
               f"`dpir prepare --task {self.task} --dataset {self.dataset}` again")
        if not path.is_file():
            raise DpirError(f"training image {path} does not exist; {fix}")
        try:
            x = read_image(path)
        except DpirError as e:
            raise DpirError(f"training image {path} cannot be decoded ({e}); {fix}") from None
        if tuple(x.shape[-2:]) != tuple(size):
            raise DpirError(f"training image {path} is {tuple(x.shape[-2:])}, its manifest says {tuple(size)}; {fix}")
        return x


def stored_split(config: dict, task: str, dataset: str, split: str) -> list[StoredPair]:
    """The images of a prepared split as :class:`StoredPair` (paths and sizes, in manifest order),
    read from the manifest alone: nothing is decoded, so this is cheap for any size of split."""
    man = read_manifest(config, task, dataset)
    root = paths.prepared(config, task, dataset) / split
    part = man["splits"].get(split, {})
    scale, burst = int(man.get("scale") or 1), not task_kind(man).image_input
    out = []
    for i in part.get("ids", []):
        h, w = (int(v) for v in part["sizes"][i])
        out.append(StoredPair(id=i, gt=root / "gt" / f"{i}.png", lq=None if burst else root / "lq" / f"{i}.png",
                              size=(h, w), lq_size=None if burst else (h // scale, w // scale),
                              task=task, dataset=dataset))
    return out


def load_split(config: dict, task: str, dataset: str, split: str) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(id, lq, gt) tensors of a prepared split, in manifest order.  ``lq`` is None for the burst task,
    whose observations are RAW bursts (test: ``<split>/burst/``; train: synthesised on the fly).
    Everything is decoded into memory: training uses :func:`stored_split` instead."""
    man = read_manifest(config, task, dataset)
    root = paths.prepared(config, task, dataset) / split
    ids = man["splits"].get(split, {}).get("ids", [])
    if not task_kind(man).image_input:
        return [(i, None, read_image(root / "gt" / f"{i}.png")) for i in ids]
    return [(i, read_image(root / "lq" / f"{i}.png"), read_image(root / "gt" / f"{i}.png")) for i in ids]
