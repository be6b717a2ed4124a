"""DiffIR baseline: schedule, networks, restore contract, trainers, official checkpoints."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from baselines.diffir import sampler
from baselines.diffir.checkpoint import (
    SCHEDULE_BUFFERS,
    load_official,
    official_buffers,
)
from baselines.diffir.method import DiffIR, build
from baselines.diffir.nets import DiffIRS1, DiffIRS2
from baselines.diffir.train import build_s1, build_s2, kd_losses
from dpir.checkpoint import save_network
from dpir.diffusion import Schedule
from dpir.errors import DpirError
from dpir.methods.base import BuildContext
from dpir.rng import randn
from dpir.train.base import TrainContext

TINY = {"dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1, "heads": [1, 1, 2, 2],
        "n_encoder_res": 1, "n_feats": 4, "ffn_expansion_factor": 2.0}
CPU = torch.device("cpu")



def tiny(cls, task="sr", seed=0):
    torch.manual_seed(seed)
    net = cls(task, **TINY).eval()
    if isinstance(net, DiffIRS2):
        # an untrained tiny denoiser nearly ignores z_T (output changes ~1e-5); 3x larger weights make the
        # start noise change the image by ~1e-3, so the seed tests and the golden value can see it
        with torch.no_grad():
            for p in net.denoise.parameters():
                p.mul_(3.0) if p.ndim == 2 else None
    return net


def gen(seed):
    return torch.Generator().manual_seed(seed)


def restore(net, y, generator):
    """What the diffir method computes (the network itself draws no noise)."""
    with torch.no_grad():
        return DiffIR(net).restore(y, generator)


def nparams(m):
    return sum(p.numel() for p in m.parameters())


# ---------------------------------------------------------------- schedule and sampler


def test_schedule_exact_values():
    s = sampler.ipr_schedule(4, 0.1, 0.99)
    assert isinstance(s, Schedule) and s.T == 4   # the package's one schedule type, t = 1..4
    # linspace(sqrt(0.1), sqrt(0.99), 4) ** 2, evaluated with 40-digit decimals
    assert s.betas[1:].tolist() == pytest.approx([0.1, 0.29428562420046465, 0.59095229086713132, 0.99], abs=1e-15)
    assert s.alphas_bar[1:].tolist() == pytest.approx(
        [0.9, 0.63514293821958181, 0.25980376385063909, 0.0025980376385063909], abs=1e-15)
    # the last reverse step returns the denoiser's clean estimate exactly (abar_0 = 1)
    assert s.posterior_coefficients(1) == (1.0, 0.0, 0.0)
    t = 3  # DDPM Eq. 7 by hand (official 0-based index 2)
    ab, abp, b = 0.25980376385063909, 0.63514293821958181, 0.59095229086713132
    c1, c2, var = s.posterior_coefficients(t)
    assert c1 == pytest.approx(b * math.sqrt(abp) / (1 - ab), rel=1e-12)
    assert c2 == pytest.approx((1 - abp) * math.sqrt(1 - b) / (1 - ab), rel=1e-12)
    assert var == pytest.approx(b * (1 - abp) / (1 - ab), rel=1e-12)
    # the betas are the official ones: torch.linspace in float64, as ldm/ddpm.py computes them
    official = torch.linspace(math.sqrt(0.1), math.sqrt(0.99), 4, dtype=torch.float64) ** 2
    assert s.betas[1:].tolist() == official.tolist()
    assert s.alphas_bar[1:].tolist() == torch.cumprod(1 - official, 0).tolist()


def test_reverse_ipr_is_deterministic_posterior_mean():
    s = sampler.ipr_schedule()
    target = torch.tensor([[0.5, -1.0, 2.0]])
    seen = []

    def denoise(z_t, t, c):
        seen.append(int(t[0]))
        return target + 0 * z_t

    z_T = torch.tensor([[1.0, 2.0, 3.0]])
    z_0 = sampler.reverse_ipr(denoise, z_T, torch.zeros(1, 3), s)
    assert seen == [3, 2, 1, 0]   # the denoiser sees the official 0-based step index
    z = z_T
    for t in (4, 3, 2, 1):
        c1, c2, _ = s.posterior_coefficients(t)
        z = c1 * target + c2 * z
    torch.testing.assert_close(z_0, z)
    torch.testing.assert_close(z_0, target)  # no noise: the last step lands on the estimate
    noise = torch.randn(1, 3, generator=gen(0))
    abar_T = 0.0025980376385063909
    torch.testing.assert_close(sampler.q_sample(target, 4, noise, s),
                               math.sqrt(abar_T) * target + math.sqrt(1 - abar_T) * noise)


def _official_chain(net, lq, z_T):
    """DiffIR's reverse chain written out with the official 0-based coefficient tensors (the loop the
    baseline had before it ran on dpir.diffusion): the package's chain must give the same bits."""
    T = net.timesteps
    beta = torch.linspace(math.sqrt(net.linear_start), math.sqrt(net.linear_end), T, dtype=torch.float64) ** 2
    abar = torch.cumprod(1 - beta, 0)
    abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
    coef_z0, coef_zt = beta * abar_prev.sqrt() / (1 - abar), (1 - abar_prev) * (1 - beta).sqrt() / (1 - abar)
    c = net.condition(lq)
    z = z_T
    for i in reversed(range(T)):
        z0_hat = net.denoise(z, torch.full((z.shape[0],), i, dtype=torch.long), c)
        z = float(coef_z0[i]) * z0_hat + float(coef_zt[i]) * z
    return z


def test_chain_on_the_core_equals_the_official_loop():
    net = tiny(DiffIRS2, seed=2)
    y = torch.rand(2, 3, 16, 16, generator=gen(1))
    with torch.no_grad():
        z_T = randn((2, net.ipr_dim), [gen(5), gen(6)])
        ours = sampler.sample_ipr(net, y, z_T)
        ref = _official_chain(net, y, z_T)
        assert torch.equal(ours, ref)
        # the method: z_T from one generator per image, then G(lq, z_0)
        assert torch.equal(restore(net, y, [gen(5), gen(6)]), net.G(y, ref))


# ---------------------------------------------------------------- networks


def test_shapes_sr_and_unpadded_sizes():
    s2, s1 = tiny(DiffIRS2), tiny(DiffIRS1)
    y = torch.rand(2, 3, 12, 10, generator=gen(1))  # not multiples of 8: padded inside, output cropped
    assert restore(s2, y, gen(0)).shape == (2, 3, 48, 40)
    assert s1(y, torch.rand(2, 3, 48, 40, generator=gen(2))).shape == (2, 3, 48, 40)
    assert s1.ipr(y, torch.rand(2, 3, 48, 40)).shape == (2, 16)


def test_shapes_deblur():
    s2, s1 = tiny(DiffIRS2, "deblur"), tiny(DiffIRS1, "deblur")
    y = torch.rand(1, 3, 21, 19, generator=gen(1))
    assert restore(s2, y, gen(0)).shape == (1, 3, 21, 19)
    assert s1(y, y).shape == (1, 3, 21, 19)
    assert s2.condition.E[0].in_channels == 48 and s1.E.E[0].in_channels == 96  # PixelUnshuffle(4) inputs
    assert hasattr(s2.G, "output") and not hasattr(s2.G, "tail")


def test_padding_does_not_change_divisible_inputs():
    s2 = tiny(DiffIRS2, "deblur")
    y = torch.rand(1, 3, 16, 16, generator=gen(3))
    z_T = torch.randn(1, 16, generator=gen(4))
    sched = s2.schedule()
    z_0 = sampler.reverse_ipr(s2.denoise, z_T, s2.condition(y), sched)
    torch.testing.assert_close(sampler.sample_ipr(s2, y, z_T), z_0, rtol=0, atol=0)
    torch.testing.assert_close(s2(y, z_0), s2.G(y, z_0))


def test_network_draws_no_noise():
    net = tiny(DiffIRS2)
    y = torch.rand(1, 3, 8, 8, generator=gen(1))
    z = torch.randn(1, net.ipr_dim, generator=gen(2))
    torch.manual_seed(0)
    state = torch.get_rng_state()
    with torch.no_grad():
        a, b = net(y, z), net(y, z)
        net.encode(y)
    assert torch.equal(a, b) and torch.equal(torch.get_rng_state(), state)
    with pytest.raises(DpirError, match=r"needs the IPR z.*sample_ipr"):
        net(y, None)


def test_parameter_counts_official_and_small():
    # official counts also checked against a hand count of the official module structure
    with torch.device("meta"):
        assert nparams(DiffIRS1("sr")) == 24_801_478
        assert nparams(DiffIRS2("sr")) == 24_971_206
        assert nparams(DiffIRS1("deblur")) == 26_742_206
        assert nparams(DiffIRS2("deblur")) == 26_911_934
        # the IPR denoiser of the official config: Linear(513, 256) + Linear(256, 256)
        assert nparams(DiffIRS2("sr").denoise) == 513 * 256 + 256 + 256 * 256 + 256
    assert nparams(tiny(DiffIRS2)) == 226_534


# ---------------------------------------------------------------- restore contract


# determinism, batch invariance, counted NFE and a golden value: tests/test_method_contract.py

def test_declared_nfe_is_4_plus_1_plus_1():
    # official timesteps = 4 IPR-denoiser steps + 1 DIRformer + 1 CPEN_S2 pass (checked against the
    # forward-hook count by the contract test)
    m = DiffIR(tiny(DiffIRS2))
    assert m.net.timesteps == 4 and m.expected_nfe() == 6 and "4" in m.nfe_note


def test_method_build_from_network_dir(tmp_path):
    net = tiny(DiffIRS2)
    save_network(net, tmp_path / "d2", "diffir_s2", {"task": "sr", **TINY})
    ctx = BuildContext("sr", {"kind": "sr", "scale": 4}, str(tmp_path), CPU)
    m = build({"network": "d2"}, ctx)
    y = torch.rand(1, 3, 8, 8, generator=gen(0))
    torch.testing.assert_close(m.restore(y, gen(1)), DiffIR(net).restore(y, gen(1)))
    with pytest.raises(DpirError, match="scale 1"):
        build({"network": "d2"}, BuildContext("deblur", {"kind": "deblur", "scale": 1}, str(tmp_path), CPU))
    with pytest.raises(DpirError, match="needs `network"):
        build({}, ctx)


# ---------------------------------------------------------------- training


def _batch(seed, scale=4, n=2, size=32):
    # smooth images, so that the LR image predicts most of the HR one and a few steps show learning
    gt = F.interpolate(torch.rand(n, 3, size // 8, size // 8, generator=gen(seed)), size=(size, size),
                       mode="bilinear", align_corners=False)
    return {"lq": F.avg_pool2d(gt, scale), "gt": gt}


def _fit(spec, batch, steps, lr):
    opt = torch.optim.Adam(list(spec.params) if spec.params is not None else spec.model.parameters(), lr)
    spec.model.train()
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = spec.loss(batch, gen(0))  # fixed noise: the decrease measures learning, not luck
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_kd_loss_formula():
    z_hat, z = torch.randn(3, 5, generator=gen(0)), torch.randn(3, 5, generator=gen(1))
    kl, l1 = kd_losses(z_hat, z, 0.15)
    p, q = F.softmax(z / 0.15, 1), F.softmax(z_hat / 0.15, 1)
    assert float(kl) == pytest.approx(float((p * (p.log() - q.log())).sum() / 3), rel=1e-5)
    assert float(l1) == pytest.approx(float((z_hat - z).abs().mean()), rel=1e-6)


def test_losses_decrease_stage1_then_stage2(tmp_path):
    ctx = TrainContext("sr", {"kind": "sr", "scale": 4}, str(tmp_path), CPU)
    cfg1 = {"arch": "diffir_s1", "kwargs": {"task": "sr", **TINY}, "train": {"trainer": "diffir_s1"}}
    torch.manual_seed(0)
    spec1 = build_s1(cfg1, ctx)
    batch = _batch(0)
    l1 = _fit(spec1, batch, 12, 2e-3)
    assert l1[-1] < 0.8 * l1[0]
    save_network(spec1.model, tmp_path / "s1", "diffir_s1", cfg1["kwargs"])

    cfg2 = {"arch": "diffir_s2", "kwargs": {"task": "sr", **TINY},
            "train": {"trainer": "diffir_s2", "teacher": "s1"}}
    torch.manual_seed(1)
    spec2 = build_s2(cfg2, ctx)
    teacher = spec2.frozen["teacher"]
    for k, v in teacher.G.state_dict().items():  # G starts from the stage-1 G
        torch.testing.assert_close(spec2.model.G.state_dict()[k], v, rtol=0, atol=0)
    l2 = _fit(spec2, batch, 12, 2e-3)
    assert l2[-1] < 0.8 * l2[0]
    assert not any(p.requires_grad for p in teacher.parameters())


def test_trainer_options_that_are_not_implemented(tmp_path):
    ctx = TrainContext("sr", {"kind": "sr", "scale": 4}, str(tmp_path), CPU)
    with pytest.raises(DpirError, match="not implemented"):
        build_s1({"kwargs": TINY, "train": {"gan": True}}, ctx)
    with pytest.raises(DpirError, match="not implemented"):
        build_s2({"kwargs": TINY, "train": {"teacher": "s1", "encoder_steps": 10}}, ctx)
    with pytest.raises(DpirError, match="train.teacher"):
        build_s2({"kwargs": TINY, "train": {}}, ctx)
    with pytest.raises(DpirError, match="scale 1"):
        build_s1({"kwargs": TINY}, TrainContext("deblur", {"kind": "deblur", "scale": 1}, str(tmp_path), CPU))


# ---------------------------------------------------------------- official checkpoints


def _official_s2_layout(net: DiffIRS2) -> dict[str, torch.Tensor]:
    """What the official BasicSR save of DiffIRS2 contains: our keys, the DDPM wrapper's copies of
    CPEN_S2 and the denoiser, and the schedule buffers."""
    state = {k: v.clone() for k, v in net.state_dict().items()}
    for k, v in net.state_dict().items():
        if k.startswith("condition."):
            state["diffusion.condition." + k[len("condition."):]] = v.clone()
        if k.startswith("denoise."):
            state["diffusion.model." + k[len("denoise."):]] = v.clone()
    state.update(official_buffers(net.schedule()))
    return state


def test_parameter_names_are_the_official_ones():
    keys = set(tiny(DiffIRS2).state_dict()) | set(tiny(DiffIRS1).state_dict())
    for k in ["G.patch_embed.proj.weight", "G.encoder_level1.0.norm1.body.weight",
              "G.encoder_level1.0.attn.temperature", "G.encoder_level1.0.attn.kernel.0.weight",
              "G.encoder_level1.0.attn.qkv_dwconv.weight", "G.latent.0.ffn.kernel.0.weight",
              "G.latent.0.ffn.project_in.weight", "G.down1_2.body.0.weight", "G.up2_1.body.0.weight",
              "G.reduce_chan_level3.weight", "G.refinement.0.ffn.dwconv.weight", "G.tail.0.0.weight",
              "G.tail.0.2.bias", "G.tail.1.weight", "condition.E.0.weight", "condition.E.2.body.2.weight",
              "condition.E.3.weight", "condition.mlp.2.bias", "denoise.resmlp.0.weight",
              "denoise.resmlp.2.resmlp.0.weight", "E.E.0.weight", "E.mlp.0.weight"]:
        assert k in keys, k
    assert "G.encoder_level1.0.norm1.body.bias" in tiny(DiffIRS2, "deblur").state_dict()  # WithBias LN
    assert "G.output.weight" in tiny(DiffIRS2, "deblur").state_dict()


@pytest.mark.parametrize("key", ["params_ema", "params"])
def test_official_layout_loads_and_reproduces(tmp_path, key):
    net = tiny(DiffIRS2, seed=5)
    state = _official_s2_layout(net)
    assert len(state) == len(net.state_dict()) + len(SCHEDULE_BUFFERS) + sum(
        k.startswith(("condition.", "denoise.")) for k in net.state_dict())
    torch.save({key: state}, tmp_path / "net_g.pth")
    loaded = load_official(tmp_path / "net_g.pth", "s2", **TINY)
    y = torch.rand(1, 3, 8, 8, generator=gen(0))
    torch.testing.assert_close(restore(loaded, y, gen(1)), restore(net, y, gen(1)), rtol=0, atol=0)


def test_official_prefers_params_ema_and_loads_stage1(tmp_path):
    net = tiny(DiffIRS2, seed=5)
    other = {k: v + 0.01 for k, v in _official_s2_layout(net).items()}
    torch.save({"params": other, "params_ema": _official_s2_layout(net)}, tmp_path / "both.pth")
    y = torch.rand(1, 3, 8, 8, generator=gen(0))
    torch.testing.assert_close(restore(load_official(tmp_path / "both.pth", "s2", **TINY), y, gen(1)),
                               restore(net, y, gen(1)))
    s1 = tiny(DiffIRS1, "deblur", seed=6)
    torch.save({"params": {"module." + k: v for k, v in s1.state_dict().items()}}, tmp_path / "s1.pth")
    loaded = load_official(tmp_path / "s1.pth", "s1", task="deblur", **TINY)
    torch.testing.assert_close(loaded(y, y), s1(y, y))


def test_wrong_checkpoint_names_missing_and_unexpected_keys(tmp_path):
    torch.save({"params_ema": tiny(DiffIRS1).state_dict()}, tmp_path / "s1.pth")
    with pytest.raises(DpirError) as e:
        load_official(tmp_path / "s1.pth", "s2", **TINY)
    msg = str(e.value)
    assert "s1.pth" in msg and "missing keys: condition.E.0.bias" in msg and "unexpected keys: E.E.0.bias" in msg
    net = tiny(DiffIRS2)
    torch.save({"params": _official_s2_layout(net)}, tmp_path / "s2.pth")
    with pytest.raises(DpirError, match=r"wrong shapes: G\."):
        load_official(tmp_path / "s2.pth", "s2", **{**TINY, "dim": 16})
    with pytest.raises(DpirError, match="timesteps=5"):
        load_official(tmp_path / "s2.pth", "s2", **{**TINY, "timesteps": 5})
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(DpirError, match="cannot read"):
        load_official(tmp_path / "junk.pth", "s2", **TINY)
