"""Per-image random number generation.

Practice: the noise of image ``i`` comes from a generator seeded by ``(seed, image_id)`` only, so
batching, sharding and the device never change the numbers.  Noise is drawn on the CPU and then
moved to the target device, so a CUDA run draws exactly the same noise as a CPU run.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

Generators = torch.Generator | Sequence[torch.Generator]


def image_seed(seed: int, image_id: str) -> int:
    """A 63-bit seed derived from the run seed and the image's id (stable across Python runs)."""
    digest = hashlib.sha256(f"{int(seed)}:{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def make_generator(seed: int, image_id: str | None = None) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(image_seed(seed, image_id) if image_id is not None else int(seed))
    return g


def _draw(fn, shape: Sequence[int], generator: Generators, device, dtype) -> torch.Tensor:
    shape = tuple(int(s) for s in shape)
    if isinstance(generator, torch.Generator):
        z = fn(shape, generator=generator, dtype=dtype)
    else:
        if len(generator) != shape[0]:
            raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}")
        z = torch.stack([fn(shape[1:], generator=g, dtype=dtype) for g in generator])
    return z.to(device) if device is not None else z


def randn(shape: Sequence[int], generator: Generators, device=None, dtype=torch.float32) -> torch.Tensor:
    """Standard normal noise of ``shape`` (batch first).

    ``generator`` is one generator (used for the whole batch) or one generator per batch element;
    with one per element, element ``b`` gets exactly the noise it would get in a batch of one.
    """
    return _draw(torch.randn, shape, generator, device, dtype)


def rand(shape: Sequence[int], generator: Generators, device=None, dtype=torch.float32) -> torch.Tensor:
    """Uniform [0, 1) noise with the same per-element rule as :func:`randn`."""
    return _draw(torch.rand, shape, generator, device, dtype)


def randint(low: int, high: int, shape: Sequence[int], generator: Generators, device=None,
            dtype=torch.int64) -> torch.Tensor:
    """Integers in [low, high) with the same per-element rule as :func:`randn`."""
    def fn(s, generator, dtype):
        return torch.randint(int(low), int(high), s, generator=generator, dtype=dtype)
    return _draw(fn, shape, generator, device, dtype)


# ------------------------------------------------------------------------------- training samples

def sample_generators(seed: int, indices: Sequence[int], stream: str) -> list[torch.Generator]:
    """One generator per training sample: sample ``n`` of a run (``n = step * global_batch + j``)
    draws from the generator seeded by (train seed, ``stream``, n) only.

    ``stream`` separates the draws of one sample: ``"data"`` (its crop, augmentation and on-the-fly
    degradation, made in a data-loader worker) and ``"loss"`` (noise levels and noise of the trainer's
    loss, made in the training process).  Neither depends on the number of workers, of processes
    (DDP ranks), or on where a resumed run starts: batch ``s`` is always samples
    ``[s * B, (s + 1) * B)``.  A list of generators is what :func:`rand`, :func:`randn` and
    :func:`randint` take for a batch (row ``b`` from generator ``b``).
    """
    return [make_generator(seed, f"train-{stream}:{int(n)}") for n in indices]
