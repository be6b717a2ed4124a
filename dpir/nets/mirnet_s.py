"""MIRNet-S: the Gaussian denoiser phi_D of DP-IR.

MIRNet is from Zamir et al., "Learning Enriched Features for Real Image Restoration and Enhancement"
(ECCV 2020, arXiv 2003.06792).  DP-IR (Zhussip et al., NeurIPS 2024, appendix) uses a reduced
"MIRNet-S" with one multi-scale residual block (MSRB) per recursive residual group (RRG) instead of
two, and gives it the noise level as an extra constant input channel (as UDP does).

Layout (paper Fig. 1-4 and the official code's defaults; every line here is our own):

* ``conv_in`` (3x3, (3 + 1) -> n_feat), ``n_rrg`` RRGs, ``conv_out`` (3x3, n_feat -> 3), and the output
  is ``x + conv_out(...)``: the net predicts the negative noise (residual learning).
* RRG = ``n_msrb`` MSRBs, then a 3x3 conv, plus the group's input (long skip).
* MSRB (paper Sec. 3.1, Fig. 2): ``height`` parallel streams at resolutions 1, 1/2, 1/4 with
  ``n_feat * 2^j`` channels; ``width`` columns of dual attention units (DAU) per stream; before every
  column but the first, each stream receives the SKFF fusion of all streams resampled to its scale
  (the "mesh" of the official code); after the last column all streams are brought to full resolution
  and fused by SKFF, then a 3x3 conv and the MSRB input are added.
* DAU (Fig. 4): conv-PReLU-conv, then spatial attention (channel max & mean -> 5x5 conv -> sigmoid) and
  channel attention (global average pool -> 1x1 conv c->c/8 -> ReLU -> 1x1 conv -> sigmoid) in parallel,
  concatenated, 1x1 conv back to c, plus the input.
* SKFF (Fig. 3): sum the streams, global average pool, 1x1 conv to ``max(c/8, 4)`` + PReLU, one 1x1 conv
  per stream, softmax across streams, weighted sum.
* Residual resizing (Fig. 5): down = [1x1, PReLU, 3x3, PReLU, anti-aliased 2x down (3-tap binomial blur,
  Zhang 2019, reflect padding), 1x1 c->2c] + [anti-aliased 2x down, 1x1 c->2c]; up = [1x1, PReLU,
  3x3 transposed conv stride 2, PReLU, 1x1 c->c/2] + [bilinear 2x, 1x1 c->c/2].  Scale factors 4 chain
  two of them.  Separate resizing modules exist per (channels, factor) pair, as in the official code.

Where we follow the official code rather than the paper's drawings, and what differs:

* ``share_width=True`` (default, = official): the official MSRB builds each stream's column list as
  ``[DAU(c)] * width``, i.e. ONE DAU per stream applied ``width`` times.  We keep that weight sharing
  (it is what the published MIRNet parameter count, 31.8M, measures) but store the DAU once, so state
  dicts have no aliased tensors.  ``share_width=False`` gives every column its own DAU.
* The official DAU's PReLU is a default argument (``act=nn.PReLU()``) and therefore one single parameter
  shared by every DAU of every model in the process: a Python accident we do not reproduce; each DAU has
  its own single-parameter PReLU.
* The official resizing modules and the RRG's tail conv ignore ``bias`` (always bias-free); ours take
  the model's ``bias`` flag, which is identical at the default ``bias=False``.
* Additions for DP-IR: the noise-level channel (``noise_channel``) and internal reflect padding to a
  multiple of ``2^(height-1)`` with cropping back, so any size >= 1 px works.
* Modules that the forward pass never uses are not built (with ``width=1`` the official MSRB still
  creates the cross-scale resamplers and SKFFs of the mesh); at ``width >= 2`` nothing is left out.
* ``stride`` must be 2 (the residual resizing modules double/halve channels; the official code has the
  same constraint implicitly).

Parameter count: :func:`mirnet_n_params` (a closed formula per module, tested against ``numel``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dpir.nets.blocks import crop_to, pad_to_multiple, with_noise_channel


def _conv(c_in: int, c_out: int, k: int, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=bias)


class AntiAliasDown(nn.Module):
    """Blur with the 3-tap binomial filter [1,2,1]^T [1,2,1] / 16, then keep every 2nd pixel (Zhang 2019)."""

    def __init__(self, channels: int):
        super().__init__()
        a = torch.tensor([1.0, 2.0, 1.0])
        filt = (a[:, None] * a[None, :]) / 16.0
        # a constant, not a weight: kept out of the state dict
        self.register_buffer("filt", filt[None, None].repeat(channels, 1, 1, 1), persistent=False)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (1, 1, 1, 1), mode="reflect" if min(x.shape[-2:]) > 1 else "replicate")
        return F.conv2d(x, self.filt.to(x.dtype), stride=2, groups=self.channels)


class SpatialAttention(nn.Module):
    def __init__(self, kernel_size: int = 5):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class ChannelAttention(nn.Module):
    def __init__(self, c: int, reduction: int, bias: bool):
        super().__init__()
        self.down = nn.Conv2d(c, c // reduction, 1, bias=bias)
        self.up = nn.Conv2d(c // reduction, c, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.up(F.relu(self.down(z))))


class DAU(nn.Module):
    """Dual attention unit (MIRNet Sec. 3.3, Fig. 4)."""

    def __init__(self, c: int, bias: bool, reduction: int = 8):
        super().__init__()
        self.body = nn.Sequential(_conv(c, c, 3, bias), nn.PReLU(), _conv(c, c, 3, bias))
        self.sa = SpatialAttention()
        self.ca = ChannelAttention(c, reduction, bias)
        self.fuse = nn.Conv2d(2 * c, c, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.body(x)
        return x + self.fuse(torch.cat([self.sa(r), self.ca(r)], dim=1))


class SKFF(nn.Module):
    """Selective kernel feature fusion of ``n_in`` same-shaped streams (MIRNet Sec. 3.2, Fig. 3)."""

    def __init__(self, c: int, n_in: int, bias: bool, reduction: int = 8):
        super().__init__()
        d = max(c // reduction, 4)
        self.squeeze = nn.Sequential(nn.Conv2d(c, d, 1, bias=bias), nn.PReLU())
        self.select = nn.ModuleList(nn.Conv2d(d, c, 1, bias=bias) for _ in range(n_in))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        # no (B, n, c, H, W) stack: the streams are large and only their sum and weighted sum are needed
        z = self.squeeze(sum(feats).mean(dim=(2, 3), keepdim=True))
        a = torch.softmax(torch.stack([fc(z) for fc in self.select], dim=0), dim=0)   # (n, B, c, 1, 1)
        return sum(f * a_k for f, a_k in zip(feats, a))


class ResidualDown(nn.Module):
    """2x down, c -> 2c channels (MIRNet Fig. 5b)."""

    def __init__(self, c: int, bias: bool):
        super().__init__()
        self.top = nn.Sequential(nn.Conv2d(c, c, 1, bias=bias), nn.PReLU(), _conv(c, c, 3, bias), nn.PReLU(),
                                 AntiAliasDown(c), nn.Conv2d(c, 2 * c, 1, bias=bias))
        self.bot = nn.Sequential(AntiAliasDown(c), nn.Conv2d(c, 2 * c, 1, bias=bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.top(x) + self.bot(x)


class ResidualUp(nn.Module):
    """2x up, c -> c/2 channels (MIRNet Fig. 5a)."""

    def __init__(self, c: int, bias: bool):
        super().__init__()
        self.top = nn.Sequential(nn.Conv2d(c, c, 1, bias=bias), nn.PReLU(),
                                 nn.ConvTranspose2d(c, c, 3, stride=2, padding=1, output_padding=1, bias=bias),
                                 nn.PReLU(), nn.Conv2d(c, c // 2, 1, bias=bias))
        self.bot = nn.Conv2d(c, c // 2, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # official order is bilinear-then-1x1; both are linear and commute (bilinear keeps constants),
        # so the 1x1 runs first on 4x fewer pixels
        bot = F.interpolate(self.bot(x), scale_factor=2, mode="bilinear", align_corners=False)
        return self.top(x) + bot


def _resample_chain(c: int, steps: int, up: bool, bias: bool) -> nn.Sequential:
    mods = []
    for _ in range(steps):
        mods.append(ResidualUp(c, bias) if up else ResidualDown(c, bias))
        c = c // 2 if up else c * 2
    return nn.Sequential(*mods)


class MSRB(nn.Module):
    """Multi-scale residual block (MIRNet Sec. 3.1, Fig. 2)."""

    def __init__(self, n_feat: int, height: int, width: int, bias: bool, share_width: bool):
        super().__init__()
        self.height, self.width, self.share_width = height, width, share_width
        ch = [n_feat * 2**j for j in range(height)]
        n_dau = 1 if share_width else width
        # daus[j][i]: stream j, column i (one module per stream when shared across the width)
        self.daus = nn.ModuleList(nn.ModuleList(DAU(c, bias) for _ in range(n_dau)) for c in ch)
        # resample[f"{k}_{j}"] maps stream k to stream j's scale and channel count
        self.resample = nn.ModuleDict()
        if width > 1:
            for j in range(height):
                for k in range(height):
                    if k != j:
                        self.resample[f"{k}_{j}"] = _resample_chain(ch[k], abs(j - k), up=k > j, bias=bias)
        else:
            # the first column only needs the one-step downs between neighbouring streams
            for k in range(height - 1):
                self.resample[f"{k}_{k + 1}"] = _resample_chain(ch[k], 1, up=False, bias=bias)
        self.last_up = nn.ModuleList(_resample_chain(ch[k], k, up=True, bias=bias) for k in range(1, height))
        self.fuse = nn.ModuleList(SKFF(c, height, bias) for c in (ch if width > 1 else ch[:1]))
        self.conv_out = _conv(n_feat, n_feat, 3, bias)

    def dau(self, j: int, i: int) -> DAU:
        return self.daus[j][0 if self.share_width else i]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # column 0: each stream starts from the (down-sampled) output of the stream above it
        streams, h = [], x
        for j in range(self.height):
            if j > 0:
                h = self.resample[f"{j - 1}_{j}"](h)
            h = self.dau(j, 0)(h)
            streams.append(h)
        # further columns: information exchange across all scales through SKFF, then DAUs
        for i in range(1, self.width):
            mixed = []
            for j in range(self.height):
                inputs = [s if k == j else self.resample[f"{k}_{j}"](s) for k, s in enumerate(streams)]
                mixed.append(self.fuse[j](inputs))
            streams = [self.dau(j, i)(m) for j, m in enumerate(mixed)]
        full = [streams[0]] + [up(s) for up, s in zip(self.last_up, streams[1:])]
        return x + self.conv_out(self.fuse[0](full))


class RRG(nn.Module):
    """Recursive residual group: MSRBs, a 3x3 conv, and the group input added."""

    def __init__(self, n_feat: int, n_msrb: int, height: int, width: int, bias: bool, share_width: bool):
        super().__init__()
        self.body = nn.Sequential(*(MSRB(n_feat, height, width, bias, share_width) for _ in range(n_msrb)),
                                  _conv(n_feat, n_feat, 3, bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class MIRNetS(nn.Module):
    """MIRNet(-S) Gaussian denoiser ``forward(x, sigma) -> x_hat`` (see the module docstring).

    ``x``: ``(B, in_channels, H, W)`` noisy image; ``sigma``: noise std on the [0, 1] scale, a scalar or
    one value per image (ignored, and may be None, when ``noise_channel=False``).  Defaults are the
    official MIRNet values with ``n_msrb=1`` (MIRNet-S, DP-IR appendix).
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, n_feat: int = 64, kernel_size: int = 3,
                 stride: int = 2, n_rrg: int = 3, n_msrb: int = 1, height: int = 3, width: int = 2,
                 bias: bool = False, noise_channel: bool = True, share_width: bool = True,
                 precondition: str = "none", sigma_data: float = 0.5):
        super().__init__()
        if precondition not in ("none", "edm"):
            raise ValueError(f"precondition must be 'none' or 'edm', got {precondition!r}")
        if precondition == "edm" and not noise_channel:
            raise ValueError("precondition 'edm' conditions on the noise level: it needs noise_channel=True")
        self.precondition, self.sigma_data = precondition, float(sigma_data)
        if stride != 2:
            raise ValueError(f"MIRNet's residual resizing modules need stride 2, got {stride}")
        if height < 1 or width < 1 or n_feat < 8:
            raise ValueError(f"need height >= 1, width >= 1, n_feat >= 8; got {height}, {width}, {n_feat}")
        if out_channels != in_channels:
            raise ValueError("the output is residual w.r.t. the input image: out_channels must equal in_channels")
        self.noise_channel = noise_channel
        self.multiple = 2 ** (height - 1)
        self.conv_in = _conv(in_channels + int(noise_channel), n_feat, kernel_size, bias)
        self.body = nn.Sequential(*(RRG(n_feat, n_msrb, height, width, bias, share_width) for _ in range(n_rrg)))
        self.conv_out = _conv(n_feat, out_channels, kernel_size, bias)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        if self.precondition == "edm":
            return self._forward_edm(x, sigma)
        x_in, size = pad_to_multiple(x, self.multiple)
        h = with_noise_channel(x_in, sigma, self.noise_channel, "MIRNetS")
        out = x_in + self.conv_out(self.body(self.conv_in(h)))
        return crop_to(out, size)

    def _forward_edm(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """EDM's preconditioning (Karras et al. 2022, Table 1), for a denoiser over every noise level of a
        T = 1000 chain (sigma~ up to ~157, where the plain residual form would have to cancel noise 157
        times the image): D(x, s) = c_skip x + c_out F(c_in x, c_noise) with c_skip = sd^2 / (s^2 + sd^2),
        c_out = s sd / sqrt(s^2 + sd^2), c_in = 1 / sqrt(s^2 + sd^2), c_noise = ln(s) / 4 (the noise
        channel), sd = ``sigma_data`` (0.5: the RMS of [0, 1] images).  F is the MIRNet body without its
        image residual.  s = 0 gives D = x; c_noise uses max(s, 1e-3)."""
        if sigma is None:
            raise ValueError("MIRNetS(precondition='edm') needs the noise level sigma")
        B = x.shape[0]
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
        s = (s.expand(B) if s.numel() == 1 else s).view(B, 1, 1, 1)
        sd2 = self.sigma_data ** 2
        c_skip = sd2 / (s * s + sd2)
        c_out = s * self.sigma_data / (s * s + sd2).sqrt()
        c_in = 1.0 / (s * s + sd2).sqrt()
        c_noise = torch.log(s.clamp_min(1e-3)).view(B) / 4.0
        x_in, size = pad_to_multiple(c_in * x, self.multiple)
        h = with_noise_channel(x_in, c_noise, True, "MIRNetS")
        out = c_skip * x + c_out * crop_to(self.conv_out(self.body(self.conv_in(h))), size)
        return out


# ---------------------------------------------------------------------------------------------------
# Parameter count, module by module (c = channels of the module, b = 1 if bias else 0, r = 8).
#   DAU(c)            = 20 c^2 + 2 c (c // r) + 51 + b (4c + c // r)      [2 conv3x3, 1x1 2c->c, CA, SA 5x5x2, PReLU]
#   ResidualDown(c)   = 14 c^2 + 2 + 6 b c
#   ResidualUp(c)     = 11 c^2 + 2 + 3 b c                                 [c even]
#   SKFF(c, n)        = (n + 1) c d + 1 + b (d + n c),  d = max(c // r, 4)
#   MSRB              = DAUs + resampling chains + last_up chains + SKFFs + conv3x3
#   RRG               = n_msrb MSRB + 9 C^2 (+ b C);   MIRNet = conv_in + n_rrg RRG + conv_out
# ---------------------------------------------------------------------------------------------------

def mirnet_n_params(in_channels: int = 3, out_channels: int = 3, n_feat: int = 64, kernel_size: int = 3,
                    stride: int = 2, n_rrg: int = 3, n_msrb: int = 1, height: int = 3, width: int = 2,
                    bias: bool = False, noise_channel: bool = True, share_width: bool = True,
                    precondition: str = "none", sigma_data: float = 0.5) -> int:
    """Closed-form parameter count of :class:`MIRNetS` (same arguments; the preconditioning has none)."""
    b, r = int(bias), 8

    def dau(c):
        return 20 * c * c + 2 * c * (c // r) + 51 + b * (4 * c + c // r)

    def down(c):
        return 14 * c * c + 2 + 6 * b * c

    def up(c):
        return 11 * c * c + 2 + 3 * b * c

    def skff(c, n):
        d = max(c // r, 4)
        return (n + 1) * c * d + 1 + b * (d + n * c)

    def chain(c, steps, is_up):
        total = 0
        for _ in range(steps):
            total += up(c) if is_up else down(c)
            c = c // 2 if is_up else c * 2
        return total

    ch = [n_feat * 2**j for j in range(height)]
    msrb = sum(dau(c) for c in ch) * (1 if share_width else width)
    if width > 1:
        msrb += sum(chain(ch[k], abs(j - k), k > j) for j in range(height) for k in range(height) if k != j)
        msrb += sum(skff(c, height) for c in ch)
    else:
        msrb += sum(down(ch[k]) for k in range(height - 1)) + skff(ch[0], height)
    msrb += sum(chain(ch[k], k, True) for k in range(1, height))
    msrb += 9 * n_feat * n_feat + b * n_feat
    rrg = n_msrb * msrb + 9 * n_feat * n_feat + b * n_feat
    k2 = kernel_size**2
    head = (in_channels + int(noise_channel)) * n_feat * k2 + b * n_feat
    tail = n_feat * out_channels * k2 + b * out_channels
    return head + n_rrg * rrg + tail
