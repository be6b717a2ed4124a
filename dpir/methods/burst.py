"""Burst JDD-SR (joint demosaicking, denoising and super-resolution) helpers and the single-frame baseline.

A burst method gets ``y`` = (B, N, 4, h, w) packed RGGB frames and ``meta`` = one metadata dict per
burst (:func:`dpir.data.burst.synthesize_burst`), and returns sRGB (B, 3, 8h, 8w) for scale 4: burst
networks estimate linear camera RGB, and every output is passed through the burst's own forward ISP
before scoring, as in the SyntheticBurst evaluation (Bhat et al., CVPR 2021) and DP-IR's Table 1.
"""
from __future__ import annotations

import torch

from dpir.isp import demosaic_bilinear, srgb_batch  # noqa: F401  (srgb_batch: re-exported)
from dpir.data.degrade import bicubic_resize
from dpir.errors import DpirError
from dpir.methods.base import BuildContext, Method


class BurstBicubic(Method):
    """The single-frame reference: bilinear demosaicking of the reference frame (2x, packed -> mosaic
    resolution), MATLAB bicubic x``scale``, then the forward ISP.  Uses no other frame and no network."""

    name = "burst_bicubic"
    nfe_note = "no network (frame 0 only: bilinear demosaicking + bicubic)"
    flops_counted = False  # resize-right runs in numpy

    def __init__(self, scale: int):
        self.scale = scale

    def restore(self, y: torch.Tensor, generator=None, meta: list[dict] | None = None) -> torch.Tensor:
        if y.dim() != 5 or y.shape[2] != 4:
            raise DpirError(f"burst_bicubic expects bursts (B, N, 4, h, w), got {tuple(y.shape)}")
        if meta is None:
            raise DpirError("burst_bicubic needs the bursts' metadata (meta=[...]) to convert to sRGB")
        x = bicubic_resize(demosaic_bilinear(y[:, 0]), float(self.scale)).to(y.device).clamp(0, 1)
        return srgb_batch(x, meta)

    def expected_nfe(self) -> int:
        return 0  # no network


def burst_bicubic(cfg: dict, ctx: BuildContext) -> Method:
    from dpir.tasks import BURST, task_kind

    if task_kind(ctx.task) is not BURST:
        raise DpirError(f"method kind 'burst_bicubic' is for burst tasks; task {ctx.task_name!r} is "
                        f"{ctx.task.get('kind')!r} (use kind 'bicubic')")
    return BurstBicubic(int(ctx.task.get("scale", 4)))
