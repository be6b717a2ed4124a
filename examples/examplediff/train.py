"""The ExampleDiff trainer: t ~ U{1..T}, r_t = sqrt(abar_t) r_0 + sqrt(1 - abar_t) eps, loss on the
predicted residual (``loss: l2`` by default, or ``l1``).  The generic loop (:func:`dpir.train.loop.fit`)
owns seeding, the optimiser, checkpoints and resume; this only says what the model and the loss are.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from baselines.common.blocks import bicubic_up
from dpir.diffusion import cosine_schedule
from dpir.errors import DpirError
from dpir.rng import randint, randn
from dpir.train.base import Batch, TrainContext, TrainSpec

from .nets import ExampleDiffNet


def examplediff(net_cfg: dict[str, Any], ctx: TrainContext) -> TrainSpec:
    model = ExampleDiffNet(**net_cfg.get("kwargs", {})).to(ctx.device)
    alphas_bar = torch.tensor(cosine_schedule(model.T).alphas_bar, dtype=torch.float32)
    distance = F.l1_loss if net_cfg.get("train", {}).get("loss", "l2") == "l1" else F.mse_loss

    def loss(batch: Batch, generator: torch.Generator) -> torch.Tensor:
        lq, gt = batch["lq"], batch["gt"]
        if gt.shape[-1] != model.scale * lq.shape[-1]:
            raise DpirError(f"the examplediff network is for {model.scale}x SR but the training pairs have lq "
                            f"{tuple(lq.shape[-2:])} and gt {tuple(gt.shape[-2:])}; train it on a task of that scale")
        up = bicubic_up(lq, model.scale)
        r0 = gt - up
        t = randint(1, model.T + 1, (gt.shape[0],), generator).to(gt.device)
        eps = randn(r0.shape, generator, device=gt.device)
        ab = alphas_bar.to(gt.device)[t].view(-1, 1, 1, 1)
        r_t = ab.sqrt() * r0 + (1.0 - ab).sqrt() * eps
        return distance(model(r_t, t, up), r0)

    return TrainSpec(model=model, loss=loss)
