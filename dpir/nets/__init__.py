"""Architectures, by name.

``ARCHS`` (a :class:`dpir.registry.Registry`) maps an architecture name to ``"module:callable"``;
the callable takes the keyword arguments stored in the config (and in each checkpoint's JSON) and
returns an ``nn.Module``.  Imports are lazy so that ``dpir --help`` stays fast and the table itself is
torch-free (the config check and the Snakefile read it).  The baselines' architectures come from their
packages' ``ENTRIES`` (:data:`dpir.registry.PACKAGES`).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from dpir.errors import DpirError
from dpir.registry import Registry, include, resolve_in

if TYPE_CHECKING:
    from torch import nn

ARCHS = Registry("architecture", returns="torch.nn:Module", entries={
    # foreign architectures through spandrel adapters
    "swinir": "dpir.nets.adapters:swinir",
    "rrdb": "dpir.nets.adapters:rrdb",
    "nafnet": "dpir.nets.adapters:nafnet",
    "fftformer": "dpir.nets.adapters:fftformer",
    # any checkpoint spandrel detects (built from its weights: dpir.nets.foreign, `official:` only)
    "spandrel": "dpir.nets.foreign:spandrel",
    # ours
    "mirnet_s": "dpir.nets.mirnet_s:MIRNetS",
    "udp": "dpir.nets.udp:UDP",
    "msrresnet": "dpir.nets.msrresnet:MSRResNet",     # BasicSR's modified SRResNet, official key names
    "fusion": "dpir.nets.fusion:FusionNet",
    "fusion_tdwa": "dpir.nets.fusion_variants:TDWA",
    "fusion_ldwt": "dpir.nets.fusion_variants:LDWT",
    "fusion_unet": "dpir.nets.fusion_variants:FusionUNet",
    # burst backbone (BSRT family, deformable alignment)
    "bsrt": "dpir.nets.burst:BSRT",
    # exact oracles of the linear-Gaussian world (dpir.gaussian: no weights, kwargs = the world's spec)
    "gaussian_ir": "dpir.gaussian.oracles:GaussianIR",
    "gaussian_denoiser": "dpir.gaussian.oracles:GaussianDenoiser",
    "gaussian_fusion": "dpir.gaussian.oracles:GaussianFusion",
})
include(ARCHS, "archs")


def resolve(table: Mapping[str, str], kind: str, name: str):
    """The object registered as ``name`` in ``table`` (a Registry or a plain name -> "module:attr" dict);
    an unknown name is an :class:`UnknownNameError` that calls it a ``kind``."""
    return resolve_in(table, kind, name)


def build_network(arch: str, **kwargs) -> nn.Module:
    from torch import nn

    ctor = resolve(ARCHS, "architecture", arch)
    try:
        net = ctor(**kwargs)
    except (TypeError, ValueError) as e:
        raise DpirError(f"bad arguments for architecture {arch!r}: {e}; check the network's `kwargs` in the config") from None
    if not isinstance(net, nn.Module):
        from dpir.registry import RegistryError

        raise RegistryError(f"architecture {arch!r}: {ARCHS[arch]} returned a {type(net).__name__}, not an nn.Module")
    return net
