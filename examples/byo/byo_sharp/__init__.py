"""byo_sharp: a tiny model from outside dpir-bench, for the ``python`` method kind ("bring your own").

It knows nothing about dpir.  ``build(cfg)`` returns an ``nn.Module`` mapping a batch of RGB images in
[0, 1] (B, 3, h, w) to (B, 3, s*h, s*w): MATLAB-style bicubic upsampling (``imresize``: Keys' cubic with
a = -0.5, pixel-centre aligned, symmetric borders) followed by a fixed depthwise unsharp mask,
``x + amount * (x - gauss_3x3(x))``, with a 3x3 binomial blur [1 2 1]^T [1 2 1] / 16 and replicated
borders.  It is deterministic and has 27 (fixed) parameters: the mask's weights.

Used by the harness as::

    byo_sharp: {kind: python, entry: "byo_sharp:build", python_path: [examples/byo], deterministic: true,
                options: {scale: 4, amount: 0.5}}

``options`` (all optional): ``scale`` (integer >= 1, default 4) and ``amount`` (number >= 0, default 0.5;
0 gives plain bicubic).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's imresize 'bicubic')."""
    ax = x.abs()
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def resize_matrix(n_in: int, scale: int) -> torch.Tensor:
    """(scale * n_in, n_in) float64 interpolation matrix of MATLAB imresize upsampling along one axis."""
    n_out = n_in * scale
    u = (torch.arange(1, n_out + 1, dtype=torch.float64) / scale) + 0.5 * (1 - 1 / scale)  # 1-based input coordinate
    left = torch.floor(u - 2)
    taps = left[:, None] + torch.arange(0, 5, dtype=torch.float64)[None, :]             # kernel width 4 -> 5 taps
    w = _cubic(u[:, None] - taps)
    w = w / w.sum(dim=1, keepdim=True)
    # symmetric ("mirror") border indices, as MATLAB: 1..n, n..1, repeated
    idx = taps.long() - 1
    period = 2 * n_in
    idx = torch.remainder(idx, period)
    idx = torch.where(idx >= n_in, period - 1 - idx, idx)
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    m.scatter_add_(1, idx, w)
    return m


class BicubicSharp(nn.Module):
    def __init__(self, scale: int = 4, amount: float = 0.5):
        super().__init__()
        self.scale, self.amount = int(scale), float(amount)
        g = torch.tensor([1.0, 2.0, 1.0])
        blur = torch.outer(g, g) / 16
        delta = torch.zeros(3, 3)
        delta[1, 1] = 1.0
        kernel = delta + self.amount * (delta - blur)               # unsharp mask as one 3x3 filter
        self.mask = nn.Conv2d(3, 3, 3, groups=3, bias=False)
        with torch.no_grad():
            self.mask.weight.copy_(kernel.expand(3, 1, 3, 3))
        self.mask.weight.requires_grad_(False)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        h, w = y.shape[-2:]
        if self.scale > 1:
            mh = resize_matrix(h, self.scale).to(y.device, y.dtype)
            mw = resize_matrix(w, self.scale).to(y.device, y.dtype)
            y = torch.einsum("oh,bchw,pw->bcop", mh, y, mw)
        return self.mask(F.pad(y, (1, 1, 1, 1), mode="replicate"))


def build(cfg: dict) -> nn.Module:
    opts = cfg.get("options") or {}
    scale, amount = opts.get("scale", 4), opts.get("amount", 0.5)
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"options.scale must be an integer >= 1, got {scale!r}")
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount) or amount < 0:
        raise ValueError(f"options.amount must be a number >= 0, got {amount!r}")
    return BicubicSharp(scale, amount)
