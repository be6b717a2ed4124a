"""DP-IR: modular conditional diffusion for image restoration (Zhussip, Koshelev, Lefkimmiatis, NeurIPS 2024).

The estimator of E[x_0 | y, x_t] combines three networks (Sec. 3.2 of the paper):

- ``ir(y) -> x0_ir``: a frozen restoration network, the estimate of E[x_0 | y];
- ``denoiser(x~_t, sigma_tilde_t) -> x0_d``: a frozen Gaussian denoiser applied to
  x~_t = x_t / sqrt(abar_t) = x_0 + sigma_tilde_t eps, the estimate of E[x_0 | x_t]
  (``sigma`` is a (B,) tensor on the [0, 1] image scale);
- ``fusion(x0_ir, x0_d, t) -> x0_hat``: the trained fusion network (``t`` a (B,) long tensor), the
  estimate of E[x_0 | y, x_t].

Sampling (Sec. 3.3): the IR net runs once; ``mode="jump"`` draws x_tau in one step from x0_ir
(:func:`dpir.diffusion.one_step_jump`), ``mode="sdedit"`` noises x0_ir to step tau with q(x_tau | x0)
(the SDEdit/CCDF start of Table 8), ``mode="full"`` starts from x_T ~ N(0, I) and runs all T steps.
The reverse chain is ancestral (sigma_t^2 = beta_t by default) or DDIM with ``ddim_stride``.
"""
from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import nn

from dpir.diffusion.samplers import forward_noise, one_step_jump, reverse_from
from dpir.diffusion.schedule import Schedule, linear_schedule
from dpir.errors import DpirError
from dpir.methods.base import BuildContext, Method
from dpir.rng import Generators, randn

Mode = Literal["jump", "full", "sdedit"]
MODES = ("jump", "full", "sdedit")


class DPIR(Method):
    """DP-IR restoration: IR estimate, then tau reverse steps of the fused x0 estimator.

    NFE (paper's counting rule): one denoiser+fusion evaluation per reverse step plus one IR call, i.e.
    tau + 1 with ancestral steps, ceil(tau / ddim_stride) + 1 with DDIM (51 for tau = 250, stride 5) and
    T + 1 for the full chain.
    """

    name = "dpir"
    stochastic = True

    def __init__(self, ir: nn.Module, denoiser: nn.Module, fusion: nn.Module, schedule: Schedule, tau: int,
                 ddim_stride: int | None = None, mode: Mode = "jump", clip_x0: bool = True,
                 variance: Literal["beta", "posterior"] = "beta", eta: float = 0.0, ir_pad_multiple: int = 1):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
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
        # the IR net's input is padded to this multiple (cropped after): SwinIR's internal reflect padding
        # to whole windows fails on images smaller than a window (dpir.methods.simple.default_pad_multiple)
        self.ir_pad_multiple = max(1, int(ir_pad_multiple))
        steps = self.reverse_steps()
        sampler = "ancestral" if self.ddim_stride is None else f"DDIM (stride {self.ddim_stride}, eta {self.eta:g})"
        start = {"jump": "one-step jump to", "sdedit": "forward-noised IR estimate at", "full": "x_T ~ N(0, I) at"}[mode]
        self.nfe_note = (f"NFE = reverse steps ({steps}: denoiser and fusion evaluated together once per step) "
                         f"+ 1 IR-network call = {steps + 1}; start: {start} t = {self.tau}, {sampler} steps")

    def reverse_steps(self) -> int:
        """Reverse steps from t = tau: tau ancestral steps, or ceil(tau / stride) DDIM steps."""
        return self.tau if self.ddim_stride is None else math.ceil(self.tau / self.ddim_stride)

    def expected_nfe(self) -> int:
        """One denoiser+fusion evaluation per reverse step + 1 IR call (tau = T for the full chain)."""
        return self.reverse_steps() + 1

    # --- the estimator -------------------------------------------------------------------------------
    def x0_model(self, x0_ir: torch.Tensor):
        """The callable ``x0_model(x_t, t)`` = fusion(x0_ir, denoiser(x_t / sqrt(abar_t), sigma_tilde_t), t)."""
        schedule = self.schedule

        def model(x_t: torch.Tensor, t: int) -> torch.Tensor:
            B = x_t.shape[0]
            x_tilde = x_t / math.sqrt(float(schedule.abar(t)))
            sigma = torch.full((B,), float(schedule.sigma_tilde(t)), dtype=x_t.dtype, device=x_t.device)
            x0_d = self.denoiser(x_tilde, sigma)
            x0_hat = self.fusion(x0_ir, x0_d, torch.full((B,), int(t), dtype=torch.long, device=x_t.device))
            # DDPM's sampler clips x0 estimates to the data range (Ho et al.'s clip_denoised); config switch
            return x0_hat.clamp(0.0, 1.0) if self.clip_x0 else x0_hat

        return model

    @torch.no_grad()
    def restore(self, y: torch.Tensor, generator: Generators, meta: list[dict] | None = None) -> torch.Tensor:
        """``meta`` (burst task): one metadata dict per burst; the IR net's linear-RGB estimate is then
        taken to sRGB with each burst's ISP, and the diffusion runs in sRGB (paper Sec. 4.1, burst)."""
        from dpir.methods.simple import restore_padded

        x0_ir = restore_padded(self.ir, y, self.ir_pad_multiple)
        if meta is not None:
            from dpir.isp import srgb_batch

            x0_ir = srgb_batch(x0_ir, meta)
        model = self.x0_model(x0_ir)
        if self.mode == "jump":
            x_tau = one_step_jump(self.schedule, x0_ir, self.tau, generator, self.variance)
        elif self.mode == "sdedit":
            x_tau = forward_noise(self.schedule, x0_ir, self.tau, generator)
        else:
            x_tau = randn(x0_ir.shape, generator, device=x0_ir.device, dtype=x0_ir.dtype)
        return reverse_from(model, self.schedule, x_tau, self.tau, generator, self.ddim_stride, self.variance,
                            self.eta)

    # --- bookkeeping ---------------------------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        return {"ir": self.ir, "denoiser": self.denoiser, "fusion": self.fusion}

    def trained_modules(self) -> dict[str, nn.Module]:
        """Only the fusion net is trained for a new task; the IR net and denoiser are reused frozen."""
        return {"fusion": self.fusion}

    def frozen_modules(self) -> dict[str, nn.Module]:
        """The reused parts (the denoiser serves every task; the IR net is an off-the-shelf restorer)."""
        return {"ir": self.ir, "denoiser": self.denoiser}

    def nfe_groups(self) -> dict[str, list[nn.Module]]:
        return {"denoiser+fusion": [self.denoiser, self.fusion], "ir": [self.ir]}

    def tile(self, wrap) -> list[str]:
        self.ir = wrap(self.ir)
        self.denoiser = wrap(self.denoiser, scale=1)
        self.fusion = wrap(self.fusion, scale=1)
        return ["ir", "denoiser", "fusion"]


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
    (optional), ``mode`` (jump | full | sdedit, default jump), ``T`` (1000), ``beta_start`` (1e-4),
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
    nets = {key: load_network(ctx.checkpoint(name), ctx.device) for key, name in names.items()}
    if pad_multiple is None:
        pad_multiple = default_pad_multiple(nets["ir"], ctx.task or {})
    return DPIR(nets["ir"], nets["denoiser"], nets["fusion"], schedule, tau, ddim_stride=stride, mode=mode,
                clip_x0=clip_x0, variance=variance, eta=eta, ir_pad_multiple=pad_multiple)
