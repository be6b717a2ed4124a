"""InDI: path, sampler (incl. the derived noise term), method contract, trainer."""
from __future__ import annotations

import pytest
import torch

from baselines.common.blocks import bicubic_up
from baselines.indi import train as indi_train
from baselines.indi.method import InDI, build
from baselines.indi.nets import InDINet
from baselines.indi.sampler import degrade, indi_sample
from dpir.checkpoint import save_network
from dpir.errors import DpirError
from dpir.methods.base import BuildContext
from dpir.rng import make_generator
from dpir.train.base import TrainContext

TINY = {"hidden": 8, "dim_mults": [1, 2], "scale": 4, "eps": 0.01}



def tiny_net(seed: int = 0, **over) -> InDINet:
    torch.manual_seed(seed)
    return InDINet(**{**TINY, **over}).eval().requires_grad_(False)


def gens(seed: int, n: int) -> list[torch.Generator]:
    return [make_generator(seed, f"img{i}") for i in range(n)]


# ------------------------------------------------------------------------------ path and sampler

def test_degrade_formula():
    x, y, n = torch.full((2, 1, 1, 1), 0.2), torch.full((2, 1, 1, 1), 1.0), torch.full((2, 1, 1, 1), 3.0)
    t = torch.tensor([0.0, 0.25])
    out = degrade(x, y, t, 0.1, n).flatten()
    assert out[0].item() == pytest.approx(0.2)                          # t = 0: the clean image
    assert out[1].item() == pytest.approx(0.75 * 0.2 + 0.25 * 1.0 + 0.25 * 0.1 * 3.0)


@pytest.mark.parametrize("eps", [0.0, 0.05])
def test_sampler_with_oracle_returns_x_in_N_calls(eps):
    x = torch.rand(2, 3, 8, 8)
    y = torch.rand(2, 3, 8, 8)
    times = []

    def oracle(x_t, t):
        times.append(t)
        return x

    out = indi_sample(oracle, y, 5, gens(0, 2), eps=eps)
    assert times == [1.0, 0.8, 0.6, 0.4, 0.2]
    assert torch.equal(out, x)  # the last step returns F itself


def test_noise_term_keeps_the_path_marginals():
    # With the oracle F = x, x_t must stay on the training path x_t = (1 - t) x + t y + t eps_t n for a
    # t-dependent eps_t: this checks the derived noise term (t - delta) sqrt(eps_{t-delta}^2 - eps_t^2).
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    y = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(1))

    def eps_t(t):
        return 0.05 + 0.2 * (1 - t)

    stds = {}

    def oracle(x_t, t):
        stds[t] = ((x_t - (1 - t) * x - t * y) / t).std().item()
        return x

    indi_sample(oracle, y, 4, gens(0, 1), eps=eps_t)
    for t, s in stds.items():
        assert s == pytest.approx(eps_t(t), rel=0.03), t
    # a constant eps needs no noise after the start
    stds.clear()
    indi_sample(oracle, y, 4, gens(0, 1), eps=0.05)
    assert all(s == pytest.approx(0.05, rel=0.03) for s in stds.values())
    with pytest.raises(ValueError, match="non-increasing"):
        indi_sample(oracle, y, 4, gens(0, 1), eps=lambda t: 0.05 * t)


# ------------------------------------------------------------------------------ method contract

# shapes (SR and deblurring), determinism (and eps = 0: not stochastic), batch invariance, counted
# NFE = steps and a golden value: tests/test_method_contract.py

def test_parameter_counts():
    assert sum(p.numel() for p in InDINet().parameters()) == 12_902_723
    assert sum(p.numel() for p in tiny_net().parameters()) == TINY_PARAMS


TINY_PARAMS = 42_923


def test_method_build_from_trained_network(tmp_path):
    net = tiny_net(seed=2, eps=0.02)
    save_network(net, tmp_path / "indi_net", "indi", {**TINY, "eps": 0.02})
    ctx = BuildContext("sr", {"kind": "sr", "scale": 4}, str(tmp_path), torch.device("cpu"))
    m = build({"kind": "indi", "network": "indi_net", "steps": 3}, ctx)
    assert (m.steps, m.eps, m.stochastic) == (3, 0.02, True)   # eps from the checkpoint
    y = torch.rand(1, 3, 4, 4)
    assert torch.equal(m.restore(y, gens(0, 1)), InDI(net, steps=3).restore(y, gens(0, 1)))
    assert build({"kind": "indi", "network": "indi_net", "eps": 0.0}, ctx).eps == 0.0
    with pytest.raises(DpirError, match="scale"):
        build({"kind": "indi", "network": "indi_net"},
              BuildContext("deblur", {"kind": "deblur", "scale": 1}, str(tmp_path), torch.device("cpu")))
    with pytest.raises(DpirError, match="steps"):
        build({"kind": "indi", "network": "indi_net", "steps": 0}, ctx)


# ------------------------------------------------------------------------------ trainer

CTX = TrainContext("sr", {"kind": "sr", "scale": 4}, "/nonexistent", torch.device("cpu"))


def _batch(seed=0, b=4, size=16):
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(b, 3, size, size, generator=g)
    return {"lq": torch.nn.functional.avg_pool2d(gt, 4), "gt": gt}


def test_t_distribution_has_point_mass_at_one():
    t = indi_train.sample_t(20000, 0.1, torch.Generator().manual_seed(0))
    ones = (t == 1).float().mean().item()
    assert ones == pytest.approx(0.1, abs=0.01)
    rest = t[t < 1]
    assert rest.min() >= 0 and rest.mean().item() == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("kind", ["l2", "l1"])
def test_training_loss_decreases(kind):
    torch.manual_seed(0)
    spec = indi_train.indi({"kwargs": TINY, "train": {"loss": kind, "p_one": 0.5}}, CTX)
    batch = _batch()

    def fixed_loss():  # same t and noise draws before and after training
        return spec.loss(batch, torch.Generator().manual_seed(123)).item()

    before = fixed_loss()
    opt = torch.optim.Adam(spec.model.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(7)
    spec.model.train()
    for _ in range(40):
        loss = spec.loss(batch, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert fixed_loss() < 0.8 * before


def test_training_loss_is_the_regression_to_x():
    torch.manual_seed(0)
    spec = indi_train.indi({"kwargs": {**TINY, "eps": 0.0}, "train": {"p_one": 1.0}}, CTX)
    batch = _batch()
    # p_one = 1, eps = 0: x_t = y exactly, so the loss is || F(y, 1) - x ||^2
    y = bicubic_up(batch["lq"], 4)
    expected = torch.mean((spec.model(y, torch.ones(4)) - batch["gt"]) ** 2)
    assert spec.loss(batch, torch.Generator()).item() == pytest.approx(expected.item(), rel=1e-6)


def test_trainer_config_errors():
    with pytest.raises(DpirError, match="p_one"):
        indi_train.indi({"kwargs": TINY, "train": {"p_one": 1.5}}, CTX)
    with pytest.raises(DpirError, match="train.loss"):
        indi_train.indi({"kwargs": TINY, "train": {"loss": "ssim"}}, CTX)
    spec = indi_train.indi({"kwargs": {**TINY, "scale": 2}, "train": {}}, CTX)
    with pytest.raises(DpirError, match="kwargs.scale"):
        spec.loss(_batch(), torch.Generator())
