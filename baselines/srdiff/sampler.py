"""SRDiff's diffusion process on the package's core: cosine schedule, residual parameterisation, and
the eps -> x0 adapter that runs SRDiff's chain through :func:`dpir.diffusion.full_chain`.

The schedule is :func:`dpir.diffusion.cosine_schedule` (the one cosine schedule of the package, a
:class:`dpir.diffusion.Schedule`; re-exported here) and the sampler is the package's DDPM chain with
SRDiff's choices: posterior variance beta~_t (``variance="posterior"``, as the official code) and the
x0 estimate from the predicted noise clipped to [-1, 1] (official ``clip_denoised``), see
:func:`sample`.  Timesteps are ``t = 1..T`` and every schedule array has length ``T + 1`` with index 0
meaning "no noise"; the official code's 0-based timestep index is ``t - 1`` (the method converts when it
calls the network).

What SRDiff diffuses (Li et al. 2022, Sec. 3.1): the HR residual
``r_0 = (HR - up(LR)) * res_rescale`` clipped to [-1, 1], in the official code's [-1, 1] image
convention.  With our [0, 1] images that is ``r_0 = 2 * res_rescale * (HR - up(LR))``: the factor 2 is the
[0, 1] -> [-1, 1] change of range, kept so that official weights see the numbers they were trained on
(with res_rescale = 2 a residual of +-0.25 in [0, 1] units fills [-1, 1]).

The reference ``up(LR)`` (:func:`lr_reference`, chosen by the network's ``reference``): ``torch`` (the
default of networks trained here: :func:`baselines.common.blocks.bicubic_up`, PyTorch's bicubic, a = -0.75)
or ``official``, what the official data path computes (utils/dataset.py:
``img_lr_up = imresize(img_lr / 256, sr_scale)`` on the uint8 LR, then normalised to [-1, 1]): MATLAB
bicubic (a = -0.5, symmetric borders; :func:`dpir.data.degrade.bicubic_resize`) of ``LR * 255 / 256`` in
our [0, 1] units.  Imported official weights use ``official``: their residuals were learnt against it.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from dpir.diffusion import Schedule, cosine_schedule, eps_to_x0, full_chain
from dpir.diffusion.samplers import EpsModel
from dpir.rng import Generators

__all__ = ["REFERENCES", "EpsModel", "Schedule", "cosine_schedule", "from_residual", "lr_reference", "q_sample",
           "sample", "to_residual"]

#: the upsampled LR the residual is measured against (module docstring)
REFERENCES = ("torch", "official")
#: the official data path divides the uint8 LR by 256 (not 255) before upsampling it
OFFICIAL_LR_FACTOR = 255.0 / 256.0


def lr_reference(lr: torch.Tensor, scale: int, reference: str = "torch") -> torch.Tensor:
    """``up(LR)``, SRDiff's residual reference, of (B, C, h, w) LR images in [0, 1] (module docstring)."""
    if reference == "torch":
        from baselines.common.blocks import bicubic_up

        return bicubic_up(lr, scale)
    if reference == "official":
        from dpir.data.degrade import bicubic_resize

        if lr.device.type == "meta":     # `dpir plan` counts on META: the numpy resize counts no FLOPs anyway
            return lr.new_empty((*lr.shape[:-2], lr.shape[-2] * scale, lr.shape[-1] * scale))
        return bicubic_resize(lr * OFFICIAL_LR_FACTOR, float(scale)).to(device=lr.device, dtype=lr.dtype)
    raise ValueError(f"SRDiff reference must be one of {REFERENCES}, got {reference!r}")


def to_residual(hr: torch.Tensor, up: torch.Tensor, res_rescale: float) -> torch.Tensor:
    """r_0 = 2 * res_rescale * (HR - up), clipped to [-1, 1] (official ``img2res`` in [-1, 1] images)."""
    return ((hr - up) * (2.0 * res_rescale)).clamp(-1.0, 1.0)


def from_residual(r0: torch.Tensor, up: torch.Tensor, res_rescale: float) -> torch.Tensor:
    """HR = up + clip(r_0, -1, 1) / (2 * res_rescale) (official ``res2img``)."""
    return up + r0.clamp(-1.0, 1.0) / (2.0 * res_rescale)


def q_sample(schedule: Schedule, r0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """r_t = sqrt(abar_t) r_0 + sqrt(1 - abar_t) eps for per-sample timesteps ``t`` in 1..T (Ho et al., eq. 4)."""
    ab = torch.tensor(schedule.alphas_bar, dtype=r0.dtype, device=r0.device)[t.to(r0.device)]  # a copy: read-only array
    ab = ab.view(-1, *([1] * (r0.dim() - 1)))
    return ab.sqrt() * r0 + (1.0 - ab).sqrt() * noise


def sample(eps_model: EpsModel, schedule: Schedule, shape: Sequence[int], generator: Generators,
           device=None, clip: float | None = 1.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """SRDiff sampling (Li et al. 2022, Alg. 2; Ho et al. 2020, Alg. 2 with the x0-parameterised mean):
    :func:`dpir.diffusion.full_chain` over ``eps_to_x0(eps_model, schedule, clip)``.

    x_T ~ N(0, I); for t = T..1: x0_hat = x0_from_eps(x_t, eps_model(x_t, t)) clipped to [-clip, clip]
    (the official ``clip_denoised``), x_{t-1} = c1_t x0_hat + c2_t x_t + sqrt(beta~_t) z with the
    posterior variance beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t as in the official code.  The last
    step (t = 1) returns x0_hat itself: c1_1 = 1, c2_1 = 0 and beta~_1 = 0 because abar_0 = 1, and no
    noise is drawn.  NFE = T.
    """
    return full_chain(eps_to_x0(eps_model, schedule, clip), schedule, shape, generator, device=device,
                      variance="posterior", dtype=dtype)
