"""The linear-Gaussian world: a stationary Gaussian prior fitted to photos, a linear degradation, noise.

Model (per image, RGB, ``size`` x ``size`` pixels, float64)::

    x0 ~ N(m, C),     y = A x0 + s_y n,  n ~ N(0, I)

* Colour: ``z = U^T x`` per pixel, with ``U`` the eigenvectors of the photos' 3x3 RGB pixel covariance
  (principal colour axes).  The prior makes the three colour channels of ``z`` independent, each a
  stationary field on the ``size`` x ``size`` torus: its covariance is diagonal in the 2-D DFT,
  ``C_k = F^H diag(S_k) F`` with ``F`` the unitary DFT, so ``C = (U kron I) blockdiag(C_k) (U kron I)^T``.
* Spectrum: ``S_k(f) = a_k / (f0_k^2 + |f|^2)^(alpha_k / 2)`` (|f| in cycles per pixel) for f != 0,
  fitted by least squares in log power to the averaged windowed periodogram of ``size`` x ``size``
  patches of the bundled training photos (:mod:`dpir.data.bundled`, the harness's own images), the
  classic 1/f^alpha law of natural images (van der Schaaf & van Hateren 1996, alpha ~ 2).  The DC value
  ``S_k(0) = size^2 Var(patch mean)`` is measured on the same patches (a power law extrapolated to f = 0
  is unconstrained by the nonzero frequencies of a small torus).  ``m`` = the photos' mean colour.
* Degradation, the same on every colour channel (so it commutes with ``U``; white noise stays white):
  ``task="sr"``: the harness's 4x MATLAB bicubic (:func:`dpir.data.degrade.bicubic_down`), written as
  an explicit matrix by applying that very function to the ``size^2`` basis images (its symmetric
  boundary makes it non-circulant: dense); ``task="blur"``: circular convolution with a fixed kernel
  (a Gaussian of std ``kernel_std``, or the harness's camera-shake kernel
  :func:`dpir.data.blur.motion_kernel` of ``kernel_seed``).  Noise std ``noise`` > 0 on [0, 1] images.

Exact posterior (Gaussian conditioning, e.g. Kay 1993, Thm. 10.3; in information form):
``p(x0 | y) = N(mu_y, P_y^{-1})``, ``P_y = C^{-1} + A^T A / s_y^2``,
``mu_y = m + P_y^{-1} A^T (y - A m) / s_y^2``.  Per colour channel, ``P_y`` is eigendecomposed once,
``P_y = Q diag(p) Q^T`` (dense ``size^2`` x ``size^2``); every oracle and every sampler law of this
package is a function of ``P_y`` and ``C`` that reads off that one decomposition.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from dpir.errors import DpirError

TASKS = ("sr", "blur")
KERNELS = ("gaussian", "motion")
#: the largest size a world is built at: dense size^2 x size^2 algebra per colour channel (64: 4096 x
#: 4096, one eigendecomposition ~50 s per channel on one thread); larger is refused
MAX_SIZE = 64
#: the patch size the spectral density is fitted at (see :func:`fit_prior`)
FIT_SIZE = 64


# ------------------------------------------------------------------------------------------ prior

@dataclass(frozen=True, eq=False)
class Prior:
    """A stationary Gaussian prior on ``size`` x ``size`` RGB images (see the module docstring)."""

    size: int
    mean_rgb: np.ndarray        # (3,)
    colour: np.ndarray          # (3, 3) orthonormal, columns = colour axes (descending variance)
    params: np.ndarray          # (3, 3): per colour channel (a, f0, alpha)
    dc: np.ndarray              # (3,): S_k(0)

    @property
    def spectra(self) -> np.ndarray:
        """(3, size, size) power spectra S_k(f) on the unitary-DFT grid (``numpy.fft.fftfreq`` order)."""
        return _spectra(self.size, self.params, self.dc)

    def pixel_variance(self) -> np.ndarray:
        """Per-pixel variance of each colour channel: mean over f of S_k(f) (Parseval)."""
        return self.spectra.reshape(3, -1).mean(axis=1)


def radial_frequency(size: int) -> np.ndarray:
    f = np.fft.fftfreq(size)
    return np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)


def power_law(freq: np.ndarray, a: float, f0: float, alpha: float) -> np.ndarray:
    return a / (f0 * f0 + freq * freq) ** (alpha / 2.0)


def _spectra(size: int, params: np.ndarray, dc: np.ndarray) -> np.ndarray:
    fr = radial_frequency(size)
    out = np.stack([power_law(fr, *params[k]) for k in range(3)])
    out[:, 0, 0] = dc
    return out


def _window(size: int) -> np.ndarray:
    """A 2-D Hann window without its zero end points (size 4 keeps 4 nonzero taps)."""
    w = np.hanning(size + 2)[1:-1]
    return np.outer(w, w)


def fit_prior(size: int, images: tuple[str, ...] | None = None, patches_per_image: int = 128,
              seed: int = 0) -> Prior:
    """Fit :class:`Prior` to patches of bundled photos (default: the training split).

    Every image weighs the same: ``patches_per_image`` patches of ``FIT_SIZE`` = 64 at seeded random
    positions give the mean colour, the colour axes and the spectra.  The spectral density of each
    colour channel is fitted at 64 whatever the world size: the averaged
    periodogram ``|F (w (z - m))|^2 / mean(w^2)`` (unitary DFT, Hann window ``w``), ``log S`` fitted by
    :func:`scipy.optimize.least_squares` over f != 0 (bounds f0 in [1e-3, 1], alpha in [0.1, 6]).  The
    unitary-DFT periodogram estimates the density itself (no size factor), and at 64 the window's
    leakage is small; on an 8 x 8 patch it would swamp the lowest frequencies.  The law is then sampled
    at the world's own frequency grid, and ``S(0) = size^2 Var(patch mean)`` of ``size`` x ``size``
    patches (as many, from the same generator).
    """
    from scipy.optimize import least_squares

    from dpir.data import bundled

    names = tuple(images) if images is not None else tuple(bundled.TRAIN)
    photos = [bundled.load(name).astype(np.float64) / 255.0 for name in names]
    rng = np.random.default_rng(seed)
    n = FIT_SIZE
    big, small = [], []
    for p in photos:
        h, wd = p.shape[:2]
        if h < max(n, size) or wd < max(n, size):
            raise DpirError(f"bundled image of {h}x{wd} is smaller than the Gaussian world's fit size {max(n, size)}")
        for _ in range(patches_per_image):
            i, j = rng.integers(0, h - n + 1), rng.integers(0, wd - n + 1)
            big.append(p[i:i + n, j:j + n])
            i, j = rng.integers(0, h - size + 1), rng.integers(0, wd - size + 1)
            small.append(p[i:i + size, j:j + size])
    big_arr = np.stack(big)                                            # (N, n, n, 3)
    pixels = big_arr.reshape(-1, 3)
    mean = pixels.mean(axis=0)
    _, evecs = np.linalg.eigh(np.cov(pixels, rowvar=False))
    U = evecs[:, ::-1].copy()
    U *= np.sign(U[np.argmax(np.abs(U), axis=0), range(3)])        # deterministic signs
    w = _window(n)
    w2 = float((w * w).mean())
    z = np.moveaxis((big_arr - mean) @ U, -1, 1)                       # (N, 3, n, n) colour channels
    power = (np.abs(np.fft.fft2(z * w, norm="ortho")) ** 2).mean(axis=0) / w2
    means = ((np.stack(small) - mean) @ U).mean(axis=(1, 2))           # (N, 3)
    fr = radial_frequency(n)
    nz = fr > 0
    params = np.zeros((3, 3))
    for k in range(3):
        target = np.log(power[k][nz])

        def residual(theta, target=target):
            return np.log(power_law(fr[nz], math.exp(theta[0]), math.exp(theta[1]), theta[2])) - target

        theta0 = np.array([math.log(power[k][nz].min()) + 2.0 * math.log(0.7), math.log(0.05), 2.0])
        sol = least_squares(residual, theta0, bounds=([-60.0, math.log(1e-3), 0.1], [60.0, 0.0, 6.0]))
        params[k] = (math.exp(sol.x[0]), math.exp(sol.x[1]), sol.x[2])
    dc = size * size * np.var(np.asarray(means), axis=0)
    return Prior(size=size, mean_rgb=mean, colour=U, params=params, dc=dc)


@functools.lru_cache(maxsize=8)
def fitted_prior(size: int, patches_per_image: int = 128, seed: int = 0) -> Prior:
    """:func:`fit_prior` on the training photos, cached per process (all oracles of one world share it)."""
    return fit_prior(size, None, patches_per_image, seed)


# ----------------------------------------------------------------------------------- degradation

def bicubic_matrix(size: int, scale: int) -> np.ndarray:
    """The harness's ``bicubic_down(., scale)`` on one ``size`` x ``size`` channel as a
    ((size/scale)^2, size^2) matrix: column i is the function applied to basis image i."""
    from dpir.data.degrade import bicubic_down

    d = size * size
    basis = torch.eye(d, dtype=torch.float64).reshape(d, 1, size, size)
    return bicubic_down(basis, scale).reshape(d, -1).T.numpy().copy()


def blur_kernel(kind: str, std: float, ksize: int, seed: int) -> np.ndarray:
    """A (ksize, ksize) kernel summing to 1: a sampled Gaussian, or the harness's motion kernel."""
    if kind == "gaussian":
        r = np.arange(ksize) - (ksize - 1) / 2.0
        g = np.exp(-0.5 * (r / std) ** 2)
        k = np.outer(g, g)
        return k / k.sum()
    from dpir.data.blur import motion_kernel
    from dpir.rng import make_generator

    k = motion_kernel(int(ksize), make_generator(seed, "gaussian-world-kernel")).double().numpy()
    return k / k.sum()


def circular_blur_matrix(kernel: np.ndarray, size: int) -> np.ndarray:
    """Circular convolution (kernel centre at the output pixel) as a (size^2, size^2) matrix."""
    ks = kernel.shape[0]
    if ks > size:
        raise DpirError(f"blur kernel_size {ks} is larger than the Gaussian world size {size}; use a smaller kernel")
    c = (ks - 1) // 2
    pad = np.zeros((size, size))
    pad[:ks, :ks] = kernel
    pad = np.roll(pad, (-c, -c), axis=(0, 1))
    H = np.fft.fft2(pad)
    d = size * size
    basis = np.eye(d).reshape(d, size, size)
    out = np.real(np.fft.ifft2(np.fft.fft2(basis) * H))
    return out.reshape(d, d).T.copy()


# ------------------------------------------------------------------------------------------ world

@dataclass(frozen=True)
class WorldSpec:
    """Everything that determines a world (the oracles' constructor keywords, JSON-friendly)."""

    size: int = 32
    task: str = "sr"
    scale: int = 4
    noise: float = 0.01
    kernel: str = "gaussian"
    kernel_std: float = 1.6
    kernel_size: int = 9
    kernel_seed: int = 0
    fit_patches: int = 128
    fit_seed: int = 0

    def check(self) -> WorldSpec:
        where = "Gaussian world"
        if self.task not in TASKS:
            raise DpirError(f"{where}: task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if not isinstance(self.size, int) or not 2 <= self.size <= MAX_SIZE:
            raise DpirError(f"{where}: size must be an integer in 2..{MAX_SIZE} (dense size^2 algebra), got {self.size!r}")
        if self.task == "sr" and (not isinstance(self.scale, int) or self.scale < 1 or self.size % self.scale):
            raise DpirError(f"{where}: size {self.size} must be divisible by the integer scale {self.scale!r}")
        if not (isinstance(self.noise, (int, float)) and self.noise > 0):
            raise DpirError(f"{where}: noise must be > 0 (a noiseless observation has a singular posterior), "
                            f"got {self.noise!r}")
        if self.task == "blur":
            if self.kernel not in KERNELS:
                raise DpirError(f"{where}: kernel must be one of {', '.join(KERNELS)}, got {self.kernel!r}")
            if not isinstance(self.kernel_size, int) or self.kernel_size < 1 or self.kernel_size % 2 == 0:
                raise DpirError(f"{where}: kernel_size must be an odd positive integer, got {self.kernel_size!r}")
            if self.kernel == "gaussian" and not self.kernel_std > 0:
                raise DpirError(f"{where}: kernel_std must be > 0, got {self.kernel_std!r}")
        return self


@dataclass(eq=False)
class World:
    """A built world: prior, operator, and the eigendecomposition of the posterior precision.

    Per colour channel k (arrays stacked on a leading axis of 3), ``d = size^2``:
    ``spectra[k]`` (size, size) = S_k; ``Q[k]`` (d, d) and ``p[k]`` (d,) with
    ``P_y,k = S_k^{-1} + A^T A / s_y^2 = Q diag(p) Q^T``; ``gain[k]`` (d, n_y) = P_y^{-1} A^T / s_y^2,
    so ``E[z0 | y] = m_k + gain (y - A m_k)`` (vectorised images, row-major).
    """

    spec: WorldSpec
    prior: Prior
    A: np.ndarray                      # (n_y, d), one channel
    y_size: int
    spectra: np.ndarray = field(repr=False)
    Q: np.ndarray = field(repr=False)
    p: np.ndarray = field(repr=False)
    gain: np.ndarray = field(repr=False)

    @property
    def size(self) -> int:
        return self.spec.size

    @property
    def d(self) -> int:
        return self.spec.size ** 2

    @property
    def mean_pca(self) -> np.ndarray:
        """(3,): the prior mean of each colour channel (a constant image)."""
        return self.prior.colour.T @ self.prior.mean_rgb

    # --- colour ----------------------------------------------------------------------------------
    def to_pca(self, x: torch.Tensor) -> torch.Tensor:
        U = torch.as_tensor(self.prior.colour, dtype=x.dtype, device=x.device)
        return torch.einsum("ck,bchw->bkhw", U, x)

    def from_pca(self, z: torch.Tensor) -> torch.Tensor:
        U = torch.as_tensor(self.prior.colour, dtype=z.dtype, device=z.device)
        return torch.einsum("ck,bkhw->bchw", U, z)

    # --- the prior -------------------------------------------------------------------------------
    def sample(self, count: int, seed: int, split: str = "test") -> torch.Tensor:
        """(count, 3, size, size) float64 draws of the prior; image i from the generator of
        (seed, "gaussian-<split>:<i>") only, so train and test never share an image and a batch of any
        size gives the same images (:func:`dpir.rng.make_generator`)."""
        from dpir.rng import make_generator, randn

        n = self.size
        gens = [make_generator(seed, f"gaussian-{split}:{i}") for i in range(int(count))]
        w = randn((int(count), 3, n, n), gens, dtype=torch.float64)
        root = torch.from_numpy(np.sqrt(self.spectra))
        z = torch.fft.ifft2(torch.fft.fft2(w) * root).real
        z = z + torch.from_numpy(self.mean_pca)[None, :, None, None]
        return self.from_pca(z)

    def degrade(self, x: torch.Tensor) -> torch.Tensor:
        """A x (noise-free) on (B, 3, size, size), through the explicit matrix (= the harness operator
        for ``sr``, see :func:`bicubic_matrix`)."""
        B = x.shape[0]
        A = torch.as_tensor(self.A, dtype=x.dtype, device=x.device)
        return (x.reshape(B, 3, self.d) @ A.T).reshape(B, 3, self.y_size, self.y_size)

    def observe(self, x: torch.Tensor, generator) -> torch.Tensor:
        """y = A x + s_y n, n from ``generator`` (one, or one per image)."""
        from dpir.rng import randn

        Ax = self.degrade(x)
        return Ax + self.spec.noise * randn(Ax.shape, generator, dtype=Ax.dtype).to(Ax.device)

    # --- exact posterior -------------------------------------------------------------------------
    def posterior_mean(self, y: torch.Tensor) -> torch.Tensor:
        """E[x0 | y] (B, 3, size, size) in float64: the MMSE estimator."""
        y = y.double()
        B = y.shape[0]
        m = torch.from_numpy(self.mean_pca)[None, :, None]
        zy = self.to_pca(y).reshape(B, 3, -1) - m * torch.from_numpy(self.A.sum(axis=1))[None, None, :]
        z = torch.einsum("kdy,bky->bkd", torch.from_numpy(self.gain), zy) + m
        return self.from_pca(z.reshape(B, 3, self.size, self.size))

    def posterior_variances(self) -> np.ndarray:
        """(3, d): the eigenvalues 1/p of Cov(x0 | y) per colour channel (eigenvectors ``Q``)."""
        return 1.0 / self.p

    def mmse(self) -> float:
        """E|x0 - E[x0|y]|^2 over the whole image (= tr Cov(x0 | y), the same for every y)."""
        return float(self.posterior_variances().sum())

    # --- dense references (small sizes) -----------------------------------------------------------
    def _rgb_blocks(self, blocks: np.ndarray) -> np.ndarray:
        """(3d, 3d) RGB-pixel matrix of the colour-channel blocks (3, d, d): (U kron I) B (U kron I)^T."""
        L = np.kron(self.prior.colour, np.eye(self.d))
        Bd = np.zeros((3 * self.d, 3 * self.d))
        for k in range(3):
            Bd[k * self.d:(k + 1) * self.d, k * self.d:(k + 1) * self.d] = blocks[k]
        return L @ Bd @ L.T

    def prior_cov_blocks(self) -> np.ndarray:
        """(3, d, d): C_k = F^H diag(S_k) F as dense matrices."""
        return np.stack([spectral_matrix(self.spectra[k]) for k in range(3)])

    def prior_cov_dense(self) -> np.ndarray:
        """(3d, 3d) prior covariance in RGB pixel coordinates (channel-major vectorisation)."""
        return self._rgb_blocks(self.prior_cov_blocks())

    def posterior_cov_blocks(self) -> np.ndarray:
        return np.stack([(self.Q[k] / self.p[k]) @ self.Q[k].T for k in range(3)])

    def posterior_cov_dense(self) -> np.ndarray:
        """(3d, 3d) Cov(x0 | y) in RGB pixel coordinates."""
        return self._rgb_blocks(self.posterior_cov_blocks())

    def operator_dense(self) -> np.ndarray:
        """(3 n_y, 3d) the degradation on RGB images (channel-major): I_3 kron A."""
        return np.kron(np.eye(3), self.A)

    def prior_mean_dense(self) -> np.ndarray:
        return np.repeat(self.prior.mean_rgb, self.d)


def spectral_matrix(spectrum: np.ndarray) -> np.ndarray:
    """The real symmetric matrix F^H diag(spectrum) F on vectorised (row-major) images."""
    n = spectrum.shape[0]
    d = n * n
    basis = np.eye(d).reshape(d, n, n)
    cols = np.real(np.fft.ifft2(np.fft.fft2(basis) * spectrum)).reshape(d, d)
    M = cols.T
    return 0.5 * (M + M.T)


def build_world(spec: WorldSpec, prior: Prior | None = None) -> World:
    """Build the operator and the posterior eigendecomposition (dense, float64) for ``spec``."""
    spec.check()
    prior = prior if prior is not None else fitted_prior(spec.size, spec.fit_patches, spec.fit_seed)
    if prior.size != spec.size:
        raise ValueError(f"prior of size {prior.size} for a world of size {spec.size}")
    n = spec.size
    if spec.task == "sr":
        A = bicubic_matrix(n, spec.scale)
        y_size = n // spec.scale
    else:
        A = circular_blur_matrix(blur_kernel(spec.kernel, spec.kernel_std, spec.kernel_size, spec.kernel_seed), n)
        y_size = n
    spectra = prior.spectra
    AtA = A.T @ A / spec.noise ** 2
    Qs, ps, gains = [], [], []
    for k in range(3):
        Py = spectral_matrix(1.0 / spectra[k]) + AtA
        p, Q = np.linalg.eigh(0.5 * (Py + Py.T))
        Qs.append(Q)
        ps.append(p)
        gains.append((Q / p) @ (Q.T @ A.T) / spec.noise ** 2)
    return World(spec=spec, prior=prior, A=A, y_size=y_size, spectra=spectra, Q=np.stack(Qs), p=np.stack(ps),
                 gain=np.stack(gains))


@functools.lru_cache(maxsize=4)
def cached_world(spec: WorldSpec) -> World:
    """:func:`build_world` with the fitted prior, once per process and spec (the three oracle modules of
    one config share it)."""
    return build_world(spec)


def spectral_apply(z: torch.Tensor, spectrum: torch.Tensor) -> torch.Tensor:
    """F^H diag(spectrum) F z on (..., n, n) (``spectrum`` broadcastable, real and symmetric in f)."""
    return torch.fft.ifft2(torch.fft.fft2(z) * spectrum).real
