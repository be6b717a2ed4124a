"""The architectures DP-IR needs and we write: MIRNet-S, UDP, the fusion net and its ablation variants."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dpir.checkpoint import load_network, save_network
from dpir.nets import build_network
from dpir.nets.blocks import DenseBlock, convex_combination, noise_level_map, timestep_embedding
from dpir.nets.fusion import FusionNet
from dpir.nets.fusion_variants import LDWT, TDWA, FusionUNet, haar_dwt2, haar_idwt2, haar_wavedec2, haar_waverec2
from dpir.nets.mirnet_s import MIRNetS, mirnet_n_params
from dpir.nets.udp import UDP

# the small widths recommended for the CPU benchmark, and tinier ones for speed where the width is irrelevant
SMALL = {
    "mirnet_s": {"n_feat": 16},
    "udp": {"base": 16},
    "fusion": {"n_f": 32, "growth": 16},
    "fusion_tdwa": {},
    "fusion_ldwt": {},
    "fusion_unet": {},
}
TINY = {
    "mirnet_s": {"n_feat": 8},
    "udp": {"base": 8},
    "fusion": {"n_f": 16, "growth": 8, "t_dim": 32, "t_hidden": 32},
    "fusion_tdwa": {"t_dim": 32, "hidden": 16},
    "fusion_ldwt": {},
    "fusion_unet": {"base": 8, "t_dim": 32},
}
DENOISERS = ("mirnet_s", "udp")



def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def make(arch: str, kwargs: dict, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_network(arch, **kwargs).eval()


def call(arch: str, net, x: torch.Tensor, other: torch.Tensor, gen: torch.Generator):
    B = x.shape[0]
    if arch in DENOISERS:
        return net(x, torch.rand(B, generator=gen))
    return net(x, other, torch.randint(0, 1000, (B,), generator=gen))


# ------------------------------------------------------------------ shapes, determinism, batching

@pytest.mark.parametrize("arch", list(TINY))
@pytest.mark.parametrize("size", [(16, 16), (13, 22), (5, 7), (1, 3)])
def test_shapes_odd_and_even(arch, size):
    g = torch.Generator().manual_seed(1)
    net = make(arch, TINY[arch])
    x, other = torch.rand(2, 3, *size, generator=g), torch.rand(2, 3, *size, generator=g)
    with torch.no_grad():
        out = call(arch, net, x, other, g)
    assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize("arch", list(TINY))
def test_deterministic_and_batch_independent(arch):
    net = make(arch, TINY[arch])
    g = torch.Generator().manual_seed(2)
    x, other = torch.rand(3, 3, 12, 20, generator=g), torch.rand(3, 3, 12, 20, generator=g)
    cond = torch.rand(3, generator=g) if arch in DENOISERS else torch.tensor([0, 250, 999])
    with torch.no_grad():
        run = (lambda a, b, c: net(a, c)) if arch in DENOISERS else net
        out1, out2 = run(x, other, cond), run(x, other, cond)
        alone = run(x[1:2], other[1:2], cond[1:2])
    assert torch.equal(out1, out2)
    # no batch statistics anywhere: an image's result does not depend on its batch mates
    torch.testing.assert_close(out1[1:2], alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", DENOISERS)
def test_denoiser_noise_level_is_an_input(arch):
    net = make(arch, TINY[arch])
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a, b = net(x, 0.1), net(x, torch.tensor([0.1, 0.5]))
        scalar_vs_vector = net(x, torch.tensor([0.1, 0.1]))
    assert torch.equal(a, scalar_vs_vector)
    assert torch.equal(a[0], b[0]) and not torch.allclose(a[1], b[1])
    with pytest.raises(ValueError, match="needs the noise level sigma"):
        net(x)
    with pytest.raises(ValueError, match="one value per image"):
        net(x, torch.tensor([0.1, 0.2, 0.3]))


def test_denoisers_without_noise_channel_ignore_sigma():
    for net in (MIRNetS(n_feat=8, noise_channel=False), UDP(base=8, noise_channel=False)):
        assert net(torch.rand(1, 3, 8, 8)).shape == (1, 3, 8, 8)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="stride 2"):
        MIRNetS(stride=3)
    with pytest.raises(ValueError, match="out_channels must equal in_channels"):
        UDP(out_channels=1)


# ------------------------------------------------------------------ exact parameter counts

def test_mirnet_param_counts():
    # official MIRNet (n_MSRB 2, no noise channel): 31,787,436, the paper's "31.8M"
    assert mirnet_n_params(n_msrb=2, noise_channel=False) == 31_787_436
    # the formula against the modules, over configurations that exercise every term
    for kw in [{}, {"n_feat": 16}, {"n_feat": 16, "bias": True}, {"n_feat": 16, "width": 1},
               {"n_feat": 16, "share_width": False}, {"n_feat": 8, "height": 2, "width": 3, "n_msrb": 2}]:
        assert n_params(MIRNetS(**kw)) == mirnet_n_params(**kw), kw
    assert n_params(MIRNetS()) == 15_951_318          # MIRNet-S at paper width, noise channel
    assert n_params(MIRNetS(n_feat=16)) == 998_598    # recommended CPU width
    # hand check of the smallest case: height 1, width 1 (one DAU, one SKFF over one stream), n_feat 8:
    # DAU 20*64 + 2*8*1 + 51 = 1347; SKFF d=4: 2*8*4 + 1 = 65; MSRB conv 576; RRG conv 576;
    # conv_in 4*8*9 = 288; conv_out 8*3*9 = 216  ->  1347 + 65 + 576 + 576 + 288 + 216 = 3068
    assert n_params(MIRNetS(n_feat=8, n_rrg=1, height=1, width=1)) == 3068


def test_udp_param_counts():
    assert n_params(UDP()) == UDP.n_params() == 11_775_267
    assert n_params(UDP(base=16)) == UDP.n_params(base=16) == 2_945_427
    # hand check, 1 level, 1 conv per block, base 2, 3+1 inputs: enc 9*4*2+2 = 74; mid 9*2*4+4 = 76;
    # dec (4+2 -> 2) 9*6*2+2 = 110; out 9*2*3+3 = 57  ->  317
    assert n_params(UDP(base=2, levels=1, n_conv=1)) == UDP.n_params(base=2, levels=1, n_conv=1) == 317


def test_fusion_param_counts():
    # dense block (n_f 64, growth 36, 4 layers): convs 9*36*(64+100+136+172) + 4*36 = 153,072,
    # fusion 1x1 (64+144)*64 + 64 = 13,376 -> 166,448; four blocks 665,792; two heads 2*(27*64+64) = 3,584;
    # time MLP 128*128+128 + 128*64+64 = 24,768; tail 9*64*3+3 = 1,731  ->  695,875 ("about 0.7M")
    assert DenseBlock.n_params(64, 36, 4) == 166_448
    assert n_params(DenseBlock(64, 36, 4)) == 166_448
    assert n_params(FusionNet()) == FusionNet.n_params() == 695_875
    assert n_params(FusionNet(**SMALL["fusion"])) == FusionNet.n_params(**SMALL["fusion"]) == 164_995
    assert n_params(LDWT()) == 30
    assert n_params(TDWA()) == 128 * 128 + 128 + 128 * 128 + 128 + 128 * 3 + 3 == 33_411
    assert n_params(FusionUNet()) == 596_115


# ------------------------------------------------------------------ Haar DWT and LDWT

def test_haar_single_level_values_and_perfect_reconstruction():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    ll, d = haar_dwt2(x)
    assert ll.item() == 5.0                                        # (1+2+3+4)/2
    assert d.flatten().tolist() == [-1.0, -2.0, 0.0]               # H, V, D
    assert torch.equal(haar_idwt2(ll, d), x)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 24, 40, generator=g, dtype=torch.float64)
    approx, details = haar_wavedec2(x, 3)
    assert approx.shape == (2, 3, 3, 5) and [d.shape[-1] for d in details] == [20, 10, 5]
    torch.testing.assert_close(haar_waverec2(approx, details), x, rtol=0, atol=1e-12)
    # orthonormal: energy is preserved (Parseval)
    energy = approx.square().sum() + sum(d.square().sum() for d in details)
    torch.testing.assert_close(energy, x.square().sum(), rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="even"):
        haar_dwt2(torch.zeros(1, 1, 3, 4))


def test_ldwt_convex_weights():
    g = torch.Generator().manual_seed(5)
    a, b = torch.rand(2, 3, 13, 21, generator=g), torch.rand(2, 3, 13, 21, generator=g)
    net = LDWT()
    with torch.no_grad():
        # zero-initialised logits: w = 1/2 everywhere; the transform is linear, so this is the average
        torch.testing.assert_close(net(a, b, torch.tensor([3, 7])), (a + b) / 2, rtol=0, atol=1e-6)
        for p in net.parameters():
            p.fill_(50.0)                       # sigmoid(50) == 1 in float32: only x0_IR survives
        torch.testing.assert_close(net(a, b, 0), a, rtol=0, atol=1e-6)
        for p in net.parameters():
            p.fill_(-50.0)
        torch.testing.assert_close(net(a, b, 0), b, rtol=0, atol=1e-6)
        # one subband (level 3 approximation, red) to IR only: the rest stays the average
        for p in net.parameters():
            p.zero_()
        net.theta_approx[0] = 50.0
        out = net(a[:, :, :8, :8], b[:, :, :8, :8], 0)
    # the 3-level approximation of an 8x8 image is its mean (times 8): red's mean must follow x0_IR
    torch.testing.assert_close(out[:, 0].mean(dim=(1, 2)), a[:, 0, :8, :8].mean(dim=(1, 2)), rtol=0, atol=1e-6)
    torch.testing.assert_close(out[:, 1:], (a + b)[:, 1:, :8, :8] / 2, rtol=0, atol=1e-6)


# ------------------------------------------------------------------ convex weights: 3CA and TDWA

def test_convex_combination_is_exact_at_the_ends():
    g = torch.Generator().manual_seed(6)
    a, b = torch.randn(4, 5, generator=g) * 1e6, torch.randn(4, 5, generator=g) * 1e-6
    assert torch.equal(convex_combination(torch.ones(()), a, b), a)
    assert torch.equal(convex_combination(torch.zeros(()), a, b), b)
    assert torch.equal(convex_combination(torch.tensor(0.25), torch.ones(1), torch.zeros(1)), torch.tensor([0.25]))


def test_timestep_embedding_values():
    e = timestep_embedding(torch.tensor([0, 1]), 4)
    # f_k = 10000^(-k/2): f = [1, 0.01]
    expected = torch.tensor([[0.0, 0.0, 1.0, 1.0], [math.sin(1.0), math.sin(0.01), math.cos(1.0), math.cos(0.01)]])
    torch.testing.assert_close(e, expected)
    assert timestep_embedding(5, 8).shape == (1, 8)
    with pytest.raises(ValueError, match="even"):
        timestep_embedding(torch.tensor([1]), 5)


def test_noise_level_map():
    x = torch.zeros(2, 3, 4, 5)
    m = noise_level_map(torch.tensor([0.1, 0.3]), x)
    assert m.shape == (2, 1, 4, 5) and m[0].unique().tolist() == [pytest.approx(0.1)]
    assert m[1].unique().tolist() == [pytest.approx(0.3)]


@pytest.mark.parametrize("arch", ["fusion", "fusion_tdwa"])
def test_time_weights_in_unit_interval_and_saturated_weight_selects_ir(arch):
    net = make(arch, TINY[arch])
    t = torch.arange(0, 1000, 37)
    with torch.no_grad():
        w = net.channel_weights(t) if arch == "fusion" else net.weights(t)
        assert ((w > 0) & (w < 1)).all() and w.shape[0] == len(t)
        assert w.std() > 0                                  # the weights do depend on t
        last = net.time_mlp[-1] if arch == "fusion" else net.mlp[-1]
        last.weight.zero_()
        last.bias.fill_(50.0)                               # sigmoid saturates to exactly 1
        g = torch.Generator().manual_seed(7)
        x_ir = torch.rand(2, 3, 9, 11, generator=g)
        d1, d2 = torch.rand(2, 3, 9, 11, generator=g), torch.rand(2, 3, 9, 11, generator=g)
        tt = torch.tensor([10, 900])
        out1, out2 = net(x_ir, d1, tt), net(x_ir, d2, tt)
    assert torch.equal(out1, out2)                          # the denoiser branch is switched off
    if arch == "fusion_tdwa":
        assert torch.equal(out1, x_ir)


# ------------------------------------------------------------------ training and checkpoints

@pytest.mark.parametrize("arch, steps", [("mirnet_s", 10), ("udp", 30)])
def test_few_adam_steps_learn_to_denoise(arch, steps):
    """A few Adam steps on smooth images with strong noise beat the identity (returning y) by 10%.

    UDP starts at the identity (small residual) and first sits on that plateau, hence more steps.
    """
    net = make(arch, TINY[arch]).train()
    g = torch.Generator().manual_seed(8)
    x0 = F.interpolate(torch.rand(4, 3, 4, 4, generator=g), size=(24, 24), mode="bilinear", align_corners=False)
    sigma = torch.full((4,), 0.3)
    y = x0 + sigma[:, None, None, None] * torch.randn(x0.shape, generator=g)
    identity_mse = (y - x0).square().mean().item()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)

    def mse():
        return (net(y, sigma) - x0).square().mean()

    with torch.no_grad():
        before = mse().item()
    for _ in range(steps):
        opt.zero_grad()
        loss = mse()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = mse().item()
    assert after < 0.9 * identity_mse and after < before


@pytest.mark.parametrize("arch", list(TINY))
def test_checkpoint_round_trip(arch, tmp_path):
    net = make(arch, TINY[arch], seed=9)
    if arch == "fusion_ldwt":
        with torch.no_grad():
            net.theta_detail.normal_(generator=torch.Generator().manual_seed(9))
    save_network(net, tmp_path / arch, arch, TINY[arch], step=1)
    loaded = load_network(tmp_path / arch, expect_arch=arch)
    g1, g2 = torch.Generator().manual_seed(10), torch.Generator().manual_seed(10)
    x, other = torch.rand(2, 3, 10, 14, generator=g1), torch.rand(2, 3, 10, 14, generator=g1)
    with torch.no_grad():
        assert torch.equal(call(arch, net, x, other, g2), call(arch, loaded, x, other, g2.manual_seed(10)))
