"""Deterministic reference methods: MATLAB bicubic upsampling and a plain IR backbone."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dpir.checkpoint import load_network, official_inference
from dpir.data.degrade import bicubic_resize
from dpir.methods.base import BuildContext, Method

#: how :func:`pad_to_multiple` extends an image: ``reflect`` (ours, to the next multiple) or
#: ``swinir_official`` (SwinIR's main_test_swinir.py: mirror including the edge pixel, always one size more)
PAD_MODES = ("reflect", "swinir_official")


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "reflect") -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (..., H, W) at the bottom/right to a multiple of ``multiple``; returns it and the old (H, W).

    The padding only gives a network the size it needs and is cropped off its output, so it should
    continue the image plausibly.  ``mode``:

    - ``reflect`` (default): to the next multiple, nothing where the size fits; reflect where the image
      is large enough, replicate otherwise (reflect padding must be smaller than the side it mirrors, so
      a 3x5 image cannot be reflected up to 8x8);
    - ``swinir_official``: SwinIR's official test protocol (main_test_swinir.py), which pads every side
      to ``(H // multiple + 1) * multiple`` -- a whole extra window where H already fits -- with the image
      flipped and concatenated after itself, i.e. a mirror that repeats the edge pixel (``symmetric``
      padding: row H is row H - 1).  Where the padding is longer than the image (only below one window)
      the flipped copies continue periodically, where the official script would fall short of the size.

    Works for any size >= 1 px and any number of leading dimensions (bursts: B, N, 4, h, w)."""
    if mode not in PAD_MODES:
        raise ValueError(f"pad mode must be one of {PAD_MODES}, got {mode!r}")
    h, w = x.shape[-2:]
    multiple = max(1, int(multiple))
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0 and mode == "reflect":
        return x, (h, w)
    if h < 1 or w < 1:
        raise ValueError(f"cannot pad an empty {h}x{w} image")
    if mode == "swinir_official":
        return _pad_symmetric(x, (h // multiple + 1) * multiple, (w // multiple + 1) * multiple), (h, w)
    mode = "reflect" if ph < h and pw < w else "replicate"
    lead = x.shape[:-2]
    flat = x.reshape(-1, 1, h, w) if x.dim() != 4 else x      # F.pad's reflect/replicate need 3-D..5-D
    out = F.pad(flat, (0, pw, 0, ph), mode=mode)
    return out.reshape(*lead, h + ph, w + pw), (h, w)


def _symmetric_index(n: int, size: int, device) -> torch.Tensor:
    """Source rows of ``x, flip(x), x, flip(x), ...`` cut to ``size`` (period 2n)."""
    i = torch.arange(size, device=device) % (2 * n)
    return torch.where(i < n, i, 2 * n - 1 - i)


def _pad_symmetric(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    x = x.index_select(-2, _symmetric_index(h, height, x.device))
    return x.index_select(-1, _symmetric_index(w, width, x.device))


def default_pad_multiple(net: nn.Module, task: dict) -> int:
    """What an IR network's input is padded to before it runs (:func:`pad_to_multiple`, cropped after).

    Windowed transformers (SwinIR: ``net.window_size``) pad internally with reflect padding, which fails
    on images smaller than a window, so they get whole windows first.  Burst networks pad their own
    features, but BSRT's pyramid halves the frames, so its packed RGGB frames (each pixel a whole
    quad, replicated by the padding) are made even; both are no-ops where the size already fits."""
    from dpir.tasks import task_kind

    if not task_kind(task).image_input:     # packed RGGB frames
        return 2
    # an imported network's official protocol, then a spandrel network's own size requirement
    # (dpir.nets.foreign sets ``input_multiple``), then a windowed transformer's window
    official = official_inference(net).get("pad_multiple")
    return max(1, int(official or getattr(net, "input_multiple", 0) or getattr(net, "window_size", 1) or 1))


def pad_mode_of(net) -> str:
    """The padding an IR network runs with: its official one (``official_inference.pad_mode``, recorded
    at import: ``swinir_official`` for SwinIR), else ``reflect``."""
    return str(official_inference(net).get("pad_mode") or "reflect")


#: ``precision`` of :func:`restore_padded` / :class:`Backbone`: the network's own official precision
NETWORK_PRECISION = "network"


def restore_padded(net, y: torch.Tensor, multiple: int, mode: str | None = None,
                   precision: str | None = NETWORK_PRECISION) -> torch.Tensor:
    """``net(y)`` on ``y`` padded to ``multiple`` (bottom/right), the output cropped to the unpadded
    size times the network's scale (output size / input size, read off the padded call).

    ``mode``: a :data:`PAD_MODES` name; ``None`` is the network's own (:func:`pad_mode_of`: the
    official protocol of an imported network, ``reflect`` for one trained here).  ``precision``: the
    network call's autocast (:func:`dpir.precision.network_autocast`); by default the network's official
    inference precision (fp32 / nothing for one trained here); ``None`` leaves it to the caller's autocast
    (a config that sets the method's ``precision``).  A reduced-precision output is returned in ``y``'s dtype."""
    from dpir.precision import network_autocast

    if precision == NETWORK_PRECISION:
        precision = official_inference(net).get("precision")
    yp, (h, w) = pad_to_multiple(y, multiple, mode or pad_mode_of(net))
    with network_autocast(precision, y.device):
        x = net(yp)
    if precision not in (None, "fp32"):
        x = x.to(y.dtype)
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
    output size per frame pixel (8 for 4x SR of the mosaic).

    An imported network runs as its official test code runs it (``official_inference``, recorded by
    ``dpir import-official``): its padding (``pad_mode``; SwinIR's flip-and-concatenate) and its
    precision (BSRT: fp16 autocast on CUDA, fp32 on the CPU) unless the entry sets ``precision``."""

    nfe_note = "one forward pass of the IR network"

    def __init__(self, net: nn.Module, pad_multiple: int = 1, scale: int = 1, pad_mode: str | None = None,
                 precision: str | None = NETWORK_PRECISION):
        # the network's official protocol is read now: tiling (``tile``) wraps the network later
        self.net, self.pad_multiple, self.scale = net, pad_multiple, scale
        self.pad_mode = pad_mode or pad_mode_of(net)
        own = precision == NETWORK_PRECISION
        self.precision = official_inference(net).get("precision") if own else precision

    @torch.no_grad()
    def restore(self, y, generator=None, meta=None):
        from dpir.precision import network_autocast

        yp, (h, w) = pad_to_multiple(y, self.pad_multiple, self.pad_mode)
        with network_autocast(self.precision, y.device):
            x = self.net(yp)[..., : h * self.scale, : w * self.scale]
        if self.precision not in (None, "fp32"):
            x = x.to(y.dtype)
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
    # an entry's own ``precision`` (the autocast dpir.restore puts around the method) overrides the
    # imported network's official one
    precision = None if "precision" in cfg else NETWORK_PRECISION
    return Backbone(net, multiple, output_scale(ctx.task), precision=precision)
