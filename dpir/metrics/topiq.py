"""TOPIQ (Chen et al. 2023, "TOPIQ: A Top-down Approach from Semantics to Distortions for Image
Quality Assessment") through pyiqa's CFANet, and DP-IR's TOPIQ_delta.

- ``topiq_nr``: no-reference TOPIQ, pyiqa's default ``topiq_nr`` (ResNet-50, KonIQ-10k weights).
  Higher is better.
- ``topiq_delta``: |TOPIQ_nr(out) - TOPIQ_nr(ref)|, the "TOPIQ_delta" of the DP-IR paper's tables:
  how far the output's predicted quality is from the target's.  Lower is better.
- ``topiq_fr``: full-reference TOPIQ, pyiqa's default ``topiq_fr`` (ResNet-50, KADID-10k weights).
  Higher is better.

Inputs are RGB in [0, 1] at full resolution (pyiqa's defaults: ImageNet normalisation inside the
network, no resizing for these two checkpoints).

Loading never touches the network.  pyiqa would fetch two files: its CFANet checkpoint from the
Hugging Face hub, and (with ``backbone_pretrain=True``, its default) timm's ImageNet ResNet-50.  The
CFANet checkpoint is a full state dict that includes the ResNet-50, so the ImageNet backbone would be
overwritten anyway: we build the network with ``pretrained=False, backbone_pretrain=False`` and
load the cached checkpoint ourselves, insisting that it covers every parameter (pyiqa loads it with
``strict=False``, which would leave a random backbone unnoticed) and reading it with
``weights_only=True``.
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch

from dpir.errors import DpirError
from dpir.metrics.base import Metric
from dpir.metrics.weights import WEIGHTS, first_line, require_package, require_weights

# pyiqa metric name -> our weights name
_PYIQA = {"topiq_nr": "topiq_nr", "topiq_fr": "topiq_fr"}


def load_cfanet_state(net: torch.nn.Module, path: Path, fetch: str) -> None:
    """Load a pyiqa CFANet checkpoint ({'params': state_dict}) into ``net``; every parameter must be in it."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- a truncated download or an HTML error page raise several types
        raise DpirError(f"cannot read {path} ({type(e).__name__}: {first_line(e)}); delete it and run `{fetch}` again") from None
    state = ckpt.get("params", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise DpirError(f"{path} holds no state dict; delete it and run `{fetch}` again")
    # checkpoints saved from DataParallel carry a 'module.' prefix (pyiqa strips it too)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    bad = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or bad:
        raise DpirError(f"{path} does not fit pyiqa's CFANet (missing: {missing[:4]}{' ...' if len(missing) > 4 else ''}, "
                        f"wrong shapes: {bad[:4]}); delete it and run `{fetch}` again")
    # extra keys are tolerated as pyiqa does (they belong to nothing in the network)
    net.load_state_dict({k: state[k] for k in own}, strict=True)


@functools.lru_cache(maxsize=2)
def _build_cfanet(pyiqa_name: str, path: str, mtime_ns: int, size: int):
    """pyiqa's metric ``pyiqa_name`` with the cached checkpoint at ``path`` loaded, in eval mode.

    Cached by (file, mtime, size) so topiq_nr and topiq_delta share one network and a replaced file
    is read again.
    """
    import pyiqa

    fetch = f"dpir fetch {_PYIQA[pyiqa_name]}"
    model = pyiqa.create_metric(pyiqa_name, as_loss=False, device=torch.device("cpu"),
                                pretrained=False, backbone_pretrain=False)
    load_cfanet_state(model.net, Path(path), fetch)
    return model.eval().requires_grad_(False)


class _TOPIQ(Metric):
    needs_weights = True
    pyiqa_name = "topiq_nr"

    def __init__(self, crop_border: int = 0):
        super().__init__(crop_border)
        self._model = None

    def check_available(self) -> None:
        require_package(self.name, "pyiqa")
        require_package(self.name, "timm")
        for w in self.weights:
            require_weights(self.name, w)

    def _load(self, device: torch.device):
        if self._model is None:
            self.check_available()
            wname = _PYIQA[self.pyiqa_name]
            path = require_weights(self.name, wname)
            st = path.stat()
            self._model = _build_cfanet(self.pyiqa_name, str(path), st.st_mtime_ns, st.st_size)
        return self._model.to(device)

    def _predict(self, x: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        model = self._load(x.device)
        s = model(x.float(), ref.float()) if ref is not None else model(x.float())
        return s.reshape(x.shape[0])

    @staticmethod
    def _version() -> str:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("pyiqa")
        except PackageNotFoundError:
            return "?"


class TOPIQNR(_TOPIQ):
    name = "topiq_nr"
    needs_reference = False
    weights = ("topiq_nr",)

    def _describe(self) -> str:
        return (f"TOPIQ-NR (pyiqa {self._version()} topiq_nr: CFANet ResNet-50, KonIQ-10k, "
                f"{Path(WEIGHTS['topiq_nr'].relpath).name}), RGB [0,1], full resolution")

    def _score(self, out, ref):
        return self._predict(out)


class TOPIQDelta(_TOPIQ):
    name = "topiq_delta"
    needs_reference = True
    weights = ("topiq_nr",)

    def _describe(self) -> str:
        return (f"|TOPIQ-NR(out) - TOPIQ-NR(ref)| (pyiqa {self._version()} topiq_nr: CFANet ResNet-50, KonIQ-10k), "
                f"RGB [0,1], full resolution")

    def _score(self, out, ref):
        # two separate calls, so the result is exactly |topiq_nr(out) - topiq_nr(ref)| of the same batch
        return (self._predict(out) - self._predict(ref)).abs()


class TOPIQFR(_TOPIQ):
    name = "topiq_fr"
    needs_reference = True
    weights = ("topiq_fr",)
    pyiqa_name = "topiq_fr"

    def _describe(self) -> str:
        return (f"TOPIQ-FR (pyiqa {self._version()} topiq_fr: CFANet ResNet-50, KADID-10k, "
                f"{Path(WEIGHTS['topiq_fr'].relpath).name}), RGB [0,1], full resolution")

    def _score(self, out, ref):
        return self._predict(out, ref)


def topiq_nr(crop_border: int = 0) -> Metric:
    return TOPIQNR(crop_border)


def topiq_delta(crop_border: int = 0) -> Metric:
    return TOPIQDelta(crop_border)


def topiq_fr(crop_border: int = 0) -> Metric:
    return TOPIQFR(crop_border)
