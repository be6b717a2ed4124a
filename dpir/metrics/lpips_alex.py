"""LPIPS with the AlexNet trunk (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features
as a Perceptual Metric", Eq. 1), through the ``lpips`` package, version 0.1 linear layers.

Conventions pinned here (each one is a known cause of irreproducible LPIPS numbers):
- net='alex', version='0.1' (the pip default; v0.0 skipped the input scaling layer);
- inputs in [0, 1] passed with ``normalize=True`` (lpips maps them to [-1, 1] itself);
- eval mode, so the dropout in front of the linear layers is off and two calls agree;
- RGB, full image, float32 network.

Loading never touches the network: ``lpips.LPIPS(pnet_rand=True)`` builds the AlexNet trunk without
weights (with ``pnet_rand=False`` torchvision would try to download it), the linear layers come from
the files inside the lpips wheel, and the trunk's ImageNet weights are read from torchvision's cache
file ``$TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth`` by :func:`load_alexnet_trunk`.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from dpir.errors import DpirError
from dpir.metrics.base import Metric
from dpir.metrics.weights import first_line, require_package, require_weights


def load_torchvision_trunk(lpips_net: torch.nn.Module, path: Path, trunk: str, fix: str) -> None:
    """Load a torchvision state dict (``features.<i>.*``: AlexNet, VGG-16) into lpips' sliced trunk.

    lpips splits ``<net>().features`` into ``slice1..sliceN`` and keeps each layer's index in ``features``
    as its name inside the slice, so ``features.3.weight`` is ``slice2.3.weight``.  ``trunk`` names the
    expected network and ``fix`` the command that gets the file again, for the one-line errors."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- a truncated download or an HTML error page raise several types
        raise DpirError(f"cannot read {path} ({type(e).__name__}: {first_line(e)}); delete it and {fix}") from None
    mapped = {}
    for slice_name, block in lpips_net.named_children():
        for idx, _ in block.named_children():
            for key in ("weight", "bias"):
                src = f"features.{idx}.{key}"
                if src in state:
                    mapped[f"{slice_name}.{idx}.{key}"] = state[src]
    own = lpips_net.state_dict()
    missing = sorted(set(own) - set(mapped))
    bad = sorted(k for k in set(own) & set(mapped) if own[k].shape != mapped[k].shape)
    if missing or bad:
        raise DpirError(f"{path} is not torchvision's {trunk} state dict (missing: {missing[:4]}, wrong shapes: "
                        f"{bad[:4]}); delete it and {fix}")
    lpips_net.load_state_dict(mapped, strict=True)


def load_alexnet_trunk(lpips_net: torch.nn.Module, path: Path) -> None:
    """torchvision's AlexNet into lpips' sliced trunk (:func:`load_torchvision_trunk`)."""
    load_torchvision_trunk(lpips_net, path, "AlexNet", "run `dpir fetch lpips_alex` again")


class LPIPSAlex(Metric):
    name = "lpips_alex"
    needs_weights = True
    weights = ("lpips_alex",)

    def __init__(self, crop_border: int = 0):
        super().__init__(crop_border)
        self._net = None

    def _describe(self) -> str:
        from importlib.metadata import PackageNotFoundError, version

        try:
            pkg = version("lpips")
        except PackageNotFoundError:
            pkg = "?"
        return (f"LPIPS v0.1 linear layers, AlexNet trunk (torchvision ImageNet weights), lpips {pkg}, "
                f"RGB [0,1] with normalize=True, eval mode")

    def check_available(self) -> None:
        require_package(self.name, "lpips")
        require_package(self.name, "torchvision")
        require_weights(self.name, "lpips_alex")

    def _load(self, device: torch.device) -> torch.nn.Module:
        if self._net is None:
            self.check_available()
            path = require_weights(self.name, "lpips_alex")
            import lpips

            with warnings.catch_warnings():
                # lpips still passes torchvision's deprecated `pretrained=` argument
                warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
                net = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
            load_alexnet_trunk(net.net, path)
            self._net = net.eval().requires_grad_(False)
        return self._net.to(device)

    def _score(self, out, ref):
        net = self._load(out.device)
        d = net(out.float(), ref.float(), normalize=True)
        return d.reshape(out.shape[0])


def lpips_alex(crop_border: int = 0) -> Metric:
    return LPIPSAlex(crop_border)
