"""The restore contract (dpir/methods/base.py), checked for every registered method kind.

Every kind of ``dpir.methods.METHODS`` gets at least one tiny case in ``CASES`` (networks of a few
thousand parameters with fixed random weights, 8x8 observations); a registered kind without one makes
``test_every_registered_kind_has_a_case`` fail, so a new method is checked from the day it is
registered.  Each case is built the way ``dpir restore`` builds it: its networks are saved with
:func:`dpir.checkpoint.save_network` into a networks folder and the registry's factory loads them.

Checked for every case:

- the output shape and dtype of its task (SR x4: (B, 3, 4h, 4w); deblurring: (B, 3, h, w); bursts
  (B, N, 4, h, w) with ``meta=[...]``: (B, 3, 8h, 8w)), also for an odd-sized image;
- determinism for a (seed, image id): fresh generators from :func:`dpir.rng.make_generator` give
  bitwise-equal outputs; another seed changes the output exactly when the method says it is stochastic;
- a batch of two equals two batches of one (one generator per batch element);
- no state between calls (A, B, then A again gives the first A);
- the counted NFE (:func:`dpir.measure.count_nfe`, as ``dpir restore`` counts it) equals the method's
  declared ``expected_nfe()``;
- one golden value: a fixed input through the tiny method with fixed random weights.

Method-specific properties (closed forms, sampler equations, official checkpoints) stay in the
method's own test file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from dpir.checkpoint import save_network
from dpir.diffusion.estimator import denoiser_range, fusion_range
from dpir.data.burst import synthesize_burst
from dpir.measure import count_nfe
from dpir.methods import DETERMINISTIC_KINDS, METHODS, BuildContext, build_method
from dpir.nets import build_network
from dpir.rng import make_generator
from dpir.tasks import output_scale

TASKS: dict[str, dict[str, Any]] = {
    "sr": {"kind": "sr", "scale": 4},
    "deblur": {"kind": "deblur", "scale": 1},
    "burst": {"kind": "burst", "scale": 4},
}

# tiny networks (real architectures of dpir.nets.ARCHS), a few thousand parameters each
IR_X4 = ("srdiff_rrdb", {"nf": 2, "nb": 2, "gc": 2})                       # 3.6k: a 4x SR network
DENOISER = ("udp", {"base": 4, "levels": 1, "n_conv": 1})                  # 1.0k
# image_skip: the untrained fusion net's output is centred on the average of its inputs, not on ~0
FUSION = ("fusion", {"n_f": 4, "growth": 4, "n_layers": 1, "t_dim": 8, "t_hidden": 8, "image_skip": True})  # 1.2k
DPIR_NETS = {"ir": IR_X4, "den": DENOISER, "fus": FUSION}
DPIR_CFG = {"ir": "ir", "denoiser": "den", "fusion": "fus", "T": 100}
# what the stand-ins are declared trained for (model.json "trained_for", dpir.diffusion.estimator): every
# noise level and every t of the T = 100 chain, so each mode's sampler passes the range check
NET_FACTS = {"den": {"trained_for": denoiser_range(0.0, 1e3, "uniform")},
             "fus": {"trained_for": fusion_range(100, {"T": 100, "beta_start": 1e-4, "beta_end": 2e-2})}}
SRDIFF = ("srdiff", {"rrdb": {"nf": 2, "nb": 2, "gc": 2}, "hidden": 4, "dim_mults": [1, 1], "T": 8})
DIFFIR = {"dim": 2, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1, "heads": [1, 1, 1, 1],
          "n_encoder_res": 1, "n_feats": 2, "ffn_expansion_factor": 1.0}


@dataclass(frozen=True)
class Case:
    kind: str                     # a key of dpir.methods.METHODS
    task: str                     # a key of TASKS
    cfg: dict[str, Any] = field(default_factory=dict)    # the method's config entry (without kind)
    nets: dict[str, tuple[str, dict]] = field(default_factory=dict)   # network name -> (arch, kwargs)
    facts: dict[str, dict] = field(default_factory=dict)   # network name -> model.json facts (over NET_FACTS)


BYO = Path(__file__).resolve().parents[1] / "examples" / "byo"      # the python kind's example package
CASES: dict[str, Case] = {
    "bicubic": Case("bicubic", "sr"),
    "backbone": Case("backbone", "sr", {"network": "ir"}, {"ir": IR_X4}),
    "burst_bicubic": Case("burst_bicubic", "burst"),
    "dpir": Case("dpir", "sr", {**DPIR_CFG, "tau": 3}, DPIR_NETS),
    # the forward-noised start of the conditional model (the old "sdedit" mode, same numbers)
    "dpir_noised_start_ddim": Case("dpir", "sr", {**DPIR_CFG, "tau": 12, "ddim_stride": 5, "mode": "noised_start",
                                                  "eta": 0.5}, DPIR_NETS),
    # the prior-work rows of Table 8: the denoiser alone (SDEdit), + bicubic back-projection (CCDF)
    "dpir_sdedit": Case("dpir", "sr", {**DPIR_CFG, "tau": 4, "mode": "sdedit"}, DPIR_NETS),
    "dpir_ccdf": Case("dpir", "sr", {**DPIR_CFG, "tau": 4, "mode": "ccdf"}, DPIR_NETS),
    "dpir_full": Case("dpir", "sr", {**DPIR_CFG, "mode": "full", "T": 10}, DPIR_NETS,   # a 10-step chain
                      {"fus": {"trained_for": fusion_range(10, {"T": 10, "beta_start": 1e-4, "beta_end": 2e-2})}}),
    "srdiff": Case("srdiff", "sr", {"network": "srdiff"}, {"srdiff": SRDIFF}),
    "indi": Case("indi", "sr", {"network": "indi", "steps": 3},
                 {"indi": ("indi", {"hidden": 4, "dim_mults": [1], "scale": 4, "eps": 0.01})}),
    "indi_deblur_eps0": Case("indi", "deblur", {"network": "indi", "steps": 2},
                             {"indi": ("indi", {"hidden": 4, "dim_mults": [1], "scale": 1, "eps": 0.0})}),
    "diffir": Case("diffir", "sr", {"network": "diffir"}, {"diffir": ("diffir_s2", {"task": "sr", **DIFFIR})}),
    # a file, not a network of the workflow: CHECKPOINT written by _build_case into the case's folder
    "checkpoint": Case("checkpoint", "sr", {"path": "{out}/MSRResNet_tiny_x4.pth"}),
    # the README's example package outside dpir (examples/byo/byo_sharp), absolute so the cwd does not matter
    "python": Case("python", "sr", {"entry": "byo_sharp:build", "python_path": [str(BYO)], "deterministic": True,
                                    "options": {"amount": 0.5}}),
}
# kind checkpoint: a tiny MSRResNet x4 (1.9k params) in BasicSR's release layout ({"params": state}),
# detected by spandrel (dpir.nets.foreign); its bilinear skip makes the output carry the input
CHECKPOINT = ("MSRResNet_tiny_x4.pth", "msrresnet", {"num_feat": 4, "num_block": 1, "upscale": 4})

# Golden values: mean and three pixels of the output for the fixed input of ``test_golden_value``,
# computed once from this code (weights: torch.manual_seed(0) before building the case's networks,
# in the order listed; noise: make_generator(0, "golden")).  A change of these numbers means the
# method's numerics changed (its networks, schedule, sampler or noise order): update them only for
# an intended change, and say why in the commit.
GOLDEN_PIXELS = ((0, 0, 0), (1, 3, 5), (2, 7, 2))     # (channel, row, column)
GOLDEN: dict[str, tuple[float, tuple[float, float, float]]] = {
    "backbone": (0.4417146146297455, (0.49269598722457886, 0.3782789409160614, 0.38391172885894775)),
    "python": (0.49341893196105957, (0.6108325719833374, 0.4383283853530884, 0.12613318860530853)),
    "checkpoint": (0.5340390801429749, (0.6521778106689453, 0.3969499170780182, 0.22623895108699799)),
    "bicubic": (0.4932822287082672, (0.6054767370223999, 0.43557801842689514, 0.13366346061229706)),
    "burst_bicubic": (0.5690064430236816, (0.30706822872161865, 0.7367648482322693, 0.6180236339569092)),
    "diffir": (0.43401530385017395, (0.4655574858188629, 0.5281131863594055, 0.19080641865730286)),
    "dpir": (0.23259681463241577, (0.35033562779426575, 0.27546510100364685, 0.19221997261047363)),
    "dpir_full": (0.16158780455589294, (0.3380536437034607, 0.180867537856102, 0.06941825896501541)),
    "dpir_noised_start_ddim": (0.23788242042064667, (0.3201516270637512, 0.2751219868659973, 0.18488693237304688)),
    "dpir_sdedit": (0.27565643191337585, (0.23615697026252747, 0.44194626808166504, 0.0958462506532669)),
    "dpir_ccdf": (0.4921557605266571, (0.6283280253410339, 0.47822901606559753, 0.07209059596061707)),
    "indi": (0.7689049243927002, (1.434800148010254, 1.3489141464233398, -0.8980564475059509)),
    "indi_deblur_eps0": (0.7202937602996826, (1.2560923099517822, 1.221088171005249, -0.5842225551605225)),
    "srdiff": (0.45070672035217285, (0.35743850469589233, 0.6890588998794556, 0.3703145384788513)),
}


def _build_case(case: Case, root: Path):
    """(method, task config): the case's networks saved and loaded back through the registry."""
    torch.manual_seed(0)
    networks = root / "networks"
    for name, (arch, kwargs) in case.nets.items():
        net = build_network(arch, **kwargs)
        with torch.no_grad():
            if arch == "srdiff_rrdb":
                # the IR estimate is clamped to [0, 1]: centred at 0.5 instead of ~0 it is not clamped
                # away, so the outputs (and DP-IR's chain started from it) carry information
                net.conv_last.bias.fill_(0.5)
            if arch == "diffir_s2":
                # an untrained tiny IPR denoiser nearly ignores z_T; 2x larger weights make the start
                # noise change the output by ~4e-3, so the seed check sees DiffIR's stochasticity
                # (3x would amplify the kernels' batch-size rounding to ~1e-5)
                for p in net.denoise.parameters():
                    if p.ndim == 2:
                        p.mul_(2.0)
        save_network(net, networks / name, arch, kwargs, **case.facts.get(name, NET_FACTS.get(name, {})))
    config = {}
    if case.kind == "checkpoint":
        file, arch, kwargs = CHECKPOINT
        torch.save({"params": build_network(arch, **kwargs).state_dict()}, root / file)
        config = {"out": str(root)}           # the method's path is "{out}/<file>"
    task = TASKS[case.task]
    ctx = BuildContext(task_name=case.task, task=task, networks_dir=str(networks), device=torch.device("cpu"),
                       config=config)
    method = build_method({"kind": case.kind, **case.cfg}, ctx).eval()
    return method, task


@pytest.fixture(scope="module", params=sorted(CASES))
def built(request, tmp_path_factory):
    method, task = _build_case(CASES[request.param], tmp_path_factory.mktemp(request.param))
    return request.param, method, task


def observations(task: dict, n: int, seed: int = 1, size: tuple[int, int] = (8, 8)):
    """``n`` observations of the task and the restore keyword arguments (``meta`` for bursts)."""
    g = torch.Generator().manual_seed(seed)
    if task["kind"] != "burst":
        return torch.rand(n, 3, *size, generator=g), None
    # bursts of 3 frames of 4x4 packed RGGB (an 8x8 mosaic), each with its own camera and motion
    bursts = [synthesize_burst(torch.rand(3, 40, 40, generator=g), 3, make_generator(seed, f"burst{i}"),
                               {"warp_margin": 4, "max_translation": 2.0}) for i in range(n)]
    return torch.stack([b[0] for b in bursts]), [b[2] for b in bursts]


def gens(seed: int, ids: list[str]) -> list[torch.Generator]:
    return [make_generator(seed, i) for i in ids]


IDS = ["img0", "img1"]


def run(method, y, generators, meta):
    return method.restore(y, generators) if meta is None else method.restore(y, generators, meta=meta)


# ------------------------------------------------------------------------------ the table is complete

def test_every_registered_kind_has_a_case():
    missing = sorted(set(METHODS) - {c.kind for c in CASES.values()})
    assert not missing, (f"method kinds {missing} are registered in dpir.methods.METHODS but have no tiny case "
                         f"in tests/test_method_contract.py CASES: add one (and its golden value)")
    unknown = sorted({c.kind for c in CASES.values()} - set(METHODS))
    assert not unknown, f"CASES names kinds that are not registered: {unknown}"
    assert set(GOLDEN) == set(CASES), "every case needs its golden value"


# ------------------------------------------------------------------------------ the contract

def test_output_shape_and_dtype(built):
    _, method, task = built
    s = output_scale(task)
    y, meta = observations(task, 2)
    x = run(method, y, gens(0, IDS), meta)
    assert x.shape == (2, 3, s * y.shape[-2], s * y.shape[-1]) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    if task["kind"] != "burst":      # any image size, not only multiples of the networks' strides
        y, _ = observations(task, 1, size=(5, 7))
        assert run(method, y, gens(0, IDS[:1]), None).shape == (1, 3, 5 * s, 7 * s)


def test_deterministic_for_a_seed_and_image_id(built):
    name, method, task = built
    if CASES[name].kind in DETERMINISTIC_KINDS:   # these run on the first seed only
        assert not method.stochastic
    y, meta = observations(task, 2)
    a = run(method, y, gens(0, IDS), meta)
    assert torch.equal(a, run(method, y, gens(0, IDS), meta))
    other = run(method, y, gens(1, IDS), meta)
    if method.stochastic:          # the flag is honest: the seed changes a stochastic method's output
        assert (a - other).abs().max() > 1e-6
    else:
        assert torch.equal(a, other)


def test_batch_of_two_equals_two_batches_of_one(built):
    _, method, task = built
    y, meta = observations(task, 2)
    both = run(method, y, gens(0, IDS), meta)
    for i in range(2):
        one = run(method, y[i:i + 1], gens(0, IDS[i:i + 1]), None if meta is None else meta[i:i + 1])
        # The noise of element i is the same in both calls (one generator per element), but oneDNN's
        # convolution and matrix-product kernels are not batch-size invariant (they block the work
        # differently), so networks differ in the last bits (~1e-7), a little more after a chain of
        # steps: a tolerance, not bit equality.
        torch.testing.assert_close(one, both[i:i + 1], rtol=0, atol=1e-5)


def test_no_state_kept_between_calls(built):
    _, method, task = built
    y, meta = observations(task, 2)
    first = run(method, y[:1], gens(0, IDS[:1]), None if meta is None else meta[:1])
    run(method, y[1:], gens(3, IDS[1:]), None if meta is None else meta[1:])
    again = run(method, y[:1], gens(0, IDS[:1]), None if meta is None else meta[:1])
    assert torch.equal(first, again)


def test_counted_nfe_is_the_declared_nfe(built):
    _, method, task = built
    y, meta = observations(task, 2)
    with torch.no_grad(), count_nfe(method) as counter:   # as dpir.restore counts it
        run(method, y, gens(0, IDS), meta)
    expected = method.expected_nfe()
    assert isinstance(expected, int) and not isinstance(expected, bool)
    assert counter.total == expected, counter.by_group()


def test_golden_value(built):
    name, method, task = built
    y, meta = observations(task, 1, seed=7)
    x = run(method, y, [make_generator(0, "golden")], meta)
    mean, pixels = GOLDEN[name]
    # rtol 1e-5; the abs 1e-6 floor only matters for values near 0, where float32 kernel rounding
    # (~1e-7 per network call, other CPUs may block the work differently) is no longer small relatively
    assert x.mean().item() == pytest.approx(mean, rel=1e-5, abs=1e-6)
    assert [x[0, c, i, j].item() for c, i, j in GOLDEN_PIXELS] == pytest.approx(list(pixels), rel=1e-5, abs=1e-6)
