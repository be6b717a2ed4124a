"""DP-IR: modular conditional diffusion for image restoration (Zhussip, Koshelev, Lefkimmiatis, NeurIPS 2024).

The estimator of E[x_0 | y, x_t] combines three networks (Sec. 3.2 of the paper):

- ``ir(y) -> x0_ir``: a frozen restoration network, the estimate of E[x_0 | y];
- ``denoiser(x~_t, sigma_tilde_t) -> x0_d``: a frozen Gaussian denoiser applied to
  x~_t = x_t / sqrt(abar_t) = x_0 + sigma_tilde_t eps, the estimate of E[x_0 | x_t]
  (``sigma`` is a (B,) tensor on the [0, 1] image scale);
- ``fusion(x0_ir, x0_d, t) -> x0_hat``: the trained fusion network (``t`` a (B,) long tensor), the
  estimate of E[x_0 | y, x_t].

Sampling (Sec. 3.3): the IR net runs once; ``mode="jump"`` draws x_tau in one step from x0_ir
(:func:`dpir.diffusion.one_step_jump`), ``mode="full"`` starts from x_T ~ N(0, I) and runs all T steps.
The reverse chain is ancestral (sigma_t^2 = beta_t by default) or DDIM with ``ddim_stride``.

The prior-work rows of Table 8 (the paper compares its jump with SDEdit and CCDF at equal NFE) are what
those papers do, with this method's denoiser as their unconditional model:

- ``mode="sdedit"`` (Meng et al. 2022): x_tau = sqrt(abar_tau) x0_ir + sqrt(1 - abar_tau) eps, then the
  reverse chain of the denoiser ALONE: x0_hat = denoiser(x_t / sqrt(abar_t), sigma_tilde_t) (clipped to
  [0, 1] with ``clip_x0``); no fusion net, y is not seen after the start.  NFE = tau + 1.
- ``mode="ccdf"`` (Chung et al. 2022, Come-Closer-Diffuse-Faster): the same start and unconditional
  chain, with a data-consistency step on every x0 prediction (:func:`bicubic_back_projection`, 4x SR
  only): x0 <- x0_hat + up(y - down(x0_hat)), down = the task's MATLAB bicubic degradation, up = MATLAB
  bicubic upscaling, then clipped with ``clip_x0``; the reverse step uses the corrected x0 and the
  last step returns it.  CCDF itself projects the noisy iterate x_{t-1}; projecting the x0 estimate is
  the x0-parameterised form of the same non-expansive correction.  NFE = tau + 1 (the projection calls
  no network).
- ``mode="noised_start"``: the forward-noised start with DP-IR's conditional model (denoiser + fusion),
  the harness's old "SDEdit/CCDF start".  Its x_tau law equals the jump's up to ~1e-6 with
  ``variance: posterior`` (:func:`dpir.diffusion.samplers.jump_coefficients`), so it shows that the
  jump's gain is not in its start: kept to demonstrate that equivalence.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn

from dpir.diffusion.estimator import DPIREstimator, check_ranges, network_range, schedule_facts, visited_timesteps
from dpir.diffusion.samplers import data_consistent, forward_noise, one_step_jump, reverse_from
from dpir.diffusion.schedule import Schedule, linear_schedule
from dpir.errors import DpirError
from dpir.methods.base import BuildContext, Method
from dpir.rng import Generators, randn

Mode = Literal["jump", "full", "sdedit", "ccdf", "noised_start"]
MODES = ("jump", "full", "sdedit", "ccdf", "noised_start")
#: the modes whose reverse chain is the denoiser alone (the prior-work rows: no fusion net)
UNCONDITIONAL = ("sdedit", "ccdf")
#: a data-consistency step: (x0 estimate, observation y) -> corrected x0 estimate
Consistency = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def bicubic_back_projection(scale: int) -> Consistency:
    """CCDF's data consistency for bicubic SR: ``x0 + up(y - down(x0))`` with ``down`` the harness's
    observation operator (:func:`dpir.data.degrade.bicubic_down`, MATLAB bicubic 1/scale) and ``up`` the
    MATLAB bicubic x``scale`` upscaling (:func:`dpir.data.degrade.bicubic_resize`).  Both resample in
    float64 on the CPU (resize-right on numpy); the result returns to x0's device and dtype.  On META
    tensors (``dpir plan``) it returns x0 unchanged: no FLOPs are counted outside torch anyway."""
    from dpir.data.degrade import bicubic_down, bicubic_resize

    def project(x0: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x0.device.type == "meta":
            return x0
        residual = y.to(x0.dtype) - bicubic_down(x0, scale).to(x0.device)
        return x0 + bicubic_resize(residual, float(scale)).to(x0.device)

    return project


class DPIR(Method):
    """DP-IR restoration: IR estimate, then tau reverse steps of the fused x0 estimator (or, for the
    prior-work modes ``sdedit`` / ``ccdf``, of the denoiser alone; ``consistency`` is ccdf's step).

    NFE (paper's counting rule): one denoiser+fusion evaluation per reverse step plus one IR call, i.e.
    tau + 1 with ancestral steps, ceil(tau / ddim_stride) + 1 with DDIM (51 for tau = 250, stride 5) and
    T + 1 for the full chain; the same count with one denoiser call per step for sdedit and ccdf.
    """

    name = "dpir"
    stochastic = True

    def __init__(self, ir: nn.Module, denoiser: nn.Module, fusion: nn.Module, schedule: Schedule, tau: int,
                 ddim_stride: int | None = None, mode: Mode = "jump", clip_x0: bool = True,
                 variance: Literal["beta", "posterior"] = "beta", eta: float = 0.0, ir_pad_multiple: int = 1,
                 consistency: Consistency | None = None, ir_precision: str | None = "network"):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if (mode == "ccdf") != (consistency is not None):
            raise ValueError("mode 'ccdf' needs a consistency step (and only ccdf takes one)")
        if mode != "full" and not 1 <= int(tau) <= schedule.T:
            raise ValueError(f"tau must be in 1..{schedule.T}, got {tau!r}")
        if ddim_stride is not None and (int(ddim_stride) != ddim_stride or ddim_stride < 1):
            raise ValueError(f"ddim_stride must be a positive integer or None, got {ddim_stride!r}")
        if variance not in ("beta", "posterior"):
            raise ValueError(f"variance must be 'beta' or 'posterior', got {variance!r}")
        self.ir, self.denoiser, self.fusion = ir, denoiser, fusion
        self.schedule = schedule
        self.mode = mode
        self.tau = schedule.T if mode == "full" else int(tau)
        self.ddim_stride = None if ddim_stride is None else int(ddim_stride)
        self.clip_x0 = bool(clip_x0)
        self.variance = variance
        self.eta = float(eta)
        self.consistency = consistency
        # the IR net's input is padded to this multiple (cropped after): SwinIR's internal reflect padding
        # to whole windows fails on images smaller than a window (dpir.methods.simple.default_pad_multiple)
        self.ir_pad_multiple = max(1, int(ir_pad_multiple))
        # the IR net's autocast: its own official inference precision ("network", e.g. BSRT's fp16 autocast),
        # or None where the method entry sets `precision` (the caller's autocast then applies)
        self.ir_precision = ir_precision
        steps = self.reverse_steps()
        sampler = "ancestral" if self.ddim_stride is None else f"DDIM (stride {self.ddim_stride}, eta {self.eta:g})"
        start = {"jump": "one-step jump to", "noised_start": "forward-noised IR estimate at",
                 "sdedit": "forward-noised IR estimate (SDEdit) at", "ccdf": "forward-noised IR estimate (CCDF) at",
                 "full": "x_T ~ N(0, I) at"}[mode]
        per_step = ("the denoiser alone, no fusion net" + (", + back-projection on y" if mode == "ccdf" else "")
                    if mode in UNCONDITIONAL else "denoiser and fusion evaluated together")
        self.nfe_note = (f"NFE = reverse steps ({steps}: {per_step} once per step) "
                         f"+ 1 IR-network call = {steps + 1}; start: {start} t = {self.tau}, {sampler} steps")

    def reverse_steps(self) -> int:
        """Reverse steps from t = tau: tau ancestral steps, or ceil(tau / stride) DDIM steps."""
        return self.tau if self.ddim_stride is None else math.ceil(self.tau / self.ddim_stride)

    def expected_nfe(self) -> int:
        """One denoiser+fusion evaluation per reverse step + 1 IR call (tau = T for the full chain)."""
        return self.reverse_steps() + 1

    # --- the estimator -------------------------------------------------------------------------------
    @property
    def estimator(self) -> DPIREstimator:
        """The x0-estimator shared with the fusion trainer (:class:`dpir.diffusion.estimator.DPIREstimator`)."""
        return DPIREstimator(self.denoiser, self.fusion, self.schedule)

    def x0_model(self, x0_ir: torch.Tensor):
        """The callable ``x0_model(x_t, t)`` = fusion(x0_ir, denoiser(x_t / sqrt(abar_t), sigma_tilde_t), t)."""
        return self.estimator.at(x0_ir, clip=self.clip_x0)

    def denoiser_model(self, y: torch.Tensor | None = None):
        """The unconditional ``x0_model(x_t, t)`` = denoiser(x_t / sqrt(abar_t), sigma_tilde_t) of SDEdit,
        clipped with ``clip_x0``; for ccdf (``y`` given) wrapped by the data-consistency step on ``y``
        (clipped after it, so the chain stays in the data range)."""
        estimator = self.estimator

        def model(x_t: torch.Tensor, t: int) -> torch.Tensor:
            x0_d = estimator.denoise(x_t, torch.full((x_t.shape[0],), int(t), dtype=torch.long))
            return x0_d.clamp(0.0, 1.0) if self.clip_x0 else x0_d

        if y is None:
            return model

        def project(x0: torch.Tensor) -> torch.Tensor:
            x0 = self.consistency(x0, y)
            return x0.clamp(0.0, 1.0) if self.clip_x0 else x0

        return data_consistent(model, project)

    @torch.no_grad()
    def restore(self, y: torch.Tensor, generator: Generators, meta: list[dict] | None = None) -> torch.Tensor:
        """``meta`` (burst task): one metadata dict per burst; the IR net's linear-RGB estimate is then
        taken to sRGB with each burst's ISP, and the diffusion runs in sRGB (paper Sec. 4.1, burst)."""
        from dpir.methods.simple import restore_padded

        if self.mode == "ccdf" and meta is not None:
            raise ValueError("mode 'ccdf' has no data-consistency step for bursts")
        x0_ir = restore_padded(self.ir, y, self.ir_pad_multiple, precision=self.ir_precision)
        if meta is not None:
            from dpir.isp import srgb_batch

            x0_ir = srgb_batch(x0_ir, meta)
        if self.mode in UNCONDITIONAL:
            model = self.denoiser_model(y if self.mode == "ccdf" else None)
        else:
            model = self.x0_model(x0_ir)
        if self.mode == "jump":
            x_tau = one_step_jump(self.schedule, x0_ir, self.tau, generator, self.variance)
        elif self.mode in ("sdedit", "ccdf", "noised_start"):
            x_tau = forward_noise(self.schedule, x0_ir, self.tau, generator)
        else:
            x_tau = randn(x0_ir.shape, generator, device=x0_ir.device, dtype=x0_ir.dtype)
        return reverse_from(model, self.schedule, x_tau, self.tau, generator, self.ddim_stride, self.variance,
                            self.eta)

    # --- bookkeeping ---------------------------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        """The networks used: sdedit and ccdf never call the fusion net (it is loaded, not counted)."""
        if self.mode in UNCONDITIONAL:
            return {"ir": self.ir, "denoiser": self.denoiser}
        return {"ir": self.ir, "denoiser": self.denoiser, "fusion": self.fusion}

    def trained_modules(self) -> dict[str, nn.Module]:
        """Only the fusion net is trained for a new task; the IR net and denoiser are reused frozen
        (sdedit and ccdf train nothing)."""
        return {} if self.mode in UNCONDITIONAL else {"fusion": self.fusion}

    def frozen_modules(self) -> dict[str, nn.Module]:
        """The reused parts (the denoiser serves every task; the IR net is an off-the-shelf restorer)."""
        return {"ir": self.ir, "denoiser": self.denoiser}

    def nfe_groups(self) -> dict[str, list[nn.Module]]:
        if self.mode in UNCONDITIONAL:
            return {"denoiser": [self.denoiser], "ir": [self.ir]}
        return {"denoiser+fusion": [self.denoiser, self.fusion], "ir": [self.ir]}

    def tile(self, wrap) -> list[str]:
        self.ir = wrap(self.ir)
        self.denoiser = wrap(self.denoiser, scale=1)
        if self.mode in UNCONDITIONAL:
            return ["ir", "denoiser"]
        self.fusion = wrap(self.fusion, scale=1)
        return ["ir", "denoiser", "fusion"]


def exact_everywhere(arch: str) -> bool:
    """Whether architecture ``arch`` is exact at every noise level and t (class attribute
    ``exact_at_every_noise_level``, e.g. a closed-form oracle): no trained range to check."""
    from dpir.nets import ARCHS

    return arch in ARCHS and bool(getattr(ARCHS.load(arch), "exact_at_every_noise_level", False))


def _get(cfg: dict[str, Any], key: str, kind, default=...):
    if key not in cfg or cfg[key] is None:
        if default is ...:
            raise DpirError(f"DP-IR method config is missing key {key!r}; add it to the method's entry in the config")
        return default
    value = cfg[key]
    if kind is int and not (isinstance(value, int) and not isinstance(value, bool)):
        raise DpirError(f"DP-IR method config key {key!r} must be an integer, got {value!r}")
    if kind is float and not (isinstance(value, (int, float)) and not isinstance(value, bool)):
        raise DpirError(f"DP-IR method config key {key!r} must be a number, got {value!r}")
    if kind is str and not isinstance(value, str):
        raise DpirError(f"DP-IR method config key {key!r} must be a string, got {value!r}")
    if kind is bool and not isinstance(value, bool):
        raise DpirError(f"DP-IR method config key {key!r} must be true or false, got {value!r}")
    return value


def build(method_cfg: dict[str, Any], ctx: BuildContext) -> DPIR:
    """Factory: ``ir``, ``denoiser``, ``fusion`` (network names of the config), ``tau``, ``ddim_stride``
    (optional), ``mode`` (jump | full | sdedit | ccdf | noised_start, default jump; ccdf only for bicubic
    SR tasks, see :func:`ccdf_consistency`), ``T`` (1000), ``beta_start`` (1e-4),
    ``beta_end`` (2e-2), ``variance`` (beta | posterior, default beta), ``eta`` (0), ``clip_x0`` (true),
    ``pad_multiple`` (the IR net's input size multiple; default as the backbone rows:
    :func:`dpir.methods.simple.default_pad_multiple`)."""
    from dpir.checkpoint import load_network
    from dpir.methods.simple import default_pad_multiple

    mode = _get(method_cfg, "mode", str, "jump")
    if mode not in MODES:
        raise DpirError(f"DP-IR method config key 'mode' must be one of {', '.join(MODES)}, got {mode!r}")
    T = _get(method_cfg, "T", int, 1000)
    beta_start = float(_get(method_cfg, "beta_start", float, 1e-4))
    beta_end = float(_get(method_cfg, "beta_end", float, 2e-2))
    try:
        schedule = linear_schedule(T, beta_start, beta_end)
    except ValueError as e:
        raise DpirError(f"DP-IR method config keys T/beta_start/beta_end: {e}") from None
    tau = _get(method_cfg, "tau", int, T if mode == "full" else ...)
    if not 1 <= tau <= T:
        raise DpirError(f"DP-IR method config key 'tau' must be in 1..{T} (T), got {tau}")
    stride = _get(method_cfg, "ddim_stride", int, None)
    if stride is not None and stride < 1:
        raise DpirError(f"DP-IR method config key 'ddim_stride' must be a positive integer, got {stride}")
    variance = _get(method_cfg, "variance", str, "beta")
    if variance not in ("beta", "posterior"):
        raise DpirError(f"DP-IR method config key 'variance' must be 'beta' or 'posterior', got {variance!r}")
    eta = float(_get(method_cfg, "eta", float, 0.0))
    if eta < 0:
        raise DpirError(f"DP-IR method config key 'eta' must be >= 0, got {eta}")
    names = {key: _get(method_cfg, key, str) for key in ("ir", "denoiser", "fusion")}  # all keys before any load
    clip_x0 = _get(method_cfg, "clip_x0", bool, True)
    pad_multiple = _get(method_cfg, "pad_multiple", int, None)
    if pad_multiple is not None and pad_multiple < 1:
        raise DpirError(f"DP-IR method config key 'pad_multiple' must be a positive integer, got {pad_multiple}")
    consistency = ccdf_consistency(ctx) if mode == "ccdf" else None   # refused before any load
    # the timesteps this sampler visits must lie where its networks were trained (before any weights load)
    networks = (ctx.config or {}).get("networks") or {}

    def part(key):
        return names[key], network_range(ctx.checkpoint(names[key]), networks.get(names[key]), exact_everywhere)

    method = getattr(ctx, "method_name", None) or method_cfg.get("label") or "dpir"
    check_ranges(schedule, visited_timesteps(T, tau, stride, full=mode == "full"), part("denoiser"),
                 None if mode in UNCONDITIONAL else part("fusion"),
                 where=f"DP-IR method {method!r} (task {ctx.task_name!r})",
                 schedule_record=schedule_facts(schedule, T, beta_start, beta_end))
    nets = {key: load_network(ctx.checkpoint(name), ctx.device) for key, name in names.items()}
    if pad_multiple is None:
        pad_multiple = default_pad_multiple(nets["ir"], ctx.task or {})
    return DPIR(nets["ir"], nets["denoiser"], nets["fusion"], schedule, tau, ddim_stride=stride, mode=mode,
                clip_x0=clip_x0, variance=variance, eta=eta, ir_pad_multiple=pad_multiple, consistency=consistency,
                ir_precision=None if "precision" in method_cfg else "network")


def ccdf_consistency(ctx: BuildContext) -> Consistency:
    """CCDF's data-consistency step for the task of ``ctx``: the bicubic back-projection for SR with the
    task's ``scale``.  Deblurring is refused: restore gives methods the blurred image only (the kernel
    stays in kernels/<id>.npy, :meth:`dpir.tasks.DeblurKind.load_inputs`), so the operator is unknown to
    the method; bursts are refused (no linear observation of the sRGB image the chain runs on)."""
    task = ctx.task or {}
    kind = task.get("kind")
    where = f"task {ctx.task_name!r}"
    if kind == "deblur":
        raise DpirError(f"DP-IR method config key 'mode': ccdf needs the blur kernel, which methods of {where} "
                        f"are not given; use mode sdedit (no data consistency) for deblurring")
    if kind != "sr":
        raise DpirError(f"DP-IR method config key 'mode': ccdf has a data-consistency step for bicubic SR only, "
                        f"not for the {kind} {where}; use mode sdedit")
    degradation = (task.get("degradation") or {}).get("name", "bicubic")
    if degradation != "bicubic":
        raise DpirError(f"DP-IR method config key 'mode': ccdf back-projects through the bicubic degradation, "
                        f"but {where} uses {degradation!r}; use mode sdedit")
    return bicubic_back_projection(int(task.get("scale", 4)))
