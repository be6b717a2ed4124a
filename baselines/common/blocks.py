"""Blocks shared by the baselines: SRDiff's image-size helpers and U-Net layers, also used by InDI.

Moved here from :mod:`baselines.srdiff.nets` so that InDI does not import SRDiff's package; the layers
keep the official SRDiff module names (``block.1``, ``mlp.1``, ``res_conv``, ...), so the parameter
names of both networks are unchanged.

- :func:`bicubic_up`, :func:`pad_to_multiple`, :func:`lr_multiple`: the LR -> HR reference image and
  the padding that lets the U-Nets take any size;
- :class:`SinusoidalPosEmb`, :class:`Block`, :class:`ResnetBlock`, :class:`Downsample`,
  :class:`Upsample`: the U-Net layers of SRDiff's official code (no normalisation, Mish, reflection
  padding).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def bicubic_up(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic upsampling by ``scale`` with ``F.interpolate(mode="bicubic", align_corners=False)``.

    The official code upsamples with a MATLAB-compatible ``imresize`` (cubic kernel a = -0.5); PyTorch's
    kernel uses a = -0.75, so our residual's reference image differs slightly from the official one.
    One upsampler is used everywhere (training, sampling, InDI's y) so the learned residual matches it.
    No clipping: the overshoot is part of the reference the residual is measured against.
    """
    if scale == 1:
        return x
    h, w = x.shape[-2:]
    return F.interpolate(x, size=(h * scale, w * scale), mode="bicubic", align_corners=False)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad the bottom/right of ``x`` so height and width are multiples of ``multiple``.

    The U-Nets halve the resolution ``len(dim_mults) - 1`` times and need exact halving; callers crop
    the result back to the original size.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), mode="replicate")


def lr_multiple(hr_multiple: int, scale: int) -> int:
    """The LR size multiple that makes ``scale * h`` a multiple of ``hr_multiple``."""
    return hr_multiple // math.gcd(hr_multiple, scale)


class SinusoidalPosEmb(nn.Module):
    """Transformer position embedding of the (integer) timestep: [sin(t w_k), cos(t w_k)],
    w_k = 10000^(-k / (dim/2 - 1)), k = 0..dim/2-1 (the official code's frequencies)."""

    def __init__(self, dim: int):
        super().__init__()
        if dim < 4 or dim % 2:
            raise ValueError(f"time embedding dim must be even and >= 4, got {dim}")
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        w = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * (-math.log(10000) / (half - 1)))
        arg = t.float()[:, None] * w[None, :]
        return torch.cat((arg.sin(), arg.cos()), dim=-1)


class Block(nn.Module):
    """Reflection-padded 3x3 conv + Mish (no normalisation: the official model has gn_groups 0)."""

    def __init__(self, dim: int, dim_out: int):
        super().__init__()
        self.block = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(dim, dim_out, 3), nn.Mish())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class ResnetBlock(nn.Module):
    """Two Blocks with the time embedding added (per channel) between them, plus a 1x1 skip."""

    def __init__(self, dim: int, dim_out: int, time_emb_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Mish(), nn.Linear(time_emb_dim, dim_out))
        self.block1 = Block(dim, dim_out)
        self.block2 = Block(dim_out, dim_out)
        self.res_conv = nn.Conv2d(dim, dim_out, 1) if dim != dim_out else nn.Identity()

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        h = self.block1(x) + self.mlp(time_emb)[:, :, None, None]
        return self.block2(h) + self.res_conv(x)


class Downsample(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Sequential(nn.ConvTranspose2d(dim, dim, 4, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
