"""Trainers of plain restoration networks (the IR backbones: SwinIR, RRDB, NAFNet, FFTformer)."""
from __future__ import annotations

import torch.nn.functional as F

from dpir.nets import build_network
from dpir.train.base import TrainContext, TrainSpec

LOSSES = {"l1": F.l1_loss, "l2": F.mse_loss, "mse": F.mse_loss}


def ir(net_cfg: dict, ctx: TrainContext) -> TrainSpec:
    """Supervised regression ``phi_IR(y) ~ x`` with an L1 (default, as SwinIR) or L2 loss."""
    model = build_network(net_cfg["arch"], **net_cfg["kwargs"])
    loss_fn = LOSSES[net_cfg["train"].get("loss", "l1")]

    def loss(batch, generator):
        return loss_fn(model(batch["lq"]), batch["gt"])

    return TrainSpec(model=model, loss=loss)
