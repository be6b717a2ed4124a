"""SRDiff behind the restore contract (Li et al. 2022): 100 ancestral steps on the HR residual, run by
the package's DDPM chain (:func:`baselines.srdiff.sampler.sample`, an eps -> x0 adapter over
:func:`dpir.diffusion.full_chain`).

One restore = 1 RRDB pass (the LR condition, computed once) + T U-Net passes, so NFE = T + 1 = 101.
The residual's reference ``up(LR)`` is the network's (:meth:`SRDiffNet.lr_reference`): PyTorch bicubic for
networks trained here, the official ``imresize(lr / 256, 4)`` for imported official weights.
Sizes: the LR input is replicate-padded at the bottom/right so the HR size is a multiple of the U-Net's
``2 ** (levels - 1)``, and the output is cropped back to ``scale * (h, w)`` and clipped to [0, 1].
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from baselines.common.blocks import pad_to_multiple
from baselines.srdiff.nets import SRDiffNet
from baselines.srdiff.sampler import from_residual, sample
from dpir.diffusion import cosine_schedule
from dpir.errors import DpirError
from dpir.methods.base import BuildContext, Method
from dpir.rng import Generators


class SRDiff(Method):
    name = "srdiff"
    stochastic = True
    nfe_note = "SRDiff: one U-Net evaluation per reverse step (T = 100) + one RRDB encoder pass"

    def __init__(self, net: SRDiffNet):
        self.net = net
        self.schedule = cosine_schedule(net.T, net.cosine_s)
        self.nfe_note = f"SRDiff: one U-Net evaluation per reverse step (T = {net.T}) + one RRDB encoder pass"

    def restore(self, y: torch.Tensor, generator: Generators) -> torch.Tensor:
        if y.dim() != 4 or y.shape[1] != 3:
            raise DpirError(f"SRDiff restores (B, 3, h, w) RGB images; got input of shape {tuple(y.shape)}")
        net, s = self.net, self.net.scale
        h, w = y.shape[-2:]
        with torch.no_grad():
            lr = pad_to_multiple(y, net.lr_multiple)
            up = net.lr_reference(lr)       # the network's residual reference (torch, or the official one)
            cond = net.encode(lr)
            batch = up.shape[0]

            def eps_model(x_t: torch.Tensor, t: int) -> torch.Tensor:
                # the network's timestep is the official 0-based index t - 1
                return net.denoise_fn(x_t, torch.full((batch,), t - 1, dtype=torch.long, device=x_t.device), cond)

            r0 = sample(eps_model, self.schedule, up.shape, generator, device=up.device, clip=1.0)
            x = from_residual(r0, up, net.res_rescale)
        return x[..., : s * h, : s * w].clamp(0.0, 1.0)

    def expected_nfe(self) -> int:
        return self.net.T + 1  # T U-Net steps + 1 RRDB encoder pass

    def modules(self) -> dict[str, nn.Module]:
        return {"rrdb": self.net.rrdb, "denoise_fn": self.net.denoise_fn}

    def nfe_groups(self) -> dict[str, list[nn.Module]]:
        return {"unet": [self.net.denoise_fn], "encoder": [self.net.rrdb]}

    # trained_modules: both (the RRDB is pre-trained by SRDiff's own first stage), the base default


def build(method_cfg: dict[str, Any], ctx: BuildContext) -> SRDiff:
    """``{network: <name of a trained 'srdiff' network>}`` or ``{official: <path to a released .ckpt>}``."""
    if "official" in method_cfg:
        from baselines.srdiff.checkpoint import load_official

        net = load_official(method_cfg["official"])
        # official weights, run as the official test runs them (dpir.official.PROTOCOLS["srdiff"])
        net.official_inference = {"residual_reference": "official"}
    elif "network" in method_cfg:
        from dpir.checkpoint import load_network

        net = load_network(ctx.checkpoint(method_cfg["network"]), ctx.device, expect_arch="srdiff")
    else:
        raise DpirError("the srdiff method needs `network:` (a trained 'srdiff' network of the config's "
                        "networks section) or `official:` (path to a released SRDiff checkpoint)")
    if net.scale != ctx.task.get("scale", net.scale):
        raise DpirError(f"the SRDiff network is for {net.scale}x SR but task {ctx.task_name!r} has scale "
                        f"{ctx.task['scale']}; train or point to a network of the task's scale")
    net.to(ctx.device).eval().requires_grad_(False)
    return SRDiff(net)
