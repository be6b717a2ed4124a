"""Loading the released SRDiff checkpoints (LeiaLi/SRDiff, e.g. ``model_ckpt_steps_400000.ckpt``).

Released layout (a PyTorch-Lightning-style dict)::

    {'global_step': int, 'optimizer_states': [...], 'state_dict': {'model': <GaussianDiffusion state dict>}}

Key mapping from ``state_dict['model']`` to :class:`~baselines.srdiff.nets.SRDiffNet`:

=================================================  ===============================================
official key                                       ours
=================================================  ===============================================
``rrdb.<k>``                                       ``rrdb.<k>`` (same module names)
``denoise_fn.<k>``                                 ``denoise_fn.<k>`` (same module names)
``betas``, ``alphas_cumprod``, ... (12 buffers)    none: the schedule is recomputed; ``betas`` is
                                                   checked against
                                                   :func:`dpir.diffusion.cosine_schedule` first
``global_step``, ``optimizer_states``              ignored
=================================================  ===============================================

The architecture (RRDB nf/nb/gc, scale, U-Net hidden size and channel multipliers, T) is read off the
tensor shapes, so the DF2K (dim_mults 1,2,3,4) and CelebA (1,2,2,4) models both load; keyword arguments
override what was inferred.  ``res_rescale`` and the cosine ``s`` are not stored in the file: they take the
official values (2.0, 0.008) unless given.  How the weights are run is the caller's: the ``srdiff`` method's
``official:`` and ``dpir import-official`` (``official_inference`` in ``model.json``) both measure the residual
against the official reference (``imresize(lr / 256, 4)``, :func:`baselines.srdiff.sampler.lr_reference`).  Any other difference (weight norm, attention, ``up_proj``,
a file of another model) fails with a :class:`DpirError` naming the missing and unexpected keys.
"""
from __future__ import annotations

import os
import pickle
import re
from typing import Any

import numpy as np
import torch

from baselines.srdiff.nets import SRDiffNet
from dpir.checkpoint import load_state_strict
from dpir.diffusion import cosine_schedule
from dpir.errors import DpirError

#: GaussianDiffusion's registered buffers: derived from the schedule, not parameters
SCHEDULE_BUFFERS = (
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
    "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
)


def read_official(path: str | os.PathLike, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """``state_dict['model']`` of a released checkpoint, read with ``weights_only=True`` unless
    ``allow_pickle`` (only for files you trust: unpickling can run arbitrary code)."""
    if not os.path.isfile(path):
        raise DpirError(f"SRDiff checkpoint {path} does not exist; download it from the LeiaLi/SRDiff README")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError as e:
        raise DpirError(f"{path} holds objects that torch.load(weights_only=True) refuses ({e}); if you trust "
                        f"the file, load it with allow_pickle=True") from None
    except Exception as e:  # noqa: BLE001 -- torch raises several types for files that are not checkpoints at all
        raise DpirError(f"cannot read {path} as a PyTorch checkpoint ({type(e).__name__}: {e})") from None
    model = ckpt.get("state_dict", {}).get("model") if isinstance(ckpt, dict) else None
    if not isinstance(model, dict):
        found = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise DpirError(f"{path} is not an SRDiff checkpoint: expected {{'state_dict': {{'model': ...}}}}, "
                        f"found top-level keys {found}")
    return model


def infer_kwargs(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """SRDiffNet keyword arguments read off an official state dict's shapes (best effort: keys that are
    absent leave the official default, and the strict load then names them)."""
    kw: dict[str, Any] = {}
    try:
        trunk = {int(m.group(1)) for k in state if (m := re.match(r"rrdb\.RRDB_trunk\.(\d+)\.", k))}
        kw["rrdb"] = {"nf": state["rrdb.conv_first.weight"].shape[0],
                      "gc": state["rrdb.RRDB_trunk.0.RDB1.conv1.weight"].shape[0],
                      "nb": max(trunk) + 1}
        kw["scale"] = 2 ** sum(1 for k in state if re.fullmatch(r"rrdb\.upconv\d+\.weight", k))
    except (KeyError, ValueError):
        pass
    try:
        hidden = state["denoise_fn.mlp.0.weight"].shape[1]
        levels = {int(m.group(1)) for k in state if (m := re.match(r"denoise_fn\.downs\.(\d+)\.", k))}
        kw["hidden"] = hidden
        kw["dim_mults"] = [state[f"denoise_fn.downs.{i}.0.block1.block.1.weight"].shape[0] // hidden
                           for i in range(max(levels) + 1)]
    except (KeyError, ValueError):
        pass
    if "betas" in state:
        kw["T"] = int(state["betas"].numel())
    return kw


def load_official(path: str | os.PathLike, allow_pickle: bool = False, **kwargs: Any) -> SRDiffNet:
    """An :class:`SRDiffNet` (eval mode, gradients off) from a released SRDiff checkpoint."""
    state = dict(read_official(path, allow_pickle))
    buffers = {k: state.pop(k) for k in SCHEDULE_BUFFERS if k in state}
    kw = {**infer_kwargs(state), **({"T": int(buffers["betas"].numel())} if "betas" in buffers else {}), **kwargs}
    try:
        net = SRDiffNet(**kw)
    except (TypeError, ValueError) as e:
        raise DpirError(f"{path}: cannot build SRDiffNet from {kw} ({e})") from None
    if "betas" in buffers:
        ours = cosine_schedule(net.T, net.cosine_s).betas[1:]
        theirs = buffers["betas"].double().numpy()
        if theirs.shape != ours.shape or not np.allclose(theirs, ours, rtol=0, atol=1e-6):
            raise DpirError(f"{path}: its 'betas' buffer is not the cosine schedule with T={net.T}, "
                            f"s={net.cosine_s}; this is not an SRDiff (cosine) checkpoint, or pass cosine_s=")
    load_state_strict(net, state, f"{path} (state_dict.model)")
    return net.eval().requires_grad_(False)
