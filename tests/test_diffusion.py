"""Schedules and samplers of dpir.diffusion: exact numbers, a Gaussian oracle, the one-step jump, NFE,
determinism."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dpir.diffusion import (
    ancestral,
    ancestral_step,
    cosine_schedule,
    ddim,
    ddim_step,
    dpir_sample,
    eps_to_x0,
    forward_noise,
    full_chain,
    jump_coefficients,
    linear_schedule,
    one_step_jump,
    q_posterior,
    sqrt_linear_schedule,
    x0_from_eps,
)
from dpir.diffusion.samplers import data_consistent, noised_start_sample

SCHED = linear_schedule()



def gen(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


# --------------------------------------------------------------------------------------------------
# schedules
# --------------------------------------------------------------------------------------------------

def test_linear_schedule_matches_independent_float64_product():
    # beta_t written out from the definition (Ho et al.: linear from 1e-4 at t=1 to 2e-2 at t=T)
    def beta(t):
        return 1e-4 + (t - 1) * (2e-2 - 1e-4) / 999

    for t in (1, 2, 10, 250, 500, 1000):
        expected = math.prod(1.0 - beta(s) for s in range(1, t + 1))
        assert float(SCHED.abar(t)) == pytest.approx(expected, rel=1e-12)
    assert SCHED.T == 1000 and len(SCHED.betas) == 1001
    assert SCHED.beta(0) == 0.0 and SCHED.abar(0) == 1.0 and SCHED.sigma_tilde(0) == 0.0
    assert SCHED.beta(1) == 1e-4 and SCHED.beta(1000) == pytest.approx(2e-2, abs=1e-18)
    assert float(SCHED.abar(1)) == pytest.approx(0.9999, abs=1e-16)
    # golden: the well-known abar_T of DDPM's schedule
    assert float(SCHED.abar(1000)) == pytest.approx(4.035829765e-5, rel=1e-8)
    assert float(SCHED.abar(250)) == pytest.approx(0.5240853738, rel=1e-9)
    assert np.all(np.diff(SCHED.alphas_bar) < 0)


def test_paper_sigma_range_maps_to_t_250_with_0_based_index():
    """The paper: sigma_tilde in [0, 244.3]/255 <-> t in [0, 250].  Our 1-based t = 250 gives 243.0/255;
    244.3/255 is reached at t = 251, i.e. at 0-based index 250 (the DDPM code convention)."""
    assert float(SCHED.sigma_tilde(250)) * 255 == pytest.approx(243.0, abs=0.05)      # 242.9986
    assert float(SCHED.sigma_tilde(251)) * 255 == pytest.approx(244.3, abs=0.005)     # 244.2986
    assert SCHED.t_for_sigma_tilde(244.3 / 255) == 251
    assert SCHED.t_for_sigma_tilde(243.0 / 255) == 250
    st = float(SCHED.sigma_tilde(10))
    assert st == pytest.approx(math.sqrt((1 - float(SCHED.abar(10))) / float(SCHED.abar(10))), rel=1e-15)


def test_sigma_tilde_round_trip_and_largest_t_rule():
    for t in range(1001):
        assert SCHED.t_for_sigma_tilde(float(SCHED.sigma_tilde(t))) == t
    mid = 0.5 * (float(SCHED.sigma_tilde(10)) + float(SCHED.sigma_tilde(11)))
    assert SCHED.t_for_sigma_tilde(mid) == 10                       # largest t with sigma_tilde(t) <= s
    assert SCHED.t_for_sigma_tilde(0.5 * float(SCHED.sigma_tilde(1))) == 0
    assert SCHED.t_for_sigma_tilde(1e9) == 1000
    with pytest.raises(ValueError):
        SCHED.t_for_sigma_tilde(-0.1)


def test_schedule_rejects_bad_timesteps_and_arguments():
    for bad in (-1, 1001, 2.0):
        with pytest.raises(ValueError, match="timestep"):
            SCHED.abar(bad)
    with pytest.raises(ValueError, match="beta_start"):
        linear_schedule(10, 0.5, 0.1)
    with pytest.raises(ValueError, match="positive integer"):
        linear_schedule(0)
    with pytest.raises(ValueError):
        SCHED.betas[3] = 0.5  # read-only arrays: a schedule is immutable


def test_cosine_schedule_nichol_dhariwal():
    T, s = 100, 0.008
    sch = cosine_schedule(T, s=s, max_beta=0.999)

    def f(t):
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    # without clipping abar_t = f(t)/f(0) exactly; clipping only touches the last beta (t = T)
    for t in (1, 10, 50, 99):
        assert float(sch.abar(t)) == pytest.approx(f(t) / f(0), rel=1e-12)
    assert float(sch.beta(T)) == 0.999
    assert float(sch.beta(1)) == pytest.approx(1 - f(1) / f(0), rel=1e-12)
    assert float(sch.abar(T)) == pytest.approx(f(99) / f(0) * 0.001, rel=1e-12)


def test_sqrt_linear_schedule_ldm():
    sch = sqrt_linear_schedule(4, 0.1, 0.99)   # DiffIR's IPR schedule
    assert sch.T == 4 and float(sch.beta(1)) == pytest.approx(0.1, abs=1e-15)
    assert float(sch.beta(4)) == pytest.approx(0.99, abs=1e-15)
    b = [(math.sqrt(0.1) + k * (math.sqrt(0.99) - math.sqrt(0.1)) / 3) ** 2 for k in range(4)]
    assert sch.betas[1:].tolist() == pytest.approx(b, rel=1e-14)
    assert sch.alphas_bar[1:].tolist() == pytest.approx(np.cumprod(1 - np.array(b)).tolist(), rel=1e-14)
    with pytest.raises(ValueError, match="beta_start"):
        sqrt_linear_schedule(4, 0.5, 0.1)


def test_q_posterior_coefficients():
    x0, x_t = torch.tensor([0.3], dtype=torch.float64), torch.tensor([-1.2], dtype=torch.float64)
    for t in (2, 37, 1000):
        ab, ab_prev, b = float(SCHED.abar(t)), float(SCHED.abar(t - 1)), float(SCHED.beta(t))
        mean, var = q_posterior(SCHED, x0, x_t, t)
        exp_mean = math.sqrt(ab_prev) * b / (1 - ab) * 0.3 + math.sqrt(1 - b) * (1 - ab_prev) / (1 - ab) * -1.2
        assert float(mean) == pytest.approx(exp_mean, rel=1e-13)
        assert var == pytest.approx((1 - ab_prev) / (1 - ab) * b, rel=1e-13)
    mean, var = q_posterior(SCHED, x0, x_t, 1)
    assert mean is x0 and var == 0.0


# --------------------------------------------------------------------------------------------------
# Gaussian oracle
# --------------------------------------------------------------------------------------------------

D = 3
N_SAMPLES = 20000
Z = 5.0  # standard errors allowed


class Oracle:
    """x0 ~ N(m, C) in R^3, y = A x0 + n, n ~ N(0, s^2 I).  Everything is jointly Gaussian, so
    p(x0 | y) = N(mu, S) and, because x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps given y is a Gaussian
    observation of x0, E[x0 | y, x_t] = mu + K_t (x_t - sqrt(abar_t) mu) with
    K_t = sqrt(abar_t) S (abar_t S + (1 - abar_t) I)^-1.  Image-like scale: posterior stds 0.06-0.21."""

    def __init__(self, schedule):
        rng = np.random.default_rng(0)
        m = np.array([0.5, 0.3, 0.7])
        Q = np.linalg.qr(rng.normal(size=(D, D)))[0]
        C = Q @ np.diag([0.09, 0.03, 0.005]) @ Q.T
        A = np.array([[1.0, 0.5, 0.0], [0.0, 1.0, -0.5]])
        y = np.array([0.6, 0.2])
        G = C @ A.T @ np.linalg.inv(A @ C @ A.T + 0.01 * np.eye(2))
        self.mu = m + G @ (y - A @ m)
        self.S = C - G @ A @ C
        ab = schedule.alphas_bar
        self.ab = ab
        self.schedule = schedule
        self.K = np.stack([np.sqrt(a) * self.S @ np.linalg.inv(a * self.S + (1 - a) * np.eye(D)) for a in ab])
        self.K_t = torch.from_numpy(self.K)
        self.mu_t = torch.from_numpy(self.mu)
        self.calls = 0

    def __call__(self, x_t, t):  # the exact E[x0 | y, x_t]
        self.calls += 1
        return self.mu_t + (x_t - math.sqrt(self.ab[t]) * self.mu_t) @ self.K_t[t].T

    # Independent float64 propagation of the law of the sampler's state (it is affine-Gaussian because the
    # oracle is affine in x_t): returns the exact mean and covariance of the sampler's output.
    def propagate(self, mean, cov, timesteps, kind, eta=0.0):
        ab, I = self.ab, np.eye(D)
        b = self.schedule.betas
        for i, t in enumerate(timesteps):
            tp = timesteps[i + 1] if i + 1 < len(timesteps) else 0
            K = self.K[t]
            if tp == 0:
                L, a0, var = K, 1.0, 0.0
                off = (I - np.sqrt(ab[t]) * K) @ self.mu
                mean, cov = L @ mean + off, L @ cov @ L.T
                continue
            if kind in ("beta", "posterior"):
                c1 = np.sqrt(ab[t - 1]) * b[t] / (1 - ab[t])
                c2 = np.sqrt(1 - b[t]) * (1 - ab[t - 1]) / (1 - ab[t])
                var = b[t] if kind == "beta" else (1 - ab[t - 1]) / (1 - ab[t]) * b[t]
                a0, ce = c1, c2
            else:  # DDIM: x' = sqrt(ab') x0h + ce (x - sqrt(ab) x0h) + sigma z
                var = eta**2 * (1 - ab[tp]) / (1 - ab[t]) * (1 - ab[t] / ab[tp])
                ce = np.sqrt(1 - ab[tp] - var) / np.sqrt(1 - ab[t])
                a0 = np.sqrt(ab[tp]) - ce * np.sqrt(ab[t])
            L = a0 * K + ce * I
            off = a0 * (I - np.sqrt(ab[t]) * K) @ self.mu
            mean, cov = L @ mean + off, L @ cov @ L.T + var * I
        return mean, cov


@pytest.fixture(scope="module")
def oracle():
    return Oracle(SCHED)


def check_moments(x, true_mean, true_cov, alg_mean, alg_cov):
    """Empirical moments of ``x`` (n, D) against the TRUE posterior (true_mean, true_cov).

    Tolerance = Z standard errors + discretisation bias.  Standard errors (Gaussian samples, n draws):
    mean_i: sqrt(S_ii / n); covariance_ij: sqrt((S_ii S_jj + S_ij^2) / n) (variance of the sample
    covariance of a Gaussian).  S is the sampler's exact output covariance (``alg_cov``) and the bias is
    |alg - true|, both from the float64 propagation of the sampler's law.
    """
    x = x.numpy()
    n = len(x)
    emp_mean = x.mean(0)
    emp_cov = np.cov(x, rowvar=False)
    s = np.diag(alg_cov)
    se_mean = np.sqrt(s / n)
    se_cov = np.sqrt((np.outer(s, s) + alg_cov**2) / n)
    assert np.all(np.abs(emp_mean - true_mean) <= Z * se_mean + np.abs(alg_mean - true_mean)), (emp_mean, true_mean)
    assert np.all(np.abs(emp_cov - true_cov) <= Z * se_cov + np.abs(alg_cov - true_cov)), (emp_cov, true_cov)
    # and against the sampler's own exact law, with no bias allowance
    assert np.all(np.abs(emp_mean - alg_mean) <= Z * se_mean)
    assert np.all(np.abs(emp_cov - alg_cov) <= Z * se_cov)


@pytest.mark.parametrize("variance,max_bias", [("beta", 5e-4), ("posterior", 2e-3)])
def test_oracle_full_chain_samples_the_posterior(oracle, variance, max_bias):
    """Full T = 1000 chain with the exact E[x0|y,x_t]: samples follow p(x0|y) up to the discretisation bias
    (exact, from the propagation), which must itself be small: beta_t -> 3.7e-4, beta~_t -> 1.5e-3 in the
    covariance (posterior variances 0.004-0.043), mean bias < 1e-6.  Neither variance is exact at finite T
    (Analytic-DPM: the exact step variance is beta~_t + c1_t^2 Cov(x0|x_t,y)); beta_t is closer here."""
    alg_mean, alg_cov = oracle.propagate(np.zeros(D), np.eye(D), list(range(1000, 0, -1)), variance)
    assert np.abs(alg_mean - oracle.mu).max() < 1e-5
    assert np.abs(alg_cov - oracle.S).max() < max_bias
    oracle.calls = 0
    x = full_chain(oracle, SCHED, (N_SAMPLES, D), gen(1), variance=variance, dtype=torch.float64)
    assert oracle.calls == 1000
    check_moments(x, oracle.mu, oracle.S, alg_mean, alg_cov)


def test_oracle_jump_then_ancestral(oracle):
    """DP-IR's sampler with x0_ir = E[x0|y] (exact) and tau = 250: the jump replaces the first 750 steps
    by their law with x0_hat fixed; in this oracle the output covariance bias stays 2.8e-4."""
    tau = 250
    a, v = jump_coefficients(SCHED, tau, "beta")
    alg_mean, alg_cov = oracle.propagate(a * oracle.mu, v * np.eye(D), list(range(tau, 0, -1)), "beta")
    assert np.abs(alg_cov - oracle.S).max() < 5e-4
    x0_ir = oracle.mu_t.expand(N_SAMPLES, D).contiguous()
    x = dpir_sample(oracle, SCHED, x0_ir, tau, gen(2))
    check_moments(x, oracle.mu, oracle.S, alg_mean, alg_cov)


def test_oracle_jump_then_ddim_stride5(oracle):
    """The paper's SR setting (tau = 250, DDIM stride 5, eta = 0).  Deterministic DDIM after a random start:
    the output law is the push-forward of N(a mu, v I), affine here; exact law from the propagation
    (covariance bias 4.6e-3 to p(x0|y) at 50 steps)."""
    tau = 250
    a, v = jump_coefficients(SCHED, tau, "beta")
    alg_mean, alg_cov = oracle.propagate(a * oracle.mu, v * np.eye(D), list(range(tau, 0, -5)), "ddim", eta=0.0)
    assert np.abs(alg_mean - oracle.mu).max() < 1e-4 and np.abs(alg_cov - oracle.S).max() < 1e-2
    x = dpir_sample(oracle, SCHED, oracle.mu_t.expand(N_SAMPLES, D).contiguous(), tau, gen(3), ddim_stride=5)
    check_moments(x, oracle.mu, oracle.S, alg_mean, alg_cov)


def test_oracle_ddim_eta0_full_converges(oracle):
    """DDIM eta = 0 over all 1000 steps from x_T ~ N(0, I) (probability-flow discretisation): the output
    law approaches p(x0|y) (bias 6e-4, from the N(0, I) vs q(x_T|y) start, not removed by a deterministic
    map).  Provable and checked: exact affine law (propagation) and samples agree."""
    alg_mean, alg_cov = oracle.propagate(np.zeros(D), np.eye(D), list(range(1000, 0, -1)), "ddim", eta=0.0)
    assert np.abs(alg_mean - oracle.mu).max() < 1e-3 and np.abs(alg_cov - oracle.S).max() < 1e-3
    x_T = torch.randn((N_SAMPLES, D), generator=gen(4), dtype=torch.float64)
    x = ddim(oracle, SCHED, x_T, list(range(1000, 0, -1)), None, eta=0.0)
    check_moments(x, oracle.mu, oracle.S, alg_mean, alg_cov)


def test_ddim_eta1_stride1_is_ddpm_with_posterior_variance(oracle):
    """Song et al. 2021: eta = 1 with unit stride is the DDPM sampler with sigma_t^2 = beta~_t.  Same noise
    stream (noise drawn at every step but the last) -> the same samples."""
    x_T = torch.randn((64, D), generator=gen(5), dtype=torch.float64)
    a = ddim(oracle, SCHED, x_T, list(range(1000, 0, -1)), gen(6), eta=1.0)
    b = ancestral(oracle, SCHED, x_T, 1000, gen(6), variance="posterior")
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
    c = ancestral(oracle, SCHED, x_T, 1000, gen(6), variance="beta")
    assert (a - c).abs().max() > 1e-3  # the default variance is a different sampler


@pytest.mark.parametrize("t,t_prev,eta", [(1000, 995, 0.0), (250, 245, 1.0), (37, 12, 0.5), (2, 1, 1.0)])
def test_ddim_step_preserves_forward_marginals(t, t_prev, eta):
    """Song et al. 2021, eq. 7: with x_t = sqrt(abar_t) x0 + sqrt(1-abar_t) e and x0_hat = x0, the DDIM step
    gives sqrt(abar') x0 + alpha_e e + alpha_z z with alpha_e^2 + alpha_z^2 = 1 - abar' for every eta."""
    ab, ab_p = float(SCHED.abar(t)), float(SCHED.abar(t_prev))
    x0 = torch.tensor([0.0], dtype=torch.float64)
    one = torch.tensor([1.0], dtype=torch.float64)
    alpha_e = float(ddim_step(SCHED, math.sqrt(1 - ab) * one, t, t_prev, x0, 0 * one, eta))
    alpha_z = float(ddim_step(SCHED, 0 * one, t, t_prev, x0, one, eta)) if eta > 0 else 0.0
    assert alpha_e**2 + alpha_z**2 == pytest.approx(1 - ab_p, rel=1e-12)
    x0 = torch.tensor([0.7], dtype=torch.float64)
    assert float(ddim_step(SCHED, math.sqrt(ab) * x0, t, t_prev, x0, 0 * one, eta)) == pytest.approx(
        math.sqrt(ab_p) * 0.7, rel=1e-12)


# --------------------------------------------------------------------------------------------------
# the one-step jump
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("variance", ["beta", "posterior"])
def test_jump_coefficients_equal_composition(variance):
    """Closed form against an independent composition of the Gaussian steps (float64 numpy)."""
    ab, b = SCHED.alphas_bar, SCHED.betas
    for tau in (1, 5, 250, 999, 1000):
        mean_coef, var = 0.0, 1.0
        for t in range(1000, tau, -1):
            c1 = np.sqrt(ab[t - 1]) * b[t] / (1 - ab[t])
            c2 = np.sqrt(1 - b[t]) * (1 - ab[t - 1]) / (1 - ab[t])
            s2 = b[t] if variance == "beta" else (1 - ab[t - 1]) / (1 - ab[t]) * b[t]
            mean_coef, var = c1 + c2 * mean_coef, c2**2 * var + s2
        a, v = jump_coefficients(SCHED, tau, variance)
        assert a == pytest.approx(mean_coef, rel=1e-12, abs=1e-15) and v == pytest.approx(var, rel=1e-12)
    assert jump_coefficients(SCHED, 1000, variance) == (0.0, 1.0)


def test_jump_with_posterior_variance_is_forward_marginal_up_to_start():
    """With beta~_t: a = sqrt(abar_tau) - P sqrt(abar_T), v = 1 - abar_tau + P^2 abar_T, P = prod c2_t."""
    for tau in (1, 5, 250, 600):
        P = math.prod(SCHED.posterior_coefficients(t)[1] for t in range(1000, tau, -1))
        a, v = jump_coefficients(SCHED, tau, "posterior")
        abT = float(SCHED.abar(1000))
        assert a == pytest.approx(math.sqrt(float(SCHED.abar(tau))) - P * math.sqrt(abT), rel=1e-11)
        assert v == pytest.approx(1 - float(SCHED.abar(tau)) + P * P * abT, rel=1e-11)
    a_b, v_b = jump_coefficients(SCHED, 250, "beta")
    assert a_b == jump_coefficients(SCHED, 250, "posterior")[0]   # the mean does not depend on the variance
    assert v_b == pytest.approx(0.4775057, rel=1e-6)               # vs 1 - abar_250 = 0.4759146


@pytest.mark.parametrize("variance", ["beta", "posterior"])
def test_jump_matches_step_by_step_empirically(variance):
    """x_T ~ N(0,I) and 995 ancestral steps with x0_hat fixed vs one jump to tau = 5.  The two variance
    choices differ by 19% here (8.3e-4 vs 7.0e-4), far beyond 5 standard errors (5 sqrt(2/n) = 7%)."""
    tau, n = 5, 10000
    x0_ir = torch.tensor([0.2, 0.9], dtype=torch.float64).expand(n, 2).contiguous()
    g = gen(7)
    x = torch.randn((n, 2), generator=g, dtype=torch.float64)
    for t in range(1000, tau, -1):
        x = ancestral_step(SCHED, x, t, x0_ir, torch.randn((n, 2), generator=g, dtype=torch.float64), variance)
    xj = one_step_jump(SCHED, x0_ir, tau, gen(8), variance)
    a, v = jump_coefficients(SCHED, tau, variance)
    for sample in (x, xj):
        r = sample - a * x0_ir
        assert r.mean(0).abs().max() <= Z * math.sqrt(v / n)
        assert (r.var(0) / v - 1).abs().max() <= Z * math.sqrt(2 / n)


def test_forward_noise_law():
    n = 40000
    x0 = torch.full((n, 1), 0.4, dtype=torch.float64)
    x = forward_noise(SCHED, x0, 300, gen(9))
    ab = float(SCHED.abar(300))
    assert abs(float(x.mean()) - math.sqrt(ab) * 0.4) <= Z * math.sqrt((1 - ab) / n)
    assert abs(float(x.var()) / (1 - ab) - 1) <= Z * math.sqrt(2 / n)


# --------------------------------------------------------------------------------------------------
# the jump vs a forward-noised start of the same model (DP-IR's ``mode: noised_start``)
# --------------------------------------------------------------------------------------------------

# relative excess of the jump's variance over 1 - abar_tau with sigma_t^2 = beta_t: the only part of its
# x_tau law that a forward-noised start does not share (float64 recursion, linear schedule T = 1000)
BETA_VARIANCE_EXCESS = {5: 0.18982391563872625, 10: 0.10524949505627412, 25: 0.04687407628643858,
                        50: 0.024297214060558625}


@pytest.mark.parametrize("tau", [5, 10, 25, 50])
def test_jump_law_equals_forward_noised_start_in_closed_form(tau):
    """The jump's x_tau ~ N(a x0_ir, v I) against q(x_tau | x0_ir) = N(sqrt(abar_tau) x0_ir, (1 - abar_tau) I):
    the mean coefficients agree to 1.3e-6 relative (-P sqrt(abar_T), P = prod c2_t) for either variance;
    with beta~_t the variances agree to 1e-9, with beta_t they differ by the excess the T - tau steps
    add (19% at tau = 5, 2.4% at tau = 50).  So at the paper's tau (<= 250) the jump IS a forward-noised
    start up to ~1e-6 in law with the posterior variance: a Table 8 row that only changes the start of
    the same conditional model cannot differ from the jump."""
    m, s2 = SCHED.forward_moments(tau)
    assert (m, s2) == (math.sqrt(float(SCHED.abar(tau))), 1.0 - float(SCHED.abar(tau)))
    for variance in ("beta", "posterior"):
        a, v = jump_coefficients(SCHED, tau, variance)
        assert abs(a / m - 1) < 1.3e-6
        if variance == "posterior":
            assert abs(v / s2 - 1) < 1e-9
        else:
            assert v / s2 - 1 == pytest.approx(BETA_VARIANCE_EXCESS[tau], rel=1e-9)


def test_oracle_jump_equals_noised_start_in_law(oracle):
    """Same conditional model (the exact E[x0 | y, x_t] of the oracle), x0_ir = E[x0 | y], tau = 25, beta~_t:
    the exact output laws (propagation) of the jump start and the forward-noised start differ by 1.4e-7
    in the mean (2.9e-7 relative) and 8e-14 in the covariance (posterior variances 0.004-0.043), and
    samples of each match both laws.  With the default beta_t the means are as close and the output
    covariances differ by 2.6e-4 (the start's variance excess, carried through 25 steps)."""
    tau = 25
    a, v = jump_coefficients(SCHED, tau, "posterior")
    m, s2 = SCHED.forward_moments(tau)
    steps = list(range(tau, 0, -1))
    jump_mean, jump_cov = oracle.propagate(a * oracle.mu, v * np.eye(D), steps, "posterior")
    fwd_mean, fwd_cov = oracle.propagate(m * oracle.mu, s2 * np.eye(D), steps, "posterior")
    assert np.abs(jump_mean - fwd_mean).max() < 2e-7 and np.abs(jump_cov - fwd_cov).max() < 1e-12
    a_b, v_b = jump_coefficients(SCHED, tau, "beta")
    beta_cov = oracle.propagate(a_b * oracle.mu, v_b * np.eye(D), steps, "beta")[1]
    fwd_beta_cov = oracle.propagate(m * oracle.mu, s2 * np.eye(D), steps, "beta")[1]
    assert np.abs(beta_cov - fwd_beta_cov).max() == pytest.approx(2.643189712173404e-4, rel=1e-6)
    x0_ir = oracle.mu_t.expand(N_SAMPLES, D).contiguous()
    oracle.calls = 0
    xj = dpir_sample(oracle, SCHED, x0_ir, tau, gen(11), variance="posterior")
    xf = noised_start_sample(oracle, SCHED, x0_ir, tau, gen(12), variance="posterior")
    assert oracle.calls == 2 * tau                       # NFE tau each: the start calls no model
    for x in (xj, xf):
        check_moments(x, fwd_mean, fwd_cov, jump_mean, jump_cov)


def test_noised_start_sample_is_forward_noise_then_reverse(oracle):
    """One draw for the start, then the chain's draws, from the same generator (ancestral and DDIM)."""
    x0 = oracle.mu_t.expand(64, D).contiguous()
    for stride in (None, 5):
        g = gen(13)
        ref = forward_noise(SCHED, x0, 30, g)
        ref = (ancestral(oracle, SCHED, ref, 30, g) if stride is None
               else ddim(oracle, SCHED, ref, list(range(30, 0, -5)), g))
        assert torch.equal(noised_start_sample(oracle, SCHED, x0, 30, gen(13), ddim_stride=stride), ref)


def test_data_consistent_projects_every_prediction_and_keeps_the_nfe():
    """``data_consistent(model, project)``: every x0 prediction passes through ``project`` before the step
    uses it, and the last step returns the projected estimate; the model is called once per step."""
    projected = []
    x0_model = Counting()

    def project(x0):
        projected.append(x0.clone())
        return 0.5 * x0 + 0.1

    model = data_consistent(x0_model, project)
    x = ancestral(model, SCHED, torch.zeros(2, 3), 4, gen(14))
    assert x0_model.ts == [4, 3, 2, 1] and len(projected) == 4
    torch.testing.assert_close(x, 0.5 * projected[-1] + 0.1, rtol=0, atol=0)


# --------------------------------------------------------------------------------------------------
# NFE, last step, determinism
# --------------------------------------------------------------------------------------------------

class Counting:
    """An elementwise x0-model that records the timesteps it is called with."""

    def __init__(self):
        self.ts, self.last = [], None

    def __call__(self, x_t, t):
        self.ts.append(t)
        self.last = 0.5 * torch.tanh(x_t) + 0.3 + 1e-3 * t
        return self.last


def test_nfe_counts_and_timesteps():
    x0_ir = torch.full((2, 3, 4, 4), 0.5)
    m = Counting()
    full_chain(m, SCHED, (2, 3, 4, 4), gen(0))
    assert m.ts == list(range(1000, 0, -1))
    m = Counting()
    dpir_sample(m, SCHED, x0_ir, 250, gen(0), ddim_stride=5)
    assert len(m.ts) == 50 and m.ts[0] == 250 and m.ts[-1] == 5
    m = Counting()
    dpir_sample(m, SCHED, x0_ir, 5, gen(0))
    assert m.ts == [5, 4, 3, 2, 1]
    m = Counting()
    dpir_sample(m, SCHED, x0_ir, 250, gen(0))
    assert len(m.ts) == 250
    m = Counting()
    dpir_sample(m, SCHED, x0_ir, 7, gen(0), ddim_stride=5)
    assert m.ts == [7, 2]


@pytest.mark.parametrize("stride,eta", [(None, 0.0), (5, 0.0), (5, 1.0)])
def test_last_step_returns_model_estimate_without_noise(stride, eta):
    m = Counting()
    out = dpir_sample(m, SCHED, torch.full((2, 3, 4, 4), 0.5), 25, gen(0), ddim_stride=stride, eta=eta)
    assert torch.equal(out, m.last)


@pytest.mark.parametrize("stride,eta,mode", [(None, 0.0, "jump"), (5, 0.5, "jump"), (None, 0.0, "full")])
def test_determinism_and_batch_independence(stride, eta, mode):
    seeds = [11, 12, 13, 14]
    x0_ir = torch.rand((4, 3, 5, 5), generator=gen(99))

    def run(idx, same_seed_gens=None):
        gens = [gen(seeds[i]) for i in idx]
        if mode == "full":
            return full_chain(Counting(), SCHED, (len(idx), 3, 5, 5), gens)
        return dpir_sample(Counting(), SCHED, x0_ir[idx], 40, gens, ddim_stride=stride, eta=eta)

    batch = run([0, 1, 2, 3])
    assert torch.equal(batch, run([0, 1, 2, 3]))
    for i in range(4):
        assert torch.equal(batch[i:i + 1], run([i]))
    assert not torch.equal(batch[0], batch[1])


def test_sampler_argument_errors():
    x = torch.zeros(1, 3)
    with pytest.raises(ValueError, match="tau"):
        one_step_jump(SCHED, x, 0, gen(0))
    with pytest.raises(ValueError, match="tau"):
        jump_coefficients(SCHED, 1001)
    with pytest.raises(ValueError, match="variance"):
        jump_coefficients(SCHED, 5, "posterio")
    with pytest.raises(ValueError, match="strictly decreasing"):
        ddim(Counting(), SCHED, x, [5, 5, 1])
    with pytest.raises(ValueError, match="stride"):
        dpir_sample(Counting(), SCHED, x, 5, gen(0), ddim_stride=0)
    with pytest.raises(ValueError, match="noise"):
        ancestral_step(SCHED, x, 3, x, None)


def test_eps_adapter_inverts_the_forward_process():
    sch = cosine_schedule(20)
    x0 = torch.rand(2, 3, 4, 4, generator=gen(0)) * 1.6 - 0.8
    calls = []

    def oracle_eps(x_t, t):   # the exact noise of x_t given the known x0
        calls.append(t)
        ab = float(sch.abar(t))
        return (x_t - math.sqrt(ab) * x0) / math.sqrt(1 - ab)

    x_t = forward_noise(sch, x0, 7, gen(1))
    torch.testing.assert_close(x0_from_eps(sch, x_t, 7, oracle_eps(x_t, 7)), x0, rtol=0, atol=1e-5)
    calls.clear()
    out = full_chain(eps_to_x0(oracle_eps, sch, clip=1.0), sch, x0.shape, gen(2), variance="posterior")
    assert calls == list(range(20, 0, -1))   # one eps call per x0 call
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-4)
    clipped = eps_to_x0(lambda x_t, t: torch.zeros_like(x_t), sch, clip=0.5)(torch.full((1, 1), 3.0), 5)
    assert clipped.item() == 0.5


def test_mean_variance_is_the_deterministic_posterior_mean_chain():
    sch = sqrt_linear_schedule(4, 0.1, 0.99)
    target = torch.tensor([[0.5, -1.0, 2.0]])
    z_T = torch.tensor([[1.0, 2.0, 3.0]])
    seen = []

    def x0_model(z_t, t):
        seen.append(t)
        return target + 0 * z_t

    out = ancestral(x0_model, sch, z_T, 4, None, variance="mean")   # no generator needed
    z = z_T
    for t in (4, 3, 2, 1):
        z = q_posterior(sch, target, z, t)[0]
    assert seen == [4, 3, 2, 1] and torch.equal(out, z) and torch.equal(out, target)
    assert ancestral_step(sch, z_T, 3, target, None, "mean").tolist() == q_posterior(sch, target, z_T, 3)[0].tolist()
    _, v = jump_coefficients(sch, 2, "mean")
    assert v == pytest.approx(np.prod([sch.posterior_coefficients(t)[1] ** 2 for t in (4, 3)]), rel=1e-12)
    g = gen(0)
    state = g.get_state()
    ancestral(x0_model, sch, z_T, 4, g, variance="mean")
    assert torch.equal(g.get_state(), state)   # draws nothing
