"""Task kinds: how each task makes its observation, stores it, and feeds training.

=========  =====================================  ======================================  ==========
kind       observation y                          stored next to gt/<id>.png              training lq
=========  =====================================  ======================================  ==========
sr         MATLAB bicubic x``scale`` downscale     lq/<id>.png                              stored pairs
deblur     camera-shake blur + Gaussian noise     lq/<id>.png, kernels/<id>.npy           blurred on the fly
burst      synthetic RAW burst (Bhat et al.)      burst/ (SyntheticBurst layout)          synthesised on the fly
=========  =====================================  ======================================  ==========

The observation of test image ``id`` is drawn from the generator seeded by (data seed, id)
(:mod:`dpir.rng`), so a dataset is regenerated bit for bit.  Training degradations (deblur, burst)
are drawn on the fly from the training loop's data generator: every step sees new kernels/bursts,
which is what the small bundled training set needs.  Datasets that carry their own observations
(GoPro and HIDE blur, DIV2K's official LR) train on their stored pairs instead
(:func:`train_degradation` with the dataset config).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from dpir.data.degrade import bicubic_down
from dpir.data.images import write_png
from dpir.errors import DpirError
from dpir.rng import make_generator

DATA_SEED = 20241105  # the seed of every synthetic test observation (arXiv 2411.05993's date)


def degradations(kind: str) -> dict[str, frozenset[str]]:
    """The degradations a task kind knows: ``degradation.name`` -> the keys it accepts besides ``name``."""
    if kind == "sr":
        return {"bicubic": frozenset()}            # MATLAB imresize(x, 1/scale, 'bicubic'); scale is the task's
    if kind == "deblur":
        from dpir.data.blur import BLUR_KEYS

        return {"motion_blur": frozenset(BLUR_KEYS)}
    if kind == "burst":
        from dpir.data.burst import DEFAULTS

        return {"synthetic_burst": frozenset({"burst_size", *DEFAULTS})}
    raise DpirError(f"unknown task kind {kind!r}")


def _degradation(task: dict) -> dict:
    d = dict(task.get("degradation") or {})
    d.pop("name", None)
    return d


def observe(task: dict, gt: torch.Tensor, image_id: str) -> tuple[torch.Tensor, dict]:
    """The test observation of one clean image: (lq, extras to store)."""
    kind = task["kind"]
    if kind == "sr":
        return bicubic_down(gt, task["scale"]), {}
    if kind == "deblur":
        from dpir.data.blur import make_blur_pair

        y, k = make_blur_pair(gt, make_generator(DATA_SEED, image_id), _degradation(task))
        return y, {"kernel": k}
    raise DpirError(f"task kind {kind!r} cannot be prepared from single images here (burst data is written by "
                    f"dpir.tasks.prepare_burst_image)")


def write_extras(split_dir: Path, image_id: str, extras: dict) -> None:
    if "kernel" in extras:
        from dpir.data.blur import save_kernel

        save_kernel(split_dir / "kernels" / f"{image_id}.npy", extras["kernel"])


def write_pair(split_dir: Path, image_id: str, gt: torch.Tensor, lq: torch.Tensor, extras: dict) -> None:
    write_png(split_dir / "gt" / f"{image_id}.png", gt)
    write_png(split_dir / "lq" / f"{image_id}.png", lq)
    write_extras(split_dir, image_id, extras)


def train_degradation(task: dict, dataset: dict | None = None
                      ) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor | dict] | None:
    """A function (gt patch, generator) -> lq patch for on-the-fly training data, or None when training
    uses the stored pairs.

    ``dataset`` is the training dataset's config entry.  A dataset with its own observations (GoPro's
    real blurred frames, HIDE's, DIV2K's official LR with ``lr: official``; :mod:`dpir.data.paper`)
    trains on its stored (lq, gt) pairs: re-blurring GoPro's sharp frames synthetically would teach
    the networks camera shake instead of the dynamic-scene blur they are tested on.  The decision is
    the config's (dataset kind and ``lr``), never what happens to be on disk.  Without ``dataset`` (or
    for bundled and folder images) sr uses its stored pairs and deblur blurs on the fly.

    Burst: always synthesised (no dataset stores training bursts).  The gt patch is an sRGB crop of
    (p + 2 m) px (m = :func:`train_margin`) and the function returns ``{"lq": frames (N,4,p/8,p/8),
    "gt": linear gt (3,p,p), "meta": burst metadata}``: the target of a burst network is the
    unprocessed linear image, not the sRGB crop it came from."""
    if task["kind"] == "burst":
        from dpir.data.burst import synthesize_burst

        n, cfg = burst_settings(task)

        def degrade(rgb: torch.Tensor, g: torch.Generator) -> dict:
            frames, gt_linear, meta = synthesize_burst(rgb, n, g, cfg)
            return {"lq": frames, "gt": gt_linear, "meta": meta}

        return degrade
    ds = dataset or {}
    if ds.get("kind") in ("gopro", "hide") or (ds.get("kind") == "div2k" and ds.get("lr") == "official"):
        return None
    if task["kind"] == "deblur":
        from dpir.data.blur import make_blur_pair

        cfg = _degradation(task)
        return lambda gt, g: make_blur_pair(gt, g, cfg)[0]
    return None


def train_margin(task: dict) -> int:
    """Extra px cropped on each side of a training patch before the on-the-fly degradation: the burst
    synthesis warps with a border of ``warp_margin`` px that it crops away again (Bhat et al.)."""
    if task["kind"] == "burst":
        return burst_margin(task)
    return 0


# ------------------------------------------------------------------------------------------- burst

#: frames are packed RGGB at half the mosaic resolution, so the output is 2 x scale times a frame
BURST_PACKING = 2


def burst_settings(task: dict) -> tuple[int, dict]:
    """(burst_size, options of :func:`dpir.data.burst.synthesize_burst`) from ``task.degradation``."""
    cfg = _degradation(task)
    n = cfg.pop("burst_size", 14)
    if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
        raise DpirError(f"task key degradation.burst_size must be a positive integer, got {n!r}")
    scale = int(task.get("scale", 4))
    if int(cfg.get("downsample_factor", scale)) != scale:
        raise DpirError(f"burst task: degradation.downsample_factor {cfg['downsample_factor']} differs from the "
                        f"task's scale {scale}; drop it (the scale sets it)")
    cfg["downsample_factor"] = scale
    return n, cfg


def burst_margin(task: dict) -> int:
    from dpir.data.burst import DEFAULTS

    return int(burst_settings(task)[1].get("warp_margin", DEFAULTS["warp_margin"]))


def output_scale(task: dict) -> int:
    """Output size / observation size: ``scale`` for images, ``2 * scale`` for packed RAW bursts."""
    scale = int(task.get("scale", 1))
    return BURST_PACKING * scale if task.get("kind") == "burst" else scale


def prepare_burst_image(split_dir: Path, image_id: str, rgb: torch.Tensor, task: dict, split: str,
                        crop: int | None) -> tuple[list[int], list[str]]:
    """Prepare one burst image; returns (gt size [H, W], notes).

    Test split: a centre crop of ``crop + 2 m`` px (the inner part rounded down to a multiple of
    2 x scale so the frames are whole RGGB quads) becomes a synthetic burst drawn from the generator
    seeded by (DATA_SEED, id), written under ``burst/`` in the SyntheticBurst layout, and
    ``gt/<id>.png`` = the forward ISP of its linear ground truth with the burst's own metadata (the
    sRGB target every method is scored against).  Train split: the sRGB image only (``gt/<id>.png``);
    training synthesises new bursts from it on the fly.
    """
    from dpir.data.burst import process_linear_to_srgb, synthesize_burst, write_burst

    if split != "test":
        write_png(split_dir / "gt" / f"{image_id}.png", rgb)
        return [int(rgb.shape[-2]), int(rgb.shape[-1])], []
    n, cfg = burst_settings(task)
    m, quad = burst_margin(task), 2 * int(cfg["downsample_factor"])
    H, W = rgb.shape[-2:]
    h, w = H - 2 * m, W - 2 * m
    if crop is not None:
        h, w = min(h, crop), min(w, crop)
    h, w = h // quad * quad, w // quad * quad
    if h < quad or w < quad:
        raise DpirError(f"{image_id}: {H}x{W} is too small for a burst ({quad} px + a {m} px warp margin per side)")
    top, left = (H - h - 2 * m) // 2, (W - w - 2 * m) // 2
    notes = [] if (h + 2 * m, w + 2 * m) == (H, W) or crop is not None else [f"cropped from {H}x{W} to {h}x{w} "
                                                                            f"(+ {m} px margin) for the RGGB burst"]
    src = rgb[..., top: top + h + 2 * m, left: left + w + 2 * m]
    frames, gt_linear, meta = synthesize_burst(src, n, make_generator(DATA_SEED, image_id), cfg)
    write_burst(split_dir / "burst", image_id, frames, gt_linear, meta)
    write_png(split_dir / "gt" / f"{image_id}.png", process_linear_to_srgb(gt_linear, meta))
    return [h, w], notes
