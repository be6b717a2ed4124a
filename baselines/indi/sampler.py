"""InDI's degradation path and its N-step iteration (Delbracio & Milanfar 2023, Sec. 3-4).

Path between the clean image x (t = 0) and the observation y (t = 1), with a small noise level eps_t::

    x_t = (1 - t) x + t y + t eps_t n,        n ~ N(0, I)                                   (path)

F(x_t, t) is trained to regress x from x_t, so it approximates E[x | x_t].  Sampling walks the path from
t = 1 to t = 0 in N steps of delta = 1/N, replacing x by F(x_t, t) in the path's own relation between
x_t and x_{t-delta}:

    x_{t-delta} = (delta / t) F(x_t, t) + (1 - delta / t) x_t + (t - delta) sqrt(eps_{t-delta}^2 - eps_t^2) z

Derivation of the noise term: with F = x and x_t on the path, (delta/t) x + (1 - delta/t) x_t =
(1 - s) x + s y + s eps_t n for s = t - delta, i.e. the path at s except that the noise std is s eps_t
instead of s eps_s; independent noise of std s sqrt(eps_s^2 - eps_t^2) restores it.  It needs
eps_s >= eps_t (eps non-increasing in t) and vanishes for a constant eps, the harness's default.  The
start is x_1 = y + eps_1 z, and the last step (t = delta, i = 1) returns F(x_delta, delta) itself.
NFE = N exactly.  With delta = 1/N and t = i/N the weight delta/t is exactly 1/i.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from dpir.rng import Generators, randn

XModel = Callable[[torch.Tensor, float], torch.Tensor]
EpsSchedule = float | Callable[[float], float]


def _eps_at(eps: EpsSchedule, t: float) -> float:
    return float(eps(t)) if callable(eps) else float(eps)


def degrade(x: torch.Tensor, y: torch.Tensor, t: torch.Tensor, eps: float, noise: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x + t y + t eps n for per-sample ``t`` of shape (B,) (the path above)."""
    t = t.to(x).view(-1, *([1] * (x.dim() - 1)))
    return (1.0 - t) * x + t * y + (t * eps) * noise


def indi_sample(model: XModel, y: torch.Tensor, steps: int, generator: Generators,
                eps: EpsSchedule = 0.0) -> torch.Tensor:
    """InDI inference (Delbracio & Milanfar 2023, Sec. 3, the small-step iteration; noise term derived in the
    module docstring): N = ``steps`` calls of ``model(x_t, t)`` at t = 1, (N-1)/N, ..., 1/N."""
    if steps < 1:
        raise ValueError(f"InDI needs steps >= 1, got {steps}")
    e1 = _eps_at(eps, 1.0)
    x = y + e1 * randn(y.shape, generator, device=y.device, dtype=y.dtype) if e1 > 0 else y
    for i in range(steps, 0, -1):
        t = i / steps
        x_hat = model(x, t)
        if i == 1:
            return x_hat
        x = x_hat / i + (1.0 - 1.0 / i) * x
        s = (i - 1) / steps
        var = _eps_at(eps, s) ** 2 - _eps_at(eps, t) ** 2
        if var < -1e-12:
            raise ValueError(f"InDI's eps_t must be non-increasing in t; eps({s}) < eps({t})")
        if var > 0:
            x = x + s * math.sqrt(var) * randn(x.shape, generator, device=x.device, dtype=x.dtype)
    return x
