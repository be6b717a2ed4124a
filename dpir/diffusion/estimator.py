"""DP-IR's x0-estimator, one object for its trainer and its sampler, and the ranges it is valid on.

The estimator of E[x_0 | y, x_t] (Zhussip et al. 2024, Sec. 3.2) is

    x0_hat(x0_ir, x_t, t) = phi_F(x0_ir, phi_D(x_t / sqrt(abar_t), sigma~_t), t),
    sigma~_t = sqrt((1 - abar_t) / abar_t),

with the frozen denoiser phi_D and the trained fusion net phi_F.  :class:`DPIREstimator` computes it
for a (B,) tensor of timesteps, so the fusion trainer (one t per sample) and the sampler (one t for the
whole batch) call the same code, as EDM's single preconditioning wrapper serves both its loss and its
sampler (Karras et al. 2022): what the fusion net is trained on is what it is asked at test time.

Each learned part is valid only where it was trained.  Trained checkpoints record that range in
``model.json`` under ``trained_for`` (:func:`denoiser_range`, :func:`fusion_range`):

- the denoiser: ``{"sigma": [lo, hi]}``, the noise stds on the [0, 1] scale it saw;
- the fusion net: ``{"t": [1, t_max], "schedule": {"name", "T", "beta_start", "beta_end"}}``.

:func:`check_ranges` compares the timesteps a sampler will visit with those ranges and refuses, in one
line naming the network, its range and the fix, a method that would ask a network outside it (e.g. a
T = 1000 full chain built on a fusion net trained for t <= 250: 750 of its 1000 steps would be outside
training).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from dpir.diffusion.schedule import Schedule
from dpir.errors import DpirError

#: relative slack of the sigma-range check (float rounding of recorded ranges)
RANGE_RTOL = 1e-6


class DPIREstimator:
    """``x0_hat = fusion(x0_ir, denoiser(x_t / sqrt(abar_t), sigma~_t), t)`` for ``t`` a (B,) long tensor.

    The denoiser is always frozen in DP-IR: it runs without a graph; gradients flow only through the
    fusion net (the trainer's loss).  ``abar_t`` is read from a float64 table and cast to ``x_t``'s dtype
    once per call, the same arithmetic for training and sampling.
    """

    def __init__(self, denoiser: nn.Module, fusion: nn.Module, schedule: Schedule):
        self.denoiser, self.fusion, self.schedule = denoiser, fusion, schedule
        self._abar = torch.tensor(schedule.alphas_bar.tolist(), dtype=torch.float64)

    def _abar_of(self, t: torch.Tensor) -> torch.Tensor:
        if t.device.type != "cpu":
            raise ValueError("DPIREstimator takes its timesteps as a CPU long tensor (they index a float64 table; "
                             "on META devices their values would be unknown)")
        return self._abar[t.to(torch.long)]

    def scales(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sqrt(abar_t) shaped to broadcast over ``like``, sigma~_t as a (B,) tensor), in ``like``'s dtype."""
        ab = self._abar_of(t)
        shape = (t.shape[0],) + (1,) * (like.dim() - 1)
        sqrt_ab = ab.sqrt().to(like.device, like.dtype).view(shape)
        sigma = ((1.0 - ab) / ab).sqrt().to(like.device, like.dtype)
        return sqrt_ab, sigma

    def forward_scales(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sqrt(abar_t), sqrt(1 - abar_t)) shaped to broadcast over ``like``: q(x_t | x_0)'s coefficients."""
        ab = self._abar_of(t)
        shape = (t.shape[0],) + (1,) * (like.dim() - 1)
        return (ab.sqrt().to(like.device, like.dtype).view(shape),
                (1.0 - ab).sqrt().to(like.device, like.dtype).view(shape))

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """phi_D(x_t / sqrt(abar_t), sigma~_t): the denoiser's estimate of E[x_0 | x_t] (no graph); ``t`` a
        (B,) CPU long tensor."""
        sqrt_ab, sigma = self.scales(t, x_t)
        with torch.no_grad():
            return self.denoiser(x_t / sqrt_ab, sigma)

    def __call__(self, x0_ir: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x0_hat for ``t`` a (B,) CPU long tensor (the fusion net gets it on ``x_t``'s device)."""
        return self.fusion(x0_ir, self.denoise(x_t, t), t.to(x_t.device, torch.long))

    def at(self, x0_ir: torch.Tensor, clip: bool = True):
        """The sampler's ``x0_model(x_t, t)`` (``t`` an int) with ``x0_ir`` bound, clipped to [0, 1] with
        ``clip`` (DDPM's clip_denoised, Ho et al. 2020)."""

        def model(x_t: torch.Tensor, t: int) -> torch.Tensor:
            x0_hat = self(x0_ir, x_t, torch.full((x_t.shape[0],), int(t), dtype=torch.long))
            return x0_hat.clamp(0.0, 1.0) if clip else x0_hat

        return model


# --- ranges ------------------------------------------------------------------------------------------
def schedule_facts(schedule: Schedule, T: int, beta_start: float, beta_end: float) -> dict[str, Any]:
    """The record of a linear schedule (what a fusion checkpoint must share with its sampler)."""
    return {"name": "linear", "T": int(T), "beta_start": float(beta_start), "beta_end": float(beta_end)}


def denoiser_range(sigma_lo: float, sigma_hi: float, sampling: str) -> dict[str, Any]:
    """A denoiser's ``trained_for`` record: the noise stds (``[lo, hi]``, [0, 1] scale) and how they were drawn."""
    return {"sigma": [float(sigma_lo), float(sigma_hi)], "sigma_sampling": sampling}


def fusion_range(t_max: int, schedule: dict[str, Any]) -> dict[str, Any]:
    """A fusion net's ``trained_for`` record: t in [1, t_max] of ``schedule``."""
    return {"t": [1, int(t_max)], "schedule": dict(schedule)}


#: the paper's denoiser noise range, 244.3 on the 0-255 scale (sigma~_251 = 244.2986/255 of the linear T = 1000
#: schedule: the paper's "t in [0, 250]")
PAPER_SIGMA_MAX = 244.3 / 255.0


def linear_schedule_of(train: dict[str, Any]):
    """The linear schedule of a training config (``T`` 1000, ``beta_start`` 1e-4, ``beta_end`` 2e-2) and its
    record; raises ValueError/TypeError on bad values (the trainers turn them into one-line errors)."""
    from dpir.diffusion.schedule import linear_schedule

    T, b0, b1 = int(train.get("T", 1000)), float(train.get("beta_start", 1e-4)), float(train.get("beta_end", 2e-2))
    schedule = linear_schedule(T, b0, b1)
    return schedule, schedule_facts(schedule, T, b0, b1)


def range_from_train(train: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``trained_for`` record implied by a network's training config (the trainers save exactly this),
    or None when its trainer is not DP-IR's denoiser or fusion trainer."""
    train = train or {}
    trainer = train.get("trainer")
    if trainer == "denoiser":
        if train.get("sigma_sampling", "uniform") == "schedule":
            schedule, record = linear_schedule_of(train)
            return {**denoiser_range(schedule.sigma_tilde(1), schedule.sigma_tilde(schedule.T), "schedule"),
                    "schedule": record}
        return denoiser_range(0.0, float(train.get("sigma_max", PAPER_SIGMA_MAX)), "uniform")
    if trainer == "fusion" and "tau" in train:
        return fusion_range(int(train["tau"]), linear_schedule_of(train)[1])
    return None


def network_range(network_dir: str, net_cfg: dict[str, Any] | None,
                  exact: Callable[[str], bool] | None = None) -> dict[str, Any] | None:
    """What a DP-IR part was trained for: the checkpoint's ``trained_for`` record when it exists (a
    checkpoint from before these records: derived from its saved ``train`` section), else what the
    config will train (``dpir plan`` and dry runs check before any training).  ``{"any": True}`` for an
    architecture exact at every noise level (``exact(arch)`` true: the caller asks the registry, e.g.
    a class attribute ``exact_at_every_noise_level``)."""
    import json
    from pathlib import Path

    from dpir.checkpoint import META_FILE

    meta_path = Path(network_dir) / META_FILE
    meta = None
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError:
            meta = None        # load_network names the broken file
    arch = (meta or {}).get("arch") or (net_cfg or {}).get("arch")
    if arch and exact is not None and exact(arch):
        return {"any": True}
    if meta is not None:
        return meta.get("trained_for") or range_from_train(meta.get("train"))
    return range_from_train((net_cfg or {}).get("train"))


def visited_timesteps(T: int, tau: int, ddim_stride: int | None, full: bool) -> list[int]:
    """The timesteps at which a DP-IR sampler calls its networks: T..1 (full chain), tau..1 (ancestral
    from x_tau) or tau, tau - stride, ... (DDIM)."""
    start = T if full else tau
    step = 1 if ddim_stride is None else int(ddim_stride)
    return list(range(int(start), 0, -step))


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _stated_range(rec: dict | None, key: str, role: str, name: str, where: str, fix: str) -> dict | None:
    """A part's ``trained_for`` record when it states ``key``; None for a part exact everywhere; one-line
    refusal when nothing shows where the part is valid."""
    if rec is not None and rec.get("any"):
        return None
    if rec is None or key not in rec:
        raise DpirError(f"{where}: {role} network {name!r} records no trained {'noise' if key == 'sigma' else 't'} "
                        f"range (model.json 'trained_for'); {fix}")
    return rec


def check_ranges(schedule: Schedule, steps: Sequence[int], denoiser: tuple[str, dict | None],
                 fusion: tuple[str, dict | None] | None, where: str, schedule_record: dict[str, Any]) -> None:
    """Refuse a sampler that would call a network outside what it was trained on.

    ``denoiser`` / ``fusion``: (network name, its ``trained_for`` record or None); ``fusion`` is None for
    the modes that never call it (sdedit, ccdf).  A record of None means the checkpoint states no range
    (a network not trained by ``dpir train`` and not exact at every noise level): refused too, since
    nothing shows it is valid there.  ``where`` names the method for the message."""
    t_lo, t_hi = min(steps), max(steps)
    s_lo, s_hi = float(schedule.sigma_tilde(t_lo)), float(schedule.sigma_tilde(t_hi))
    name, rec = denoiser
    rec = _stated_range(rec, "sigma", "denoiser", name, where,
                        "retrain it with `dpir train` (or re-import it) so its range is known")
    if rec is not None:
        lo, hi = (float(v) for v in rec["sigma"])
        if s_hi > hi * (1 + RANGE_RTOL) or s_lo < lo * (1 - RANGE_RTOL):
            t_last = schedule.t_for_sigma_tilde(hi)
            raise DpirError(
                f"{where}: the sampler visits t = {t_lo}..{t_hi} (sigma~ {_fmt(s_lo)}..{_fmt(s_hi)}), but denoiser "
                f"{name!r} was trained for sigma~ in [{_fmt(lo)}, {_fmt(hi)}] (t <= {t_last} of this schedule); "
                f"use tau <= {t_last}, or a denoiser trained over the whole chain (train.sigma_sampling: schedule)")
    if fusion is None:
        return
    name, rec = fusion
    rec = _stated_range(rec, "t", "fusion", name, where, "retrain it with `dpir train`")
    if rec is None:
        return
    trained_sched = rec.get("schedule") or {}
    mismatch = {k: (trained_sched.get(k), v) for k, v in schedule_record.items() if k != "name"
                and trained_sched.get(k) is not None and float(trained_sched[k]) != float(v)}
    if mismatch:
        detail = ", ".join(f"{k} {a} (trained) vs {b}" for k, (a, b) in sorted(mismatch.items()))
        raise DpirError(f"{where}: fusion network {name!r} was trained with another schedule ({detail}); set the "
                        f"method's T/beta_start/beta_end to the fusion net's train.T/beta_start/beta_end")
    lo, hi = (int(v) for v in rec["t"])
    if t_hi > hi or t_lo < lo:
        raise DpirError(f"{where}: the sampler visits t = {t_lo}..{t_hi}, but fusion network {name!r} was trained "
                        f"for t in [{lo}, {hi}]; use tau <= {hi}, or a fusion net trained over the whole chain "
                        f"(train.tau: {schedule.T})")


__all__ = ["PAPER_SIGMA_MAX", "DPIREstimator", "check_ranges", "denoiser_range", "fusion_range", "linear_schedule_of",
           "network_range", "range_from_train", "schedule_facts", "visited_timesteps"]
