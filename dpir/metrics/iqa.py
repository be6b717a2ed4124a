"""Full-reference perceptual/structural metrics that need no weights, through pyiqa.

They keep a perceptual axis in the report when LPIPS and TOPIQ weights are not cached (an offline
machine).  pyiqa is imported on the first call only (it takes seconds to import).

- ``gmsd``: Gradient Magnitude Similarity Deviation (Xue et al. 2014: the standard deviation of the
  gradient-magnitude similarity map), lower is better.  Cheapest of the set (~7 ms at 256x256 on one
  CPU thread) while its paper reports agreement with human scores on par with far costlier metrics,
  so it is the offline perceptual default (``dpir.metrics.OFFLINE_PERCEPTUAL``).
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


def gmsd(crop_border: int = 0) -> Metric:
    return PyiqaWeightFree("gmsd", crop_border)


def nlpd(crop_border: int = 0) -> Metric:
    return PyiqaWeightFree("nlpd", crop_border)


def ms_ssim(crop_border: int = 0) -> Metric:
    return PyiqaWeightFree("ms_ssim", crop_border)


def fsim(crop_border: int = 0) -> Metric:
    return PyiqaWeightFree("fsim", crop_border)


def vif(crop_border: int = 0) -> Metric:
    return PyiqaWeightFree("vif", crop_border)
