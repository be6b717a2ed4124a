"""Config keys declared next to the registry entry of the code that reads them.

A method kind's factory and a trainer each declare the keys of their config entry (JSON-schema
fragments, one per key) where they are registered, as torch-free data::

    METHODS entry:  "indi": factory("baselines.indi.method:build", required=("network",),
                                    network=NETWORK, steps={"type": "integer", "minimum": 1})

:func:`factory` returns a :class:`Factory` (the ``"module:attr"`` target and its declaration); the
registry keeps the declaration as the entry's ``keys`` metadata.  :func:`check_keys` validates a
config entry against it before any job runs, so a typo (``taus: 5``, ``ddim_strid: 2``, ``stepz: 1``)
fails with the key path and a suggestion instead of silently running the defaults -- and since the
declaration is data in the registry, ``dpir validate`` and the Snakefile's parse never import the
factory's module (nor torch).  When the registry loads the factory it attaches the same declaration
(``declared(factory)``), so build-time code reads the one source too.

Keys every entry of a kind accepts (``label``, ``seeds``, ... for methods; ``steps``, ``lr``, ... for
trainers, read by the generic loop) are passed to :func:`check_keys` as ``common``.

:func:`config_keys` is the older form of the same declaration, a decorator on the factory; the
registry refuses a factory whose decorator disagrees with its entry's ``keys``.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dpir.errors import DpirError

ATTR = "config_schema"


def keys(required: tuple[str, ...] = (), **properties: dict) -> dict:
    """A declaration: the keys a factory reads (name -> JSON-schema fragment) and the required ones."""
    unknown = [k for k in required if k not in properties]
    if unknown:
        raise TypeError(f"required keys {unknown} are not declared")
    return {"properties": dict(properties), "required": list(required)}


@dataclass(frozen=True)
class Factory:
    """A registry entry that declares its config keys: ``target`` (``"module:attr"``) and ``keys``."""
    target: str
    keys: dict


def factory(target: str, required: tuple[str, ...] = (), **properties: dict) -> Factory:
    """The registry entry of a method factory or trainer with the config keys it reads."""
    return Factory(target, keys(required, **properties))


def config_keys(required: tuple[str, ...] = (), **properties: dict) -> Callable:
    """Decorator: attach the declared keys (name -> JSON-schema fragment) to a factory."""
    def deco(fn: Callable) -> Callable:
        setattr(fn, ATTR, keys(required, **properties))
        return fn
    return deco


def declared(fn: Callable) -> dict | None:
    """The declaration attached to a loaded factory (by its registry on load, or by @config_keys)."""
    return getattr(fn, ATTR, None)


def _declaration(decl: Mapping | Callable | None, what: str) -> dict:
    if decl is not None and not isinstance(decl, Mapping):
        fn, decl = decl, declared(decl)
        if decl is None:
            raise TypeError(f"{what} factory {fn.__module__}.{fn.__qualname__} declares no config keys "
                            f"(register it with dpir.keys.factory(target, **keys))")
    if decl is None:
        raise TypeError(f"{what} declares no config keys (register it with dpir.keys.factory(target, **keys))")
    return dict(decl)


def check_keys(where: str, entry: Mapping[str, Any], decl: Mapping | Callable | None, common: Mapping[str, dict],
               what: str) -> None:
    """Validate ``entry`` (at config path ``where``) against ``common`` + the declaration ``decl`` (a
    registry entry's ``keys``, or a factory carrying one).

    A kind without a declaration is refused: every registered kind must say what it reads."""
    import jsonschema

    decl = _declaration(decl, what)
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


def network_keys(decl: Mapping | Callable | None) -> list[str]:
    """The declared keys (of a declaration, or of a factory carrying one) whose value is a network name
    (marked ``x-network``)."""
    if decl is not None and not isinstance(decl, Mapping):
        decl = declared(decl)
    return [k for k, v in (decl or {"properties": {}})["properties"].items() if v.get("x-network")]
