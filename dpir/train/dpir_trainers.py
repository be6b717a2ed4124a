"""Trainers of DP-IR's two learned parts (Zhussip et al. 2024, Sec. 3.2 and 4.1).

- ``denoiser``: a Gaussian denoiser phi_D(x0 + sigma n, sigma) ~ x0 for sigma ~ U[0, sigma_max] per sample
  (paper: sigma_max = 244.3/255, images in [0, 1]), MSE.  One denoiser serves every task.
- ``fusion``: the fusion net phi_F(phi_IR(y), phi_D(x~_t, sigma_tilde_t), t) ~ x0 with the IR net and the
  denoiser frozen, t ~ U{1..tau} per sample, x_t ~ q(x_t | x0), x~_t = x_t / sqrt(abar_t), MSE.

Both draw all randomness from the generator handed to ``loss`` through :mod:`dpir.rng`.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from dpir.diffusion.estimator import PAPER_SIGMA_MAX, DPIREstimator, linear_schedule_of, range_from_train
from dpir.errors import DpirError
from dpir.isp import srgb_batch
from dpir.nets import build_network
from dpir.rng import rand, randn
from dpir.train.base import Batch, TrainContext, TrainSpec



def _train_cfg(net_cfg: dict[str, Any]) -> dict[str, Any]:
    train = net_cfg.get("train") or {}
    if not isinstance(train, dict):
        raise DpirError(f"network config key 'train' must be a mapping, got {train!r}")
    return train


def _model(net_cfg: dict[str, Any]) -> torch.nn.Module:
    if "arch" not in net_cfg:
        raise DpirError("network config is missing key 'arch' (an architecture name of dpir.nets.ARCHS)")
    return build_network(net_cfg["arch"], **(net_cfg.get("kwargs") or {}))


def _schedule(train: dict[str, Any], owner: str):
    """The linear schedule of ``train.T`` (1000), ``train.beta_start`` (1e-4), ``train.beta_end`` (2e-2)."""
    try:
        return linear_schedule_of(train)[0]
    except (TypeError, ValueError) as e:
        raise DpirError(f"{owner} network config keys train.T/beta_start/beta_end: {e}") from None


def denoiser(net_cfg: dict[str, Any], ctx: TrainContext) -> TrainSpec:
    """Gaussian denoiser training: loss = MSE(phi_D(gt + sigma n, sigma), gt) with, per sample,

    - ``train.sigma_sampling: uniform`` (default, the paper's): sigma ~ U[0, ``train.sigma_max``]
      (244.3/255 by default, which is sigma~_t at t = 250 of the linear T = 1000 schedule);
    - ``train.sigma_sampling: schedule``: t ~ U{1..T} of the linear schedule of ``train.T`` /
      ``beta_start`` / ``beta_end`` and sigma = sigma~_t, i.e. every noise level a T-step chain visits,
      each step weighted equally (up to sigma~_T ~ 157 for T = 1000).  This is the denoiser of the
      well-defined full chain (:mod:`dpir.diffusion.estimator`); at such noise levels a plain residual
      denoiser cannot work (its input is ~157 times the image), so it needs a preconditioned architecture
      (``mirnet_s`` with ``precondition: edm``).

    The checkpoint records the range it saw (``trained_for.sigma``), which DP-IR's sampler checks."""
    train = _train_cfg(net_cfg)
    sampling = train.get("sigma_sampling", "uniform")
    if sampling not in ("uniform", "schedule"):
        raise DpirError(f"network config key 'train.sigma_sampling' must be 'uniform' or 'schedule', got {sampling!r}")
    model = _model(net_cfg).to(ctx.device)
    if sampling == "uniform":
        sigma_max = float(train.get("sigma_max", PAPER_SIGMA_MAX))
        if not sigma_max > 0:
            raise DpirError(f"network config key 'train.sigma_max' must be > 0, got {sigma_max}")
        sigma_table = None
    else:
        if "sigma_max" in train:
            raise DpirError("network config key 'train.sigma_max' is for sigma_sampling: uniform; with 'schedule' "
                            "the range is set by train.T/beta_start/beta_end")
        schedule = _schedule(train, "denoiser")
        sigma_table = torch.tensor([float(schedule.sigma_tilde(t)) for t in range(schedule.T + 1)], dtype=torch.float64)

    def loss(batch: Batch, generator: torch.Generator) -> torch.Tensor:
        gt = batch["gt"]
        B = gt.shape[0]
        if sigma_table is None:
            sigma = sigma_max * rand((B,), generator, device=gt.device, dtype=gt.dtype)
        else:   # t ~ U{1..T}: floor(u * T) + 1, u in [0, 1)
            T = sigma_table.shape[0] - 1
            t = (torch.floor(rand((B,), generator, dtype=torch.float64) * T).long() + 1).clamp_(1, T)
            sigma = sigma_table[t].to(gt.device, gt.dtype)
        n = randn(gt.shape, generator, device=gt.device, dtype=gt.dtype)
        x_noisy = gt + sigma.view(B, *([1] * (gt.dim() - 1))) * n
        return F.mse_loss(model(x_noisy, sigma), gt)

    return TrainSpec(model=model, loss=loss, data="clean", facts={"trained_for": range_from_train(train)})


def fusion(net_cfg: dict[str, Any], ctx: TrainContext) -> TrainSpec:
    """Fusion-net training with frozen ``train.ir`` and ``train.denoiser`` networks (names of the config's
    ``networks`` section): t ~ U{1..tau}, x_t = sqrt(abar_t) gt + sqrt(1 - abar_t) eps,
    loss = MSE(phi_F(phi_IR(lq), phi_D(x_t / sqrt(abar_t), sigma_tilde_t), t), gt).
    The schedule is the linear one with ``train.T`` (1000), ``train.beta_start`` (1e-4), ``train.beta_end``
    (2e-2); it must match the DP-IR method's schedule.

    Burst task (paper Sec. 4.1: the fusion net is trained on the burst network's outputs converted to
    sRGB): x0_IR = ISP(phi_IR(frames), meta) and the target is ISP(linear gt, meta), each burst with its
    own metadata (:func:`dpir.isp.process_linear_to_srgb`).

    ``train.cache_ir: true`` (stored training pairs only; default false): the frozen IR net is run once
    over every whole training observation before training (:func:`dpir.data.store.build_ir_store`) and
    the loss takes ``batch["ir"]``, the crop of that estimate aligned with the gt crop, instead of
    running ``phi_IR(lq)`` every step.  A deliberate change of what the fusion net sees: the crop of
    the whole-image estimate (what restore gives it at test time) rather than the estimate of the lq
    crop, which differs near the crop border; so the switch is part of the training hash."""
    train = _train_cfg(net_cfg)
    for key in ("ir", "denoiser", "tau"):
        if key not in train:
            raise DpirError(f"fusion network config is missing key 'train.{key}'")
    schedule = _schedule(train, "fusion")
    tau = train["tau"]
    if not (isinstance(tau, int) and 1 <= tau <= schedule.T):
        raise DpirError(f"fusion network config key 'train.tau' must be an integer in 1..{schedule.T}, got {tau!r}")
    cache_ir = train.get("cache_ir", False)
    if not isinstance(cache_ir, bool):
        raise DpirError(f"fusion network config key 'train.cache_ir' must be true or false, got {cache_ir!r}")
    ir = ctx.load(train["ir"])
    den = ctx.load(train["denoiser"])
    model = _model(net_cfg).to(ctx.device)
    estimator = DPIREstimator(den, model, schedule)

    from dpir.tasks import task_kind

    burst = task_kind(ctx.task).linear_train_target

    def loss(batch: Batch, generator: torch.Generator) -> torch.Tensor:
        lq, gt = batch["lq"], batch["gt"]
        if burst:  # the burst net works in linear camera RGB; DP-IR fuses in sRGB, where it is scored
            gt = srgb_batch(gt, batch["meta"])
        B = gt.shape[0]
        # t ~ U{1..tau}: floor(u * tau) + 1, u in [0, 1)
        u = rand((B,), generator, dtype=torch.float64)
        t = (torch.floor(u * tau).long() + 1).clamp_(1, tau)
        sqrt_ab, sqrt_1m = estimator.forward_scales(t, gt)
        eps = randn(gt.shape, generator, device=gt.device, dtype=gt.dtype)
        x_t = sqrt_ab * gt + sqrt_1m * eps       # x_t ~ q(x_t | x_0)
        with torch.no_grad():  # frozen parts: no graph through them
            if "ir" in batch:   # train.cache_ir: the crop of the stored whole-image estimate
                x0_ir = batch["ir"].to(gt.dtype)
            else:
                x0_ir = srgb_batch(ir(lq), batch["meta"]) if burst else ir(lq)
        # the estimator the sampler uses (dpir.diffusion.estimator), with the fusion net's graph
        return F.mse_loss(estimator(x0_ir, x_t, t), gt)

    return TrainSpec(model=model, loss=loss, data="pairs", frozen={"ir": ir, "denoiser": den},
                     facts={"trained_for": range_from_train(train)},
                     cache_ir=(train["ir"], ir) if cache_ir else None)

