"""Tiled inference: run an image-to-image network on overlapping tiles and blend the outputs.

Paper-scale test images (DIV2K 2040x1356, GoPro 1280x720) do not fit through a SwinIR-M or a
MIRNet in one piece on a small GPU.  :class:`TiledModule` wraps a module ``f(x, *args)`` whose output
is ``scale`` times the size of ``x`` and evaluates it on tiles of ``tile x tile`` input pixels that
overlap by ``overlap`` pixels.  Tile outputs are blended with a weight window that is

- zero within ``margin`` input pixels of every tile edge that borders another tile (the outputs there
  see the artificial tile border),
- a raised-cosine ramp from 0 to 1 over the next ``overlap - 2 * margin`` pixels,
- one elsewhere, including along the image border (a tile edge on the image border sees the same
  padding as the whole image does),

and the weighted sum is divided by the summed weights.  Consequence (tested): for a module whose
output at a pixel depends only on input pixels within a radius ``rho <= margin`` (a stack of ``rho``
3x3 convolutions, receptive field ``2 rho + 1``), every output pixel is taken only from tiles in which
it is computed exactly, so the tiled result equals the untiled one up to float rounding.  The
default ``margin = overlap // 4`` covers receptive fields up to ``overlap / 2 + 1`` pixels wide; for
networks with global context (SwinIR's shifted windows, U-Nets) the result is close, not equal.

Extra arguments: positional tensors with the input's batch size and spatial size (DP-IR's fusion net
takes two images) are tiled alongside it; every other argument (noise level ``sigma``, timestep
``t``, DiffIR's prior vector ``z``) is passed to every tile unchanged.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from dpir.errors import DpirError


def tile_starts(n: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering ``[0, n)``; the last one ends at ``n``."""
    if n <= tile:
        return [0]
    starts = list(range(0, n - tile, stride))
    return starts + [n - tile]


def ramp_window(length: int, left: bool, right: bool, margin: int, ramp: int,
                device=None, dtype=torch.float32) -> torch.Tensor:
    """1-D weights of one tile: zeros over ``margin``, a raised-cosine rise over ``ramp`` samples on each
    side that borders another tile (``left``/``right``), ones elsewhere."""
    w = torch.ones(length, dtype=dtype, device=device)
    k = torch.arange(ramp, dtype=torch.float64)
    rise = (0.5 - 0.5 * torch.cos(math.pi * (k + 0.5) / ramp)).to(dtype=dtype, device=device)
    if left:
        w[:margin] = 0
        w[margin: margin + ramp] = rise
    if right:
        w[length - margin:] = 0
        w[length - margin - ramp: length - margin] = torch.minimum(w[length - margin - ramp: length - margin],
                                                                   rise.flip(0))
    return w


class TiledModule(nn.Module):
    """``TiledModule(module, tile, overlap, scale=None, margin=None, multiple=1)``; see the module docstring.

    ``scale`` (output size / input size) is read off the first tile when None.  ``multiple``: tile sizes
    are rounded down to a multiple of it (U-Nets and DIRformer need sizes divisible by 8; the caller
    pads the whole image).  Inputs no larger than one tile go through the module untouched.
    Attribute look-ups that the wrapper does not define fall through to the wrapped module, so code
    that reads ``net.scale`` or ``net.window_size`` keeps working.
    """

    def __init__(self, module: nn.Module, tile: int, overlap: int, scale: int | None = None,
                 margin: int | None = None, multiple: int = 1):
        super().__init__()
        tile = int(tile) // int(multiple) * int(multiple)
        margin = int(overlap) // 4 if margin is None else int(margin)
        if tile < 1 or not 0 <= int(overlap) < tile:
            raise DpirError(f"tiling needs 0 <= overlap < tile, got tile {tile} (rounded to a multiple of "
                            f"{multiple}) and overlap {overlap}; set `tile`/`tile_overlap` in the config")
        if overlap > 0 and not 0 <= 2 * margin < int(overlap):
            raise DpirError(f"tiling margin {margin} must be below half the overlap {overlap}")
        self.module = module
        self.tile, self.overlap, self.margin, self.multiple = tile, int(overlap), margin, int(multiple)
        self.scale = scale

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "module":
                raise
            return getattr(super().__getattr__("module"), name)

    def _spatial(self, a: Any, x: torch.Tensor) -> bool:
        return isinstance(a, torch.Tensor) and a.dim() == 4 and a.shape[0] == x.shape[0] \
            and a.shape[-2:] == x.shape[-2:]

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        H, W = x.shape[-2:]
        th, tw = min(self.tile, H), min(self.tile, W)
        if th == H and tw == W:
            return self.module(x, *args, **kwargs)
        stride = self.tile - self.overlap
        rows, cols = tile_starts(H, th, stride), tile_starts(W, tw, stride)
        tiled = [self._spatial(a, x) for a in args]
        ramp = self.overlap - 2 * self.margin
        out = weight = None
        s = self.scale
        for top in rows:
            for left in cols:
                crop = (slice(None), slice(None), slice(top, top + th), slice(left, left + tw))
                y = self.module(x[crop], *(a[crop] if t else a for a, t in zip(args, tiled)), **kwargs)
                if s is None:
                    s = y.shape[-2] // th
                    if y.shape[-2] != s * th or y.shape[-1] != s * tw:
                        raise DpirError(f"tiling: output {tuple(y.shape[-2:])} of a {th}x{tw} tile is not an "
                                        f"integer multiple of it; the module is not image-to-image")
                if out is None:
                    out = y.new_zeros((*y.shape[:-2], s * H, s * W))
                    weight = y.new_zeros((s * H, s * W))
                wy = ramp_window(s * th, top > 0, top + th < H, s * self.margin, s * ramp, y.device, y.dtype)
                wx = ramp_window(s * tw, left > 0, left + tw < W, s * self.margin, s * ramp, y.device, y.dtype)
                w = wy[:, None] * wx[None, :]
                region = (..., slice(s * top, s * (top + th)), slice(s * left, s * (left + tw)))
                out[region] += y * w
                weight[region] += w
        return out / weight


def wrap_for_tiling(method: Any, tile: int, overlap: int, margin: int | None = None) -> Any:
    """Wrap a built method's image-to-image networks in :class:`TiledModule` (in place; returns it).

    Wrapped, by method class:

    - ``Backbone`` (regression rows): ``net`` (the IR network);
    - ``DPIR``: ``ir`` (the IR network, scale = task scale), ``denoiser`` (takes sigma) and ``fusion``
      (two images + t), scale 1;
    - ``InDI``: ``net`` (x_t, t), tiles a multiple of the U-Net's size multiple;
    - ``DiffIR``: the DIRformer ``net.G`` (image + IPR vector z), tiles a multiple of 8.  Not its CPEN
      (``net.condition``), which pools the whole image into one vector: tiling it would change z.

    Not wrapped: ``Bicubic`` (no network) and ``SRDiff`` (its U-Net takes the HR residual and an LR
    feature map of another size, and the RRDB features are global conditioning); a warning names them.
    The names of the wrapped parts are stored in ``method.tiled_modules`` (for the run record).
    NFE and parameter counts are unchanged: counters hook the wrapper, which is called as often as
    the network was, and its parameters are the network's.
    """
    import warnings

    def wrap(m: nn.Module, **kw: Any) -> TiledModule:
        return m if isinstance(m, TiledModule) else TiledModule(m, tile, overlap, margin=margin, **kw)

    # each method knows its own image-to-image parts (Method.tile); this module imports no method
    done = method.tile(wrap)
    if not done:
        warnings.warn(f"tiling: method {getattr(method, 'name', type(method).__name__)!r} "
                      f"({type(method).__name__}) has no tiled path; it runs on whole images", stacklevel=2)
    method.tiled_modules = done
    return method
