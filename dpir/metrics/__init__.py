"""Metric presets, by name.

``METRICS`` maps a preset name to ``"module:factory"``; the factory takes the preset's options
(every preset has ``crop_border``, default 0) and returns a :class:`Metric`.  Imports are lazy: the
heavy libraries (lpips, pyiqa) are imported on a metric's first call, never here.

Presets and their direction (see each one's ``convention`` for the full definition):

=============  ======  ============================================================
psnr_y         higher  PSNR on BT.601 YCbCr Y (16-235), 0-255 scale (SR convention)
psnr_rgb       higher  PSNR on RGB, 0-255 scale (deblurring convention)
ssim_y         higher  MATLAB-style SSIM on Y
ssim_rgb       higher  MATLAB-style SSIM on RGB, mean over channels
lpips_alex     lower   LPIPS v0.1, AlexNet (needs weights)
topiq_nr       higher  no-reference TOPIQ (needs weights)
topiq_delta    lower   |TOPIQ_nr(out) - TOPIQ_nr(ref)|, DP-IR's TOPIQ_delta (needs weights)
topiq_fr       higher  full-reference TOPIQ (needs weights)
gmsd           lower   weight-free; the offline perceptual axis (OFFLINE_PERCEPTUAL)
nlpd           lower   weight-free
ms_ssim        higher  weight-free
fsim           higher  weight-free
vif            higher  weight-free
=============  ======  ============================================================
"""
from __future__ import annotations

import importlib
import inspect

import torch

from dpir.errors import DpirError, UnknownNameError
from dpir.metrics.base import Metric

__all__ = ["METRICS", "OFFLINE_PERCEPTUAL", "Metric", "evaluate", "get_metric"]

#: the weight-free metric that stands in for LPIPS as the report's perceptual axis offline
OFFLINE_PERCEPTUAL = "gmsd"

METRICS: dict[str, str] = {
    "psnr_y": "dpir.metrics.pixel:psnr_y",
    "psnr_rgb": "dpir.metrics.pixel:psnr_rgb",
    "ssim_y": "dpir.metrics.pixel:ssim_y",
    "ssim_rgb": "dpir.metrics.pixel:ssim_rgb",
    "lpips_alex": "dpir.metrics.lpips_alex:lpips_alex",
    "topiq_nr": "dpir.metrics.topiq:topiq_nr",
    "topiq_delta": "dpir.metrics.topiq:topiq_delta",
    "topiq_fr": "dpir.metrics.topiq:topiq_fr",
    "gmsd": "dpir.metrics.iqa:gmsd",
    "nlpd": "dpir.metrics.iqa:nlpd",
    "ms_ssim": "dpir.metrics.iqa:ms_ssim",
    "fsim": "dpir.metrics.iqa:fsim",
    "vif": "dpir.metrics.iqa:vif",
}


def get_metric(name: str, **options) -> Metric:
    """Build the preset ``name`` with its ``options``; unknown names and options are user errors."""
    if name not in METRICS:
        raise UnknownNameError("metric", name, METRICS)
    module, attr = METRICS[name].split(":")
    factory = getattr(importlib.import_module(module), attr)
    accepted = list(inspect.signature(factory).parameters)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DpirError(f"metric {name!r} has no option {', '.join(repr(u) for u in unknown)}; "
                        f"it accepts: {', '.join(accepted) or 'no options'}. Fix the metric options in the config")
    return factory(**options)


def evaluate(metrics: list[Metric], out: torch.Tensor, ref: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Scores (B,) of every metric, by name (no-reference metrics ignore ``ref``)."""
    return {m.name: m(out, ref) for m in metrics}
