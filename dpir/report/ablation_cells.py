"""The descriptive columns of the ablation tables (``columns:`` in a table's config): cells that read
a method's config the way DP-IR's factory does (its networks, start mode, tau, DDIM stride, with the
factory's defaults), and the parameter count of a network from its files."""
from __future__ import annotations

import json
import math

from dpir import paths
from dpir.errors import DpirError

#: column key in the config -> header in the table
HEADERS = {"denoiser": "Denoiser", "ir": "IR net", "fusion": "Fusion net", "fusion_arch": "Fusion arch",
           "fusion_params": "Fusion params", "mode": "Start", "tau": "τ", "ddim": "DDIM", "variance": "Reverse variance"}

#: DP-IR's ``mode`` values as the table names them
START_NAMES = {"jump": "one-step jump", "sdedit": "SDEdit (denoiser only)", "ccdf": "CCDF (denoiser + back-projection)",
               "noised_start": "forward-noised start (DP-IR model)", "full": "full chain"}


def network_params(config: dict, name: str) -> int | None:
    """Parameters of a trained or imported network: its training log, else its checkpoint's tensor shapes
    (official weights have no log; the safetensors header is read, not the tensors)."""
    log = paths.network_dir(config, name) / "train_log.json"
    if log.exists():
        return int(json.loads(log.read_text())["trained_params"])
    weights = paths.network_file(config, name)
    if weights.exists():
        from safetensors import safe_open

        with safe_open(str(weights), "pt") as f:
            return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    return None


def header_label(column: str) -> str:
    if column not in HEADERS:
        raise DpirError(f"unknown ablation column {column!r}; known: {', '.join(HEADERS)}")
    return HEADERS[column]


def extra_cell(config: dict, column: str, mcfg: dict) -> tuple[str, object]:
    """(text shown, value for the CSV) of ``column`` for the method config ``mcfg``."""
    nets = config["networks"]
    if column in ("denoiser", "ir", "fusion"):
        name = mcfg.get(column)
        return (f"`{name}` ({nets[name]['arch']})" if name else "—"), name
    if column == "fusion_arch":
        name = mcfg.get("fusion")
        return (nets[name]["arch"] if name else "—"), (nets[name]["arch"] if name else None)
    if column == "fusion_params":
        p = network_params(config, mcfg["fusion"]) if mcfg.get("fusion") else None
        return (f"{p:,}" if p is not None else "n/a"), p
    if column == "mode":
        mode = mcfg.get("mode", "jump") if mcfg.get("kind") == "dpir" else mcfg.get("kind")
        return START_NAMES.get(mode, mode), mode
    if column == "tau":
        tau = mcfg.get("tau", mcfg.get("T", 1000) if mcfg.get("mode") == "full" else None)
        return (str(tau) if tau is not None else "—"), tau
    if column == "variance":
        v = mcfg.get("variance", "beta") if mcfg.get("kind") == "dpir" else None
        return ({"beta": "σ_t² = β_t", "posterior": "posterior"}.get(v, "—")), v
    if column == "ddim":
        s = mcfg.get("ddim_stride")
        return (f"stride {s}" if s else "no"), s
    raise DpirError(f"unknown ablation column {column!r}; known: {', '.join(HEADERS)}")
