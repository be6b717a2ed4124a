"""DiffIR behind the restore contract (Xia et al., ICCV 2023; stage-2 inference, paper Sec. 3.4).

``restore(y, generator)``: z_T ~ N(0, I) drawn per image from ``generator``, T = 4 posterior-mean steps
of the IPR denoiser conditioned on CPEN_S2(y) (:func:`.sampler.sample_ipr`, the package's
:func:`dpir.diffusion.ancestral` with ``variance="mean"``), then one DIRformer pass.  Given the start noise the
result is deterministic (no noise is added during the reverse steps), so the method is stochastic only
through z_T.

Config (``methods.<name>``)::

    method: diffir
    network: diffir_s2_sr          # a trained ``diffir_s2`` network of the ``networks`` section
    # or, to evaluate an official release file instead:
    official: path/to/DiffIRS2.pth
    kwargs: {task: sr}             # its architecture (constructor arguments of DiffIRS2)
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dpir.checkpoint import load_network
from dpir.errors import DpirError
from dpir.methods.base import BuildContext, Method
from dpir.rng import Generators, randn

from .nets import DiffIRS2
from .sampler import sample_ipr


class DiffIR(Method):
    name = "diffir"
    stochastic = True
    nfe_note = ("DiffIR: NFE = 4 IPR-denoiser MLP steps (on a 4*n_feats-d vector, negligible FLOPs) "
                "+ 1 DIRformer pass + 1 CPEN_S2 pass on the LQ image")

    def __init__(self, net: DiffIRS2):
        if not isinstance(net, DiffIRS2):
            raise DpirError(f"the DiffIR method needs a stage-2 network (arch 'diffir_s2'), "
                            f"got {type(net).__name__}")
        self.net = net

    def restore(self, y: torch.Tensor, generator: Generators) -> torch.Tensor:
        if y.ndim != 4 or y.shape[1] != 3:
            raise DpirError(f"DiffIR restores (B, 3, h, w) RGB images, got shape {tuple(y.shape)}")
        net = self.net
        lq = y.to(next(net.parameters()).device)
        with torch.no_grad():
            z_T = randn((lq.shape[0], net.ipr_dim), generator, device=lq.device, dtype=lq.dtype)
            return net(lq, sample_ipr(net, lq, z_T))

    def expected_nfe(self) -> int:
        """``timesteps`` (4) IPR-denoiser MLP steps + 1 DIRformer pass + 1 CPEN_S2 pass."""
        return self.net.timesteps + 2

    def modules(self) -> dict[str, nn.Module]:
        return {"diffir_s2": self.net}

    def nfe_groups(self) -> dict[str, list[nn.Module]]:
        return {"denoiser_mlp": [self.net.denoise], "transformer": [self.net.G], "cpen": [self.net.condition]}

    def tile(self, wrap) -> list[str]:
        """Only the DIRformer: the CPEN pools the whole image into one IPR vector (tiling would change it)."""
        from .nets import PAD_MULTIPLE

        self.net.G = wrap(self.net.G, scale=self.net.scale, multiple=PAD_MULTIPLE)
        return ["transformer"]


def build(method_cfg: dict[str, Any], ctx: BuildContext) -> DiffIR:
    if "official" in method_cfg:
        from .checkpoint import load_official

        # DiffIR's official test configs load with strict_load_g: False: extra keys are listed and dropped
        # (missing ones stay an error: no published number comes from a randomly initialised layer)
        net = load_official(method_cfg["official"], "s2", ctx.device, on_unexpected="warn",
                            **method_cfg.get("kwargs", {}))
        source = str(method_cfg["official"])
    elif "network" in method_cfg:
        source = ctx.checkpoint(method_cfg["network"])
        net = load_network(source, ctx.device, expect_arch="diffir_s2")
    else:
        raise DpirError("the diffir method needs `network: <a diffir_s2 network of the networks section>` "
                        "(or `official: <path of an official DiffIRS2 .pth>`) in its config")
    scale = ctx.task.get("scale")
    if scale is not None and int(scale) != net.scale:
        raise DpirError(f"{source} is a scale-{net.scale} DiffIR network but task {ctx.task_name!r} has "
                        f"scale {scale}; train or configure the network for this task")
    return DiffIR(net)
