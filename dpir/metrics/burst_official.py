"""The official SyntheticBurst score: PSNR in linear sensor space, as the burst literature reports it.

Definition (deep-burst-sr, Bhat et al. CVPR 2021, ``evaluation/synburst/compute_score.py`` with
``models/loss/image_quality_v2.py``; the NTIRE 2021 burst super-resolution challenge, track 1, scores
the same way, and BSRT's ``test_synburst.py`` and the DBSR / DeepRep / BIPNet / BSRT / EBSR numbers of
DP-IR's Table 1 use it):

1. the prediction is the network's LINEAR camera-RGB output (before the ISP), clipped to [0, 1] and
   quantised to 14 bits by truncation: ``(pred.clamp(0, 1) * 2**14).short() / 2**14`` (the saved-PNG
   path writes ``astype(np.uint16)`` of the same product and divides by 2^14 on reading: identical);
2. the target is the linear ground truth ``gt/<id>/im_rgb.png`` (uint16, value * 2^14) / 2^14;
3. ``boundary_ignore = 40``: 40 px are removed on each side of both (the targets are 384 x 384);
4. per image ``PSNR = 20 log10(1) - 10 log10(MSE)``, the MSE over all pixels and the three channels
   (``F.mse_loss``), peak 1.0; the score is the mean of the per-image PSNRs.

Differences from the official code, both below 1e-4 dB on real data: the MSE is computed in float64 here
(float32 there), and an image identical to its target scores +inf here (the harness's PSNR convention,
:mod:`dpir.metrics.pixel`) where the official loop drops the infinite value and records 0.

**Linear predictions from sRGB PNGs.**  The harness stores each run's output as an sRGB PNG only (the
score of the results files, :mod:`dpir.score`, is DP-IR's sRGB protocol).  Storing a linear prediction as
well would not help: DP-IR's own output is sRGB by construction (its denoiser and fusion net work on
sRGB images; only its IR net, BSRT, is linear), so a linear DP-IR prediction exists only as the inverse of
the ISP anyway, and an official score computed from stored linear BSRT outputs but inverted DP-IR outputs
would compare two protocols.  So every method is scored the same way: the stored sRGB PNG is taken back
to linear by the exact inverse of the deterministic forward ISP of :func:`dpir.isp.process_linear_to_srgb`
with the burst's own metadata (:func:`srgb_to_linear`), then steps 1-4 apply.  The inverse is exact
(float rounding aside, tested) wherever the forward ISP did not clip: white-balanced values at most 1 and
colour-corrected values in [0, 1]; a clipped pixel comes back at the clipping boundary.  What the 8-bit
PNG loses is bounded by scoring the target's own sRGB PNG the same way (the protocol's *ceiling*,
reported by :mod:`dpir.report.protocols`): no method scored from 8-bit PNGs can exceed it.  ``png_bits:
16`` in the config makes the round trip nearly lossless.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dpir.errors import DpirError
from dpir.isp import apply_ccm, gamma_expansion, invert_smoothstep

#: ``boundary_ignore`` of the official scoring: px removed on each side of the 384 x 384 targets
OFFICIAL_BORDER = 40
#: the official predictions are quantised to 14 bits (the SyntheticBurst file format: value * 2^14)
OFFICIAL_BITS = 14

CONVENTION = ("PSNR in linear camera RGB (peak 1.0, MSE over pixels and channels, float64), prediction clipped "
              "and truncated to 14 bits, {border} px ignored on each side, mean of per-image PSNRs "
              "(deep-burst-sr compute_score.py, NTIRE 2021 burst SR track 1)")


def quantise_official(x: torch.Tensor) -> torch.Tensor:
    """``floor(clamp(x, 0, 1) * 2^14) / 2^14`` in float64: the official truncation (``.short()`` and
    ``astype(np.uint16)`` both round toward zero, which is the floor for the non-negative clipped values)."""
    scale = float(2 ** OFFICIAL_BITS)
    return torch.floor(x.to(torch.float64).clamp(0.0, 1.0) * scale) / scale


def _crop(x: torch.Tensor, border: int) -> torch.Tensor:
    if isinstance(border, bool) or not isinstance(border, int) or border < 0:
        raise DpirError(f"the official burst score's border must be a non-negative integer, got {border!r}")
    if border == 0:
        return x
    h, w = x.shape[-2:]
    if h <= 2 * border or w <= 2 * border:
        raise DpirError(f"the official burst score ignores {border} px on each side, which leaves nothing of a "
                        f"{h}x{w} image; use larger test images (datasets.<name>.test_crop above {2 * border}) "
                        f"or a smaller report.protocols.burst_border")
    return x[..., border:h - border, border:w - border]


def linear_psnr(pred: torch.Tensor, gt: torch.Tensor, border: int = OFFICIAL_BORDER) -> torch.Tensor:
    """Per-image PSNR (B,) float64 of (B, 3, H, W) linear images with peak 1.0 after removing ``border`` px
    on each side (steps 3-4 of the definition; no quantisation here)."""
    if pred.shape != gt.shape or pred.dim() != 4:
        raise ValueError(f"linear_psnr needs two (B, 3, H, W) tensors of one shape, got {tuple(pred.shape)} "
                         f"and {tuple(gt.shape)}")
    a, b = _crop(pred.to(torch.float64), border), _crop(gt.to(torch.float64), border)
    mse = (a - b).square().flatten(1).mean(dim=1)
    return -10.0 * torch.log10(mse)          # 20 log10(1) - 10 log10(mse); +inf for identical images


def official_psnr(pred_linear: torch.Tensor, gt_linear: torch.Tensor, border: int = OFFICIAL_BORDER) -> torch.Tensor:
    """The official SyntheticBurst PSNR (B,) of linear predictions: 14-bit truncation, then
    :func:`linear_psnr` with the official border."""
    return linear_psnr(quantise_official(pred_linear), gt_linear, border)


def _matrix(meta: dict[str, Any], key: str) -> torch.Tensor:
    v = meta[key]
    if isinstance(v, torch.Tensor):
        return v.detach().to(torch.float64).cpu()
    return torch.as_tensor(np.asarray(v, dtype=np.float64))


def srgb_to_linear(srgb: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
    """The inverse of :func:`dpir.isp.process_linear_to_srgb` for one burst's metadata, in float64.

    Forward: white-balance gains (clipped to [0, 1]), ``cam2rgb``, gamma 1/2.2, smoothstep (each when the
    metadata says so), clip.  Inverse, in reverse order: inverse smoothstep, gamma 2.2, ``cam2rgb^-1``,
    division by the gains, clip to [0, 1] (the range of linear values).  ``srgb`` is (3, H, W) or
    (B, 3, H, W) in [0, 1].
    """
    try:
        rgb_gain, red_gain, blue_gain = (float(meta[k]) for k in ("rgb_gain", "red_gain", "blue_gain"))
        cam2rgb = _matrix(meta, "cam2rgb")
    except (KeyError, TypeError, ValueError) as e:
        raise DpirError(f"burst metadata {meta.get('burst_name', '?')!r} lacks a usable {e} entry for the "
                        f"inverse ISP; re-run `dpir prepare` for the burst task") from None
    x = srgb.to(torch.float64)
    if bool(meta.get("smoothstep", True)):
        x = invert_smoothstep(x)
    if bool(meta.get("gamma", True)):
        x = gamma_expansion(x)
    x = apply_ccm(x, torch.linalg.inv(cam2rgb))
    gains = torch.tensor([red_gain * rgb_gain, rgb_gain, blue_gain * rgb_gain], dtype=torch.float64).view(3, 1, 1)
    return (x / gains).clamp(0.0, 1.0)


def official_psnr_from_srgb(pred_srgb: torch.Tensor, gt_linear: torch.Tensor, meta: dict[str, Any],
                            border: int = OFFICIAL_BORDER) -> torch.Tensor:
    """The official score (B,) of sRGB predictions of ONE burst (every batch element uses ``meta``): the
    inverse ISP (:func:`srgb_to_linear`), then :func:`official_psnr`."""
    return official_psnr(srgb_to_linear(pred_srgb, meta), gt_linear, border)
