"""Any checkpoint spandrel can read, as a network of the workflow (architecture ``spandrel``).

:func:`load_foreign` reads a released file (or a state dict), lets spandrel detect its architecture and
hyperparameters from the key names and tensor shapes, and returns the raw ``nn.Module`` with the facts
the harness needs (:class:`ForeignNet`: scale, channels, parameters, padding multiple).  The detectors
are spandrel's own, those of ``spandrel_extra_arches`` when it is installed (Restormer, MPRNet, MIRNet2,
SRFormer, ...) and our MSRResNet (:mod:`dpir.nets.msrresnet`), in a registry of our own
(:func:`registry`): spandrel's global ``MAIN_REGISTRY`` is left as it is.

spandrel unwraps ``params_ema`` / ``params`` / ``state_dict`` / ``model`` / ``net`` and strips a
``module.`` or ``netG.`` prefix itself (``canonicalize_state_dict``).

We keep the raw module, not spandrel's ``ImageModelDescriptor``: the descriptor clamps outputs to
[0, 1], runs under ``inference_mode`` and pads by itself, while the harness pads and crops (its padding
is part of the recorded method) and clips only when it writes PNGs.  The few architectures whose output
is not ``model(x)`` (spandrel's ``call_fn``: MPRNet returns a list of stages, DRUNet takes a noise-level
map) are wrapped in :class:`Called`, whose state dict is the raw module's, so a saved network rebuilds
from its own weights (:func:`from_state`) whichever it is.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dpir.errors import DpirError

#: what one line of the "unsupported" message may list before it says how many more
_SHOWN_IDS = 200

_REGISTRY = None


def registry():
    """The spandrel ``ArchRegistry`` we detect with: spandrel's own, plus ``spandrel_extra_arches`` when it
    is importable, plus MSRResNet (built once)."""
    global _REGISTRY
    if _REGISTRY is None:
        from spandrel import MAIN_REGISTRY

        from dpir.nets.msrresnet import arch_support

        reg = MAIN_REGISTRY.copy()
        try:
            from spandrel_extra_arches import EXTRA_REGISTRY
        except ImportError:
            pass
        else:
            reg.add(*EXTRA_REGISTRY, ignore_duplicates=True)
        reg.add(arch_support(tuple(a.architecture.id for a in reg)), ignore_duplicates=True)
        _REGISTRY = reg
    return _REGISTRY


def supported_architectures() -> list[str]:
    """The architecture ids that :func:`load_foreign` can detect, sorted."""
    return sorted(str(a.architecture.id) for a in registry())


class Called(nn.Module):
    """A spandrel model whose output is ``call_fn(model, x)`` (not ``model(x)``), as one module.

    The state dict is the wrapped module's own (no prefix), so the network saves and loads like the raw
    module and spandrel detects it again from its saved weights."""

    def __init__(self, model: nn.Module, call_fn):
        super().__init__()
        self.inner = model
        self._call_fn = call_fn

    def forward(self, x):
        return self._call_fn(self.inner, x)

    def state_dict(self, *args, **kwargs):
        return self.inner.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.inner.load_state_dict(state_dict, strict=strict, assign=assign)

    def __getattr__(self, name: str):
        """Attributes the harness reads off a network (``window_size``, ``scale``) come from the model."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("inner"), name)


@dataclass
class ForeignNet:
    """A network spandrel detected: the module (weights loaded, train mode as built) and its facts."""

    module: nn.Module
    architecture: str               # spandrel's architecture id, e.g. "HAT", "ESRGAN", "Restormer"
    scale: int                      # output size / input size
    in_channels: int
    out_channels: int
    params: int                     # number of parameters of ``module``
    multiple_of: int = 1            # input sides must be a multiple of this (padded by the harness)
    minimum: int = 0                # smallest input side spandrel pads to
    tags: list[str] = field(default_factory=list)
    purpose: str = "SR"

    def facts(self) -> dict[str, Any]:
        """What ``model.json`` records of the detected network (``foreign:``)."""
        return {"architecture": self.architecture, "scale": self.scale, "in_channels": self.in_channels,
                "out_channels": self.out_channels, "params": self.params, "multiple_of": self.multiple_of,
                "minimum": self.minimum, "tags": list(self.tags), "purpose": self.purpose}

    def describe(self) -> str:
        """One short line for run records, e.g. ``"HAT x4, 20.77M params (spandrel)"`` (``"8.0k"`` below 1M)."""
        size = f"{self.params / 1e6:.2f}M" if self.params >= 1e6 else f"{self.params / 1e3:.1f}k"
        return f"{self.architecture} x{self.scale}, {size} params (spandrel)"

    def pad_multiple(self) -> int:
        """What an input is padded to: spandrel's multiple and, for windowed transformers, whole windows
        (their internal reflect padding fails on images smaller than a window)."""
        window = getattr(self.module, "window_size", 1)
        window = window if isinstance(window, int) and window > 0 else 1
        return math.lcm(max(1, int(self.multiple_of)), window)

    def check_rgb(self, where: str) -> None:
        """Refuse a network that does not map RGB images to RGB images (the harness's tasks are RGB)."""
        if (self.in_channels, self.out_channels) != (3, 3):
            raise DpirError(f"config key {where!r}: the {self.architecture} checkpoint maps {self.in_channels}-channel "
                            f"to {self.out_channels}-channel images; the benchmark needs an RGB -> RGB model")


def _first_line(e: BaseException, limit: int = 200) -> str:
    text = str(e).strip().splitlines()
    line = text[0] if text else ""
    return f"{type(e).__name__}: {line[:limit]}" if line else type(e).__name__


def read_state(path: str | Path, where: str) -> dict[str, Any]:
    """The canonical state dict in ``path`` (``.safetensors``, or a torch file of any suffix)."""
    from spandrel import ModelLoader, canonicalize_state_dict

    path = Path(path)
    if not path.is_file():
        raise DpirError(f"checkpoint {path} (config key {where!r}) does not exist; fetch it with `dpir fetch` "
                        f"or fix the path")
    try:
        if path.suffix.lower() in (".pth", ".pt", ".ckpt", ".safetensors"):
            state = ModelLoader(registry=registry()).load_state_dict_from_file(path)
        else:   # spandrel refuses other suffixes (.bin, none); torch files are torch files whatever the name
            state = canonicalize_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as e:  # noqa: BLE001 -- torch, pickle, zip and safetensors raise many types for a bad file
        raise DpirError(f"cannot read checkpoint {path} (config key {where!r}): {_first_line(e)}; the file is "
                        f"not a torch or safetensors checkpoint, or it is damaged: re-download it") from None
    if not isinstance(state, dict):
        raise DpirError(f"checkpoint {path} (config key {where!r}) holds a {type(state).__name__}, not a state "
                        f"dict; give the file of the network's weights")
    return state


def load_foreign(src: str | Path | dict, where: str) -> ForeignNet:
    """Detect and build the network of a checkpoint file or state dict; ``where`` names the config key
    that gave it (for the error messages)."""
    from spandrel import ImageModelDescriptor, canonicalize_state_dict

    if isinstance(src, dict):
        state, name = canonicalize_state_dict(src), "the state dict"
    else:
        state, name = read_state(src, where), f"checkpoint {src}"
    if not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise DpirError(f"{name} (config key {where!r}) holds no weight tensors; give the file of the "
                        f"network's weights")
    support = next((a for a in registry().architectures("detection") if a.detect(state)), None)
    if support is None:
        ids = supported_architectures()
        shown = ", ".join(ids[:_SHOWN_IDS]) + (f" (+{len(ids) - _SHOWN_IDS} more)" if len(ids) > _SHOWN_IDS else "")
        raise DpirError(f"{name} (config key {where!r}): spandrel does not recognise its architecture. "
                        f"Supported architectures: {shown}. For another model, use method `kind: python` "
                        f"with your own code")
    arch_id = str(support.architecture.id)
    try:
        desc = support.architecture.load(state)
    except Exception as e:  # noqa: BLE001 -- a detector false positive, or a variant its loader does not know
        raise DpirError(f"{name} (config key {where!r}) looks like a {arch_id} checkpoint, but spandrel cannot "
                        f"build it ({_first_line(e)}); check that the file is a released {arch_id} model") from None
    if not isinstance(desc, ImageModelDescriptor):
        raise DpirError(f"{name} (config key {where!r}) is a {arch_id} {desc.purpose.lower()} model (it takes an "
                        f"image and a mask), not an image-to-image restoration model; the benchmark cannot use it")
    module = _module(desc)
    net = ForeignNet(module=module, architecture=arch_id, scale=int(desc.scale),
                     in_channels=int(desc.input_channels), out_channels=int(desc.output_channels),
                     params=sum(p.numel() for p in module.parameters()),
                     multiple_of=int(desc.size_requirements.multiple_of), minimum=int(desc.size_requirements.minimum),
                     tags=[str(t) for t in desc.tags], purpose=str(desc.purpose))
    # the input-size multiple travels with the module (a plain attribute, not saved): a method that is
    # handed the network by name (DP-IR's `ir:`, a backbone row) pads to it without knowing it is foreign
    module.input_multiple = net.pad_multiple()
    return net


def _module(desc) -> nn.Module:
    """The descriptor's raw model, wrapped in :class:`Called` when its output is not ``model(x)``."""
    call_fn = getattr(desc, "_call_fn", None)
    default = call_fn is None or getattr(call_fn, "__qualname__", "").startswith("ImageModelDescriptor.")
    return desc.model if default else Called(desc.model, call_fn)


def from_state(state: dict[str, torch.Tensor]) -> nn.Module:
    """Rebuild a saved network of architecture ``spandrel`` from its own state dict (detected again)."""
    try:
        return load_foreign(state, "official").module
    except DpirError as e:    # only when spandrel changed its detectors since the import
        raise DpirError(f"a saved network of architecture 'spandrel' no longer loads ({e}); re-import it with "
                        f"`dpir import-official`") from None


def spandrel(**kwargs) -> nn.Module:
    """Architecture ``spandrel`` of :data:`dpir.nets.ARCHS`: built from weights, never from keyword
    arguments (:func:`dpir.checkpoint.load_network` calls ``from_state``)."""
    raise DpirError("architecture 'spandrel' is read off a checkpoint: give the network an `official:` file or "
                    "fetch name and run `dpir import-official`; to train a network, name its architecture "
                    "(e.g. `arch: msrresnet`)")


spandrel.from_state = from_state  # type: ignore[attr-defined]
