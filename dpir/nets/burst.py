"""BSRT: the burst super-resolution network used as DP-IR's E[x0 | y] for burst JDD-SR.

Luo et al., "BSRT: Improving Burst Super-Resolution with Swin Transformer and Flow-Guided Deformable
Alignment" (CVPRW 2022, arXiv 2204.08332).  Input: a burst of N packed RGGB frames (B, N, 4, h, w)
(frame 0 is the reference); output: linear RGB (B, 3, 8h, 8w) -- 2x for the RGGB packing times the
4x SR factor (48x48x4 SyntheticBurst frames -> 384x384).  The output is not clamped.

Topology (paper Fig. 2; module names follow the official code so its state dict keys line up):

1. ``conv_first`` (4 -> embed, 3x3) + LeakyReLU(0.1) on every frame, then per-frame feature
   extraction at the packed resolution: ``extract="swin"`` (official ``--swinfeature``):
   ``patch_embed.norm`` + ``depths[0]`` Swin blocks (``pre_layers``, windows alternating unshifted /
   shifted) + ``pre_norm``; ``extract="conv"``: ``depths[0]`` residual conv blocks
   (``feature_extraction``).  ``conv_after_pre_layer`` (embed -> 4 num_feat) + PixelShuffle(2) brings
   the features to the mosaic resolution 2h x 2w, where alignment and the trunk run.
2. A 3-level feature pyramid (``fea_L2_conv1``, ``fea_L3_conv1``, stride 2) refined top-down like an
   FPN (``toplayer``, ``latlayer1/2``, ``smooth1/2``).
3. Alignment of every frame to frame 0 (``align``): EDVR's pyramid-cascading-deformable (PCD) module
   with modulated deformable convolutions (DCNv2: ``torchvision.ops.deform_conv2d`` with its ``mask``
   argument, offsets laid out as interleaved (dy, dx) pairs per kernel tap and deformable group, the
   layout of the official DCNv2 extension; on CPU an equivalent grid_sample form is used, whose
   backward is ~10x faster).  With ``flow=True`` (BSRT's flow-guided deformable
   alignment) SpyNet flows from frame 0 to each frame are computed on the re-mosaicked frames
   (``conv_flow`` after PixelShuffle(2)) at the three pyramid scales; the offset predictors see the
   flow-warped neighbour features and the flow, and each DCN's offsets are
   ``max_residue * tanh(predicted) + flow`` (official max_residue 10).  With ``flow=False`` (the CPU
   config) the offsets are predicted from the concatenated neighbour and reference features alone
   (EDVR's PCD), without the tanh bound.  A final cascading DCN (``cas_*``) refines both variants.
4. Fusion: the N aligned feature maps are concatenated and mixed by a 1x1 conv (``fusion``), so
   ``burst_size`` is fixed by the weights (the official non-local fusion option is not built).
5. Reconstruction trunk at 2h x 2w: ``trunk="swin"``: ``patch_embed.norm`` + RSTBs with
   ``depths[1:]`` Swin blocks each (SwinIR's residual Swin transformer blocks, taken from spandrel)
   + ``norm``; ``trunk="conv"``: groups of residual conv blocks.  Then ``conv_after_body`` and a long
   skip.
6. Upsampling: ``upconv1`` + PixelShuffle(2) (-> 4h) plus a skip branch from the reference frame
   (``skipup1`` on its Bayer mosaic), ``upconv2`` + PixelShuffle(2) (-> 8h), ``HRconv``, ``conv_last``,
   plus the second skip (``skipup2`` + PixelShuffle) -> RGB at 8h.

Official configurations (``CONFIGS``): Small = embed 60, depths [6]+[6]*4, heads 6, window 8, mlp 2,
num_feat 64, deformable groups 8, burst 14, flow guidance, Swin feature extraction; Large = embed 180,
depths [6]+[8]*6.  ``CONFIGS["cpu_small"]`` is the embedded config's CPU-sized network (feature-only
offsets, conv feature extraction, a 2-group Swin trunk, num_feat 12).  Parameter counts (tested):
official_small 4,915,665 and official_large 20,713,905 -- the paper's 4.92M and 20.71M, SpyNet's
1,440,300 included -- and cpu_small 240,707.

Official checkpoints: at ``extract="swin", trunk="swin", flow=True`` every parameter of the official
model exists here with the same name and shape (as do the official file's SpyNet ``mean``/``std`` and
``relative_position_index`` buffers); our ``attn_mask`` buffers are not saved (they are recomputed), so
an official state dict (after stripping a DDP ``module.`` prefix) should load strictly.  This has not
been checked against the real checkpoint, which is only on Google Drive.  Differences from the
official forward pass, none of which changes the result on SyntheticBurst-sized inputs:
* features whose size is not a multiple of the window are reflect-padded for the Swin stages and
  cropped back (the official code requires multiples);
* SpyNet resizes its input to at least 64 px (the official code fails below that);
* flows and alignment run batched over all frames (the official code loops over frames);
* drop-path is 0 (0.1 in official training; inactive at inference anyway).
``extract="conv"`` uses plain residual blocks, not the official WideActResBlock, and ``flow=False``
changes the offset convs' input channels: neither maps onto an official checkpoint.
``base_skip=True`` (CPU config only; no parameters) adds the bilinear-demosaicked, 4x bilinear-upsampled
reference frame to the output, so the network learns a residual over the single-frame baseline: with a
few hundred CPU steps the official topology learns luminance but not yet the colour of the RGGB
mosaic, and scored below the baseline (17.07 vs 19.05 dB sRGB PSNR on the bundled test bursts; 19.88
with the skip, same training).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from spandrel.architectures.SwinIR.__arch.SwinIR import RSTB, SwinTransformerBlock
from torch import nn
from torchvision.ops import deform_conv2d

from dpir.errors import DpirError
from dpir.nets.blocks import crop_to, pad_to_multiple

CONFIGS: dict[str, dict] = {
    "official_small": {"burst_size": 14, "embed_dim": 60, "depths": [6, 6, 6, 6, 6], "num_heads": [6, 6, 6, 6, 6],
                       "window_size": 8, "mlp_ratio": 2.0, "num_feat": 64, "groups": 8, "flow": True,
                       "extract": "swin", "trunk": "swin"},
    "official_large": {"burst_size": 14, "embed_dim": 180, "depths": [6] + [8] * 6, "num_heads": [6] * 7,
                       "window_size": 8, "mlp_ratio": 2.0, "num_feat": 64, "groups": 8, "flow": True,
                       "extract": "swin", "trunk": "swin"},
    "cpu_small": {"burst_size": 14, "embed_dim": 32, "depths": [2, 2, 2], "num_heads": [4, 4, 4], "window_size": 8,
                  "mlp_ratio": 2.0, "num_feat": 12, "groups": 4, "flow": False, "extract": "conv", "trunk": "swin",
                  "base_skip": True},
}


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.1)


def _up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def flow_warp(x: torch.Tensor, flow: torch.Tensor, padding_mode: str = "zeros") -> torch.Tensor:
    """Sample ``x`` at ``p + flow(p)``: flow (B, 2, H, W) in pixels, channel 0 = dx, 1 = dy; bilinear,
    pixel centres at integer positions (grid_sample with align_corners=True)."""
    H, W = x.shape[-2:]
    gy, gx = torch.meshgrid(torch.arange(H, dtype=x.dtype, device=x.device),
                            torch.arange(W, dtype=x.dtype, device=x.device), indexing="ij")
    sx = gx + flow[:, 0]
    sy = gy + flow[:, 1]
    grid = torch.stack([2.0 * sx / max(W - 1, 1) - 1.0, 2.0 * sy / max(H - 1, 1) - 1.0], dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True)


# ---------------------------------------------------------------------------------- alignment

def deform_conv2d_sampled(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                          mask: torch.Tensor) -> torch.Tensor:
    """Modulated deformable convolution (stride 1, 'same' padding) written as bilinear sampling plus a
    matrix product: every tap k of every deformable group samples its input channels at
    ``p + p_k + (dy, dx)_{g,k}(p)`` (zeros outside, as the DCN kernels), scales by the mask, and the
    weights contract channels and taps.  Same numbers as ``torchvision.ops.deform_conv2d`` (tested);
    on CPU its backward pass is about 10x faster, which is what the CPU training budget needs.
    """
    B, C, H, W = x.shape
    kh, kw = weight.shape[-2:]
    K = kh * kw
    G = offset.shape[1] // (2 * K)
    off = offset.view(B, G, K, 2, H, W)
    ky, kx = torch.meshgrid(torch.arange(kh, dtype=x.dtype, device=x.device) - (kh - 1) // 2,
                            torch.arange(kw, dtype=x.dtype, device=x.device) - (kw - 1) // 2, indexing="ij")
    sy = torch.arange(H, dtype=x.dtype, device=x.device).view(H, 1) + ky.reshape(K, 1, 1) + off[:, :, :, 0]
    sx = torch.arange(W, dtype=x.dtype, device=x.device).view(1, W) + kx.reshape(K, 1, 1) + off[:, :, :, 1]
    grid = torch.stack([2.0 * sx / max(W - 1, 1) - 1.0, 2.0 * sy / max(H - 1, 1) - 1.0], dim=-1)
    cols = F.grid_sample(x.reshape(B * G, C // G, H, W), grid.reshape(B * G, K * H, W, 2), mode="bilinear",
                         padding_mode="zeros", align_corners=True)           # (B*G, C/G, K*H, W)
    cols = cols.view(B, G, C // G, K, H, W) * mask.view(B, G, 1, K, H, W)
    out = torch.einsum("ok,bkhw->bohw", weight.reshape(weight.shape[0], C * K), cols.reshape(B, C * K, H, W))
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def modulated_deform_conv2d(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor,
                            bias: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor:
    """DCNv2 with a 3x3 kernel, stride 1, padding 1: torchvision's kernel on GPUs, the sampled form on CPU."""
    if x.is_cuda:
        return deform_conv2d(x, offset, weight, bias, padding=(1, 1), mask=mask)
    return deform_conv2d_sampled(x, offset, weight, bias, mask)


class ModulatedDeformConv(nn.Module):
    """DCNv2 (Zhu et al. 2019) whose offsets and modulation masks come from separate features.

    Parameters as the official DCNv2 ``DCN_sep`` / ``FlowGuidedDCN``: ``weight`` (C, C, 3, 3), ``bias``,
    and ``conv_offset_mask`` (3x3, C -> 3 * groups * 9), zero-initialised so a fresh module samples
    the regular grid (offset 0, or exactly the flow) with mask sigmoid(0) = 0.5.  The first two thirds
    of its output are the offsets, in the interleaved (dy, dx) per tap layout that
    ``torchvision.ops.deform_conv2d`` shares with the DCNv2 extension; the last third the masks.
    ``max_residue`` (flow-guided): offsets = max_residue * tanh(pred) + flow, flow (B, 2, H, W) as (dx, dy).
    """

    def __init__(self, channels: int, groups: int, max_residue: float | None = None):
        super().__init__()
        self.groups, self.max_residue = groups, max_residue
        self.weight = nn.Parameter(torch.empty(channels, channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(channels))
        bound = 1.0 / math.sqrt(channels * 9)
        nn.init.uniform_(self.weight, -bound, bound)
        self.conv_offset_mask = nn.Conv2d(channels, 3 * groups * 9, 3, 1, 1)
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)

    def deform(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return modulated_deform_conv2d(x, offset, self.weight, self.bias, mask)

    def forward(self, x: torch.Tensor, fea: torch.Tensor, flow: torch.Tensor | None = None) -> torch.Tensor:
        o1, o2, m = self.conv_offset_mask(fea).chunk(3, dim=1)
        offset = torch.cat([o1, o2], dim=1)
        if flow is not None:
            # (dx, dy) -> (dy, dx), repeated for every tap and group
            offset = self.max_residue * torch.tanh(offset) + flow.flip(1).repeat(1, offset.shape[1] // 2, 1, 1)
        return self.deform(x, offset, torch.sigmoid(m))


class PCDAlign(nn.Module):
    """EDVR's pyramid, cascading and deformable alignment (Wang et al. 2019), optionally flow-guided as
    BSRT's FlowGuidedPCDAlign.  Inputs are lists [L1, L2, L3] of (B, C, H / 2^l, W / 2^l)."""

    def __init__(self, nf: int, groups: int, flow: bool, max_residue: float = 10.0):
        super().__init__()
        self.flow = flow
        c_in = 2 * nf + (2 if flow else 0)
        res = max_residue if flow else None

        def conv(a: int, b: int) -> nn.Conv2d:
            return nn.Conv2d(a, b, 3, 1, 1)

        self.L3_offset_conv1, self.L3_offset_conv2 = conv(c_in, nf), conv(nf, nf)
        self.L3_dcnpack = ModulatedDeformConv(nf, groups, res)
        self.L2_offset_conv1, self.L2_offset_conv2, self.L2_offset_conv3 = conv(c_in, nf), conv(2 * nf, nf), conv(nf, nf)
        self.L2_dcnpack = ModulatedDeformConv(nf, groups, res)
        self.L2_fea_conv = conv(2 * nf, nf)
        self.L1_offset_conv1, self.L1_offset_conv2, self.L1_offset_conv3 = conv(c_in, nf), conv(2 * nf, nf), conv(nf, nf)
        self.L1_dcnpack = ModulatedDeformConv(nf, groups, res)
        self.L1_fea_conv = conv(2 * nf, nf)
        self.cas_offset_conv1, self.cas_offset_conv2 = conv(2 * nf, nf), conv(nf, nf)
        self.cas_dcnpack = ModulatedDeformConv(nf, groups, None)

    def forward(self, nbr: Sequence[torch.Tensor], ref: Sequence[torch.Tensor],
                flows: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        if self.flow:
            if flows is None:
                raise ValueError("flow-guided alignment needs the flows")
            cond = [torch.cat([flow_warp(n, f), r, f], 1) for n, r, f in zip(nbr, ref, flows)]
        else:
            flows = [None, None, None]
            cond = [torch.cat([n, r], 1) for n, r in zip(nbr, ref)]
        off3 = _lrelu(self.L3_offset_conv2(_lrelu(self.L3_offset_conv1(cond[2]))))
        fea3 = _lrelu(self.L3_dcnpack(nbr[2], off3, flows[2]))

        off2 = _lrelu(self.L2_offset_conv1(cond[1]))
        off2 = _lrelu(self.L2_offset_conv2(torch.cat([off2, _up2(off3) * 2], 1)))
        off2 = _lrelu(self.L2_offset_conv3(off2))
        fea2 = self.L2_dcnpack(nbr[1], off2, flows[1])
        fea2 = _lrelu(self.L2_fea_conv(torch.cat([fea2, _up2(fea3)], 1)))

        off1 = _lrelu(self.L1_offset_conv1(cond[0]))
        off1 = _lrelu(self.L1_offset_conv2(torch.cat([off1, _up2(off2) * 2], 1)))
        off1 = _lrelu(self.L1_offset_conv3(off1))
        fea1 = self.L1_dcnpack(nbr[0], off1, flows[0])
        fea1 = self.L1_fea_conv(torch.cat([fea1, _up2(fea2)], 1))

        off = _lrelu(self.cas_offset_conv2(_lrelu(self.cas_offset_conv1(torch.cat([fea1, ref[0]], 1)))))
        return self.cas_dcnpack(fea1, off)


# ---------------------------------------------------------------------------------- SpyNet

class _SpyLevel(nn.Module):
    def __init__(self):
        super().__init__()
        chans = [8, 32, 64, 32, 16, 2]
        layers: list[nn.Module] = []
        for i in range(5):
            layers.append(nn.Conv2d(chans[i], chans[i + 1], 7, 1, 3))
            if i < 4:
                layers.append(nn.ReLU())
        self.basic_module = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.basic_module(x)


class SpyNet(nn.Module):
    """SpyNet (Ranjan & Black 2017) in the layout of the BasicSR/VRT port whose Sintel weights BSRT
    loads (``basic_module.{0..5}.basic_module.{0,2,4,6,8}``, ImageNet ``mean``/``std`` buffers).

    ``forward(ref, supp)`` returns flows from ``ref`` to ``supp`` (warping ``supp`` by them aligns it
    to ``ref``) at full, 1/2 and 1/4 resolution: inputs are resized to a multiple of 32 (>= 64), a 6-level
    average-pool pyramid is refined coarse to fine (each level predicts a residual flow from
    [ref, warped supp, upsampled flow]), and the three finest levels are resized back.
    """

    def __init__(self):
        super().__init__()
        self.basic_module = nn.ModuleList([_SpyLevel() for _ in range(6)])
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, ref: torch.Tensor, supp: torch.Tensor) -> list[torch.Tensor]:
        h, w = ref.shape[-2:]
        # a multiple of 32 for the 5 poolings; at least 64 so the coarsest flow is not empty (the
        # official code needs such sizes too and fails below them)
        hf, wf = max(math.ceil(h / 32) * 32, 64), max(math.ceil(w / 32) * 32, 64)
        ref = F.interpolate(ref, size=(hf, wf), mode="bilinear", align_corners=False)
        supp = F.interpolate(supp, size=(hf, wf), mode="bilinear", align_corners=False)
        refs, supps = [(ref - self.mean) / self.std], [(supp - self.mean) / self.std]
        for _ in range(5):
            refs.insert(0, F.avg_pool2d(refs[0], 2, 2, count_include_pad=False))
            supps.insert(0, F.avg_pool2d(supps[0], 2, 2, count_include_pad=False))
        flow = refs[0].new_zeros(ref.shape[0], 2, refs[0].shape[2] // 2, refs[0].shape[3] // 2)
        out = []
        for level in range(6):
            up = F.interpolate(flow, scale_factor=2, mode="bilinear", align_corners=True) * 2.0
            if up.shape[2] != refs[level].shape[2]:
                up = F.pad(up, (0, 0, 0, 1), mode="replicate")
            if up.shape[3] != refs[level].shape[3]:
                up = F.pad(up, (0, 1, 0, 0), mode="replicate")
            warped = flow_warp(supps[level], up, padding_mode="border")
            flow = self.basic_module[level](torch.cat([refs[level], warped, up], 1)) + up
            if level >= 3:
                s = 2 ** (5 - level)
                f = F.interpolate(flow, size=(h // s, w // s), mode="bilinear", align_corners=False)
                scale = torch.tensor([(w // s) / (wf // s), (h // s) / (hf // s)], dtype=f.dtype, device=f.device)
                out.insert(0, f * scale.view(1, 2, 1, 1))
        return out


# ---------------------------------------------------------------------------------- trunk parts

class _PatchEmbed(nn.Module):
    """(B, C, H, W) -> tokens (B, HW, C) with LayerNorm (the official PatchEmbed at patch size 1)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.flatten(2).transpose(1, 2))


class _ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(c, c, 3, 1, 1), nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(_lrelu(self.conv1(x)))


class _ConvGroup(nn.Module):
    """The conv trunk's counterpart of an RSTB: residual blocks, a 3x3 conv, and a group skip."""

    def __init__(self, c: int, depth: int):
        super().__init__()
        self.blocks = nn.Sequential(*[_ResBlock(c) for _ in range(depth)])
        self.conv = nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(self.blocks(x))


# ---------------------------------------------------------------------------------- BSRT

class BSRT(nn.Module):
    """BSRT burst SR network; see the module docstring.  Keyword arguments are JSON-serialisable.

    Args:
        burst_size: frames per burst N (fixed by the fusion conv).
        embed_dim, depths, num_heads, window_size, mlp_ratio: Swin settings; ``depths[0]`` is the
            per-frame feature extractor, ``depths[1:]`` the trunk groups (one RSTB / conv group each).
        num_feat: channels of the alignment pyramid and of the upsampler.
        groups: deformable groups of every DCN.
        flow: SpyNet flow-guided alignment (official) or feature-only offsets.
        extract, trunk: "swin" (official) or "conv".
        max_residue: bound of the learned offset residual around the flow (official 10).
        img_size: trunk resolution the Swin blocks cache their attention masks for (other sizes are
            computed on the fly); must exceed 2 * window_size so no block shrinks its window.
        out_channels: 3 (linear RGB).
    """

    def __init__(self, burst_size: int = 14, embed_dim: int = 60, depths: Sequence[int] = (6, 6, 6, 6, 6),
                 num_heads: Sequence[int] = (6, 6, 6, 6, 6), window_size: int = 8, mlp_ratio: float = 2.0,
                 num_feat: int = 64, groups: int = 8, flow: bool = True, extract: str = "swin",
                 trunk: str = "swin", max_residue: float = 10.0, img_size: int = 64, out_channels: int = 3,
                 base_skip: bool = False):
        super().__init__()
        depths, num_heads = list(depths), list(num_heads)
        if extract not in ("swin", "conv") or trunk not in ("swin", "conv"):
            raise DpirError(f"BSRT extract/trunk must be 'swin' or 'conv', got {extract!r}/{trunk!r}")
        if len(depths) < 1 or len(num_heads) != len(depths):
            raise DpirError(f"BSRT needs depths (>= 1 entry) and num_heads of equal length, got {depths} and {num_heads}")
        if any(embed_dim % h for h in num_heads):
            raise DpirError(f"BSRT embed_dim {embed_dim} must be divisible by every num_heads entry {num_heads}")
        if num_feat % groups:
            raise DpirError(f"BSRT num_feat {num_feat} must be divisible by groups {groups}")
        if img_size // 2 <= window_size:
            raise DpirError(f"BSRT img_size {img_size} must exceed 2 * window_size ({2 * window_size})")
        self.burst_size, self.embed_dim, self.num_feat = burst_size, embed_dim, num_feat
        self.window_size, self.flow, self.extract, self.trunk = window_size, flow, extract, trunk
        self.base_skip = bool(base_skip)
        nf, E = num_feat, embed_dim

        if flow:
            self.spynet = SpyNet()
            self.conv_flow = nn.Conv2d(1, 3, 3, 1, 1)
        if extract == "swin" or trunk == "swin":
            self.patch_embed = _PatchEmbed(E)
        self.conv_first = nn.Conv2d(4, E, 3, 1, 1)

        def block(i: int, res: int, heads: int) -> nn.Module:
            return SwinTransformerBlock(dim=E, input_resolution=(res, res), num_heads=heads,
                                        window_size=window_size, shift_size=0 if i % 2 == 0 else window_size // 2,
                                        mlp_ratio=mlp_ratio, qkv_bias=True, drop_path=0.0)

        if extract == "swin":
            self.pre_layers = nn.ModuleList([block(i, img_size // 2, num_heads[0]) for i in range(depths[0])])
            self.pre_norm = nn.LayerNorm(E)
        else:
            self.feature_extraction = nn.Sequential(*[_ResBlock(E) for _ in range(depths[0])])
        self.conv_after_pre_layer = nn.Conv2d(E, 4 * nf, 3, 1, 1)

        self.fea_L2_conv1 = nn.Conv2d(nf, 2 * nf, 3, 2, 1)
        self.fea_L3_conv1 = nn.Conv2d(2 * nf, 4 * nf, 3, 2, 1)
        self.toplayer = nn.Conv2d(4 * nf, nf, 1)
        self.smooth1 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.smooth2 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.latlayer1 = nn.Conv2d(2 * nf, nf, 1)
        self.latlayer2 = nn.Conv2d(nf, nf, 1)
        self.align = PCDAlign(nf, groups, flow, max_residue)
        self.fusion = nn.Conv2d(burst_size * nf, E, 1)

        if trunk == "swin":
            self.layers = nn.ModuleList([
                RSTB(dim=E, input_resolution=(img_size, img_size), depth=d, num_heads=h, window_size=window_size,
                     mlp_ratio=mlp_ratio, qkv_bias=True, drop_path=0.0, img_size=img_size, patch_size=1,
                     resi_connection="1conv") for d, h in zip(depths[1:], num_heads[1:])])
            self.norm = nn.LayerNorm(E)
        else:
            self.layers = nn.ModuleList([_ConvGroup(E, d) for d in depths[1:]])
        self.conv_after_body = nn.Conv2d(E, E, 3, 1, 1)

        self.upconv1 = nn.Conv2d(E, 4 * nf, 3, 1, 1)
        self.upconv2 = nn.Conv2d(nf, 4 * nf, 3, 1, 1)
        self.HRconv = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, out_channels, 3, 1, 1)
        self.skipup1 = nn.Conv2d(1, 4 * nf, 3, 1, 1)
        self.skipup2 = nn.Conv2d(nf, 4 * out_channels, 3, 1, 1)

        self.apply(self._init_weights)
        for m in self.modules():
            # the masks are a function of the input size: recomputed, never saved in checkpoints
            if isinstance(m, SwinTransformerBlock) and "attn_mask" in m._buffers:
                m._non_persistent_buffers_set.add("attn_mask")

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # as the official model (and SwinIR): truncated-normal linear layers, unit LayerNorms
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def _swin(self, x: torch.Tensor, blocks: Sequence[nn.Module], norm: nn.Module) -> torch.Tensor:
        x, size = pad_to_multiple(x, self.window_size)
        B, C, H, W = x.shape
        t = self.patch_embed(x)
        for blk in blocks:
            t = blk(t, (H, W))
        t = norm(t)
        return crop_to(t.transpose(1, 2).reshape(B, C, H, W), size)

    def _ref_flows(self, xf: torch.Tensor) -> list[torch.Tensor]:
        nbr = xf.flatten(0, 1)
        ref = xf[:, :1].expand_as(xf).flatten(0, 1)
        return self.spynet(ref, nbr)

    def forward(self, burst: torch.Tensor) -> torch.Tensor:
        if burst.dim() != 5 or burst.shape[2] != 4:
            raise DpirError(f"BSRT expects a burst (B, N, 4, h, w) of packed RGGB frames, got {tuple(burst.shape)}")
        B, N, C, h, w = burst.shape
        if N != self.burst_size:
            raise DpirError(f"BSRT was built for bursts of {self.burst_size} frames (its fusion conv is fixed), "
                            f"got {N}; set the network's burst_size or the data's burst_size to match")
        if h % 2 or w % 2:
            raise DpirError(f"BSRT needs even frame sizes (its pyramid halves 2h twice), got {h}x{w}")
        nf = self.num_feat
        ref = burst[:, 0]
        skip1 = _lrelu(F.pixel_shuffle(self.skipup1(F.pixel_shuffle(ref, 2)), 2))
        skip2 = F.pixel_shuffle(self.skipup2(skip1), 2)

        frames = burst.reshape(B * N, C, h, w)
        flows = None
        if self.flow:
            xf = self.conv_flow(F.pixel_shuffle(frames, 2)).view(B, N, 3, 2 * h, 2 * w)
            flows = self._ref_flows(xf)

        x = _lrelu(self.conv_first(frames))
        if self.extract == "swin":
            x = self._swin(x, self.pre_layers, self.pre_norm)
        else:
            x = self.feature_extraction(x)
        L1 = F.pixel_shuffle(self.conv_after_pre_layer(x), 2)
        L2 = _lrelu(self.fea_L2_conv1(L1))
        L3 = _lrelu(self.fea_L3_conv1(L2))
        L3 = _lrelu(self.toplayer(L3))
        L2 = self.smooth1(_up2(L3) + self.latlayer1(L2))
        L1 = self.smooth2(_up2(L2) + self.latlayer2(L1))

        nbr = [L1, L2, L3]
        refs = [f.view(B, N, *f.shape[1:])[:, :1].expand(B, N, *f.shape[1:]).reshape(f.shape) for f in nbr]
        aligned = self.align(nbr, refs, flows)                        # (B*N, nf, 2h, 2w)

        x = _lrelu(self.fusion(aligned.reshape(B, N * nf, 2 * h, 2 * w)))
        if self.trunk == "swin":
            body = self._swin(x, self.layers, self.norm)
        else:
            body = x
            for g in self.layers:
                body = g(body)
        x = _lrelu(self.conv_after_body(body)) + x

        x = _lrelu(F.pixel_shuffle(self.upconv1(x), 2)) + skip1
        x = _lrelu(F.pixel_shuffle(self.upconv2(x), 2))
        x = self.conv_last(_lrelu(self.HRconv(x)))
        if self.base_skip:   # the network learns a residual over the single-frame baseline (cpu_small only)
            return x + skip2 + self._base(ref)
        return x + skip2

    @staticmethod
    def _base(ref: torch.Tensor) -> torch.Tensor:
        """Bilinear demosaic of the reference frame, upsampled 4x bilinearly: (B, 4, h, w) -> (B, 3, 8h, 8w)."""
        from dpir.isp import demosaic_bilinear

        return F.interpolate(demosaic_bilinear(ref), scale_factor=4, mode="bilinear", align_corners=False)
