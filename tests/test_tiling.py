"""Tiled inference (dpir.tiling): exact for local convolutional modules, close for SwinIR."""
import math

import pytest
import torch
from torch import nn

from dpir.errors import DpirError
from dpir.tiling import TiledModule, ramp_window, tile_starts, wrap_for_tiling


def conv_stack(depth: int, scale: int = 1, seed: int = 0) -> nn.Module:
    """``depth`` 3x3 convs (output depends on input within radius ``depth``), then PixelShuffle."""
    torch.manual_seed(seed)
    layers = [nn.Conv2d(3, 8, 3, padding=1)]
    for _ in range(depth - 2):
        layers += [nn.GELU(), nn.Conv2d(8, 8, 3, padding=1)]
    layers += [nn.GELU(), nn.Conv2d(8, 3 * scale * scale, 3, padding=1)]
    if scale > 1:
        layers.append(nn.PixelShuffle(scale))
    return nn.Sequential(*layers).eval()


def image(h, w, seed=1):
    return torch.rand((1, 3, h, w), generator=torch.Generator().manual_seed(seed))


def test_tile_starts_cover_and_end_flush():
    assert tile_starts(100, 32, 16) == [0, 16, 32, 48, 64, 68]
    assert tile_starts(20, 32, 16) == [0]
    assert tile_starts(32, 32, 16) == [0]


def test_ramp_window_values():
    w = ramp_window(12, left=True, right=True, margin=2, ramp=4)
    rise = [0.5 - 0.5 * math.cos(math.pi * (k + 0.5) / 4) for k in range(4)]
    expected = [0, 0, *rise, *rise[::-1], 0, 0]
    assert torch.allclose(w, torch.tensor(expected), atol=1e-7)
    assert ramp_window(6, left=False, right=False, margin=2, ramp=4).tolist() == [1.0] * 6


@pytest.mark.parametrize("scale", [1, 2])
def test_conv_stack_tiled_equals_untiled(scale):
    net = conv_stack(depth=4, scale=scale)          # receptive radius 4 = overlap 16 // 4 (the default margin)
    x = image(50, 70)
    with torch.no_grad():
        full = net(x)
        tiled = TiledModule(net, tile=24, overlap=16)(x)
    assert tiled.shape == full.shape == (1, 3, 50 * scale, 70 * scale)
    assert (tiled - full).abs().max().item() < 1e-5


def test_margin_below_receptive_radius_is_not_exact():
    net = conv_stack(depth=4)
    x = image(50, 70)
    with torch.no_grad():
        diff = (TiledModule(net, tile=24, overlap=16, margin=1)(x) - net(x)).abs().max().item()
    assert diff > 1e-4


class TwoImagesAndSigma(nn.Module):
    """f(a, b, sigma) like DP-IR's denoiser/fusion: spatial tensors tiled, sigma passed through."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.ca, self.cb = nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 3, 5, padding=2)

    def forward(self, a, b, sigma):
        return self.ca(a) + self.cb(b) * sigma[:, None, None, None]


def test_extra_arguments_are_tiled_or_passed_through():
    m = TwoImagesAndSigma()
    a, b = image(2 * 20, 45, 4).expand(2, -1, -1, -1), image(40, 45, 5).expand(2, -1, -1, -1)
    sigma = torch.tensor([0.1, 0.7])
    with torch.no_grad():
        full, tiled = m(a, b, sigma), TiledModule(m, tile=16, overlap=12)(a, b, sigma)
    assert (tiled - full).abs().max().item() < 1e-6


def test_attribute_fallthrough_and_bad_sizes():
    net = conv_stack(3)
    net.window_size = 8
    t = TiledModule(net, tile=16, overlap=8)
    assert t.window_size == 8 and sum(p.numel() for p in t.parameters()) == sum(p.numel() for p in net.parameters())
    with pytest.raises(DpirError, match="0 <= overlap < tile"):
        TiledModule(net, tile=16, overlap=16)
    with pytest.raises(DpirError, match="below half the overlap"):
        TiledModule(net, tile=32, overlap=8, margin=4)


def test_swinir_tiny_tiled_close_to_untiled():
    from dpir.nets import build_network

    torch.manual_seed(0)
    net = build_network("swinir", upscale=4, in_chans=3, img_size=16, window_size=8, img_range=1.0, depths=[2, 2],
                        embed_dim=36, num_heads=[3, 3], mlp_ratio=2.0, upsampler="pixelshuffledirect",
                        resi_connection="1conv").eval()
    x = image(40, 56, 7)
    with torch.no_grad():
        full = net(x)
        tiled = TiledModule(net, tile=32, overlap=16)(x)
    diff = (tiled - full).abs()
    # measured: max 5.3e-4, mean 1.4e-5 (overlap 8: max 0.034); random weights, attention sees tile borders
    assert diff.max().item() < 2e-3 and diff.mean().item() < 1e-4


class ConvIR(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = conv_stack(2, scale=2, seed=5)

    def forward(self, y):
        return self.body(y)


class ConvDenoiser(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(6)
        self.c = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x, sigma):
        return x - self.c(x) * sigma[:, None, None, None]


class ConvFusion(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(7)
        self.c = nn.Conv2d(6, 3, 3, padding=1)

    def forward(self, a, b, t):
        return self.c(torch.cat([a, b], 1)) + (t.float() / 1000)[:, None, None, None]


def test_wrap_dpir_keeps_result_and_nfe():
    from dpir.diffusion.schedule import linear_schedule
    from dpir.measure import count_nfe
    from dpir.methods.dpir import DPIR
    from dpir.rng import make_generator

    def build():
        return DPIR(ConvIR().eval(), ConvDenoiser().eval(), ConvFusion().eval(), linear_schedule(20, 1e-4, 2e-2),
                    tau=6, ddim_stride=2)

    y = image(30, 38, 9)
    plain = build()
    with count_nfe(plain) as c0:
        x0 = plain.restore(y, [make_generator(0, "img")])
    tiled = wrap_for_tiling(build(), tile=16, overlap=8)
    assert tiled.tiled_modules == ["ir", "denoiser", "fusion"]
    with count_nfe(tiled) as c1:
        x1 = tiled.restore(y, [make_generator(0, "img")])
    assert c1.by_group() == c0.by_group() == {"denoiser+fusion": 3, "ir": 1}
    assert (x1 - x0).abs().max().item() < 1e-5
