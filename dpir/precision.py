"""Numeric precision of a training or restore job: ``fp32`` (default), ``bf16``, ``fp16``.

``bf16`` and ``fp16`` run the forward pass under :func:`torch.autocast` (weights, optimiser and loss
reduction stay fp32); ``fp16`` training scales the loss with a :class:`torch.amp.GradScaler` so small
gradients do not flush to zero.  On CUDA, fp32 matmuls and convolutions use TF32 unless ``tf32`` is
turned off (:func:`setup_backends`); on the CPU fp32 is exact fp32.  ``channels_last`` stores 4-D
activations NHWC, which the tensor cores' convolution kernels prefer.

API for a job (training: :mod:`dpir.train.loop`; restore jobs use the same three calls)::

    check_precision(precision, device, key)   # one-line DpirError for an unsupported setting
    setup_backends(device, tf32=True)         # TF32 on CUDA (call once per process)
    with autocast(precision, device): ...     # the forward pass

An imported network may also carry its official inference precision (``official_inference.precision`` in
its ``model.json``, :mod:`dpir.official`: BSRT's official forward is decorated with CUDA autocast, fp16);
:func:`network_autocast` runs one network call under it on CUDA.  Elsewhere an official fp16 runs in fp32:
the CPU has no fp16 autocast, and bf16 autocast is no stand-in there -- it rounds more than fp16 (8 bits of
mantissa, not 11) and, on CPUs without native bf16 kernels, is far slower: measured on this project's 2-core
x86 machine (dress rehearsal, BSRT-Small at paper size, one 14-frame 16x16 burst, one thread), 282 s under
CPU bf16 autocast against 7.1 s in fp32.  A method entry's ``precision: bf16`` still runs bf16 on the CPU
(the CPU tests of the autocast path use it).
"""
from __future__ import annotations

import contextlib

import torch

from dpir.errors import DpirError

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device | str, key: str = "precision") -> str:
    """``precision`` if this device runs it, else a DpirError naming the config ``key``."""
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise DpirError(f"config key {key} must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise DpirError(f"config key {key} is fp16, which needs a CUDA device (this job runs on {device.type}); "
                        f"set {key}: bf16 or fp32")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DpirError(f"config key {key} is bf16, which this GPU ({torch.cuda.get_device_name(device)}) does not "
                        f"support; set {key}: fp16 or fp32")
    return precision


def setup_backends(device: torch.device | str, tf32: bool = True) -> None:
    """TF32 for fp32 matmuls and convolutions on CUDA (Ampere and later), cuDNN autotuning; a no-op on CPU."""
    if torch.device(device).type != "cuda":
        return
    torch.backends.cuda.matmul.allow_tf32 = bool(tf32)
    torch.backends.cudnn.allow_tf32 = bool(tf32)
    torch.backends.cudnn.benchmark = True


def autocast(precision: str, device: torch.device | str):
    """The context manager of the forward pass: autocast to bf16/fp16, nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=_DTYPES[precision])


def grad_scaler(precision: str, device: torch.device | str) -> torch.amp.GradScaler:
    """A gradient scaler, enabled only for fp16 (bf16 has fp32's exponent range)."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")


def memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def to_memory_format(batch: dict, channels_last: bool) -> dict:
    """4-D tensors of a batch in channels_last when asked (others unchanged)."""
    if not channels_last:
        return batch
    return {k: v.contiguous(memory_format=torch.channels_last) if isinstance(v, torch.Tensor) and v.dim() == 4 else v
            for k, v in batch.items()}


def network_precision(precision: str | None, device: torch.device | str) -> str:
    """The precision one network call runs under on ``device``: ``precision`` (``None``: fp32), with an
    official fp16 (CUDA only) run in fp32 on other devices (module docstring: why not bf16)."""
    precision = precision or "fp32"
    if precision not in PRECISIONS:
        raise DpirError(f"network precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return "fp32" if precision == "fp16" and torch.device(device).type != "cuda" else precision


def network_autocast(precision: str | None, device: torch.device | str):
    """:func:`autocast` of one network call at its own precision (:func:`network_precision`); ``None`` or
    fp32 adds nothing, so an enclosing autocast (a method entry's ``precision``) still applies."""
    return autocast(network_precision(precision, device), device)
