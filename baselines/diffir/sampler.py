"""The IPR diffusion of DiffIR (Xia et al., "DiffIR: Efficient Diffusion Model for Image Restoration",
ICCV 2023, Sec. 3.4 and Fig. 2).

DiffIR diffuses a compact IR prior representation (IPR) z, a vector of 4 * n_feats = 256 numbers, not an
image.  Facts taken from the paper and the official code (Zj-BinXia/DiffIR, ``ldm/ddpm.py``):

- T = 4 steps; betas "linear in sqrt": beta = linspace(sqrt(0.1), sqrt(0.99), T) ** 2, computed in
  float64 (the official code registers them as float32 buffers).  With T = 4:
  beta = (0.1, 0.29428..., 0.59095..., 0.99), abar_T = 0.0026, so z_T is almost pure noise.
- x0-parameterisation: the denoiser returns the clean IPR z0_hat directly.
- Each reverse step is the posterior mean of q(z_{t-1} | z_t, z0_hat) (DDPM, Ho et al. 2020, Eq. 7) with
  NO added noise: the official ``p_sample`` draws noise and then returns the mean only.  At the last step
  (index 0) abar_prev = 1, so the mean is exactly z0_hat.
- Inference starts from z_T ~ N(0, I).  Training (Sec. 3.4, joint optimisation) starts from
  z_T = q_sample(z_S1, T) -- the stage-1 IPR forward-diffused to the last step -- and runs the same T
  reverse steps with gradients.

Step indices are 0-based as in the official code: index t = T - 1 is the noisiest step and the denoiser
is told t / (10 T) (``denoise.max_period = timesteps * 10``).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class IPRSchedule:
    """float64 schedule tensors of length T, indexed by the 0-based step t."""

    beta: torch.Tensor
    alpha: torch.Tensor
    abar: torch.Tensor
    abar_prev: torch.Tensor
    #: posterior mean = coef_z0[t] * z0_hat + coef_zt[t] * z_t  (official posterior_mean_coef1/2)
    coef_z0: torch.Tensor
    coef_zt: torch.Tensor
    posterior_variance: torch.Tensor

    @property
    def T(self) -> int:
        return int(self.beta.numel())


def ipr_schedule(T: int = 4, linear_start: float = 0.1, linear_end: float = 0.99) -> IPRSchedule:
    """DiffIR's schedule: betas linear in sqrt from ``linear_start`` to ``linear_end`` (the LDM "linear")."""
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    beta = torch.linspace(math.sqrt(linear_start), math.sqrt(linear_end), T, dtype=torch.float64) ** 2
    alpha = 1.0 - beta
    abar = torch.cumprod(alpha, 0)
    abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
    return IPRSchedule(
        beta=beta, alpha=alpha, abar=abar, abar_prev=abar_prev,
        coef_z0=beta * abar_prev.sqrt() / (1.0 - abar),
        coef_zt=(1.0 - abar_prev) * alpha.sqrt() / (1.0 - abar),
        posterior_variance=beta * (1.0 - abar_prev) / (1.0 - abar),
    )


def q_sample(z_0: torch.Tensor, t: int, noise: torch.Tensor, sched: IPRSchedule) -> torch.Tensor:
    """Forward diffusion q(z_t | z_0) = N(sqrt(abar_t) z_0, (1 - abar_t) I) (DDPM Eq. 4)."""
    abar_t = float(sched.abar[t])
    return math.sqrt(abar_t) * z_0 + math.sqrt(1.0 - abar_t) * noise


def posterior_mean(z0_hat: torch.Tensor, z_t: torch.Tensor, t: int, sched: IPRSchedule) -> torch.Tensor:
    """Mean of q(z_{t-1} | z_t, z_0 = z0_hat) (DDPM Eq. 7)."""
    return float(sched.coef_z0[t]) * z0_hat + float(sched.coef_zt[t]) * z_t


#: ``denoise(z_t, t, c) -> z0_hat`` with ``t`` a (B,) long tensor of step indices
Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def reverse_ipr(denoise: Denoiser, z_T: torch.Tensor, c: torch.Tensor,
                sched: IPRSchedule) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """DiffIR's reverse process: T deterministic posterior-mean steps from ``z_T`` (paper Sec. 3.4).

    Returns the final IPR and the list of the T intermediate results (the last one is the final IPR);
    autograd flows through every step, which is how stage 2 trains the denoiser jointly.
    """
    z_t = z_T
    steps = []
    for t in reversed(range(sched.T)):
        t_batch = torch.full((z_t.shape[0],), t, dtype=torch.long, device=z_t.device)
        z0_hat = denoise(z_t, t_batch, c)
        z_t = posterior_mean(z0_hat, z_t, t, sched)
        steps.append(z_t)
    return z_t, steps
