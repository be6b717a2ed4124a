"""InDI (Delbracio & Milanfar, "Inversion by Direct Iteration: An Alternative to Denoising Diffusion for
Image Restoration", TMLR 2023).  No official code exists; this is our implementation from the paper.

- :mod:`.nets`: the restoration network F(x_t, t) (a small time-conditioned U-Net);
- :mod:`.sampler`: the degradation path x_t and the N-step iteration, as plain functions;
- :mod:`.method`: the restore contract; :mod:`.train`: the trainer.
"""

from __future__ import annotations

from dpir.keys import NETWORK, factory
from dpir.registry import Entries

#: what InDI adds to the central registries (torch-free; listed in dpir.registry.PACKAGES)
ENTRIES = Entries(
    methods={"indi": factory("baselines.indi.method:build", required=("network",), network=NETWORK,
                             steps={"type": "integer", "minimum": 1}, eps={"type": ["number", "null"]})},
    archs={"indi": "baselines.indi.nets:InDINet"},
    trainers={"indi": factory("baselines.indi.train:indi", p_one={"type": "number", "minimum": 0, "maximum": 1},
                              loss={"enum": ["l1", "l2"]})},
)
