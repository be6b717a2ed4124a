"""The paper's datasets as sources for ``dpir prepare`` (DIV2K, GoPro, HIDE, SyntheticBurst, Zurich).

``source_images(ds_cfg, split, task_cfg)`` lists ``(id, loader)`` pairs of one split, like the
bundled and folder kinds, but each loader returns a triple::

    (gt, notes, lq)    gt (3, H, W) float32 in [0, 1]; notes: list of conversion notes;
                       lq (3, h, w) float32 in [0, 1], or None when the harness makes lq itself,
                       or a :class:`RawBurst` (SyntheticBurst: gt is then the LINEAR camera RGB target)

``lq`` is the dataset's own degraded image: DIV2K's official MATLAB-bicubic LR when the dataset
config says ``lr: official`` (``regenerate``, the default, gives None and prepare degrades gt with
the task's bicubic), and always the real blurred frame for GoPro and HIDE (deblurring data cannot
be regenerated).  SyntheticBurst gives its official RAW bursts (Bhat et al., CVPR 2021), which
prepare stores as they are instead of synthesising new ones; Zurich RAW-to-RGB gives sRGB JPGs
(None), from which burst training synthesises bursts on the fly (:func:`dpir.tasks.train_degradation`).

Where the files are: ``path`` of the dataset config (the root that holds every split;
``train_path`` overrides it for the train split) when given, used as is; otherwise the folder
:func:`dpir.fetch.fetch` unpacks the registry entries into (DIV2K: ``div2k_<valid|train>_hr`` and,
for official LR, ``div2k_<valid|train>_lr_x4``; GoPro: ``gopro``; HIDE: ``hide``; SyntheticBurst:
``syntheticburst_val``; Zurich: ``zurich_raw2rgb``), which also verifies pre-staged archives and
downloads missing ones.

Splits: prepare's ``test`` is DIV2K ``valid`` (or the config's ``split``), GoPro ``test``, HIDE's
test set and the 300 SyntheticBurst validation bursts; ``train`` is DIV2K ``train``, GoPro ``train``
and the 46,839 Zurich ``train/canon`` JPGs.  HIDE and SyntheticBurst have no training split (their
models train on GoPro and Zurich) and give an empty list; Zurich is a training source only
(:data:`TRAIN_ONLY_KINDS`): its test split is empty.  Ids containing ``/`` (GoPro
``<scene>/<frame>``, HIDE ``<subset>/<name>``) are flattened to ``<scene>__<frame>``: every stage
writes ``<id>.png`` into one folder.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dpir.data.images import read_image
from dpir.data.layouts import Pair, div2k_pairs, gopro_pairs, hide_pairs, zurich_raw2rgb
from dpir.errors import DpirError
from dpir.workflow_facts import paper_fetch_names

Loader = Callable[[], tuple[torch.Tensor, list[str], "torch.Tensor | RawBurst | None"]]
#: paper dataset kind -> what it is (the loaders are :func:`source_images`; the table of every
#: dataset kind is :data:`dpir.data.prepare.DATASET_KINDS`)
PAPER_KINDS: dict[str, str] = {
    "div2k": "DIV2K HR (valid/train) for x4 SR; official MATLAB-bicubic LR with `lr: official`",
    "gopro": "GoPro deblurring pairs (the real blurred frames)",
    "hide": "HIDE deblurring test set (test split only)",
    "syntheticburst": "SyntheticBurst validation bursts, official RAW (test split only)",
    "zurich": "Zurich RAW-to-RGB sRGB JPGs, burst training source (train split only)",
}
#: kinds with a train split only: prepare accepts their empty test split
TRAIN_ONLY_KINDS = ("zurich",)
#: the SyntheticBurst validation bursts hold 14 frames
SYNTHETICBURST_FRAMES = 14


@dataclass(frozen=True)
class RawBurst:
    """An official RAW burst: packed RGGB frames (N, 4, h, w) in [0, 1] and its metadata as plain JSON
    values (:func:`dpir.data.layouts.meta_info_to_json`), ready for :func:`dpir.data.burst_io.write_burst`."""
    frames: torch.Tensor
    meta: dict[str, Any]
#: the only DIV2K LR scale in the fetch registry (div2k_*_lr_x4); used when no task config is given
DIV2K_DEFAULT_SCALE = 4


def flat_id(image_id: str) -> str:
    return image_id.replace("/", "__")


def _fetched(name: str) -> Path:
    from dpir import fetch

    return Path(fetch.fetch(name, progress=False))


def _root(ds_cfg: dict, split: str, fetch_names: list[str]) -> Path:
    # the unpacked roots hold every split (DIV2K_train_HR beside DIV2K_valid_HR, GOPRO_Large/{train,test})
    key = "train_path" if split == "train" and ds_cfg.get("train_path") else "path"
    if ds_cfg.get(key):
        root = Path(ds_cfg[key]).expanduser()
        if not root.is_dir():
            raise DpirError(f"dataset {ds_cfg['kind']!r}: {key} {root} is not a folder; fix the dataset's "
                            f"`{key}` in the config or drop it to use `dpir fetch`")
        return root
    roots = {_fetched(n) for n in fetch_names}
    if len(roots) != 1:     # every registry entry of one dataset unpacks into one folder
        raise DpirError(f"registry entries {fetch_names} unpack into different folders {sorted(map(str, roots))}")
    return roots.pop()


def _loader(pair: Pair, with_lq: bool) -> Loader:
    def load():
        notes: list[str] = []
        gt = read_image(pair.gt, notes)
        lq = read_image(pair.lq, notes) if with_lq and pair.lq is not None else None
        return gt, notes, lq
    return load


def _items(pairs: list[Pair], with_lq: bool) -> list[tuple[str, Loader]]:
    seen: dict[str, Pair] = {}
    for p in pairs:
        other = seen.setdefault(flat_id(p.id), p)
        if other is not p:
            raise DpirError(f"{other.gt} and {p.gt} both give image id {flat_id(p.id)!r} (ids {other.id!r} and "
                            f"{p.id!r}, '/' flattened to '__'); rename one of them")
    return [(flat_id(p.id), _loader(p, with_lq)) for p in pairs]


def source_images(ds_cfg: dict, split: str, task_cfg: dict | None = None) -> list[tuple[str, Loader]]:
    """``(id, loader)`` pairs of a paper dataset split; see the module docstring for the loader triple."""
    kind = ds_cfg["kind"]
    if split not in ("train", "test"):
        raise DpirError(f"split must be 'train' or 'test', not {split!r}")
    if kind == "div2k":
        scale = int((task_cfg or {}).get("scale") or DIV2K_DEFAULT_SCALE)
        lr = ds_cfg.get("lr", "regenerate")
        d_split = ds_cfg.get("split", "valid") if split == "test" else "train"
        # the same names the workflow's fetch jobs make (dpir.workflow_facts.paper_fetch_names)
        names = paper_fetch_names(ds_cfg, split, scale) or [f"div2k_{d_split}_hr"]
        root = _root(ds_cfg, split, names)
        return _items(div2k_pairs(root, d_split, scale, lr), with_lq=lr == "official")
    if kind == "gopro":
        root = _root(ds_cfg, split, ["gopro"])
        return _items(gopro_pairs(root, ds_cfg.get("split", "test") if split == "test" else "train"), True)
    if kind == "hide":
        if split == "train":
            return []
        return _items(hide_pairs(_root(ds_cfg, split, ["hide"])), True)
    if kind == "syntheticburst":
        return _syntheticburst(ds_cfg, split, task_cfg)
    if kind == "zurich":
        if split == "test":
            return []
        return _items(zurich_raw2rgb(_root(ds_cfg, split, ["zurich_raw2rgb"]), "train"), False)
    raise DpirError(f"dataset kind {kind!r} is not a paper dataset (paper kinds: {', '.join(PAPER_KINDS)})")



def _syntheticburst(ds_cfg: dict, split: str, task_cfg: dict | None) -> list[tuple[str, Loader]]:
    """The official validation bursts, first ``degradation.burst_size`` frames of each (all 14 by default)."""
    from dpir.data.burst_io import read_burst
    from dpir.data.layouts import meta_info_to_json, syntheticburst_val
    from dpir.tasks import BURST, burst_settings, output_scale, task_kind

    task_cfg = task_cfg or {"kind": BURST.name, "scale": 4}
    if task_kind(task_cfg) is not BURST:
        raise DpirError(f"dataset kind 'syntheticburst' holds RAW bursts: it is a test set of burst tasks only, "
                        f"not of a {task_cfg.get('kind')!r} task; list it under a burst task's test_datasets")
    if split == "train":
        return []       # a validation set: burst networks train on bursts synthesised from Zurich RAW-to-RGB
    if ds_cfg.get("test_crop"):
        raise DpirError("dataset kind 'syntheticburst': test_crop does not apply to the official bursts "
                        "(48x48 frames, 384x384 targets); drop the dataset's `test_crop`")
    if output_scale(task_cfg) != 8:
        raise DpirError(f"dataset kind 'syntheticburst' has 384x384 targets for 48x48 frames (8x: RGGB packing x "
                        f"scale 4); the task's scale {task_cfg.get('scale')} does not fit: set `scale: 4`")
    n = burst_settings(task_cfg)[0]
    if n > SYNTHETICBURST_FRAMES:
        raise DpirError(f"degradation.burst_size {n} exceeds the {SYNTHETICBURST_FRAMES} frames of a "
                        f"SyntheticBurst validation burst; set it to at most {SYNTHETICBURST_FRAMES}")

    def loader(sample) -> Loader:
        def load():
            frames, gt_linear, meta = read_burst(sample)
            meta.pop("burst_name", None)      # added by the reader, not part of the file
            return gt_linear, [], RawBurst(frames, meta_info_to_json(meta, sample.meta))
        return load

    samples = syntheticburst_val(_root(ds_cfg, split, ["syntheticburst_val"]), n)
    return [(s.id, loader(s)) for s in samples]
