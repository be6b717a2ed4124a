"""DiffIR's two training stages as trainers (Xia et al., ICCV 2023, Secs. 3.3-3.4).

``diffir_s1`` (:func:`build_s1`): DiffIRS1 = CPEN_S1 + DIRformer, loss L1(G(lq, CPEN_S1(lq, gt)), gt).

``diffir_s2`` (:func:`build_s2`): DiffIRS2 = CPEN_S2 + IPR denoiser + DIRformer, trained jointly:

- the frozen stage-1 network ``train.teacher`` gives the target IPR z_S1 = CPEN_S1(lq, gt);
- G starts from the teacher's G (official: ``pretrain_network_g`` = the stage-1 file, non-strict load);
- z_T = q(z_T | z_S1) with noise from the step's generator, then the T = 4 reverse steps with gradients
  (:func:`.sampler.joint_pass`), sr = G(lq, z_hat);
- loss = L1(sr, gt) + kd_weight * [ L1(z_hat, z_S1) + kd_kl * KL(softmax(z_S1 / tau) || softmax(z_hat / tau)) ]
  with tau = ``kd_temperature`` = 0.15.

Reading of the official KD loss (``KDLoss`` in ``DiffIR/losses/my_loss.py`` and both ``DiffIRS2Model``s):
``KDLoss(S1, S2)`` returns ``loss_weight * KL_batchmean(log_softmax(S2 / tau), softmax(S1.detach() / tau))``
and ``loss_weight * L1(S2, S1.detach())``, but the training step adds only the L1 term to the loss and
merely logs the KL.  The paper's L_diff is likewise an L1 between the IPRs.  So the defaults are
``kd_weight: 1`` (official ``loss_weight``) and ``kd_kl: false``; ``kd_kl: true`` adds the KL term as well.

Options not implemented (they raise DpirError instead of silently training something else):
``gan: true`` (the GAN fine-tuning of the SR model: VGG perceptual + GAN loss) and ``encoder_steps > 0``
(the official deblurring schedule first trains CPEN_S2 + denoiser alone for 100k steps with the IPR loss;
the official SR config uses 0).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from dpir.checkpoint import load_state_strict
from dpir.errors import DpirError
from dpir.rng import randn
from dpir.train.base import Batch, TrainContext, TrainSpec

from .nets import DiffIRS1, DiffIRS2
from .sampler import joint_pass

KD_TEMPERATURE = 0.15


def kd_losses(z_hat: torch.Tensor, z_s1: torch.Tensor, temperature: float = KD_TEMPERATURE
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Official KDLoss (loss_weight 1): (KL(softmax(z_s1/tau) || softmax(z_hat/tau)) / B, L1(z_hat, z_s1))."""
    z_s1 = z_s1.detach()
    kl = F.kl_div(F.log_softmax(z_hat / temperature, dim=1), F.softmax(z_s1 / temperature, dim=1),
                  reduction="batchmean")
    return kl, F.l1_loss(z_hat, z_s1)


def _check_common(net_cfg: dict[str, Any], ctx: TrainContext, scale: int, trainer: str) -> dict[str, Any]:
    tcfg = dict(net_cfg.get("train", {}))
    if tcfg.get("gan", False):
        raise DpirError(f"{trainer}: `train.gan: true` (DiffIR's GAN fine-tuning stage) is not implemented; "
                        f"set gan: false")
    task_scale = ctx.task.get("scale")
    if task_scale is not None and int(task_scale) != scale:
        raise DpirError(f"{trainer}: the network's kwargs give scale {scale} but task {ctx.task_name!r} has "
                        f"scale {task_scale}; set kwargs.task (sr/deblur) or kwargs.scale to match")
    return tcfg


def build_s1(net_cfg: dict[str, Any], ctx: TrainContext) -> TrainSpec:
    model = DiffIRS1(**net_cfg.get("kwargs", {})).to(ctx.device)
    _check_common(net_cfg, ctx, model.scale, "diffir_s1")

    def loss(batch: Batch, generator: torch.Generator) -> torch.Tensor:
        return F.l1_loss(model(batch["lq"], batch["gt"]), batch["gt"])

    return TrainSpec(model=model, loss=loss)


def build_s2(net_cfg: dict[str, Any], ctx: TrainContext) -> TrainSpec:
    model = DiffIRS2(**net_cfg.get("kwargs", {})).to(ctx.device)
    tcfg = _check_common(net_cfg, ctx, model.scale, "diffir_s2")
    if int(tcfg.get("encoder_steps", 0)) != 0:
        raise DpirError("diffir_s2: `train.encoder_steps` (the official CPEN_S2-only warm-up phase) is not "
                        "implemented; set it to 0 (the official SR value)")
    teacher_name = tcfg.get("teacher")
    if not teacher_name:
        raise DpirError("diffir_s2 needs `train.teacher: <the diffir_s1 network of the networks section>`")
    teacher = ctx.load(teacher_name)
    if not isinstance(teacher, DiffIRS1):
        raise DpirError(f"diffir_s2: train.teacher {teacher_name!r} is a {type(teacher).__name__}, "
                        f"not a diffir_s1 network")
    if teacher.ipr_dim != model.ipr_dim or teacher.scale != model.scale:
        raise DpirError(f"diffir_s2: teacher {teacher_name!r} has IPR width {teacher.ipr_dim} and scale "
                        f"{teacher.scale}, the network {model.ipr_dim} and {model.scale}; use the same kwargs")
    # G of stage 2 starts from stage 1's G (same architecture kwargs are required)
    load_state_strict(model.G, teacher.G.state_dict(), f"the DIRformer G of teacher {teacher_name!r}")
    kd_weight = float(tcfg.get("kd_weight", 1.0))
    kd_kl = bool(tcfg.get("kd_kl", False))
    temperature = float(tcfg.get("kd_temperature", KD_TEMPERATURE))

    def loss(batch: Batch, generator: torch.Generator) -> torch.Tensor:
        lq, gt = batch["lq"], batch["gt"]
        with torch.no_grad():
            z_s1 = teacher.ipr(lq, gt)
        noise = randn(z_s1.shape, generator, device=z_s1.device, dtype=z_s1.dtype)
        sr, z_hat = joint_pass(model, lq, z_s1, noise)
        kl, l1_ipr = kd_losses(z_hat, z_s1, temperature)
        return F.l1_loss(sr, gt) + kd_weight * (l1_ipr + (kl if kd_kl else 0.0))

    return TrainSpec(model=model, loss=loss, frozen={"teacher": teacher})
