"""UDP: the residual U-Net denoiser of Brooks et al., "Unprocessing Images for Learned Raw Denoising"
(CVPR 2019), used by DP-IR (Table 4 / Table 12) as the alternative denoiser phi_D.

Layout (from the paper and the architecture published with it; our own code):

* input: the noisy image concatenated with the noise level (one constant channel here);
* encoder: ``levels`` conv blocks at ``base * 2^i`` channels (32, 64, 128, 256), each followed by 2x2 max
  pooling, then a bottleneck block at ``base * 2^levels`` (512);
* decoder: bilinear 2x up-sampling, concatenation with the encoder block's output (skip connection),
  a conv block at the encoder's width, for 256, 128, 64, 32;
* a conv block is ``n_conv`` 3x3 convs (with bias) each followed by LeakyReLU(0.2); the published code
  uses THREE per block (``n_conv=3``, our default), the brief summary "two" would be ``n_conv=2``;
* a final linear 3x3 conv predicts a residual that is added to the noisy input.

Differences, all forced by the sRGB/DP-IR setting or by the framework:

* Brooks et al. denoise 4-channel Bayer raw and feed a 4-channel per-pixel variance map (shot + read
  noise).  DP-IR's denoiser works on sRGB with i.i.d. Gaussian noise, so the input is 3 channels plus the
  noise level sigma (std, [0, 1] scale) as one constant channel, exactly as for :class:`MIRNetS`.
* TF1's ``resize_bilinear`` (legacy, no half-pixel centres) samples a slightly shifted grid; we use
  PyTorch's half-pixel bilinear up-sampling.  TF's 'same' max pooling is replaced by reflect-padding the
  input to a multiple of ``2^levels`` (and cropping back), which also makes any size valid.

Parameters (``c_i = base 2^i``, ``c_in = in_channels + 1``, ``n = n_conv``; all convs 3x3 with bias)::

    block(a, c) = 9 a c + c + (n - 1) (9 c^2 + c)
    total = block(c_in, c_0) + sum_{i=1..L-1} block(c_{i-1}, c_i) + block(c_{L-1}, c_L)
          + sum_{i=0..L-1} block(c_{i+1} + c_i, c_i) + 9 c_0 out + out
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dpir.nets.blocks import crop_to, pad_to_multiple, with_noise_channel


def _block(c_in: int, c_out: int, n_conv: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n_conv):
        layers += [nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1), nn.LeakyReLU(0.2)]
    return nn.Sequential(*layers)


class UDP(nn.Module):
    """Residual U-Net denoiser ``forward(x, sigma) -> x_hat`` (same contract as :class:`MIRNetS`)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, base: int = 32, levels: int = 4,
                 noise_channel: bool = True, n_conv: int = 3):
        super().__init__()
        if out_channels != in_channels:
            raise ValueError("the output is residual w.r.t. the input image: out_channels must equal in_channels")
        if levels < 1 or n_conv < 1:
            raise ValueError(f"need levels >= 1 and n_conv >= 1, got {levels}, {n_conv}")
        self.noise_channel = noise_channel
        self.multiple = 2**levels
        ch = [base * 2**i for i in range(levels + 1)]
        self.enc = nn.ModuleList(_block(in_channels + int(noise_channel) if i == 0 else ch[i - 1], ch[i], n_conv)
                                 for i in range(levels))
        self.mid = _block(ch[levels - 1], ch[levels], n_conv)
        # dec[i] works at level i: input = upsampled level i+1 features + skip of level i
        self.dec = nn.ModuleList(_block(ch[i + 1] + ch[i], ch[i], n_conv) for i in range(levels))
        self.out = nn.Conv2d(ch[0], out_channels, 3, padding=1)

    @staticmethod
    def n_params(in_channels: int = 3, out_channels: int = 3, base: int = 32, levels: int = 4,
                 noise_channel: bool = True, n_conv: int = 3) -> int:
        """The closed formula of the module docstring."""
        def block(a, c):
            return 9 * a * c + c + (n_conv - 1) * (9 * c * c + c)

        ch = [base * 2**i for i in range(levels + 1)]
        total = block(in_channels + int(noise_channel), ch[0])
        total += sum(block(ch[i - 1], ch[i]) for i in range(1, levels + 1))
        total += sum(block(ch[i + 1] + ch[i], ch[i]) for i in range(levels))
        return total + 9 * ch[0] * out_channels + out_channels

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        x_in, size = pad_to_multiple(x, self.multiple)
        h = with_noise_channel(x_in, sigma, self.noise_channel, "UDP")
        skips = []
        for block in self.enc:
            h = block(h)
            skips.append(h)
            h = F.max_pool2d(h, 2)
        h = self.mid(h)
        for block, skip in zip(reversed(self.dec), reversed(skips)):
            h = F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)
            h = block(torch.cat([h, skip], dim=1))
        return crop_to(x_in + self.out(h), size)
