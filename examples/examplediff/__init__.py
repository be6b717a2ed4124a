"""ExampleDiff: the worked example of adding a diffusion baseline (README, "Adding a diffusion baseline").

A small conditional diffusion model for SR, built only from the harness's parts: it diffuses the HR
residual ``r_0 = HR - up(LR)`` with :func:`dpir.diffusion.cosine_schedule`, predicts ``r_0`` directly (an
x0-model) and samples with :func:`dpir.diffusion.ddim` (eta = 0, so the start noise is the only
randomness).  It is not a method of the paper; ``tests/test_new_baseline.py`` registers, validates,
trains, restores and contract-checks it, so the example cannot rot.

- :mod:`.nets`: the network ``ExampleDiffNet(x_t, t, up)`` (arch ``examplediff``);
- :mod:`.method`: the restore contract (``build``, kind ``examplediff``);
- :mod:`.train`: the trainer (``examplediff``).

This file is the package's registration: torch-free data only (``dpir validate`` and the Snakefile read
it without importing the modules it names).  A new baseline copies this folder to ``baselines/<name>/``
and adds ``"baselines.<name>",`` to :data:`dpir.registry.PACKAGES`; targets are relative to the package,
so nothing here changes with the folder's name.
"""
from __future__ import annotations

from dpir.keys import NETWORK, factory
from dpir.registry import Entries

ENTRIES = Entries(
    methods={"examplediff": factory(".method:build", required=("network",), network=NETWORK,
                                    stride={"type": "integer", "minimum": 1})},
    archs={"examplediff": ".nets:ExampleDiffNet"},
    trainers={"examplediff": factory(".train:examplediff", loss={"enum": ["l1", "l2"]})},
)
