"""The IPR diffusion of DiffIR (Xia et al., "DiffIR: Efficient Diffusion Model for Image Restoration",
ICCV 2023, Sec. 3.4 and Fig. 2) on the package's diffusion core.

DiffIR diffuses a compact IR prior representation (IPR) z, a vector of 4 * n_feats = 256 numbers, not an
image.  Facts taken from the paper and the official code (Zj-BinXia/DiffIR, ``ldm/ddpm.py``):

- T = 4 steps; betas "linear in sqrt": beta = linspace(sqrt(0.1), sqrt(0.99), T) ** 2, computed in
  float64 (the official code registers them as float32 buffers).  With T = 4:
  beta = (0.1, 0.29428..., 0.59095..., 0.99), abar_T = 0.0026, so z_T is almost pure noise.  This is
  :func:`dpir.diffusion.sqrt_linear_schedule`, a :class:`dpir.diffusion.Schedule` like every schedule of
  the package.
- x0-parameterisation: the denoiser returns the clean IPR z0_hat directly.
- Each reverse step is the posterior mean of q(z_{t-1} | z_t, z0_hat) (DDPM, Ho et al. 2020, Eq. 7) with
  NO added noise: the official ``p_sample`` draws noise and then returns the mean only.  At the last step
  abar_prev = 1, so the mean is exactly z0_hat.  This is :func:`dpir.diffusion.ancestral` with
  ``variance="mean"``.
- Inference starts from z_T ~ N(0, I) (drawn by the method).  Training (Sec. 3.4, joint optimisation)
  starts from z_T = q_sample(z_S1, T) -- the stage-1 IPR forward-diffused to the last step -- and runs the
  same T reverse steps with gradients (:func:`joint_pass`).

Timesteps are the package's ``t = 1..T``; the official code's 0-based step index is ``t - 1`` (index
T - 1 is the noisiest step), and the denoiser is told (t - 1) / (10 T) (``denoise.max_period =
timesteps * 10``): :func:`ipr_x0_model` converts.  The networks (:mod:`.nets`) only evaluate their parts;
the chain is here.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from dpir.diffusion import Schedule, ancestral, sqrt_linear_schedule
from dpir.diffusion.samplers import X0Model

__all__ = ["Denoiser", "ipr_schedule", "ipr_x0_model", "joint_pass", "q_sample", "reverse_ipr", "sample_ipr"]


def ipr_schedule(T: int = 4, linear_start: float = 0.1, linear_end: float = 0.99) -> Schedule:
    """DiffIR's schedule: betas linear in sqrt from ``linear_start`` to ``linear_end`` (the LDM "linear")."""
    return sqrt_linear_schedule(T, linear_start, linear_end)


def q_sample(z_0: torch.Tensor, t: int, noise: torch.Tensor, sched: Schedule) -> torch.Tensor:
    """Forward diffusion q(z_t | z_0) = N(sqrt(abar_t) z_0, (1 - abar_t) I) (DDPM Eq. 4), ``t`` in 1..T."""
    abar_t = float(sched.abar(t))
    return math.sqrt(abar_t) * z_0 + math.sqrt(1.0 - abar_t) * noise


#: ``denoise(z_t, t, c) -> z0_hat`` with ``t`` a (B,) long tensor of official 0-based step indices
Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def ipr_x0_model(denoise: Denoiser, c: torch.Tensor) -> X0Model:
    """The package's ``x0_model(z_t, t)`` for DiffIR's denoiser conditioned on ``c`` = CPEN_S2(lq): the
    timestep goes in as the official 0-based index t - 1, one per batch element."""

    def x0_model(z_t: torch.Tensor, t: int) -> torch.Tensor:
        return denoise(z_t, torch.full((z_t.shape[0],), t - 1, dtype=torch.long, device=z_t.device), c)

    return x0_model


def reverse_ipr(denoise: Denoiser, z_T: torch.Tensor, c: torch.Tensor, sched: Schedule) -> torch.Tensor:
    """DiffIR's reverse process: T deterministic posterior-mean steps from ``z_T`` (paper Sec. 3.4), i.e.
    :func:`dpir.diffusion.ancestral` with ``variance="mean"`` (no noise, no generator).

    Autograd flows through every step, which is how stage 2 trains the denoiser jointly.  NFE = T.
    """
    return ancestral(ipr_x0_model(denoise, c), sched, z_T, sched.T, None, variance="mean")


def sample_ipr(net, lq: torch.Tensor, z_T: torch.Tensor) -> torch.Tensor:
    """z_0 of the reverse IPR diffusion from ``z_T`` conditioned on c = CPEN_S2(lq) (``net`` a
    :class:`~baselines.diffir.nets.DiffIRS2`): one CPEN_S2 pass, T denoiser passes."""
    return reverse_ipr(net.denoise, z_T, net.encode(lq), net.schedule())


def joint_pass(net, lq: torch.Tensor, z_s1: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint-training pass of stage 2 (paper Sec. 3.4): z_T = q(z_T | z_S1) with the given ``noise``, T
    reverse steps with gradients, sr = G(lq, z_hat).  Returns (sr, z_hat); the official losses are
    L1(sr, gt) and L1(z_hat, z_S1)."""
    sched = net.schedule()
    z_hat = sample_ipr(net, lq, q_sample(z_s1, sched.T, noise, sched))
    return net(lq, z_hat), z_hat
