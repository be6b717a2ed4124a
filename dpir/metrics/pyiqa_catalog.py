"""pyiqa's metric names and directions, read without importing pyiqa (or torch).

A task may list any per-image pyiqa metric as ``pyiqa:<name>`` (``pyiqa:niqe``, ``pyiqa:dists``).
``dpir validate`` and the Snakefile check those names, and the report needs their direction, but
neither may import torch (tests/torch_block.py), and importing pyiqa imports torch.  pyiqa keeps
every metric's defaults in one literal dict, ``DEFAULT_CONFIGS`` in ``pyiqa/default_model_configs.py``
(its ``metric_mode`` FR/NR and ``lower_better``, which ``pyiqa.create_metric`` copies onto the metric
object), so we locate that file with :func:`importlib.util.find_spec` (which does not import the
package) and read the dict with :mod:`ast`: the same table pyiqa itself reads, parsed once.

Not offered: pyiqa's set-level metrics (FID and its variants, the Inception score), which take two
folders of images rather than one image, so they have no per-image score.
"""
from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from dpir.errors import DpirError

PREFIX = "pyiqa:"

#: pyiqa metrics scored over a whole set of images (pyiqa's InferenceModel routes every name
#: containing "fid", and "inception_score", past its per-image path)
_SET_LEVEL = ("inception_score",)


@dataclass(frozen=True)
class PyiqaInfo:
    name: str              # pyiqa's name, without the prefix
    mode: str              # "FR" (needs the reference) or "NR"
    lower_better: bool     # pyiqa's default is False when its config does not say


def is_pyiqa(name: object) -> bool:
    """Whether ``name`` is spelled as a pyiqa metric (``pyiqa:<something>``), valid or not."""
    return isinstance(name, str) and name.startswith(PREFIX)


def set_level(pyiqa_name: str) -> bool:
    return "fid" in pyiqa_name or pyiqa_name in _SET_LEVEL


def _configs_file() -> Path | None:
    try:
        spec = importlib.util.find_spec("pyiqa")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "default_model_configs.py"
    return path if path.is_file() else None


@functools.lru_cache(maxsize=1)
def _all_metrics() -> dict[str, PyiqaInfo]:
    """Every entry of pyiqa's DEFAULT_CONFIGS, set-level ones included ({} when pyiqa is not installed)."""
    path = _configs_file()
    if path is None:
        return {}
    configs = None
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "DEFAULT_CONFIGS" for t in node.targets):
            value = node.value
            # DEFAULT_CONFIGS = OrderedDict({...}) in pyiqa 0.1.x; a plain dict literal would do as well
            if isinstance(value, ast.Call) and value.args:
                value = value.args[0]
            try:
                configs = ast.literal_eval(value)
            except ValueError:
                configs = None
    if not isinstance(configs, dict):
        raise DpirError(f"cannot read pyiqa's metric list from {path} (DEFAULT_CONFIGS is not a literal dict); "
                        f"install the pyiqa version pinned in pyproject.toml")
    return {name: PyiqaInfo(name, cfg.get("metric_mode"), bool(cfg.get("lower_better", False)))
            for name, cfg in configs.items()}


def catalog() -> dict[str, PyiqaInfo]:
    """pyiqa's per-image metrics by name ({} when pyiqa is not installed)."""
    return {n: i for n, i in _all_metrics().items() if not set_level(n)}


def lookup(name: str) -> PyiqaInfo | None:
    """The pyiqa metric that ``pyiqa:<name>`` names, or None (not spelled so, unknown, or set-level)."""
    if not is_pyiqa(name):
        return None
    short = name[len(PREFIX):]
    return None if set_level(short) else _all_metrics().get(short)


def unknown(name: str) -> str:
    """Why ``pyiqa:<name>`` is not a metric, and what to write instead, on one line."""
    short = name[len(PREFIX):]
    known = catalog()
    if not known:
        return (f"unknown metric preset {name!r}: pyiqa is not installed here, so its metrics cannot be checked; "
                f"pip install pyiqa (the version pinned in pyproject.toml)")
    if short in _all_metrics() and set_level(short):
        return (f"metric preset {name!r}: pyiqa's {short!r} is computed over a whole set of images, not per image, "
                f"so the harness cannot score it; use a per-image pyiqa metric")
    close = difflib.get_close_matches(short, list(known), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(PREFIX + c) for c in close)}?" if close else ""
    return (f"unknown metric preset {name!r}: pyiqa has no per-image metric {short!r}.{hint} "
            f"pyiqa's names: python -c \"import pyiqa; print(pyiqa.list_models())\"")
