"""Facts about method configs that the workflow, the report and the scripts need, without torch.

What a method config *refers to* (its networks, its seeds, whether it is a row of published scores)
is plain dict logic.  It lives here, not in :mod:`dpir.methods` (which imports the networks and so
torch), so that the Snakefile, :mod:`dpir.report` and ``scripts/`` can ask without importing any
method or network code (``tests/test_import_rules.py``).  :mod:`dpir.methods` re-exports every name.

This module must not import torch, numpy or anything under ``dpir`` that does.
"""
from __future__ import annotations

#: the kind of a table row of scores copied from a paper: never built, never restored
PUBLISHED = "published"

#: method kinds with no randomness: they run on the first seed only (more seeds would repeat the numbers)
DETERMINISTIC_KINDS = frozenset({"bicubic", "backbone", "burst_bicubic"})

#: the method config keys that name a trained network (``networks.<name>``)
NETWORK_KEYS = ("network", "ir", "denoiser", "fusion")


def is_published(method_cfg: dict) -> bool:
    """Whether a method config is a row of published scores (kind ``published``)."""
    return method_cfg.get("kind") == PUBLISHED


def networks_of(method_cfg: dict) -> list[str]:
    """Names of the trained networks a method config refers to (for workflow dependencies)."""
    return [method_cfg[k] for k in NETWORK_KEYS if k in method_cfg]


def seeds_of(method_cfg: dict, task_cfg: dict) -> list[int]:
    """Seeds a method runs with; none for a published-scores row (it never runs)."""
    if is_published(method_cfg):
        return []
    seeds = method_cfg.get("seeds") or task_cfg.get("seeds") or [0]
    return seeds[:1] if method_cfg["kind"] in DETERMINISTIC_KINDS else list(seeds)
