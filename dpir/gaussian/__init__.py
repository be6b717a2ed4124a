"""A linear-Gaussian world in which DP-IR's parts, its samplers' output laws and the
perception-distortion bound are all known exactly.

Why.  On real images nothing in a DP-IR table can be compared with the truth: the networks only
approximate E[x0 | y], E[x0 | x_t] and E[x0 | y, x_t], and a sampler's output law is only seen through
samples and learned metrics.  In a Gaussian world every one of those objects is closed-form, so the
harness's samplers can be checked against exact answers, and each sampler's distance from the exact
posterior and from the perception-distortion bound is a number, not an estimate.

The world (:mod:`.world`): clean images x0 ~ N(m, C), a stationary (periodic) prior whose colour axes,
mean and radial power law a / (f0^2 + |f|^2)^(alpha/2) per colour axis are fitted to the bundled
training photos; y = A x0 + s n with A the harness's own 4x MATLAB bicubic downsampling
(:func:`dpir.data.degrade.bicubic_down` applied to basis images, so the matrix IS the harness's
operator) or a circular blur.  Oracles (:mod:`.oracles`): modules with the harness's signatures
``ir(y)``, ``den(x, sigma)``, ``fusion(x0_ir, x0_d, t)``, registered as architectures
``gaussian_ir``, ``gaussian_denoiser``, ``gaussian_fusion``; the exact E[x0 | y, x_t] is linear in
(E[x0 | y], E[x0 | x_t]) with no gap (derivation in :mod:`.oracles`).  Laws (:mod:`.laws`): the output
mean and covariance of the full chain, the one-step jump + ancestral or DDIM, and the forward-noised
start, for any tau, propagated through the harness's own step coefficients.  :mod:`.w2`: Gaussian W2,
a sample estimator, Freirich et al.'s D(P).  :mod:`.bench`: the cost and the P-D table of the samplers.
:mod:`.learned`: the harness's small IR, denoiser and fusion architectures trained in the world (the
harness trainers' losses), each network's excess error over its oracle (E|f - oracle|^2, which equals
MSE(f) - MSE(oracle) by orthogonality), and DP-IR rows with learned and mixed parts run by the harness's
sampler, their D and P estimated from samples (config ``gaussian.learned``).

Design choices.

* Size: 32 x 32 per colour channel by default (d = 1024; ``size`` up to 64 accepted).  The bicubic
  operator with MATLAB's symmetric boundary is neither circulant nor polyphase-circulant (the border
  rows differ), so E[x0 | y] is not Fourier-diagonal; rather than approximate the operator by a
  periodic one, the posterior precision P_y = C^{-1} + A^T A / s^2 is formed densely and eigendecomposed
  once per colour channel (O(d^3), one thread: 0.6 s at d = 1024, 6 s at d = 2048, ~50 s at d = 4096;
  8 MB vs 128 MB per matrix), and the oracles' dense products cost O(d^2) per image and step.  Everything that depends only on C (the denoiser, C^{-1}, sampling the prior) stays in the
  Fourier domain, exact and O(d log d).  The blur world is circulant and could be Fourier-only at any
  size; it uses the same dense path so that one code path serves both.
* Colour: the prior is separable into three principal colour axes of the photos (an orthonormal 3x3
  rotation U); the degradation acts identically on each channel and the noise is white, so both commute
  with U and the problem splits exactly into three independent channels.
* Exactness: float64 throughout; every sampler step is linear-Gaussian with the exact parts, and all
  its matrices are functions of P_y, so the laws are scalar recursions in the eigenbasis of P_y: no
  sampling, no truncation.  The one modelling caveat: the harness writes y as 8-bit PNGs (rounding)
  while this world's noise is Gaussian (s > 0 is required: a noiseless y has a singular posterior).
  The laws hold for unclipped chains (``clip_x0: false``): prior draws leave [0, 1].
* Workflow: the report section :mod:`dpir.report.gaussian` (rule ``gaussian``, config ``gaussian:``) runs
  the exact rows and, with ``gaussian.learned``, the learned ones in-process.  Still open: how a config
  names a world for the harness's own method rows (the oracles' keywords are :class:`.world.WorldSpec`'s
  fields) and how its images become a dataset (:meth:`.world.World.sample`, :meth:`.world.World.observe`).

Measured cost (``python -m dpir.gaussian.bench``, size 32, 4x SR, noise 0.01, on the shared 2-core
development machine, one thread): prior fit 3-9 s, world + the three oracles 5-9 s, the marginal laws
and P-D points of the 8 tabulated samplers + MMSE + posterior sampler 19-25 s (the conditional laws
alone: ~0.1 s per sampler); one reverse step of the oracles on a batch of 8: 20-55 ms.  The tests
(``tests/test_gaussian_world.py``, 8 x 8) run in ~26 s.
"""
