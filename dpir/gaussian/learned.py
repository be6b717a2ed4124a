"""DP-IR's parts learned inside the Gaussian world, and how far they are from their exact oracles.

Why.  The exact section (:mod:`dpir.report.gaussian`) shows what DP-IR's samplers do with perfect parts;
the harness's real tables use learned parts whose distance from E[x0 | y], E[x0 | x_t] and
E[x0 | y, x_t] cannot be measured on photos.  Here the same small architectures are trained on the
world's own images, so each network's error against its oracle is a number, and the harness's real
sampler (:class:`dpir.methods.dpir.DPIR`) run with learned, oracle or mixed parts shows how much of a
DP-IR row's distance from the bound the learned parts cost.

What is trained (in-process, on fresh draws of the world's train split: training image n is
``World.sample``'s image n of split "train", its observation noise from (seed, n) only; seeded).
The losses are the harness trainers' own closures, handed in-memory frozen parts
(:func:`dpir.train.trainers.ir`, :func:`dpir.train.dpir_trainers.denoiser` and ``fusion``); only the loop is
this module's (Adam, the harness's step decay of the learning rate, no checkpoints):

* the IR network f(y) ~ E[x0 | y], the regression baseline: ``msrresnet`` (sr<k>) or ``udp`` without
  its noise channel (blur), trainer ``ir`` with the MSE loss;
* the denoiser D(x~, sigma) ~ E[x0 | x~]: ``mirnet_s``, trainer ``denoiser`` with sigma ~ U[0, sigma~_tau]
  (the paper's uniform sampling, cut at the jump's tau: it covers sigma~_t for t in [1, tau]).  ONE
  denoiser serves every degradation of the world, as in DP-IR: it never sees y and the prior is shared;
* the fusion net F(x0_ir, x0_d, t) ~ E[x0 | y, x_t]: ``fusion``, trainer ``fusion``: the MSE of
  :class:`dpir.diffusion.estimator.DPIREstimator`'s x0_hat with t ~ U{1..tau}, x_t ~ q(x_t | x0), its
  inputs the learned IR's estimate and the frozen learned denoiser.

Excess error (:func:`excess_ir`, :func:`excess_denoiser`, :func:`excess_fusion`).  For a function f of the
inputs u (y; x~; or y and x_t) and the oracle o(u) = E[x0 | u],

    E|f(u) - x0|^2 = E|f(u) - o(u)|^2 + E|o(u) - x0|^2,

since the cross term E[(f - o) . (o - x0)] vanishes (E[x0 - o(u) | u] = 0: orthogonality of the
conditional mean).  So the excess MSE(f) - MSE(o) IS E|f - o|^2, and it is estimated directly as the
mean over test draws of |f - o|^2.  The difference of two Monte Carlo MSEs would carry the fluctuation
of |o - x0|^2 (of the size of the oracle's MSE itself, which is larger than the excess of a good
network); |f - o|^2 fluctuates only on the excess's own scale.  The oracle's MSE beside it is exact
(tr Cov(x0 | u): 1 / p for E[x0|y], S sigma^2 / (S + sigma^2) per frequency for the denoiser,
1 / (p + c_t) for the fusion), so the ratio excess / oracle MSE says how far each part is from optimal.
The fusion is fed the ORACLE estimates E[x0|y] and E[x0|x_t]: that isolates its own error.

Rows (:func:`compute`).  On ``samples`` test images (one observation each, one sampler draw each, the same
sampler noise for every row: paired), by the harness's sampler with ``clip_x0: false`` (the laws are those
of unclipped chains): the learned IR alone; DP-IR with every part learned; two mixes (learned fusion with
oracle IR and denoiser; learned IR with oracle denoiser and fusion); and DP-IR with every part an oracle,
estimated the same way, beside its exact law (the estimators' own check).  D uses the same identity,
D = MMSE + E|x_hat - E[x0|y]|^2 (x_hat is a function of y and of noise independent of x0), the MMSE
exact and the second term by Monte Carlo with its standard error (the direct mean of |x_hat - x0|^2 is
kept in the JSON).  P = W2(output law, prior) per pixel, from the samples by
:func:`dpir.gaussian.w2.w2_squared_extrapolated` (estimate and standard error of W2^2) against the exact
prior in RGB pixel coordinates: d = 3 size^2, NOT split by colour channel, since learned networks mix the
colours.  The error of P is the standard error of W2^2 mapped through the square root.

Baselines (config ``gaussian.learned.baselines``, default all three; :func:`compute_baselines`).  InDI,
SRDiff and DiffIR are trained in the same world with their own trainer closures through :func:`train` (the
same fresh training draws, the same seeding, ``baseline_steps`` Adam steps per network at ``lr``; DiffIR's
stage 2 at half of it, as in the harness's configs): InDI ``indi`` (F(x_t, t), p_one 0.1, L2); SRDiff
``srdiff_rrdb`` (its RRDB encoder, L1) then ``srdiff`` (the conditional U-Net on the residual, RRDB frozen);
DiffIR ``diffir_s1`` then ``diffir_s2`` (knowledge distillation from S1).  Each method is the harness's own
Method class (:class:`baselines.indi.method.InDI`, ``SRDiff``, ``DiffIR``) on the in-memory networks (their
``build`` reads checkpoints from disk), run by :func:`estimate_row` on the same test observations with the
same per-image sampler generators as the DP-IR rows (paired).  A row per baseline and degradation it
supports (``family: "baseline"``, ``method``: its name), its NFE in ``steps`` (the method's
``expected_nfe``; ``nfe_counted``: forward calls counted during the sampling, per restore call), its
parameters (``params``: the method's modules) and each network's training facts (loss first/last) under
the degradation's ``baselines``.  SRDiff is SR only (it diffuses the HR residual over the bicubic
upsampling of an LR input): for blur it is listed in ``baselines_skipped`` with the reason, and the
Markdown table says so.  Sizes (:data:`BASELINE_NETS`, :data:`BASELINE_METHODS`), chosen for the budget:
InDI hidden 8, dim_mults (1, 2), N = 5 steps (the harness's tables use 10); SRDiff's RRDB nf 16 / nb 2 / gc 8
(the default config's; at nf 8 the seed-0 initialisation's clamped output was dead, all zeros), U-Net
hidden 8, dim_mults (1, 2), T = 10 (NFE 11; the harness's 100); DiffIR dim 8, blocks (1, 1, 1, 1), one
refinement block, heads (1, 1, 2, 2), n_feats 8 (IPR of 32), its 4 IPR steps (NFE 6); ``baseline_steps`` 30.
At that budget every baseline is undertrained and SRDiff most: its noise-prediction loss (L1) stays at the
~0.80 of predicting no noise (0.812 -> 0.804 at the default config), so its row measures the budget, not
SRDiff; SRDiff also clips its output to [0, 1] (as the official code) while ~9.5 % of this world's pixels
lie outside.  DiffIR, a regression network conditioned on a 32-number IPR, lands next to the MMSE point
(P ~ W0), which is ON the bound: "nearer the bound" (the claim of :func:`baseline_claim`) favours such
near-MMSE estimators, so read it with P.

Sizes (config ``gaussian.learned``, :data:`DEFAULTS`).  The learned rows live in an 8 x 8 world (d = 3 x 64
= 192), not the exact section's 32 x 32: P comes from a W2 estimate whose extrapolation needs N well above
4 d (its smallest subset is N / 4).  Measured with the harness's sampler and ORACLE parts (sr4, jump tau = 50
+ DDIM/5; estimated P vs the exact one, per pixel): 16 x 16 (d = 768): N = 1024 -> 0.0000 vs 0.0152,
N = 2048 -> 0.0181, N = 4096 -> 0.0156; 12 x 12: N = 2048 -> 0.0008 vs 0.0120, N = 4096 -> 0.0117;
8 x 8: N = 1024 -> 0.0102 vs 0.0191, N = 2048 -> 0.0131, N = 4096 -> 0.0192 (± 0.0017).  A learned chain
costs per pixel and per draw, so 4096 draws at 16 x 16 would take ~4x the 8 x 8 sampling time, beyond the
budget: hence 8 x 8 with N = 4096.  The jump is tau = 50 with DDIM/5 (10 reverse steps), so that N x steps
calls of the small networks fit.  Networks are small and trained for 300 steps: the point is to show, with
numbers, how far they are from optimal (at the default config the fusion's excess is 0.3-7x its oracle's
MSE, largest at small t where the oracle's MSE is tiny; the IR's 0.07x (sr4) and 0.5x (blur)).

Cost, measured on the shared 2-core development machine under the load of another job, one thread, at the
default config: 98 s for the learned part of ``dpir gaussian`` (the denoiser 14 s; per degradation 38-43 s,
of which training the IR 4-5 s and the fusion 11-14 s, the rest the 5 sampled rows, W2 and excess errors);
the whole command 178 s (the exact part alone: 76-79 s).  The baselines add ~60 s: measured side by side
(nice 19 beside a timing job using both cores, one thread, the same session), ``dpir gaussian`` took 185 s
and 204 s without them (wall 196 / 217 s, user CPU 182 / 180 s) and 244 s and 247 s with them (wall 255 /
260 s, user CPU 239 / 236 s); inside, the baselines took 57-59 s: InDI 7-8 s per degradation (training 3 s,
5 NFE on 4096 images), SRDiff 13-15 s (training 4-5 s, 11 NFE), DiffIR 18 s (sr4) and 11-12 s (blur), mostly
its two training stages (~0.15 s per step whatever its width: per-op overhead of the DIRformer on 8 x 8
inputs; for SR it pads the 2 x 2 input to 8 x 8).  The tests (``tests/test_gaussian_learned.py``, 3 steps,
32 samples, baselines included) run in ~17 s.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from dpir.errors import DpirError
from dpir.train.base import TrainContext

#: the baselines trained in the world (:func:`compute_baselines`), in the order of their rows
BASELINE_NAMES = ("indi", "srdiff", "diffir")
#: ``gaussian.learned`` keys and defaults (validated by the schema, then :func:`check_settings`)
DEFAULTS = {"size": 8, "tau": 50, "ddim_stride": 5, "steps": 300, "batch": 32, "lr": 2.0e-3, "samples": 4096,
            "seed": 0, "baselines": list(BASELINE_NAMES), "baseline_steps": 30}
#: (key, minimum) of the integer settings; ``lr`` is a number > 0, ``ddim_stride`` an integer or null
_INTS = {"size": 4, "tau": 1, "steps": 1, "batch": 2, "samples": 16, "seed": 0, "baseline_steps": 1}
#: the t grid of the excess-error table (the points within [1, tau] are used)
T_GRID = (1, 5, 25, 50, 100, 250)
#: the architectures (harness names, :data:`dpir.nets.ARCHS`) and their kwargs: small, so that training
#: all three for two degradations stays inside the default config's budget
NETS = {
    "ir_sr": ("msrresnet", {"num_feat": 16, "num_block": 2}),                       # + upscale = the scale
    "ir_blur": ("udp", {"base": 16, "levels": 2, "n_conv": 1, "noise_channel": False}),
    "denoiser": ("mirnet_s", {"n_feat": 8, "n_rrg": 1, "height": 2, "width": 1}),
    "fusion": ("fusion", {"n_f": 8, "growth": 8, "n_layers": 2, "t_dim": 16, "t_hidden": 32, "image_skip": True}),
}
#: images per network call when restoring or evaluating (bounds memory; results do not depend on it)
CHUNK = 256
#: the criterion of the learned-fusion claim: its excess at most this share of the oracle's MSE
FUSION_CLOSE = 0.10


def check_settings(sec) -> dict:
    """``gaussian.learned`` with defaults filled in, checked (one-line errors naming the key)."""
    if not isinstance(sec, dict):
        raise DpirError(f"config key 'gaussian.learned' must be a mapping (e.g. {{steps: 300, samples: 1024}}), "
                        f"got {sec!r}")
    for key in sec:
        if key not in DEFAULTS:
            raise DpirError(f"config key 'gaussian.learned.{key}' is not a known setting; known: "
                            f"{', '.join(DEFAULTS)}")
    s = {**DEFAULTS, **sec}
    for key, low in _INTS.items():
        v = s[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise DpirError(f"config key 'gaussian.learned.{key}' must be an integer >= {low}, got {v!r}")
    if isinstance(s["lr"], bool) or not isinstance(s["lr"], (int, float)) or not s["lr"] > 0:
        raise DpirError(f"config key 'gaussian.learned.lr' must be a number > 0, got {s['lr']!r}")
    if s["tau"] > 1000:
        raise DpirError(f"config key 'gaussian.learned.tau': {s['tau']} is outside 1..1000 (the schedule's T)")
    stride = s["ddim_stride"]
    if stride is not None and (isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride < s["tau"]):
        raise DpirError(f"config key 'gaussian.learned.ddim_stride' must be null (ancestral steps) or an integer in "
                        f"1..{s['tau'] - 1} (below gaussian.learned.tau), got {stride!r}")
    if s["size"] > 32:
        raise DpirError(f"config key 'gaussian.learned.size': {s['size']} is too large for the W2 estimate "
                        f"(d = 3 size^2 against {s['samples']} samples); use at most 32")
    bl = s["baselines"]
    if bl is None:
        bl = []
    if not isinstance(bl, (list, tuple)) or not all(isinstance(b, str) for b in bl):
        raise DpirError(f"config key 'gaussian.learned.baselines' must be a list of baseline names (known: "
                        f"{', '.join(BASELINE_NAMES)}; [] for none), got {bl!r}")
    for b in bl:
        if b not in BASELINE_NAMES:
            raise DpirError(f"config key 'gaussian.learned.baselines': unknown baseline {b!r}; known: "
                            f"{', '.join(BASELINE_NAMES)}")
    if len(set(bl)) != len(bl):
        raise DpirError(f"config key 'gaussian.learned.baselines' names a baseline twice: {list(bl)}")
    s["baselines"] = list(bl)
    return s


def ir_net(spec) -> tuple[str, dict]:
    """(arch, kwargs) of the learned IR network of a world (one-line error where none fits)."""
    if spec.task == "sr":
        from dpir.nets.msrresnet import SCALES

        if spec.scale not in SCALES:
            raise DpirError(f"config key 'gaussian.learned': the learned IR network (msrresnet) supports sr"
                            f"{', sr'.join(map(str, SCALES))}, not sr{spec.scale}; drop the learned section or the "
                            "degradation")
        arch, kw = NETS["ir_sr"]
        return arch, {**kw, "upscale": spec.scale}
    return NETS["ir_blur"]


# ------------------------------------------------------------------------------------ draws

def draw(world, indices, seed: int, split: str) -> torch.Tensor:
    """Prior draws of image indices ``indices`` of ``split``: exactly :meth:`World.sample`'s images (image
    i from the generator of (seed, "gaussian-<split>:<i>") only), for any index range."""
    from dpir.rng import make_generator, randn

    n = world.size
    idx = list(indices)
    gens = [make_generator(seed, f"gaussian-{split}:{i}") for i in idx]
    w = randn((len(idx), 3, n, n), gens, dtype=torch.float64)
    z = torch.fft.ifft2(torch.fft.fft2(w) * torch.from_numpy(np.sqrt(world.spectra))).real
    z = z + torch.from_numpy(world.mean_pca)[None, :, None, None]
    return world.from_pca(z)


def observe(world, x: torch.Tensor, indices, seed: int, split: str) -> torch.Tensor:
    """y = A x + s n, the noise of image i from (seed, "gaussian-<split>-noise:<i>") only."""
    from dpir.rng import make_generator

    return world.observe(x, [make_generator(seed, f"gaussian-{split}-noise:{i}") for i in indices])


# --------------------------------------------------------------------------------- training

@dataclass
class _Parts(TrainContext):
    """The trainers' context with the frozen parts in memory (``load`` by name) instead of on disk."""

    parts: dict = field(default_factory=dict)

    def load(self, network: str) -> nn.Module:
        return self.parts[network]


def train(role: str, trainer, net_cfg: dict, world, ls: dict, parts: dict | None = None) -> tuple[nn.Module, dict]:
    """Train one network with the harness trainer ``trainer`` (its loss closure) on fresh draws.

    Step s uses training images [s B, (s + 1) B) of the world's train split (and their observations), the
    loss noise from :func:`dpir.rng.sample_generators` of the role's seed; the initial weights from
    ``torch.manual_seed(role seed)`` inside a forked RNG (the global state is left untouched).  Adam at
    ``lr``, halved after each third of the steps (the harness's ``lr_decay`` / ``lr_every``)."""
    from dpir.rng import image_seed, sample_generators

    t0 = time.perf_counter()
    seed = image_seed(ls["seed"], f"gaussian-learned-{role}")
    task = {"kind": "sr" if world.spec.task == "sr" else "deblur"}
    ctx = _Parts(task_name=f"gaussian-{world.spec.task}", task=task, networks_dir="", device=torch.device("cpu"),
                 parts=parts or {})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        spec = trainer(net_cfg, ctx)
    model = spec.model
    params = [p for p in (spec.params if spec.params is not None else model.parameters()) if p.requires_grad]
    opt = torch.optim.Adam(params, lr=float(ls["lr"]))
    steps, B = int(ls["steps"]), int(ls["batch"])
    decay = torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, math.ceil(steps / 3)), gamma=0.5)
    model.train()
    losses = []
    for s in range(steps):
        idx = range(s * B, (s + 1) * B)
        x = draw(world, idx, ls["seed"], "train")
        batch = {"gt": x.float()}
        if spec.data == "pairs":
            batch["lq"] = observe(world, x, idx, ls["seed"], "train").float()
        loss = spec.loss(batch, sample_generators(seed, idx, f"gaussian-{role}"))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        decay.step()
        losses.append(float(loss.detach()))
    model.eval()
    model.requires_grad_(False)
    tail = max(1, steps // 10)
    return model, {"arch": net_cfg["arch"], "kwargs": dict(net_cfg.get("kwargs") or {}), "train": dict(net_cfg["train"]),
                   "params": sum(p.numel() for p in model.parameters()), "steps": steps, "batch": B,
                   "lr": float(ls["lr"]), "seed": int(ls["seed"]), "init_seed": seed,
                   "loss_first": float(np.mean(losses[:tail])), "loss_last": float(np.mean(losses[-tail:])),
                   "seconds": time.perf_counter() - t0}


def train_ir(world, ls: dict) -> tuple[nn.Module, dict]:
    from dpir.train.trainers import ir

    arch, kw = ir_net(world.spec)
    return train("ir", ir, {"arch": arch, "kwargs": kw, "train": {"trainer": "ir", "loss": "mse"}}, world, ls)


def train_denoiser(world, ls: dict, schedule) -> tuple[nn.Module, dict]:
    from dpir.train.dpir_trainers import denoiser

    arch, kw = NETS["denoiser"]
    sigma_max = float(schedule.sigma_tilde(int(ls["tau"])))
    cfg = {"arch": arch, "kwargs": kw, "train": {"trainer": "denoiser", "sigma_sampling": "uniform",
                                                  "sigma_max": sigma_max}}
    return train("denoiser", denoiser, cfg, world, ls)


def train_fusion(world, ls: dict, ir: nn.Module, den: nn.Module) -> tuple[nn.Module, dict]:
    from dpir.train.dpir_trainers import fusion

    arch, kw = NETS["fusion"]
    cfg = {"arch": arch, "kwargs": kw, "train": {"trainer": "fusion", "ir": "ir", "denoiser": "denoiser",
                                                  "tau": int(ls["tau"])}}
    return train(f"fusion-{world.spec.task}", fusion, cfg, world, ls, parts={"ir": ir, "denoiser": den})


# -------------------------------------------------------------------------------- baselines

#: the baselines' networks in the world: (arch, kwargs) by role, kwargs small so that training and sampling
#: all of them on the default config's 4096 test images stays inside its budget (module docstring); the
#: scale kwargs are the world's (set by the builders)
BASELINE_NETS = {
    "indi": ("indi", {"hidden": 8, "dim_mults": [1, 2], "eps": 0.01}),
    "srdiff_rrdb": ("srdiff_rrdb", {"nf": 16, "nb": 2, "gc": 8}),
    "srdiff": ("srdiff", {"rrdb": {"nf": 16, "nb": 2, "gc": 8}, "hidden": 8, "dim_mults": [1, 2], "res_rescale": 2.0,
                          "T": 10}),
    "diffir_s1": ("diffir_s1", {"dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1,
                                "heads": [1, 1, 2, 2], "ffn_expansion_factor": 2.0, "n_encoder_res": 1, "n_feats": 8}),
}
BASELINE_NETS["diffir_s2"] = ("diffir_s2", dict(BASELINE_NETS["diffir_s1"][1]))
#: the methods' settings: InDI's N (its NFE); SRDiff's T and DiffIR's 4 IPR steps are network kwargs
BASELINE_METHODS = {"indi": {"steps": 5}}
#: DiffIR's stage 2 trains at this share of ``lr`` (the harness's configs: 5e-4 after 1e-3 for stage 1)
DIFFIR_S2_LR = 0.5
#: E|eps| for eps ~ N(0, 1): the L1 noise-prediction loss (SRDiff's) of a net that predicts no noise
EPS_L1_ZERO = math.sqrt(2.0 / math.pi)
#: display names; SRDiff is SR only (it diffuses the HR residual over the bicubic upsampling of an LR input)
BASELINE_LABELS = {"indi": "InDI", "srdiff": "SRDiff", "diffir": "DiffIR"}


def baseline_unsupported(name: str, spec) -> str | None:
    """Why baseline ``name`` has no row for the world ``spec`` (None: it has one)."""
    if name == "srdiff":
        if spec.task != "sr":
            return ("not run: SRDiff is an SR method (it diffuses the HR residual over the bicubic upsampling of a "
                    "low-resolution input; the harness runs it on SR only)")
        if spec.scale & (spec.scale - 1):
            return f"not run: SRDiff's RRDB upsamples by powers of 2, not {spec.scale}"
    return None


def _bl_ls(ls: dict, lr_share: float = 1.0) -> dict:
    """The learned settings a baseline network trains with: ``baseline_steps`` steps, ``lr`` x ``lr_share``."""
    return {**ls, "steps": int(ls["baseline_steps"]), "lr": float(ls["lr"]) * lr_share}


def _bl_cfg(role: str, trainer: str, scale_kw: dict, **train_kw) -> dict:
    arch, kw = BASELINE_NETS[role]
    return {"arch": arch, "kwargs": {**kw, **scale_kw}, "train": {"trainer": trainer, **train_kw}}


def _train_indi(world, ls: dict):
    from baselines.indi.method import InDI
    from baselines.indi.train import indi

    spec = world.spec
    cfg = _bl_cfg("indi", "indi", {"scale": spec.scale if spec.task == "sr" else 1}, p_one=0.1, loss="l2")
    net, facts = train(f"indi-{spec.task}", indi, cfg, world, _bl_ls(ls))
    return InDI(net, steps=BASELINE_METHODS["indi"]["steps"]), {"indi": facts}


def _train_srdiff(world, ls: dict):
    from baselines.srdiff.method import SRDiff
    from baselines.srdiff.train import rrdb, srdiff

    spec = world.spec
    enc, f_enc = train(f"srdiff_rrdb-{spec.task}", rrdb, _bl_cfg("srdiff_rrdb", "srdiff_rrdb", {"scale": spec.scale}),
                       world, _bl_ls(ls))
    cfg = _bl_cfg("srdiff", "srdiff", {"scale": spec.scale}, rrdb="srdiff_rrdb")
    net, f_net = train(f"srdiff-{spec.task}", srdiff, cfg, world, _bl_ls(ls), parts={"srdiff_rrdb": enc})
    return SRDiff(net), {"srdiff_rrdb": f_enc, "srdiff": f_net}


def _train_diffir(world, ls: dict):
    from baselines.diffir.method import DiffIR
    from baselines.diffir.train import build_s1, build_s2

    spec = world.spec
    task = {"task": "sr", "scale": spec.scale} if spec.task == "sr" else {"task": "deblur"}
    s1, f1 = train(f"diffir_s1-{spec.task}", build_s1, _bl_cfg("diffir_s1", "diffir_s1", task), world, _bl_ls(ls))
    cfg = _bl_cfg("diffir_s2", "diffir_s2", task, teacher="diffir_s1", kd_weight=1.0)
    s2, f2 = train(f"diffir_s2-{spec.task}", build_s2, cfg, world, _bl_ls(ls, DIFFIR_S2_LR), parts={"diffir_s1": s1})
    return DiffIR(s2), {"diffir_s1": f1, "diffir_s2": f2}


#: name -> trainer of its networks, returning (its Method built on them, {role: training facts})
_BASELINE_TRAIN = {"indi": _train_indi, "srdiff": _train_srdiff, "diffir": _train_diffir}


def train_baseline(name: str, world, ls: dict):
    """Train baseline ``name``'s networks in the world with its own trainer closures (:func:`train`: fresh
    draws of the train split, the learned section's seeding; ``baseline_steps`` steps each) and build its
    :class:`dpir.methods.base.Method` on them.  The methods' ``build`` read checkpoints from disk; these are
    the same classes built on the in-memory networks (``build``'s scale check holds by construction)."""
    return _BASELINE_TRAIN[name](world, ls)


def _counted(method):
    """``method.restore`` with its network calls counted (:func:`dpir.measure.count_nfe`, as ``dpir restore``
    counts them); returns (restore, the mean NFE per call so far)."""
    from dpir.measure import count_nfe

    calls = []

    def restore(y, gens):
        with count_nfe(method) as c:
            out = method.restore(y, gens)
        calls.append(c.total)
        return out

    return restore, lambda: (sum(calls) / len(calls)) if calls else 0.0


def _method_note(name: str, method) -> str:
    if name == "indi":
        return f"N={method.steps}"
    if name == "srdiff":
        return f"T={method.net.T}"
    return f"{method.net.timesteps} IPR steps"


def compute_baselines(world, ls: dict, x: torch.Tensor, y: torch.Tensor, prior: tuple, mmse: float,
                      w0: float) -> tuple[list[dict], dict, dict]:
    """The baseline rows of one world (``ls["baselines"]``): each trained here, run on the test observations
    ``(x, y)`` with the same per-image sampler generators as the DP-IR rows (paired), D and P by
    :func:`estimate_row`.  Returns (rows, {name: training facts}, {name: why it has no row})."""
    from dpir.gaussian.w2 import pd_bound
    from dpir.measure import count_params

    pix = 3 * world.d
    rows, facts, skipped = [], {}, {}
    for name in ls["baselines"]:
        why = baseline_unsupported(name, world.spec)
        if why:
            skipped[name] = why
            continue
        t0 = time.perf_counter()
        method, nets = train_baseline(name, world, ls)
        restore, nfe = _counted(method)
        r = estimate_row(world, restore, x, y, prior, int(ls["seed"]))
        bound = pd_bound(r["P"] * math.sqrt(pix), mmse, w0) / pix
        params = count_params(method.modules())
        rows.append({"key": name, "label": f"{BASELINE_LABELS[name]} (baseline, {_method_note(name, method)})",
                     "family": "baseline", "method": name, "parts": ["—", "—", "—"], "steps": method.expected_nfe(),
                     "nfe_counted": nfe(), "exact": False, **r, "bound": bound, "gap": r["D"] - bound,
                     "params": params})
        facts[name] = {"method": name, "nfe": method.expected_nfe(), "nfe_note": method.nfe_note, "params": params,
                       "params_trained": sum(f["params"] for f in nets.values()), "nets": nets,
                       "seconds": time.perf_counter() - t0}
    return rows, facts, skipped


# ---------------------------------------------------------------------------- estimators

def _chunks(n: int):
    return [(i, min(i + CHUNK, n)) for i in range(0, n, CHUNK)]


def _dtype(net) -> torch.dtype:
    """The dtype a network is called in: its parameters' (float32 for the learned ones), float64 for the
    parameter-free oracles (so an oracle scored against itself gets bit-identical inputs)."""
    p = next(iter(net.parameters()), None) if isinstance(net, nn.Module) else None
    return p.dtype if p is not None else torch.float64


def _apply(fn, *tensors) -> torch.Tensor:
    """``fn`` over chunks of the batch (no graph), concatenated in float64."""
    n = tensors[0].shape[0]
    with torch.no_grad():
        return torch.cat([fn(*(t[a:b] for t in tensors)).double() for a, b in _chunks(n)])


def _sq(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Per-image squared distance per pixel."""
    return ((a.double() - b.double()) ** 2).flatten(1).mean(1).numpy()


def mean_se(v: np.ndarray) -> tuple[float, float]:
    """(mean, standard error of the mean) of per-draw values."""
    v = np.asarray(v, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")


def _excess(f: torch.Tensor, oracle: torch.Tensor, x: torch.Tensor, oracle_mse: float) -> dict:
    ex, ex_se = mean_se(_sq(f, oracle))
    mse, mse_se = mean_se(_sq(f, x))
    return {"excess": ex, "excess_se": ex_se, "oracle_mse": oracle_mse, "ratio": ex / oracle_mse,
            "mse": mse, "mse_se": mse_se, "n": int(x.shape[0])}


def excess_ir(world, net, x: torch.Tensor, y: torch.Tensor) -> dict:
    """E|f(y) - E[x0|y]|^2 per pixel (module docstring) on test pairs (x, y), with the exact MMSE beside it
    and the direct Monte Carlo MSE of f (``mse``: MMSE + excess within its larger error)."""
    dt = _dtype(net)
    f = _apply(lambda v: net(v.to(dt)), y)
    return _excess(f, world.posterior_mean(y), x, world.mmse() / (3 * world.d))


def denoiser_mmse(world, sigma: float) -> float:
    """E|E[x0|x~] - x0|^2 per pixel for x~ = x0 + sigma n: sum over frequencies of S sigma^2 / (S + sigma^2)."""
    S = world.spectra
    return float((S * sigma ** 2 / (S + sigma ** 2)).sum()) / (3 * world.d)


def fusion_mmse(world, schedule, t: int) -> float:
    """E|E[x0|y,x_t] - x0|^2 per pixel: tr (P_y + c_t I)^{-1} = sum 1 / (p + c_t), c_t = abar_t / (1 - abar_t)."""
    ab = float(schedule.abar(t))
    return float((1.0 / (world.p + ab / (1.0 - ab))).sum()) / (3 * world.d)


def _noise(shape, n: int, seed: int, what: str) -> torch.Tensor:
    from dpir.rng import make_generator, randn

    return randn((n, *shape), [make_generator(seed, f"gaussian-{what}:{i}") for i in range(n)], dtype=torch.float64)


def excess_denoiser(world, net, oracle, x: torch.Tensor, schedule, ts, seed: int) -> list[dict]:
    """Per t of ``ts``: E|D(x~, sigma~_t) - E[x0|x~]|^2 per pixel, x~ = x + sigma~_t n (the same n for
    every t), with the exact oracle MSE beside it."""
    n = _noise(x.shape[1:], x.shape[0], seed, "excess-noise")
    dt = _dtype(net)
    out = []
    for t in ts:
        sigma = float(schedule.sigma_tilde(t))
        xt = x + sigma * n
        s = torch.full((x.shape[0],), sigma)
        f = _apply(lambda v, s: net(v.to(dt), s.to(dt)), xt, s)
        o = _apply(lambda v, s: oracle(v, s.double()), xt, s)
        out.append({"t": int(t), "sigma": sigma, **_excess(f, o, x, denoiser_mmse(world, sigma))})
    return out


def excess_fusion(world, net, oracles, x: torch.Tensor, y: torch.Tensor, schedule, ts, seed: int) -> list[dict]:
    """Per t of ``ts``: E|F(E[x0|y], E[x0|x_t], t) - E[x0|y,x_t]|^2 per pixel with x_t ~ q(x_t | x0) (the
    same eps for every t): the oracle estimates as inputs isolate the fusion's own error."""
    _, den_o, fus_o = oracles           # (IR, denoiser, fusion); the IR's estimate is E[x0|y] itself
    eps = _noise(x.shape[1:], x.shape[0], seed, "excess-eps")
    x_ir = world.posterior_mean(y)
    dt = _dtype(net)
    out = []
    for t in ts:
        ab = float(schedule.abar(t))
        sigma = float(schedule.sigma_tilde(t))
        xt = math.sqrt(ab) * x + math.sqrt(1.0 - ab) * eps
        x_d = _apply(lambda v, s: den_o(v / math.sqrt(ab), s), xt,       # noqa: B023 (called right here)
                     torch.full((x.shape[0],), sigma, dtype=torch.float64))
        tt = torch.full((x.shape[0],), int(t), dtype=torch.long)
        f = _apply(lambda a, b, c: net(a.to(dt), b.to(dt), c), x_ir, x_d, tt)
        o = _apply(lambda a, b, c: fus_o(a, b, c), x_ir, x_d, tt)
        out.append({"t": int(t), "sigma": sigma, **_excess(f, o, x, fusion_mmse(world, schedule, t))})
    return out


def estimate_row(world, restore, x: torch.Tensor, y: torch.Tensor, prior: tuple, seed: int) -> dict:
    """D and P (per pixel) of ``restore(y, generators) -> x_hat`` from one draw per test observation.

    D = MMSE + mean |x_hat - E[x0|y]|^2 (module docstring) with its standard error; ``D_direct`` the plain
    mean of |x_hat - x0|^2.  P from :func:`dpir.gaussian.w2.w2_squared_extrapolated` against the prior
    ``(mean, cov)`` (RGB pixel coordinates): ``P`` = sqrt(W2^2 / 3d), ``P_se`` half the width of the
    square root of W2^2 +- its standard error.  Image i's sampler noise comes from (seed, i) only, the same
    for every row (paired rows)."""
    from dpir.gaussian.w2 import w2_squared_extrapolated
    from dpir.rng import make_generator

    pix = 3 * world.d
    N = x.shape[0]
    outs = []
    for a, b in _chunks(N):
        gens = [make_generator(seed, f"gaussian-sampler:{i}") for i in range(a, b)]
        with torch.no_grad():
            outs.append(restore(y[a:b].float(), gens).double())
    out = torch.cat(outs)
    if not bool(torch.isfinite(out).all()):
        raise DpirError("Gaussian world, learned rows: a sampler returned non-finite values; lower "
                        "gaussian.learned.lr or raise gaussian.learned.steps")
    extra, extra_se = mean_se(_sq(out, world.posterior_mean(y)))
    direct, direct_se = mean_se(_sq(out, x))
    w2sq, w2se = w2_squared_extrapolated(out.reshape(N, -1).numpy(), prior[0], prior[1], seed=seed)
    lo, hi = math.sqrt(max(w2sq - w2se, 0.0) / pix), math.sqrt(max(w2sq + w2se, 0.0) / pix)
    D = world.mmse() / pix + extra
    return {"D": D, "D_se": extra_se, "psnr": -10.0 * math.log10(D), "D_direct": direct, "D_direct_se": direct_se,
            "P": math.sqrt(max(w2sq, 0.0) / pix), "P_se": 0.5 * (hi - lo), "W2sq": w2sq, "W2sq_se": w2se, "n": N}


# ----------------------------------------------------------------------------------- rows

#: (key, label, IR, denoiser, fusion) of the estimated DP-IR rows ("learned" or "oracle")
ROWS = (("dpir_learned", "DP-IR, all parts learned", "learned", "learned", "learned"),
        ("dpir_fusion_learned", "DP-IR, learned fusion (oracle IR, denoiser)", "oracle", "oracle", "learned"),
        ("dpir_ir_learned", "DP-IR, learned IR (oracle denoiser, fusion)", "learned", "oracle", "oracle"),
        ("dpir_oracle", "DP-IR, all parts oracle (estimator check)", "oracle", "oracle", "oracle"))


def oracle_parts(spec) -> tuple[nn.Module, nn.Module, nn.Module]:
    from dpir.gaussian.oracles import GaussianDenoiser, GaussianFusion, GaussianIR

    kw = asdict(spec)
    return GaussianIR(**kw), GaussianDenoiser(**kw), GaussianFusion(**kw)


def sampler_label(ls: dict) -> str:
    stride = ls["ddim_stride"]
    return f"jump τ={ls['tau']}" + (f" + DDIM/{stride}" if stride else "")


def compute_degradation(name: str, spec, ls: dict, den: nn.Module, schedule) -> dict:
    """The learned IR and fusion of one degradation, their excess errors, the rows and the claims."""
    from dpir.gaussian import laws
    from dpir.gaussian.w2 import pd_bound
    from dpir.gaussian.world import cached_world
    from dpir.methods.dpir import DPIR

    t0 = time.perf_counter()
    world = cached_world(spec)
    pix = 3 * world.d
    tau, stride, N, seed = int(ls["tau"]), ls["ddim_stride"], int(ls["samples"]), int(ls["seed"])
    ir, ir_facts = train_ir(world, ls)
    fus, fus_facts = train_fusion(world, ls, ir, den)
    oracles = oracle_parts(spec)
    x = world.sample(N, seed, "test")
    y = observe(world, x, range(N), seed, "test")
    ts = [t for t in T_GRID if t <= tau]
    excess = {"ir": excess_ir(world, ir, x, y),
              "fusion": excess_fusion(world, fus, oracles, x, y, schedule, ts, seed)}
    prior = (world.prior_mean_dense(), world.prior_cov_dense())
    marg = laws.Marginals(world)
    mm = marg.mmse_point()
    mmse, w0 = world.mmse(), mm.perception
    sampler = laws.Sampler("jump", tau, ddim_stride=stride)
    exact = marg.sampler_point(schedule, sampler)
    parts = {"learned": {"ir": ir, "den": den, "fus": fus},
             "oracle": {"ir": oracles[0], "den": oracles[1], "fus": oracles[2]}}
    steps = tau if stride is None else math.ceil(tau / stride)

    def exact_row(key, label, law, n_steps, kinds):
        return {"key": key, "label": label, "family": "exact", "parts": kinds, "steps": n_steps, "exact": True,
                "D": law.distortion / pix, "D_se": 0.0, "psnr": -10.0 * math.log10(law.distortion / pix),
                "P": law.perception / math.sqrt(pix), "P_se": 0.0,
                "bound": pd_bound(law.perception, mmse, w0) / pix}

    rows = [exact_row("mmse", "MMSE estimator E[x0|y] (exact)", mm, 0, ["oracle", "—", "—"]),
            exact_row("dpir_exact", f"DP-IR {sampler_label(ls)}, oracle parts (exact)", exact, steps, ["oracle"] * 3)]
    est = {"ir_learned": ("learned IR alone f(y)", ["learned", "—", "—"],
                          lambda v, g: ir(v), 0)}
    for key, label, a, b, c in ROWS:
        method = DPIR(parts[a]["ir"], parts[b]["den"], parts[c]["fus"], schedule, tau, ddim_stride=stride,
                      mode="jump", clip_x0=False)
        est[key] = (f"{label}, {sampler_label(ls)}", [a, b, c], method.restore, method.reverse_steps())
    for key, (label, kinds, restore, n_steps) in est.items():
        r = estimate_row(world, restore, x, y, prior, seed)
        bound = pd_bound(r["P"] * math.sqrt(pix), mmse, w0) / pix
        rows.append({"key": key, "label": label, "family": "ir" if key == "ir_learned" else "dpir", "parts": kinds,
                     "steps": n_steps, "exact": False, **r, "bound": bound, "gap": r["D"] - bound})
    bl_rows, bl_facts, bl_skipped = compute_baselines(world, ls, x, y, prior, mmse, w0)
    rows += bl_rows
    out = {"degradation": name, "spec": asdict(spec), "mmse": mmse / pix, "w0": w0 / math.sqrt(pix),
           "sampler": sampler_label(ls), "ir": ir_facts, "fusion": fus_facts, "excess": excess, "rows": rows,
           "baselines": bl_facts, "baselines_skipped": bl_skipped,
           "outside_unit": float(((x < 0) | (x > 1)).double().mean())}
    out["claims"] = claims(out, ls)
    out["seconds"] = time.perf_counter() - t0
    return out


def compute(ls: dict, specs: dict) -> dict:
    """The learned part for every degradation (``specs``: name -> WorldSpec at the learned size): one
    denoiser for the world (the prior is shared), then each degradation's IR and fusion and rows."""
    from dpir.diffusion.schedule import linear_schedule
    from dpir.gaussian.world import cached_world

    t0 = time.perf_counter()
    schedule = linear_schedule()
    first = cached_world(next(iter(specs.values())))
    den, den_facts = train_denoiser(first, ls, schedule)
    N, seed = int(ls["samples"]), int(ls["seed"])
    x = first.sample(N, seed, "test")
    ts = [t for t in T_GRID if t <= int(ls["tau"])]
    from dpir.gaussian.oracles import GaussianDenoiser

    den_excess = excess_denoiser(first, den, GaussianDenoiser(**asdict(first.spec)), x, schedule, ts, seed)
    degr = [compute_degradation(name, spec, ls, den, schedule) for name, spec in specs.items()]
    return {"settings": dict(ls), "nets": {k: [a, dict(kw)] for k, (a, kw) in NETS.items()},
            "baseline_nets": {k: [a, dict(kw)] for k, (a, kw) in BASELINE_NETS.items()},
            "baseline_methods": {k: dict(v) for k, v in BASELINE_METHODS.items()}, "t_grid": ts,
            "sampler": f"{sampler_label(ls)}, harness DPIR sampler, clip_x0 false",
            "denoiser": {**den_facts, "excess": den_excess}, "degradations": degr,
            "seconds": time.perf_counter() - t0}


# --------------------------------------------------------------------------------- claims

def _verdict(holds: bool | None) -> str:
    return {True: "agrees", False: "disagrees", None: "inconclusive"}[holds]


def claims(g: dict, ls: dict) -> list[dict]:
    """Claims about the learned parts, verdicts from the numbers with their criteria and 95 % intervals
    (estimate +- 2 standard errors); ``holds`` is None when the interval straddles the criterion."""
    out = []
    fx = g["excess"]["fusion"]
    ratios = [(e["ratio"], 2.0 * e["excess_se"] / e["oracle_mse"], e["t"]) for e in fx]
    worst = max(ratios, key=lambda r: r[0] + r[1])
    hi = max(r + h for r, h, _ in ratios)
    lo_any = any(r - h > FUSION_CLOSE for r, h, _ in ratios)
    holds = True if hi <= FUSION_CLOSE else (False if lo_any else None)
    pct = f"{100 * FUSION_CLOSE:g} %"
    f = g["fusion"]
    out.append({"claim": f"a small fusion net ({f['params']} parameters, {f['steps']} steps) learns E[x0|y,x_t]",
                "holds": holds, "criterion": f"excess MSE ≤ {pct} of the oracle's MSE at every t of the grid "
                                             "(oracle inputs; 95 %: ± 2 SE)",
                "text": "; ".join(f"t={e['t']}: {e['excess']:.3g} ± {e['excess_se']:.2g} vs oracle {e['oracle_mse']:.3g} "
                                  f"({100 * e['ratio']:.3g} %)" for e in fx),
                "interval": f"excess/oracle {100 * worst[0]:.3g} % ± {100 * worst[1]:.2g} % at t={worst[2]} (worst t)",
                "n": f"{fx[0]['n']} draws per t", "half_width": worst[1]})
    by = {r["key"]: r for r in g["rows"]}
    dp, ir = by["dpir_learned"], by["ir_learned"]
    diff = ir["P"] - dp["P"]
    half = 2.0 * math.hypot(ir["P_se"], dp["P_se"])
    holds = True if diff - half > 0 else (False if diff + half < 0 else None)
    out.append({"claim": "with learned parts, DP-IR's output law is nearer the prior than its IR network's (lower P)",
                "holds": holds, "criterion": "P of all-learned DP-IR below the learned IR's by more than 2 SE of the "
                                             "difference (the two errors combined as if independent: the rows share "
                                             "their test images, so this is conservative when they co-vary)",
                "text": f"DP-IR D {dp['D']:.4g} ± {dp['D_se']:.2g}, P {dp['P']:.4g} ± {dp['P_se']:.2g}; learned IR "
                        f"D {ir['D']:.4g} ± {ir['D_se']:.2g}, P {ir['P']:.4g} ± {ir['P_se']:.2g}",
                "interval": f"P(IR) − P(DP-IR) {diff:+.3g} ± {half:.2g} per pixel",
                "n": f"{dp['n']} test images", "half_width": half})
    base = [r for r in g["rows"] if r.get("family") == "baseline"]
    if base:
        out.append(baseline_claim(dp, base, g["w0"]))
    return out


def gap_se(r: dict, w0: float) -> float:
    """Standard error of a row's gap D - D(P^) to the bound: D's, and P's through the bound's slope
    -2 (W0 - P)_+ (delta method; the two combined as if independent)."""
    return math.hypot(r["D_se"], 2.0 * max(w0 - r["P"], 0.0) * r["P_se"])


def baseline_claim(dp: dict, base: list[dict], w0: float) -> dict:
    """DP-IR with every part learned is nearer the P-D bound than each baseline (module docstring)."""
    diffs = []
    for b in base:
        d = b["gap"] - dp["gap"]
        diffs.append((b, d, 2.0 * math.hypot(gap_se(b, w0), gap_se(dp, w0))))
    if all(d - h > 0 for _, d, h in diffs):
        holds = True
    elif any(d + h < 0 for _, d, h in diffs):
        holds = False
    else:
        holds = None
    worst = min(diffs, key=lambda t: t[1] - t[2])
    names = ", ".join(BASELINE_LABELS[b["method"]] for b in base)
    return {"claim": f"with learned parts, DP-IR is nearer the perception-distortion bound than each baseline trained "
                     f"here ({names})",
            "holds": holds,
            "criterion": "gap D − D(P̂) of every baseline above all-learned DP-IR's by more than 2 SE of the difference "
                         "(SE of a gap: D's and P's through the bound's slope; the two rows' errors combined as if "
                         "independent); disagrees when some baseline's gap is below DP-IR's by more than that",
            "text": f"DP-IR gap {dp['gap']:.3g} ± {gap_se(dp, w0):.2g}; " + "; ".join(
                f"{BASELINE_LABELS[b['method']]} gap {b['gap']:.3g} ± {gap_se(b, w0):.2g} (D {b['D']:.4g}, "
                f"P {b['P']:.4g})" for b, _, _ in diffs),
            "interval": f"gap({BASELINE_LABELS[worst[0]['method']]}) − gap(DP-IR) {worst[1]:+.3g} ± {worst[2]:.2g} "
                        "per pixel (the baseline least favourable to the claim)",
            "n": f"{dp['n']} test images", "half_width": worst[2]}


__all__ = ["BASELINE_NAMES", "BASELINE_NETS", "DEFAULTS", "NETS", "T_GRID", "baseline_claim", "baseline_unsupported",
           "check_settings", "compute", "compute_baselines", "compute_degradation", "denoiser_mmse", "draw",
           "estimate_row", "excess_denoiser", "excess_fusion", "excess_ir", "fusion_mmse", "gap_se", "mean_se",
           "observe", "train", "train_baseline", "train_denoiser", "train_fusion", "train_ir"]
