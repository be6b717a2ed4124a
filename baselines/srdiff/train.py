"""SRDiff's two training stages (Li et al. 2022, Sec. 3.3; official tasks/rrdb.py and tasks/srdiff.py).

- ``srdiff_rrdb`` (:func:`rrdb`): pre-train the RRDB encoder as an SR network, L1 on [0, 1] images
  (the official L1 is on [-1, 1] images, i.e. twice ours: same minimiser, Adam is scale invariant).
- ``srdiff`` (:func:`srdiff`): copy the pre-trained RRDB into ``model.rrdb``, freeze it (official
  ``fix_rrdb: true``), and train the U-Net only: t ~ U{1..T}, eps ~ N(0, I),
  r_t = sqrt(abar_t) r_0 + sqrt(1 - abar_t) eps, loss = mean |eps - eps_theta(r_t, t, cond)| (official
  ``loss_type: l1``).

Config (``networks.<name>.train``): ``rrdb: <name of the trained srdiff_rrdb network>`` for ``srdiff``.
The official run also clips the gradient norm to 10; the generic loop owns the optimiser and does not.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from baselines.srdiff.nets import RRDBNet, SRDiffNet
from baselines.srdiff.sampler import q_sample, to_residual
from dpir.checkpoint import load_state_strict
from dpir.diffusion import cosine_schedule
from dpir.errors import DpirError
from dpir.rng import randint, randn
from dpir.train.base import Batch, TrainContext, TrainSpec


def _check_scale(batch: Batch, scale: int, what: str) -> None:
    lq, gt = batch["lq"], batch["gt"]
    if gt.shape[-2] != scale * lq.shape[-2] or gt.shape[-1] != scale * lq.shape[-1]:
        raise DpirError(f"{what} is a {scale}x SR network but the training pairs have lq {tuple(lq.shape[-2:])} "
                        f"and gt {tuple(gt.shape[-2:])}; train it on a {scale}x SR task")


def rrdb(net_cfg: dict[str, Any], ctx: TrainContext) -> TrainSpec:
    model = RRDBNet(**net_cfg.get("kwargs", {})).to(ctx.device)

    def loss(batch: Batch, generator: torch.Generator) -> torch.Tensor:
        _check_scale(batch, model.scale, "the SRDiff RRDB")
        return F.l1_loss(model(batch["lq"]), batch["gt"])

    return TrainSpec(model=model, loss=loss)


def srdiff(net_cfg: dict[str, Any], ctx: TrainContext) -> TrainSpec:
    train_cfg = net_cfg.get("train", {})
    if "rrdb" not in train_cfg:
        raise DpirError("an 'srdiff' network needs `train.rrdb`: the name of its pre-trained 'srdiff_rrdb' "
                        "network (SRDiff trains the RRDB encoder first, then freezes it)")
    model = SRDiffNet(**net_cfg.get("kwargs", {})).to(ctx.device)
    pretrained = ctx.load(train_cfg["rrdb"])
    if not isinstance(pretrained, RRDBNet):
        raise DpirError(f"train.rrdb = {train_cfg['rrdb']!r} is a {type(pretrained).__name__}, "
                        f"not an 'srdiff_rrdb' network")
    load_state_strict(model.rrdb, pretrained.state_dict(), f"network {train_cfg['rrdb']!r} (train.rrdb)")
    model.rrdb.requires_grad_(False)
    schedule = cosine_schedule(model.T, model.cosine_s)

    def loss(batch: Batch, generator: torch.Generator) -> torch.Tensor:
        lq, gt = batch["lq"], batch["gt"]
        _check_scale(batch, model.scale, "the SRDiff model")
        m = model.denoise_fn.multiple
        if gt.shape[-2] % m or gt.shape[-1] % m:
            raise DpirError(f"SRDiff's U-Net needs HR patches whose size is a multiple of {m}; got "
                            f"{tuple(gt.shape[-2:])}: set the network's train.patch to a multiple of {m}")
        model.rrdb.eval()
        with torch.no_grad():
            cond = model.encode(lq)
            r0 = to_residual(gt, model.lr_reference(lq), model.res_rescale)   # the kwarg `reference`
        b = gt.shape[0]
        t = randint(1, model.T + 1, (b,), generator)
        eps = randn(r0.shape, generator, device=r0.device)
        r_t = q_sample(schedule, r0, t, eps)
        eps_hat = model.denoise_fn(r_t, (t - 1).to(r0.device), cond)   # network index = t - 1
        return (eps - eps_hat).abs().mean()

    return TrainSpec(model=model, loss=loss, params=list(model.denoise_fn.parameters()),
                     frozen={"rrdb": model.rrdb})
