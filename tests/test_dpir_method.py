"""DP-IR method wrapper (dpir.methods.dpir) and its two trainers (dpir.train.dpir_trainers), on tiny
stand-in networks with the interfaces of the real ones."""
from __future__ import annotations

import math
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dpir.nets
from dpir.checkpoint import save_network
from dpir.diffusion import jump_coefficients, linear_schedule
from dpir.diffusion.estimator import denoiser_range, fusion_range, schedule_facts
from dpir.errors import DpirError
from dpir.methods.base import BuildContext
from dpir.methods.dpir import DPIR, build
from dpir.train import dpir_trainers
from dpir.train.base import TrainContext



# --- stand-ins with the real interfaces ------------------------------------------------------------

class TinyIR(nn.Module):
    """ir(y) -> x0_ir, (B,3,h,w) -> (B,3,4h,4w)."""

    def __init__(self, scale: int = 4):
        super().__init__()
        self.scale = scale
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, y):
        return F.interpolate(y + 0.1 * self.conv(y), scale_factor=self.scale, mode="nearest")


class TinyDenoiser(nn.Module):
    """denoiser(x_noisy, sigma) -> x0, sigma a (B,) tensor; the noise level is an extra input channel."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, x, sigma):
        level = sigma.view(-1, 1, 1, 1).expand(x.shape[0], 1, *x.shape[2:]).to(x.dtype)
        return x + self.conv(torch.cat([x, level], 1))


class TinyFusion(nn.Module):
    """fusion(x0_ir, x0_d, t) -> x0 with t a (B,) long tensor: per-channel convex weights from t."""

    def __init__(self):
        super().__init__()
        self.mlp = nn.Linear(4, 3)
        self.conv = nn.Conv2d(6, 3, 3, padding=1)

    def forward(self, x0_ir, x0_d, t):
        assert t.dtype == torch.long and t.shape == (x0_ir.shape[0],)
        freq = torch.tensor([1.0, 0.1], device=t.device)
        emb = torch.cat([torch.sin(t[:, None] * freq / 100), torch.cos(t[:, None] * freq / 100)], 1)
        w = torch.sigmoid(self.mlp(emb))[:, :, None, None]
        return w * x0_ir + (1 - w) * x0_d + 0.1 * self.conv(torch.cat([x0_ir, x0_d], 1))


@pytest.fixture
def tiny_archs(monkeypatch):
    """Register the stand-ins as architectures so checkpoints round-trip through the real loader."""
    mod = types.ModuleType("_dpir_tiny_test_nets")
    mod.TinyIR, mod.TinyDenoiser, mod.TinyFusion = TinyIR, TinyDenoiser, TinyFusion
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    for name in ("TinyIR", "TinyDenoiser", "TinyFusion"):
        monkeypatch.setitem(dpir.nets.ARCHS, name.lower(), f"{mod.__name__}:{name}")


def nets(seed=0):
    torch.manual_seed(seed)
    return TinyIR().eval(), TinyDenoiser().eval(), TinyFusion().eval()


def gen(seed):
    return torch.Generator().manual_seed(seed)


SCHED = linear_schedule()


# --- the method --------------------------------------------------------------------------------------

# shape, determinism, batch invariance, no state between calls, counted NFE = expected_nfe() and a
# golden value (jump, noised start + DDIM with eta > 0, full chain, sdedit, ccdf): tests/test_method_contract.py;
# the prior-work modes (sdedit, ccdf, noised_start) in detail: tests/test_prior_work_modes.py

@pytest.mark.parametrize("tau,stride,mode,nfe", [(5, None, "jump", 6), (250, 5, "jump", 51), (5, None, "sdedit", 6),
                                                 (12, 5, "sdedit", 4), (5, None, "noised_start", 6),
                                                 (12, 5, "noised_start", 4), (None, None, "full", 1001)])
def test_declared_nfe_is_the_papers_count(tau, stride, mode, nfe):
    """tau + 1 ancestral, ceil(tau / stride) + 1 with DDIM (51 for the paper's tau = 250, stride 5),
    T + 1 for the full chain; printed in the NFE note."""
    method = DPIR(*nets(), SCHED, tau, ddim_stride=stride, mode=mode)
    assert method.expected_nfe() == nfe and str(nfe) in method.nfe_note
    assert method.stochastic


def test_estimator_feeds_scaled_x_t_sigma_tilde_and_t():
    """Denoiser input = x_t / sqrt(abar_t) with sigma = sigma_tilde_t, fusion gets t; the first x_t is the
    jump x_tau = a x0_ir + sqrt(v) z drawn from the same generator."""
    ir, den, fus = nets()
    seen = []
    den.register_forward_hook(lambda m, i, o: seen.append(("den", i[0].clone(), i[1].clone())))
    fus.register_forward_hook(lambda m, i, o: seen.append(("fus", i[2].clone())))
    y = torch.rand(1, 3, 4, 4, generator=gen(0))
    method = DPIR(ir, den, fus, SCHED, 3, clip_x0=False)
    method.restore(y, gen(5))
    dens = [s for s in seen if s[0] == "den"]
    assert [int(s[1]) for s in seen if s[0] == "fus"] == [3, 2, 1]
    assert [float(s[2]) for s in dens] == pytest.approx([float(SCHED.sigma_tilde(t)) for t in (3, 2, 1)], rel=1e-6)
    a, v = jump_coefficients(SCHED, 3)
    with torch.no_grad():
        x_tau = a * ir(y) + math.sqrt(v) * torch.randn((1, 3, 16, 16), generator=gen(5))
    torch.testing.assert_close(dens[0][1], x_tau / math.sqrt(float(SCHED.abar(3))), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["noised_start", "sdedit"])
def test_forward_noised_start_is_forward_noised_ir_estimate(mode):
    ir, den, fus = nets()
    seen = []
    den.register_forward_hook(lambda m, i, o: seen.append(i[0].clone()))
    y = torch.rand(1, 3, 4, 4, generator=gen(0))
    DPIR(ir, den, fus, SCHED, 4, mode=mode).restore(y, gen(6))
    ab = float(SCHED.abar(4))
    with torch.no_grad():
        x_tau = math.sqrt(ab) * ir(y) + math.sqrt(1 - ab) * torch.randn((1, 3, 16, 16), generator=gen(6))
    torch.testing.assert_close(seen[0], x_tau / math.sqrt(ab), rtol=1e-5, atol=1e-6)


def test_clip_x0_keeps_the_output_in_range():
    ir, den, fus = nets()
    y = torch.rand(3, 3, 4, 4, generator=gen(0))
    method = DPIR(ir, den, fus, SCHED, 6, ddim_stride=2, eta=0.5)
    out = method.restore(y, [gen(10), gen(11), gen(12)])
    assert out.min() >= 0 and out.max() <= 1  # clip_x0: the last step returns the clipped estimate


def test_module_bookkeeping():
    ir, den, fus = nets()
    m = DPIR(ir, den, fus, SCHED, 5)
    assert m.modules() == {"ir": ir, "denoiser": den, "fusion": fus}
    assert m.trained_modules() == {"fusion": fus}
    assert m.frozen_modules() == {"ir": ir, "denoiser": den}
    assert m.nfe_groups() == {"denoiser+fusion": [den, fus], "ir": [ir]}
    with pytest.raises(ValueError, match="mode"):
        DPIR(ir, den, fus, SCHED, 5, mode="sde")
    with pytest.raises(ValueError, match="ccdf"):       # ccdf without its data-consistency step
        DPIR(ir, den, fus, SCHED, 5, mode="ccdf")
    with pytest.raises(ValueError, match="tau"):
        DPIR(ir, den, fus, SCHED, 0)


def test_build_from_checkpoints(tmp_path, tiny_archs):
    ir, den, fus = nets(3)
    wide = denoiser_range(0.0, 1e6, "uniform")          # trained for every noise level these chains visit
    t1000 = fusion_range(1000, schedule_facts(SCHED, 1000, 1e-4, 2e-2))
    for name, net, arch, facts in (("ir_x4", ir, "tinyir", {}), ("den", den, "tinydenoiser", {"trained_for": wide}),
                                   ("fus", fus, "tinyfusion", {"trained_for": t1000})):
        save_network(net, tmp_path / name, arch, {}, **facts)
    save_network(fus, tmp_path / "fus50", "tinyfusion", {},
                 trained_for=fusion_range(50, {"T": 50, "beta_start": 1e-4, "beta_end": 0.05}))
    ctx = BuildContext(task_name="sr", task={"kind": "sr"}, networks_dir=str(tmp_path), device=torch.device("cpu"))
    cfg = {"ir": "ir_x4", "denoiser": "den", "fusion": "fus", "tau": 250, "ddim_stride": 5}
    method = build(cfg, ctx)
    assert (method.tau, method.ddim_stride, method.mode, method.variance, method.clip_x0) == (250, 5, "jump", "beta", True)
    assert method.schedule.T == 1000 and float(method.schedule.beta(1000)) == pytest.approx(0.02)
    y = torch.rand(1, 3, 4, 4, generator=gen(0))
    ref = DPIR(ir, den, fus, SCHED, 250, ddim_stride=5).restore(y, gen(1))
    assert torch.equal(method.restore(y, gen(1)), ref)  # loaded weights = saved weights
    full = build({**cfg, "mode": "full", "tau": None, "T": 50, "beta_end": 0.05, "fusion": "fus50"}, ctx)
    assert full.tau == 50 and float(full.schedule.beta(50)) == pytest.approx(0.05)


@pytest.mark.parametrize("patch,match", [
    ({"tau": None}, "missing key 'tau'"),
    ({"tau": 1001}, "'tau' must be in 1..1000"),
    ({"tau": 2.5}, "'tau' must be an integer"),
    ({"mode": "sde"}, "'mode' must be one of jump, full, sdedit, ccdf, noised_start"),
    ({"ddim_stride": 0}, "'ddim_stride'"),
    ({"variance": "fixed"}, "'variance'"),
    ({"fusion": None}, "missing key 'fusion'"),
    ({"beta_start": 0.5}, "beta_start"),
])
def test_build_errors_name_the_key(tmp_path, patch, match):
    ctx = BuildContext(task_name="sr", task={"kind": "sr"}, networks_dir=str(tmp_path), device=torch.device("cpu"))
    cfg = {"ir": "a", "denoiser": "b", "fusion": "c", "tau": 5, **patch}
    with pytest.raises(DpirError, match=match):
        build(cfg, ctx)


def test_build_missing_checkpoint_is_a_user_error(tmp_path):
    ctx = BuildContext(task_name="sr", task={"kind": "sr"}, networks_dir=str(tmp_path), device=torch.device("cpu"))
    with pytest.raises(DpirError, match="dpir train"):
        build({"ir": "a", "denoiser": "b", "fusion": "c", "tau": 5}, ctx)


# --- trainers ------------------------------------------------------------------------------------------

class StubContext(TrainContext):
    def __init__(self, frozen):
        super().__init__(task_name="sr", task={"kind": "sr"}, networks_dir="/nonexistent", device=torch.device("cpu"))
        self.frozen = frozen

    def load(self, network):
        return self.frozen[network].eval().requires_grad_(False)


def adam_reduces(spec, batch, steps=40, lr=1e-2):
    def eval_loss():
        with torch.no_grad():
            return float(spec.loss(batch, gen(1234)))

    before = eval_loss()
    params = list(spec.params) if spec.params is not None else list(spec.model.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    g = gen(7)
    for _ in range(steps):
        opt.zero_grad()
        spec.loss(batch, g).backward()
        opt.step()
    return before, eval_loss()


def test_denoiser_trainer_loss_and_training(tiny_archs):
    net_cfg = {"arch": "tinydenoiser", "kwargs": {}, "train": {"sigma_max": 0.5}}
    spec = dpir_trainers.denoiser(net_cfg, StubContext({}))
    assert spec.data == "clean" and isinstance(spec.model, TinyDenoiser)
    gt = torch.rand(4, 3, 8, 8, generator=gen(0))
    seen = []
    h = spec.model.register_forward_hook(lambda m, i, o: seen.append((i[0].clone(), i[1].clone())))
    loss = spec.loss({"gt": gt}, gen(3))
    h.remove()
    # replay the draws: sigma ~ U[0, sigma_max) per sample, then the noise
    g = gen(3)
    sigma = 0.5 * torch.rand((4,), generator=g)
    x_noisy = gt + sigma.view(4, 1, 1, 1) * torch.randn((4, 3, 8, 8), generator=g)
    assert torch.equal(seen[0][1], sigma) and torch.equal(seen[0][0], x_noisy)
    assert loss.item() == pytest.approx(F.mse_loss(spec.model(x_noisy, sigma), gt).item(), rel=1e-6)
    before, after = adam_reduces(spec, {"gt": gt})
    assert after < 0.5 * before
    default = dpir_trainers.denoiser({"arch": "tinydenoiser"}, StubContext({}))
    seen.clear()
    default.model.register_forward_hook(lambda m, i, o: seen.append(i[1]))
    default.loss({"gt": torch.rand(256, 3, 1, 1, generator=gen(0))}, gen(4))
    assert 0.9 < float(seen[0].max()) < 244.3 / 255  # the paper's range is the default


def test_fusion_trainer_loss_and_training(tiny_archs):
    ir, den, _ = nets(1)
    ctx = StubContext({"ir_net": ir, "den_net": den})
    net_cfg = {"arch": "tinyfusion", "kwargs": {}, "train": {"ir": "ir_net", "denoiser": "den_net", "tau": 250}}
    spec = dpir_trainers.fusion(net_cfg, ctx)
    assert spec.data == "pairs" and spec.frozen == {"ir": ir, "denoiser": den} and isinstance(spec.model, TinyFusion)
    lq = torch.rand(4, 3, 2, 2, generator=gen(0))
    gt = torch.rand(4, 3, 8, 8, generator=gen(1))
    seen = {}
    h1 = den.register_forward_hook(lambda m, i, o: seen.update(x_tilde=i[0].clone(), sigma=i[1].clone()))
    h2 = spec.model.register_forward_hook(lambda m, i, o: seen.update(t=i[2].clone()))
    loss = spec.loss({"lq": lq, "gt": gt}, gen(5))
    h1.remove(), h2.remove()
    g = gen(5)
    t = torch.floor(torch.rand((4,), generator=g, dtype=torch.float64) * 250).long() + 1
    eps = torch.randn((4, 3, 8, 8), generator=g)
    ab = torch.tensor([float(SCHED.abar(int(s))) for s in t], dtype=torch.float32).view(4, 1, 1, 1)
    x_t = ab.sqrt() * gt + (1 - ab).sqrt() * eps
    assert torch.equal(seen["t"], t)
    torch.testing.assert_close(seen["sigma"], torch.tensor([float(SCHED.sigma_tilde(int(s))) for s in t]))
    torch.testing.assert_close(seen["x_tilde"], x_t / ab.sqrt())
    with torch.no_grad():
        expected = F.mse_loss(spec.model(ir(lq), den(x_t / ab.sqrt(), seen["sigma"]), t), gt)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # t covers 1..tau
    seen_t = []
    spec.model.register_forward_hook(lambda m, i, o: seen_t.append(i[2]))
    with torch.no_grad():
        spec.loss({"lq": torch.rand(512, 3, 1, 1), "gt": torch.rand(512, 3, 4, 4)}, gen(6))
    assert 1 <= int(seen_t[0].min()) < 5 and 245 < int(seen_t[0].max()) <= 250
    assert not any(p.requires_grad for p in ir.parameters())
    before, after = adam_reduces(spec, {"lq": lq, "gt": gt})
    assert after < 0.8 * before  # the frozen inputs bound what a tiny fusion net can reach


def test_fusion_trainer_config_errors(tiny_archs):
    with pytest.raises(DpirError, match="train.tau"):
        dpir_trainers.fusion({"arch": "tinyfusion", "train": {"ir": "a", "denoiser": "b"}}, StubContext({}))
    with pytest.raises(DpirError, match="1..1000"):
        dpir_trainers.fusion({"arch": "tinyfusion", "train": {"ir": "a", "denoiser": "b", "tau": 0}}, StubContext({}))
    with pytest.raises(DpirError, match="sigma_max"):
        dpir_trainers.denoiser({"arch": "tinydenoiser", "train": {"sigma_max": 0}}, StubContext({}))
