"""SRDiff's networks (Li et al. 2022, Sec. 3.2-3.3, Fig. 2): an RRDB LR encoder and a conditional U-Net
that predicts the noise of the diffused HR residual.

Module and parameter names equal the official code's (``rrdb.conv_first``,
``rrdb.RRDB_trunk.N.RDB1.conv1``, ``denoise_fn.downs.0.0.block1.block.1``, ...), so the ``rrdb.*`` and
``denoise_fn.*`` keys of a released checkpoint load without renaming; :mod:`.checkpoint` documents the
rest of the mapping.  The official U-Net's switches are fixed at the values of the released DIV2K/DF2K
model: no attention, no GroupNorm (``gn_groups: 0``), no weight norm, no ``up_input`` branch.

Images are in [0, 1].  The official code works in [-1, 1], but its RRDB maps its input back to [0, 1]
first and its output from [0, 1] at the end, so our RRDB on [0, 1] images computes exactly the official
features; the residual convention that keeps the U-Net's inputs identical is in :mod:`.sampler`.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from baselines.common.blocks import (
    Block,
    Downsample,
    ResnetBlock,
    SinusoidalPosEmb,
    Upsample,
    lr_multiple,
)
from dpir.errors import DpirError

#: official defaults (configs/diffsr_df2k4x.yaml: rrdb_num_feat 32, rrdb_num_block 8, growth nf // 2)
RRDB_DEFAULTS = {"nf": 32, "nb": 8, "gc": 16}


# ------------------------------------------------------------------------------------------------ RRDB

class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs, residual scaled by 0.2 (ESRGAN, Wang et al. 2018, Fig. 4)."""

    def __init__(self, nf: int, gc: int):
        super().__init__()
        self.conv1 = nn.Conv2d(nf, gc, 3, 1, 1)
        self.conv2 = nn.Conv2d(nf + gc, gc, 3, 1, 1)
        self.conv3 = nn.Conv2d(nf + 2 * gc, gc, 3, 1, 1)
        self.conv4 = nn.Conv2d(nf + 3 * gc, gc, 3, 1, 1)
        self.conv5 = nn.Conv2d(nf + 4 * gc, nf, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), 0.2))
        return x + 0.2 * self.conv5(torch.cat(feats, 1))


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks, outer residual scaled by 0.2."""

    def __init__(self, nf: int, gc: int):
        super().__init__()
        self.RDB1 = ResidualDenseBlock(nf, gc)
        self.RDB2 = ResidualDenseBlock(nf, gc)
        self.RDB3 = ResidualDenseBlock(nf, gc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.RDB3(self.RDB2(self.RDB1(x)))


class RRDBNet(nn.Module):
    """SRDiff's LR encoder, an ESRGAN-style RRDB net with an SR head (official: nf 32, nb 8, gc 16).

    ``forward(lr)`` is a plain SR network (so it can be pre-trained with L1, SRDiff Sec. 3.3);
    ``forward(lr, get_fea=True)`` also returns the per-block features ``[block_1, ..., block_nb,
    conv_first + trunk_conv(block_nb)]`` from which SRDiff's U-Net takes every third
    (:meth:`SRDiffNet.encode`).  Input and output are RGB in [0, 1]; the output is clamped to [0, 1]
    as in the official code.  Upsampling: ``log2(scale)`` nearest x2 + conv stages (upconv1, upconv2, ...).
    """

    def __init__(self, in_nc: int = 3, out_nc: int = 3, nf: int = 32, nb: int = 8, gc: int = 16, scale: int = 4):
        super().__init__()
        n_up = round(math.log2(scale)) if scale >= 2 else 0
        if scale < 2 or 2 ** n_up != scale:
            raise ValueError(f"RRDBNet scale must be a power of two >= 2, got {scale}")
        if nb < 2:
            raise ValueError(f"RRDBNet needs nb >= 2 blocks (SRDiff conditions on every third feature), got {nb}")
        self.scale, self.nb = scale, nb
        self.conv_first = nn.Conv2d(in_nc, nf, 3, 1, 1)
        self.RRDB_trunk = nn.Sequential(*[RRDB(nf, gc) for _ in range(nb)])
        self.trunk_conv = nn.Conv2d(nf, nf, 3, 1, 1)
        for i in range(1, n_up + 1):
            self.add_module(f"upconv{i}", nn.Conv2d(nf, nf, 3, 1, 1))
        self.n_up = n_up
        self.HRconv = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, out_nc, 3, 1, 1)

    def forward(self, lr: torch.Tensor, get_fea: bool = False):
        fea_first = fea = self.conv_first(lr)
        feas = []
        for block in self.RRDB_trunk:
            fea = block(fea)
            feas.append(fea)
        fea = fea_first + self.trunk_conv(fea)
        feas.append(fea)
        for i in range(1, self.n_up + 1):
            up = getattr(self, f"upconv{i}")
            fea = F.leaky_relu(up(F.interpolate(fea, scale_factor=2, mode="nearest")), 0.2)
        sr = self.conv_last(F.leaky_relu(self.HRconv(fea), 0.2)).clamp(0, 1)
        return (sr, feas) if get_fea else sr


# ------------------------------------------------------------------------------------------------ U-Net

class ConditionalUNet(nn.Module):
    """SRDiff's noise predictor eps_theta(x_t, t, cond) (Li et al. 2022, Sec. 3.3, Fig. 2).

    Levels of channels ``hidden * dim_mults``, two ResnetBlocks per level, a middle pair of ResnetBlocks
    (no attention), a decoder with transposed-conv upsampling.  The LR condition (concatenated RRDB
    features at LR size) is projected to HR size by a transposed conv (kernel 2s, stride s) and added
    after the first level.  As in the official U-Net, the decoder consumes the skips of levels
    ``len(dim_mults)-1 .. 1`` only: the first level's output reaches the decoder through the
    downsampling path, and ``len(dim_mults) - 1`` downsamplings are matched by as many upsamplings.
    """

    def __init__(self, hidden: int = 64, dim_mults: Sequence[int] = (1, 2, 3, 4), cond_channels: int = 96,
                 scale: int = 4, in_ch: int = 3, out_ch: int = 3):
        super().__init__()
        dims = [in_ch, *(hidden * m for m in dim_mults)]
        in_out = list(itertools.pairwise(dims))
        n = len(in_out)
        if n < 2:
            raise ValueError("ConditionalUNet needs at least two levels (len(dim_mults) >= 2)")
        self.cond_proj = nn.ConvTranspose2d(cond_channels, hidden, 2 * scale, scale, scale // 2)
        self.time_pos_emb = SinusoidalPosEmb(hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.Mish(), nn.Linear(4 * hidden, hidden))
        self.downs = nn.ModuleList(
            nn.ModuleList([ResnetBlock(d_in, d_out, hidden), ResnetBlock(d_out, d_out, hidden),
                           Downsample(d_out) if i < n - 1 else nn.Identity()])
            for i, (d_in, d_out) in enumerate(in_out))
        mid = dims[-1]
        self.mid_block1 = ResnetBlock(mid, mid, hidden)
        self.mid_block2 = ResnetBlock(mid, mid, hidden)
        self.ups = nn.ModuleList(
            nn.ModuleList([ResnetBlock(2 * d_out, d_in, hidden), ResnetBlock(d_in, d_in, hidden), Upsample(d_in)])
            for d_in, d_out in reversed(in_out[1:]))
        self.final_conv = nn.Sequential(Block(hidden, hidden), nn.Conv2d(hidden, out_ch, 1))
        #: the HR size must be a multiple of this
        self.multiple = 2 ** (n - 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        emb = self.mlp(self.time_pos_emb(t))
        skips = []
        for i, (res1, res2, down) in enumerate(self.downs):
            x = res2(res1(x, emb), emb)
            if i == 0:
                x = x + self.cond_proj(cond)
            skips.append(x)
            x = down(x)
        x = self.mid_block2(self.mid_block1(x, emb), emb)
        for res1, res2, up in self.ups:
            x = up(res2(res1(torch.cat((x, skips.pop()), 1), emb), emb))
        return self.final_conv(x)


class SRDiffNet(nn.Module):
    """SRDiff's diffusion model: ``rrdb`` (LR encoder, frozen while the diffusion part trains) and
    ``denoise_fn`` (the conditional U-Net).  ``forward(x_t, t, cond)`` predicts the noise eps of the
    diffused residual at the official 0-based timestep index ``t`` (LongTensor (B,)); ``cond`` comes
    from :meth:`encode`.

    The process constants (``T``, ``cosine_s``, ``res_rescale``) are not used by the layers; they live
    here so a checkpoint says how it was trained and the method samples with the same values.
    Defaults are the official DIV2K/DF2K 4x configuration.

    ``reference``: the upsampled LR the residual is measured against (:func:`baselines.srdiff.sampler.lr_reference`:
    ``torch``, the default of networks trained here, or ``official``); an imported network's recorded
    ``official_inference.residual_reference`` takes precedence (:attr:`residual_reference`).
    """

    def __init__(self, rrdb: dict | None = None, hidden: int = 64, dim_mults: Sequence[int] = (1, 2, 3, 4),
                 scale: int = 4, res_rescale: float = 2.0, T: int = 100, cosine_s: float = 0.008,
                 reference: str = "torch"):
        super().__init__()
        from baselines.srdiff.sampler import REFERENCES

        if reference not in REFERENCES:
            raise DpirError(f"SRDiffNet kwargs: reference must be 'torch' or 'official', got {reference!r}")
        self.reference = reference
        rrdb = dict(RRDB_DEFAULTS if rrdb is None else rrdb)
        if rrdb.setdefault("scale", scale) != scale:
            raise DpirError(f"SRDiffNet kwargs: rrdb.scale {rrdb['scale']} differs from scale {scale}; drop rrdb.scale")
        self.scale, self.res_rescale, self.T, self.cosine_s = int(scale), float(res_rescale), int(T), float(cosine_s)
        self.rrdb = RRDBNet(**rrdb)
        nf = self.rrdb.conv_first.out_channels
        n_cond = (self.rrdb.nb + 1) // 3   # features 3, 6, 9, ... of the nb + 1 returned by the RRDB
        self.denoise_fn = ConditionalUNet(hidden, tuple(dim_mults), cond_channels=nf * n_cond, scale=scale)

    def encode(self, lr: torch.Tensor) -> torch.Tensor:
        """The U-Net's condition: every third RRDB feature (indices 2, 5, 8, ...) concatenated."""
        _, feas = self.rrdb(lr, get_fea=True)
        return torch.cat(feas[2::3], 1)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.denoise_fn(x_t, t, cond)

    @property
    def residual_reference(self) -> str:
        """The reference this network's residuals are measured against: an imported network's official
        one (``official_inference``, set by :func:`dpir.checkpoint.load_network` from ``model.json`` or by
        the method's ``official:`` path), else the ``reference`` kwarg."""
        inference = getattr(self, "official_inference", None)
        return (inference or {}).get("residual_reference", self.reference)

    def lr_reference(self, lr: torch.Tensor) -> torch.Tensor:
        """``up(lr)`` for the residual (:func:`baselines.srdiff.sampler.lr_reference`)."""
        from baselines.srdiff.sampler import lr_reference

        return lr_reference(lr, self.scale, self.residual_reference)

    @property
    def lr_multiple(self) -> int:
        return lr_multiple(self.denoise_fn.multiple, self.scale)
