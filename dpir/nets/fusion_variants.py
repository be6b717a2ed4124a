"""The fusion variants of DP-IR's ablation (Zhussip et al., NeurIPS 2024, Table 5).

All share the contract of :class:`dpir.nets.fusion.FusionNet`: ``forward(x0_ir, x0_d, t) -> x0_hat``.

* :class:`TDWA` (time-dependent weighted average): sinusoidal encoding of t -> 3-layer MLP -> sigmoid ->
  w in (0, 1)^3, and ``x0_hat = w * x0_IR + (1 - w) * x0_D`` per colour channel, in image space.
* :class:`LDWT` (learnable DWT weights): both estimates go through a 3-level orthonormal Haar DWT; every
  subband (3 levels x {H, V, D} details + the final approximation = 10) and colour channel has its own
  weight w = sigmoid(theta) (10 x 3 = 30 parameters, independent of t, as the paper's count says); the
  bands are mixed convexly and transformed back.
* :class:`FusionUNet`: a small U-Net on concat(x0_IR, x0_D) with a time embedding added to its features.
  The paper gives no architecture; ours is documented on the class.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dpir.nets.blocks import convex_combination, crop_to, pad_to_multiple, timestep_embedding

# ---------------------------------------------------------------------------------------------------
# Orthonormal 2-D Haar transform.  For each 2x2 block [[a, b], [c, d]]:
#   LL = (a + b + c + d) / 2      H = (a - b + c - d) / 2   (detail across columns)
#   V  = (a + b - c - d) / 2      D = (a - b - c + d) / 2   (diagonal detail)
# The 4x4 matrix is symmetric and orthogonal (H4 / 2), so the inverse uses the same formulas.
# ---------------------------------------------------------------------------------------------------

def haar_dwt2(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One level: ``x (B, C, H, W)`` with even H, W -> ``(LL (B, C, H/2, W/2), details (B, 3, C, H/2, W/2))``."""
    if x.shape[-2] % 2 or x.shape[-1] % 2:
        raise ValueError(f"haar_dwt2 needs even height and width, got {tuple(x.shape[-2:])}")
    a, b = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    c, d = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    ll = (a + b + c + d) / 2
    details = torch.stack([(a - b + c - d) / 2, (a + b - c - d) / 2, (a - b - c + d) / 2], dim=1)
    return ll, details


def haar_idwt2(ll: torch.Tensor, details: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`haar_dwt2`."""
    h, v, d = details.unbind(dim=1)
    B, C, H, W = ll.shape
    out = ll.new_empty(B, C, 2 * H, 2 * W)
    out[..., 0::2, 0::2] = (ll + h + v + d) / 2
    out[..., 0::2, 1::2] = (ll - h + v - d) / 2
    out[..., 1::2, 0::2] = (ll + h - v - d) / 2
    out[..., 1::2, 1::2] = (ll - h - v + d) / 2
    return out


def haar_wavedec2(x: torch.Tensor, levels: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``levels``-level decomposition: ``(approximation, [details of level 1 (finest), ..., level L])``."""
    details = []
    for _ in range(levels):
        x, d = haar_dwt2(x)
        details.append(d)
    return x, details


def haar_waverec2(approx: torch.Tensor, details: list[torch.Tensor]) -> torch.Tensor:
    for d in reversed(details):
        approx = haar_idwt2(approx, d)
    return approx


class TDWA(nn.Module):
    """Time-dependent weighted average in image space (DP-IR Table 5).

    Parameters: ``(t_dim h + h) + (h^2 + h) + (3 h + 3)`` with ``h = hidden`` (33,411 at the defaults).
    """

    def __init__(self, t_dim: int = 128, hidden: int = 128, channels: int = 3):
        super().__init__()
        self.t_dim = t_dim
        self.mlp = nn.Sequential(nn.Linear(t_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, channels))

    def weights(self, t: torch.Tensor | int) -> torch.Tensor:
        """w(t) in (0, 1)^C, shape ``(B, C)``: the weight of x0_IR."""
        t = torch.as_tensor(t, device=self.mlp[0].weight.device)
        return torch.sigmoid(self.mlp(timestep_embedding(t, self.t_dim)))

    def forward(self, x0_ir: torch.Tensor, x0_d: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        w = self.weights(t)[:, :, None, None]
        return convex_combination(w, x0_ir, x0_d)


class LDWT(nn.Module):
    """Learnable per-subband, per-channel convex weights on a Haar DWT (DP-IR Table 5; 30 parameters).

    ``theta_detail[l, k, c]`` (level l = 0 finest, band k in H, V, D, channel c) and ``theta_approx[c]``;
    the weight of x0_IR is sigmoid(theta), zero-initialised (plain average at the start).  ``t`` is
    accepted for the common contract and ignored.  Sizes that are not multiples of ``2^levels`` are
    reflect-padded and cropped back.
    """

    def __init__(self, levels: int = 3, channels: int = 3):
        super().__init__()
        self.levels = levels
        self.theta_detail = nn.Parameter(torch.zeros(levels, 3, channels))
        self.theta_approx = nn.Parameter(torch.zeros(channels))

    def forward(self, x0_ir: torch.Tensor, x0_d: torch.Tensor, t: torch.Tensor | int | None = None) -> torch.Tensor:
        m = 2**self.levels
        a_ir, size = pad_to_multiple(x0_ir, m)
        a_d, _ = pad_to_multiple(x0_d, m)
        a_ir, d_ir = haar_wavedec2(a_ir, self.levels)
        a_d, d_d = haar_wavedec2(a_d, self.levels)
        w_a = torch.sigmoid(self.theta_approx)[None, :, None, None]
        w_d = torch.sigmoid(self.theta_detail)[:, None, :, :, None, None]     # (L, 1, 3, C, 1, 1)
        approx = convex_combination(w_a, a_ir, a_d)
        details = [convex_combination(w_d[l], d_ir[l], d_d[l]) for l in range(self.levels)]
        return crop_to(haar_waverec2(approx, details), size)


class _TimeResBlock(nn.Module):
    """conv3x3 - SiLU - (+ time embedding) - conv3x3 - SiLU, plus a (1x1 if needed) skip: DDPM's ResBlock
    without group norm (the fusion batches are small and the net is shallow)."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.conv1(x)) + self.emb(e)[:, :, None, None]
        return self.skip(x) + F.silu(self.conv2(h))


class FusionUNet(nn.Module):
    """U-Net with time embedding on concat(x0_IR, x0_D) (DP-IR Table 5's "U-Net"; layout ours).

    * time: sinusoidal(t_dim) -> Linear(t_dim, emb) -> SiLU -> Linear(emb, emb), ``emb = t_dim``;
      every block adds a per-block linear projection of it to its features;
    * 3x3 conv 6 -> base; ``levels`` encoder blocks at ``base 2^i`` each followed by 2x2 average pooling;
      a middle block at ``base 2^levels``; decoder: nearest 2x up, concat skip, block back to ``base 2^i``;
      3x3 conv base -> 3;
    * the output is residual w.r.t. (x0_IR + x0_D) / 2, so an untrained net starts at the plain average.

    ``base=16, levels=3`` gives 596,115 parameters, of the order of :class:`FusionNet`'s ~0.7M so that
    the ablation compares architectures of similar size.
    """

    def __init__(self, base: int = 16, levels: int = 3, t_dim: int = 128, channels: int = 3):
        super().__init__()
        self.t_dim = t_dim
        self.multiple = 2**levels
        ch = [base * 2**i for i in range(levels + 1)]
        self.time_mlp = nn.Sequential(nn.Linear(t_dim, t_dim), nn.SiLU(), nn.Linear(t_dim, t_dim))
        self.head = nn.Conv2d(2 * channels, base, 3, padding=1)
        self.enc = nn.ModuleList(_TimeResBlock(ch[0] if i == 0 else ch[i - 1], ch[i], t_dim) for i in range(levels))
        self.mid = _TimeResBlock(ch[levels - 1], ch[levels], t_dim)
        self.dec = nn.ModuleList(_TimeResBlock(ch[i + 1] + ch[i], ch[i], t_dim) for i in range(levels))
        self.tail = nn.Conv2d(base, channels, 3, padding=1)

    def forward(self, x0_ir: torch.Tensor, x0_d: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        x, size = pad_to_multiple(torch.cat([x0_ir, x0_d], dim=1), self.multiple)
        t = torch.as_tensor(t, device=x.device)
        e = self.time_mlp(timestep_embedding(t, self.t_dim))
        if e.shape[0] == 1 and x.shape[0] > 1:
            e = e.expand(x.shape[0], -1)
        h = self.head(x)
        skips = []
        for block in self.enc:
            h = block(h, e)
            skips.append(h)
            h = F.avg_pool2d(h, 2)
        h = self.mid(h, e)
        for block, skip in zip(reversed(self.dec), reversed(skips)):
            h = block(torch.cat([F.interpolate(h, scale_factor=2, mode="nearest"), skip], dim=1), e)
        return crop_to(self.tail(h), size) + 0.5 * (x0_ir + x0_d)
