"""The method registry: a method *kind* -> its factory ``build(method_cfg, ctx) -> Method``.

A config names method instances under ``tasks.<task>.methods``; each has a ``kind`` from this
table.  Deterministic kinds run on the first seed only (more seeds would repeat the same numbers).
Each entry declares the config keys its factory reads (:func:`dpir.keys.factory`); the baselines'
kinds come from their packages' ``ENTRIES`` (:data:`dpir.registry.PACKAGES`).

Kind ``published`` is not a method but a table row of scores copied from a paper (``source``,
``scores: {dataset: {metric: value}}``) for methods without public code; it never runs, and the report
marks it as copied.

This module is torch-free (the config check and the Snakefile read the table): the contract types
(:class:`BuildContext`, :class:`Method`) are imported from :mod:`dpir.methods.base` on first use.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from dpir.keys import NETWORK, factory
from dpir.registry import Registry, include
# torch-free facts about method configs, re-exported (the workflow and the report import dpir.workflow_facts)
from dpir.workflow_facts import DETERMINISTIC_KINDS, PUBLISHED, is_published, networks_of, seeds_of  # noqa: F401

_POSITIVE_INT = {"type": "integer", "minimum": 1}
_POSITIVE = {"type": "number", "exclusiveMinimum": 0}

METHODS = Registry("method kind", returns="dpir.methods.base:Method", required_meta=("keys",), entries={
    "bicubic": factory("dpir.methods.simple:bicubic"),
    "backbone": factory("dpir.methods.simple:backbone", required=("network",), network=NETWORK,
                        pad_multiple=_POSITIVE_INT),
    "burst_bicubic": factory("dpir.methods.burst:burst_bicubic"),
    "dpir": factory("dpir.methods.dpir:build", required=("ir", "denoiser", "fusion"),
                    ir=NETWORK, denoiser=NETWORK, fusion=NETWORK, tau=_POSITIVE_INT,
                    ddim_stride={"type": ["integer", "null"], "minimum": 1},
                    mode={"enum": ["jump", "full", "sdedit", "ccdf", "noised_start"]},
                    T=_POSITIVE_INT, beta_start=_POSITIVE, beta_end=_POSITIVE, variance={"enum": ["beta", "posterior"]},
                    eta={"type": "number", "minimum": 0}, clip_x0={"type": "boolean"}, pad_multiple=_POSITIVE_INT),
    # bring your own (README "Evaluate your own method"): any checkpoint spandrel reads, any Python model
    "checkpoint": factory("dpir.methods.checkpoint:build", required=("path",), path={"type": "string", "minLength": 1},
                          pad_multiple=_POSITIVE_INT),
    "python": factory("dpir.methods.python:build", required=("entry",), entry={"type": "string", "minLength": 3},
                      python_path={"type": "array", "items": {"type": "string"}}, deterministic={"type": "boolean"},
                      pad_multiple=_POSITIVE_INT, options={"type": "object"}),
})
include(METHODS, "methods")

if TYPE_CHECKING:
    from dpir.methods.base import BuildContext, Method


def __getattr__(name: str):
    """``BuildContext`` and ``Method`` (torch) on first use, so importing the table stays torch-free."""
    if name in ("BuildContext", "Method"):
        from dpir.methods import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_method(method_cfg: dict, ctx: BuildContext) -> Method:
    if is_published(method_cfg):
        from dpir.errors import DpirError

        raise DpirError(f"method {method_cfg.get('label', '?')!r} is a row of published scores (kind 'published', "
                        f"source: {method_cfg.get('source', '?')}): it is copied from its paper, never restored")
    return METHODS.build(method_cfg["kind"], method_cfg, ctx)
