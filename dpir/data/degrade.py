"""Degradations: how an observation ``y`` is made from a clean image ``x``.

4x SR follows the DIV2K protocol: MATLAB ``imresize(x, 1/4, 'bicubic')``, i.e. the Keys cubic
kernel (a = -0.5) stretched by the scale factor (antialiasing), weights normalised per output
pixel, symmetric boundary extension, then rounding to 8 bits when written as PNG.  We use the
``resize-right`` package for the resampling with ``pad_mode="symmetric"`` (its default, zero
padding, darkens the border and is not what MATLAB does).
"""
from __future__ import annotations

import numpy as np
import torch

from dpir.errors import DpirError


def bicubic_resize(x: torch.Tensor, scale: float) -> torch.Tensor:
    """MATLAB-compatible bicubic resize of (..., C, H, W) by ``scale`` (0.25 = 4x downscale)."""
    from resize_right import interp_methods, resize

    arr = x.detach().cpu().double().numpy()
    out = resize(arr, scale_factors=[1.0] * (arr.ndim - 2) + [scale, scale], interp_method=interp_methods.cubic,
                 antialiasing=True, pad_mode="symmetric")
    return torch.from_numpy(np.ascontiguousarray(out)).to(x.dtype)


def mod_crop(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop (C,H,W) at the bottom/right so H and W are multiples of ``scale`` (BasicSR's mod_crop)."""
    h, w = x.shape[-2:]
    if h < scale or w < scale:
        raise DpirError(f"image of size {h}x{w} is smaller than the scale {scale}")
    return x[..., : h - h % scale, : w - w % scale]


def bicubic_down(x: torch.Tensor, scale: int) -> torch.Tensor:
    """The SR degradation: (C,H,W) with H, W divisible by ``scale`` -> (C,H/scale,W/scale)."""
    h, w = x.shape[-2:]
    if h % scale or w % scale:
        raise DpirError(f"HR size {h}x{w} is not divisible by the scale {scale}; mod-crop it first")
    return bicubic_resize(x, 1.0 / scale)


DEGRADATIONS = {"bicubic": bicubic_down}
