"""The restore contract every method (ours and the baselines) implements.

A method turns a degraded observation ``y`` into an estimate of the clean image::

    x = method.restore(y, generator)

- ``y``: float32 tensor, batch first.  SR and deblurring: ``(B, 3, h, w)`` RGB in [0, 1].
  Burst: ``(B, N, 4, h, w)`` RGGB raw frames in [0, 1].
- ``x``: ``(B, 3, H, W)`` RGB, not necessarily clipped (the harness clips and quantises when it
  writes PNGs).
- ``generator``: one ``torch.Generator`` or one per batch element (see :mod:`dpir.rng`); a
  deterministic method ignores it.  Draw noise only through :func:`dpir.rng.randn` so batch size
  and device never change the numbers.

Cost reporting is measured, not computed by formula:

- ``nfe_groups()`` maps a group name to the modules one "function evaluation" of that group calls.
  :func:`dpir.measure.count_nfe` hooks them; a group's count is the largest number of forward calls
  of any module in the group (DP-IR's denoiser and fusion net are called together and count once
  per step), and the NFE is the sum over groups.
- ``expected_nfe()`` is the method's own formula for that count, from its settings (DP-IR: reverse
  steps + 1 IR call).  The harness reports the measured count; the method contract test
  (``tests/test_method_contract.py``) checks that the two agree, so a sampler that silently takes
  another number of steps fails there.
- ``modules()`` lists every network used (for the total parameter count) and ``trained_modules()``
  the ones this method trains itself (for the "trained parameters" column; a frozen backbone that
  the method reuses is not counted there).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from dpir.rng import Generators


@dataclass
class BuildContext:
    """What a method factory gets besides its own config entry.

    ``checkpoint(name)`` returns the path of the trained network ``name`` (a key of the config's
    ``networks`` section); ``task`` is the task config (scale, degradation, ...).
    """

    task_name: str
    task: dict[str, Any]
    networks_dir: str
    device: torch.device
    config: dict[str, Any] = field(default_factory=dict)

    def checkpoint(self, network: str) -> str:
        import os

        return os.path.join(self.networks_dir, network)


class Method:
    """Base class: subclasses set ``stochastic`` and implement ``restore``."""

    name: str = "method"
    stochastic: bool = False
    #: what one NFE means for this method, printed under the table
    nfe_note: str = ""
    #: False when the method computes outside torch, where FlopCounterMode sees nothing
    flops_counted: bool = True

    def restore(self, y: torch.Tensor, generator: Generators) -> torch.Tensor:
        raise NotImplementedError

    def expected_nfe(self) -> int:
        """The NFE one untiled ``restore`` call should count (:func:`dpir.measure.count_nfe`), computed
        from the method's settings, not measured.  Every method declares it."""
        raise NotImplementedError(f"{type(self).__name__} does not declare expected_nfe()")

    def modules(self) -> dict[str, nn.Module]:
        return {}

    def trained_modules(self) -> dict[str, nn.Module]:
        return self.modules()

    def nfe_groups(self) -> dict[str, list[nn.Module]]:
        return {name: [m] for name, m in self.modules().items()}

    def tile(self, wrap) -> list[str]:
        """Replace the method's image-to-image networks by ``wrap(net, scale=..., multiple=...)`` for
        tiled inference (:mod:`dpir.tiling`) and return the names of the wrapped parts.  The default,
        no tiled path, suits methods whose networks see the whole image (global pooling, mixed sizes)."""
        return []

    def to(self, device: torch.device) -> "Method":
        for m in self.modules().values():
            m.to(device)
        return self

    def eval(self) -> "Method":
        for m in self.modules().values():
            m.eval()
        return self
