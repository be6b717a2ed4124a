"""The linear-Gaussian world (dpir.gaussian): oracles against brute-force dense linear algebra, the
propagated sampler laws against dense propagation and against the harness's real sampler run many
times, Gaussian W2 against closed forms, and the perception-distortion bound's endpoints.

Sizes: 8 x 8 RGB worlds (d = 64 per colour channel, 192 in all), 2000 Monte Carlo draws.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dpir.diffusion.schedule import linear_schedule
from dpir.errors import DpirError
from dpir.gaussian import laws, w2
from dpir.gaussian.oracles import GaussianDenoiser, GaussianFusion, GaussianIR
from dpir.gaussian.world import WorldSpec, cached_world, fitted_prior
from dpir.rng import make_generator

SR = {"size": 8, "task": "sr", "scale": 4, "noise": 0.02}
BLUR = {"size": 8, "task": "blur", "noise": 0.02, "kernel": "gaussian", "kernel_std": 1.0, "kernel_size": 5}
SCHED = linear_schedule()
N_MC = 2000


@pytest.fixture(scope="module", params=["sr", "blur"])
def parts(request):
    kw = SR if request.param == "sr" else BLUR
    ir, den, fus = GaussianIR(**kw), GaussianDenoiser(**kw), GaussianFusion(**kw)
    return kw, ir.world, ir, den, fus


@pytest.fixture(scope="module")
def sr_parts():
    return SR, cached_world(WorldSpec(**SR)), GaussianIR(**SR), GaussianDenoiser(**SR), GaussianFusion(**SR)


def brute_posterior_mean(world, obs_ops, noise_vars, obs):
    """E[x0 | obs] for obs = H x0 + noise by the textbook formula m + C H^T (H C H^T + R)^{-1} (obs - H m)."""
    C, m = world.prior_cov_dense(), world.prior_mean_dense()
    H = np.vstack(obs_ops)
    R = np.diag(np.concatenate([np.full(h.shape[0], v) for h, v in zip(obs_ops, noise_vars)]))
    gain = C @ H.T @ np.linalg.inv(H @ C @ H.T + R)
    return m[None] + (obs - (H @ m)[None]) @ gain.T, C - gain @ H @ C


# ------------------------------------------------------------------------------------------ world

def test_prior_fit_is_the_photos_and_sampling_has_its_covariance():
    """The fitted field's per-pixel variance along each colour axis is the photos' (every image weighted
    equally, as the fit weighs them; within 15 %: 768 patch means set the DC), luminance falls off steeply (alpha > 2.5: smooth,
    JPEG-compressed photos), and draws of the prior have the prior covariance (2000 draws: max |error|
    < 5 standard errors per entry)."""
    from dpir.data import bundled

    prior = fitted_prior(8)
    assert np.allclose(prior.colour.T @ prior.colour, np.eye(3), atol=1e-12)
    ims = [bundled.load(n)[::2, ::2].reshape(-1, 3) / 255.0 for n in bundled.TRAIN]
    mean = np.mean([i.mean(0) for i in ims], axis=0)
    second = np.mean([(i - mean).T @ (i - mean) / len(i) for i in ims], axis=0)
    photo_var = np.diag(prior.colour.T @ second @ prior.colour)
    assert np.abs(prior.pixel_variance() / photo_var - 1).max() < 0.15, (prior.pixel_variance(), photo_var)
    assert np.abs(prior.mean_rgb - mean).max() < 0.02
    assert 2.5 < prior.params[0, 2] < 5.0
    world = cached_world(WorldSpec(**SR))
    x = world.sample(N_MC, seed=3).reshape(N_MC, -1).numpy()
    C = world.prior_cov_dense()
    se = np.sqrt((np.outer(np.diag(C), np.diag(C)) + C ** 2) / N_MC)
    assert np.abs((np.cov(x, rowvar=False) - C) / se).max() < 5.0
    assert np.abs((x.mean(0) - world.prior_mean_dense()) / np.sqrt(np.diag(C) / N_MC)).max() < 4.5
    # train and test draws differ; a batch of one gives the same image as a batch of many
    assert not torch.equal(world.sample(1, 3, "train")[0], world.sample(1, 3, "test")[0])
    assert torch.equal(world.sample(1, 3)[0], world.sample(5, 3)[0])


def test_the_sr_operator_is_the_harness_bicubic():
    from dpir.data.degrade import bicubic_down

    world = cached_world(WorldSpec(**{**SR, "size": 16}))
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert (world.degrade(x) - bicubic_down(x, 4)).abs().max() < 1e-14
    # MATLAB's symmetric boundary: not a circulant / polyphase-circulant operator
    A = world.A.reshape(4, 4, 16, 16)
    assert not np.allclose(A[1, 1], np.roll(A[0, 0], (4, 4), axis=(0, 1)))


def test_bad_world_keywords_are_one_line_errors():
    with pytest.raises(DpirError, match="size 10 must be divisible by the integer scale 4"):
        GaussianIR(size=10)
    with pytest.raises(DpirError, match="noise must be > 0"):
        GaussianIR(size=8, noise=0.0)
    with pytest.raises(DpirError, match="unexpected keyword argument 'sise'"):
        GaussianIR(sise=8)
    ir = GaussianIR(**SR)
    with pytest.raises(DpirError, match=r"takes \(B, 3, 2, 2\) inputs, got \(1, 3, 4, 4\)"):
        ir(torch.zeros(1, 3, 4, 4))


def test_oracles_are_registered_architectures_without_weights():
    from dpir.nets import ARCHS, build_network

    assert ARCHS["gaussian_fusion"] == "dpir.gaussian.oracles:GaussianFusion"
    net = build_network("gaussian_fusion", **SR, T=1000)
    assert isinstance(net, GaussianFusion) and net.state_dict() == {} and net.world is GaussianIR(**SR).world


# ---------------------------------------------------------------------------------------- oracles

def test_oracles_match_brute_force(parts):
    """ir, den and fusion against the textbook conditional mean of the stacked observation; the fusion
    sees only (x0_ir, x0_d, t), yet equals E[x0 | y, x_t]: it is linear in the two estimates (docstring
    of dpir.gaussian.oracles)."""
    kw, world, ir, den, fus = parts
    x = world.sample(3, 0)
    y = world.observe(x, make_generator(1))
    yv, s2 = y.reshape(3, -1).numpy(), kw["noise"] ** 2
    A = world.operator_dense()
    mu_y, cov_y = brute_posterior_mean(world, [A], [s2], yv)
    assert np.abs(ir(y).reshape(3, -1).numpy() - mu_y).max() < 1e-11
    assert np.abs(world.posterior_cov_dense() - cov_y).max() < 1e-12
    assert world.mmse() == pytest.approx(np.trace(cov_y), rel=1e-9)
    eye = np.eye(A.shape[1])
    for t in (1, 7, 250, 1000):
        ab, st = float(SCHED.abar(t)), float(SCHED.sigma_tilde(t))
        xt = math.sqrt(ab) * x + math.sqrt(1 - ab) * torch.randn(x.shape, generator=make_generator(t), dtype=torch.float64)
        x_tilde = xt / math.sqrt(ab)
        sig = torch.full((3,), st, dtype=torch.float64)
        mu_d, _ = brute_posterior_mean(world, [eye], [st * st], x_tilde.reshape(3, -1).numpy())
        x0_d = den(x_tilde, sig)
        assert np.abs(x0_d.reshape(3, -1).numpy() - mu_d).max() < 1e-11
        joint, _ = brute_posterior_mean(world, [A, math.sqrt(ab) * eye], [s2, 1 - ab],
                                        np.hstack([yv, xt.reshape(3, -1).numpy()]))
        out = fus(ir(y), x0_d, torch.full((3,), t))
        assert np.abs(out.reshape(3, -1).numpy() - joint).max() < 1e-10, t
    # per-element sigma and t in one batch; sigma = 0 and t = 0 are the identity on the clean image
    sig = torch.tensor([0.0, 0.1, 0.3], dtype=torch.float64)
    both = den(x, sig)
    assert torch.allclose(both[0], x[0], atol=1e-15, rtol=0) and torch.allclose(both[1:2], den(x[1:2], 0.1), atol=1e-15)
    assert torch.allclose(fus(ir(y), x, torch.tensor([0, 0, 0])), x, atol=1e-15, rtol=0)
    # float32 in, float32 out (computed in float64)
    assert ir(y.float()).dtype == torch.float32


# ------------------------------------------------------------------------------------------- laws

def test_step_coefficients_are_the_harness_steps():
    got = {t: (k1, k2, s) for t, k1, k2, s in laws.steps(SCHED, 250)}
    c1, c2, _ = SCHED.posterior_coefficients(100)
    assert got[100] == pytest.approx((c1, c2, math.sqrt(SCHED.beta(100))), rel=1e-15)
    assert got[1] == (1.0, 0.0, 0.0)
    ddim = laws.steps(SCHED, 250, ddim_stride=5)
    assert [t for t, *_ in ddim] == list(range(250, 0, -5)) and ddim[-1][1:] == (1.0, 0.0, 0.0)


def dense_law(world, ir, den, fus, schedule, sampler, y):
    """Independent check of the eigenbasis recursion: the x0 model's affine map read off the modules on
    basis images, and (mean, covariance) propagated densely (192 x 192) through the same steps."""
    D = 3 * world.d
    n = world.size
    x0_ir = ir(y[None])

    def model(v, t):
        ab = float(schedule.abar(t))
        s = torch.full((v.shape[0],), float(schedule.sigma_tilde(t)), dtype=torch.float64)
        return fus(x0_ir.expand(v.shape[0], -1, -1, -1), den(v / math.sqrt(ab), s), torch.full((v.shape[0],), t))

    tau, a, v = laws.start(schedule, sampler)
    mean, cov = a * x0_ir.reshape(-1).numpy(), v * np.eye(D)
    for t, k1, k2, s in laws.steps(schedule, tau, sampler.ddim_stride, sampler.variance, sampler.eta):
        b = model(torch.zeros(1, 3, n, n, dtype=torch.float64), t).reshape(-1).numpy()
        W = (model(torch.eye(D, dtype=torch.float64).reshape(D, 3, n, n), t).reshape(D, D).numpy() - b).T
        M = k1 * W + k2 * np.eye(D)
        mean, cov = M @ mean + k1 * b, M @ cov @ M.T + s * s * np.eye(D)
    return mean, cov


@pytest.mark.parametrize("sampler", [laws.Sampler("jump", 6), laws.Sampler("jump", 12, ddim_stride=4, eta=0.5),
                                     laws.Sampler("noised_start", 5, variance="posterior")], ids=str)
def test_propagated_law_equals_dense_propagation(parts, sampler):
    _, world, ir, den, fus = parts
    y = world.observe(world.sample(1, 0), make_generator(2))[0]
    law = laws.conditional_law(world, SCHED, sampler, y)
    mean, cov = dense_law(world, ir, den, fus, SCHED, sampler, y)
    assert np.abs(law.mean.reshape(-1).numpy() - mean).max() < 1e-11
    assert np.abs(law.cov_dense() - cov).max() < 1e-12


def moment_z(x, mean, cov):
    """Max |z| of the sample mean and of the sample covariance entries against (mean, cov), with the
    Gaussian standard errors sqrt(cov_ii / N) and sqrt((cov_ii cov_jj + cov_ij^2) / N)."""
    N = len(x)
    d = np.diag(cov)
    z_mean = np.abs((x.mean(0) - mean) / np.sqrt(d / N)).max()
    z_cov = np.abs((np.cov(x, rowvar=False) - cov) / np.sqrt((np.outer(d, d) + cov ** 2) / N)).max()
    return z_mean, z_cov


# Tolerance: 192 means and 18,528 covariance entries per check; for exact Gaussian moments the largest
# |z| is ~3 and ~4.3 (expected maxima of that many standard normals), so 4.5 and 5.5 bound them with a
# margin.  The same statistics against the exact POSTERIOR exceed those bounds by far for the short
# chains (the test can tell a sampler's law from the posterior).
Z_MEAN, Z_COV = 4.5, 5.5


@pytest.mark.parametrize("sampler,T", [(laws.Sampler("jump", 20), 1000),
                                       (laws.Sampler("jump", 60, ddim_stride=5), 1000),
                                       (laws.Sampler("noised_start", 15, variance="posterior"), 1000),
                                       (laws.Sampler("full"), 40)], ids=str)
def test_the_harness_sampler_has_the_propagated_law(sr_parts, sampler, T):
    """DPIR (dpir.methods.dpir) built from the oracles, run N_MC times on one observation."""
    from dpir.methods.dpir import DPIR

    kw, world, ir, den, _ = sr_parts
    schedule = linear_schedule(T)
    fus = GaussianFusion(**kw, T=T)
    y = world.observe(world.sample(1, 0), make_generator(2))
    law = laws.conditional_law(world, schedule, sampler, y[0])
    method = DPIR(ir, den, fus, schedule, sampler.tau, ddim_stride=sampler.ddim_stride, mode=sampler.mode,
                  clip_x0=False, variance=sampler.variance, eta=sampler.eta)
    out = method.restore(y.expand(N_MC, -1, -1, -1).contiguous(), make_generator(5)).reshape(N_MC, -1).numpy()
    z_mean, z_cov = moment_z(out, law.mean.reshape(-1).numpy(), law.cov_dense())
    assert z_mean < Z_MEAN and z_cov < Z_COV, (z_mean, z_cov)
    if sampler.mode != "full":
        post = moment_z(out, law.posterior_mean.reshape(-1).numpy(), world.posterior_cov_dense())
        assert max(post[0] / Z_MEAN, post[1] / Z_COV) > 2.0, post
        assert law.w2_to_posterior() > 0.05


def test_marginal_law_and_distortion_match_monte_carlo(sr_parts):
    """Over y as well: N_MC prior images, one observation each, one DP-IR draw each."""
    from dpir.methods.dpir import DPIR

    _, world, ir, den, fus = sr_parts
    sampler = laws.Sampler("jump", 20)
    x = world.sample(N_MC, seed=11)
    y = world.observe(x, [make_generator(11, str(i)) for i in range(N_MC)])
    method = DPIR(ir, den, fus, SCHED, sampler.tau, clip_x0=False)
    out = method.restore(y, make_generator(6)).reshape(N_MC, -1)
    marg = laws.Marginals(world)
    pt = marg.sampler_point(SCHED, sampler)
    se_sq = ((out - x.reshape(N_MC, -1)) ** 2).sum(1)
    assert abs(float(se_sq.mean()) - pt.distortion) < 4.0 * float(se_sq.std()) / math.sqrt(N_MC)
    mean = world.from_pca(torch.from_numpy(pt.mean_pca).reshape(1, 3, 8, 8))[0].reshape(-1).numpy()
    z_mean, z_cov = moment_z(out.numpy(), mean, world._rgb_blocks(pt.cov_pca))
    assert z_mean < Z_MEAN and z_cov < Z_COV, (z_mean, z_cov)


# --------------------------------------------------------------------------------------------- W2

def test_w2_known_cases():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.1, 2.0, 5), rng.uniform(0.1, 2.0, 5)
    m1, m2 = rng.standard_normal(5), rng.standard_normal(5)
    closed = math.sqrt(((m1 - m2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    assert w2.w2_gaussian(m1, np.diag(a), m2, np.diag(b)) == pytest.approx(closed, rel=1e-12)
    assert w2.w2_diagonal(m1, a, m2, b) == pytest.approx(closed, rel=1e-14)
    # 2x2, non-commuting: tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)) for a 2x2 PSD M
    C1, C2 = np.array([[2.0, 0.7], [0.7, 0.5]]), np.array([[1.0, -0.3], [-0.3, 0.8]])
    R = w2.psd_sqrt(C2)
    M = R @ C1 @ R
    cross = math.sqrt(np.trace(M) + 2 * math.sqrt(np.linalg.det(M)))
    assert w2.w2_gaussian_squared(np.zeros(2), C1, np.zeros(2), C2) == pytest.approx(
        np.trace(C1) + np.trace(C2) - 2 * cross, rel=1e-12)
    assert w2.w2_gaussian(m1, np.diag(a), m1, np.diag(a)) == 0.0


def test_w2_sample_estimator_error_is_as_stated():
    """The numbers in w2_squared_extrapolated's docstring: far laws within 4 standard errors (random
    error), equal laws: plug-in bias 5e-4..1.6e-3, extrapolated within 1.5e-3 of 0."""
    rng = np.random.default_rng(0)
    d = 8
    B1, B2 = rng.standard_normal((d, d)), rng.standard_normal((d, d))
    C1, C2 = B1 @ B1.T / d + 0.1 * np.eye(d), B2 @ B2.T / d + 0.1 * np.eye(d)
    m1 = 0.1 * rng.standard_normal(d)
    exact = w2.w2_gaussian_squared(m1, C1, np.zeros(d), C2)
    for seed in range(3):
        x = np.random.default_rng(seed + 10).multivariate_normal(m1, C1, size=20000)
        plug = w2.w2_squared_from_samples(x, np.zeros(d), C2)
        _, se = w2.w2_squared_extrapolated(x, np.zeros(d), C2)
        assert abs(plug - exact) < 4 * se and 0.005 < se < 0.03
        x = np.random.default_rng(seed + 10).multivariate_normal(np.zeros(d), C2, size=20000)
        plug = w2.w2_squared_from_samples(x, np.zeros(d), C2)
        est, _ = w2.w2_squared_extrapolated(x, np.zeros(d), C2)
        assert 4e-4 < plug < 1.7e-3 and abs(est) < 1.5e-3


# ------------------------------------------------------------------------------ perception-distortion

def test_perception_distortion_bound(sr_parts):
    _, world, *_ = sr_parts
    marg = laws.Marginals(world)
    mmse_pt, post_pt = marg.mmse_point(), marg.posterior_point()
    D_star, W0 = world.mmse(), mmse_pt.perception
    assert mmse_pt.distortion == D_star and 0 < W0 ** 2 <= D_star
    # endpoints: D(0) = D* + W0^2 <= 2 D* (the posterior sampler's D); D(P) = D* from P = W0 on
    assert w2.pd_bound(0.0, D_star, W0) == pytest.approx(D_star + W0 ** 2, rel=1e-14)
    assert w2.pd_bound(0.0, D_star, W0) <= post_pt.distortion == 2 * D_star
    assert w2.pd_bound(W0, D_star, W0) == D_star == w2.pd_bound(3 * W0, D_star, W0)
    P = np.linspace(0, 1.5 * W0, 61)
    D = w2.pd_bound(P, D_star, W0)
    assert np.all(np.diff(D) <= 0) and np.all(np.diff(D, 2) >= -1e-15)
    with pytest.raises(ValueError):
        w2.pd_bound(-1.0, D_star, W0)
    # the posterior sampler's marginal is the prior: W2 = 0 computed, not assumed.  W2^2 is a difference of
    # traces of size tr C (2 tr C - 2 tr (C^1/2 C C^1/2)^1/2), so its round-off scales with tr C and the
    # eigensolver: 6.4e-11 (W2 8e-6) on one x86 machine, below 1e-12 on another; 1e-9 tr C bounds both
    w2sq = marg.w2_to_prior(post_pt.mean_pca, post_pt.cov_pca) ** 2
    assert w2sq <= 1e-9 * sum(float(np.trace(c)) for c in post_pt.cov_pca)
    # every exact DP-IR sampler lies on or above the bound; long chains approach the posterior sampler
    for s in (laws.Sampler("jump", 20), laws.Sampler("jump", 250), laws.Sampler("jump", 250, ddim_stride=5)):
        pt = marg.sampler_point(SCHED, s)
        assert pt.distortion >= w2.pd_bound(pt.perception, D_star, W0) * (1 - 1e-12), s
    long = marg.sampler_point(SCHED, laws.Sampler("jump", 250))
    assert long.perception < 0.1 * W0 and abs(long.distortion / (2 * D_star) - 1) < 0.05


def test_bench_table_is_consistent():
    """``python -m dpir.gaussian.bench`` at 8 x 8: each row on or above the bound, the MMSE estimator on it
    at W2|y = sqrt(MMSE), the posterior sampler at P = 0 and D = 2 MMSE."""
    from dpir.gaussian import bench

    r = bench.run(size=8)
    rows = {row["label"]: row for row in r["rows"]}
    assert len(rows) == len(bench.SAMPLERS) + 2
    assert all(row["D"] >= row["bound"] * (1 - 1e-12) for row in rows.values())
    mmse = rows["MMSE E[x0|y]"]
    assert mmse["D"] == pytest.approx(mmse["bound"], rel=1e-12) == r["mmse_per_pixel"]
    assert mmse["w2_posterior"] == pytest.approx(math.sqrt(r["mmse_per_pixel"]), rel=1e-12)
    post = rows["posterior sampler"]
    assert post["P"] == 0.0 and post["D"] == pytest.approx(2 * r["mmse_per_pixel"], rel=1e-12)
