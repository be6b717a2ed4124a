"""The metric contract: a preset that pins every convention of one score.

A preset is built by name (``dpir.metrics.get_metric("psnr_y", crop_border=4)``) and then called::

    scores = metric(out, ref)      # float64 tensor (B,), one score per image

``out`` and ``ref`` are float RGB tensors (B, 3, H, W) in [0, 1], already quantised to 8 bits by the
caller (we score what is written to PNG, not the network's float output).  ``ref`` may be ``None``
for a no-reference metric.  Everything that changes the number (channel, colour transform, range,
border crop, window, backbone, weights file, library version) is fixed by the preset and spelled
out in :attr:`Metric.convention`, which the report prints under every table.

Networks are loaded on the first call and kept on the instance, so weights are read once (topiq_nr
and topiq_delta share one network); nothing else outlives a call.  Scores follow the device of
``out``.  Metrics never download: :meth:`Metric.check_available` looks at the cache only and names
the ``dpir fetch`` command that fills it.
"""
from __future__ import annotations

from typing import Any

import torch

from dpir.errors import DpirError


class Metric:
    """Base class of all presets.  Subclasses set the class attributes and implement ``_score``."""

    name: str = ""
    #: set from the preset's declaration (:func:`dpir.metrics.preset`) by :func:`dpir.metrics.get_metric`
    lower_better: bool | None = None
    #: display decimals and unit, also from the preset's declaration
    digits: int | None = None
    unit: str = ""
    needs_reference: bool = True
    needs_weights: bool = False
    #: names of the weights files (keys of :data:`dpir.metrics.weights.WEIGHTS`) this preset reads
    weights: tuple[str, ...] = ()

    def __init__(self, crop_border: int = 0):
        if isinstance(crop_border, bool) or not isinstance(crop_border, int) or crop_border < 0:
            raise DpirError(f"metric {self.name!r}: crop_border must be a non-negative integer, "
                            f"got {crop_border!r}; fix the metric options in the config")
        self.crop_border = crop_border

    # -- description -------------------------------------------------------------------------
    def _describe(self) -> str:
        """What the score is, without the options (the crop is appended by :attr:`convention`)."""
        raise NotImplementedError

    @property
    def convention(self) -> str:
        return f"{self._describe()}, border crop {self.crop_border}"

    @property
    def options(self) -> dict[str, Any]:
        """The options this instance was built with (for results provenance)."""
        return {"crop_border": self.crop_border}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"<metric {self.name} ({opts})>"

    # -- availability ------------------------------------------------------------------------
    def check_available(self) -> None:
        """Raise :class:`dpir.errors.MetricUnavailable` if this preset cannot run here.

        Never touches the network: it only looks at installed packages and cached files.
        """

    # -- scoring -----------------------------------------------------------------------------
    def _score(self, out: torch.Tensor, ref: torch.Tensor | None) -> torch.Tensor:
        """Scores (B,) of the already validated and cropped inputs."""
        raise NotImplementedError

    def __call__(self, out: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        _check_image(self.name, "out", out)
        if self.needs_reference:
            if ref is None:
                raise ValueError(f"metric {self.name!r} needs a reference image")
            _check_image(self.name, "ref", ref)
            if ref.shape != out.shape:
                raise ValueError(f"metric {self.name!r}: out {tuple(out.shape)} and ref {tuple(ref.shape)} differ in shape")
        else:
            ref = None
        out, ref = self._crop(out), (self._crop(ref) if ref is not None else None)
        with torch.no_grad():
            scores = self._score(out, ref)
        return scores.reshape(out.shape[0]).to(torch.float64)

    def _crop(self, x: torch.Tensor) -> torch.Tensor:
        c = self.crop_border
        if c == 0:
            return x
        h, w = x.shape[-2:]
        if h <= 2 * c or w <= 2 * c:
            raise DpirError(f"metric {self.name!r}: crop_border={c} leaves nothing of a {h}x{w} image; "
                            f"lower crop_border in the metric options")
        return x[..., c:h - c, c:w - c]


def _check_image(metric: str, what: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
        desc = f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"metric {metric!r}: {what} must be a float RGB tensor (B, 3, H, W), got {desc}")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"metric {metric!r}: {what} must lie in [0, 1] (got [{x.min().item():.4g}, "
                         f"{x.max().item():.4g}]); clip and quantise before scoring")
