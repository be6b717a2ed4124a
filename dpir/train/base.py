"""The training contract.

A *trainer* is a factory ``build(net_cfg, ctx) -> TrainSpec`` registered by name in
:data:`dpir.train.TRAINERS`.  ``net_cfg`` is the network's config entry::

    networks:
      swinir_sr:
        arch: swinir                 # key of dpir.nets.ARCHS
        kwargs: {...}                # constructor arguments
        train: {trainer: ir, steps: 400, batch: 8, patch: 64, lr: 2.0e-4, ...}

The generic loop (:func:`dpir.train.loop.fit`) owns seeding, the optimiser (Adam; step-decay
``lr_decay`` every ``lr_every`` steps), the data loader, precision, DDP, the progress bar, checkpoints and
resume.  A trainer only says
what the model is, which parameters train, what data it sees and what the loss is.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from dpir.rng import Generators


@dataclass
class TrainContext:
    """What a trainer gets: the task it trains for, where other networks live, the device."""

    task_name: str
    task: dict[str, Any]
    networks_dir: str
    device: torch.device
    config: dict[str, Any] = field(default_factory=dict)

    def load(self, network: str) -> nn.Module:
        """A frozen (eval, no-grad) trained network of the config's ``networks`` section."""
        import os

        from dpir.checkpoint import load_network

        return load_network(os.path.join(self.networks_dir, network), self.device)


#: a batch: ``{"lq": degraded patches, "gt": clean patches}`` (``"lq"`` absent for ``data="clean"``;
#: ``"ir"``: the cached IR estimate's crops, with ``TrainSpec.cache_ir``)
Batch = dict[str, torch.Tensor]


@dataclass
class TrainSpec:
    model: nn.Module                      # what is saved as the checkpoint (arch + kwargs of net_cfg)
    #: ``loss(batch, generators)``: ``generators`` holds one generator per sample of the batch (a list;
    #: :func:`dpir.rng.sample_generators`), which :func:`dpir.rng.rand`, ``randn`` and ``randint`` take
    #: for a batch-first shape, so each sample's noise does not depend on the batch it is in
    loss: Callable[[Batch, Generators], torch.Tensor]
    params: Iterable[nn.Parameter] | None = None   # None: all parameters of ``model``
    data: str = "pairs"                   # "pairs": (lq, gt) patches of the task; "clean": gt only
    frozen: dict[str, nn.Module] = field(default_factory=dict)  # other networks used, for the record
    #: ``(network name, frozen module)``: a deterministic frozen network of the observation whose
    #: estimates of the stored training images the loop computes once (``train.cache_ir``) and hands to
    #: the loss as ``batch["ir"]``, cropped with the gt (:class:`dpir.data.loader.TrainPatches`)
    cache_ir: tuple[str, nn.Module] | None = None
    #: facts about what the network was trained for, saved in its ``model.json`` (e.g. ``trained_for``:
    #: the noise or t range a sampler may use it on, :mod:`dpir.diffusion.estimator`)
    facts: dict[str, Any] = field(default_factory=dict)
