"""Loading the official DiffIR checkpoints (Zj-BinXia/DiffIR, BasicSR ``.pth`` files).

Layout of an official file: ``{'params': state}``, ``{'params_ema': state}`` or both (BasicSR saves the
EMA copy under ``params_ema`` when ``ema_decay > 0``, which every official config sets, and its test
code evaluates the EMA network; so ``params_ema`` is taken when present, ``params`` otherwise; a bare
state dict is accepted too).

Key mapping official -> ours (our parameter names equal the official ones otherwise):

- a ``module.`` prefix (a DataParallel save) is stripped;
- stage 2 registers CPEN_S2 and the denoiser twice, as ``condition.*``/``denoise.*`` and inside the DDPM
  wrapper as ``diffusion.condition.*``/``diffusion.model.*``: the ``diffusion.*`` copies are dropped
  (used instead only when the top-level family is absent);
- the 12 schedule buffers ``diffusion.betas`` ... ``diffusion.posterior_mean_coef2`` are dropped; ours is
  recomputed from (timesteps, linear_start, linear_end), so ``diffusion.betas`` is checked against it.

Anything else that does not fit raises :class:`dpir.errors.DpirError` naming the missing and unexpected
keys (:func:`dpir.checkpoint.load_state`), unless ``on_unexpected`` / ``on_missing`` say otherwise: the
official test options load with ``strict_load_g: False``, and ``dpir import-official`` follows them for
unexpected keys (listed in a warning, not loaded; :data:`dpir.official.PROTOCOLS`).
"""
from __future__ import annotations

import os

import torch
from torch import nn

from dpir.checkpoint import load_state, select_params
from dpir.diffusion import Schedule
from dpir.errors import DpirError, UnknownNameError

from .nets import DiffIRS1, DiffIRS2

#: the DDPM buffers of the official stage-2 state dict, in registration order
SCHEDULE_BUFFERS = ("betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
                    "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
                    "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
                    "posterior_mean_coef1", "posterior_mean_coef2")
#: duplicated families: official alias prefix -> our prefix
DUPLICATES = {"diffusion.condition.": "condition.", "diffusion.model.": "denoise."}
STAGES = {"s1": DiffIRS1, "s2": DiffIRS2}


def official_buffers(sched: Schedule) -> dict[str, torch.Tensor]:
    """The schedule buffers an official stage-2 file holds (float32, as the official DDPM registers them),
    indexed by the official 0-based step (our t = 1..T)."""
    beta = torch.tensor(sched.betas[1:])
    abar, abar_prev = torch.tensor(sched.alphas_bar[1:]), torch.tensor(sched.alphas_bar[:-1])
    post_var = beta * (1 - abar_prev) / (1 - abar)
    values = {
        "betas": beta, "alphas_cumprod": abar, "alphas_cumprod_prev": abar_prev,
        "sqrt_alphas_cumprod": abar.sqrt(), "sqrt_one_minus_alphas_cumprod": (1 - abar).sqrt(),
        "log_one_minus_alphas_cumprod": (1 - abar).log(), "sqrt_recip_alphas_cumprod": (1 / abar).sqrt(),
        "sqrt_recipm1_alphas_cumprod": (1 / abar - 1).sqrt(), "posterior_variance": post_var,
        "posterior_log_variance_clipped": post_var.clamp(min=1e-20).log(),
        "posterior_mean_coef1": beta * abar_prev.sqrt() / (1 - abar),
        "posterior_mean_coef2": (1 - abar_prev) * (1 - beta).sqrt() / (1 - abar)}
    return {f"diffusion.{k}": values[k].float() for k in SCHEDULE_BUFFERS}


def read_official(path: str | os.PathLike, prefer: tuple[str, ...] = ("params_ema", "params")) -> dict[str, torch.Tensor]:
    """The state dict of an official file (the first of ``prefer`` present: ``params_ema`` over ``params``,
    as the official ``param_key_g: params_ema``), keys not yet mapped (a ``module.`` prefix is stripped)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DpirError(f"official DiffIR checkpoint {path} does not exist; download it from the "
                        f"official release (see REFERENCE.md) and point the config at it") from None
    except Exception as e:  # noqa: BLE001 - pickle and zip errors come in many types
        raise DpirError(f"cannot read {path} as a PyTorch checkpoint ({e}); is it a DiffIR .pth file?") from None
    try:
        return select_params(obj, prefer, str(path))[0]
    except DpirError:
        raise DpirError(f"{path} holds neither a {'/'.join(repr(k) for k in prefer)} state dict nor a bare "
                        f"state dict; is it a BasicSR network file?") from None


def map_official(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """Official keys -> ours (see the module docstring); also returns the official ``betas`` if present."""
    state = {(k.removeprefix("module.")): v for k, v in state.items()}
    betas = state.get("diffusion.betas")
    out = {k: v for k, v in state.items() if not k.startswith("diffusion.")}
    for alias, ours in DUPLICATES.items():
        if not any(k.startswith(ours) for k in out):
            out.update({ours + k[len(alias):]: v for k, v in state.items() if k.startswith(alias)})
    unexpected_diffusion = sorted(k for k in state if k.startswith("diffusion.")
                                  and not any(k.startswith(a) for a in DUPLICATES)
                                  and k[len("diffusion."):] not in SCHEDULE_BUFFERS)
    out.update({k: state[k] for k in unexpected_diffusion})  # left in so the strict load names them
    return out, betas


def load_official(path: str | os.PathLike, stage: str, device: torch.device | str = "cpu", *,
                  prefer: tuple[str, ...] = ("params_ema", "params"), on_unexpected: str = "error",
                  on_missing: str = "error", **kwargs) -> nn.Module:
    """Build :class:`DiffIRS1` (``stage="s1"``) or :class:`DiffIRS2` (``"s2"``) from an official file.

    ``kwargs`` are the constructor arguments (``task="sr"`` or ``"deblur"`` gives the official
    architecture); ``prefer`` / ``on_unexpected`` / ``on_missing``: :func:`read_official`'s key order and
    :func:`dpir.checkpoint.load_state`'s policies.  The module is returned in eval mode with gradients off.
    """
    if stage not in STAGES:
        raise UnknownNameError("DiffIR stage", stage, STAGES)
    model = STAGES[stage](**kwargs)
    state, betas = map_official(read_official(path, prefer))
    if betas is not None and isinstance(model, DiffIRS2):
        ours = torch.tensor(model.schedule().betas[1:])
        if betas.shape != ours.shape or not torch.allclose(betas.double(), ours, rtol=1e-5, atol=1e-7):
            raise DpirError(
                f"{path} was trained with the IPR schedule betas={[round(float(b), 6) for b in betas]}, but the "
                f"network is configured with timesteps={model.timesteps}, linear_start={model.linear_start}, "
                f"linear_end={model.linear_end} (betas={[round(float(b), 6) for b in ours]}); set these kwargs "
                f"to the values of the official config")
    load_state(model, state, str(path), unexpected=on_unexpected, missing=on_missing)
    return model.to(device).eval().requires_grad_(False)
