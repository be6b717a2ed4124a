"""SRDiff: schedule, sampler, method contract, trainers, official checkpoint loading."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from baselines.common.blocks import bicubic_up
from baselines.srdiff import train as srdiff_train
from baselines.srdiff.checkpoint import SCHEDULE_BUFFERS, load_official
from baselines.srdiff.method import SRDiff, build
from baselines.srdiff.nets import RRDBNet, SRDiffNet
from baselines.srdiff.sampler import from_residual, sample, to_residual
from dpir.checkpoint import save_network
from dpir.diffusion import Schedule, cosine_schedule
from dpir.errors import DpirError
from dpir.methods.base import BuildContext
from dpir.rng import make_generator, randn
from dpir.train.base import TrainContext

TINY = {"rrdb": {"nf": 8, "nb": 2, "gc": 4}, "hidden": 8, "dim_mults": [1, 2]}



def tiny_net(seed: int = 0, **over) -> SRDiffNet:
    torch.manual_seed(seed)
    return SRDiffNet(**{**TINY, **over}).eval().requires_grad_(False)


def gens(seed: int, n: int) -> list[torch.Generator]:
    return [make_generator(seed, f"img{i}") for i in range(n)]


# ------------------------------------------------------------------------------ schedule and sampler

def test_cosine_schedule_matches_independent_numpy():
    T, s = 100, 0.008
    sch = cosine_schedule(T, s)

    def f(t):
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    # without the clip abar_t = f(t) / f(0); the clip only touches beta_T (f(T) = 0 would give beta_T = 1)
    for t in (1, 2, 25, 50, 99):
        assert sch.alphas_bar[t] == pytest.approx(f(t) / f(0), rel=1e-12)
    assert sch.betas[T] == 0.999
    assert sch.alphas_bar[T] == pytest.approx(f(99) / f(0) * 0.001, rel=1e-12)
    assert sch.alphas_bar[0] == 1.0 and sch.betas[0] == 0.0
    assert np.all(np.diff(sch.alphas_bar) < 0)
    # literal values guard the formula itself (e.g. against k / (T + 1) instead of k / T)
    assert sch.alphas_bar[1] == pytest.approx(0.99936872, abs=1e-8)
    assert sch.alphas_bar[50] == pytest.approx(0.49384359, abs=1e-8)


def test_residual_convention_is_the_official_one():
    hr, up = torch.full((1, 3, 4, 4), 0.6), torch.full((1, 3, 4, 4), 0.5)
    # official: ((2 hr - 1) - (2 up - 1)) * res_rescale = 4 (hr - up) for res_rescale 2
    assert torch.allclose(to_residual(hr, up, 2.0), torch.full_like(hr, 0.4))
    assert torch.allclose(from_residual(to_residual(hr, up, 2.0), up, 2.0), hr)
    # clipped at |r| = 1, i.e. |hr - up| = 0.25
    assert to_residual(hr + 0.3, up, 2.0).max().item() == 1.0


def test_sampler_with_oracle_returns_x0_and_calls_T_times():
    sch = cosine_schedule(100)
    r0 = torch.rand(2, 3, 8, 8) * 1.6 - 0.8
    calls = []

    def oracle_eps(x_t, t):   # the exact noise of x_t given the known r0
        calls.append(t)
        ab = float(sch.alphas_bar[t])
        return (x_t - math.sqrt(ab) * r0) / math.sqrt(1 - ab)

    out = sample(oracle_eps, sch, r0.shape, gens(0, 2))
    assert calls == list(range(100, 0, -1))
    assert torch.allclose(out, r0, atol=1e-5)  # last step returns x0_hat, no noise added


def _reference_ddpm(eps_model, sch, shape, generator, clip=1.0):
    """SRDiff's chain written out by hand (the loop the baseline had before it ran on dpir.diffusion):
    the package's full_chain behind the eps -> x0 adapter must give the same bits."""
    x = randn(shape, generator)
    for t in range(sch.T, 0, -1):
        ab = float(sch.alphas_bar[t])
        x0 = (math.sqrt(1.0 / ab) * x - math.sqrt(1.0 / ab - 1.0) * eps_model(x, t)).clamp(-clip, clip)
        if t == 1:
            return x0
        beta, ab_prev = float(sch.betas[t]), float(sch.alphas_bar[t - 1])
        c1 = beta * math.sqrt(ab_prev) / (1.0 - ab)
        c2 = (1.0 - ab_prev) * math.sqrt(1.0 - beta) / (1.0 - ab)
        var = beta * (1.0 - ab_prev) / (1.0 - ab)
        x = c1 * x0 + c2 * x + math.sqrt(var) * randn(x.shape, generator)
    return x


@pytest.mark.parametrize("T", [8, 100])
def test_sampler_on_the_core_equals_the_hand_written_chain(T):
    net = tiny_net(seed=3, T=T)
    sch = cosine_schedule(T)
    assert isinstance(sch, Schedule)   # the package's one schedule type
    up = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    cond = net.encode(torch.nn.functional.avg_pool2d(up, 4))

    def eps_model(x_t, t):
        return net.denoise_fn(x_t, torch.full((2,), t - 1, dtype=torch.long), cond)

    with torch.no_grad():
        ours = sample(eps_model, sch, up.shape, gens(0, 2))
        ref = _reference_ddpm(eps_model, sch, up.shape, gens(0, 2))
    assert torch.equal(ours, ref)


# ------------------------------------------------------------------------------ method contract

# shape, determinism, batch invariance, counted NFE and a golden value: tests/test_method_contract.py

def test_output_is_clipped_after_padding():
    y = torch.rand(2, 3, 5, 7)      # odd LR size: padded to the U-Net multiple, cropped back
    x = SRDiff(tiny_net()).restore(y, gens(0, 2))
    assert x.min() >= 0 and x.max() <= 1


def test_declared_nfe_is_T_plus_one():
    # the official T = 100: 100 U-Net steps + 1 RRDB pass (the contract test checks it against the count)
    m = SRDiff(tiny_net())
    assert m.expected_nfe() == 101 and "T = 100" in m.nfe_note


def test_parameter_counts():
    official = SRDiffNet()
    assert sum(p.numel() for p in official.rrdb.parameters()) == 1_478_755
    assert sum(p.numel() for p in official.denoise_fn.parameters()) == 11_755_267
    assert sum(p.numel() for p in tiny_net().parameters()) == TINY_PARAMS


TINY_PARAMS = 57_022


# ------------------------------------------------------------------------------ trainers

class FakeCtx(TrainContext):
    """A TrainContext whose ``load`` hands out a given pre-trained RRDB."""

    def __init__(self, rrdb):
        super().__init__("sr", {"scale": 4}, "/nonexistent", torch.device("cpu"))
        self._rrdb = rrdb

    def load(self, network):
        return self._rrdb


def _batch(seed=0, b=4, size=16):
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(b, 3, size, size, generator=g)
    return {"lq": torch.nn.functional.avg_pool2d(gt, 4), "gt": gt}


def _fit(spec, batch, steps, lr):
    params = list(spec.params) if spec.params is not None else list(spec.model.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    g = torch.Generator().manual_seed(7)
    spec.model.train()
    for _ in range(steps):
        loss = spec.loss(batch, g)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_rrdb_pretraining_loss_decreases():
    torch.manual_seed(0)
    spec = srdiff_train.rrdb({"kwargs": TINY["rrdb"]}, FakeCtx(None))
    batch = _batch()
    before = spec.loss(batch, torch.Generator()).item()
    _fit(spec, batch, 30, 2e-3)
    assert spec.loss(batch, torch.Generator()).item() < 0.8 * before


def test_diffusion_training_freezes_rrdb_and_loss_decreases():
    torch.manual_seed(1)
    pre = RRDBNet(**TINY["rrdb"]).eval().requires_grad_(False)
    torch.manual_seed(0)
    spec = srdiff_train.srdiff({"kwargs": TINY, "train": {"rrdb": "rrdb_net"}}, FakeCtx(pre))
    model = spec.model
    pre_state = pre.state_dict()
    assert all(torch.equal(v, pre_state[k]) for k, v in model.rrdb.state_dict().items())
    assert {id(p) for p in spec.params} == {id(p) for p in model.denoise_fn.parameters()}
    rrdb_before = {k: v.clone() for k, v in model.rrdb.state_dict().items()}
    batch = _batch()

    def fixed_loss():   # same t and noise draws before and after training
        return spec.loss(batch, torch.Generator().manual_seed(123)).item()

    before = fixed_loss()   # ~E|eps| = 0.80: the fresh U-Net predicts almost nothing
    _fit(spec, batch, 60, 5e-3)
    assert fixed_loss() < 0.95 * before
    assert all(torch.equal(v, model.rrdb.state_dict()[k]) for k, v in rrdb_before.items())


def test_diffusion_trainer_config_errors():
    with pytest.raises(DpirError, match="train.rrdb"):
        srdiff_train.srdiff({"kwargs": TINY, "train": {}}, FakeCtx(None))
    wrong = RRDBNet(nf=8, nb=3, gc=4)
    with pytest.raises(DpirError, match="unexpected keys: RRDB_trunk.2"):
        srdiff_train.srdiff({"kwargs": TINY, "train": {"rrdb": "r"}}, FakeCtx(wrong))


# ------------------------------------------------------------------------------ checkpoints

def _official_buffers(T=100, s=0.008):
    """GaussianDiffusion's buffers as the official code computes them (numpy float64 -> float32)."""
    x = np.linspace(0, T + 1, T + 1)
    ac = np.cos(((x / (T + 1)) + s) / (1 + s) * np.pi * 0.5) ** 2
    ac = ac / ac[0]
    betas = np.clip(1 - ac[1:] / ac[:-1], 0, 0.999)
    alphas_cumprod = np.cumprod(1 - betas)
    prev = np.append(1.0, alphas_cumprod[:-1])
    post_var = betas * (1 - prev) / (1 - alphas_cumprod)
    vals = [betas, alphas_cumprod, prev, np.sqrt(alphas_cumprod), np.sqrt(1 - alphas_cumprod),
            np.log(1 - alphas_cumprod), np.sqrt(1 / alphas_cumprod), np.sqrt(1 / alphas_cumprod - 1), post_var,
            np.log(np.maximum(post_var, 1e-20)), betas * np.sqrt(prev) / (1 - alphas_cumprod),
            (1 - prev) * np.sqrt(1 - betas) / (1 - alphas_cumprod)]
    return {k: torch.tensor(v, dtype=torch.float32) for k, v in zip(SCHEDULE_BUFFERS, vals, strict=True)}


def _write_official(path, model_state):
    torch.save({"global_step": 400000, "optimizer_states": [{"state": {}, "param_groups": [{"lr": 2e-4}]}],
                "state_dict": {"model": model_state}}, path)
    return path


def test_official_checkpoint_round_trip(tmp_path):
    net = tiny_net(seed=5)
    path = _write_official(tmp_path / "model_ckpt_steps_400000.ckpt", {**net.state_dict(), **_official_buffers()})
    loaded = load_official(path)
    assert (loaded.scale, loaded.T, loaded.res_rescale) == (4, 100, 2.0)
    assert loaded.rrdb.nb == 2 and loaded.denoise_fn.multiple == 2   # architecture inferred from shapes
    for k, v in net.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    y = torch.rand(1, 3, 4, 4)
    assert torch.equal(SRDiff(net).restore(y, gens(0, 1)), SRDiff(loaded).restore(y, gens(0, 1)))


def test_official_checkpoint_errors(tmp_path):
    state = {**tiny_net().state_dict(), **_official_buffers()}
    del state["rrdb.conv_last.bias"]
    state["denoise_fn.mid_attn.fn.g"] = torch.zeros(1)
    with pytest.raises(DpirError) as e:
        load_official(_write_official(tmp_path / "a.ckpt", state))
    msg = str(e.value)
    assert "missing keys: rrdb.conv_last.bias" in msg and "unexpected keys: denoise_fn.mid_attn.fn.g" in msg
    assert "a.ckpt" in msg

    torch.save({"params": {}}, tmp_path / "b.pth")
    with pytest.raises(DpirError, match=r"not an SRDiff checkpoint.*\['params'\]"):
        load_official(tmp_path / "b.pth")

    linear = {**tiny_net().state_dict(), **_official_buffers()}
    linear["betas"] = torch.linspace(1e-4, 2e-2, 100)
    with pytest.raises(DpirError, match="'betas' buffer is not the cosine schedule"):
        load_official(_write_official(tmp_path / "c.ckpt", linear))

    with pytest.raises(DpirError, match="does not exist"):
        load_official(tmp_path / "missing.ckpt")

    # weights_only loading refuses pickled objects; the message says how to opt in
    torch.save({"state_dict": {"model": {}}, "hparams": PickledThing()}, tmp_path / "d.ckpt")
    with pytest.raises(DpirError, match="allow_pickle=True"):
        load_official(tmp_path / "d.ckpt")


class PickledThing:
    pass


def test_method_build_from_trained_network(tmp_path):
    net = tiny_net(seed=2)
    save_network(net, tmp_path / "srdiff_net", "srdiff", TINY)
    ctx = BuildContext("sr", {"kind": "sr", "scale": 4}, str(tmp_path), torch.device("cpu"))
    m = build({"kind": "srdiff", "network": "srdiff_net"}, ctx)
    y = torch.rand(1, 3, 4, 4)
    assert torch.equal(m.restore(y, gens(0, 1)), SRDiff(net).restore(y, gens(0, 1)))
    assert set(m.trained_modules()) == {"rrdb", "denoise_fn"} and m.stochastic
    with pytest.raises(DpirError, match="scale"):
        build({"kind": "srdiff", "network": "srdiff_net"},
              BuildContext("sr2", {"kind": "sr", "scale": 2}, str(tmp_path), torch.device("cpu")))
    with pytest.raises(DpirError, match="network"):
        build({"kind": "srdiff"}, ctx)


def test_bicubic_up_is_torch_bicubic():
    lr = torch.rand(1, 3, 3, 5)
    up = bicubic_up(lr, 4)
    assert up.shape == (1, 3, 12, 20)
    assert torch.equal(up, torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False))
