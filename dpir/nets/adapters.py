"""Foreign architectures (spandrel) behind our constructor contract.

spandrel builds the official architectures from keyword arguments; we construct the raw module
(not spandrel's ``ImageModelDescriptor`` wrapper, which forces eval mode and clamps outputs, so it
cannot be trained).  Keyword arguments must be JSON-serialisable because they are stored in each
checkpoint's JSON.  Official checkpoints are loaded by :func:`load_official`.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dpir.errors import DpirError


def swinir(**kwargs) -> nn.Module:
    """SwinIR (Liang et al. 2021).  Classical SwinIR-M x4: embed_dim 180, depths [6]*6, heads [6]*6,
    window 8, mlp 2, upsampler "pixelshuffle", resi_connection "1conv".  The forward pass
    reflect-pads to a multiple of the window and crops the output, like the official test script."""
    from spandrel.architectures.SwinIR.__arch.SwinIR import SwinIR

    kwargs.setdefault("drop_path_rate", 0.0)
    return SwinIR(**kwargs)


def rrdb(**kwargs) -> nn.Module:
    """RRDBNet of ESRGAN (Wang et al. 2018); the PSNR-oriented RRDB_PSNR_x4 has 64 filters, 23 blocks."""
    from spandrel.architectures.ESRGAN.__arch.RRDB import RRDBNet

    return RRDBNet(**kwargs)


def nafnet(**kwargs) -> nn.Module:
    from spandrel.architectures.NAFNet.__arch.NAFNet_arch import NAFNet

    return NAFNet(**kwargs)


FFTFORMER_MULTIPLE = 32


def fftformer(**kwargs) -> nn.Module:
    """FFTformer (Kong et al. 2023).  Its patch-wise FFT attention needs sides divisible by 32 at full
    resolution; like the official test script we reflect-pad to a multiple of 32 and crop the output.
    The subclass keeps the official parameter names, so official weights load unchanged."""
    import torch.nn.functional as F
    from spandrel.architectures.FFTformer.__arch.fftformer_arch import FFTformer

    class PaddedFFTformer(FFTformer):
        def forward(self, x):
            h, w = x.shape[-2:]
            ph, pw = (-h) % FFTFORMER_MULTIPLE, (-w) % FFTFORMER_MULTIPLE
            if ph or pw:
                mode = "reflect" if ph < h and pw < w else "replicate"
                x = F.pad(x, (0, pw, 0, ph), mode=mode)
            return super().forward(x)[..., :h, :w]

    return PaddedFFTformer(**kwargs)


def read_official_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an official ``.pth``: BasicSR files hold the weights under ``params_ema`` or ``params``
    (``params_ema`` preferred, as the official test scripts do); others are a raw state dict."""
    path = Path(path)
    if not path.exists():
        raise DpirError(f"checkpoint {path} does not exist; fetch it with `dpir fetch` or fix the path in the config")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise DpirError(f"cannot read checkpoint {path} ({type(e).__name__}: {e}); re-download it") from None
    if isinstance(obj, dict):
        for key in ("params_ema", "params", "state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DpirError(f"{path} is not a state dict (nor a BasicSR file with params/params_ema)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_official(model: nn.Module, path: str | Path) -> nn.Module:
    """Load an official checkpoint into a model built from the same keyword arguments."""
    from dpir.checkpoint import load_state_strict

    state = read_official_state(path)
    own = model.state_dict()
    # buffers that official SwinIR files also carry but that are recomputed at construction
    for k in list(state):
        if k not in own and (k.endswith("attn_mask") or k.endswith("relative_position_index")):
            state.pop(k)
    for k in own:
        if k not in state and (k.endswith("attn_mask") or k.endswith("relative_position_index")):
            state[k] = own[k]
    load_state_strict(model, state, str(path))
    return model
