"""``dpir export``: a trained network of the workflow written as a foreign checkpoint file.

The file is what the architecture's own code releases, so other tools (spandrel, BasicSR, chaiNNer) and
method kind ``checkpoint`` read it without dpir: the embedded default config exports its small RRDB in
BasicSR's layout and scores the file through kind ``checkpoint``, the "any checkpoint" route without a
download.  Layouts:

- ``basicsr``: ``{"params": state_dict}`` with the official parameter names (BasicSR's release files);
- ``raw``: the plain state dict with the official names;
- ``esrgan_old``: RRDB only, the older ESRGAN names (``RRDB_trunk``, ``trunk_conv``, ``upconv<u>``,
  ``HRconv``) as a plain state dict.

Our RRDB is spandrel's sequential RRDBNet; its names are mapped back with
:func:`dpir.official.rrdb_from_sequential` (the inverse of the import's rename).  The other exportable
architectures already carry the official names.  The file is written with ``torch.save`` under a
temporary name and renamed (:func:`dpir.atomic.atomic_file`).  Importing this module is torch-free (the
command line reads :data:`LAYOUTS`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from dpir import paths
from dpir.atomic import atomic_file
from dpir.errors import DpirError

if TYPE_CHECKING:
    import torch

_OFFICIAL_NAMES = ("basicsr", "raw")
#: architecture -> the layouts it can be written in
LAYOUTS: dict[str, tuple[str, ...]] = {
    "rrdb": ("basicsr", "raw", "esrgan_old"),
    "msrresnet": _OFFICIAL_NAMES,
    "swinir": _OFFICIAL_NAMES,
    "nafnet": _OFFICIAL_NAMES,
    "fftformer": _OFFICIAL_NAMES,
    "spandrel": _OFFICIAL_NAMES,
}
ALL_LAYOUTS = ("basicsr", "raw", "esrgan_old")


def check_layout(arch: str, layout: str, where: str = "network") -> None:
    """Refuse an unknown layout, or one that ``arch`` has not, with the choices."""
    if layout not in ALL_LAYOUTS:
        raise DpirError(f"unknown export layout {layout!r}; layouts: {', '.join(ALL_LAYOUTS)}")
    if arch not in LAYOUTS:
        choices = ", ".join(a + " (" + "/".join(ls) + ")" for a, ls in LAYOUTS.items())
        raise DpirError(f"{where} has architecture {arch!r}, which has no foreign checkpoint layout; exportable "
                        f"architectures: {choices}")
    if layout not in LAYOUTS[arch]:
        raise DpirError(f"{where} (architecture {arch!r}) has no {layout!r} layout; its layouts: "
                        f"{', '.join(LAYOUTS[arch])}")


def export_state(arch: str, kwargs: dict, state: dict[str, torch.Tensor], layout: str,
                 where: str = "network") -> dict:
    """The object to ``torch.save`` for ``state`` of ``arch`` in ``layout``."""
    check_layout(arch, layout, where)
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    if arch == "rrdb":
        from dpir.official import rrdb_from_sequential

        if kwargs.get("plus") or kwargs.get("shuffle_factor") or kwargs.get("upsampler", "upconv") != "upconv":
            raise DpirError(f"{where}: only the plain RRDBNet (upsampler 'upconv', no 'plus', no 'shuffle_factor') "
                            f"has BasicSR/ESRGAN parameter names; this variant (kwargs {kwargs}) cannot be exported")
        try:
            state = rrdb_from_sequential(state, old=layout == "esrgan_old")
        except ValueError as e:
            raise DpirError(f"{where}: cannot map its RRDB weights to the {layout} layout ({e})") from None
    return {"params": state} if layout == "basicsr" else state


def export_network(config: dict, network: str, layout: str, dest: str | os.PathLike | None = None) -> Path:
    """Write the trained ``network`` of the workflow to ``dest`` (default :func:`dpir.paths.export_file`)
    in ``layout``; returns the file."""
    import torch

    from dpir.checkpoint import load_network, read_meta
    from dpir.config import network_config

    network_config(config, network)           # an unknown name is an error with suggestions
    directory = paths.network_dir(config, network)
    meta = read_meta(directory)
    where = f"network {network!r}"
    check_layout(meta["arch"], layout, where)          # before the weights are read
    model = load_network(directory)
    obj = export_state(meta["arch"], dict(meta.get("kwargs") or {}), model.state_dict(), layout, where)
    dest = Path(dest) if dest is not None else paths.export_file(config, network, layout)
    with atomic_file(dest) as tmp:
        torch.save(obj, tmp)
    return dest
