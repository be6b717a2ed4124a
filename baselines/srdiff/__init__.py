"""SRDiff (Li et al., "SRDiff: Single Image Super-Resolution with Diffusion Probabilistic Models",
Neurocomputing 2022; official code LeiaLi/SRDiff).

- :mod:`.nets`: the RRDB LR encoder and the conditional noise-predicting U-Net (official parameter names);
- :mod:`.sampler`: the residual parameterisation and the 100-step ancestral sampler (the package's
  :func:`dpir.diffusion.cosine_schedule` and DDPM chain behind an eps -> x0 adapter);
- :mod:`.method`: the restore contract; :mod:`.train`: the two trainers (RRDB pre-training, diffusion);
- :mod:`.checkpoint`: loading the released checkpoints.
"""

from __future__ import annotations

from dpir.keys import NETWORK, factory
from dpir.registry import Entries

#: what SRDiff adds to the central registries (torch-free; listed in dpir.registry.PACKAGES)
ENTRIES = Entries(
    methods={"srdiff": factory("baselines.srdiff.method:build", network=NETWORK,
                               official={"type": "string", "minLength": 1})},
    archs={"srdiff": "baselines.srdiff.nets:SRDiffNet", "srdiff_rrdb": "baselines.srdiff.nets:RRDBNet"},
    trainers={"srdiff_rrdb": factory("baselines.srdiff.train:rrdb"),
              "srdiff": factory("baselines.srdiff.train:srdiff", required=("rrdb",), rrdb=NETWORK)},
)
