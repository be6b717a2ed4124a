"""Noise schedules of discrete-time diffusion (DDPM), in float64.

Index convention (used by every sampler of the package): timesteps are ``t = 1..T``; every array has
length ``T + 1`` and index 0 means "no noise" (``beta_0 = 0``, ``abar_0 = 1``, ``sigma_tilde(0) = 0``).
The forward process is q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) with
``abar_t = prod_{s=1..t} (1 - beta_s)`` (Ho et al. 2020, eq. 4).

DP-IR (Zhussip et al. 2024, Sec. 3) feeds its denoiser x~_t = x_t / sqrt(abar_t) = x_0 + sigma_tilde_t * eps
with ``sigma_tilde_t = sqrt((1 - abar_t) / abar_t)``; :meth:`Schedule.t_for_sigma_tilde` inverts that map.

Note on the paper's "sigma_tilde up to 244.3/255 corresponds to t <= 250": with the linear schedule of
:func:`linear_schedule` and the 1-based convention above, sigma_tilde(250) = 242.999/255 and
sigma_tilde(251) = 244.299/255.  The paper's number is therefore the value at 0-based index 250 (the
convention of the DDPM/guided-diffusion code, whose timestep ``i`` is our ``t = i + 1``).  A denoiser
trained up to 244.3/255 thus covers our t <= 251, which includes the tau = 250 of the paper's 4x SR runs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Schedule:
    """A discrete schedule: ``betas[t]`` and ``alphas_bar[t]`` for ``t = 0..T`` (float64 arrays)."""

    betas: np.ndarray        # (T+1,), betas[0] = 0
    alphas_bar: np.ndarray   # (T+1,), alphas_bar[0] = 1
    name: str = "custom"

    def __post_init__(self):
        betas = np.asarray(self.betas, dtype=np.float64)
        abar = np.asarray(self.alphas_bar, dtype=np.float64)
        if betas.ndim != 1 or betas.shape != abar.shape or len(betas) < 2:
            raise ValueError("betas and alphas_bar must be 1-D arrays of the same length T + 1 >= 2")
        if betas[0] != 0.0 or abar[0] != 1.0:
            raise ValueError("index 0 means t = 0: betas[0] must be 0 and alphas_bar[0] must be 1")
        if not np.all((betas[1:] > 0) & (betas[1:] < 1)):
            raise ValueError("betas[1:] must lie in (0, 1)")
        betas.setflags(write=False)
        abar.setflags(write=False)
        object.__setattr__(self, "betas", betas)
        object.__setattr__(self, "alphas_bar", abar)
        # sigma_tilde is strictly increasing in t (abar strictly decreasing), which makes the inverse map
        # a binary search
        st = np.sqrt((1.0 - abar) / abar)
        st.setflags(write=False)
        object.__setattr__(self, "_sigma_tilde", st)

    @property
    def T(self) -> int:
        return len(self.betas) - 1

    def _check(self, t):
        ta = np.asarray(t)
        if not np.issubdtype(ta.dtype, np.integer) or np.any(ta < 0) or np.any(ta > self.T):
            raise ValueError(f"timestep {t!r} is not an integer in 0..{self.T}")
        return ta

    def beta(self, t):
        """beta_t (``t`` an int or an integer array)."""
        return self.betas[self._check(t)]

    def alpha(self, t):
        """alpha_t = 1 - beta_t."""
        return 1.0 - self.betas[self._check(t)]

    def abar(self, t):
        """abar_t = prod_{s<=t} (1 - beta_s)."""
        return self.alphas_bar[self._check(t)]

    def sigma_tilde(self, t):
        """sigma_tilde_t = sqrt((1 - abar_t) / abar_t): the noise std of x_t / sqrt(abar_t) (DP-IR, Sec. 3)."""
        return self._sigma_tilde[self._check(t)]

    def t_for_sigma_tilde(self, s: float) -> int:
        """The LARGEST t in 0..T with sigma_tilde(t) <= s (0 if s < sigma_tilde(1)).

        Round trip: ``t_for_sigma_tilde(sigma_tilde(t)) == t`` for every t.  Use it to find the last
        timestep a denoiser trained up to noise level ``s`` can serve.
        """
        if not s >= 0:
            raise ValueError(f"noise level must be >= 0, got {s!r}")
        return int(np.searchsorted(self._sigma_tilde, s, side="right")) - 1

    def forward_moments(self, t: int) -> tuple[float, float]:
        """(sqrt(abar_t), 1 - abar_t): x_t ~ N(sqrt(abar_t) x_0, (1 - abar_t) I) under q(x_t | x_0), the
        law of a forward-noised start (SDEdit, CCDF) to compare with the one-step jump's
        (:func:`dpir.diffusion.samplers.jump_coefficients`)."""
        ab = float(self.alphas_bar[int(self._check(t))])
        return math.sqrt(ab), 1.0 - ab

    def posterior_coefficients(self, t: int) -> tuple[float, float, float]:
        """(c1_t, c2_t, beta~_t) of q(x_{t-1} | x_t, x_0) = N(c1_t x_0 + c2_t x_t, beta~_t I).

        Ho et al. 2020, eq. 6-7: c1 = sqrt(abar_{t-1}) beta_t / (1 - abar_t),
        c2 = sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t), beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t.
        At t = 1: c1 = 1, c2 = 0, beta~ = 0 (abar_0 = 1), set exactly rather than through rounding.
        """
        t = int(self._check(t))
        if t < 1:
            raise ValueError("q(x_{t-1} | x_t, x_0) needs t >= 1")
        if t == 1:
            return 1.0, 0.0, 0.0
        b, ab, ab_prev = self.betas[t], self.alphas_bar[t], self.alphas_bar[t - 1]
        c1 = math.sqrt(ab_prev) * b / (1.0 - ab)
        c2 = math.sqrt(1.0 - b) * (1.0 - ab_prev) / (1.0 - ab)
        return float(c1), float(c2), float((1.0 - ab_prev) / (1.0 - ab) * b)


def _from_betas(betas_1toT: np.ndarray, name: str) -> Schedule:
    betas = np.concatenate([[0.0], np.asarray(betas_1toT, dtype=np.float64)])
    return Schedule(betas=betas, alphas_bar=np.cumprod(1.0 - betas), name=name)


def linear_schedule(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 2e-2) -> Schedule:
    """DDPM's linear schedule (Ho et al. 2020, Sec. 4): beta_1 = beta_start ... beta_T = beta_end, evenly
    spaced.  DP-IR uses the defaults (T = 1000, 1e-4 to 2e-2)."""
    if int(T) != T or T < 1:
        raise ValueError(f"T must be a positive integer, got {T!r}")
    if not 0 < beta_start <= beta_end < 1:
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
    return _from_betas(np.linspace(beta_start, beta_end, int(T), dtype=np.float64), f"linear(T={T})")


def cosine_schedule(T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
    """Cosine schedule (Nichol & Dhariwal 2021, eq. 17): f(t) = cos(((t/T + s) / (1 + s)) * pi/2)^2,
    beta_t = min(1 - f(t)/f(t-1), max_beta), abar_t = prod (1 - beta_s) (so the clipping is reflected in
    abar).  SRDiff uses it with T = 100."""
    if int(T) != T or T < 1:
        raise ValueError(f"T must be a positive integer, got {T!r}")
    t = np.arange(int(T) + 1, dtype=np.float64)
    f = np.cos((t / T + s) / (1.0 + s) * math.pi / 2.0) ** 2
    betas = np.minimum(1.0 - f[1:] / f[:-1], max_beta)
    return _from_betas(betas, f"cosine(T={T})")


def sqrt_linear_schedule(T: int = 4, beta_start: float = 0.1, beta_end: float = 0.99) -> Schedule:
    """The latent-diffusion "linear" schedule, linear in sqrt(beta): beta_t = linspace(sqrt(beta_start),
    sqrt(beta_end), T)[t-1] ** 2 (Rombach et al. 2022, ``ldm/modules/diffusionmodules/util.py``).

    DiffIR's IPR diffusion uses it with T = 4, 0.1 .. 0.99 (Xia et al. 2023, official ``ldm/ddpm.py``):
    beta = (0.1, 0.29429, 0.59095, 0.99), abar_T = 0.0026.  The betas are computed with
    ``torch.linspace`` in float64, as the official code computes them (``numpy.linspace`` places the
    points differently in the last bits), and abar with ``torch.cumprod``, so the coefficients are the
    ones the official buffers hold.
    """
    import torch  # the official linspace; schedule arrays stay numpy

    if int(T) != T or T < 1:
        raise ValueError(f"T must be a positive integer, got {T!r}")
    if not 0 < beta_start <= beta_end < 1:
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
    beta = torch.linspace(math.sqrt(beta_start), math.sqrt(beta_end), int(T), dtype=torch.float64) ** 2
    abar = torch.cumprod(1.0 - beta, 0)
    return Schedule(betas=np.concatenate([[0.0], beta.numpy()]), alphas_bar=np.concatenate([[1.0], abar.numpy()]),
                    name=f"sqrt_linear(T={T})")
