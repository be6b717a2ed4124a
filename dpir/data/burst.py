"""Synthetic RAW bursts from sRGB images, and the ISP that turns linear estimates back into sRGB.

The procedure is that of SyntheticBurst (Bhat et al., "Deep Burst Super-Resolution", CVPR 2021,
Sec. 4 and the official generator), whose camera model is the inverse pipeline of Brooks et al.,
"Unprocessing Images for Learned Raw Denoising" (CVPR 2019, Sec. 3):

1. unprocess the sRGB image (Brooks et al. Sec. 3.1-3.3, each step the inverse of an ISP stage):
   inverse tone map (the inverse smoothstep ``0.5 - sin(asin(1 - 2y) / 3)``), inverse gamma
   (``x ** 2.2``), inverse colour correction with a random ``rgb2cam`` (a random convex combination of
   four XYZ->camera matrices, times sRGB->XYZ, rows normalised to sum to 1), inverse white balance and
   brightening with random gains (``rgb_gain = 1 / N(0.8, 0.1)``, ``red_gain ~ U(1.9, 2.4)``,
   ``blue_gain ~ U(1.5, 1.9)``) through the highlight-preserving "safe" inversion, then clip to [0,1];
2. warp the linear image once per frame: frame 0 only by a half-pixel-grid shift that puts its
   samples on the HR grid, the others by a random translation ``U(-24, 24)`` px per axis and a
   rotation ``U(-1, 1)`` degrees about the image centre (cv2.warpAffine semantics: bilinear, zeros
   outside), on an image with a ``warp_margin`` (24 px) border that is then cropped away;
3. downsample each frame by 4 as cv2.resize(INTER_LINEAR) does (no antialiasing: each LR pixel is the
   mean of the 2x2 HR pixels at the centre of its 4x4 block);
4. mosaic to RGGB and pack to 4 channels (R, G_r, G_b, B) at half the LR resolution;
5. add heteroscedastic Gaussian noise, variance ``shot * x + read`` with ``log shot ~ U(log 1e-4,
   log 1.2e-2)`` and ``log read = 2.18 log shot + 1.20 + N(0, 0.26)`` (Brooks et al. Sec. 3.4), clip.

Sizes.  The input is ``(3, H + 2m, W + 2m)`` with ``m = warp_margin`` and ``H, W`` multiples of
``2 * downsample_factor`` (8).  The ground truth is the unprocessed linear image without the margin,
``(3, H, W)``; the frames are ``(N, 4, H / 8, W / 8)``.  The official setting: 432x432 crops, m = 24,
384x384 ground truth, 14 frames of 48x48x4 -- the network output is 8x the packed frame size.

Where we differ from the official generator (all switchable through ``cfg``):

* ``quantize_warp_input`` (default False): the official code converts the linear image to uint8
  (truncating ``x * 255``) before cv2.warpAffine because it warps with OpenCV; we warp in float.
* Warping uses ``grid_sample`` in float; cv2.warpAffine quantises sample positions to 1/32 px.
* Frame files are rounded to the nearest 1/2^14 (the official writer truncates).

Scoring (not done here): :func:`process_linear_to_srgb` (in :mod:`dpir.isp`, re-exported here) is
the official ``process_linear_image_rgb`` (gains, colour correction, gamma, smoothstep, clip) with
each burst's own metadata.  The official SyntheticBurst scoring ignores 40 px at each border of the
384x384 output; the harness makes this the scoring config value ``crop_border`` (0 in the embedded
config, ``OFFICIAL_SCORE_BORDER`` = 40 for the official protocol).

On disk: :mod:`dpir.data.burst_io` writes and reads the SyntheticBurst layout (``write_burst``,
``list_bursts``, ``read_burst``; re-exported here for older imports).  This module only synthesises.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dpir import rng
# the file IO of bursts lives in dpir.data.burst_io; re-exported so ``dpir.data.burst.read_burst`` etc.
# keep working for the modules and tests that import them from here
from dpir.data.burst_io import list_bursts, read_burst, write_burst  # noqa: F401
from dpir.errors import DpirError
# The camera model lives in dpir.isp (a neutral module that dpir.nets and dpir.train may import);
# re-exported here so ``dpir.data.burst.<name>`` keeps working.
from dpir.isp import (  # noqa: F401
    RGB2XYZ,
    XYZ2CAMS,
    _BAYER_MASKS,
    _gains,
    _meta_matrix,
    apply_ccm,
    apply_gains,
    bayer,
    demosaic_bilinear,
    gamma_compression,
    gamma_expansion,
    invert_smoothstep,
    mosaic,
    process_linear_to_srgb,
    random_ccm,
    random_gains,
    random_noise_levels,
    safe_invert_gains,
    smoothstep,
    srgb_batch,
    unprocess,
)

OFFICIAL_SCORE_BORDER = 40

DEFAULTS: dict[str, Any] = {
    "downsample_factor": 4,
    "max_translation": 24.0,      # px on the HR grid, per axis
    "max_rotation": 1.0,          # degrees
    "warp_margin": 24,            # the official transformation param 'border_crop'
    "random_ccm": True,
    "random_gains": True,
    "smoothstep": True,
    "gamma": True,
    "add_noise": True,
    "shot_noise_level": None,     # None: drawn as Brooks et al.; a number fixes it (with read_noise_level)
    "read_noise_level": None,
    "quantize_warp_input": False,
}


def _config(cfg: dict[str, Any] | None) -> dict[str, Any]:
    cfg = dict(cfg or {})
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise DpirError(f"unknown burst synthesis key(s) {sorted(unknown)}; allowed: {sorted(DEFAULTS)}")
    out = {**DEFAULTS, **cfg}
    if (out["shot_noise_level"] is None) != (out["read_noise_level"] is None):
        raise DpirError("burst synthesis: set both shot_noise_level and read_noise_level, or neither")
    if int(out["downsample_factor"]) < 1 or int(out["warp_margin"]) < 0:
        raise DpirError("burst synthesis: downsample_factor must be >= 1 and warp_margin >= 0")
    return out


# ---------------------------------------------------------------------------------- motion

def _affine(theta_deg: float, tx: float, ty: float, size_hw: tuple[int, int]) -> np.ndarray:
    """The official forward 2x3 matrix: rotation about (W/2, H/2) (cv2.getRotationMatrix2D, positive =
    counter-clockwise on screen) after the translation (tx, ty)."""
    h, w = size_hw
    a = math.radians(theta_deg)
    al, be = math.cos(a), math.sin(a)
    cx, cy = 0.5 * w, 0.5 * h
    rot = np.array([[al, be, (1 - al) * cx - be * cy], [-be, al, be * cx + (1 - al) * cy], [0, 0, 1.0]])
    tr = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1.0]])
    return (rot @ tr)[:2]


def _warp_downsample(img: torch.Tensor, mats: list[np.ndarray], margin: int, df: int) -> torch.Tensor:
    """cv2.warpAffine(img, M) for every M, crop ``margin``, cv2.resize(1/df, INTER_LINEAR) -- computed
    only at the HR positions the resize reads.

    cv2's INTER_LINEAR resize samples output pixel d at source position ``df * d + (df - 1) / 2``
    (pixel centres aligned, no antialiasing): for df = 4 the mean of pixels 4d+1 and 4d+2.
    warpAffine maps each destination pixel p to the source position M^{-1} p, bilinear, zeros outside.
    """
    _, H, W = img.shape
    h, w = (H - 2 * margin) // df, (W - 2 * margin) // df
    # the taps of the linear resize along one axis: positions and weights
    pos = df * np.arange(max(h, w)) + (df - 1) / 2.0
    lo = np.floor(pos)
    taps = [(lo, 1.0 - (pos - lo)), (lo + 1, pos - lo)]
    if df % 2:      # exact hit: a single tap
        taps = [(pos, np.ones_like(pos))]
    ys = np.concatenate([t[0][:h] for t in taps]) + margin          # (T*h,)
    xs = np.concatenate([t[0][:w] for t in taps]) + margin
    wy = np.concatenate([t[1][:h] for t in taps])
    wx = np.concatenate([t[1][:w] for t in taps])
    gy, gx = np.meshgrid(ys, xs, indexing="ij")                      # (T*h, T*w)
    dst = np.stack([gx.ravel(), gy.ravel(), np.ones(gx.size)])       # homogeneous (x, y, 1)
    grids = []
    for m in mats:
        minv = np.linalg.inv(np.vstack([m, [0, 0, 1.0]]))[:2]
        src = minv @ dst                                             # (2, P): x, y in source pixels
        # grid_sample(align_corners=True) maps -1..1 to the first..last pixel centre
        grids.append(np.stack([2 * src[0] / (W - 1) - 1, 2 * src[1] / (H - 1) - 1], -1).reshape(gy.shape + (2,)))
    grid = torch.from_numpy(np.stack(grids)).to(img)
    samp = F.grid_sample(img[None].expand(len(mats), -1, -1, -1), grid, mode="bilinear",
                         padding_mode="zeros", align_corners=True)   # (N, 3, T*h, T*w)
    T = len(taps)
    samp = samp.reshape(len(mats), 3, T, h, T, w)
    wyt = torch.from_numpy(wy.reshape(T, h)).to(img)
    wxt = torch.from_numpy(wx.reshape(T, w)).to(img)
    return torch.einsum("ncahbw,ah,bw->nchw", samp, wyt, wxt)


# ---------------------------------------------------------------------------------- synthesis

def synthesize_burst(rgb: torch.Tensor, burst_size: int, generator: torch.Generator,
                     cfg: dict[str, Any] | None = None) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """One synthetic RAW burst from an sRGB image (Bhat et al. 2021 with Brooks et al. 2019).

    Args:
        rgb: (3, H + 2m, W + 2m) sRGB in [0,1], m = ``cfg["warp_margin"]``, H and W multiples of
            ``2 * downsample_factor``.
        burst_size: number of frames N (frame 0 is the reference).
        generator: every random number (camera, gains, motion, noise levels, noise) comes from it.
        cfg: overrides of :data:`DEFAULTS`.

    Returns:
        frames (N, 4, H/(2 df), W/(2 df)) packed RGGB in [0,1]; gt (3, H, W) linear camera RGB in [0,1];
        meta: JSON-ready dict with rgb2cam/cam2rgb (nested lists), the gains, smoothstep/gamma flags,
        shot/read noise levels, per-frame ``translations`` [[tx, ty], ...] (px, HR grid, the matrices'
        own values, so frame 0 holds the half-pixel grid shift) and ``rotations`` (degrees), and the
        settings used.
    """
    c = _config(cfg)
    df, m = int(c["downsample_factor"]), int(c["warp_margin"])
    if rgb.dim() != 3 or rgb.shape[0] != 3:
        raise DpirError(f"synthesize_burst expects one (3,H,W) RGB image, got shape {tuple(rgb.shape)}")
    if burst_size < 1:
        raise DpirError(f"burst_size must be >= 1, not {burst_size}")
    H, W = rgb.shape[1] - 2 * m, rgb.shape[2] - 2 * m
    if H <= 0 or W <= 0 or H % (2 * df) or W % (2 * df):
        raise DpirError(f"burst synthesis needs an image of (multiple of {2 * df}) + 2 x {m} px per side; got "
                        f"{rgb.shape[1]}x{rgb.shape[2]}, i.e. a {H}x{W} ground truth")
    x = rgb.float().clamp(0.0, 1.0)

    rgb2cam = random_ccm(generator) if c["random_ccm"] else torch.eye(3, dtype=torch.float64)
    cam2rgb = torch.linalg.inv(rgb2cam)
    gains = random_gains(generator) if c["random_gains"] else (1.0, 1.0, 1.0)
    lin = unprocess(x, rgb2cam, gains, c["smoothstep"], c["gamma"])

    shift = df / 2.0 - 0.5        # puts frame 0's LR samples at HR pixels (df*i, df*j) of the gt
    translations, rotations = [[shift, shift]], [0.0]
    mt, mr = float(c["max_translation"]), float(c["max_rotation"])
    if burst_size > 1:
        u = rng.rand((burst_size - 1, 3), generator).double()
        for tx, ty, th in u.tolist():
            t = [shift, shift] if mt <= 0.01 else [mt * (2 * tx - 1), mt * (2 * ty - 1)]
            translations.append(t)
            rotations.append(mr * (2 * th - 1))
    mats = [_affine(r, t[0], t[1], (rgb.shape[1], rgb.shape[2])) for t, r in zip(translations, rotations)]

    src = torch.floor(lin * 255.0) / 255.0 if c["quantize_warp_input"] else lin
    frames = mosaic(_warp_downsample(src, mats, m, df))

    if c["add_noise"]:
        if c["shot_noise_level"] is None:
            shot, read = random_noise_levels(generator)
        else:
            shot, read = float(c["shot_noise_level"]), float(c["read_noise_level"])
        var = frames * shot + read
        frames = frames + rng.randn(frames.shape, generator, device=frames.device) * var.sqrt()
    else:
        shot, read = 0.0, 0.0
    frames = frames.clamp(0.0, 1.0)
    gt = lin[:, m: m + H, m: m + W]

    meta = {
        "rgb2cam": rgb2cam.tolist(), "cam2rgb": cam2rgb.tolist(),
        "rgb_gain": gains[0], "red_gain": gains[1], "blue_gain": gains[2],
        "smoothstep": bool(c["smoothstep"]), "gamma": bool(c["gamma"]),
        "shot_noise_level": shot, "read_noise_level": read,
        "translations": translations, "rotations": rotations,
        "downsample_factor": df, "warp_margin": m, "burst_size": int(burst_size),
    }
    return frames.contiguous(), gt.contiguous(), meta
