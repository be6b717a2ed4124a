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

A method kind or trainer entry also carries its config keys (``dpir.keys.factory(target, **keys)``:
the ``keys`` metadata), so validation reads them without importing the factory.

Packages add their own entries.  A baseline package's ``__init__.py`` (torch-free) exports one
:class:`Entries` object, ``ENTRIES``, with its method kinds, architectures and trainers; the central
registries (``dpir.methods.METHODS``, ``dpir.nets.ARCHS``, ``dpir.train.TRAINERS``) take those of every
package in :data:`PACKAGES` -- one line per package -- through :func:`include`.  Two packages (or a
package and the core) registering one name is a :class:`RegistryError` naming both.
"""
from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from dpir.errors import UnknownNameError

__all__ = ["PACKAGES", "Entries", "Entry", "Registry", "RegistryError", "add_package", "include", "remove_package"]

#: the packages whose ``ENTRIES`` the central registries include, one line each (a new baseline is its
#: folder, one line here and its config entries)
PACKAGES: tuple[str, ...] = (
    "baselines.srdiff",
    "baselines.indi",
    "baselines.diffir",
)


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


def _origin(entry: Entry) -> str:
    package = entry.meta.get("package")
    return f"{entry.target!r} (package {package})" if package else repr(entry.target)


def _split(target: object, meta: dict) -> tuple[object, dict]:
    """A :class:`dpir.keys.Factory` entry is its target plus ``keys`` metadata."""
    from dpir.keys import Factory

    if isinstance(target, Factory):
        return target.target, {**meta, "keys": target.keys}
    return target, meta


def _import_target(target: str):
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def _check_target(kind: str, name: str, target: object) -> str:
    if not isinstance(target, str) or target.count(":") != 1 or not all(target.split(":")):
        raise RegistryError(f"{kind} {name!r}: target must be a 'package.module:attr' string, got {target!r}")
    return target


class Registry(Mapping):
    """Names of one ``kind`` ("method kind", "architecture", ...) -> lazy ``"module:attr"`` entries.

    ``callable_only``: the loaded object must be callable (a class or a factory).  ``returns``: a type
    (or a ``"module:attr"`` string naming one, imported on the first build, so that a torch type does
    not import torch with the table) that :meth:`build` checks the factory's result against.
    ``required_meta``: metadata keys every entry must declare when registered (a metric preset's
    ``lower_better``, ``digits``; ``keys`` for method kinds and trainers).
    """

    def __init__(self, kind: str, entries: Mapping[str, str] | Iterable[tuple[str, str]] = (), *,
                 callable_only: bool = True, returns: type | str | tuple[type | str, ...] | None = None,
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
    def register(self, name: str, target, *, replace: bool = False, **meta) -> Entry:
        """Add ``name`` -> ``target`` (a ``"module:attr"`` string or a :class:`dpir.keys.Factory`, with
        ``meta``); a second registration of ``name`` is an error naming both unless ``replace``."""
        target, meta = _split(target, meta)
        if not isinstance(name, str) or not name:
            raise RegistryError(f"{self.kind} names must be non-empty strings, got {name!r}")
        _check_target(self.kind, name, target)
        missing = [k for k in self.required_meta if k not in meta]
        if missing:
            how = " (register it as dpir.keys.factory(target, **keys))" if "keys" in missing else ""
            raise RegistryError(f"{self.kind} {name!r} ({target}) must declare {', '.join(missing)}{how}")
        if name in self._entries and not replace:
            new = Entry(name, target, dict(meta))
            raise RegistryError(f"{self.kind} {name!r} is registered twice: as {_origin(self._entries[name])} and "
                                f"as {_origin(new)}; rename one, or pass replace=True to override on purpose")
        entry = Entry(name, target, dict(meta))
        self._entries[name] = entry
        self._loaded.pop(name, None)
        return entry

    def unregister(self, name: str) -> None:
        if name not in self._entries:
            raise UnknownNameError(self.kind, name, self._entries)
        del self._entries[name]
        self._loaded.pop(name, None)

    def __setitem__(self, name: str, target) -> None:
        """Explicit override (``monkeypatch.setitem`` uses it): replaces the target, keeps the metadata
        (a :class:`dpir.keys.Factory` brings its own ``keys``)."""
        old = self._entries.get(name)
        target, meta = _split(target, dict(old.meta) if old is not None else {})
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
        if "keys" in entry.meta:
            self._attach_keys(entry, obj)
        self._loaded[name] = obj
        return obj

    def _attach_keys(self, entry: Entry, obj) -> None:
        """The entry's declared keys go onto the factory (``dpir.keys.declared``), so build-time code
        reads the registry's declaration; a factory that declares others itself is refused."""
        from dpir.keys import ATTR, declared

        own = declared(obj)
        if own is None:
            setattr(obj, ATTR, entry.meta["keys"])
        elif own != entry.meta["keys"]:
            raise RegistryError(f"{self.kind} {entry.name!r}: {entry.target} declares other config keys "
                                f"(@config_keys: {sorted(own['properties'])}) than its registry entry "
                                f"({sorted(entry.meta['keys']['properties'])}); declare them once, in the entry")

    def _returns(self) -> tuple[type, ...]:
        want = self.returns if isinstance(self.returns, tuple) else (self.returns,)
        return tuple(_import_target(t) if isinstance(t, str) else t for t in want)

    def build(self, name: str, *args, **kwargs):
        """``load(name)(*args, **kwargs)``, checking the result against ``returns``."""
        obj = self.load(name)(*args, **kwargs)
        if self.returns is not None and not isinstance(obj, want_types := self._returns()):
            want = " or ".join(t.__name__ for t in want_types)
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


# ------------------------------------------------------------------------------------------------
# packages that bring their own entries

#: the section of :class:`Entries` -> the central registry it goes into
SECTIONS = {"methods": "dpir.methods:METHODS", "archs": "dpir.nets:ARCHS", "trainers": "dpir.train:TRAINERS"}


@dataclass(frozen=True)
class Entries:
    """What one package adds to the central registries, as torch-free data (its ``__init__.py``
    exports it as ``ENTRIES``): method kinds and trainers as ``dpir.keys.factory(target, **keys)``,
    architectures as ``"module:attr"`` strings.  A target may be relative to the package
    (``".method:build"``)."""
    methods: Mapping[str, Any] = field(default_factory=dict)
    archs: Mapping[str, str] = field(default_factory=dict)
    trainers: Mapping[str, Any] = field(default_factory=dict)


def package_entries(package: str) -> Entries:
    """The ``ENTRIES`` of ``package`` (imported; a package's ``__init__`` must not import torch)."""
    try:
        module = importlib.import_module(package)
    except ImportError as e:
        if e.name and (package == e.name or package.startswith(e.name + ".")):
            raise RegistryError(f"package {package!r} (dpir.registry.PACKAGES) does not exist") from e
        raise
    entries = getattr(module, "ENTRIES", None)
    if not isinstance(entries, Entries):
        raise RegistryError(f"package {package!r} must export ENTRIES = dpir.registry.Entries(methods=..., "
                            f"archs=..., trainers=...) in its __init__.py, got {type(entries).__name__}")
    return entries


def include(registry: Registry, section: str, packages: Iterable[str] | None = None) -> list[str]:
    """Register the ``section`` entries of ``packages`` (default: :data:`PACKAGES`) in ``registry``;
    each entry records its ``package``.  Returns the names added."""
    if section not in SECTIONS:
        raise RegistryError(f"unknown Entries section {section!r} (known: {', '.join(SECTIONS)})")
    added = []
    for package in PACKAGES if packages is None else packages:
        for name, target in getattr(package_entries(package), section).items():
            registry.register(name, _absolute(target, package), package=package)
            added.append(name)
    return added


def _absolute(target, package: str):
    """A target relative to its package (``".method:build"``) made absolute, so that a baseline folder
    can be copied under another name without editing its entries."""
    from dpir.keys import Factory

    t = target.target if isinstance(target, Factory) else target
    if not (isinstance(t, str) and t.startswith(".")):
        return target
    t = package + t
    return replace(target, target=t) if isinstance(target, Factory) else t


def add_package(package: str) -> dict[str, list[str]]:
    """What one more line in :data:`PACKAGES` does, at run time: include ``package``'s entries in all
    central registries.  Returns section -> names added."""
    entries = package_entries(package)   # fails before anything is registered
    for section, where in SECTIONS.items():
        reg = _import_target(where)
        for name, target in getattr(entries, section).items():
            if name in reg:
                target = _absolute(target, package)
                target = getattr(target, "target", target)
                raise RegistryError(f"{reg.kind} {name!r} is registered twice: as {_origin(reg.entry(name))} and "
                                    f"as {target!r} (package {package}); rename one")
    return {section: include(_import_target(where), section, (package,)) for section, where in SECTIONS.items()}


def remove_package(package: str) -> None:
    """Undo :func:`add_package` (tests): unregister every entry that ``package`` registered."""
    for where in SECTIONS.values():
        reg = _import_target(where)
        for name in [n for n in reg if reg.meta(n).get("package") == package]:
            reg.unregister(name)
