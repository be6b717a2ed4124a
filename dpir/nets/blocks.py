"""Building blocks shared by the networks we write (MIRNet-S, UDP, the DP-IR fusion nets).

Everything here is a small, stateless helper or layer:

* :func:`timestep_embedding` -- the sinusoidal positional encoding of a diffusion step (Vaswani et al.
  2017, as used by DDPM, Ho et al. 2020), the input of every time branch in DP-IR's fusion nets;
* :func:`convex_combination` -- ``w * a + (1 - w) * b``, the core of 3CA and TDWA (DP-IR, Sec. 3.3);
* :func:`noise_level_map` -- the noise level as a constant extra input channel (UDP, Brooks et al. 2019;
  reused by DP-IR for MIRNet-S);
* :func:`pad_to_multiple` / :func:`crop_to` -- let networks with ``k`` 2x down-samplings take any size;
* :class:`DenseBlock` -- a DenseNet-style block without batch norm (DP-IR's fusion net encoder/decoder).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor | int, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal encoding of diffusion steps ``t`` -> ``(B, dim)``: ``[sin(t f_k), cos(t f_k)]``.

    ``f_k = max_period^(-k / (dim/2))`` for ``k = 0 .. dim/2 - 1`` (Vaswani et al. 2017, Sec. 3.5; the
    DDPM convention puts all sines first, then all cosines).  ``t`` is a ``(B,)`` integer (or float)
    tensor or a Python int; the result is float32 on ``t``'s device.
    """
    if dim % 2:
        raise ValueError(f"timestep embedding dim must be even, got {dim}")
    t = torch.as_tensor(t)
    if t.dim() == 0:
        t = t[None]
    if t.dim() != 1:
        raise ValueError(f"timesteps must be a scalar or a (B,) tensor, got shape {tuple(t.shape)}")
    half = dim // 2
    k = torch.arange(half, device=t.device, dtype=torch.float32)
    freqs = torch.exp(-math.log(max_period) * k / half)
    args = t.to(torch.float32)[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


def convex_combination(w: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``w * a + (1 - w) * b``; with ``w`` in (0, 1) per channel this is DP-IR's 3CA / TDWA fusion rule.

    Written with two products (not ``b + w * (a - b)``) so that ``w == 1`` returns exactly ``a`` and
    ``w == 0`` exactly ``b`` in floating point: a saturated weight really switches one branch off.
    """
    return w * a + (1 - w) * b


def noise_level_map(sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """The noise level as one constant channel ``(B, 1, H, W)`` matching ``x`` (device and dtype).

    ``sigma`` is a Python/0-d scalar (same level for the batch), or has ``B`` elements (``(B,)`` or
    ``(B, 1, 1, 1)``): one level per image, on the [0, 1] image scale.
    """
    B, _, H, W = x.shape
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if s.numel() == 1:
        s = s.reshape(1).expand(B)
    elif s.numel() == B:
        s = s.reshape(B)
    else:
        raise ValueError(f"sigma must be a scalar or hold one value per image (B={B}), got shape {tuple(s.shape)}")
    return s.view(B, 1, 1, 1).expand(B, 1, H, W)


def with_noise_channel(x: torch.Tensor, sigma, enabled: bool, owner: str) -> torch.Tensor:
    """The denoisers' input: ``x`` with the noise level appended as a constant channel (UDP style)."""
    if not enabled:
        return x
    if sigma is None:
        raise ValueError(f"{owner}(noise_channel=True) needs the noise level sigma")
    return torch.cat([x, noise_level_map(sigma, x)], dim=1)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad ``x`` at the bottom/right so H and W are multiples of ``multiple``; return it and the old size.

    Reflect padding avoids a dark/bright border that zero padding would feed to the network; when the
    image is too small to reflect (pad >= size) replicate padding is used instead.
    """
    H, W = x.shape[-2:]
    ph, pw = (-H) % multiple, (-W) % multiple
    if ph or pw:
        mode = "reflect" if ph < H and pw < W else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (H, W)


def crop_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return x[..., : size[0], : size[1]]


def conv3x3(c_in: int, c_out: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias)


class DenseBlock(nn.Module):
    """DenseNet-style block (Huang et al. 2017) without batch norm, with local feature fusion.

    ``n_layers`` 3x3 conv + LeakyReLU(0.2) layers, layer ``i`` sees the concatenation of the input and
    all previous outputs (``n_f + i * growth`` channels) and adds ``growth`` channels; a 1x1 conv fuses
    the ``n_f + n_layers * growth`` channels back to ``n_f`` and the block input is added (the residual
    dense block of RDN, Zhang et al. 2018, which keeps deep stacks trainable without normalisation).

    Parameters (all convs with bias)::

        sum_{i<L} (9 (n_f + i g) g + g)  +  (n_f + L g) n_f + n_f
    """

    def __init__(self, n_f: int, growth: int, n_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(conv3x3(n_f + i * growth, growth) for i in range(n_layers))
        self.fuse = nn.Conv2d(n_f + n_layers * growth, n_f, 1)
        self.act = nn.LeakyReLU(0.2)

    @staticmethod
    def n_params(n_f: int, growth: int, n_layers: int) -> int:
        convs = sum(9 * (n_f + i * growth) * growth + growth for i in range(n_layers))
        return convs + (n_f + n_layers * growth) * n_f + n_f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for layer in self.layers:
            feats.append(self.act(layer(torch.cat(feats, dim=1))))
        return x + self.fuse(torch.cat(feats, dim=1))
