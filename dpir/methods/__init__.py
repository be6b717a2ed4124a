"""The method registry: a method *kind* -> its factory ``build(method_cfg, ctx) -> Method``.

A config names method instances under ``tasks.<task>.methods``; each has a ``kind`` from this
table.  Deterministic kinds run on the first seed only (more seeds would repeat the same numbers).

Kind ``published`` is not a method but a table row of scores copied from a paper (``source``,
``scores: {dataset: {metric: value}}``) for methods without public code; it never runs, and the report
marks it as copied.
"""
from __future__ import annotations

from dpir.methods.base import BuildContext, Method
from dpir.registry import Registry
# torch-free facts about method configs, re-exported (the workflow and the report import dpir.workflow_facts)
from dpir.workflow_facts import DETERMINISTIC_KINDS, PUBLISHED, is_published, networks_of, seeds_of  # noqa: F401

METHODS = Registry("method kind", returns=Method, entries={
    "bicubic": "dpir.methods.simple:bicubic",
    "backbone": "dpir.methods.simple:backbone",
    "burst_bicubic": "dpir.methods.burst:burst_bicubic",
    "dpir": "dpir.methods.dpir:build",
    "srdiff": "baselines.srdiff.method:build",
    "indi": "baselines.indi.method:build",
    "diffir": "baselines.diffir.method:build",
})


def build_method(method_cfg: dict, ctx: BuildContext) -> Method:
    if is_published(method_cfg):
        from dpir.errors import DpirError

        raise DpirError(f"method {method_cfg.get('label', '?')!r} is a row of published scores (kind 'published', "
                        f"source: {method_cfg.get('source', '?')}): it is copied from its paper, never restored")
    return METHODS.build(method_cfg["kind"], method_cfg, ctx)
