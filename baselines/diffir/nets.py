"""DiffIR's networks (Xia et al., "DiffIR: Efficient Diffusion Model for Image Restoration", ICCV 2023).

- :class:`DIRformer`: the Restormer-like U-shaped transformer (paper Sec. 3.3, Fig. 2).  Every block is
  LayerNorm -> dynamic MDTA and LayerNorm -> dynamic gated-Dconv FFN, and both first modulate their
  normalised input with the IPR z: ``F' = W1 z (.) Norm(F) + W2 z`` (DMTA and DGFN), where
  ``[W1 z, W2 z]`` is one bias-free linear map from z to 2 * dim channel values (a scale and a shift,
  official key ``kernel.0``).  Four levels, down/up-sampling by a 3x3 conv then pixel-(un)shuffle(2),
  skips by concatenation (+1x1 reduce except at level 1), refinement blocks at 2 * dim.
  Heads: the two task variants of the official code.
  * SR (``scale > 1``, ``DiffIR-SRGAN``): the transformer runs at LR resolution; the head is an EDSR
    upsampler (log2(scale) times conv3x3 -> PixelShuffle(2)) then a 3x3 conv, plus the nearest-neighbour
    upsampled input as a global residual.
  * Deblurring (``scale == 1``, ``DiffIR-demotionblur``): a 3x3 output conv plus the input.
- :class:`CPEN`: compact IR prior extraction network: conv -> residual blocks -> 3 convs -> global
  average pool -> 2-layer MLP (LeakyReLU 0.1 throughout, also after the last layer), IPR of
  4 * n_feats numbers.  CPEN_S1 sees concat(LQ, PixelUnshuffle(scale)(GT)) for SR and
  concat(PixelUnshuffle(4)(LQ), PixelUnshuffle(4)(GT)) for deblurring; CPEN_S2 sees the LQ image (SR)
  or PixelUnshuffle(4)(LQ) (deblurring).
- :class:`IPRDenoiser`: the official ``denoise`` MLP: Linear(2 * 4 n_feats + 1 -> 4 n_feats) on
  concat(c, t / (10 T), z_t), LeakyReLU, then ``n_denoise_res`` Linear+LeakyReLU layers (called ResMLP
  officially but without a skip).  It returns the clean IPR (x0-parameterisation).
- :class:`DiffIRS1` (CPEN_S1 ``E`` + ``G``) and :class:`DiffIRS2` (CPEN_S2 ``condition``, ``denoise``,
  ``G``).  The networks only evaluate their parts and draw no noise; the IPR diffusion (start noise,
  reverse chain) is :mod:`baselines.diffir.sampler` and the method.

Constructor arguments use the official names, so an official ``network_g`` YAML block (without ``type``)
is a valid ``kwargs`` dict; ``task`` picks the official SR or deblurring values for every argument left
out, and ``n_feats`` (hard-coded 64 officially, IPR = 4 * n_feats = 256) makes the IPR width
configurable.  Parameter names equal the official ones, so an official checkpoint loads after the key
mapping of :mod:`baselines.diffir.checkpoint` (which only removes duplicates).

Inputs of any size work: the networks reflect-pad the LQ image at the bottom/right to a multiple of 8
(three 2x downsamplings; the official test pads the same way with ``window_size: 8``) and crop the output.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from dpir.diffusion import Schedule
from dpir.errors import DpirError

from . import sampler

Task = Literal["sr", "deblur"]

#: official architecture values (DiffIR-SRGAN/options/train_DiffIRS2_x4.yml and
#: DiffIR-demotionblur/options/train_DiffIRS2.yml)
OFFICIAL: dict[str, dict] = {
    "sr": {"scale": 4, "dim": 64, "num_blocks": [13, 1, 1, 1], "num_refinement_blocks": 13,
           "heads": [1, 2, 4, 8], "ffn_expansion_factor": 2.2, "bias": False, "LayerNorm_type": "BiasFree",
           "n_encoder_res": 9},
    "deblur": {"scale": 1, "dim": 48, "num_blocks": [3, 5, 6, 6], "num_refinement_blocks": 4,
               "heads": [1, 2, 4, 8], "ffn_expansion_factor": 2.0, "bias": False, "LayerNorm_type": "WithBias",
               "n_encoder_res": 5},
}
COMMON = {"inp_channels": 3, "out_channels": 3, "n_feats": 64, "n_denoise_res": 1, "linear_start": 0.1,
          "linear_end": 0.99, "timesteps": 4}
#: input sizes must be divisible by this (three 2x pixel-unshuffles in the DIRformer)
PAD_MULTIPLE = 8


def _resolve(task: str, given: dict) -> dict:
    """Official values of ``task`` for every argument not given (None), then sanity checks."""
    if task not in OFFICIAL:
        raise ValueError(f"task must be one of {sorted(OFFICIAL)}, got {task!r}")
    cfg = {**OFFICIAL[task], **COMMON}
    cfg.update({k: v for k, v in given.items() if v is not None})
    cfg["num_blocks"], cfg["heads"] = list(cfg["num_blocks"]), list(cfg["heads"])
    if len(cfg["num_blocks"]) != 4 or len(cfg["heads"]) != 4:
        raise ValueError("num_blocks and heads need 4 entries (levels 1-3 and the latent level)")
    if cfg["LayerNorm_type"] not in ("BiasFree", "WithBias"):
        raise ValueError(f"LayerNorm_type must be 'BiasFree' or 'WithBias', got {cfg['LayerNorm_type']!r}")
    s = int(cfg["scale"])
    if s < 1 or (s > 1 and s & (s - 1) and s != 3):
        raise ValueError(f"scale must be 1 (deblurring), 3 or a power of 2, got {s}")
    return cfg


def _pad(x: torch.Tensor, multiple: int, factor: int = 1) -> tuple[torch.Tensor, int, int]:
    """Pad bottom/right so that ``size / factor`` is a multiple of ``multiple`` (reflect, as the official
    test; replicate when the image is smaller than the pad).  Returns the pad in units of ``size / factor``."""
    h, w = x.shape[-2] // factor, x.shape[-1] // factor
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw * factor, 0, ph * factor), mode=mode)
    return x, ph, pw


class LayerNorm(nn.Module):
    """Per-pixel LayerNorm over channels.  "BiasFree" (Restormer) does not subtract the mean."""

    def __init__(self, dim: int, kind: str):
        super().__init__()
        # the extra ``body`` level only keeps the official parameter names (norm1.body.weight)
        self.body = _LayerNormBody(dim, with_bias=kind == "WithBias")

    def forward(self, x):
        return self.body(x)


class _LayerNormBody(nn.Module):
    def __init__(self, dim: int, with_bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if with_bias else None

    def forward(self, x):
        var = x.var(1, keepdim=True, unbiased=False)
        if self.bias is None:
            return x / torch.sqrt(var + 1e-5) * self.weight[:, None, None]
        mu = x.mean(1, keepdim=True)
        return (x - mu) / torch.sqrt(var + 1e-5) * self.weight[:, None, None] + self.bias[:, None, None]


def _modulate(kernel: nn.Module, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``W1 z (.) x + W2 z`` (DMTA and DGFN, paper Sec. 3.3): a per-channel scale and shift from the IPR."""
    scale, shift = kernel(z)[:, :, None, None].chunk(2, dim=1)
    return x * scale + shift


class DynamicMDTA(nn.Module):
    """Multi-Dconv head transposed attention (Restormer): attention across channels, not pixels."""

    def __init__(self, dim: int, num_heads: int, bias: bool, ipr_dim: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"{num_heads} heads do not divide {dim} channels")
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.kernel = nn.Sequential(nn.Linear(ipr_dim, 2 * dim, bias=False))  # official key kernel.0
        self.qkv = nn.Conv2d(dim, 3 * dim, 1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(3 * dim, 3 * dim, 3, padding=1, groups=3 * dim, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x, z):
        b, c, h, w = x.shape
        x = _modulate(self.kernel, x, z)
        q, k, v = (t.reshape(b, self.num_heads, c // self.num_heads, h * w)
                   for t in self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(dim=-1)
        return self.project_out((attn @ v).reshape(b, c, h, w))


class DynamicGDFN(nn.Module):
    """Gated-Dconv feed-forward network (Restormer): GELU(dwconv branch 1) * dwconv branch 2."""

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool, ipr_dim: int):
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, 2 * hidden, 1, bias=bias)
        self.dwconv = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)
        self.kernel = nn.Sequential(nn.Linear(ipr_dim, 2 * dim, bias=False))

    def forward(self, x, z):
        x = self.project_in(_modulate(self.kernel, x, z))
        x1, x2 = self.dwconv(x).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class TransformerBlock(nn.Module):
    def __init__(self, dim, num_heads, ffn_expansion_factor, bias, layernorm, ipr_dim):
        super().__init__()
        self.norm1 = LayerNorm(dim, layernorm)
        self.attn = DynamicMDTA(dim, num_heads, bias, ipr_dim)
        self.norm2 = LayerNorm(dim, layernorm)
        self.ffn = DynamicGDFN(dim, ffn_expansion_factor, bias, ipr_dim)

    def forward(self, x, z):
        x = x + self.attn(self.norm1(x), z)
        return x + self.ffn(self.norm2(x), z)


class Level(nn.ModuleList):
    """A stack of transformer blocks that all see the same IPR (keys ``<level>.<i>.*`` as official)."""

    def __init__(self, n: int, dim: int, num_heads: int, ffn, bias, layernorm, ipr_dim):
        super().__init__([TransformerBlock(dim, num_heads, ffn, bias, layernorm, ipr_dim) for _ in range(n)])

    def forward(self, x, z):
        for block in self:
            x = block(x, z)
        return x


class _Embed(nn.Module):
    def __init__(self, cin, dim):
        super().__init__()
        self.proj = nn.Conv2d(cin, dim, 3, padding=1, bias=False)

    def forward(self, x):
        return self.proj(x)


class _Resample(nn.Module):
    """3x3 conv then PixelUnshuffle(2) (down: C -> C/2 -> 2C) or PixelShuffle(2) (up: C -> 2C -> C/2)."""

    def __init__(self, dim: int, down: bool):
        super().__init__()
        if down:
            self.body = nn.Sequential(nn.Conv2d(dim, dim // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))
        else:
            self.body = nn.Sequential(nn.Conv2d(dim, dim * 2, 3, padding=1, bias=False), nn.PixelShuffle(2))

    def forward(self, x):
        return self.body(x)


def _upsampler(scale: int, n: int) -> nn.Sequential:
    """EDSR upsampler: conv3x3 (n -> 4n) + PixelShuffle(2) per factor 2, or one conv (n -> 9n) + PS(3)."""
    layers: list[nn.Module] = []
    if scale == 3:
        layers += [nn.Conv2d(n, 9 * n, 3, padding=1), nn.PixelShuffle(3)]
    else:
        for _ in range(int(math.log2(scale))):
            layers += [nn.Conv2d(n, 4 * n, 3, padding=1), nn.PixelShuffle(2)]
    return nn.Sequential(*layers)


class DIRformer(nn.Module):
    """Dynamic IR transformer G(x, z) (paper Sec. 3.3); see the module docstring for the two heads.

    ``x`` must have a size divisible by 8 (:class:`DiffIRS1`/:class:`DiffIRS2` pad for you).
    """

    def __init__(self, inp_channels=3, out_channels=3, scale=4, dim=64, num_blocks=(13, 1, 1, 1),
                 num_refinement_blocks=13, heads=(1, 2, 4, 8), ffn_expansion_factor=2.2, bias=False,
                 LayerNorm_type="BiasFree", ipr_dim=256):
        super().__init__()
        self.scale = int(scale)
        lvl = {"ffn": ffn_expansion_factor, "bias": bias, "layernorm": LayerNorm_type, "ipr_dim": ipr_dim}
        d1, d2, d3, d4 = dim, 2 * dim, 4 * dim, 8 * dim
        self.patch_embed = _Embed(inp_channels, d1)
        self.encoder_level1 = Level(num_blocks[0], d1, heads[0], **lvl)
        self.down1_2 = _Resample(d1, down=True)
        self.encoder_level2 = Level(num_blocks[1], d2, heads[1], **lvl)
        self.down2_3 = _Resample(d2, down=True)
        self.encoder_level3 = Level(num_blocks[2], d3, heads[2], **lvl)
        self.down3_4 = _Resample(d3, down=True)
        self.latent = Level(num_blocks[3], d4, heads[3], **lvl)
        self.up4_3 = _Resample(d4, down=False)
        self.reduce_chan_level3 = nn.Conv2d(d4, d3, 1, bias=bias)
        self.decoder_level3 = Level(num_blocks[2], d3, heads[2], **lvl)
        self.up3_2 = _Resample(d3, down=False)
        self.reduce_chan_level2 = nn.Conv2d(d3, d2, 1, bias=bias)
        self.decoder_level2 = Level(num_blocks[1], d2, heads[1], **lvl)
        self.up2_1 = _Resample(d2, down=False)
        # level 1 of the decoder keeps the concatenated 2*dim channels (no 1x1 reduce), as Restormer
        self.decoder_level1 = Level(num_blocks[0], d2, heads[0], **lvl)
        self.refinement = Level(num_refinement_blocks, d2, heads[0], **lvl)
        if self.scale == 1:
            self.output = nn.Conv2d(d2, out_channels, 3, padding=1, bias=bias)
        else:
            self.tail = nn.Sequential(_upsampler(self.scale, d2), nn.Conv2d(d2, out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        e1 = self.encoder_level1(self.patch_embed(x), z)
        e2 = self.encoder_level2(self.down1_2(e1), z)
        e3 = self.encoder_level3(self.down2_3(e2), z)
        lat = self.latent(self.down3_4(e3), z)
        d3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(lat), e3], 1)), z)
        d2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(d3), e2], 1)), z)
        d1 = self.decoder_level1(torch.cat([self.up2_1(d2), e1], 1), z)
        d1 = self.refinement(d1, z)
        if self.scale == 1:
            return self.output(d1) + x
        return self.tail(d1) + F.interpolate(x, scale_factor=self.scale, mode="nearest")


class ResBlock(nn.Module):
    """EDSR residual block with LeakyReLU(0.1): x + conv(act(conv(x))) (keys body.0, body.2)."""

    def __init__(self, n: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n, n, 3, padding=1), nn.LeakyReLU(0.1),
                                  nn.Conv2d(n, n, 3, padding=1))

    def forward(self, x):
        return x + self.body(x)


class CPEN(nn.Module):
    """Compact IR prior extraction network (paper Sec. 3.3): images -> IPR of 4 * n_feats.

    ``lq_unshuffle``/``gt_unshuffle`` are the PixelUnshuffle factors applied to the LQ and GT images
    before concatenation (``gt_unshuffle=None``: CPEN_S2, LQ only).
    """

    def __init__(self, in_channels: int, n_feats: int, n_encoder_res: int, lq_unshuffle: int,
                 gt_unshuffle: int | None):
        super().__init__()
        self.lq_unshuffle, self.gt_unshuffle = lq_unshuffle, gt_unshuffle
        act = nn.LeakyReLU(0.1)
        f = n_feats
        self.E = nn.Sequential(
            nn.Conv2d(in_channels, f, 3, padding=1), act,
            *[ResBlock(f) for _ in range(n_encoder_res)],
            nn.Conv2d(f, 2 * f, 3, padding=1), act,
            nn.Conv2d(2 * f, 2 * f, 3, padding=1), act,
            nn.Conv2d(2 * f, 4 * f, 3, padding=1), act,
            nn.AdaptiveAvgPool2d(1),
        )
        self.mlp = nn.Sequential(nn.Linear(4 * f, 4 * f), act, nn.Linear(4 * f, 4 * f), act)

    def forward(self, lq: torch.Tensor, gt: torch.Tensor | None = None) -> torch.Tensor:
        x = F.pixel_unshuffle(lq, self.lq_unshuffle) if self.lq_unshuffle > 1 else lq
        if self.gt_unshuffle is not None:
            if gt is None:
                raise ValueError("CPEN_S1 needs the ground truth")
            x = torch.cat([x, F.pixel_unshuffle(gt, self.gt_unshuffle)], 1)
        return self.mlp(self.E(x).flatten(1))


class _ResMLP(nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.resmlp = nn.Sequential(nn.Linear(n, n), nn.LeakyReLU(0.1))

    def forward(self, x):
        return self.resmlp(x)  # no skip connection, despite the official name


class IPRDenoiser(nn.Module):
    """The official ``denoise`` MLP: z0_hat = MLP(concat(c, t / (10 T), z_t))."""

    def __init__(self, ipr_dim: int, n_denoise_res: int, timesteps: int):
        super().__init__()
        self.max_period = 10 * timesteps
        self.resmlp = nn.Sequential(nn.Linear(2 * ipr_dim + 1, ipr_dim), nn.LeakyReLU(0.1),
                                    *[_ResMLP(ipr_dim) for _ in range(n_denoise_res)])

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        t = (t.to(z_t.dtype) / self.max_period).view(-1, 1)
        return self.resmlp(torch.cat([c, t, z_t], dim=1))


def _cpen_factors(scale: int) -> tuple[int, int]:
    """(LQ, GT) PixelUnshuffle factors: SR feeds the LR image as is and GT unshuffled to LR size;
    deblurring unshuffles both by 4."""
    return (4, 4) if scale == 1 else (1, scale)


def _dirformer(cfg: dict) -> DIRformer:
    return DIRformer(cfg["inp_channels"], cfg["out_channels"], cfg["scale"], cfg["dim"], cfg["num_blocks"],
                     cfg["num_refinement_blocks"], cfg["heads"], cfg["ffn_expansion_factor"], cfg["bias"],
                     cfg["LayerNorm_type"], ipr_dim=4 * cfg["n_feats"])


class DiffIRS1(nn.Module):
    """Stage 1 (paper Sec. 3.3): sr = G(lq, CPEN_S1(lq, gt)); trained with L1 against gt."""

    def __init__(self, task: Task = "sr", *, inp_channels=None, out_channels=None, scale=None, dim=None,
                 num_blocks=None, num_refinement_blocks=None, heads=None, ffn_expansion_factor=None,
                 bias=None, LayerNorm_type=None, n_encoder_res=None, n_feats=None):
        super().__init__()
        given = dict(locals())
        cfg = _resolve(task, {k: given[k] for k in [*OFFICIAL["sr"], "inp_channels", "out_channels", "n_feats"]})
        self.scale = int(cfg["scale"])
        self.ipr_dim = 4 * cfg["n_feats"]
        self.G = _dirformer(cfg)
        lq_f, gt_f = _cpen_factors(self.scale)
        cin = cfg["inp_channels"] * lq_f ** 2 + cfg["out_channels"] * gt_f ** 2
        self.E = CPEN(cin, cfg["n_feats"], cfg["n_encoder_res"], lq_f, gt_f)

    def _pad_pair(self, lq, gt):
        if gt.shape[-2:] != (lq.shape[-2] * self.scale, lq.shape[-1] * self.scale):
            raise ValueError(f"gt {tuple(gt.shape)} is not {self.scale}x lq {tuple(lq.shape)}")
        return _pad(lq, PAD_MULTIPLE)[0], _pad(gt, PAD_MULTIPLE, self.scale)[0]

    def ipr(self, lq: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """The stage-1 IPR z = CPEN_S1(lq, gt), the target of stage 2."""
        return self.E(*self._pad_pair(lq, gt))

    def forward(self, lq: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        h, w = lq.shape[-2:]
        lq, gt = self._pad_pair(lq, gt)
        sr = self.G(lq, self.E(lq, gt))
        return sr[..., : h * self.scale, : w * self.scale]


class DiffIRS2(nn.Module):
    """Stage 2 (paper Sec. 3.4): z_0 = reverse IPR diffusion conditioned on CPEN_S2(lq); sr = G(lq, z_0).

    The network only evaluates its parts and draws no noise: :meth:`encode` (CPEN_S2, c), ``denoise``
    (the IPR denoiser MLP, z0_hat from (z_t, t, c)) and ``forward(lq, z)`` (the DIRformer G given an IPR
    z).  The reverse chain over the denoiser is :func:`baselines.diffir.sampler.sample_ipr`; the method
    draws the start noise z_T and runs it (:class:`baselines.diffir.method.DiffIR`).
    """

    def __init__(self, task: Task = "sr", *, inp_channels=None, out_channels=None, scale=None, dim=None,
                 num_blocks=None, num_refinement_blocks=None, heads=None, ffn_expansion_factor=None,
                 bias=None, LayerNorm_type=None, n_encoder_res=None, n_feats=None, n_denoise_res=None,
                 linear_start=None, linear_end=None, timesteps=None):
        super().__init__()
        given = dict(locals())
        cfg = _resolve(task, {k: given[k] for k in [*OFFICIAL["sr"], *COMMON]})
        self.scale = int(cfg["scale"])
        self.ipr_dim = 4 * cfg["n_feats"]
        self.timesteps = cfg["timesteps"]
        self.linear_start, self.linear_end = cfg["linear_start"], cfg["linear_end"]
        self.G = _dirformer(cfg)
        lq_f, _ = _cpen_factors(self.scale)
        self.condition = CPEN(cfg["inp_channels"] * lq_f ** 2, cfg["n_feats"], cfg["n_encoder_res"], lq_f, None)
        self.denoise = IPRDenoiser(self.ipr_dim, cfg["n_denoise_res"], cfg["timesteps"])

    def schedule(self) -> Schedule:
        """The IPR diffusion's schedule (:func:`baselines.diffir.sampler.ipr_schedule`)."""
        return sampler.ipr_schedule(self.timesteps, self.linear_start, self.linear_end)

    def encode(self, lq: torch.Tensor) -> torch.Tensor:
        """The denoiser's condition c = CPEN_S2(lq), ``lq`` padded as in :meth:`forward`."""
        return self.condition(_pad(lq, PAD_MULTIPLE)[0])

    def forward(self, lq: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The restoration of ``lq`` given the IPR ``z`` (B, ipr_dim): G(lq, z), ``lq`` padded to a
        multiple of 8 and the output cropped back.  No noise is drawn here."""
        if z is None or not isinstance(z, torch.Tensor) or z.shape != (lq.shape[0], self.ipr_dim):
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise DpirError(f"DiffIRS2.forward(lq, z) needs the IPR z, a ({lq.shape[0]}, {self.ipr_dim}) tensor, "
                            f"got {got}; to restore from noise use baselines.diffir.sampler.sample_ipr(net, lq, z_T) "
                            f"with z_T drawn by dpir.rng.randn from one generator per image (the diffir method does)")
        h, w = lq.shape[-2:]
        lq, _, _ = _pad(lq, PAD_MULTIPLE)
        return self.G(lq, z)[..., : h * self.scale, : w * self.scale]
