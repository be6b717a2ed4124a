"""Deterministic reference methods: MATLAB bicubic upsampling and a plain IR backbone."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dpir.checkpoint import load_network
from dpir.data.degrade import bicubic_resize
from dpir.methods.base import BuildContext, Method


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (B,C,H,W) at the bottom/right to a multiple; reflect where the image is large enough,
    replicate otherwise (reflect padding cannot exceed the image size: tiny images)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


class Bicubic(Method):
    name = "bicubic"
    nfe_note = "no network"
    flops_counted = False  # resize-right runs in numpy

    def __init__(self, scale: int):
        self.scale = scale

    def restore(self, y, generator=None):
        return bicubic_resize(y, float(self.scale)).clamp(0, 1)


class Backbone(Method):
    """A restoration network used on its own: x = phi_IR(y)."""

    nfe_note = "one forward pass of the IR network"

    def __init__(self, net: nn.Module, pad_multiple: int = 1, scale: int = 1):
        self.net, self.pad_multiple, self.scale = net, pad_multiple, scale

    @torch.no_grad()
    def restore(self, y, generator=None):
        yp, (h, w) = pad_to_multiple(y, self.pad_multiple)
        x = self.net(yp)
        return x[..., : h * self.scale, : w * self.scale]

    def modules(self):
        return {"ir": self.net}

    def tile(self, wrap):
        self.net = wrap(self.net, scale=self.scale, multiple=max(1, self.pad_multiple))
        return ["ir"]


def bicubic(cfg: dict, ctx: BuildContext) -> Method:
    return Bicubic(ctx.task.get("scale", 1))


def backbone(cfg: dict, ctx: BuildContext) -> Method:
    net = load_network(ctx.checkpoint(cfg["network"]), ctx.device)
    # windowed transformers pad internally; a tiny image still needs replicate padding first
    multiple = int(cfg.get("pad_multiple", getattr(net, "window_size", 1)))
    return Backbone(net, multiple, ctx.task.get("scale", 1))
