"""ExampleDiff behind the restore contract: DDIM (eta = 0) over the residual, from ``x_T ~ N(0, I)``.

One restore = one network call per DDIM step: timesteps ``T, T - stride, ..., stride`` (the package's
:func:`dpir.diffusion.ddim_timesteps`), so NFE = ``T // stride`` (``expected_nfe``).  The start noise is
drawn with :func:`dpir.rng.randn` (one generator per image), so a batch equals its images one by one.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from baselines.common.blocks import bicubic_up
from dpir.diffusion import cosine_schedule, ddim, ddim_timesteps
from dpir.errors import DpirError
from dpir.methods.base import BuildContext, Method
from dpir.rng import Generators, randn

from .nets import ExampleDiffNet


class ExampleDiff(Method):
    name = "examplediff"
    stochastic = True

    def __init__(self, net: ExampleDiffNet, stride: int = 1):
        if net.T % stride:
            raise DpirError(f"examplediff: stride {stride} does not divide the network's T = {net.T}; "
                            f"pick a divisor of T for the method's `stride`")
        self.net = net
        self.schedule = cosine_schedule(net.T)
        self.timesteps = ddim_timesteps(net.T, stride)
        self.nfe_note = f"ExampleDiff: one network call per DDIM step (T = {net.T}, stride {stride})"

    def restore(self, y: torch.Tensor, generator: Generators) -> torch.Tensor:
        if y.dim() != 4 or y.shape[1] != 3:
            raise DpirError(f"examplediff restores (B, 3, h, w) RGB images; got input of shape {tuple(y.shape)}")
        with torch.no_grad():
            up = bicubic_up(y, self.net.scale)
            batch = up.shape[0]

            def x0_model(x_t: torch.Tensor, t: int) -> torch.Tensor:
                return self.net(x_t, torch.full((batch,), t, dtype=torch.long, device=x_t.device), up)

            x_T = randn(up.shape, generator, device=up.device)
            r0 = ddim(x0_model, self.schedule, x_T, self.timesteps)
        return (up + r0).clamp(0.0, 1.0)

    def expected_nfe(self) -> int:
        return len(self.timesteps)

    def modules(self) -> dict[str, nn.Module]:
        return {"denoiser": self.net}


def build(method_cfg: dict[str, Any], ctx: BuildContext) -> ExampleDiff:
    """``{network: <name of a trained 'examplediff' network>, stride: <DDIM stride, default 1>}``; the
    keys are declared in the package's ``ENTRIES`` (``__init__.py``)."""
    from dpir.checkpoint import load_network

    net = load_network(ctx.checkpoint(method_cfg["network"]), ctx.device, expect_arch="examplediff")
    if net.scale != ctx.task.get("scale", net.scale):
        raise DpirError(f"the examplediff network is for {net.scale}x SR but task {ctx.task_name!r} has scale "
                        f"{ctx.task['scale']}; train a network of the task's scale")
    return ExampleDiff(net.to(ctx.device).eval().requires_grad_(False), int(method_cfg.get("stride", 1)))
