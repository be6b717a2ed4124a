"""The offline ``bundled`` dataset: colour photographs shipped inside scikit-image and matplotlib.

Fixed split by image (never by crop, so no test content is seen in training):

- test:  astronaut, chelsea, coffee (scikit-image), grace_hopper (matplotlib)
- train: rocket, hubble_deep_field, immunohistochemistry, retina, motorcycle_left,
         motorcycle_right (scikit-image)

Only images that need no download are used (``skimage.data.lily`` and others fetch from the
network and fail offline); grayscale images (camera, brick, grass, gravel, ...) are excluded
because every task works on RGB; ``cat`` is the same photograph as ``chelsea`` and is excluded.
The images are public domain or CC0 (see ``skimage.data``'s documentation).
"""
from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

TEST = ["astronaut", "chelsea", "coffee", "grace_hopper"]
TRAIN = ["rocket", "hubble_deep_field", "immunohistochemistry", "retina", "motorcycle_left", "motorcycle_right"]


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load():
        import skimage.data

        return getattr(skimage.data, name)()
    return load


def _motorcycle(index: int) -> Callable[[], np.ndarray]:
    def load():
        import skimage.data

        return skimage.data.stereo_motorcycle()[index]
    return load


def _grace_hopper() -> np.ndarray:
    import matplotlib
    from PIL import Image

    path = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    with Image.open(path) as im:
        return np.array(im.convert("RGB"))


LOADERS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"),
    "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "grace_hopper": _grace_hopper,
    "rocket": _skimage("rocket"),
    "hubble_deep_field": _skimage("hubble_deep_field"),
    "immunohistochemistry": _skimage("immunohistochemistry"),
    "retina": _skimage("retina"),
    "motorcycle_left": _motorcycle(0),
    "motorcycle_right": _motorcycle(1),
}

SPLITS = {"train": TRAIN, "test": TEST}


def load(name: str) -> np.ndarray:
    """HxWx3 uint8 array of a bundled image."""
    return LOADERS[name]()
