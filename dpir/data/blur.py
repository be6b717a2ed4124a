"""Synthetic camera-shake blur: the degradation of the embedded default config's deblurring proxy.

GoPro/HIDE blur comes from averaging high-speed video frames; that data is paper-scale only.  The
embedded config instead blurs clean images with random camera-shake kernels, ``y = k * x + n``:

* :func:`motion_kernel` draws a kernel from the camera-shake trajectory model of Boracchi & Foi,
  "Modeling the Performance of Image Restoration From Motion Blur" (IEEE TIP 2012), Sec. II, also used
  by DeblurGAN (Kupyn et al. 2018) to synthesise its blur: the camera position is a 2-D random walk
  with inertia (the velocity keeps its direction and only changes by a small random increment per
  step), a centripetal pull back towards the starting point, Gaussian jitter, and rare impulsive
  shakes that abruptly reverse the direction.  The trajectory is sampled at ``num_steps`` sub-pixel
  positions over the exposure and rasterised with bilinear splatting (each position spreads its unit
  mass over its 4 neighbouring pixels with weights (1-dx)(1-dy), dx(1-dy), ...).
* :func:`blur` convolves and adds white Gaussian noise; :func:`make_blur_pair` ties the two to a
  config dict, and :func:`save_kernel` / :func:`load_kernel` store the kernel next to the pair.

All randomness is drawn from the caller's ``torch.Generator`` (CPU), so one seed gives one kernel
and one noise field on every machine.
"""
from __future__ import annotations

import cmath
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dpir import rng
from dpir.errors import DpirError
from dpir.data.images import ImageTooSmall

# Per-trajectory constants of Boracchi & Foi's generator: centripetal pull 0.7 * U, impulsive-shake
# frequency 0.2 * U, Gaussian jitter 10 * U (U ~ uniform(0, 1)).  Their default anxiety, 0.1 * U, makes
# the direction decorrelate within ~10 of the 2000 steps, so most kernels are compact blobs a few
# percent of the path length wide; DeblurGAN instead uses anxieties between 5e-5 and 5e-3, which give
# the stroke-like kernels of camera shake.  Our default draws anxiety log-uniformly in that range.
ANXIETY_RANGE = (5e-5, 5e-3)
CENTRIPETAL_SCALE = 0.7
SHAKE_FREQ_SCALE = 0.2
JITTER_SCALE = 10.0


def _trajectory(num_steps: int, length: float, anxiety: float, generator: torch.Generator) -> np.ndarray:
    """Boracchi & Foi's random camera trajectory: ``num_steps`` complex positions (x + iy, pixels).

    Each step moves by exactly ``length / (num_steps - 1)``; the direction follows
        v_{t+1} = normalise(v_t + impulse_t + anxiety * (jitter * (g_x + i g_y) - c * x_t) * step)
    where ``impulse_t = 2 v_t exp(i (pi + (u - 0.5)))`` with probability ``shake_freq * anxiety`` (an
    abrupt, roughly reversed jerk) and 0 otherwise, and ``c`` pulls the camera back to its start.
    """
    scalars = rng.rand((4,), generator).double().tolist()
    centripetal = CENTRIPETAL_SCALE * scalars[0]
    shake_freq = SHAKE_FREQ_SCALE * scalars[1]
    jitter = JITTER_SCALE * scalars[2]
    angle = 2.0 * math.pi * scalars[3]
    # all per-step draws at once; the walk itself is sequential and cheap in plain Python floats
    u = rng.rand((num_steps - 1, 2), generator).double().tolist()
    g = rng.randn((num_steps - 1, 2), generator).double().tolist()

    step = length / (num_steps - 1)
    v = cmath.exp(1j * angle) * step
    x = [0j] * num_steps
    for t in range(num_steps - 1):
        impulse = 2.0 * v * cmath.exp(1j * (math.pi + (u[t][1] - 0.5))) if u[t][0] < shake_freq * anxiety else 0j
        dv = impulse + anxiety * (jitter * complex(g[t][0], g[t][1]) - centripetal * x[t]) * step
        v = v + dv
        # the camera speed is constant: only the direction wanders (v = 0 cannot stay: keep the old one)
        v = v / abs(v) * step if abs(v) > 0 else v
        x[t + 1] = x[t] + v
    return np.asarray(x, dtype=np.complex128)


def motion_kernel(size: int, generator: torch.Generator, *, length: float | None = None,
                  anxiety: float | None = None, num_steps: int = 2000, exposure: float = 1.0) -> torch.Tensor:
    """A random camera-shake blur kernel ``(size, size)``, float32, non-negative, summing to 1, with its
    centre of mass exactly at the centre pixel ``((size - 1) / 2, (size - 1) / 2)``.

    Args:
        size: odd kernel width/height (>= 3).
        generator: source of every random number (trajectory constants, steps).
        length: total path length of the camera trajectory in pixels over the full exposure
            (Boracchi & Foi's ``MaxTotalLength``); default ``size - 1``.  A trajectory whose extent
            does not fit the kernel after centring is shrunk about its centre (shape kept).
        anxiety: amount of shake (Boracchi & Foi's ``anxiety``); None draws it log-uniformly in
            [5e-5, 5e-3] (DeblurGAN's range; see ``ANXIETY_RANGE``).  0 gives a straight line.
        num_steps: trajectory samples over the full exposure (2000 in Boracchi & Foi / DeblurGAN).
        exposure: fraction in (0, 1] of the trajectory integrated into the kernel (their exposure
            time T); shorter exposures give shorter, straighter kernels.

    Centring: the kernel is the image of the trajectory samples under bilinear splatting, which keeps
    each sample's centre of mass, so translating the samples to have mean ``(c, c)`` makes the
    kernel's centre of mass exactly ``(c, c)``.  A centred kernel does not shift the image, so the
    blurred observation stays pixel-aligned with its ground truth (as GoPro's pairs are).
    """
    if not isinstance(size, int) or size < 3 or size % 2 == 0:
        raise DpirError(f"blur kernel_size must be an odd integer >= 3, not {size!r}")
    if not 0.0 < exposure <= 1.0:
        raise DpirError(f"blur exposure must be in (0, 1], not {exposure!r}")
    if num_steps < 2:
        raise DpirError(f"blur num_steps must be >= 2, not {num_steps!r}")
    length = float(size - 1) if length is None else float(length)
    if length < 0:
        raise DpirError(f"blur length must be >= 0, not {length!r}")
    if anxiety is None:
        lo, hi = math.log(ANXIETY_RANGE[0]), math.log(ANXIETY_RANGE[1])
        anxiety = math.exp(lo + (hi - lo) * float(rng.rand((1,), generator)))
    x = _trajectory(num_steps, length, float(anxiety), generator)
    x = x[: max(1, math.ceil(exposure * num_steps))]

    c = (size - 1) / 2.0
    px, py = x.real - x.real.mean(), x.imag - x.imag.mean()
    extent = max(np.abs(px).max(), np.abs(py).max())
    limit = c - 1e-9          # keeps floor(p) + 1 <= size - 1 for every sample
    if extent > limit:
        px, py = px * (limit / extent), py * (limit / extent)
    px, py = px + c, py + c

    # bilinear splatting: unit mass per sample over its 4 neighbours (float64 for an exact centre)
    x0, y0 = np.floor(px).astype(np.int64), np.floor(py).astype(np.int64)
    fx, fy = px - x0, py - y0
    k = np.zeros((size, size), dtype=np.float64)
    for dy, wy in ((0, 1.0 - fy), (1, fy)):
        for dx, wx in ((0, 1.0 - fx), (1, fx)):
            np.add.at(k, (y0 + dy, x0 + dx), wy * wx)
    k /= k.sum()
    return torch.from_numpy(k.astype(np.float32))


def centre_of_mass(k: torch.Tensor) -> tuple[float, float]:
    """(row, column) centre of mass of a 2-D kernel."""
    k = k.double()
    ys = torch.arange(k.shape[0], dtype=torch.float64)
    xs = torch.arange(k.shape[1], dtype=torch.float64)
    s = k.sum()
    return float((k.sum(1) * ys).sum() / s), float((k.sum(0) * xs).sum() / s)


def blur(x: torch.Tensor, kernel: torch.Tensor, noise_sigma: float, generator: torch.Generator,
         clip: bool = True) -> torch.Tensor:
    """``y = k * x + n``, n ~ N(0, noise_sigma^2): (C,H,W) in [0,1] -> (C,H,W).

    * True convolution (the kernel is flipped for ``conv2d``, which correlates), each channel alike.
    * Boundary: reflect padding by ``size // 2`` so the output has the input's size.  Zero padding
      would darken a band of kernel width around the border, and circular padding would smear the
      opposite edge in; reflection continues the scene plausibly, and it is also how restoration
      networks pad their inputs (dpir.nets.blocks.pad_to_multiple).
    * Noise is added after the blur; with ``clip=True`` (default) the result is clipped to [0, 1],
      as a sensor saturates and as the 8-bit PNG the prepare step writes must be.  Clipping biases the
      noise only within a few sigma of 0 and 1.
    """
    if x.dim() != 3:
        raise DpirError(f"blur expects one (C,H,W) image, got shape {tuple(x.shape)}")
    if kernel.dim() != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise DpirError(f"blur kernel must be 2-D with odd sides, got shape {tuple(kernel.shape)}")
    C, H, W = x.shape
    ph, pw = kernel.shape[0] // 2, kernel.shape[1] // 2
    if ph >= H or pw >= W:
        raise ImageTooSmall(f"image {H}x{W} is too small for a {kernel.shape[0]}x{kernel.shape[1]} blur kernel "
                        f"(reflect padding needs the image larger than half the kernel); use a smaller "
                        f"kernel_size or larger images")
    xp = F.pad(x[None].float(), (pw, pw, ph, ph), mode="reflect")
    w = kernel.flip(0, 1).to(xp).expand(C, 1, *kernel.shape)
    y = F.conv2d(xp, w, groups=C)[0]
    if noise_sigma > 0:
        y = y + noise_sigma * rng.randn(y.shape, generator, device=y.device)
    return y.clamp(0.0, 1.0) if clip else y


BLUR_KEYS = {"kernel_size", "noise_sigma", "length", "anxiety", "num_steps", "exposure", "clip"}


def make_blur_pair(gt: torch.Tensor, generator: torch.Generator, cfg: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """The deblurring degradation: (C,H,W) ground truth -> (blurred noisy y, kernel).

    ``cfg`` holds ``kernel_size`` (required, odd), ``noise_sigma`` (default 0, on the [0,1] scale) and
    optionally the :func:`motion_kernel` options ``length`` (a number, or ``[lo, hi]`` for a length
    drawn uniformly per image), ``anxiety``, ``num_steps``, ``exposure``, plus ``clip`` for
    :func:`blur`.  The kernel is drawn first, then the noise, both from ``generator``.
    """
    unknown = set(cfg) - BLUR_KEYS
    if unknown:
        raise DpirError(f"unknown blur degradation key(s) {sorted(unknown)}; allowed: {sorted(BLUR_KEYS)}")
    if "kernel_size" not in cfg:
        raise DpirError("the blur degradation needs `kernel_size` (an odd integer, e.g. 17)")
    length = cfg.get("length")
    if isinstance(length, (list, tuple)):
        if len(length) != 2 or not 0 <= length[0] <= length[1]:
            raise DpirError(f"blur length range must be [lo, hi] with 0 <= lo <= hi, not {length!r}")
        length = length[0] + (length[1] - length[0]) * float(rng.rand((1,), generator))
    k = motion_kernel(int(cfg["kernel_size"]), generator, length=length, anxiety=cfg.get("anxiety"),
                      num_steps=int(cfg.get("num_steps", 2000)), exposure=float(cfg.get("exposure", 1.0)))
    y = blur(gt, k, float(cfg.get("noise_sigma", 0.0)), generator, clip=bool(cfg.get("clip", True)))
    return y, k


def save_kernel(path: str | Path, k: torch.Tensor) -> None:
    """Store a kernel as a float32 ``.npy`` (exact round trip; a 16-bit PNG would quantise it)."""
    path = Path(path)
    if path.suffix != ".npy":
        raise DpirError(f"kernel files are .npy, not {path.suffix!r} ({path})")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npy")
    np.save(tmp, np.ascontiguousarray(k.detach().cpu().numpy().astype(np.float32)), allow_pickle=False)
    tmp.replace(path)


def load_kernel(path: str | Path) -> torch.Tensor:
    """Read a kernel written by :func:`save_kernel`, checking that it is a valid blur kernel."""
    path = Path(path)
    if not path.is_file():
        raise DpirError(f"blur kernel {path} is missing; re-run `dpir prepare` for this task")
    try:
        k = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DpirError(f"{path} is not a readable .npy kernel ({e}); re-run `dpir prepare`") from None
    if k.ndim != 2 or k.dtype != np.float32 or k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0:
        raise DpirError(f"{path} holds a {k.dtype} array of shape {k.shape}; expected a 2-D float32 kernel "
                        f"with odd sides")
    if not np.isfinite(k).all() or (k < 0).any() or abs(float(k.sum(dtype=np.float64)) - 1.0) > 1e-4:
        raise DpirError(f"{path} is not a blur kernel (needs finite, non-negative values summing to 1)")
    return torch.from_numpy(k)
