"""Network checkpoints: ``<dir>/model.safetensors`` + ``<dir>/model.json``.

The JSON holds the architecture name (a key of :data:`dpir.nets.ARCHS`), its constructor keyword
arguments, the training config and the step, so a checkpoint is rebuilt without pickled code.
Training state (optimizer, RNG, step) lives beside it in ``<dir>/state.pt`` while training runs.
Files are written to a temporary name and renamed, so a crash never leaves a half-written model.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from dpir.errors import DpirError

MODEL_FILE = "model.safetensors"
META_FILE = "model.json"


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_network(model: nn.Module, directory: str | os.PathLike, arch: str, kwargs: dict[str, Any],
                 **meta: Any) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = directory / f".{MODEL_FILE}.tmp{os.getpid()}"
    save_file(state, str(tmp))
    os.replace(tmp, directory / MODEL_FILE)
    atomic_write_text(directory / META_FILE,
                      json.dumps({"arch": arch, "kwargs": kwargs, **meta}, indent=2, sort_keys=True, default=str))


def read_meta(directory: str | os.PathLike) -> dict[str, Any]:
    path = Path(directory) / META_FILE
    if not path.exists():
        raise DpirError(f"no trained network at {directory} ({META_FILE} missing): run `dpir train` "
                        f"for it first (or `snakemake --cores all` to run the whole workflow)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DpirError(f"{path} is not valid JSON ({e}); delete the folder and retrain") from None


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model``; on any mismatch name the missing/unexpected/misshaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shape:
        def show(keys):
            return ", ".join(keys[:6]) + (f" (+{len(keys) - 6} more)" if len(keys) > 6 else "")
        parts = []
        if missing:
            parts.append(f"missing keys: {show(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {show(unexpected)}")
        if shape:
            parts.append("wrong shapes: " + show([f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in shape]))
        raise DpirError(f"{source} does not fit {type(model).__name__}: " + "; ".join(parts)
                        + ". Check that the checkpoint is for this architecture and configuration.")
    model.load_state_dict(state, strict=True)


def load_network(directory: str | os.PathLike, device: torch.device | str = "cpu",
                 expect_arch: str | None = None) -> nn.Module:
    """Rebuild and load a network saved by :func:`save_network`, in eval mode, gradients off."""
    from dpir.nets import build_network

    meta = read_meta(directory)
    if expect_arch is not None and meta["arch"] != expect_arch:
        raise DpirError(f"{directory} holds a {meta['arch']!r} network, but {expect_arch!r} was expected; "
                        f"point the config at the right network")
    model = build_network(meta["arch"], **meta["kwargs"])
    path = Path(directory) / MODEL_FILE
    try:
        state = load_file(str(path))
    except Exception as e:  # safetensors raises several types for corrupt files
        raise DpirError(f"cannot read {path} ({e}); delete it and retrain") from None
    load_state_strict(model, state, str(path))
    model.to(device).eval().requires_grad_(False)
    return model
