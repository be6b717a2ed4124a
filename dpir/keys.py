"""Config keys declared by the code that reads them.

A method kind's factory and a trainer each declare the keys of their config entry with
:func:`config_keys` (JSON-schema fragments, one per key).  :func:`check_keys` validates an entry
against the declaration before any job runs, so a typo (``taus: 5``, ``ddim_strid: 2``,
``stepz: 1``) fails with the key path and a suggestion instead of silently running the defaults::

    @config_keys(required=("network",), network={"type": "string"}, steps={"type": "integer", "minimum": 1})
    def build(method_cfg, ctx): ...

Keys every entry of a kind accepts (``label``, ``seeds``, ... for methods; ``steps``, ``lr``, ... for
trainers, read by the generic loop) are passed to :func:`check_keys` as ``common``.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

from dpir.errors import DpirError

ATTR = "config_schema"


def config_keys(required: tuple[str, ...] = (), **properties: dict) -> Callable:
    """Decorator: attach the declared keys (name -> JSON-schema fragment) to a factory."""
    def deco(factory: Callable) -> Callable:
        setattr(factory, ATTR, {"properties": dict(properties), "required": list(required)})
        return factory
    return deco


def declared(factory: Callable) -> dict | None:
    return getattr(factory, ATTR, None)


def check_keys(where: str, entry: Mapping[str, Any], factory: Callable, common: Mapping[str, dict],
               what: str) -> None:
    """Validate ``entry`` (at config path ``where``) against ``common`` + the factory's declaration.

    A factory without a declaration is refused: every registered kind must say what it reads."""
    import jsonschema

    decl = declared(factory)
    if decl is None:
        raise TypeError(f"{what} factory {factory.__module__}.{factory.__qualname__} declares no config keys "
                        f"(decorate it with dpir.keys.config_keys)")
    props = {**common, **decl["properties"]}
    unknown = [k for k in entry if k not in props]
    if unknown:
        bad = str(unknown[0])
        close = difflib.get_close_matches(bad, list(props), n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise DpirError(f"config key '{where}.{bad}' is not a setting of {what}.{hint} "
                        f"Allowed: {', '.join(sorted(props))}")
    for key in decl["required"]:
        if key not in entry:
            raise DpirError(f"config key '{where}.{key}' is required for {what}")
    schema = {"type": "object", "properties": props}
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(dict(entry)),
                    key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        e = errors[0]
        path = ".".join(str(p) for p in e.absolute_path)
        raise DpirError(f"config key '{where}.{path}': {e.message}")


#: a key whose value names another network of the config's ``networks`` section
NETWORK = {"type": "string", "minLength": 1, "x-network": True}


def network_keys(factory: Callable) -> list[str]:
    """The declared keys of ``factory`` whose value is a network name (marked ``x-network``)."""
    decl = declared(factory) or {"properties": {}}
    return [k for k, v in decl["properties"].items() if v.get("x-network")]
