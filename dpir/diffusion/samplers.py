"""Samplers of discrete-time diffusion as plain functions over an x0-estimator.

Every sampler takes a model callable ``x0_model(x_t, t) -> x0_hat``: the estimate of E[x_0 | x_t] (or of
E[x_0 | y, x_t] with the observation ``y`` bound inside the callable), for an integer timestep ``t`` of a
:class:`~dpir.diffusion.schedule.Schedule`.  NFE = number of ``x0_model`` calls.  All noise comes from
:func:`dpir.rng.randn` with the caller's generator(s), so batch size never changes the numbers.

Conventions shared by all samplers:

- timesteps are 1..T (index 0 is clean data, see :mod:`dpir.diffusion.schedule`);
- the LAST step (t -> 0) returns the model's x0 estimate itself and draws no noise: q(x_0 | x_1, x0_hat)
  has mean x0_hat (c1_1 = 1, c2_1 = 0 because abar_0 = 1) and posterior variance beta~_1 = 0.  This is
  Ho et al.'s "display the mean at the last step", and it equals DDIM's last step for any eta;
- schedule coefficients are float64 Python numbers; the tensors keep the dtype of the input.

Reverse variance (``variance=``): DP-IR states sigma_t^2 = beta_t (Ho et al. 2020, Sec. 3.2), the
default.  ``"posterior"`` uses beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t (SRDiff's choice).
``"mean"`` uses sigma_t = 0: every step is the posterior mean mu~_t(x_t, x0_hat), no noise is drawn and
the generator may be None (DiffIR's IPR chain: the official ``p_sample`` returns the mean only).  Neither gives exact
samples of p(x_0 | y) with the exact conditional mean as x0_model at finite T: the exact reverse
transition of Gaussian data has covariance beta~_t I + c1_t^2 Cov(x_0 | x_t, y) (Bao et al. 2022,
Analytic-DPM), so beta~_t is exact only for a point-mass posterior and beta_t only for
Cov(x_0 | x_t, y) = (1 - abar_t) I (unit-variance white data, Ho et al.'s remark).  On the Gaussian
oracle of ``tests/test_diffusion.py`` (posterior stds 0.06-0.2, image-like) the T = 1000 chain with
beta_t is closer to the posterior than with beta~_t (covariance error 3.7e-4 vs 1.5e-3); both converge as
T grows.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch

from dpir.diffusion.schedule import Schedule
from dpir.rng import Generators, randn

X0Model = Callable[[torch.Tensor, int], torch.Tensor]
EpsModel = Callable[[torch.Tensor, int], torch.Tensor]
Variance = Literal["beta", "posterior", "mean"]


def _noise_like(x: torch.Tensor, generator: Generators) -> torch.Tensor:
    return randn(x.shape, generator, device=x.device, dtype=x.dtype)


def _reverse_var(schedule: Schedule, t: int, variance: Variance) -> float:
    if variance == "beta":
        return float(schedule.beta(t))
    if variance == "posterior":
        return schedule.posterior_coefficients(t)[2]
    if variance == "mean":
        return 0.0
    raise ValueError(f"variance must be 'beta', 'posterior' or 'mean', got {variance!r}")


def _draws_noise(t: int, variance: Variance) -> bool:
    """Whether the reverse step at ``t`` adds noise (never at t = 1, never for ``"mean"``)."""
    return t > 1 and variance != "mean"


def x0_from_eps(schedule: Schedule, x_t: torch.Tensor, t: int, eps: torch.Tensor) -> torch.Tensor:
    """x0_hat = sqrt(1 / abar_t) x_t - sqrt(1 / abar_t - 1) eps: the inverse of q(x_t | x_0) (Ho et al.
    2020, eq. 4) for a noise prediction ``eps`` (the official DDPM/SRDiff ``predict_start_from_noise``)."""
    ab = float(schedule.abar(t))
    return math.sqrt(1.0 / ab) * x_t - math.sqrt(1.0 / ab - 1.0) * eps


def eps_to_x0(eps_model: EpsModel, schedule: Schedule, clip: float | None = None) -> X0Model:
    """The x0-estimator of a noise predictor ``eps_model(x_t, t) -> eps_hat``, for the samplers here:
    ``x0_model(x_t, t) = x0_from_eps(x_t, eps_model(x_t, t))``, clamped to [-clip, clip] when ``clip``
    is given (the official DDPM ``clip_denoised``).  One ``x0_model`` call is one ``eps_model`` call."""

    def x0_model(x_t: torch.Tensor, t: int) -> torch.Tensor:
        x0_hat = x0_from_eps(schedule, x_t, t, eps_model(x_t, t))
        return x0_hat if clip is None else x0_hat.clamp(-clip, clip)

    return x0_model


def q_posterior(schedule: Schedule, x0: torch.Tensor, x_t: torch.Tensor, t: int) -> tuple[torch.Tensor, float]:
    """Mean and variance of q(x_{t-1} | x_t, x_0) = N(c1_t x_0 + c2_t x_t, beta~_t I) (Ho et al. 2020, eq. 6-7)."""
    c1, c2, beta_tilde = schedule.posterior_coefficients(t)
    if t == 1:  # c1 = 1, c2 = 0 exactly: return x0 itself, not x0 * 1.0 + x_t * 0.0 (NaN/inf-safe)
        return x0, 0.0
    return c1 * x0 + c2 * x_t, beta_tilde


def ancestral_step(schedule: Schedule, x_t: torch.Tensor, t: int, x0_hat: torch.Tensor,
                   noise: torch.Tensor | None, variance: Variance = "beta") -> torch.Tensor:
    """One DDPM reverse step x_t -> x_{t-1} = mu~_t(x_t, x0_hat) + sigma_t z (Ho et al. 2020, Alg. 2 with the
    x0-parameterised posterior mean of eq. 7).  sigma_t^2 = beta_t (``"beta"``) or beta~_t
    (``"posterior"``) or 0 (``"mean"``).  At t = 1, and for ``"mean"``, the result is the posterior mean
    (``x0_hat`` at t = 1) and ``noise`` is ignored (may be None)."""
    mean, _ = q_posterior(schedule, x0_hat, x_t, t)
    if not _draws_noise(t, variance):
        return mean
    if noise is None:
        raise ValueError(f"ancestral_step at t={t} needs noise")
    return mean + math.sqrt(_reverse_var(schedule, t, variance)) * noise


def ancestral(x0_model: X0Model, schedule: Schedule, x_t: torch.Tensor, t: int, generator: Generators | None,
              variance: Variance = "beta") -> torch.Tensor:
    """Run ancestral steps t, t-1, ..., 1 from x_t; returns x_0.  NFE = t.  The noise of step s is drawn
    after the model call of step s; ``variance="mean"`` draws none (``generator`` may then be None).
    Autograd flows through the steps (DiffIR trains its denoiser through the whole chain)."""
    for s in range(int(t), 0, -1):
        x0_hat = x0_model(x_t, s)
        noise = _noise_like(x_t, generator) if _draws_noise(s, variance) else None
        x_t = ancestral_step(schedule, x_t, s, x0_hat, noise, variance)
    return x_t


def full_chain(x0_model: X0Model, schedule: Schedule, shape: Sequence[int], generator: Generators,
               device=None, variance: Variance = "beta", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """DDPM sampling (Ho et al. 2020, Alg. 2): x_T ~ N(0, I), then T ancestral steps.  NFE = T."""
    x_T = randn(shape, generator, device=device, dtype=dtype)
    return ancestral(x0_model, schedule, x_T, schedule.T, generator, variance)


def forward_noise(schedule: Schedule, x0: torch.Tensor, t: int, generator: Generators) -> torch.Tensor:
    """A draw of q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) (Ho et al. 2020, eq. 4).  Used for the
    SDEdit / CCDF-style start (Meng et al. 2022; Chung et al. 2022): noise an initial estimate to step t."""
    ab = float(schedule.abar(t))
    return math.sqrt(ab) * x0 + math.sqrt(1.0 - ab) * _noise_like(x0, generator)


def noised_start_sample(x0_model: X0Model, schedule: Schedule, x0_init: torch.Tensor, tau: int,
                        generator: Generators, ddim_stride: int | None = None, variance: Variance = "beta",
                        eta: float = 0.0) -> torch.Tensor:
    """Forward-noise ``x0_init`` to step tau with q(x_tau | x0_init) (:func:`forward_noise`), then the
    reverse chain tau..1 of ``x0_model`` (:func:`reverse_from`).  NFE = tau (ancestral) or
    ceil(tau / ddim_stride).  One noise draw for the start, then the chain's draws, from ``generator``.

    This is SDEdit's sampler (Meng et al. 2022) when ``x0_model`` is an unconditional estimator of
    E[x_0 | x_t]; CCDF (Chung et al. 2022) when it is wrapped by :func:`data_consistent`.  With DP-IR's
    conditional estimator it is the "forward-noised start" whose law of x_tau nearly equals the one-step
    jump's (see :func:`jump_coefficients`): the two differ only in the start, not in the model.
    """
    x_tau = forward_noise(schedule, x0_init, tau, generator)
    return reverse_from(x0_model, schedule, x_tau, tau, generator, ddim_stride, variance, eta)


def data_consistent(x0_model: X0Model, project: Callable[[torch.Tensor], torch.Tensor]) -> X0Model:
    """The x0-estimator ``project(x0_model(x_t, t))``: a data-consistency step applied to every x0
    prediction before the reverse step uses it (CCDF-style, Chung et al. 2022).  ``project`` maps an x0
    estimate to one closer to the observation (e.g. a back-projection x0 + up(y - down(x0)) with ``y``
    bound inside it); it calls no network, so the NFE is ``x0_model``'s."""

    def model(x_t: torch.Tensor, t: int) -> torch.Tensor:
        return project(x0_model(x_t, t))

    return model


def jump_coefficients(schedule: Schedule, tau: int, variance: Variance = "beta") -> tuple[float, float]:
    """(a_tau, v_tau) with x_tau ~ N(a_tau x0_ir, v_tau I) for the chain x_T ~ N(0, I) followed by the
    T - tau ancestral steps t = T, ..., tau + 1 with x0_hat = x0_ir held fixed (DP-IR, Sec. 3.3).

    Derivation.  With x0_hat fixed, each step is linear-Gaussian:
    x_{t-1} = c1_t x0_ir + c2_t x_t + s_t z_t, z_t ~ N(0, I) independent, s_t^2 = beta_t or beta~_t.
    If x_t ~ N(a_t x0_ir, v_t I) then x_{t-1} ~ N((c1_t + c2_t a_t) x0_ir, (c2_t^2 v_t + s_t^2) I), so
    starting from a_T = 0, v_T = 1:

        a_{t-1} = c1_t + c2_t a_t,      v_{t-1} = c2_t^2 v_t + s_t^2,      t = T, ..., tau + 1.

    The mean coefficient does not depend on the variance choice.  In closed form with P = prod_{t>tau} c2_t:
    since q(x_{t-1} | x_t, x0) composed with q(x_t | x0) is q(x_{t-1} | x0), the recursion with s_t^2 = beta~_t
    maps (sqrt(abar_t), 1 - abar_t) to (sqrt(abar_{t-1}), 1 - abar_{t-1}); the start (0, 1) differs from
    (sqrt(abar_T), 1 - abar_T) and the difference is carried linearly, giving

        a_tau = sqrt(abar_tau) - P sqrt(abar_T),   v_tau = (1 - abar_tau) + P^2 abar_T   (posterior variance),

    i.e. q(x_tau | x0_ir) up to O(abar_T) = O(4e-5) terms, not exactly (x_T ~ N(0, I) is not q(x_T | x0)).
    With s_t^2 = beta_t the variance is larger (tau = 250: v = 0.47751 vs 1 - abar_tau = 0.47591).
    The recursion is evaluated in float64.

    Equivalence with a forward-noised start (``mode: noised_start`` of DP-IR, the old "SDEdit/CCDF
    start").  Against q(x_tau | x0_ir) = N(sqrt(abar_tau) x0_ir, (1 - abar_tau) I)
    (:meth:`Schedule.forward_moments`), the linear schedule (T = 1000) gives a_tau / sqrt(abar_tau) - 1 =
    -2.8e-8, -3.4e-7, -1.2e-6 for tau = 5, 25, 50 (either variance) and, with beta~_t, a relative variance
    gap below 1e-10.  So with ``variance: posterior`` the jump and the forward-noised start of the SAME
    conditional model are equal in law to ~1e-6: they cannot be told apart in a table.  With the default
    beta_t the start variance is larger by 19%, 4.7%, 2.4% (tau = 5, 25, 50): the only difference left.
    """
    tau, T = int(tau), schedule.T
    if not 1 <= tau <= T:
        raise ValueError(f"tau must be in 1..{T}, got {tau}")
    a, v = 0.0, 1.0
    for t in range(T, tau, -1):
        c1, c2, _ = schedule.posterior_coefficients(t)
        a = c1 + c2 * a
        v = c2 * c2 * v + _reverse_var(schedule, t, variance)
    return a, v


def one_step_jump(schedule: Schedule, x0_ir: torch.Tensor, tau: int, generator: Generators,
                  variance: Variance = "beta") -> torch.Tensor:
    """DP-IR's accelerated start: a draw of x_tau ~ N(a_tau x0_ir, v_tau I) in one step, equal in law to
    x_T ~ N(0, I) plus T - tau ancestral steps with x0_hat = x0_ir (see :func:`jump_coefficients`).
    No model call."""
    a, v = jump_coefficients(schedule, tau, variance)
    return a * x0_ir + math.sqrt(v) * _noise_like(x0_ir, generator)


def ddim_step(schedule: Schedule, x_t: torch.Tensor, t: int, t_prev: int, x0_hat: torch.Tensor,
              noise: torch.Tensor | None, eta: float = 0.0) -> torch.Tensor:
    """One DDIM step x_t -> x_{t_prev} (Song et al. 2021, eq. 12 with sigma from eq. 16):

        eps_hat = (x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t)
        sigma^2 = eta^2 (1 - abar_prev) / (1 - abar_t) (1 - abar_t / abar_prev)
        x_prev  = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps_hat + sigma z

    For x_t ~ q(x_t | x0) and x0_hat = x0 the result is distributed as q(x_prev | x0) for every eta
    (their eq. 7).  With t_prev = t - 1 and eta = 1 it equals the DDPM step with posterior variance.
    ``t_prev = 0`` returns x0_hat (no noise).
    """
    if not 0 <= t_prev < t:
        raise ValueError(f"DDIM needs 0 <= t_prev < t, got t={t}, t_prev={t_prev}")
    if t_prev == 0:
        return x0_hat
    ab, ab_prev = float(schedule.abar(t)), float(schedule.abar(t_prev))
    sigma2 = eta * eta * (1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev)
    eps_hat = (x_t - math.sqrt(ab) * x0_hat) / math.sqrt(1.0 - ab)
    x_prev = math.sqrt(ab_prev) * x0_hat + math.sqrt(max(1.0 - ab_prev - sigma2, 0.0)) * eps_hat
    if sigma2 > 0.0:
        if noise is None:
            raise ValueError(f"DDIM step {t}->{t_prev} with eta={eta} needs noise")
        x_prev = x_prev + math.sqrt(sigma2) * noise
    return x_prev


def ddim(x0_model: X0Model, schedule: Schedule, x_t: torch.Tensor, timesteps: Sequence[int],
         generator: Generators | None = None, eta: float = 0.0) -> torch.Tensor:
    """DDIM sampling (Song et al. 2021) from x_t at ``timesteps[0]``.

    ``timesteps`` is strictly decreasing, starts at the timestep of ``x_t`` and ends at the last noisy
    step; the final step goes from ``timesteps[-1]`` to 0 and returns x0_hat.  NFE = len(timesteps).
    Example: x_tau with tau = 250 and stride 5 -> timesteps 250, 245, ..., 5 (50 model calls).
    Noise is drawn only when eta > 0 (and never at the final step); eta = 0 needs no generator.
    """
    ts = [int(t) for t in timesteps]
    if not ts or any(b >= a for a, b in itertools.pairwise(ts)) or ts[-1] < 1 or ts[0] > schedule.T:
        raise ValueError(f"timesteps must be strictly decreasing within 1..{schedule.T}, got {ts}")
    if eta > 0 and generator is None:
        raise ValueError("DDIM with eta > 0 needs a generator")
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else 0
        x0_hat = x0_model(x_t, t)
        noise = _noise_like(x_t, generator) if (eta > 0 and t_prev > 0) else None
        x_t = ddim_step(schedule, x_t, t, t_prev, x0_hat, noise, eta)
    return x_t


def ddim_timesteps(t_start: int, stride: int) -> list[int]:
    """t_start, t_start - stride, ..., down to the last value >= 1 (e.g. 250, 245, ..., 5)."""
    if int(stride) != stride or stride < 1:
        raise ValueError(f"DDIM stride must be a positive integer, got {stride!r}")
    return list(range(int(t_start), 0, -int(stride)))


def reverse_from(x0_model: X0Model, schedule: Schedule, x_t: torch.Tensor, t: int, generator: Generators,
                 ddim_stride: int | None = None, variance: Variance = "beta", eta: float = 0.0) -> torch.Tensor:
    """Sample x_0 from x_t: ancestral steps t..1 (``ddim_stride=None``, NFE t) or DDIM with the given
    stride (NFE ceil(t / stride))."""
    if ddim_stride is None:
        return ancestral(x0_model, schedule, x_t, t, generator, variance)
    return ddim(x0_model, schedule, x_t, ddim_timesteps(t, ddim_stride), generator, eta)


def dpir_sample(x0_model: X0Model, schedule: Schedule, x0_ir: torch.Tensor, tau: int, generator: Generators,
                ddim_stride: int | None = None, variance: Variance = "beta", eta: float = 0.0) -> torch.Tensor:
    """DP-IR's accelerated sampler (Zhussip et al. 2024, Sec. 3.3): draw x_tau by :func:`one_step_jump`
    from the IR estimate, then run the reverse chain tau..1 with the fused model (ancestral), or DDIM with
    ``ddim_stride`` over those tau steps (their 4x SR setting: tau = 250, stride 5 -> 50 calls).
    Returns x_0 = the model's x0 estimate at the last step (no noise added).  NFE = tau, or
    ceil(tau / ddim_stride) with DDIM.  The same ``variance`` is used for the jump and the ancestral steps.
    """
    x_tau = one_step_jump(schedule, x0_ir, tau, generator, variance)
    return reverse_from(x0_model, schedule, x_tau, tau, generator, ddim_stride, variance, eta)


__all__ = [
    "EpsModel",
    "X0Model",
    "ancestral",
    "ancestral_step",
    "data_consistent",
    "ddim",
    "ddim_step",
    "ddim_timesteps",
    "dpir_sample",
    "eps_to_x0",
    "forward_noise",
    "full_chain",
    "jump_coefficients",
    "noised_start_sample",
    "one_step_jump",
    "q_posterior",
    "reverse_from",
    "x0_from_eps",
]
