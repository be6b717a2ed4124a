"""Full-reference perceptual/structural metrics that need no weights, with pyiqa's conventions.

They keep a perceptual axis in the report when LPIPS and TOPIQ weights are not cached (an offline
machine).  ``gmsd`` is computed here; the others go through pyiqa, imported on their first call only
(it takes seconds to import).

- ``gmsd``: Gradient Magnitude Similarity Deviation (Xue et al. 2014: the standard deviation of the
  gradient-magnitude similarity map), lower is better.  Cheapest of the set (~7 ms at 256x256 on one
  CPU thread) while its paper reports agreement with human scores on par with far costlier metrics,
  so it is the offline perceptual default (``dpir.metrics.OFFLINE_PERCEPTUAL``).  It is computed here
  (:func:`gmsd_score`, a dozen tensor ops) with pyiqa's default 'gmsd' conventions, and a test holds it
  bit-equal to pyiqa's (``tests/test_metrics.py``; pyiqa's own preset stays available as
  ``pyiqa:gmsd``): importing pyiqa costs ~5 s (torchvision, torch._dynamo), once in each of the main job's
  ~50 score processes, about 2 minutes of the default job's wall time for a metric that costs milliseconds.
- ``nlpd``: Normalised Laplacian Pyramid Distance (Laparra et al. 2016), lower is better.
- ``ms_ssim``: multi-scale SSIM (Wang et al. 2003), higher is better; needs images of 176x176 or more.
- ``fsim``: FSIMc, the colour version of the Feature SIMilarity index (Zhang et al. 2011), higher.
- ``vif``: Visual Information Fidelity, pixel-domain steerable-pyramid version (Sheikh & Bovik 2006),
  higher is better.

pyiqa's luma for these is Y of YIQ (0.299 R + 0.587 G + 0.114 B), rounded to integers on the 0-255
scale where the metric works in 8-bit units (pyiqa's imitation of MATLAB on uint8 images).  We keep
pyiqa's defaults unchanged, so these numbers match pyiqa's; note that this luma is not the BT.601
YCbCr luma of psnr_y/ssim_y.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from dpir.errors import DpirError
from dpir.metrics.base import Metric
from dpir.metrics.weights import require_package

# name -> description of pyiqa's default preset of that name (direction and digits: dpir.metrics.preset)
_PRESETS: dict[str, str] = {
    "gmsd": ("GMSD (Xue et al. 2014): Y of YIQ rounded to 0-255, 2x2 mean downsampling, Prewitt "
             "gradients, T=170, std of the GMS map"),
    "nlpd": "NLPD (Laparra et al. 2016): Y of YIQ on [0,1], 6-level normalised Laplacian pyramid",
    "ms_ssim": ("MS-SSIM (Wang et al. 2003): Y of YIQ rounded to 0-255, 5 scales, 11x11 Gaussian "
                "sigma 1.5, product of scale terms"),
    "fsim": "FSIMc (Zhang et al. 2011): RGB on 0-255, phase congruency + gradient + chroma",
    "vif": "VIF pixel-domain steerable pyramid (Sheikh & Bovik 2006): Y of YIQ rounded to 0-255",
}

# MS-SSIM's 5th scale (4 halvings) must still hold the 11x11 window
_MIN_SIZE = {"ms_ssim": 11 * 2 ** 4}


def _pyiqa_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pyiqa")
    except PackageNotFoundError:
        return "?"


class PyiqaWeightFree(Metric):
    needs_reference = True
    needs_weights = False

    def __init__(self, name: str, crop_border: int = 0):
        self.name = name
        self._text = _PRESETS[name]
        super().__init__(crop_border)
        self._model = None

    def _describe(self) -> str:
        return f"{self._text}; pyiqa {_pyiqa_version()} '{self.name}' defaults, float32"

    def check_available(self) -> None:
        require_package(self.name, "pyiqa")

    def _load(self, device: torch.device):
        if self._model is None:
            self.check_available()
            import pyiqa

            self._model = pyiqa.create_metric(self.name, as_loss=False, device=torch.device("cpu")).eval()
        return self._model.to(device)

    def _score(self, out, ref):
        need = _MIN_SIZE.get(self.name, 1)
        if min(out.shape[-2:]) < need:
            raise DpirError(f"metric {self.name!r} needs images of at least {need}x{need} after the border crop, "
                            f"got {out.shape[-2]}x{out.shape[-1]}; use larger images or another metric")
        model = self._load(out.device)
        return model(out.float(), ref.float()).reshape(out.shape[0])


#: GMSD's constant T on the 0-255 scale (Xue et al. 2014; pyiqa's default)
GMSD_T = 170.0


def _luma_yiq_255(x: torch.Tensor) -> torch.Tensor:
    """Y of YIQ on the 0-255 scale, rounded half to even (pyiqa's ``to_y_channel(x, 255)``: one matmul over
    the channel axis, so the rounding ties fall as pyiqa's do)."""
    w = torch.tensor([[0.299], [0.587], [0.114]], dtype=x.dtype, device=x.device)
    y = torch.matmul(x.permute(0, 2, 3, 1), w).permute(0, 3, 1, 2)
    return (y * 255).round()


def gmsd_score(out: torch.Tensor, ref: torch.Tensor, T: float = GMSD_T) -> torch.Tensor:
    """GMSD (B,) of RGB batches in [0, 1], float32: the (Bessel-corrected) standard deviation of the
    gradient-magnitude similarity (2 g1 g2 + T) / (g1^2 + g2^2 + T), where g is the magnitude of the Prewitt
    gradients (each kernel /3, zero padding 1, plus 1e-12 under the root) of the 2x2-mean-downsampled luma."""
    out, ref = out.float(), ref.float()
    prewitt_x = torch.tensor([[1.0, 0.0, -1.0]] * 3) / 3.0
    kernels = torch.stack([prewitt_x, prewitt_x.t()])[:, None].to(out)   # (2, 1, 3, 3): d/dx, d/dy
    mean2 = torch.full((1, 1, 2, 2), 0.25).to(out)

    def magnitude(img: torch.Tensor) -> torch.Tensor:
        small = F.conv2d(_luma_yiq_255(img), mean2, stride=2)
        g = F.conv2d(small, kernels, padding=1)
        return torch.sqrt(g[:, :1] ** 2 + g[:, 1:] ** 2 + 1e-12)

    g1, g2 = magnitude(out), magnitude(ref)
    gms = (2 * g1 * g2 + T) / (g1 ** 2 + g2 ** 2 + T)
    return gms.flatten(1).std(dim=1)


class GMSD(Metric):
    """GMSD with pyiqa's 'gmsd' defaults, computed here (no pyiqa import; see the module docstring)."""

    name = "gmsd"
    needs_reference = True
    needs_weights = False

    def _describe(self) -> str:
        return (f"{_PRESETS['gmsd']}; pyiqa's 'gmsd' defaults computed by dpir.metrics.iqa.gmsd_score "
                "(tests hold it equal to pyiqa's), float32")

    def _score(self, out, ref):
        return gmsd_score(out, ref)


def gmsd(crop_border: int = 0) -> Metric:
    return GMSD(crop_border)


def nlpd(crop_border: int = 0) -> Metric:
    return PyiqaWeightFree("nlpd", crop_border)


def ms_ssim(crop_border: int = 0) -> Metric:
    return PyiqaWeightFree("ms_ssim", crop_border)


def fsim(crop_border: int = 0) -> Metric:
    return PyiqaWeightFree("fsim", crop_border)


def vif(crop_border: int = 0) -> Metric:
    return PyiqaWeightFree("vif", crop_border)
