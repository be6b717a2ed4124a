"""The ExampleDiff network: a one-block conditional denoiser that predicts the clean residual.

Input: the noisy residual ``x_t``, the timestep ``t`` (1..T, one per batch element) and the
bicubic-upsampled observation ``up`` (the condition, concatenated on channels).  Output: the estimate of
``r_0 = HR - up``.  The layers are the baselines' shared U-Net blocks (:mod:`baselines.common.blocks`);
no down-sampling, so any image size works without padding.
"""
from __future__ import annotations

import torch
from torch import nn

from baselines.common.blocks import ResnetBlock, SinusoidalPosEmb


class ExampleDiffNet(nn.Module):
    def __init__(self, scale: int = 4, hidden: int = 16, t_dim: int = 16, T: int = 20):
        super().__init__()
        if int(T) != T or T < 1:
            raise ValueError(f"T must be a positive integer, got {T!r}")
        self.scale, self.T = int(scale), int(T)
        self.time = nn.Sequential(SinusoidalPosEmb(t_dim), nn.Linear(t_dim, t_dim), nn.Mish())
        self.head = nn.Conv2d(6, hidden, 3, padding=1)
        self.body = ResnetBlock(hidden, hidden, t_dim)
        self.tail = nn.Conv2d(hidden, 3, 3, padding=1)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        h = self.head(torch.cat((x_t, up), dim=1))
        return self.tail(self.body(h, self.time(t)))
