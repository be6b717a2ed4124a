"""The committed registry of fetchable files, where they go, and the local lock of recorded hashes.

``registry.json`` (beside this file) lists every dataset archive and weight file with its URL(s),
published size and SHA-256 (``null`` where the publisher gives none), target path and archive type.
Targets are written with a root placeholder so that an offline cluster can pre-stage files:

    {data}       $DPIR_DATA       (default ./data/downloads, relative to the working directory)
    {weights}    $DPIR_WEIGHTS    (default ./data/weights)
    {torch_hub}  $TORCH_HOME/hub  (default ~/.cache/torch/hub; where torchvision, lpips and pyiqa look)
    {hf_hub}     $HF_HUB_CACHE    (default ~/.cache/huggingface/hub; where timm looks)

Where no checksum is published, the SHA-256 (and size) of the first verified download is recorded in
``registry.lock.json`` (override the location with $DPIR_REGISTRY_LOCK) and enforced from then on;
commit that file so every machine of a project checks the same bytes.  A download counts as verified
only when its length was confirmed (Content-Length matched, or an archive passed its own integrity
check); ``dpir fetch --forget NAME`` drops a record that turned out to be wrong.

An entry may list ``aliases``: further names ``dpir fetch`` accepts for it (the metric weights names
that ``dpir.metrics.weights.fetch_command`` prints, such as ``lpips_alex``).  ``unpacked_size``
(optional) bounds what an archive may unpack to; without it a compression-ratio limit applies.

``member`` (a glob, or a list of globs tried in order) makes the download a *container*: if it is a zip
or tar archive of files (a release bundle of several checkpoints), the one file the globs pick is taken
out of it (:func:`dpir.fetch.archive.extract_member`, into ``extract_to`` or else the folder of
``target``) and ``fetch`` returns that file; if it is a single file (a bare checkpoint) it is used as it
is.  ``sha256``/``size`` are those of the download (the container), as for every entry.

The hosts of ``urls`` (and Google Drive for ``gdrive_id``) are replaced by a mirror when $DPIR_MIRROR is
set (:func:`dpir.fetch.download.mirror_url`); the hashes stay the registry's.

$DPIR_REGISTRY_OVERRIDES (tests of fixtures only; never needed by users): the path of a JSON file
``{NAME: {"sha256": ..., "size": ...}}`` whose values replace those of the named entries (and drop their
``sha256_prefix``), so that miniature stand-ins of the real files (:mod:`dpir.rehearsal`) verify against
the committed registry with nothing else changed.  Real downloads always check the published hashes.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from dpir.atomic import blocking_file, exclusive_lock_file, temp_lock_file
from dpir.errors import DpirError, UnknownNameError

HERE = Path(__file__).resolve().parent
# Module attributes (not constants baked into functions) so tests can point them at fixtures.
REGISTRY_PATH = HERE / "registry.json"
DEFAULT_LOCK_PATH = HERE / "registry.lock.json"
OVERRIDES_VAR = "DPIR_REGISTRY_OVERRIDES"

KINDS = ("dataset", "weights")
ARCHIVES = ("zip", "tar")
ROOTS = ("data", "weights", "torch_hub", "hf_hub")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_PLACEHOLDER = re.compile(r"^\{(\w+)\}(/.*)?$")


@dataclass(frozen=True)
class Entry:
    name: str
    kind: Literal["dataset", "weights"]
    target: str
    urls: tuple[str, ...] = ()
    gdrive_id: str | None = None
    size: int | None = None
    sha256: str | None = None
    sha256_prefix: str | None = None
    archive: Literal["zip", "tar"] | None = None
    extract_to: str | None = None
    hf_ref: str | None = None
    unpacked_size: int | None = None
    member: str | tuple[str, ...] | None = None
    aliases: tuple[str, ...] = ()
    description: str = ""
    homepage: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def path(self) -> Path:
        """Where the downloaded file lives (resolved against the current environment)."""
        return resolve(self.target)

    @property
    def extract_dir(self) -> Path | None:
        return resolve(self.extract_to) if self.extract_to else None


def _env_dir(var: str, default: Path) -> Path:
    """The folder named by environment variable ``var`` (else ``default``), refused if it is a file."""
    value = os.environ.get(var)
    path = Path(value) if value else default
    probe = blocking_file(path)
    if probe is not None:
        named = f"${var}={value}" if value else f"the default {path} (${var} is unset)"
        raise DpirError(f"{named} is not a folder: {probe} is a file. Point {var} at a folder "
                        f"(or move that file away)")
    return path


def root_dir(root: str) -> Path:
    """The directory a ``{root}`` placeholder stands for, read from the environment at call time."""
    env = os.environ
    if root == "data":
        return _env_dir("DPIR_DATA", Path.cwd() / "data" / "downloads")
    if root == "weights":
        return _env_dir("DPIR_WEIGHTS", Path.cwd() / "data" / "weights")
    cache = _env_dir("XDG_CACHE_HOME", Path.home() / ".cache")
    if root == "torch_hub":
        # Same rule as torch.hub.get_dir() (without importing torch): $TORCH_HOME/hub.
        return _env_dir("TORCH_HOME", cache / "torch") / "hub"
    if root == "hf_hub":
        if env.get("HF_HUB_CACHE"):
            return _env_dir("HF_HUB_CACHE", Path())
        return _env_dir("HF_HOME", cache / "huggingface") / "hub"
    raise DpirError(f"unknown root {{{root}}} in {REGISTRY_PATH}; use one of {', '.join(ROOTS)}")


def resolve(template: str) -> Path:
    m = _PLACEHOLDER.match(template)
    if not m:
        raise DpirError(f"registry path {template!r} must start with one of "
                        f"{', '.join('{' + r + '}' for r in ROOTS)}")
    rest = (m.group(2) or "").lstrip("/")
    return root_dir(m.group(1)) / rest if rest else root_dir(m.group(1))


def _entry(raw: dict[str, Any], source: Path) -> Entry:
    known = {f for f in Entry.__dataclass_fields__ if f != "extra"}
    name = raw.get("name")
    where = f"{source} entry {name!r}"
    if not isinstance(name, str) or not re.match(r"^[a-z0-9_]+$", name):
        raise DpirError(f"{source}: every entry needs a lower_snake_case 'name' (got {name!r})")
    if raw.get("kind") not in KINDS:
        raise DpirError(f"{where}: kind must be one of {KINDS} (got {raw.get('kind')!r})")
    if raw.get("archive") not in (None, *ARCHIVES):
        raise DpirError(f"{where}: archive must be null or one of {ARCHIVES} (got {raw.get('archive')!r})")
    if raw.get("archive") and not raw.get("extract_to"):
        raise DpirError(f"{where}: an archive needs 'extract_to'")
    member = raw.get("member")
    if member is not None:
        if not (isinstance(member, str) and member) and not (
                isinstance(member, list) and member and all(isinstance(m, str) and m for m in member)):
            raise DpirError(f"{where}: member must be a glob or a non-empty list of globs (got {member!r})")
        if raw.get("archive"):
            raise DpirError(f"{where}: member (one file taken out of a downloaded archive) and archive "
                            f"(unpack the whole archive) exclude each other; set archive to null")
    sha = raw.get("sha256")
    if sha is not None and not _HEX64.match(sha):
        raise DpirError(f"{where}: sha256 must be 64 lower-case hex digits or null (got {sha!r})")
    for key in ("size", "unpacked_size"):
        size = raw.get(key)
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise DpirError(f"{where}: {key} must be a non-negative integer or null (got {size!r})")
    aliases = raw.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) and re.match(r"^[a-z0-9_]+$", a)
                                                for a in aliases):
        raise DpirError(f"{where}: aliases must be a list of lower_snake_case names (got {aliases!r})")
    if not raw.get("urls") and not raw.get("gdrive_id"):
        raise DpirError(f"{where}: needs at least one of 'urls' or 'gdrive_id'")
    for key in ("target", "extract_to", "hf_ref"):
        if raw.get(key) is not None:
            m = _PLACEHOLDER.match(raw[key])
            if not m or m.group(1) not in ROOTS or ".." in raw[key].split("/"):
                raise DpirError(f"{where}: {key} {raw[key]!r} must start with one of "
                                f"{', '.join('{' + r + '}' for r in ROOTS)} and stay below it")
    kwargs = {k: v for k, v in raw.items() if k in known}
    kwargs["urls"] = tuple(raw.get("urls") or ())
    kwargs["aliases"] = tuple(aliases)
    if isinstance(member, list):
        kwargs["member"] = tuple(member)
    return Entry(**kwargs, extra={k: v for k, v in raw.items() if k not in known})


def entries() -> dict[str, Entry]:
    """All registry entries by name, read from :data:`REGISTRY_PATH` (validated on every read)."""
    try:
        doc = json.loads(Path(REGISTRY_PATH).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DpirError(f"cannot read the download registry {REGISTRY_PATH}: {e}") from None
    raw_entries = doc.get("entries", []) if isinstance(doc, dict) else None
    if not isinstance(raw_entries, list) or not all(isinstance(r, dict) for r in raw_entries):
        raise DpirError(f"{REGISTRY_PATH}: expected {{\"entries\": [{{...}}, ...]}}; restore it from "
                        f"version control")
    out: dict[str, Entry] = {}
    for raw in raw_entries:
        e = _entry(raw, Path(REGISTRY_PATH))
        if e.name in out:
            raise DpirError(f"{REGISTRY_PATH}: entry {e.name!r} is listed twice")
        out[e.name] = e
    out = _overridden(out)
    taken = set(out)
    for e in out.values():
        for a in e.aliases:
            if a in taken:
                raise DpirError(f"{REGISTRY_PATH}: alias {a!r} of entry {e.name!r} is already a name or "
                                f"an alias of another entry; rename it")
            taken.add(a)
    return out


def _overridden(table: dict[str, Entry]) -> dict[str, Entry]:
    """``table`` with the sha256/size of $DPIR_REGISTRY_OVERRIDES applied (a test-only setting for
    fixtures that stand in for the real files; see the module docstring).  Unset: ``table`` itself."""
    value = os.environ.get(OVERRIDES_VAR, "").strip()
    if not value:
        return table
    fix = f"point {OVERRIDES_VAR} at a JSON file {{NAME: {{\"sha256\": ..., \"size\": ...}}}} or unset it"
    try:
        doc = json.loads(Path(value).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DpirError(f"${OVERRIDES_VAR}={value}: cannot read it ({e}); {fix}") from None
    if not isinstance(doc, dict):
        raise DpirError(f"${OVERRIDES_VAR}={value}: expected a JSON object of entries; {fix}")
    out = dict(table)
    for name, rec in doc.items():
        if name not in out:
            raise DpirError(f"${OVERRIDES_VAR}={value}: {name!r} is not an entry of {REGISTRY_PATH}; {fix}")
        sha, size = (rec.get("sha256"), rec.get("size")) if isinstance(rec, dict) else (None, None)
        if not (isinstance(sha, str) and _HEX64.match(sha)) or isinstance(size, bool) or \
                not isinstance(size, int) or size < 0:
            raise DpirError(f"${OVERRIDES_VAR}={value}: entry {name!r} needs a 64-hex-digit 'sha256' and a "
                            f"non-negative integer 'size' (got {rec!r}); {fix}")
        out[name] = replace(out[name], sha256=sha, size=size, sha256_prefix=None)
    return out


def aliases(table: dict[str, Entry] | None = None) -> dict[str, str]:
    """Alias -> entry name, for every alias in the registry."""
    table = entries() if table is None else table
    return {a: e.name for e in table.values() for a in e.aliases}


def get(name: str) -> Entry:
    """The entry called ``name`` (or having ``name`` as an alias)."""
    table = entries()
    if name in table:
        return table[name]
    alias = aliases(table)
    if name in alias:
        return table[alias[name]]
    raise UnknownNameError("download", name, [*table, *alias])


# ---------------------------------------------------------------------------------------------
# Lock file: hashes recorded on first verified download of files without a published checksum.

LOCK_FIX = ("restore it from version control (git checkout -- FILE) or delete it; hashes are then "
            "recorded again on the next verified download")


def lock_path() -> Path:
    value = os.environ.get("DPIR_REGISTRY_LOCK")
    path = Path(value) if value else DEFAULT_LOCK_PATH
    if value and path.is_dir():
        raise DpirError(f"$DPIR_REGISTRY_LOCK={value} is a folder, not a file: point it at a JSON file "
                        f"such as {path / 'registry.lock.json'} (or unset it to use {DEFAULT_LOCK_PATH})")
    probe = blocking_file(path.parent)
    if probe is not None:
        named = f"$DPIR_REGISTRY_LOCK={value}" if value else f"the registry lock {path}"
        raise DpirError(f"{named} cannot be created: {probe} is a file, not a folder. Point "
                        f"DPIR_REGISTRY_LOCK at a file in an existing folder")
    return path


def _lock_error(path: Path, why: str) -> DpirError:
    return DpirError(f"{path} is not a valid registry lock ({why}); {LOCK_FIX.replace('FILE', str(path))}")


def read_lock() -> dict[str, dict[str, Any]]:
    path = lock_path()
    if not path.exists():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _lock_error(path, "not UTF-8 text") from None
    except OSError as e:
        raise DpirError(f"cannot read the registry lock {path} ({e.strerror or e}); fix its permissions "
                        f"or point DPIR_REGISTRY_LOCK at a readable file") from None
    if not text.strip():
        raise _lock_error(path, "the file is empty")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise _lock_error(path, f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    files = doc.get("files", {}) if isinstance(doc, dict) else None
    if not isinstance(files, dict) or not all(
            isinstance(r, dict) and isinstance(r.get("sha256"), str) and _HEX64.match(r["sha256"])
            for r in files.values()):
        raise _lock_error(path, 'expected {"files": {NAME: {"sha256": <64 hex digits>, ...}}}')
    return files


def _locked(path: Path):
    # The flock file lives in the temp dir so the (committed) folder of the lock stays clean.
    return exclusive_lock_file(temp_lock_file("registry-lock", path), f"the registry lock {path}")


def _write_lock(path: Path, files: dict[str, dict[str, Any]]) -> None:
    doc = {"about": "SHA-256 of files whose publisher gives none, recorded by `dpir fetch` on the "
                    "first verified download and enforced afterwards. Commit this file.",
           "files": dict(sorted(files.items()))}
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        os.replace(tmp, path)
    except OSError as e:
        if tmp.exists():
            tmp.unlink()
        raise DpirError(f"cannot write the registry lock {path} ({e.strerror or e}); point "
                        f"DPIR_REGISTRY_LOCK at a writable file") from None


def record_lock(entry: Entry, sha256: str, size: int, url: str) -> None:
    """Record the hash of a first verified download; never overwrite a different recorded hash."""
    path = lock_path()
    with _locked(path):
        files = read_lock()
        old = files.get(entry.name)
        if old and old.get("sha256") != sha256:
            raise DpirError(f"{path} already records sha256 {old.get('sha256')} for {entry.name!r}, "
                            f"not {sha256}; if you trust the new file run `dpir fetch --forget "
                            f"{entry.name}` first")
        files[entry.name] = {"sha256": sha256, "size": size, "url": url,
                             "recorded": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        _write_lock(path, files)


def forget_lock(entry: Entry) -> dict[str, Any] | None:
    """Drop the recorded hash of ``entry`` from the lock file; return the dropped record (or None)."""
    path = lock_path()
    with _locked(path):
        files = read_lock()
        old = files.pop(entry.name, None)
        if old is not None:
            _write_lock(path, files)
    return old


def from_lock(source: str) -> bool:
    """True if an ``expected()`` source says the hash/size came from the lock (not from a publisher)."""
    return source.startswith("recorded in ")


def expected(entry: Entry) -> tuple[str | None, int | None, str]:
    """(sha256, size, source) that a file must match: published values first, then the lock."""
    if entry.sha256:
        return entry.sha256, entry.size, "published"
    rec = read_lock().get(entry.name)
    if rec:
        return rec.get("sha256"), entry.size if entry.size is not None else rec.get("size"), \
            f"recorded in {lock_path()}"
    return None, entry.size, "unpublished"
