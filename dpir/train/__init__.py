"""Training: the generic loop (:mod:`dpir.train.loop`) and the trainers, by name."""
from __future__ import annotations

from dpir.registry import Registry

#: trainer name -> ``"module:factory"``; the factory builds a :class:`dpir.train.base.TrainSpec`
TRAINERS = Registry("trainer", entries={
    "ir": "dpir.train.trainers:ir",
    "denoiser": "dpir.train.dpir_trainers:denoiser",
    "fusion": "dpir.train.dpir_trainers:fusion",
    "srdiff_rrdb": "baselines.srdiff.train:rrdb",
    "srdiff": "baselines.srdiff.train:srdiff",
    "indi": "baselines.indi.train:indi",
    "diffir_s1": "baselines.diffir.train:build_s1",
    "diffir_s2": "baselines.diffir.train:build_s2",
})
