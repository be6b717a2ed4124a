"""Cost measured by instrumentation: NFE by forward-call counting, FLOPs by FlopCounterMode,
parameters by counting unique tensors, wall time and peak memory by the process itself."""
from __future__ import annotations

import contextlib
import resource
import sys
from collections.abc import Iterator

import torch
from torch import nn

from dpir.methods.base import Method


class NFECounter:
    def __init__(self, groups: dict[str, list[nn.Module]]):
        self.groups = groups
        self.calls: dict[int, int] = {}

    def by_group(self) -> dict[str, int]:
        return {g: max((self.calls.get(id(m), 0) for m in mods), default=0) for g, mods in self.groups.items()}

    @property
    def total(self) -> int:
        return sum(self.by_group().values())


@contextlib.contextmanager
def count_nfe(method: Method) -> Iterator[NFECounter]:
    """Count forward calls of each module of ``method.nfe_groups()`` (a group counts the most
    called of its modules: modules evaluated together count once)."""
    counter = NFECounter(method.nfe_groups())
    handles = []
    for mods in counter.groups.values():
        for m in mods:
            counter.calls.setdefault(id(m), 0)

            def hook(module, args, output, key=id(m)):
                counter.calls[key] += 1
            handles.append(m.register_forward_hook(hook))
    try:
        yield counter
    finally:
        for h in handles:
            h.remove()


def count_params(modules: dict[str, nn.Module]) -> int:
    seen, total = set(), 0
    for m in modules.values():
        for p in m.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
    return total


@contextlib.contextmanager
def count_flops() -> Iterator[object]:
    """FLOPs of everything run inside (2 x MACs for conv/matmul; elementwise ops not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    mode = FlopCounterMode(display=False)
    with mode:
        yield mode


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024 / (1024 if sys.platform == "darwin" else 1)


def peak_cuda_mib(device) -> float | None:
    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**20
    return None
