"""The two records the harness writes per run, as types: ``run.json`` (restore) and the results JSON (score).

Like the typed results of lm-evaluation-harness, every key a record holds is a field here with its
type, in the order it is written, so the writer and the readers agree by construction:

* :class:`RunRecord`: ``<out>/restored/<task>/<dataset>/<method>/seed<k>/run.json``, what a restore
  measured (NFE, FLOPs, timing, memory) and how it ran (settings hash, shard, provenance);
* :class:`ScoreRecord`: ``<out>/scores/<task>/<dataset>/<method>/seed<k>.json``, the per-image score of
  every metric preset (:class:`MetricScore`), the run's cost (:class:`Cost`) and provenance.

``to_json()`` writes exactly what the dict literals of the stages wrote before these types existed
(same keys, order and indent: ``tests/test_results_schema.py``), so tables and golden values do not
move.  ``read(path)`` / ``from_dict(d, where)`` check a record strictly -- every key present, no
other key, each value of its type -- and a bad one is a single line naming the file, the key and the
fix.  :func:`check_record` is the lenient check the tables apply to every results file (only the
keys they read), kept as it was.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar, Union

from dpir.errors import DpirError
from dpir.workflow_facts import OUTPUTS   # the kind of an imported folder of outputs

SCHEMA_VERSION = 1
#: the rule every method's per-image generator follows (recorded in run.json)
IMAGE_SEED_RULE = "sha256(f'{seed}:{image_id}')[:8] (dpir.rng.image_seed)"

R = TypeVar("R", bound="_Record")
_OMIT_NONE = {"omit_none": True}       # field metadata: the key is written only when the value is not None


def _type_name(hint: Any) -> str:
    if hint is Any:
        return "any value"
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    origin = typing.get_origin(hint) or hint
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list",
            dict: "an object", type(None): "null"}.get(origin, getattr(origin, "__name__", str(origin)))


def _matches(value: Any, hint: Any) -> bool:
    """Whether a JSON value has the (shallow) type ``hint``: bool is never a number, an int is a float."""
    if hint is Any:
        return True
    if typing.get_origin(hint) in (Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(hint))
    origin = typing.get_origin(hint) or hint
    if origin is type(None):
        return value is None
    if dataclasses.is_dataclass(origin):
        return isinstance(value, dict)
    if origin is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, origin)


class _Record:
    """JSON (de)serialisation shared by the record types: fields in declaration order."""

    #: what the reader of a bad file should do (overridden per type; ``read`` may pass its own)
    FIX: ClassVar[str] = "write it again"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is None and f.metadata.get("omit_none"):
                continue
            out[f.name] = _plain(v)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls: type[R], d: Any, where: str = "record", fix: str | None = None, _prefix: str = "") -> R:
        """``d`` checked against the fields; any problem is a :class:`DpirError` naming ``where`` and the key."""
        fix = fix or cls.FIX

        def bad(what: str) -> DpirError:
            return DpirError(f"{where}: {what}; {fix}")

        if not isinstance(d, dict):
            raise bad(f"{'`' + _prefix.rstrip('.') + '`' if _prefix else 'the record'} is a JSON "
                      f"{type(d).__name__}, not an object")
        fields = dataclasses.fields(cls)
        hints = typing.get_type_hints(cls)
        names = {f.name for f in fields}
        extra = [k for k in d if k not in names]
        if extra:
            raise bad(f"unknown key `{_prefix}{extra[0]}`")
        values = {}
        for f in fields:
            key = _prefix + f.name
            optional = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            if f.name not in d:
                if optional:
                    continue
                raise bad(f"no key `{key}`")
            v, hint = d[f.name], hints[f.name]
            if not _matches(v, hint):
                raise bad(f"key `{key}` is {json.dumps(v)[:60]}, not {_type_name(hint)}")
            values[f.name] = _typed(v, hint, where, fix, key)
        rec = cls(**values)
        problem = rec._check()
        if problem:
            raise bad(problem)
        return rec

    def _check(self) -> str | None:
        """A problem beyond the types (overridden), or None."""
        return None

    @classmethod
    def from_json(cls: type[R], text: str, where: str = "record", fix: str | None = None) -> R:
        try:
            d = json.loads(text)
        except ValueError as e:
            raise DpirError(f"{where} is not valid JSON ({e}); {fix or cls.FIX}") from None
        return cls.from_dict(d, where, fix)

    @classmethod
    def read(cls: type[R], path: str | Path, fix: str | None = None) -> R:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise DpirError(f"{path} cannot be read ({e.strerror or e}); {fix or cls.FIX}") from None
        return cls.from_json(text, str(path), fix)


def _plain(v: Any) -> Any:
    if isinstance(v, _Record):
        return v.to_dict()
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _typed(v: Any, hint: Any, where: str, fix: str, key: str) -> Any:
    """Nested records (a field typed as a record, or ``dict[str, record]``) become their types."""
    for h in typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else (hint,):
        if isinstance(h, type) and issubclass(h, _Record) and isinstance(v, dict):
            return h.from_dict(v, where, fix, key + ".")
        if typing.get_origin(h) is dict and isinstance(v, dict):
            inner = typing.get_args(h)[1] if len(typing.get_args(h)) == 2 else Any
            if isinstance(inner, type) and issubclass(inner, _Record):
                return {k: inner.from_dict(x, where, fix, f"{key}.{k}.") for k, x in v.items()}
    return v


# ------------------------------------------------------------------------------------- run.json

@dataclass
class RunRecord(_Record):
    """``run.json`` of one restore (:func:`dpir.restore.restore_dataset`, joined by ``merge_shards``)."""

    FIX: ClassVar[str] = "run `dpir restore` for it again"

    schema: int
    task: str
    dataset: str
    method: str
    seed: int
    kind: str                                  # the method's kind
    label: str
    method_config: dict
    method_config_hash: str
    task_config_hash: str
    stochastic: bool
    images: list
    n_images: int
    image_seed_rule: str
    # cost, from the per-image records (dpir.restore._cost); None for an empty shard
    nfe: int | None
    nfe_groups: dict | None
    flops_per_image: int | None
    flops_input_size: list | None
    seconds_per_image: float | None
    seconds: list
    timing_note: str
    nfe_note: str
    params_total: int
    params_trained: int
    peak_rss_mib: float
    peak_cuda_mib: float | None
    png_bits: int
    shard: list | None
    tiled_modules: list | None
    tile: int | None
    run_key: str | None
    resumed_images: int
    provenance: dict
    merged_from: int | None = field(default=None, metadata=_OMIT_NONE)   # only in a run merged from shards

    def _check(self) -> str | None:
        if self.n_images != len(self.images):
            return f"key `n_images` is {self.n_images} but `images` lists {len(self.images)}"
        return None


# ------------------------------------------------------------------------------------- results JSON

@dataclass
class MetricScore(_Record):
    """One metric preset of a results record: its scores, or why it could not be computed."""

    available: bool
    lower_better: bool
    convention: str
    per_image: dict | None = field(default=None, metadata=_OMIT_NONE)
    mean: float | None = field(default=None, metadata=_OMIT_NONE)
    n_nonfinite: int | None = field(default=None, metadata=_OMIT_NONE)
    reason: str | None = field(default=None, metadata=_OMIT_NONE)
    fix: str | None = field(default=None, metadata=_OMIT_NONE)

    @classmethod
    def scored(cls, lower_better: bool, convention: str, per_image: dict[str, float]) -> MetricScore:
        """An available metric: its mean over the finite per-image values (NaN if none is finite)."""
        import math

        finite = [v for v in per_image.values() if math.isfinite(v)]
        return cls(True, lower_better, convention, per_image=per_image,
                   mean=sum(finite) / len(finite) if finite else float("nan"),
                   n_nonfinite=len(per_image) - len(finite))

    def _check(self) -> str | None:
        need, other = (("per_image", "mean", "n_nonfinite"), ("reason", "fix")) if self.available else \
            (("reason", "fix"), ("per_image", "mean", "n_nonfinite"))
        lacking = [k for k in need if getattr(self, k) is None]
        if lacking:
            return f"a metric with available {str(self.available).lower()} has no `{lacking[0]}`"
        stray = [k for k in other if getattr(self, k) is not None]
        if stray:
            return f"a metric with available {str(self.available).lower()} has a `{stray[0]}`"
        return None


@dataclass
class Cost(_Record):
    """The cost part of a results record, copied from its run.json."""

    nfe: int | None
    nfe_groups: dict | None
    nfe_note: str
    params_total: int
    params_trained: int
    flops_per_image: int | None
    flops_input_size: list | None
    seconds_per_image: float | None
    timing_note: str
    peak_rss_mib: float
    peak_cuda_mib: float | None

    @classmethod
    def of_run(cls, run: RunRecord) -> Cost:
        return cls(**{k: getattr(run, k) for k in cls.keys()})


@dataclass
class ScoreRecord(_Record):
    """One results JSON per (task, dataset, method, seed) (:func:`dpir.score.score_run`)."""

    FIX: ClassVar[str] = "delete it and run `dpir score` for it again"

    schema: int
    task: str
    dataset: str
    method: str
    seed: int
    label: str
    kind: str
    stochastic: bool
    metrics: dict[str, MetricScore]
    metric_options: dict
    scored_from: str
    cost: Cost
    n_images: int
    images: list
    method_config: dict
    method_config_hash: str
    config_hash: str
    provenance: dict

    def _check(self) -> str | None:
        if self.schema > SCHEMA_VERSION:
            return f"key `schema` is {self.schema}: written by another version of dpir (this one reads {SCHEMA_VERSION})"
        if self.n_images != len(self.images):
            return f"key `n_images` is {self.n_images} but `images` lists {len(self.images)}"
        return None


# ------------------------------------------------------------------ declared cost, architecture

# Two facts a run may carry beyond the measured cost, kept inside the records' existing fields so that
# the JSON of every run and results file stays exactly as before (tests/test_results_schema.py):
#
# * a row of kind ``outputs`` (dpir.outputs) was restored outside the harness: its NFE, parameters and
#   TFLOPs are the values its config entry declares (``nfe``, ``params``, ``tflops``; absent: n/a), read
#   from the record's ``method_config``, and nothing is timed;
# * ``provenance.architecture``: the network architecture a method reports (``Method.architecture``,
#   e.g. the one spandrel detects in a checkpoint), written by dpir.restore when the method has one.

DECLARED_COST_KEYS = ("nfe", "params", "tflops")


def declared_cost(rec: dict) -> dict | None:
    """``{"nfe", "params", "tflops"}`` as declared (None where not declared) for a run or results record of
    an imported row (kind ``outputs``); None for a measured run."""
    if rec.get("kind") != OUTPUTS:
        return None
    mcfg = rec.get("method_config") or {}
    return {k: mcfg.get(k) for k in DECLARED_COST_KEYS}


def architecture_of(rec: dict) -> str | None:
    """The architecture a run or results record names (``provenance.architecture``), or None."""
    arch = (rec.get("provenance") or {}).get("architecture")
    return arch if isinstance(arch, str) and arch else None


# ------------------------------------------------------------------ the tables' lenient check

def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_record(rec, where: tuple[str, ...] | None = None) -> str | None:
    """What makes ``rec`` unusable as a results record (the keys tables and the report read), or None.

    ``where``: the (task, dataset, method, seed<k>.json) parts of its path, which it must match."""
    if not isinstance(rec, dict):
        return f"a JSON {type(rec).__name__}, not an object"
    missing = [k for k in ("task", "dataset", "method", "seed", "label", "metrics", "cost", "n_images", "images")
               if k not in rec]
    if missing:
        return "no " + ", ".join(f"`{k}`" for k in missing)
    schema = rec.get("schema", SCHEMA_VERSION)
    if not isinstance(schema, int) or isinstance(schema, bool) or schema > SCHEMA_VERSION:
        return f"`schema` {schema!r}: written by another version of dpir (this one reads schema {SCHEMA_VERSION})"
    for k in ("task", "dataset", "method", "label"):
        if not isinstance(rec[k], str):
            return f"`{k}` is {rec[k]!r}, not a string"
    if not isinstance(rec["seed"], int) or isinstance(rec["seed"], bool):
        return f"`seed` is {rec['seed']!r}, not an integer"
    if not isinstance(rec["images"], list) or not isinstance(rec["n_images"], int):
        return "`images` must be a list and `n_images` an integer"
    if where is not None:
        task, dataset, method, name = where
        if (rec["task"], rec["dataset"], rec["method"], f"seed{rec['seed']}.json") != (task, dataset, method, name):
            return (f"it records the run {rec['task']}/{rec['dataset']}/{rec['method']} seed {rec['seed']}, "
                    f"not the one its path names")
    metrics = rec["metrics"]
    if not isinstance(metrics, dict):
        return "`metrics` is not a mapping"
    for name, e in metrics.items():
        if not isinstance(e, dict) or not isinstance(e.get("available"), bool):
            return f"`metrics.{name}` has no `available` flag"
        need = ("mean", "per_image") if e["available"] else ("reason", "fix")
        lacking = [k for k in ("lower_better", "convention", *need) if k not in e]
        if lacking:
            return f"`metrics.{name}` has no " + ", ".join(f"`{k}`" for k in lacking)
        if e["available"] and (not _is_number(e["mean"]) or not isinstance(e["per_image"], dict)):
            return f"`metrics.{name}`: `mean` must be a number and `per_image` a mapping"
    cost = rec["cost"]
    if not isinstance(cost, dict):
        return "`cost` is not a mapping"
    for k in ("params_total", "params_trained", "seconds_per_image"):
        if k == "seconds_per_image" and rec.get("kind") == OUTPUTS and cost.get(k) is None:
            continue        # an imported row is not timed
        if not _is_number(cost.get(k)):
            return f"`cost.{k}` is {cost.get(k)!r}, not a number"
    if "nfe" not in cost:
        return "no `cost.nfe`"
    prov = rec.get("provenance")
    if prov is not None and not (isinstance(prov, dict) and isinstance(prov.get("git"), dict) and "date" in prov):
        return "`provenance` lacks `git` or `date`"
    return None
