"""BSRT burst network (dpir.nets.burst): shapes, parameter counts, DCN alignment, official layout, training."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import deform_conv2d

from dpir.data.burst import synthesize_burst
from dpir.errors import DpirError
from dpir.nets import build_network
from dpir.nets.burst import (
    BSRT,
    CONFIGS,
    ModulatedDeformConv,
    deform_conv2d_sampled,
    flow_warp,
)

# a tiny flow-guided, all-Swin BSRT: exercises every official module at toy size
TINY_OFFICIAL = {"burst_size": 3, "embed_dim": 12, "depths": [2, 2], "num_heads": [2, 2], "window_size": 4,
                 "mlp_ratio": 2.0, "num_feat": 8, "groups": 2, "flow": True, "extract": "swin", "trunk": "swin",
                 "img_size": 16}
TINY_CONV = {"burst_size": 3, "embed_dim": 16, "depths": [1, 1], "num_heads": [2, 2], "window_size": 4, "num_feat": 8,
             "groups": 2, "flow": False, "extract": "conv", "trunk": "conv", "img_size": 16}


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def make(kw: dict, seed: int = 0) -> BSRT:
    torch.manual_seed(seed)
    return BSRT(**kw)


def test_parameter_counts():
    # BSRT paper, Table 1: BSRT-Small 4.92M, BSRT-Large 20.71M parameters (SpyNet included)
    assert n_params(BSRT(**CONFIGS["official_small"])) == 4_915_665
    assert n_params(BSRT(**CONFIGS["official_large"])) == 20_713_905
    assert n_params(BSRT(**CONFIGS["cpu_small"])) == 240_707
    assert n_params(BSRT(**TINY_OFFICIAL)) == 1_498_201      # 1_440_300 of them SpyNet's
    assert n_params(BSRT(**TINY_OFFICIAL).spynet) == 1_440_300


def test_official_state_dict_layout():
    sd = BSRT(**CONFIGS["official_small"]).state_dict()
    shapes = {
        "conv_first.weight": (60, 4, 3, 3), "patch_embed.norm.weight": (60,), "pre_norm.weight": (60,),
        "pre_layers.5.attn.relative_position_bias_table": (225, 6), "pre_layers.1.mlp.fc1.weight": (120, 60),
        "conv_after_pre_layer.weight": (256, 60, 3, 3), "fea_L3_conv1.weight": (256, 128, 3, 3),
        "toplayer.weight": (64, 256, 1, 1), "latlayer1.weight": (64, 128, 1, 1),
        "align.L3_offset_conv1.weight": (64, 130, 3, 3), "align.L1_dcnpack.weight": (64, 64, 3, 3),
        "align.L1_dcnpack.conv_offset_mask.weight": (216, 64, 3, 3), "align.cas_dcnpack.conv_offset_mask.bias": (216,),
        "fusion.weight": (60, 14 * 64, 1, 1), "layers.3.residual_group.blocks.5.attn.qkv.weight": (180, 60),
        "layers.3.conv.weight": (60, 60, 3, 3), "norm.weight": (60,), "conv_after_body.weight": (60, 60, 3, 3),
        "upconv1.weight": (256, 60, 3, 3), "upconv2.weight": (256, 64, 3, 3), "HRconv.weight": (64, 64, 3, 3),
        "conv_last.weight": (3, 64, 3, 3), "skipup1.weight": (256, 1, 3, 3), "skipup2.weight": (12, 64, 3, 3),
        "conv_flow.weight": (3, 1, 3, 3), "spynet.basic_module.5.basic_module.8.weight": (2, 16, 7, 7),
        "spynet.mean": (1, 3, 1, 1),
    }
    for k, s in shapes.items():
        assert tuple(sd[k].shape) == s, k
    assert "layers.4.conv.weight" not in sd and "pre_layers.6.norm1.weight" not in sd
    assert not any(k.endswith("attn_mask") for k in sd)


@pytest.mark.parametrize("kw", [CONFIGS["cpu_small"], TINY_OFFICIAL, TINY_CONV])
def test_shapes_and_determinism(kw):
    n = kw["burst_size"]
    x = torch.rand(2, n, 4, 12, 16, generator=torch.Generator().manual_seed(0))
    m = make(kw).eval()
    with torch.no_grad():
        y = m(x)
        assert y.shape == (2, 3, 96, 128) and torch.isfinite(y).all()
        assert torch.equal(y, m(x))
        assert torch.equal(y, make(kw).eval()(x))
        # batch elements are independent
        assert torch.allclose(m(x[1:]), y[1:], atol=1e-5)


def test_input_errors_and_registry():
    m = make(TINY_CONV)
    with pytest.raises(DpirError, match="built for bursts of 3 frames"):
        m(torch.rand(1, 4, 4, 8, 8))
    with pytest.raises(DpirError, match="even frame sizes"):
        m(torch.rand(1, 3, 4, 9, 8))
    with pytest.raises(DpirError, match=r"\(B, N, 4, h, w\)"):
        m(torch.rand(1, 3, 3, 8, 8))
    with pytest.raises(DpirError, match="divisible by every num_heads"):
        BSRT(**{**TINY_CONV, "embed_dim": 15})
    with pytest.raises(DpirError, match="'swin' or 'conv'"):
        BSRT(**{**TINY_CONV, "trunk": "unet"})
    net = build_network("bsrt", **CONFIGS["cpu_small"])
    assert isinstance(net, BSRT) and json.loads(json.dumps(CONFIGS["cpu_small"])) == CONFIGS["cpu_small"]


# ------------------------------------------------------------------------------------ alignment

def test_deformable_conv_with_zero_offsets_is_a_plain_conv():
    torch.manual_seed(0)
    dcn = ModulatedDeformConv(8, groups=2)
    x = torch.randn(2, 8, 9, 11)
    fea = torch.randn(2, 8, 9, 11)
    ref = F.conv2d(x, dcn.weight, dcn.bias, padding=1)
    zero_off = torch.zeros(2, 2 * 2 * 9, 9, 11)
    ones = torch.ones(2, 2 * 9, 9, 11)
    assert torch.allclose(dcn.deform(x, zero_off, ones), ref, atol=1e-5)
    assert torch.allclose(deform_conv2d(x, zero_off, dcn.weight, dcn.bias, padding=1, mask=ones), ref, atol=1e-5)
    # freshly built: the offset/mask conv is zero -> offset 0, mask sigmoid(0) = 1/2
    half = F.conv2d(x, dcn.weight, None, padding=1) / 2 + dcn.bias.view(1, -1, 1, 1)
    assert torch.allclose(dcn(x, fea), half, atol=1e-5)


def test_sampled_deformable_conv_equals_torchvision():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 8, 9, 11, generator=g, requires_grad=True)
    off = (3 * torch.randn(2, 2 * 4 * 9, 9, 11, generator=g)).requires_grad_()   # 4 groups, far outside too
    mask = torch.rand(2, 4 * 9, 9, 11, generator=g, requires_grad=True)
    w = torch.randn(6, 8, 3, 3, generator=g, requires_grad=True)
    b = torch.randn(6, generator=g, requires_grad=True)
    ref = deform_conv2d(x, off, w, b, padding=1, mask=mask)
    ours = deform_conv2d_sampled(x, off, w, b, mask)
    assert torch.allclose(ours, ref, atol=1e-4)
    g_ref = torch.autograd.grad(ref.square().sum(), [x, off, mask, w, b])
    g_ours = torch.autograd.grad(ours.square().sum(), [x, off, mask, w, b])
    for a, c in zip(g_ref, g_ours):
        assert float((a - c).norm() / a.norm()) < 1e-4


def test_flow_guided_offsets_follow_the_flow():
    torch.manual_seed(1)
    dcn = ModulatedDeformConv(4, groups=1, max_residue=10.0)
    x = torch.randn(1, 4, 7, 10)
    flow = torch.zeros(1, 2, 7, 10)
    flow[:, 0] = 1.0                                   # dx = +1: sample one pixel to the right
    out = dcn(x, torch.randn(1, 4, 7, 10), flow)
    conv = F.conv2d(x, dcn.weight, None, padding=1) / 2 + dcn.bias.view(1, -1, 1, 1)
    assert torch.allclose(out[..., :-2], conv[..., 1:-1], atol=1e-5)
    # flow_warp uses the same convention
    assert torch.allclose(flow_warp(x, flow)[..., :-1], x[..., 1:], atol=1e-6)


# ------------------------------------------------------------------------------------ training

def test_a_few_training_steps_reduce_l1():
    g = torch.Generator().manual_seed(0)
    bursts, gts = [], []
    for _ in range(2):
        rgb = F.interpolate(torch.rand(1, 3, 4, 4, generator=g), size=(32, 32), mode="bilinear",
                            align_corners=False)[0]
        f, gt, _ = synthesize_burst(rgb, 3, g, {"warp_margin": 0, "max_translation": 2.0})
        bursts.append(f)
        gts.append(gt)
    x, y = torch.stack(bursts), torch.stack(gts)
    m = make(TINY_CONV, seed=3)
    opt = torch.optim.Adam(m.parameters(), lr=2e-3)
    losses = []
    for _ in range(25):
        loss = (m(x) - y).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    # the zero-initialised offset heads learn (gradients reach them through the DCNv2 masks/offsets)
    assert m.align.L1_dcnpack.conv_offset_mask.weight.detach().abs().sum().item() > 0


def test_checkpoint_round_trip(tmp_path):
    from dpir.checkpoint import load_network, save_network

    m = make(TINY_OFFICIAL, seed=4).eval()
    save_network(m, tmp_path / "bsrt", "bsrt", TINY_OFFICIAL)
    back = load_network(tmp_path / "bsrt", expect_arch="bsrt")
    x = torch.rand(1, 3, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(back(x), m(x))


def test_base_skip_adds_the_single_frame_baseline_and_no_parameters():
    from dpir.data.burst import demosaic_bilinear

    kw = {**CONFIGS["cpu_small"], "base_skip": False}
    torch.manual_seed(0)
    plain = BSRT(**kw).eval()
    skip = BSRT(**{**kw, "base_skip": True}).eval()
    skip.load_state_dict(plain.state_dict())            # same parameters: the skip has none
    burst = torch.rand(1, 14, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = skip(burst) - plain(burst)
    base = torch.nn.functional.interpolate(demosaic_bilinear(burst[:, 0]), scale_factor=4, mode="bilinear",
                                           align_corners=False)
    assert diff.shape == (1, 3, 64, 64) and torch.allclose(diff, base, atol=1e-5)
    assert CONFIGS["cpu_small"]["base_skip"] and not CONFIGS["official_small"].get("base_skip", False)
