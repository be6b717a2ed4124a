"""PSNR and SSIM with the conventions of the SR/restoration literature (BasicSR, SwinIR, DiffIR).

- Y channel: ITU-R BT.601 YCbCr luma with studio range, as MATLAB's ``rgb2ycbcr``:
  ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` for R, G, B in [0, 1], so Y lies in [16, 235] on the
  8-bit scale.  Like BasicSR (and unlike MATLAB on uint8 input) Y is not rounded.
- RGB: the three channels on the 0-255 scale.
- Everything is computed in float64 on the 0-255 scale.  The inputs are rounded to their 8-bit levels
  first: the caller has quantised them already, so this only makes float32 inputs exact (and any
  unquantised input is scored as the PNG it would be written to).
- PSNR = 10 log10(255^2 / MSE), the MSE over all pixels (and channels) of one image.  Identical
  images give MSE = 0 and PSNR = +inf (BasicSR's convention; no epsilon that would cap it at an
  arbitrary value such as pyiqa's 80 dB).  Averages over a set then are +inf too, which is correct
  for a method that reproduces the targets exactly.
- SSIM (Wang et al. 2004, Eq. 13) as BasicSR's ``calculate_ssim`` / the authors' MATLAB code:
  11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255, 'valid' filtering (no padding;
  the map is 10 pixels smaller than the image in each dimension), population (not sample)
  variances, no downsampling.  With several channels SSIM is averaged over channels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from dpir.errors import DpirError
from dpir.metrics.base import Metric

#: BT.601 luma weights for R, G, B in [0, 1] giving Y on the 8-bit scale (MATLAB rgb2ycbcr)
Y_WEIGHTS = (65.481, 128.553, 24.966)
Y_OFFSET = 16.0

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
PEAK = 255.0


def to_levels(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] images as float64 8-bit levels 0..255.

    The inputs are already quantised, so rounding only removes float32's representation error
    (float32(100/255) * 255 is not 100) and makes the scores exactly those of the uint8 PNGs.
    """
    return (x.to(torch.float64) * PEAK).round()


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma (16-235 scale, float64, unrounded) of RGB images (B, 3, H, W) in [0, 1] -> (B, 1, H, W)."""
    w = torch.tensor(Y_WEIGHTS, dtype=torch.float64, device=x.device).view(1, 3, 1, 1) / PEAK
    return Y_OFFSET + (to_levels(x) * w).sum(dim=1, keepdim=True)


def _to_255(x: torch.Tensor, channel: str) -> torch.Tensor:
    return rgb_to_y(x) if channel == "y" else to_levels(x)


def psnr(out: torch.Tensor, ref: torch.Tensor, channel: str = "y") -> torch.Tensor:
    """PSNR in dB per image, (B,) float64; +inf where the images are identical."""
    a, b = _to_255(out, channel), _to_255(ref, channel)
    mse = (a - b).square().flatten(1).mean(dim=1)
    # mse = 0 gives 10 log10(peak^2 / 0) = +inf, which is what BasicSR returns for identical images
    return 10.0 * torch.log10(PEAK ** 2 / mse)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA, device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian taps (float64), as MATLAB's fspecial / OpenCV's getGaussianKernel."""
    t = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-t.square() / (2 * sigma ** 2))
    return g / g.sum()


def _filter_valid(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filtering of every channel of (N, K, H, W), 'valid' borders -> (N, K, H-10, W-10)."""
    k = x.shape[1]
    # depthwise (groups=K): one call for all moment maps, several times faster than K calls in float64
    x = F.conv2d(x, g.view(1, 1, -1, 1).expand(k, 1, -1, 1), groups=k)
    return F.conv2d(x, g.view(1, 1, 1, -1).expand(k, 1, 1, -1), groups=k)


def ssim(out: torch.Tensor, ref: torch.Tensor, channel: str = "y") -> torch.Tensor:
    """MATLAB-style SSIM per image, (B,) float64, averaged over channels (Wang et al. 2004, Eq. 13)."""
    a, b = _to_255(out, channel), _to_255(ref, channel)
    c, h, w = a.shape[1:]
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise DpirError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} after the border crop, "
                        f"got {h}x{w}; use larger images or a smaller crop_border")
    g = gaussian_window(device=a.device)
    C1, C2 = (SSIM_K1 * PEAK) ** 2, (SSIM_K2 * PEAK) ** 2
    moments = _filter_valid(torch.cat([a, b, a * a, b * b, a * b], dim=1), g)
    mu_a, mu_b, e_aa, e_bb, e_ab = moments.split(c, dim=1)
    # population moments, as MATLAB's ssim_index (skimage: use_sample_covariance=False)
    var_a, var_b, cov = e_aa - mu_a.square(), e_bb - mu_b.square(), e_ab - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + C1) * (2 * cov + C2)) / ((mu_a.square() + mu_b.square() + C1) * (var_a + var_b + C2))
    return ssim_map.flatten(1).mean(dim=1)


_CHANNEL_TEXT = {
    "y": "Y of BT.601 YCbCr (16-235, unrounded)",
    "rgb": "RGB",
}


class PSNR(Metric):

    def __init__(self, name: str, channel: str, crop_border: int = 0):
        self.name, self.channel = name, channel
        super().__init__(crop_border)

    def _describe(self) -> str:
        return f"PSNR on {_CHANNEL_TEXT[self.channel]}, 8-bit levels (peak 255), float64, +inf if identical"

    def _score(self, out, ref):
        return psnr(out, ref, self.channel)


class SSIM(Metric):

    def __init__(self, name: str, channel: str, crop_border: int = 0):
        self.name, self.channel = name, channel
        super().__init__(crop_border)

    def _describe(self) -> str:
        mean = "" if self.channel == "y" else ", mean over channels"
        return (f"SSIM on {_CHANNEL_TEXT[self.channel]}, 8-bit levels (L=255), 11x11 Gaussian window sigma 1.5, "
                f"K1=0.01 K2=0.03, 'valid' filtering{mean} (MATLAB/BasicSR)")

    def _score(self, out, ref):
        return ssim(out, ref, self.channel)


def psnr_y(crop_border: int = 0) -> Metric:
    return PSNR("psnr_y", "y", crop_border)


def psnr_rgb(crop_border: int = 0) -> Metric:
    return PSNR("psnr_rgb", "rgb", crop_border)


def ssim_y(crop_border: int = 0) -> Metric:
    return SSIM("ssim_y", "y", crop_border)


def ssim_rgb(crop_border: int = 0) -> Metric:
    return SSIM("ssim_rgb", "rgb", crop_border)

