"""Network checkpoints: ``<dir>/model.safetensors`` + ``<dir>/model.json``.

The JSON holds the architecture name (a key of :data:`dpir.nets.ARCHS`), its constructor keyword
arguments, the training config and the step, so a checkpoint is rebuilt without pickled code.
Training state (optimizer, RNG, step) lives beside it in ``<dir>/state.pt`` while training runs.
Files are written to a temporary name and renamed, so a crash never leaves a half-written model.

``model.json`` of a trained network records the hash of the training config it was trained with
(``record.config_hash``, see :func:`training_hash`); :func:`check_trained_for` refuses a checkpoint
whose hash differs from the config's current entry (trained by hand with other settings).

``model.json`` of an imported network (``dpir import-official``) also records how the official test code
runs it (``official_inference``: padding, precision, SRDiff's residual reference; :mod:`dpir.official`);
:func:`load_network` puts that dict on the module as ``official_inference``, so every method that loads
the network by name runs it the official way without a config key (:func:`official_inference`).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from dpir.atomic import atomic_file, atomic_write_text  # atomic_write_text is re-exported: stages import it from here
from dpir.errors import DpirError

MODEL_FILE = "model.safetensors"
META_FILE = "model.json"
#: what to do with keys of a checkpoint that do not fit the network (:func:`load_state`)
KEY_POLICIES = ("error", "warn", "ignore")

log = logging.getLogger(__name__)


def official_inference(net: Any) -> dict[str, Any]:
    """The official test-time protocol recorded with an imported network (``{}`` for one trained here)."""
    inference = getattr(net, "official_inference", None)
    return dict(inference) if isinstance(inference, dict) else {}


def save_network(model: nn.Module, directory: str | os.PathLike, arch: str, kwargs: dict[str, Any],
                 **meta: Any) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_file(directory / MODEL_FILE) as tmp:
        save_file(state, str(tmp))
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


def _show(keys: list[str], n: int = 6) -> str:
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str, *, unexpected: str = "error",
               missing: str = "error") -> dict[str, list[str]]:
    """:func:`load_state_strict` with a policy for keys the file has but the network lacks (``unexpected``)
    and keys the network has but the file lacks (``missing``): ``error`` (the strict message), ``warn``
    (one warning listing them, then loaded without them: a missing parameter keeps its constructed value)
    or ``ignore`` (the same, silently).  A tensor of the wrong shape is always an error: unlike a missing
    key it cannot be a layout difference.  Returns the keys left out, ``{"unexpected": [...], "missing": [...]}``."""
    for name, policy in (("unexpected", unexpected), ("missing", missing)):
        if policy not in KEY_POLICIES:
            raise ValueError(f"{name} key policy must be one of {KEY_POLICIES}, got {policy!r}")
    own = model.state_dict()
    extra = sorted(set(state) - set(own)) if unexpected != "error" else []
    absent = sorted(set(own) - set(state)) if missing != "error" else []
    for what, keys, policy in (("unexpected keys (not loaded)", extra, unexpected),
                               ("missing keys (left at their initial values)", absent, missing)):
        if keys and policy == "warn":
            log.warning("%s does not fit %s: %s: %s", source, type(model).__name__, what, _show(keys, 20))
    state = {k: v for k, v in state.items() if k not in extra}
    state.update({k: own[k] for k in absent})
    load_state_strict(model, state, source)
    return {"unexpected": extra, "missing": absent}


def select_params(obj: Any, prefer: tuple[str, ...], source: str) -> tuple[dict[str, torch.Tensor], str | None]:
    """The state dict of a loaded checkpoint and the key it was under: the first of ``prefer`` (e.g.
    BasicSR's ``params`` / ``params_ema``) that holds a dict, else the object itself (a raw state dict,
    key ``None``).  A DDP ``module.`` prefix is stripped."""
    key = None
    if isinstance(obj, dict):
        key = next((k for k in prefer if isinstance(obj.get(k), dict)), None)
        if key is not None:
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        keys = f" under any of {', '.join(prefer)}" if prefer else ""
        raise DpirError(f"{source} is not a state dict{keys} (nor a raw state dict); is it a checkpoint of this network?")
    return {k.removeprefix("module."): v for k, v in obj.items()}, key


def load_network(directory: str | os.PathLike, device: torch.device | str = "cpu",
                 expect_arch: str | None = None) -> nn.Module:
    """Rebuild and load a network saved by :func:`save_network`, in eval mode, gradients off.

    The weights are read first: an architecture whose constructor has a ``from_state`` attribute
    (``spandrel``: any detected checkpoint) is rebuilt from them rather than from keyword arguments."""
    from dpir.nets import ARCHS, build_network, resolve

    meta = read_meta(directory)
    if expect_arch is not None and meta["arch"] != expect_arch:
        raise DpirError(f"{directory} holds a {meta['arch']!r} network, but {expect_arch!r} was expected; "
                        f"point the config at the right network")
    path = Path(directory) / MODEL_FILE
    try:
        state = load_file(str(path))
    except Exception as e:  # safetensors raises several types for corrupt files
        raise DpirError(f"cannot read {path} ({e}); delete it and retrain") from None
    from_state = getattr(resolve(ARCHS, "architecture", meta["arch"]), "from_state", None)
    model = from_state(state) if from_state else build_network(meta["arch"], **meta["kwargs"])
    load_state_strict(model, state, str(path))
    if isinstance(meta.get("official_inference"), dict):    # how the official test code runs it
        model.official_inference = dict(meta["official_inference"])
    model.to(device).eval().requires_grad_(False)
    return model


#: ``train`` keys that change how fast a network trains, never what it becomes (left out of its hash)
RESULT_NEUTRAL_TRAIN_KEYS = ("workers", "prefetch", "cache_images")
#: the training-sample scheme (dpir.rng.sample_generators: one generator per sample index); part of the
#: hash, so a checkpoint trained under an earlier scheme is retrained, never passed off as this one's
SAMPLING = "per-sample-index-1"


def train_hash(train_cfg: dict[str, Any], arch: str, kwargs: Any, seed: int) -> str:
    """The hash of everything that determines a trained network (stored as ``record.config_hash``)."""
    from dpir.config import config_hash

    train = {k: v for k, v in train_cfg.items() if k not in RESULT_NEUTRAL_TRAIN_KEYS}
    return config_hash({"train": train, "arch": arch, "kwargs": kwargs, "seed": seed, "sampling": SAMPLING})


def training_hash(net_cfg: dict[str, Any]) -> str | None:
    """:func:`train_hash` of a network's config entry; None for a network that is not trained here
    (``official:`` weights, or no ``train`` section)."""
    train = net_cfg.get("train")
    if not train or net_cfg.get("official"):
        return None
    return train_hash(train, net_cfg["arch"], net_cfg.get("kwargs"), int(train.get("seed", 0)))


def trained_hash(meta: dict[str, Any]) -> str | None:
    """The training-config hash a checkpoint's ``model.json`` records (None: not trained by ``dpir train``)."""
    rec = meta.get("record")
    return rec.get("config_hash") if isinstance(rec, dict) else None


def check_trained_for(directory: str | os.PathLike, net_cfg: dict[str, Any], network: str | None = None) -> None:
    """Refuse the checkpoint in ``directory`` when it was not trained with the config entry ``net_cfg``.

    A network trained by hand with other settings (``dpir train --set networks.X.train.steps=400``)
    would otherwise be reused silently by a workflow whose config says otherwise.  Networks that are
    not trained here (``official:``, no ``train`` section) are not checked; a missing checkpoint is
    left to :func:`load_network`'s own message."""
    expected = training_hash(net_cfg)
    if expected is None or not (Path(directory) / META_FILE).exists():
        return
    meta = read_meta(directory)
    found = trained_hash(meta)
    if found == expected:
        return
    name = network or Path(directory).name
    if meta.get("official_source"):
        what = "holds imported official weights"
    elif found is None:
        what = "records no training config hash"
    else:
        what = f"was trained with training config hash {found}"
    raise DpirError(f"network {name!r} at {directory} {what}, but the config's `networks.{name}` entry hashes "
                    f"to {expected} (trained by hand with other settings?): retrain it with "
                    f"`dpir train --network {name}` (or delete {directory} and let snakemake retrain it)")
