"""Exact output laws of DP-IR's samplers built from the Gaussian world's oracles (no sampling).

With the exact parts, the x0 estimate of every step is affine in the state (module docstring of
:mod:`dpir.gaussian.oracles`):

    x0_hat(x_t, t) = m + G_ir,t (x0_ir - m) + c_t P_t^{-1} (x_t / sqrt(abar_t) - m),   c_t = abar_t / (1 - abar_t),

and every sampler step of :mod:`dpir.diffusion.samplers` is ``x_prev = k1 x0_hat + k2 x_t + s z`` with
scalars (ancestral: Ho et al. 2020, eq. 6-7 and Alg. 2; DDIM: Song et al. 2021, eq. 12 and 16; the last
step returns x0_hat).  All matrices are functions of P_y = Q diag(p) Q^T, and the start is isotropic
(x_T ~ N(0, I); the one-step jump's x_tau ~ N(a_tau x0_ir, v_tau I), DP-IR Sec. 3.3; the forward-noised
start's N(sqrt(abar_tau) x0_ir, (1 - abar_tau) I)), so in the coordinates xi = Q^T z of each colour
channel the chain is independent scalar Gaussian recursions.  With r = Q^T x0_ir, mu = Q^T m and
w_ir = p / (p + c), w_d = c / (p + c):

    x0_hat = w_ir r + (1 - w_ir - w_d) mu + (w_d / sqrt(abar_t)) xi,
    xi' = g xi + k1 (w_ir r + (1 - w_ir - w_d) mu) + s z,   g = k2 + k1 w_d / sqrt(abar_t),

so the state's law is N(a_r r + a_mu mu, diag(V)) with a_r' = g a_r + k1 w_ir, a_mu' = g a_mu +
k1 (1 - w_ir - w_d), V' = g^2 V + s^2, propagated step by step in float64.  The scalars (k1, k2, s) are
read off the harness's own step functions (:func:`dpir.diffusion.samplers.ancestral_step`,
:func:`~dpir.diffusion.samplers.ddim_step`; they are linear in (x_t, x0_hat, noise), so three probes
give them exactly as the samplers compute them) and the jump's (a_tau, v_tau) from
:func:`~dpir.diffusion.samplers.jump_coefficients`.

Output law given y: mean Q (a_r r + a_mu mu), covariance Q diag(V) Q^T per colour channel; the exact
posterior is N(Q r, Q diag(1/p) Q^T), so the W2 distance between the two is a sum over coordinates.
Over y as well (the marginal law, for the perception-distortion plane): r ~ N(mu, Q^T C_* Q) with
C_* = C - P_y^{-1} = Cov(E[x0|y]), hence Cov(x_hat) = Q (diag(a_r) Q^T C_* Q diag(a_r) + diag(V)) Q^T, and the
distortion E|x0 - x_hat|^2 = MMSE + E|x_hat - E[x0|y]|^2 (the sampler's error is orthogonal to the MMSE
error: it is a function of y and independent noise) = MMSE + sum((a_r - 1 + a_mu)^2 mu^2
+ (a_r - 1)^2 diag(Q^T C_* Q) + V).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from dpir.diffusion.schedule import Schedule
from dpir.gaussian.w2 import w2_gaussian_squared
from dpir.gaussian.world import World, spectral_matrix

MODES = ("full", "jump", "noised_start")


@dataclass(frozen=True)
class Sampler:
    """A DP-IR sampler as :class:`dpir.methods.dpir.DPIR` runs it (``mode`` full | jump |
    noised_start, ``tau`` ignored for full, ``ddim_stride`` None = ancestral)."""

    mode: str = "jump"
    tau: int = 250
    ddim_stride: int | None = None
    variance: str = "beta"
    eta: float = 0.0

    def label(self) -> str:
        chain = "ancestral" if self.ddim_stride is None else f"DDIM/{self.ddim_stride} eta {self.eta:g}"
        start = "full" if self.mode == "full" else f"{self.mode} tau={self.tau}"
        return f"{start}, {chain}, {self.variance}"


def _probe(fn) -> tuple[float, float, float]:
    """(k1, k2, s) of a step ``fn(x_t, x0_hat, noise)`` that is linear in its three tensors."""
    one, zero = torch.ones((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
    return float(fn(zero, one, zero)), float(fn(one, zero, zero)), float(fn(zero, zero, one))


def steps(schedule: Schedule, tau: int, ddim_stride: int | None = None, variance: str = "beta",
          eta: float = 0.0) -> list[tuple[int, float, float, float]]:
    """[(t, k1, k2, s)] of the reverse chain from x_tau: x_prev = k1 x0_hat(x_t, t) + k2 x_t + s z."""
    from dpir.diffusion.samplers import ancestral_step, ddim_step, ddim_timesteps

    out = []
    if ddim_stride is None:
        for t in range(int(tau), 0, -1):
            out.append((t, *_probe(lambda x, x0, z, t=t: ancestral_step(schedule, x, t, x0, z, variance))))
        return out
    ts = ddim_timesteps(tau, ddim_stride)
    for i, t in enumerate(ts):
        tp = ts[i + 1] if i + 1 < len(ts) else 0
        out.append((t, *_probe(lambda x, x0, z, t=t, tp=tp: ddim_step(schedule, x, t, tp, x0, z, eta))))
    return out


def start(schedule: Schedule, sampler: Sampler) -> tuple[int, float, float]:
    """(tau, a, v): x_tau ~ N(a x0_ir, v I) for the sampler's start."""
    from dpir.diffusion.samplers import jump_coefficients

    if sampler.mode == "full":
        return schedule.T, 0.0, 1.0
    if sampler.mode == "jump":
        return int(sampler.tau), *jump_coefficients(schedule, sampler.tau, sampler.variance)
    if sampler.mode == "noised_start":
        return int(sampler.tau), *schedule.forward_moments(sampler.tau)
    raise ValueError(f"mode must be one of {MODES}, got {sampler.mode!r}")


@dataclass(frozen=True)
class Coefficients:
    """Per colour channel and Q-coordinate (arrays (3, d)): output xi ~ N(a_r r + a_mu mu, diag(V))."""

    a_r: np.ndarray
    a_mu: np.ndarray
    V: np.ndarray


def coefficients(world: World, schedule: Schedule, sampler: Sampler) -> Coefficients:
    """Propagate the sampler's law through its steps (module docstring)."""
    tau, a, v = start(schedule, sampler)
    p = world.p
    a_r = np.full_like(p, a)
    a_mu = np.zeros_like(p)
    V = np.full_like(p, v)
    for t, k1, k2, s in steps(schedule, tau, sampler.ddim_stride, sampler.variance, sampler.eta):
        ab = float(schedule.abar(t))
        c = ab / (1.0 - ab)
        w_ir, w_d = p / (p + c), c / (p + c)
        g = k2 + k1 * w_d / math.sqrt(ab)
        a_r = g * a_r + k1 * w_ir
        a_mu = g * a_mu + k1 * (1.0 - w_ir - w_d)
        V = g * g * V + s * s
    return Coefficients(a_r, a_mu, V)


def _coords(world: World, x: torch.Tensor) -> np.ndarray:
    """(3, d) Q-coordinates of one RGB image (3, n, n)."""
    z = world.to_pca(x.double()[None])[0].reshape(3, -1).numpy()
    return np.einsum("kde,kd->ke", world.Q, z)


def _mu(world: World) -> np.ndarray:
    return np.einsum("kde,kd->ke", world.Q, np.repeat(world.mean_pca[:, None], world.d, axis=1))


@dataclass(frozen=True, eq=False)
class ConditionalLaw:
    """The law of a sampler's output given one observation: N(mean, Q diag(V) Q^T) per colour channel."""

    world: World
    mean: torch.Tensor            # (3, n, n) RGB
    V: np.ndarray                 # (3, d)
    posterior_mean: torch.Tensor  # (3, n, n) RGB, E[x0 | y]

    def cov_blocks(self) -> np.ndarray:
        return np.stack([(self.world.Q[k] * self.V[k]) @ self.world.Q[k].T for k in range(3)])

    def cov_dense(self) -> np.ndarray:
        """(3d, 3d) covariance in RGB pixel coordinates (channel-major)."""
        return self.world._rgb_blocks(self.cov_blocks())

    def w2_to_posterior(self) -> float:
        """W2(law, p(x0 | y)): both covariances are diagonal in Q, so
        W2^2 = |mean - E[x0|y]|^2 + sum (sqrt V - sqrt(1/p))^2."""
        dm = float(((self.mean - self.posterior_mean) ** 2).sum())
        return math.sqrt(dm + float(((np.sqrt(self.V) - np.sqrt(1.0 / self.world.p)) ** 2).sum()))


def conditional_law(world: World, schedule: Schedule, sampler: Sampler, y: torch.Tensor) -> ConditionalLaw:
    """The exact output law of ``sampler`` (exact oracle parts, float64, no clipping) for one ``y``
    (3, h, w)."""
    co = coefficients(world, schedule, sampler)
    x0_ir = world.posterior_mean(y.double()[None])[0]
    r, mu = _coords(world, x0_ir), _mu(world)
    xi = co.a_r * r + co.a_mu * mu
    z = np.einsum("kde,ke->kd", world.Q, xi).reshape(3, world.size, world.size)
    mean = world.from_pca(torch.from_numpy(z)[None])[0]
    return ConditionalLaw(world, mean, co.V, x0_ir)


@dataclass(frozen=True)
class MarginalLaw:
    """A sampler's output law over y as well, and its place in the perception-distortion plane.

    ``distortion`` = E|x0 - x_hat|^2 and ``perception`` = W2(law of x_hat, prior) over the whole image;
    divide ``distortion`` (``perception`` squared) by 3 size^2 for per-pixel values."""

    label: str
    mean_pca: np.ndarray          # (3, d)
    cov_pca: np.ndarray           # (3, d, d) colour-channel blocks
    distortion: float
    perception: float


class Marginals:
    """The world's pieces shared by every sampler's marginal law (dense d x d per colour channel)."""

    def __init__(self, world: World):
        self.world = world
        self.C = world.prior_cov_blocks()
        QT = np.transpose(world.Q, (0, 2, 1))
        self.Cstar_q = QT @ self.C @ world.Q - np.stack([np.diag(1.0 / p) for p in world.p])   # Q^T C_* Q
        self.mu = _mu(world)
        self.m = np.repeat(world.mean_pca[:, None], world.d, axis=1)
        self.C_sqrt = np.stack([spectral_matrix(np.sqrt(world.spectra[k])) for k in range(3)])

    def w2_to_prior(self, mean: np.ndarray, cov: np.ndarray) -> float:
        return math.sqrt(sum(w2_gaussian_squared(mean[k], cov[k], self.m[k], self.C[k], sqrt_b=self.C_sqrt[k])
                             for k in range(3)))

    def mmse_point(self) -> MarginalLaw:
        """The MMSE estimator x_hat = E[x0 | y]: D = MMSE, P = W0 = W2(prior, law of E[x0|y])."""
        w = self.world
        cov = np.stack([w.Q[k] @ self.Cstar_q[k] @ w.Q[k].T for k in range(3)])
        return MarginalLaw("MMSE E[x0|y]", self.m, cov, w.mmse(), self.w2_to_prior(self.m, cov))

    def posterior_point(self) -> MarginalLaw:
        """The exact posterior sampler: its marginal is the prior (P = 0) and D = 2 MMSE."""
        return MarginalLaw("posterior sampler", self.m, self.C, 2.0 * self.world.mmse(), 0.0)

    def sampler_point(self, schedule: Schedule, sampler: Sampler) -> MarginalLaw:
        w = self.world
        co = coefficients(w, schedule, sampler)
        mean_xi = (co.a_r + co.a_mu) * self.mu
        mean = np.einsum("kde,ke->kd", w.Q, mean_xi)
        cov = np.stack([w.Q[k] @ (co.a_r[k][:, None] * self.Cstar_q[k] * co.a_r[k][None, :] + np.diag(co.V[k]))
                        @ w.Q[k].T for k in range(3)])
        cov = 0.5 * (cov + np.transpose(cov, (0, 2, 1)))
        diag = np.stack([np.diag(c) for c in self.Cstar_q])
        extra = ((co.a_r - 1.0 + co.a_mu) ** 2 * self.mu ** 2 + (co.a_r - 1.0) ** 2 * diag + co.V).sum()
        return MarginalLaw(sampler.label(), mean, cov, w.mmse() + float(extra), self.w2_to_prior(mean, cov))


__all__ = ["Coefficients", "ConditionalLaw", "MarginalLaw", "Marginals", "Sampler", "coefficients",
           "conditional_law", "start", "steps"]
