"""Exact oracles of the Gaussian world as modules with the harness's call signatures.

* :class:`GaussianIR`: ``ir(y) -> E[x0 | y]``, the MMSE estimator;
* :class:`GaussianDenoiser`: ``den(x~, sigma) -> E[x0 | x~]`` for x~ = x0 + sigma n (``sigma`` a (B,)
  tensor or a number), ``E[z0 | x~] = m + C (C + sigma^2 I)^{-1} (x~ - m)``: Fourier-diagonal per colour
  channel, ``S / (S + sigma^2)``;
* :class:`GaussianFusion`: ``fusion(x0_ir, x0_d, t) -> E[x0 | y, x_t]`` from the two estimates only,
  with x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps of the DDPM linear schedule
  (:func:`dpir.diffusion.schedule.linear_schedule`; ``x0_d`` is the denoiser's output on
  x~_t = x_t / sqrt(abar_t) at sigma~_t, as :meth:`dpir.methods.dpir.DPIR.x0_model` calls it).

Why the fusion needs nothing but (x0_ir, x0_d, t).  Per colour channel, write P_y = C^{-1} + A^T A / s^2
(precision given y), c_t = 1 / sigma~_t^2 = abar_t / (1 - abar_t), P_d = C^{-1} + c_t I (precision given
x~_t).  Gaussian information adds (the prior counted once), so with both observations
P_t = P_y + c_t I and

    E[x0 | y, x_t] - m = P_t^{-1} (A^T (y - A m) / s^2 + c_t (x~_t - m)).

Both terms are recovered from the estimates exactly: x0_ir - m = P_y^{-1} A^T (y - A m) / s^2 gives
A^T (y - A m) / s^2 = P_y (x0_ir - m), and x0_d - m = C (C + sigma~^2 I)^{-1} (x~_t - m) gives
c_t (x~_t - m) = (C^{-1} + c_t I)(x0_d - m).  Hence the exact fusion is LINEAR in the two estimates:

    E[x0 | y, x_t] = m + G_ir,t (x0_ir - m) + G_d,t (x0_d - m),
    G_ir,t = (P_y + c_t I)^{-1} P_y,    G_d,t = (P_y + c_t I)^{-1} (C^{-1} + c_t I),

with no gap, for any linear A and any t: it needs only C > 0 and s > 0 (no invertibility of A, no joint
diagonalisability of A and C).  (This is the product-of-experts / information-filter fusion of two
Gaussian estimates with a common prior, e.g. Chong, Mori & Chang 1990 on track-to-track fusion.)  With
P_y = Q diag(p) Q^T: G_ir = Q diag(p / (p + c)) Q^T and G_d = Q diag(1 / (p + c)) Q^T (C^{-1} + c I);
t = 0 (no noise) returns x0_d.  The sigma of each call is read off t through the schedule, so a module
built with one (T, beta_start, beta_end) is exact only for samplers on that schedule.

Numerics.  Everything is computed in float64 whatever the input dtype, and returned in the input dtype.
In float32 the estimates are rounded before the fusion multiplies x0_d by C^{-1} + c I (a gain up to
1 / min S = 6e4 at size 32), but G_d damps what it amplifies: measured at size 32, a float32 fusion
call is within 1.1e-7 of the float64 one (float32 rounding of the output alone: 5e-8).  The sampler
laws of :mod:`dpir.gaussian.laws` are those of float64 chains with ``clip_x0: false`` (clipping to
[0, 1] is not linear, and prior draws leave [0, 1]).

The modules hold no parameters (an empty state dict); their tensors are non-persistent buffers, so
``.to(device)`` moves them.  Constructor keywords are those of :class:`dpir.gaussian.world.WorldSpec`
(the fusion adds the schedule's), so a config entry names the world it belongs to.
"""
from __future__ import annotations

import torch
from torch import nn

from dpir.errors import DpirError
from dpir.gaussian.world import World, WorldSpec, cached_world


def _world(kwargs) -> World:
    try:
        spec = WorldSpec(**kwargs)
    except TypeError as e:
        raise DpirError(f"Gaussian oracle: {e}; the keywords are those of dpir.gaussian.world.WorldSpec") from None
    return cached_world(spec.check())


class _Oracle(nn.Module):
    """Shared colour transform, mean and shape checks."""

    #: closed-form, exact at every noise level and t: DP-IR's range check has nothing to check
    #: (dpir.diffusion.estimator.network_range)
    exact_at_every_noise_level = True

    def __init__(self, world: World):
        super().__init__()
        self.world = world
        self.register_buffer("colour", torch.from_numpy(world.prior.colour.copy()), persistent=False)
        self.register_buffer("mean", torch.from_numpy(world.mean_pca.copy()), persistent=False)

    def _pca(self, x: torch.Tensor, size: int, what: str) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != (size, size):
            raise DpirError(f"Gaussian oracle ({what}) of world size {self.world.size} takes (B, 3, {size}, {size}) "
                            f"inputs, got {tuple(x.shape)}; restore images of this world only (pad_multiple: 1)")
        x = x.to(self.colour.device, torch.float64)
        return torch.einsum("ck,bchw->bkhw", self.colour, x)

    def _rgb(self, z: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ck,bkhw->bchw", self.colour, z).to(like.device, like.dtype)


class GaussianIR(_Oracle):
    """``ir(y) -> E[x0 | y]`` (exact MMSE estimator of the world of the keywords)."""

    def __init__(self, **world):
        super().__init__(_world(world))
        w = self.world
        self.register_buffer("gain", torch.from_numpy(w.gain.copy()), persistent=False)
        self.register_buffer("ones_image", torch.from_numpy(w.A.sum(axis=1).copy()), persistent=False)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        w = self.world
        z = self._pca(y, w.y_size, "IR").reshape(y.shape[0], 3, -1)
        m = self.mean[None, :, None]
        x = torch.einsum("kdy,bky->bkd", self.gain, z - m * self.ones_image) + m
        return self._rgb(x.reshape(y.shape[0], 3, w.size, w.size), y)


class GaussianDenoiser(_Oracle):
    """``den(x~, sigma) -> E[x0 | x~]`` for x~ = x0 + sigma n, sigma a (B,) tensor or a number (0: identity)."""

    def __init__(self, **world):
        super().__init__(_world(world))
        self.register_buffer("spectra", torch.from_numpy(self.world.spectra.copy()), persistent=False)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        z = self._pca(x, self.world.size, "denoiser")
        s2 = torch.as_tensor(sigma, dtype=torch.float64, device=z.device).reshape(-1) ** 2
        if s2.numel() == 1:
            s2 = s2.expand(z.shape[0])
        if s2.numel() != z.shape[0]:
            raise ValueError(f"sigma has {s2.numel()} values for a batch of {z.shape[0]}")
        S = self.spectra[None]
        shrink = S / (S + s2[:, None, None, None])
        m = self.mean[None, :, None, None]
        out = torch.fft.ifft2(torch.fft.fft2(z - m) * shrink).real + m
        out = torch.where((s2 == 0)[:, None, None, None], z, out)      # sigma = 0: x itself, not an FFT round trip
        return self._rgb(out, x)


class GaussianFusion(_Oracle):
    """``fusion(x0_ir, x0_d, t) -> E[x0 | y, x_t]`` (exact, linear in the estimates; module docstring).

    Keywords: the world's (:class:`WorldSpec`) and the schedule's ``T``, ``beta_start``, ``beta_end``
    (DP-IR's 1000, 1e-4, 2e-2 by default)."""

    def __init__(self, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 2e-2, **world):
        from dpir.diffusion.schedule import linear_schedule

        super().__init__(_world(world))
        try:
            schedule = linear_schedule(T, beta_start, beta_end)
        except ValueError as e:
            raise DpirError(f"Gaussian fusion oracle: schedule keywords T/beta_start/beta_end: {e}") from None
        w = self.world
        ab = torch.from_numpy(schedule.alphas_bar.copy())
        c = ab / (1.0 - ab)            # 1 / sigma~_t^2; inf at t = 0 (handled in forward)
        self.register_buffer("precision_t", c, persistent=False)
        self.register_buffer("Q", torch.from_numpy(w.Q.copy()), persistent=False)
        self.register_buffer("p", torch.from_numpy(w.p.copy()), persistent=False)
        self.register_buffer("inv_spectra", torch.from_numpy(1.0 / w.spectra), persistent=False)

    def forward(self, x0_ir: torch.Tensor, x0_d: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        w = self.world
        zi = self._pca(x0_ir, w.size, "fusion, x0_ir")
        zd = self._pca(x0_d, w.size, "fusion, x0_d")
        B = zd.shape[0]
        if zi.shape[0] != B:
            zi = zi.expand(B, -1, -1, -1)
        tt = torch.as_tensor(t, device=zd.device).reshape(-1).long()
        if tt.numel() == 1:
            tt = tt.expand(B)
        if tt.numel() != B or bool((tt < 0).any()) or bool((tt >= self.precision_t.numel()).any()):
            raise ValueError(f"t must be {B} timesteps in 0..{self.precision_t.numel() - 1}, got {t!r}")
        clean = tt == 0
        tt = tt.clamp(min=1)
        c = self.precision_t[tt]                                     # (B,)
        m = self.mean[None, :, None, None]
        # (C^{-1} + c I)(x0_d - m), Fourier-diagonal
        vd = torch.fft.ifft2(torch.fft.fft2(zd - m) * (self.inv_spectra[None] + c[:, None, None, None])).real
        xi_d = torch.einsum("kde,bkd->bke", self.Q, vd.reshape(B, 3, -1))
        xi_i = torch.einsum("kde,bkd->bke", self.Q, (zi - m).reshape(B, 3, -1))
        p = self.p[None]
        cc = c[:, None, None]
        coef = (p * xi_i + xi_d) / (p + cc)
        out = torch.einsum("kde,bke->bkd", self.Q, coef).reshape(B, 3, w.size, w.size) + m
        if bool(clean.any()):
            out = torch.where(clean[:, None, None, None], zd, out)
        return self._rgb(out, x0_d)


__all__ = ["GaussianDenoiser", "GaussianFusion", "GaussianIR"]
