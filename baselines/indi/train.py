"""Training InDI's F (Delbracio & Milanfar 2023, Sec. 3): regress x from x_t on the path of :mod:`.sampler`.

Per sample: t ~ p(t), n ~ N(0, I), x_t = (1 - t) x + t y + t eps n, loss = ||F(x_t, t) - x|| with y the
bicubic x``scale`` upsampling of the LQ patch (the LQ patch itself for ``scale`` 1).

Config (``networks.<name>.train``), all optional:

- ``p_one`` (default 0.1): p(t) is U[0, 1] with probability 1 - p_one and the point mass t = 1 with
  probability p_one.  The paper studies the choice of p(t); its exact experimental mixture is not
  recorded in our references, so 0.1 is our choice.  The mass at t = 1 trains the first step
  (x_1 = y, taken by every sampler and the hardest one) even when training is short.
- ``loss`` (default ``l2``): ``l2`` (mean squared error) or ``l1``.  L2 is the loss whose minimiser is
  E[x | x_t], the quantity the paper's analysis and the sampler's derivation assume; the paper allows
  either (L1 or L2), so ``l1`` is available.
- ``eps`` is not here: it is the network's ``kwargs.eps`` (default 0.01) so that sampling reuses it.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from baselines.common.blocks import bicubic_up
from baselines.indi.nets import InDINet
from baselines.indi.sampler import degrade
from dpir.errors import DpirError
from dpir.rng import rand, randn
from dpir.train.base import Batch, TrainContext, TrainSpec


def sample_t(batch_size: int, p_one: float, generator: torch.Generator) -> torch.Tensor:
    """t ~ (1 - p_one) U[0, 1) + p_one delta_1, one per sample."""
    u = rand((batch_size,), generator)
    coin = rand((batch_size,), generator)
    return torch.where(coin < p_one, torch.ones_like(u), u)


def indi(net_cfg: dict[str, Any], ctx: TrainContext) -> TrainSpec:
    train_cfg = net_cfg.get("train", {})
    p_one = float(train_cfg.get("p_one", 0.1))
    if not 0.0 <= p_one <= 1.0:
        raise DpirError(f"InDI train.p_one must lie in [0, 1], got {p_one}")
    kind = train_cfg.get("loss", "l2")
    if kind not in ("l1", "l2"):
        raise DpirError(f"InDI train.loss must be 'l1' or 'l2', got {kind!r}")
    model = InDINet(**net_cfg.get("kwargs", {})).to(ctx.device)
    criterion = F.mse_loss if kind == "l2" else F.l1_loss

    def loss(batch: Batch, generator: torch.Generator) -> torch.Tensor:
        lq, x = batch["lq"], batch["gt"]
        s = model.scale
        if x.shape[-2] != s * lq.shape[-2] or x.shape[-1] != s * lq.shape[-1]:
            raise DpirError(f"the InDI network has scale {s} (kwargs.scale) but the training pairs have lq "
                            f"{tuple(lq.shape[-2:])} and gt {tuple(x.shape[-2:])}; "
                            f"set kwargs.scale to the task's scale")
        m = model.multiple
        if x.shape[-2] % m or x.shape[-1] % m:
            raise DpirError(f"InDI's U-Net needs patches whose size is a multiple of {m}; got {tuple(x.shape[-2:])}: "
                            f"set the network's train.patch to a multiple of {m}")
        y = bicubic_up(lq, s)
        t = sample_t(x.shape[0], p_one, generator).to(x.device)
        x_t = degrade(x, y, t, model.eps, randn(x.shape, generator, device=x.device))
        return criterion(model(x_t, t), x)

    return TrainSpec(model=model, loss=loss)
