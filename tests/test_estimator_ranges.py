"""DP-IR's one x0-estimator (dpir.diffusion.estimator) and the range check of its sampler.

- the fusion trainer's loss and the sampler's x0-model are the same function of (x0_ir, x_t, t);
- checkpoints record what they were trained for (``trained_for``), derived from the training config;
- a DP-IR method whose sampler visits t outside its networks' ranges is refused in one line naming the
  network, the range and the fix (the T = 1000 full chain on a fusion net trained for t <= 250 above all);
- the EDM-preconditioned MIRNet-S that serves every noise level of a T = 1000 chain.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dpir.checkpoint import read_meta, save_network
from dpir.diffusion.estimator import (PAPER_SIGMA_MAX, DPIREstimator, check_ranges, denoiser_range, fusion_range,
                                      network_range, range_from_train, schedule_facts, visited_timesteps)
from dpir.diffusion.schedule import linear_schedule
from dpir.errors import DpirError
from dpir.methods.base import BuildContext
from dpir.methods.dpir import DPIR, build
from dpir.nets import build_network
from dpir.nets.mirnet_s import MIRNetS, mirnet_n_params
from dpir.rng import make_generator
from dpir.train import dpir_trainers
from dpir.train.base import TrainContext

SCHED = linear_schedule(1000, 1e-4, 2e-2)
LINEAR = schedule_facts(SCHED, 1000, 1e-4, 2e-2)
DEN = ("udp", {"base": 4, "levels": 1, "n_conv": 1})
FUS = ("fusion", {"n_f": 4, "growth": 4, "n_layers": 1, "t_dim": 8, "t_hidden": 8, "image_skip": True})
IR = ("srdiff_rrdb", {"nf": 2, "nb": 2, "gc": 2})


def _save(root, name, spec, **facts):
    arch, kwargs = spec
    save_network(build_network(arch, **kwargs), root / name, arch, kwargs, **facts)


@pytest.fixture()
def nets(tmp_path):
    """ir, a denoiser trained for the paper's range (sigma <= 244.3/255), a fusion net for t <= 250,
    and their whole-chain counterparts."""
    _save(tmp_path, "ir", IR)
    _save(tmp_path, "den", DEN, trained_for=denoiser_range(0.0, PAPER_SIGMA_MAX, "uniform"))
    _save(tmp_path, "den_full", DEN, trained_for=range_from_train({"trainer": "denoiser", "sigma_sampling": "schedule"}))
    _save(tmp_path, "fus", FUS, trained_for=fusion_range(250, LINEAR))
    _save(tmp_path, "fus_full", FUS, trained_for=fusion_range(1000, LINEAR))
    _save(tmp_path, "fus_t100", FUS, trained_for=fusion_range(20, {**LINEAR, "T": 100}))
    _save(tmp_path, "den_unknown", DEN)
    return tmp_path


def _ctx(root, config=None):
    ctx = BuildContext(task_name="sr", task={"kind": "sr", "scale": 4}, networks_dir=str(root),
                       device=torch.device("cpu"), config=config or {})
    ctx.method_name = "dpir_x"
    return ctx


def test_the_paper_denoiser_range_ends_at_t_250():
    """244.3/255 is sigma~_t at t = 251 of the linear T = 1000 schedule (244.2986/255; REFERENCE: "corresponds
    to t in [0, 250]"): the paper's own ranges make its networks valid for t <= 251 only."""
    assert SCHED.t_for_sigma_tilde(PAPER_SIGMA_MAX) == 251
    assert float(SCHED.sigma_tilde(251)) * 255 == pytest.approx(244.2986, abs=1e-4)
    assert float(SCHED.sigma_tilde(1000)) == pytest.approx(157.3, rel=1e-3)


def test_visited_timesteps():
    assert visited_timesteps(1000, 5, None, full=False) == [5, 4, 3, 2, 1]
    assert visited_timesteps(1000, 250, 5, full=False)[:3] == [250, 245, 240]
    assert visited_timesteps(1000, 250, 5, full=False)[-1] == 5
    assert visited_timesteps(1000, 7, None, full=True) == list(range(1000, 0, -1))


def test_full_chain_on_range_limited_networks_is_refused(nets):
    """The old default dpir_full: T = 1000 steps on a denoiser trained for sigma <= 244.3/255 and a fusion
    net for t <= 250 -- 750 of its 1000 steps outside training.  One line, naming network and range."""
    with pytest.raises(DpirError) as e:
        build({"ir": "ir", "denoiser": "den", "fusion": "fus", "mode": "full"}, _ctx(nets))
    msg = str(e.value)
    assert "\n" not in msg
    assert "DP-IR method 'dpir_x' (task 'sr')" in msg and "t = 1..1000" in msg
    assert "denoiser 'den' was trained for sigma~ in [0, 0.958]" in msg and "(t <= 251 of this schedule)" in msg
    assert "sigma_sampling: schedule" in msg


def test_fusion_range_is_checked(nets):
    with pytest.raises(DpirError, match=r"visits t = 1\.\.300, but fusion network 'fus' was trained for t in "
                                        r"\[1, 250\]; use tau <= 250, or a fusion net trained over the whole chain"):
        build({"ir": "ir", "denoiser": "den_full", "fusion": "fus", "tau": 300}, _ctx(nets))


def test_schedule_mismatch_is_refused(nets):
    with pytest.raises(DpirError, match=r"fusion network 'fus_t100' was trained with another schedule "
                                        r"\(T 100 \(trained\) vs 1000\)"):
        build({"ir": "ir", "denoiser": "den", "fusion": "fus_t100", "tau": 20}, _ctx(nets))
    m = build({"ir": "ir", "denoiser": "den", "fusion": "fus_t100", "tau": 20, "T": 100}, _ctx(nets))
    assert m.schedule.T == 100


def test_in_range_methods_build(nets):
    ctx = _ctx(nets)
    assert build({"ir": "ir", "denoiser": "den", "fusion": "fus", "tau": 250}, ctx).tau == 250
    assert build({"ir": "ir", "denoiser": "den", "fusion": "fus", "tau": 250, "ddim_stride": 5}, ctx).tau == 250
    with pytest.raises(DpirError, match="fusion network 'fus' was trained for t in"):
        build({"ir": "ir", "denoiser": "den", "fusion": "fus", "tau": 251}, ctx)
    with pytest.raises(DpirError, match=r"denoiser 'den' was trained for .*use tau <= 251"):
        build({"ir": "ir", "denoiser": "den", "fusion": "fus_full", "tau": 252}, ctx)
    full = build({"ir": "ir", "denoiser": "den_full", "fusion": "fus_full", "mode": "full"}, ctx)
    assert full.tau == 1000
    # sdedit/ccdf never call the fusion net: only the denoiser's range matters
    assert build({"ir": "ir", "denoiser": "den", "fusion": "fus_t100", "tau": 250, "mode": "sdedit"}, ctx).mode == "sdedit"


def test_a_network_without_a_record_is_refused(nets):
    with pytest.raises(DpirError, match="denoiser network 'den_unknown' records no trained noise range"):
        build({"ir": "ir", "denoiser": "den_unknown", "fusion": "fus", "tau": 5}, _ctx(nets))


def test_checkpoints_from_before_the_record_derive_it_from_their_train_section(tmp_path):
    save_network(build_network(*DEN[:1], **DEN[1]), tmp_path / "old", DEN[0], DEN[1],
                 train={"trainer": "denoiser", "sigma_max": 0.5})
    assert network_range(str(tmp_path / "old"), None) == {"sigma": [0.0, 0.5], "sigma_sampling": "uniform"}


def test_before_training_the_config_is_checked(tmp_path):
    """``dpir plan`` and dry runs: no checkpoint yet, the config's train section says what will be trained."""
    cfg = {"networks": {"den": {"arch": "udp", "train": {"trainer": "denoiser", "sigma_max": 0.958039}},
                        "fus": {"arch": "fusion", "train": {"trainer": "fusion", "tau": 250, "ir": "ir", "denoiser": "den"}}}}
    with pytest.raises(DpirError, match="denoiser 'den' was trained for sigma~ in"):
        build({"ir": "ir", "denoiser": "den", "fusion": "fus", "mode": "full"}, _ctx(tmp_path, cfg))


def test_range_records():
    assert range_from_train({"trainer": "denoiser"}) == {"sigma": [0.0, PAPER_SIGMA_MAX], "sigma_sampling": "uniform"}
    full = range_from_train({"trainer": "denoiser", "sigma_sampling": "schedule", "T": 1000})
    assert full["sigma"] == [pytest.approx(math.sqrt(1e-4 / (1 - 1e-4))), pytest.approx(float(SCHED.sigma_tilde(1000)))]
    assert full["schedule"] == LINEAR
    assert range_from_train({"trainer": "fusion", "tau": 20, "T": 100}) == {
        "t": [1, 20], "schedule": {"name": "linear", "T": 100, "beta_start": 1e-4, "beta_end": 2e-2}}
    assert range_from_train({"trainer": "ir"}) is None
    with pytest.raises(DpirError, match="records no trained t range"):
        check_ranges(SCHED, [5, 4], ("d", {"any": True}), ("f", None), "m", LINEAR)


class _Ctx(TrainContext):
    def __init__(self, nets):
        super().__init__(task_name="sr", task={"kind": "sr", "scale": 4}, networks_dir="", device=torch.device("cpu"))
        self._nets = nets

    def load(self, network):
        return self._nets[network]


def test_trainers_record_their_range_and_the_fusion_loss_is_the_estimator():
    den_cfg = {"arch": "udp", "kwargs": DEN[1], "train": {"trainer": "denoiser", "sigma_sampling": "schedule"}}
    spec = dpir_trainers.denoiser(den_cfg, _Ctx({}))
    assert spec.facts["trained_for"]["sigma"][1] == pytest.approx(float(SCHED.sigma_tilde(1000)))
    with pytest.raises(DpirError, match="train.sigma_max' is for sigma_sampling: uniform"):
        dpir_trainers.denoiser({**den_cfg, "train": {**den_cfg["train"], "sigma_max": 1.0}}, _Ctx({}))
    with pytest.raises(DpirError, match="'train.sigma_sampling' must be 'uniform' or 'schedule'"):
        dpir_trainers.denoiser({**den_cfg, "train": {"trainer": "denoiser", "sigma_sampling": "log"}}, _Ctx({}))

    ir = build_network(IR[0], **IR[1]).eval()
    den = build_network(DEN[0], **DEN[1]).eval()
    fus_cfg = {"arch": "fusion", "kwargs": FUS[1], "train": {"trainer": "fusion", "ir": "ir", "denoiser": "den", "tau": 7}}
    spec = dpir_trainers.fusion(fus_cfg, _Ctx({"ir": ir, "den": den}))
    assert spec.facts == {"trained_for": fusion_range(7, LINEAR)}
    lq, gt = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 16, 16)
    loss = spec.loss({"lq": lq, "gt": gt}, [make_generator(0, "a"), make_generator(1, "b")])
    # the same draws, computed by hand: t ~ U{1..7}, then x_t, then the sampler's estimator
    from dpir.rng import rand, randn

    gens = [make_generator(0, "a"), make_generator(1, "b")]
    t = (torch.floor(rand((2,), gens, dtype=torch.float64) * 7).long() + 1)
    eps = randn(gt.shape, gens, dtype=gt.dtype)
    ab = torch.tensor([float(SCHED.abar(int(v))) for v in t], dtype=torch.float64)
    x_t = ab.sqrt().float().view(2, 1, 1, 1) * gt + (1 - ab).sqrt().float().view(2, 1, 1, 1) * eps
    method = DPIR(ir, den, spec.model, SCHED, 7, clip_x0=False)
    with torch.no_grad():
        x0_ir = ir(lq)
        by_sampler = torch.cat([method.x0_model(x0_ir[i:i + 1])(x_t[i:i + 1], int(t[i])) for i in range(2)])
    assert torch.allclose(loss, F.mse_loss(by_sampler, gt), rtol=1e-6, atol=0)


def test_estimator_takes_cpu_timesteps():
    est = DPIREstimator(build_network(DEN[0], **DEN[1]), build_network(FUS[0], **FUS[1]), SCHED)
    sqrt_ab, sigma = est.scales(torch.tensor([1, 1000]), torch.zeros(2, 3, 4, 4))
    assert sqrt_ab.shape == (2, 1, 1, 1) and float(sigma[1]) == pytest.approx(float(SCHED.sigma_tilde(1000)), rel=1e-6)
    with pytest.raises(ValueError, match="CPU long tensor"):
        est.scales(torch.tensor([1], device="meta"), torch.zeros(1, 3, 4, 4))


def test_edm_preconditioned_mirnet():
    torch.manual_seed(0)
    kw = {"n_feat": 8, "n_rrg": 1, "height": 2, "width": 1}
    net = MIRNetS(**kw, precondition="edm").eval()
    x = torch.rand(2, 3, 12, 12)
    with torch.no_grad():
        assert torch.equal(net(x, torch.zeros(2)), x)        # c_skip = 1, c_out = 0 at sigma = 0
        noisy = x + 157.0 * torch.randn_like(x)
        out = net(noisy, torch.full((2,), 157.0))
    # c_skip = 0.25 / (157^2 + 0.25) ~ 1e-5: the 157x noise barely leaks; the output stays image-sized
    assert out.abs().max() < 5.0
    assert sum(p.numel() for p in net.parameters()) == mirnet_n_params(**kw, precondition="edm") == mirnet_n_params(**kw)
    with pytest.raises(ValueError, match="precondition must be 'none' or 'edm'"):
        MIRNetS(**kw, precondition="ve")


def test_trained_record_lands_in_model_json(tmp_path):
    """dpir.train.loop saves TrainSpec.facts into model.json (what network_range reads back)."""
    save_network(build_network(DEN[0], **DEN[1]), tmp_path / "d", DEN[0], DEN[1],
                 trained_for=denoiser_range(0.0, 0.3, "uniform"))
    assert read_meta(tmp_path / "d")["trained_for"] == {"sigma": [0.0, 0.3], "sigma_sampling": "uniform"}
    assert network_range(str(tmp_path / "d"), None)["sigma"] == [0.0, 0.3]
