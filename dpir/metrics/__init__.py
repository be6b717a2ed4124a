"""Metric presets, by name: the one place that states each preset's direction and display digits.

``METRICS`` (a :class:`dpir.registry.Registry`) maps a preset name to ``"module:factory"``; the
factory takes the preset's options (every preset has ``crop_border``, default 0) and returns a
:class:`Metric`.  Imports are lazy: the heavy libraries (lpips, pyiqa) are imported on a metric's
first call, never here.

Each preset is declared once, with :func:`preset`: its factory, whether lower is better, the digits
the report shows, its unit and a one-line description (see each instance's ``convention`` for the
full definition).  Scoring (:func:`get_metric` sets ``lower_better`` on the instance, which goes into
every results record) and the report (arrows, digits) read these declarations, so a new weight-free
metric is one :func:`preset` call next to its factory::

    preset("mae", "mypkg.metrics:mae", lower_better=True, digits=4, unit="", description="mean |out - ref|")

Any per-image pyiqa metric is also a preset, by the name ``pyiqa:<name>`` (``pyiqa:niqe``,
``pyiqa:dists``): ``name in METRICS`` accepts it, :func:`preset_info` declares it from pyiqa's own
table (direction; 2 digits and dB for PSNR, else 4), and :func:`get_metric` builds
:class:`dpir.metrics.pyiqa_any.PyiqaMetric`.  The names are read from pyiqa's source without
importing it (:mod:`dpir.metrics.pyiqa_catalog`), so validation stays torch-free.  Iterating METRICS
lists the registered presets only (pyiqa has over a hundred); :func:`unknown_metric` is the one-line
error for a name that is neither, with close matches among pyiqa's names for a ``pyiqa:`` one.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dpir.errors import DpirError, UnknownNameError
from dpir.metrics import pyiqa_catalog
from dpir.registry import Registry

if TYPE_CHECKING:
    import torch

    from dpir.metrics.base import Metric

__all__ = [
    "METRICS",
    "OFFLINE_PERCEPTUAL",
    "PERCEPTUAL_AXES",
    "Metric",
    "MetricPreset",
    "display_digits",
    "evaluate",
    "get_metric",
    "lower_is_better",
    "preset",
    "preset_info",
    "unit_of",
    "unknown_metric",
]

#: the weight-free metric that stands in for LPIPS as the report's perceptual axis offline
OFFLINE_PERCEPTUAL = "gmsd"
#: the report's perceptual axis: the first of these that a table has numbers for
PERCEPTUAL_AXES = ("lpips_alex", "topiq_delta", OFFLINE_PERCEPTUAL)

#: digits shown for a metric name that is not a registered preset (e.g. in copied published scores)
DEFAULT_DIGITS = 4

#: the factory of every ``pyiqa:<name>`` preset (it takes the name, then the preset's options)
PYIQA_TARGET = "dpir.metrics.pyiqa_any:pyiqa_metric"


class MetricRegistry(Registry):
    """The preset table, which also contains every valid ``pyiqa:<name>``: ``in`` (what validation
    asks) accepts them, iteration and item access see the registered presets only, and
    :func:`preset_info` / :func:`get_metric` serve both."""

    def __contains__(self, name: object) -> bool:
        return self.registered(name) or pyiqa_catalog.lookup(name) is not None

    def registered(self, name: object) -> bool:
        """Whether ``name`` is a registered preset (a ``pyiqa:`` name only if someone registered it)."""
        return super().__contains__(name)


METRICS = MetricRegistry("metric", returns="dpir.metrics.base:Metric", required_meta=("lower_better", "digits"))


def _pyiqa_only(name: str) -> bool:
    """``pyiqa:<name>`` that no registered preset of the same name overrides."""
    return pyiqa_catalog.is_pyiqa(name) and not METRICS.registered(name)


@dataclass(frozen=True)
class MetricPreset:
    name: str
    target: str            # "module:factory"
    lower_better: bool
    digits: int            # decimals shown in the report's tables
    unit: str = ""         # e.g. "dB"; "" for unitless scores
    description: str = ""


def preset(name: str, target: str, *, lower_better: bool, digits: int, unit: str = "", description: str = "",
           replace: bool = False) -> MetricPreset:
    """Declare the metric preset ``name``: all that the scorer and the report need to know about it."""
    if not isinstance(lower_better, bool):
        raise TypeError(f"metric {name!r}: lower_better must be True or False, got {lower_better!r}")
    if isinstance(digits, bool) or not isinstance(digits, int) or not 0 <= digits <= 12:
        raise TypeError(f"metric {name!r}: digits must be an integer 0-12, got {digits!r}")
    METRICS.register(name, target, replace=replace, lower_better=lower_better, digits=digits, unit=unit,
                     description=description)
    return preset_info(name)


def preset_info(name: str) -> MetricPreset:
    """The declaration of preset ``name`` (UnknownNameError if it is not registered)."""
    if _pyiqa_only(name):
        info = pyiqa_catalog.lookup(name)
        if info is None:
            raise unknown_metric(name)
        psnr = info.name.startswith("psnr")
        return MetricPreset(name=name, target=PYIQA_TARGET, lower_better=info.lower_better,
                            digits=2 if psnr else DEFAULT_DIGITS, unit="dB" if psnr else "",
                            description=f"pyiqa's {info.name!r} ({info.mode}) with pyiqa's defaults")
    e = METRICS.entry(name)
    return MetricPreset(name=name, target=e.target, **e.meta)


def unknown_metric(name: str) -> UnknownNameError:
    """The one-line error for a metric name that is not a preset (close matches among pyiqa's names
    for ``pyiqa:<name>``, among the presets otherwise)."""
    e = UnknownNameError("metric preset", name, METRICS)
    if pyiqa_catalog.is_pyiqa(name):
        e.args = (pyiqa_catalog.unknown(name),)   # pyiqa's names, not the hundred-odd listed in full
    return e


# name, factory, lower is better, digits, unit, description
preset("psnr_y", "dpir.metrics.pixel:psnr_y", lower_better=False, digits=2, unit="dB",
       description="PSNR on BT.601 YCbCr Y (16-235), 0-255 scale (SR convention)")
preset("psnr_rgb", "dpir.metrics.pixel:psnr_rgb", lower_better=False, digits=2, unit="dB",
       description="PSNR on RGB, 0-255 scale (deblurring convention)")
preset("ssim_y", "dpir.metrics.pixel:ssim_y", lower_better=False, digits=4,
       description="MATLAB-style SSIM on Y")
preset("ssim_rgb", "dpir.metrics.pixel:ssim_rgb", lower_better=False, digits=4,
       description="MATLAB-style SSIM on RGB, mean over channels")
preset("lpips_alex", "dpir.metrics.lpips_alex:lpips_alex", lower_better=True, digits=4,
       description="LPIPS v0.1, AlexNet (needs weights)")
preset("topiq_nr", "dpir.metrics.topiq:topiq_nr", lower_better=False, digits=4,
       description="no-reference TOPIQ (needs weights)")
preset("topiq_delta", "dpir.metrics.topiq:topiq_delta", lower_better=True, digits=4,
       description="|TOPIQ_nr(out) - TOPIQ_nr(ref)|, DP-IR's TOPIQ_delta (needs weights)")
preset("topiq_fr", "dpir.metrics.topiq:topiq_fr", lower_better=False, digits=4,
       description="full-reference TOPIQ (needs weights)")
preset("gmsd", "dpir.metrics.iqa:gmsd", lower_better=True, digits=4,
       description="weight-free; the offline perceptual axis (OFFLINE_PERCEPTUAL)")
preset("nlpd", "dpir.metrics.iqa:nlpd", lower_better=True, digits=4, description="weight-free")
preset("ms_ssim", "dpir.metrics.iqa:ms_ssim", lower_better=False, digits=4, description="weight-free")
preset("fsim", "dpir.metrics.iqa:fsim", lower_better=False, digits=4, description="weight-free")
preset("vif", "dpir.metrics.iqa:vif", lower_better=False, digits=4, description="weight-free")


def lower_is_better(name: str, default: bool | None = None) -> bool | None:
    """Whether lower is better for ``name`` (``default`` if it is not a registered preset)."""
    return preset_info(name).lower_better if name in METRICS else default


def display_digits(name: str) -> int:
    """Decimals the report shows for ``name`` (:data:`DEFAULT_DIGITS` if it is not a registered preset)."""
    return preset_info(name).digits if name in METRICS else DEFAULT_DIGITS


def unit_of(name: str) -> str:
    """The unit of ``name`` ("dB" for PSNR; "" if unitless or not a registered preset)."""
    return preset_info(name).unit if name in METRICS else ""


def _pyiqa_factory(name: str):
    """The factory of preset ``pyiqa:<name>``: the preset's options only, as a registered factory."""
    from dpir.metrics.pyiqa_any import pyiqa_metric

    def build(crop_border: int = 0) -> Metric:
        return pyiqa_metric(name, crop_border)

    return build


def get_metric(name: str, **options) -> "Metric":
    """Build the preset ``name`` with its ``options``; unknown names and options are user errors."""
    info = preset_info(name)
    from_pyiqa = _pyiqa_only(name)
    factory = _pyiqa_factory(name) if from_pyiqa else METRICS.load(name)
    accepted = list(inspect.signature(factory).parameters)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DpirError(f"metric {name!r} has no option {', '.join(repr(u) for u in unknown)}; "
                        f"it accepts: {', '.join(accepted) or 'no options'}. Fix the metric options in the config")
    m = factory(**options) if from_pyiqa else METRICS.build(name, **options)
    if not m.name:
        m.name = name
    # the direction is declared by the preset only; the instance carries it into the results record
    m.lower_better = info.lower_better
    m.digits, m.unit = info.digits, info.unit
    return m


def evaluate(metrics: list["Metric"], out: "torch.Tensor", ref: "torch.Tensor | None") -> "dict[str, torch.Tensor]":
    """Scores (B,) of every metric, by name (no-reference metrics ignore ``ref``)."""
    return {m.name: m(out, ref) for m in metrics}


def __getattr__(name: str):
    # Metric (and with it torch) loads on first use, so that config validation stays torch-free
    if name == "Metric":
        from dpir.metrics.base import Metric

        return Metric
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
