"""Method kind ``python``: any Python model, from code that lives outside this package.

A config entry names a factory by ``entry``, either ``"package.module:factory"`` (imported from
``sys.path``, with the entry's ``python_path`` folders put first, relative to the working directory)
or ``"path/to/file.py:factory"`` (a file, relative to the working directory)::

    byo_sharp: {kind: python, entry: "byo_sharp:build", python_path: [examples/byo], deterministic: true,
                options: {scale: 4, amount: 0.5}}

The factory gets a copy of the method's config entry (its ``options`` are the user's own settings), and
the :class:`~dpir.methods.base.BuildContext` too when it takes two parameters.  It returns either

- an ``nn.Module``: the method is :class:`~dpir.methods.simple.Backbone`, ``x = net(y)`` (one NFE, padded
  to ``pad_multiple``; on bursts the net's linear RGB is taken to sRGB with each burst's metadata); or
- an object with ``restore(y, generator)`` (and ``meta`` for bursts): its networks are its ``nn.Module``
  attributes (or the object itself when it is one), parameters counted and each restore's NFE counted by
  :func:`dpir.measure.count_nfe` as one group (the most-called network's calls).  ``expected_nfe()``,
  ``stochastic``, ``nfe_note`` and ``flops_counted`` are read from the object when it has them; without
  ``expected_nfe()`` the NFE is measured only (the restore records the count; only the contract test,
  which compares the two, needs the declaration).

A method is stochastic unless its entry says ``deterministic: true`` (or the object says
``stochastic = False``); an ``nn.Module`` gets no generator, so it is deterministic.  Every problem with
the entry (module not importable, attribute missing, not callable, the factory raising, returning
something else) is one line naming ``tasks.<task>.methods.<name>.entry`` and the fix; with ``dpir -v``
the command line prints the original traceback.  The factory's module file and its sha256 are recorded
(``code_source``: run.json's ``provenance.code`` and the resume key), so edited code is never resumed from.
"""
from __future__ import annotations

import copy
import difflib
import hashlib
import importlib
import importlib.util
import inspect
import logging
import sys
from pathlib import Path

import torch
from torch import nn

from dpir.errors import DpirError
from dpir.methods.base import BuildContext, Method

log = logging.getLogger(__name__)

def _key(ctx: BuildContext, key: str) -> str:
    name = getattr(ctx, "method_name", None) or "<method>"
    return f"tasks.{ctx.task_name}.methods.{name}.{key}"


def _add_python_path(folders, ctx: BuildContext) -> list[str]:
    """The ``python_path`` folders (relative to the working directory) put first on ``sys.path``."""
    if folders is None:
        return []
    if isinstance(folders, str):
        folders = [folders]
    resolved = []
    from dpir.workflow_facts import expand_path

    for f in folders:
        p = Path(expand_path(ctx.config or {}, f)).expanduser()      # {root}: the dpir-bench checkout
        p = p if p.is_absolute() else Path.cwd() / p
        if not p.is_dir():
            raise DpirError(f"{_key(ctx, 'python_path')}: {f!r} is not a folder (looked for {p}, relative to the "
                            f"working directory {Path.cwd()}); fix the path or run dpir from the folder it is "
                            f"relative to")
        resolved.append(str(p.resolve()))
    for p in reversed(resolved):
        if p in sys.path:
            sys.path.remove(p)
        sys.path.insert(0, p)
    return resolved


def _import_file(path_text: str, ctx: BuildContext):
    from dpir.workflow_facts import expand_path

    path = Path(expand_path(ctx.config or {}, path_text)).expanduser()
    path = path if path.is_absolute() else Path.cwd() / path
    if not path.is_file():
        raise DpirError(f"{_key(ctx, 'entry')}: the file {path_text!r} does not exist (looked for {path}, relative "
                        f"to the working directory); fix the path before the ':'")
    path = path.resolve()
    # one module per file, named after its path, so two files called model.py do not collide
    name = f"dpir_user_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module         # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _load_module(module: str, python_path: list[str], ctx: BuildContext):
    key = _key(ctx, "entry")
    where = f"python_path {python_path}" if python_path else "no python_path"
    try:
        if module.endswith(".py") or "/" in module or "\\" in module:
            return _import_file(module, ctx)
        return importlib.import_module(module)
    except DpirError:
        raise
    except ModuleNotFoundError as e:
        if e.name and (module == e.name or module.startswith(e.name + ".")):
            raise DpirError(f"{key}: cannot import module {module!r} ({where}; working directory {Path.cwd()}); "
                            f"add the folder that holds it to `python_path`, or install its package") from e
        raise DpirError(f"{key}: importing {module!r} failed: it needs the module {e.name!r}, which is not "
                        f"installed; install it (run with -v for the traceback)") from e
    except Exception as e:
        raise DpirError(f"{key}: importing {module!r} raised {type(e).__name__}: {_short(e)}; fix the module "
                        f"(run with -v for the traceback)") from e


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return (text[:200] + "...") if len(text) > 200 else (text or "(no message)")


def load_factory(method_cfg: dict, ctx: BuildContext):
    """The callable ``entry`` names, its module imported with ``python_path`` first on ``sys.path``."""
    key = _key(ctx, "entry")
    entry = method_cfg.get("entry")
    if not isinstance(entry, str) or ":" not in entry:
        raise DpirError(f"{key}: expected \"package.module:factory\" or \"path/to/file.py:factory\", got {entry!r}")
    module_name, attr = entry.rsplit(":", 1)
    if not module_name or not attr:
        raise DpirError(f"{key}: expected \"package.module:factory\" or \"path/to/file.py:factory\", got {entry!r}")
    python_path = _add_python_path(method_cfg.get("python_path"), ctx)
    module = _load_module(module_name, python_path, ctx)
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else \
                f"; it has {', '.join(names[:8]) or 'no public names'}"
            raise DpirError(f"{key}: {module_name!r} has no attribute {part!r}{hint}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise DpirError(f"{key}: {entry!r} is a {type(obj).__name__}, not callable; name a function or class that "
                        f"returns the model")
    return obj


def _takes_context(fn) -> bool:
    """Whether the factory takes a second positional parameter (the BuildContext)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


def _networks(obj) -> dict[str, nn.Module]:
    """The object's networks: itself if it is an ``nn.Module``, else its ``nn.Module`` attributes."""
    if isinstance(obj, nn.Module):
        return {"model": obj}
    return {k: v for k, v in sorted(vars(obj).items()) if isinstance(v, nn.Module)} if hasattr(obj, "__dict__") else {}


class PythonMethod(Method):
    """A user's object with ``restore(y, generator[, meta])``, wrapped in the restore contract."""

    def __init__(self, obj, entry: str, stochastic: bool, burst: bool):
        self.obj, self.entry, self.stochastic = obj, entry, stochastic
        self.nets = _networks(obj)
        note = getattr(obj, "nfe_note", None)
        self.nfe_note = note if isinstance(note, str) else (
            f"calls of its network ({entry}), measured" if self.nets else f"no torch network found on {entry}")
        self.flops_counted = bool(getattr(obj, "flops_counted", True))
        self.architecture = getattr(obj, "architecture", None) if isinstance(getattr(obj, "architecture", None),
                                                                             str) else None
        if burst:   # the harness passes meta; the signature tells restore.py so
            self.restore = self._restore_burst

    def _check(self, y, x):
        if not isinstance(x, torch.Tensor):
            raise DpirError(f"{self.entry}: restore() returned a {type(x).__name__}, not a torch.Tensor "
                            f"(B, 3, H, W); fix its restore()")
        if x.dim() != 4 or x.shape[0] != y.shape[0] or x.shape[1] != 3:
            raise DpirError(f"{self.entry}: restore() returned a tensor of shape {tuple(x.shape)} for an input of "
                            f"{tuple(y.shape)}; it must be (B, 3, H, W) RGB with the input's batch size")
        return x.float()

    def restore(self, y, generator=None):
        return self._check(y, self.obj.restore(y, generator))

    def _restore_burst(self, y, generator=None, meta=None):
        return self._check(y, self.obj.restore(y, generator, meta=meta))

    def expected_nfe(self) -> int:
        fn = getattr(self.obj, "expected_nfe", None)
        if not callable(fn):
            raise NotImplementedError(f"{self.entry}: the object declares no expected_nfe(); its NFE is measured "
                                      f"only (count_nfe in `dpir restore`)")
        return int(fn())

    def modules(self):
        return dict(self.nets)

    def nfe_groups(self):
        return {"model": list(self.nets.values())} if self.nets else {}


def _code_source(fn, entry: str) -> dict:
    """What identifies the user's code: the entry, its module's file and that file's sha256 (recorded in
    run.json's provenance and in the resume key, so an edited model file is not resumed from)."""
    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    path = getattr(module, "__file__", None)
    digest = None
    if path:
        try:
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError:
            digest = None
    return {"entry": entry, "file": path, "sha256": digest}


def build(method_cfg: dict, ctx: BuildContext) -> Method:
    from dpir.methods.simple import Backbone, default_pad_multiple
    from dpir.tasks import output_scale, task_kind

    key = _key(ctx, "entry")
    entry = method_cfg.get("entry")
    fn = load_factory(method_cfg, ctx)
    cfg = copy.deepcopy(method_cfg)        # the factory cannot change the config (the run key hashes it)
    try:
        obj = fn(cfg, ctx) if _takes_context(fn) else fn(cfg)
    except DpirError:
        raise
    except Exception as e:
        log.debug("the factory %s raised", entry, exc_info=True)
        raise DpirError(f"{key}: the factory {entry!r} raised {type(e).__name__}: {_short(e)}; fix it or its "
                        f"`options` (run with -v for the traceback)") from e
    deterministic = bool(method_cfg.get("deterministic", False))
    burst = not task_kind(ctx.task).image_input
    if isinstance(obj, nn.Module) and not callable(getattr(obj, "restore", None)):
        multiple = int(method_cfg.get("pad_multiple", default_pad_multiple(obj, ctx.task)))
        m = Backbone(obj.to(ctx.device), multiple, output_scale(ctx.task))
        m.nfe_note = f"one forward pass of {entry}"
        if isinstance(getattr(obj, "architecture", None), str):
            m.architecture = obj.architecture
        m.code_source = _code_source(fn, entry)
        return m
    restore = getattr(obj, "restore", None)
    if not callable(restore):
        raise DpirError(f"{key}: the factory {entry!r} returned a {type(obj).__name__}, which is neither an "
                        f"nn.Module nor an object with restore(y, generator); return one of the two")
    if burst:
        try:
            takes_meta = "meta" in inspect.signature(restore).parameters
        except (TypeError, ValueError):
            takes_meta = False
        if not takes_meta:
            raise DpirError(f"{key}: task {ctx.task_name!r} restores bursts, but the restore() of {entry!r} takes no "
                            f"`meta` (the bursts' metadata, to take its output to sRGB); add a `meta=None` parameter")
    stochastic = False if deterministic else bool(getattr(obj, "stochastic", True))
    m = PythonMethod(obj, entry, stochastic, burst)
    m.code_source = _code_source(fn, entry)
    m.to(ctx.device)
    return m
