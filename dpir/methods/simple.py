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
    """A restoration network used on its own: x = phi_IR(y).

    Burst task: ``y`` is (B, N, 4, h, w) RAW frames, the network estimates linear RGB and ``meta`` (one
    metadata dict per burst) turns it into sRGB with each burst's forward ISP; ``scale`` is then the
    output size per frame pixel (8 for 4x SR of the mosaic)."""

    nfe_note = "one forward pass of the IR network"

    def __init__(self, net: nn.Module, pad_multiple: int = 1, scale: int = 1):
        self.net, self.pad_multiple, self.scale = net, pad_multiple, scale

    @torch.no_grad()
    def restore(self, y, generator=None, meta=None):
        lead = y.shape[:-3]
        yp, (h, w) = pad_to_multiple(y.reshape(-1, *y.shape[-3:]), self.pad_multiple)
        x = self.net(yp.reshape(*lead, *yp.shape[-3:]))[..., : h * self.scale, : w * self.scale]
        if meta is not None:
            from dpir.methods.burst import srgb_batch

            x = srgb_batch(x, meta)
        return x

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
    from dpir.tasks import output_scale

    # a burst network pads its own features (BSRT); its frames only need to be whole RGGB quads
    default = 1 if ctx.task.get("kind") == "burst" else getattr(net, "window_size", 1)
    multiple = int(cfg.get("pad_multiple", default))
    return Backbone(net, multiple, output_scale(ctx.task))
