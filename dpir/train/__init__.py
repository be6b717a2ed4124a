"""Training: the generic loop (:mod:`dpir.train.loop`) and the trainers, by name.

Each trainer entry declares the keys of the ``train:`` section it reads (:func:`dpir.keys.factory`;
the generic loop's own keys are the schema's ``$defs.train``); the baselines' trainers come from their
packages' ``ENTRIES`` (:data:`dpir.registry.PACKAGES`).  Torch-free: the config check reads the table.
"""
from __future__ import annotations

from dpir.keys import NETWORK, factory
from dpir.registry import Registry, include

_POSITIVE = {"type": "number", "exclusiveMinimum": 0}

#: trainer name -> ``"module:factory"``; the factory builds a :class:`dpir.train.base.TrainSpec`
TRAINERS = Registry("trainer", required_meta=("keys",), entries={
    "ir": factory("dpir.train.trainers:ir", loss={"enum": ["l1", "l2", "mse"]}),
    "denoiser": factory("dpir.train.dpir_trainers:denoiser", sigma_max=_POSITIVE,
                        sigma_sampling={"enum": ["uniform", "schedule"]}, T={"type": "integer", "minimum": 1},
                        beta_start=_POSITIVE, beta_end=_POSITIVE),
    "fusion": factory("dpir.train.dpir_trainers:fusion", required=("ir", "denoiser", "tau"), ir=NETWORK,
                      denoiser=NETWORK, tau={"type": "integer", "minimum": 1}, T={"type": "integer", "minimum": 1},
                      beta_start=_POSITIVE, beta_end=_POSITIVE),
})
include(TRAINERS, "trainers")
