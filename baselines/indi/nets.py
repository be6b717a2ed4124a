"""InDI's network F(x_t, t) -> estimate of x (Delbracio & Milanfar 2023, Sec. 3).

The paper gives no architecture code; we use a time-conditioned U-Net built from SRDiff's blocks
(:mod:`baselines.common.blocks`: reflection-padded convs, Mish, ResnetBlocks with an additive time
embedding), with every level's skip used, and a global residual ``F(x_t, t) = x_t + U(x_t, t)``: x_t is already close to x for small t, so
the net only learns the correction (F still estimates x, as the paper's loss asks).

``t`` in [0, 1] enters through the sinusoidal embedding of ``1000 t`` (the usual scale for continuous
time, so neighbouring steps of a 10-step sampler get distinct embeddings).  ``scale`` and ``eps`` are
process constants stored with the weights: ``y`` is the bicubic x``scale`` upsampling of the LQ input
(``scale`` 1 for deblurring) and ``eps`` is the noise level of the training path (see :mod:`.sampler`).
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from baselines.common.blocks import (
    Block,
    Downsample,
    ResnetBlock,
    SinusoidalPosEmb,
    Upsample,
)


class InDINet(nn.Module):
    """F(x_t, t): U-Net with ``hidden * dim_mults`` channels and two ResnetBlocks per level.

    Defaults (our choice, the paper publishes none): hidden 64, dim_mults (1, 2, 2, 4).
    """

    def __init__(self, hidden: int = 64, dim_mults: Sequence[int] = (1, 2, 2, 4), in_ch: int = 3,
                 scale: int = 1, eps: float = 0.01, time_scale: float = 1000.0):
        super().__init__()
        if len(dim_mults) < 1:
            raise ValueError("InDINet needs at least one level")
        self.scale, self.eps, self.time_scale = int(scale), float(eps), float(time_scale)
        dims = [hidden * m for m in dim_mults]
        n = len(dims)
        self.time_pos_emb = SinusoidalPosEmb(hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.Mish(), nn.Linear(4 * hidden, hidden))
        self.head = nn.Conv2d(in_ch, hidden, 3, 1, 1, padding_mode="reflect")
        chans = [hidden, *dims]
        self.downs = nn.ModuleList(
            nn.ModuleList([ResnetBlock(c_in, c_out, hidden), ResnetBlock(c_out, c_out, hidden),
                           Downsample(c_out) if i < n - 1 else nn.Identity()])
            for i, (c_in, c_out) in enumerate(itertools.pairwise(chans)))
        self.mid_block1 = ResnetBlock(dims[-1], dims[-1], hidden)
        self.mid_block2 = ResnetBlock(dims[-1], dims[-1], hidden)
        # decoder level i mirrors encoder level i: input = previous decoder output + skip of level i
        ups = []
        for i in reversed(range(n)):
            c_prev = dims[-1] if i == n - 1 else dims[i + 1]
            ups.append(nn.ModuleList([ResnetBlock(c_prev + dims[i], dims[i], hidden),
                                      ResnetBlock(dims[i], dims[i], hidden),
                                      Upsample(dims[i]) if i > 0 else nn.Identity()]))
        self.ups = nn.ModuleList(ups)
        self.final_conv = nn.Sequential(Block(dims[0], hidden), nn.Conv2d(hidden, in_ch, 1))
        #: input height/width must be multiples of this (callers pad)
        self.multiple = 2 ** (n - 1)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x_t.dtype, device=x_t.device).expand(x_t.shape[0])
        emb = self.mlp(self.time_pos_emb(t * self.time_scale))
        h = self.head(x_t)
        skips = []
        for res1, res2, down in self.downs:
            h = res2(res1(h, emb), emb)
            skips.append(h)
            h = down(h)
        h = self.mid_block2(self.mid_block1(h, emb), emb)
        for res1, res2, up in self.ups:
            h = up(res2(res1(torch.cat((h, skips.pop()), 1), emb), emb))
        return x_t + self.final_conv(h)
