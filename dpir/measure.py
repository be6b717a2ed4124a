"""Cost measured by instrumentation: NFE by forward-call counting, FLOPs by FlopCounterMode,
parameters by counting unique tensors, wall time and peak memory by the process itself."""
from __future__ import annotations

import contextlib
import resource
import sys
from collections.abc import Iterable, Iterator

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


class FlopCount:
    """The FLOPs counted inside :func:`count_flops`: what FlopCounterMode counted op by op, plus the
    recorded counts of the network calls replayed outside it (``replayed_calls`` of them)."""

    def __init__(self, mode):
        self.mode = mode
        self.replayed = 0
        self.replayed_calls = 0
        self.counted_calls = 0

    def get_total_flops(self) -> int:
        return int(self.mode.get_total_flops()) + self.replayed


def _signature(value) -> tuple:
    """What a network call's FLOPs depend on: tensor shapes, dtypes and devices; other arguments by value
    (anything else by identity, so that an unknown argument never shares a record)."""
    if isinstance(value, torch.Tensor):
        return ("T", tuple(value.shape), str(value.dtype), value.device.type)
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_signature(v) for v in value))
    if isinstance(value, dict):
        return ("D", tuple((k, _signature(v)) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))))
    if value is None or isinstance(value, (bool, int, float, str)):
        return ("V", value)
    return ("O", type(value).__name__, id(value))


@contextlib.contextmanager
def count_flops(modules: Iterable[nn.Module] = ()) -> Iterator[FlopCount]:
    """FLOPs of everything run inside (2 x MACs for conv/matmul; elementwise ops not counted).

    ``modules`` (a method's per-step networks, :meth:`Method.nfe_groups`) are counted once per call
    signature instead of at every call: FlopCounterMode dispatches every op through Python, which made
    the counted image of a 251-step chain 2.2x slower than the others on one CPU thread.  The first two
    calls of a module with a given signature (:func:`_signature`) are counted op by op; when they agree,
    later calls with that signature run outside the counter and add the recorded count.  When they differ
    (FLOPs that depend on values, not shapes) the module is counted op by op at every call.  The total is
    exactly what counting every call gives for any network whose ops depend only on its inputs'
    shapes and on the other arguments' values (tests/test_measure.py)."""
    from torch.utils._python_dispatch import _disable_current_modes
    from torch.utils.flop_counter import FlopCounterMode

    mode = FlopCounterMode(display=False)
    count = FlopCount(mode)
    records: dict[tuple, list[int]] = {}
    exact: set[int] = set()          # modules whose calls disagreed: counted op by op
    depth = [0]                      # > 0 inside a replayed call: inner calls are part of its record
    patched = []

    def wrap(module, forward):
        def counted_forward(*args, **kwargs):
            if depth[0] or id(module) in exact:
                return forward(*args, **kwargs)
            key = (id(module), _signature(args), _signature(kwargs))
            seen = records.setdefault(key, [])
            if len(seen) == 2:
                count.replayed += seen[0]
                count.replayed_calls += 1
                depth[0] += 1
                try:
                    with _disable_current_modes():
                        return forward(*args, **kwargs)
                finally:
                    depth[0] -= 1
            before = count.get_total_flops()
            out = forward(*args, **kwargs)
            seen.append(count.get_total_flops() - before)
            count.counted_calls += 1
            if len(seen) == 2 and seen[0] != seen[1]:
                exact.add(id(module))
            return out
        return counted_forward

    for module in {id(m): m for m in modules}.values():
        own = "forward" in module.__dict__
        patched.append((module, own, module.__dict__.get("forward")))
        module.forward = wrap(module, module.forward)
    try:
        with mode:
            yield count
    finally:
        for module, own, previous in patched:
            if own:
                module.forward = previous
            else:
                del module.forward


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024 / (1024 if sys.platform == "darwin" else 1)


def peak_cuda_mib(device) -> float | None:
    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**20
    return None
