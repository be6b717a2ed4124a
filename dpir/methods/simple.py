"""Deterministic reference methods: MATLAB bicubic upsampling and a plain IR backbone."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dpir.checkpoint import load_network
from dpir.data.degrade import bicubic_resize
from dpir.methods.base import BuildContext, Method


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (..., H, W) at the bottom/right to a multiple of ``multiple``; returns it and the old (H, W).

    The padding only gives a network the size it needs and is cropped off its output, so it should
    continue the image plausibly: reflect where the image is large enough, replicate otherwise
    (reflect padding must be smaller than the side it mirrors, so a 3x5 image cannot be reflected up
    to 8x8).  Works for any size >= 1 px and any number of leading dimensions (bursts: B, N, 4, h, w)."""
    h, w = x.shape[-2:]
    multiple = max(1, int(multiple))
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    if h < 1 or w < 1:
        raise ValueError(f"cannot pad an empty {h}x{w} image")
    mode = "reflect" if ph < h and pw < w else "replicate"
    lead = x.shape[:-2]
    flat = x.reshape(-1, 1, h, w) if x.dim() != 4 else x      # F.pad's reflect/replicate need 3-D..5-D
    out = F.pad(flat, (0, pw, 0, ph), mode=mode)
    return out.reshape(*lead, h + ph, w + pw), (h, w)


def default_pad_multiple(net: nn.Module, task: dict) -> int:
    """What an IR network's input is padded to before it runs (:func:`pad_to_multiple`, cropped after).

    Windowed transformers (SwinIR: ``net.window_size``) pad internally with reflect padding, which fails
    on images smaller than a window, so they get whole windows first.  Burst networks pad their own
    features, but BSRT's pyramid halves the frames, so its packed RGGB frames (each pixel a whole
    quad, replicated by the padding) are made even; both are no-ops where the size already fits."""
    from dpir.tasks import task_kind

    if not task_kind(task).image_input:     # packed RGGB frames
        return 2
    # a spandrel network states its own size requirement (dpir.nets.foreign sets ``input_multiple``)
    return max(1, int(getattr(net, "input_multiple", 0) or getattr(net, "window_size", 1) or 1))


def restore_padded(net, y: torch.Tensor, multiple: int) -> torch.Tensor:
    """``net(y)`` on ``y`` padded to ``multiple`` (bottom/right), the output cropped to the unpadded
    size times the network's scale (output size / input size, read off the padded call)."""
    yp, (h, w) = pad_to_multiple(y, multiple)
    x = net(yp)
    if yp.shape[-2:] == y.shape[-2:]:
        return x
    sh, sw = x.shape[-2] / yp.shape[-2], x.shape[-1] / yp.shape[-1]
    if sh != int(sh) or sw != int(sw):
        raise RuntimeError(f"network output {tuple(x.shape[-2:])} is not an integer multiple of its "
                           f"padded input {tuple(yp.shape[-2:])}; cannot crop the padding off")
    return x[..., : h * int(sh), : w * int(sw)]


class Bicubic(Method):
    name = "bicubic"
    nfe_note = "no network"
    flops_counted = False  # resize-right runs in numpy

    def __init__(self, scale: int):
        self.scale = scale

    def restore(self, y, generator=None):
        return bicubic_resize(y, float(self.scale)).clamp(0, 1)

    def expected_nfe(self) -> int:
        return 0  # no network


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
        yp, (h, w) = pad_to_multiple(y, self.pad_multiple)
        x = self.net(yp)[..., : h * self.scale, : w * self.scale]
        if meta is not None:
            from dpir.isp import srgb_batch

            x = srgb_batch(x, meta)
        return x

    def expected_nfe(self) -> int:
        return 1  # one forward pass of the IR network

    def modules(self):
        return {"ir": self.net}

    def tile(self, wrap):
        self.net = wrap(self.net, scale=self.scale, multiple=max(1, self.pad_multiple))
        return ["ir"]


def bicubic(cfg: dict, ctx: BuildContext) -> Method:
    return Bicubic(ctx.task.get("scale", 1))


def backbone(cfg: dict, ctx: BuildContext) -> Method:
    net = load_network(ctx.checkpoint(cfg["network"]), ctx.device)
    from dpir.tasks import output_scale

    multiple = int(cfg.get("pad_multiple", default_pad_multiple(net, ctx.task)))
    return Backbone(net, multiple, output_scale(ctx.task))
