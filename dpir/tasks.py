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
which is what the small bundled training set needs.
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
                    f"the burst preparation)")


def write_extras(split_dir: Path, image_id: str, extras: dict) -> None:
    if "kernel" in extras:
        from dpir.data.blur import save_kernel

        save_kernel(split_dir / "kernels" / f"{image_id}.npy", extras["kernel"])


def write_pair(split_dir: Path, image_id: str, gt: torch.Tensor, lq: torch.Tensor, extras: dict) -> None:
    write_png(split_dir / "gt" / f"{image_id}.png", gt)
    write_png(split_dir / "lq" / f"{image_id}.png", lq)
    write_extras(split_dir, image_id, extras)


def train_degradation(task: dict) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None:
    """A function (gt patch (3,p,p), generator) -> lq patch for on-the-fly training data, or None
    when training uses the stored pairs."""
    if task["kind"] == "deblur":
        from dpir.data.blur import make_blur_pair

        cfg = _degradation(task)
        return lambda gt, g: make_blur_pair(gt, g, cfg)[0]
    return None
