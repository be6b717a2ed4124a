"""DiffIR (Xia et al., "DiffIR: Efficient Diffusion Model for Image Restoration", ICCV 2023).

- :mod:`.nets`: DIRformer, CPEN, the IPR denoiser MLP, DiffIRS1 / DiffIRS2 (archs ``diffir_s1``/``diffir_s2``)
- :mod:`.sampler`: the 4-step IPR diffusion on :mod:`dpir.diffusion` (schedule, forward noising, the
  posterior-mean chain behind an x0-model adapter); the networks draw no noise and run no chain
- :mod:`.train`: the stage-1 and stage-2 trainers (``build_s1``, ``build_s2``)
- :mod:`.method`: the restore contract (``build``)
- :mod:`.checkpoint`: loading the official BasicSR checkpoints (``load_official``)
"""

from __future__ import annotations

from dpir.keys import NETWORK, factory
from dpir.registry import Entries

#: what DiffIR adds to the central registries (torch-free; listed in dpir.registry.PACKAGES)
ENTRIES = Entries(
    methods={"diffir": factory("baselines.diffir.method:build", network=NETWORK,
                               official={"type": "string", "minLength": 1}, kwargs={"type": "object"})},
    archs={"diffir_s1": "baselines.diffir.nets:DiffIRS1", "diffir_s2": "baselines.diffir.nets:DiffIRS2"},
    trainers={"diffir_s1": factory("baselines.diffir.train:build_s1", gan={"type": "boolean"}),
              "diffir_s2": factory("baselines.diffir.train:build_s2", required=("teacher",), teacher=NETWORK,
                                   kd_weight={"type": "number", "minimum": 0}, kd_kl={"type": "boolean"},
                                   kd_temperature={"type": "number", "exclusiveMinimum": 0},
                                   encoder_steps={"type": "integer", "minimum": 0}, gan={"type": "boolean"})},
)
