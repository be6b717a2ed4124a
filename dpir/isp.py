"""The camera model shared by burst synthesis, burst networks, burst methods and their trainers.

Brooks et al., "Unprocessing Images for Learned Raw Denoising" (CVPR 2019, Sec. 3), as reused by the
SyntheticBurst generator and evaluation (Bhat et al., CVPR 2021): the unprocessing steps (inverse tone
map, inverse gamma, inverse colour correction, safe inverse white balance), the forward ISP
(:func:`process_linear_to_srgb`, the official ``process_linear_image_rgb``), RGGB mosaicking and
packing, and bilinear demosaicking.

A neutral module: it imports only torch, numpy and :mod:`dpir.rng` / :mod:`dpir.errors`, so that
:mod:`dpir.nets`, :mod:`dpir.train`, :mod:`dpir.methods` and :mod:`dpir.data` can all use it without
importing one another (``tests/test_import_rules.py``).  :mod:`dpir.data.burst` re-exports every
name here.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dpir import rng
from dpir.errors import DpirError

# XYZ -> camera matrices of four cameras, as listed by Brooks et al. (2019) and reused by Bhat et al.
XYZ2CAMS = (
    ((1.0234, -0.2969, -0.2266), (-0.5625, 1.6328, -0.0469), (-0.0703, 0.2188, 0.6406)),
    ((0.4913, -0.0541, -0.0202), (-0.613, 1.3513, 0.2906), (-0.1564, 0.2151, 0.7183)),
    ((0.838, -0.263, -0.0639), (-0.2887, 1.0725, 0.2496), (-0.0627, 0.1427, 0.5438)),
    ((0.6596, -0.2079, -0.0562), (-0.4782, 1.3016, 0.1933), (-0.097, 0.1581, 0.5181)),
)
# linear sRGB (D65) -> XYZ
RGB2XYZ = ((0.4124564, 0.3575761, 0.1804375), (0.2126729, 0.7151522, 0.0721750), (0.0193339, 0.1191920, 0.9503041))


# ---------------------------------------------------------------------------------- camera model

def random_ccm(generator: torch.Generator) -> torch.Tensor:
    """rgb2cam (3x3, float64): a random convex combination of ``XYZ2CAMS`` times RGB2XYZ, each row
    normalised to sum to 1 so white stays white (white balance is modelled by the gains).

    Brooks et al. draw the weights uniformly in [1e-8, 1e8] before normalising, which is the same
    distribution as uniform [0, 1) weights up to the negligible 1e-8 floor.
    """
    w = rng.rand((len(XYZ2CAMS),), generator).double() + 1e-16
    xyz2cam = (torch.tensor(XYZ2CAMS, dtype=torch.float64) * w[:, None, None]).sum(0) / w.sum()
    rgb2cam = xyz2cam @ torch.tensor(RGB2XYZ, dtype=torch.float64)
    return rgb2cam / rgb2cam.sum(-1, keepdim=True)


def random_gains(generator: torch.Generator) -> tuple[float, float, float]:
    """(rgb_gain, red_gain, blue_gain) as Brooks et al.: 1 / N(0.8, 0.1), U(1.9, 2.4), U(1.5, 1.9)."""
    z = float(rng.randn((1,), generator).double())
    u = rng.rand((2,), generator).double().tolist()
    return 1.0 / (0.8 + 0.1 * z), 1.9 + 0.5 * u[0], 1.5 + 0.4 * u[1]


def random_noise_levels(generator: torch.Generator) -> tuple[float, float]:
    """(shot, read) noise: log-uniform shot in [1e-4, 1.2e-2], log read = 2.18 log shot + 1.20 + N(0, 0.26)."""
    u = float(rng.rand((1,), generator).double())
    z = float(rng.randn((1,), generator).double())
    log_shot = math.log(1e-4) + (math.log(0.012) - math.log(1e-4)) * u
    return math.exp(log_shot), math.exp(2.18 * log_shot + 1.20 + 0.26 * z)


def invert_smoothstep(y: torch.Tensor) -> torch.Tensor:
    y = y.clamp(0.0, 1.0)
    return 0.5 - torch.sin(torch.asin(1.0 - 2.0 * y) / 3.0)


def smoothstep(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0.0, 1.0)
    return 3.0 * x ** 2 - 2.0 * x ** 3


def gamma_expansion(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(min=1e-8) ** 2.2


def gamma_compression(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(min=1e-8) ** (1.0 / 2.2)


def apply_ccm(x: torch.Tensor, ccm: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) -> ccm @ pixel for every pixel."""
    return torch.einsum("ij,...jhw->...ihw", ccm.to(x), x)


def _gains(rgb_gain: float, red_gain: float, blue_gain: float, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor([red_gain * rgb_gain, rgb_gain, blue_gain * rgb_gain], dtype=like.dtype,
                        device=like.device).view(3, 1, 1)


def safe_invert_gains(x: torch.Tensor, rgb_gain: float, red_gain: float, blue_gain: float) -> torch.Tensor:
    """Divide by the white-balance gains, except near saturation (Brooks et al. Sec. 3.2): above a grey
    level of 0.9 the gain is blended towards 1 so saturated highlights stay saturated instead of
    turning into coloured, sub-white values after the forward ISP."""
    g = 1.0 / _gains(rgb_gain, red_gain, blue_gain, x)
    grey = x.mean(dim=-3, keepdim=True)
    inflection = 0.9
    mask = ((grey - inflection).clamp(min=0.0) / (1.0 - inflection)) ** 2
    return x * torch.maximum(mask + (1.0 - mask) * g, g)


def apply_gains(x: torch.Tensor, rgb_gain: float, red_gain: float, blue_gain: float) -> torch.Tensor:
    return (x * _gains(rgb_gain, red_gain, blue_gain, x)).clamp(0.0, 1.0)


def _meta_matrix(meta: dict, key: str) -> torch.Tensor:
    v = meta[key]
    return v.double() if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v, dtype=np.float64))


def process_linear_to_srgb(img: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
    """The forward ISP of the SyntheticBurst evaluation (official ``process_linear_image_rgb``):
    white balance (gains, clipped to [0,1]), colour correction with ``cam2rgb``, gamma 1/2.2 and the
    smoothstep tone map when the metadata says they were inverted, clip to [0,1].

    ``img`` is (3,H,W) or (B,3,H,W) linear camera RGB; ``meta`` is one burst's metadata (ours from
    JSON, or the official pickle's tensors).  No border is cropped here (the scoring config key
    ``crop_border`` does that).
    """
    x = apply_gains(img, float(meta["rgb_gain"]), float(meta["red_gain"]), float(meta["blue_gain"]))
    x = apply_ccm(x, _meta_matrix(meta, "cam2rgb"))
    if bool(meta.get("gamma", True)):
        x = gamma_compression(x)
    if bool(meta.get("smoothstep", True)):
        x = smoothstep(x)
    return x.clamp(0.0, 1.0)


def unprocess(rgb: torch.Tensor, rgb2cam: torch.Tensor, gains: tuple[float, float, float],
              use_smoothstep: bool = True, use_gamma: bool = True) -> torch.Tensor:
    """sRGB (3,H,W) in [0,1] -> linear camera RGB (Brooks et al. Sec. 3), clipped to [0,1]."""
    x = rgb
    if use_smoothstep:
        x = invert_smoothstep(x)
    if use_gamma:
        x = gamma_expansion(x)
    x = apply_ccm(x, rgb2cam)
    x = safe_invert_gains(x, *gains)
    return x.clamp(0.0, 1.0)


# ---------------------------------------------------------------------------------- mosaic

def mosaic(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) -> packed RGGB (..., 4, H/2, W/2): R at (2i, 2j), G_r at (2i, 2j+1), G_b at
    (2i+1, 2j), B at (2i+1, 2j+1) -- the channel order the official loader returns."""
    if rgb.shape[-1] % 2 or rgb.shape[-2] % 2:
        raise DpirError(f"mosaic needs even height and width, got {tuple(rgb.shape[-2:])}")
    return torch.stack([rgb[..., 0, 0::2, 0::2], rgb[..., 1, 0::2, 1::2],
                        rgb[..., 1, 1::2, 0::2], rgb[..., 2, 1::2, 1::2]], dim=-3)


def bayer(packed: torch.Tensor) -> torch.Tensor:
    """Packed RGGB (..., 4, h, w) -> the single-channel Bayer mosaic (..., 1, 2h, 2w)."""
    return F.pixel_shuffle(packed, 2)


_BAYER_MASKS = torch.tensor([[[1, 0], [0, 0]], [[0, 1], [1, 0]], [[0, 0], [0, 1]]], dtype=torch.float32)


def demosaic_bilinear(packed: torch.Tensor) -> torch.Tensor:
    """Bilinear demosaicking of packed RGGB (..., 4, h, w) -> RGB (..., 3, 2h, 2w).

    Normalised convolution (weights renormalised by the available same-colour neighbours), which is
    plain bilinear interpolation inside the image and keeps constants exact at the border; every
    sampled value is kept at its own position, so ``mosaic(demosaic_bilinear(p)) == p``.
    """
    lead, (h, w) = packed.shape[:-3], packed.shape[-2:]
    raw = bayer(packed.reshape(-1, 4, h, w))                                  # (B, 1, 2h, 2w)
    m = _BAYER_MASKS.to(raw).repeat(1, h, w)[None]                            # (1, 3, 2h, 2w)
    k = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]], dtype=raw.dtype, device=raw.device)
    k = k.expand(3, 1, 3, 3)
    num = F.conv2d(raw * m, k, padding=1, groups=3)
    den = F.conv2d(m.expand_as(num), k, padding=1, groups=3)
    out = torch.where(m > 0, raw, num / den)      # sampled values exactly, whatever the conv rounding
    return out.reshape(*lead, 3, 2 * h, 2 * w)


# ---------------------------------------------------------------------------------- batches

def srgb_batch(x: torch.Tensor, metas: list[dict]) -> torch.Tensor:
    """Linear camera RGB (B,3,H,W) -> sRGB, each batch element through the ISP of its own burst."""
    if len(metas) != x.shape[0]:
        raise DpirError(f"{len(metas)} burst metadata entries for a batch of {x.shape[0]} bursts")
    return torch.stack([process_linear_to_srgb(x[i], m) for i, m in enumerate(metas)])
