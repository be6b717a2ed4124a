"""InDI behind the restore contract: y = bicubic_up(LQ) (identity for deblurring), then N steps.

NFE = N (config ``steps``, default 10: DP-IR's comparison implies about 10 steps on GoPro).  ``eps``
defaults to the value the network was trained with (stored in its checkpoint).  Inputs are
replicate-padded to the U-Net's size multiple and the output is cropped back, not clipped.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from baselines.common.blocks import bicubic_up, lr_multiple, pad_to_multiple
from baselines.indi.nets import InDINet
from baselines.indi.sampler import indi_sample
from dpir.errors import DpirError
from dpir.methods.base import BuildContext, Method
from dpir.rng import Generators


class InDI(Method):
    name = "indi"
    nfe_note = "InDI: one network evaluation per step (N steps)"

    def __init__(self, net: InDINet, steps: int = 10, eps: float | None = None):
        if int(steps) < 1:
            raise DpirError(f"InDI `steps` must be a positive integer, got {steps!r}")
        self.net, self.steps = net, int(steps)
        self.eps = net.eps if eps is None else float(eps)
        self.stochastic = self.eps > 0

    def restore(self, y: torch.Tensor, generator: Generators) -> torch.Tensor:
        if y.dim() != 4 or y.shape[1] != 3:
            raise DpirError(f"InDI restores (B, 3, h, w) RGB images; got input of shape {tuple(y.shape)}")
        s = self.net.scale
        h, w = y.shape[-2:]
        with torch.no_grad():
            y_up = bicubic_up(pad_to_multiple(y, lr_multiple(self.net.multiple, s)), s)
            x = indi_sample(self.net, y_up, self.steps, generator, eps=self.eps)
        return x[..., : s * h, : s * w]

    def expected_nfe(self) -> int:
        return self.steps  # one network evaluation per step

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def nfe_groups(self) -> dict[str, list[nn.Module]]:
        return {"net": [self.net]}

    def tile(self, wrap) -> list[str]:
        self.net = wrap(self.net, scale=1, multiple=self.net.multiple)
        return ["net"]


def build(method_cfg: dict[str, Any], ctx: BuildContext) -> InDI:
    """``{network: <trained 'indi' network>, steps: 10, eps: <default: the network's training eps>}``."""
    from dpir.checkpoint import load_network

    if "network" not in method_cfg:
        raise DpirError("the indi method needs `network:` (a trained 'indi' network of the config's networks section)")
    net = load_network(ctx.checkpoint(method_cfg["network"]), ctx.device, expect_arch="indi")
    if net.scale != ctx.task.get("scale", net.scale):
        raise DpirError(f"the InDI network was trained for scale {net.scale} but task {ctx.task_name!r} has scale "
                        f"{ctx.task['scale']}; train or point to a network of the task's scale")
    return InDI(net, steps=method_cfg.get("steps", 10), eps=method_cfg.get("eps"))
