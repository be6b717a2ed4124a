"""Registries as data: a name -> a lazy ``"module:attr"`` entry, imported on first use.

Every table that selects code by a config name (method kinds, architectures, trainers, metric
presets) is a :class:`Registry`.  An entry is a string ``"package.module:attr"`` plus optional
metadata (a metric preset's direction and display digits, say), so listing or validating names never
imports torch-heavy modules, and the DVC generator (``scripts/gen_dvc.py``) can read the module of
an entry without importing it.

Read access is that of a ``dict[str, str]`` so existing code keeps working::

    "dpir" in METHODS            # membership
    METHODS["dpir"]              # -> "dpir.methods.dpir:build" (the entry string)
    sorted(METHODS), len(METHODS), METHODS.items(), METHODS.get(name, None)

and :meth:`Registry.get` imports and returns the object, checked on load::

    build = METHODS.get("dpir")              # the imported object (also METHODS.load("dpir"))

Registering a name twice is an error naming both targets (``replace=True`` overrides on purpose;
item assignment ``REG[name] = "mod:attr"`` does the same, which is what ``monkeypatch.setitem``
needs).  An unknown name raises :class:`dpir.errors.UnknownNameError` with close-match suggestions.
"""
from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from dpir.errors import UnknownNameError

__all__ = ["Entry", "Registry", "RegistryError"]


class RegistryError(Exception):
    """A programming error in a registry: a duplicate name, a malformed target, or an entry that
    does not load to what the registry holds.  (Unknown names are user errors: UnknownNameError.)"""


@dataclass(frozen=True)
class Entry:
    name: str
    target: str                       # "package.module:attr"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def module(self) -> str:
        return self.target.split(":")[0]

    @property
    def attr(self) -> str:
        return self.target.split(":")[1]


def _check_target(kind: str, name: str, target: object) -> str:
    if not isinstance(target, str) or target.count(":") != 1 or not all(target.split(":")):
        raise RegistryError(f"{kind} {name!r}: target must be a 'package.module:attr' string, got {target!r}")
    return target


class Registry(Mapping):
    """Names of one ``kind`` ("method kind", "architecture", ...) -> lazy ``"module:attr"`` entries.

    ``callable_only``: the loaded object must be callable (a class or a factory).  ``returns``: a type
    that :meth:`build` checks the factory's result against.  ``required_meta``: metadata keys every
    entry must declare when registered (a metric preset's ``lower_better``, ``digits``).
    """

    def __init__(self, kind: str, entries: Mapping[str, str] | Iterable[tuple[str, str]] = (), *,
                 callable_only: bool = True, returns: type | tuple[type, ...] | None = None,
                 required_meta: tuple[str, ...] = ()):
        self.kind = kind
        self.callable_only = callable_only
        self.returns = returns
        self.required_meta = tuple(required_meta)
        self._entries: dict[str, Entry] = {}
        self._loaded: dict[str, object] = {}
        pairs = entries.items() if isinstance(entries, Mapping) else entries
        for name, target in pairs:
            self.register(name, target)

    # -- writing ----------------------------------------------------------------------------
    def register(self, name: str, target: str, *, replace: bool = False, **meta) -> Entry:
        """Add ``name`` -> ``target`` (with ``meta``); a second registration of ``name`` is an error
        naming both targets unless ``replace``."""
        if not isinstance(name, str) or not name:
            raise RegistryError(f"{self.kind} names must be non-empty strings, got {name!r}")
        _check_target(self.kind, name, target)
        missing = [k for k in self.required_meta if k not in meta]
        if missing:
            raise RegistryError(f"{self.kind} {name!r} ({target}) must declare {', '.join(missing)}")
        if name in self._entries and not replace:
            raise RegistryError(f"{self.kind} {name!r} is registered twice: as {self._entries[name].target!r} and "
                                f"as {target!r}; rename one, or pass replace=True to override on purpose")
        entry = Entry(name, target, dict(meta))
        self._entries[name] = entry
        self._loaded.pop(name, None)
        return entry

    def unregister(self, name: str) -> None:
        if name not in self._entries:
            raise UnknownNameError(self.kind, name, self._entries)
        del self._entries[name]
        self._loaded.pop(name, None)

    def __setitem__(self, name: str, target: str) -> None:
        """Explicit override (``monkeypatch.setitem`` uses it): replaces the target, keeps the metadata."""
        old = self._entries.get(name)
        meta = old.meta if old is not None else {}
        if old is None:
            missing = [k for k in self.required_meta if k not in meta]
            if missing:
                raise RegistryError(f"{self.kind} {name!r}: use register() to declare {', '.join(missing)}")
        _check_target(self.kind, name, target)
        self._entries[name] = Entry(name, target, dict(meta))
        self._loaded.pop(name, None)

    def __delitem__(self, name: str) -> None:
        self.unregister(name)

    # -- dict-like reading ------------------------------------------------------------------
    def __getitem__(self, name: str) -> str:
        """The ``"module:attr"`` string of ``name`` (UnknownNameError, a KeyError, if unknown)."""
        return self.entry(name).target

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries: {', '.join(self._entries)})"

    # -- entries and objects ----------------------------------------------------------------
    def entry(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(self.kind, str(name), self._entries) from None

    def meta(self, name: str) -> dict[str, Any]:
        return self.entry(name).meta

    def load(self, name: str):
        """Import and return the object registered as ``name`` (checked once, then cached)."""
        entry = self.entry(name)
        if name in self._loaded:
            return self._loaded[name]
        try:
            module = importlib.import_module(entry.module)
        except ImportError as e:
            if e.name and (entry.module == e.name or entry.module.startswith(e.name + ".")):
                raise RegistryError(f"{self.kind} {name!r}: module {entry.module!r} of {entry.target!r} "
                                    f"does not exist") from e
            raise
        try:
            obj = getattr(module, entry.attr)
        except AttributeError:
            raise RegistryError(f"{self.kind} {name!r}: module {entry.module!r} has no {entry.attr!r} "
                                f"(registered as {entry.target!r})") from None
        if self.callable_only and not callable(obj):
            raise RegistryError(f"{self.kind} {name!r}: {entry.target} is a {type(obj).__name__}, "
                                f"not a class or factory")
        self._loaded[name] = obj
        return obj

    def build(self, name: str, *args, **kwargs):
        """``load(name)(*args, **kwargs)``, checking the result against ``returns``."""
        obj = self.load(name)(*args, **kwargs)
        if self.returns is not None and not isinstance(obj, self.returns):
            want = (self.returns.__name__ if isinstance(self.returns, type)
                    else " or ".join(t.__name__ for t in self.returns))
            raise RegistryError(f"{self.kind} {name!r}: {self[name]} returned a {type(obj).__name__}, not a {want}")
        return obj

    # ``get`` with one argument loads the object (the registry's own API); with a default it is the
    # Mapping's ``get`` (the entry string or the default), so dict-style callers keep working.
    _NO_DEFAULT = object()

    def get(self, name: str, default=_NO_DEFAULT):  # type: ignore[override]
        if default is Registry._NO_DEFAULT:
            return self.load(name)
        return self._entries[name].target if name in self._entries else default


def resolve_in(table: Mapping[str, str] | Registry, kind: str, name: str) -> Any:
    """The object of ``name`` in a registry or in a plain ``{name: "module:attr"}`` dict."""
    if isinstance(table, Registry):
        if name not in table:
            raise UnknownNameError(kind, name, table)
        return table.load(name)
    if name not in table:
        raise UnknownNameError(kind, name, table)
    module, attr = table[name].split(":")
    return getattr(importlib.import_module(module), attr)
