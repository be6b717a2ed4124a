"""SRDiff's diffusion process: cosine schedule, residual parameterisation, ancestral sampler.

Plain functions in the shape of the package's samplers: ``sampler(model, schedule, shape, generator)
-> x`` with a model callable over ``(x_t, t)``.  Timesteps are ``t = 1..T`` and every schedule array has
length ``T + 1`` with index 0 meaning "no noise"; the official code's 0-based timestep index is
``t - 1`` (the method converts when it calls the network).

What SRDiff diffuses (Li et al. 2022, Sec. 3.1): the HR residual
``r_0 = (HR - up(LR)) * res_rescale`` clipped to [-1, 1], in the official code's [-1, 1] image
convention.  With our [0, 1] images that is ``r_0 = 2 * res_rescale * (HR - up(LR))``: the factor 2 is the
[0, 1] -> [-1, 1] change of range, kept so that official weights see the numbers they were trained on
(with res_rescale = 2 a residual of +-0.25 in [0, 1] units fills [-1, 1]).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from dpir.rng import Generators, randn

EpsModel = Callable[[torch.Tensor, int], torch.Tensor]


@dataclass(frozen=True, eq=False)
class Schedule:
    """``betas[t]`` and ``abar[t]`` for ``t = 0..T`` (float64; ``betas[0] = 0``, ``abar[0] = 1``)."""

    betas: np.ndarray
    abar: np.ndarray

    @property
    def T(self) -> int:
        return len(self.betas) - 1

    def posterior(self, t: int) -> tuple[float, float, float]:
        """(c1, c2, beta~) of q(x_{t-1} | x_t, x_0) = N(c1 x_0 + c2 x_t, beta~ I) (Ho et al. 2020, eq. 7)."""
        beta, ab, ab_prev = float(self.betas[t]), float(self.abar[t]), float(self.abar[t - 1])
        c1 = beta * math.sqrt(ab_prev) / (1.0 - ab)
        c2 = (1.0 - ab_prev) * math.sqrt(1.0 - beta) / (1.0 - ab)
        return c1, c2, beta * (1.0 - ab_prev) / (1.0 - ab)


def cosine_schedule(T: int = 100, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
    """The cosine schedule (Nichol & Dhariwal 2021, eq. 17) as SRDiff uses it.

    f(t) = cos^2(((t / T) + s) / (1 + s) * pi / 2), beta_t = min(1 - f(t) / f(t - 1), max_beta), and
    abar_t = prod_{k <= t} (1 - beta_k), i.e. recomputed from the clipped betas (the official code does
    the same), so only the last step is affected by the clip: f(T) = 0 would make beta_T = 1.
    """
    k = np.arange(T + 1, dtype=np.float64)
    f = np.cos((k / T + s) / (1 + s) * np.pi * 0.5) ** 2
    betas = np.clip(1.0 - f[1:] / f[:-1], 0.0, max_beta)
    betas = np.concatenate([[0.0], betas])
    abar = np.cumprod(1.0 - betas)
    return Schedule(betas=betas, abar=abar)


def to_residual(hr: torch.Tensor, up: torch.Tensor, res_rescale: float) -> torch.Tensor:
    """r_0 = 2 * res_rescale * (HR - up), clipped to [-1, 1] (official ``img2res`` in [-1, 1] images)."""
    return ((hr - up) * (2.0 * res_rescale)).clamp(-1.0, 1.0)


def from_residual(r0: torch.Tensor, up: torch.Tensor, res_rescale: float) -> torch.Tensor:
    """HR = up + clip(r_0, -1, 1) / (2 * res_rescale) (official ``res2img``)."""
    return up + r0.clamp(-1.0, 1.0) / (2.0 * res_rescale)


def q_sample(schedule: Schedule, r0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """r_t = sqrt(abar_t) r_0 + sqrt(1 - abar_t) eps for per-sample timesteps ``t`` in 1..T (Ho et al., eq. 4)."""
    ab = torch.as_tensor(schedule.abar, dtype=r0.dtype, device=r0.device)[t.to(r0.device)]
    ab = ab.view(-1, *([1] * (r0.dim() - 1)))
    return ab.sqrt() * r0 + (1.0 - ab).sqrt() * noise


def x0_from_eps(schedule: Schedule, x_t: torch.Tensor, t: int, eps: torch.Tensor) -> torch.Tensor:
    """x0_hat = sqrt(1 / abar_t) x_t - sqrt(1 / abar_t - 1) eps (inverse of eq. 4)."""
    ab = float(schedule.abar[t])
    return math.sqrt(1.0 / ab) * x_t - math.sqrt(1.0 / ab - 1.0) * eps


def ddpm_sample(eps_model: EpsModel, schedule: Schedule, shape: Sequence[int], generator: Generators,
                device=None, clip: float | None = 1.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """SRDiff sampling (Li et al. 2022, Alg. 2; Ho et al. 2020, Alg. 2 with the x0-parameterised mean).

    x_T ~ N(0, I); for t = T..1: x0_hat = x0_from_eps(x_t, eps_model(x_t, t)) clipped to [-clip, clip]
    (the official ``clip_denoised``), x_{t-1} = c1_t x0_hat + c2_t x_t + sqrt(beta~_t) z with the
    posterior variance beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t as in the official code.  The last
    step (t = 1) returns x0_hat itself: c1_1 = 1, c2_1 = 0 and beta~_1 = 0 because abar_0 = 1, and no
    noise is drawn.  NFE = T.
    """
    x = randn(shape, generator, device=device, dtype=dtype)
    for t in range(schedule.T, 0, -1):
        x0_hat = x0_from_eps(schedule, x, t, eps_model(x, t))
        if clip is not None:
            x0_hat = x0_hat.clamp(-clip, clip)
        if t == 1:
            return x0_hat
        c1, c2, var = schedule.posterior(t)
        x = c1 * x0_hat + c2 * x + math.sqrt(var) * randn(x.shape, generator, device=x.device, dtype=x.dtype)
    return x
