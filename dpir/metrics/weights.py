"""Weights files that metrics read, where they are cached, and how to get them.

Each entry is named (the name is what ``dpir fetch <name>`` takes: an alias of the registry entry in
``dpir/fetch/registry.json`` that downloads exactly this file, e.g. ``lpips_alex`` for
``lpips_alexnet``) and lives at a fixed path under torch's hub directory (``$TORCH_HOME/hub``, see ``torch.hub.get_dir()``): the same place the
upstream libraries look, so a cache filled by torchvision or pyiqa on another machine works as is.
Metrics only ever look at these files; they never download.  Fetching is the job of ``dpir fetch``
(which can use :attr:`WeightsFile.url` and :attr:`WeightsFile.sha256_prefix`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from dpir.errors import MetricUnavailable

_PYIQA_HF = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/"


@dataclass(frozen=True)
class WeightsFile:
    name: str
    relpath: str            # relative to torch.hub.get_dir()
    url: str
    what: str               # one line for messages
    sha256_prefix: str | None = None   # torch hub convention: the hex after the last '-' of the file name

    def path(self) -> Path:
        return Path(torch.hub.get_dir()) / self.relpath


WEIGHTS: dict[str, WeightsFile] = {
    # the lpips wheel ships its linear layers; only the ImageNet AlexNet trunk is fetched
    "lpips_alex": WeightsFile(
        "lpips_alex", "checkpoints/alexnet-owt-7be5be79.pth",
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        "torchvision ImageNet AlexNet (LPIPS backbone)", sha256_prefix="7be5be79"),
    # full CFANet state dicts (ResNet-50 backbone included), so timm's ImageNet ResNet-50 is not needed
    "topiq_nr": WeightsFile(
        "topiq_nr", "pyiqa/cfanet_nr_koniq_res50-9a73138b.pth",
        _PYIQA_HF + "cfanet_nr_koniq_res50-9a73138b.pth",
        "pyiqa TOPIQ-NR (CFANet, ResNet-50, trained on KonIQ-10k)"),
    "topiq_fr": WeightsFile(
        "topiq_fr", "pyiqa/cfanet_fr_kadid_res50-2c4cc61d.pth",
        _PYIQA_HF + "cfanet_fr_kadid_res50-2c4cc61d.pth",
        "pyiqa TOPIQ-FR (CFANet, ResNet-50, trained on KADID-10k)"),
}


def first_line(e: BaseException) -> str:
    """An exception's first line (torch.load's messages run to a dozen lines; ours fit on one)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def fetch_command(name: str) -> str:
    """The command that fetches weights ``name`` (a registry alias; tests/reliability checks each one)."""
    return f"dpir fetch {name}"


def require_weights(metric: str, name: str) -> Path:
    """The cached path of weights ``name``; :class:`MetricUnavailable` if it is not there."""
    w = WEIGHTS[name]
    path = w.path()
    if not path.is_file():
        raise MetricUnavailable(
            metric,
            f"weights file {path} ({w.what}) is missing and metrics never download.",
            fetch_command(name))
    return path


def require_package(metric: str, module: str, pip_name: str | None = None) -> None:
    """:class:`MetricUnavailable` if ``module`` cannot be imported (checked without importing it)."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MetricUnavailable(metric, f"the Python package {pip_name or module!r} is not installed.",
                                f"pip install {pip_name or module}")
