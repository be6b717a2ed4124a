"""MSRResNet, BasicSR's "modified SRResNet" (the SRResNet of Ledig et al. 2017 without batch norm), and a
spandrel detector for its release files.

spandrel 0.4.2 cannot read ``MSRResNet_x4.pth`` (BasicSR's ``params`` file), so :class:`MSRResNetArch`
teaches it: it recognises the key set exactly and reads ``num_feat``, ``num_block``, the channels and
the scale off the tensor shapes.  :func:`dpir.nets.foreign.registry` adds it to the detectors.

The module tree is BasicSR's, so its release files load strictly::

    conv_first                          3x3, in -> num_feat, leaky ReLU 0.1
    body.<i>.conv1, body.<i>.conv2      num_block residual blocks x + conv2(relu(conv1(x))), no BN
    upconv1 (+ upconv2 for x4)          3x3 to num_feat * r^2, pixel shuffle r, leaky ReLU
                                        (x4: two r=2 steps; x2 / x3: one step with r = scale)
    conv_hr, conv_last                  3x3 + leaky ReLU, 3x3 to the output channels
    + bilinear upsampling of the input  (align_corners=False): the network learns a residual
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

SCALES = (2, 3, 4)


class _ResidualBlock(nn.Module):
    """conv-ReLU-conv with an identity skip (BasicSR's ResidualBlockNoBN at res_scale 1)."""

    def __init__(self, num_feat: int):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(x)))


class MSRResNet(nn.Module):
    """``MSRResNet(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=16, upscale=4)``; the released
    x4 model has the defaults (1.52M parameters)."""

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_block: int = 16,
                 upscale: int = 4):
        super().__init__()
        if upscale not in SCALES:
            raise ValueError(f"MSRResNet supports upscale {', '.join(map(str, SCALES))}, got {upscale!r}")
        self.upscale = int(upscale)
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[_ResidualBlock(num_feat) for _ in range(num_block)])
        step = 2 if upscale == 4 else upscale
        self.upconv1 = nn.Conv2d(num_feat, num_feat * step * step, 3, 1, 1)
        if upscale == 4:
            self.upconv2 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
        self.pixel_shuffle = nn.PixelShuffle(step)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.1)

    def forward(self, x):
        out = self.body(self.lrelu(self.conv_first(x)))
        out = self.lrelu(self.pixel_shuffle(self.upconv1(out)))
        if self.upscale == 4:
            out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        out = self.conv_last(self.lrelu(self.conv_hr(out)))
        return out + F.interpolate(x, scale_factor=self.upscale, mode="bilinear", align_corners=False)


_KEY = re.compile(r"^(?:conv_first|body\.\d+\.conv[12]|upconv[12]|conv_hr|conv_last)\.(?:weight|bias)$")
_REQUIRED = ("conv_first.weight", "body.0.conv1.weight", "upconv1.weight", "conv_hr.weight", "conv_last.weight")


def detect(state: dict) -> bool:
    """Exactly MSRResNet's keys (no others), so no other architecture that shares a few names is taken."""
    return all(k in state for k in _REQUIRED) and all(_KEY.match(k) for k in state)


def infer_kwargs(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """The constructor arguments of the network that wrote ``state``, read off the tensor shapes."""
    num_feat, num_in = state["conv_first.weight"].shape[:2]
    num_block = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("body."))
    if "upconv2.weight" in state:
        upscale = 4
    else:
        upscale = round((state["upconv1.weight"].shape[0] / num_feat) ** 0.5)
    return {"num_in_ch": int(num_in), "num_out_ch": int(state["conv_last.weight"].shape[0]),
            "num_feat": int(num_feat), "num_block": num_block, "upscale": int(upscale)}


def _architecture():
    """The spandrel ``Architecture`` (built on first use: spandrel is imported only when a checkpoint is read)."""
    from spandrel import Architecture, ImageModelDescriptor

    class MSRResNetArch(Architecture[MSRResNet]):
        def __init__(self) -> None:
            super().__init__(id="MSRResNet", name="MSRResNet", detect=detect)

        def load(self, state_dict):
            kw = infer_kwargs(state_dict)
            return ImageModelDescriptor(
                MSRResNet(**kw), state_dict, architecture=self, purpose="SR",
                tags=[f"{kw['num_feat']}nf", f"{kw['num_block']}nb"], supports_half=True, supports_bfloat16=True,
                scale=kw["upscale"], input_channels=kw["num_in_ch"], output_channels=kw["num_out_ch"])

    return MSRResNetArch()


def arch_support(before: tuple[str, ...] = ()):
    """MSRResNet's entry for a spandrel ``ArchRegistry``, detected before the architectures ``before``
    (all of them, in :func:`dpir.nets.foreign.registry`: its check accepts exactly its own key set, so
    it never takes another model's file, while a looser detector might take MSRResNet's)."""
    from spandrel import ArchSupport

    arch = _architecture()
    return ArchSupport(arch, arch.detect, before=tuple(before))
