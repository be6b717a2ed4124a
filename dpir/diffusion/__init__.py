"""Diffusion schedules and samplers (plain functions over an ``x0_model(x_t, t)`` callable)."""
from dpir.diffusion.samplers import (
    ancestral,
    ancestral_step,
    ddim,
    ddim_step,
    ddim_timesteps,
    dpir_sample,
    eps_to_x0,
    forward_noise,
    full_chain,
    jump_coefficients,
    one_step_jump,
    q_posterior,
    reverse_from,
    x0_from_eps,
)
from dpir.diffusion.schedule import (
    Schedule,
    cosine_schedule,
    linear_schedule,
    sqrt_linear_schedule,
)

__all__ = [
    "Schedule",
    "ancestral",
    "ancestral_step",
    "cosine_schedule",
    "ddim",
    "ddim_step",
    "ddim_timesteps",
    "dpir_sample",
    "eps_to_x0",
    "forward_noise",
    "full_chain",
    "jump_coefficients",
    "linear_schedule",
    "one_step_jump",
    "q_posterior",
    "reverse_from",
    "sqrt_linear_schedule",
    "x0_from_eps",
]
