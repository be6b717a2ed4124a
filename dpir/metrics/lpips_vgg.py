"""LPIPS with the VGG-16 trunk (Zhang et al. 2018), through the ``lpips`` package, v0.1 linear layers.

The other LPIPS backbone in use: DP-IR does not say which one it reports, SRDiff and DiffIR use AlexNet
(:mod:`dpir.metrics.lpips_alex`), several SR papers VGG.  Conventions as the AlexNet preset: v0.1, RGB
inputs in [0, 1] passed with ``normalize=True`` (mapped to [-1, 1] by lpips, as SRDiff and BasicSR's
``calculate_lpips`` normalise them), eval mode, full image.

The trunk's ImageNet weights are torchvision's ``vgg16-397923af.pth`` in ``$TORCH_HOME/hub/checkpoints``
(the file ``lpips.LPIPS(net='vgg')`` would download); the linear layers come with the lpips wheel.  Like
every metric it never downloads: :meth:`LPIPSVgg.check_available` names the file and where to put it.
There is no ``dpir fetch`` entry for it yet, so the fix is the download itself.  The metric is built
directly (``LPIPSVgg()``) by the protocol table (:mod:`dpir.report.protocols`); it is not a registered
preset of :data:`dpir.metrics.METRICS`.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from dpir.errors import MetricUnavailable
from dpir.metrics.base import Metric
from dpir.metrics.weights import WeightsFile, require_package

VGG16 = WeightsFile(
    "lpips_vgg", "checkpoints/vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth",
    "torchvision ImageNet VGG-16 (LPIPS backbone)", sha256_prefix="397923af")


def fix_command() -> str:
    """How to make the VGG-16 trunk available (offline metrics never download it themselves)."""
    return f"curl -L --create-dirs -o {VGG16.path()} {VGG16.url}"


def load_trunk(lpips_net: torch.nn.Module, path: Path) -> None:
    """torchvision's VGG-16 into lpips' sliced trunk (:func:`dpir.metrics.lpips_alex.load_torchvision_trunk`)."""
    from dpir.metrics.lpips_alex import load_torchvision_trunk

    load_torchvision_trunk(lpips_net, path, "VGG-16", f"download it again: {fix_command()}")


class LPIPSVgg(Metric):
    name = "lpips_vgg"
    needs_weights = True
    lower_better = True
    digits = 4

    def __init__(self, crop_border: int = 0):
        super().__init__(crop_border)
        self._net = None

    def _describe(self) -> str:
        return ("LPIPS v0.1 linear layers, VGG-16 trunk (torchvision ImageNet weights), RGB [0,1] with "
                "normalize=True, eval mode")

    def check_available(self) -> None:
        require_package(self.name, "lpips")
        require_package(self.name, "torchvision")
        if not VGG16.path().is_file():
            raise MetricUnavailable(self.name, f"weights file {VGG16.path()} ({VGG16.what}) is missing and metrics "
                                    f"never download (no `dpir fetch` entry for it yet).", fix_command())

    def _load(self, device: torch.device) -> torch.nn.Module:
        if self._net is None:
            self.check_available()
            import lpips

            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
                net = lpips.LPIPS(net="vgg", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
            load_trunk(net.net, VGG16.path())
            self._net = net.eval().requires_grad_(False)
        return self._net.to(device)

    def _score(self, out, ref):
        d = self._load(out.device)(out.float(), ref.float(), normalize=True)
        return d.reshape(out.shape[0])
