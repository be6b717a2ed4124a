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
commit that file so every machine of a project checks the same bytes.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from dpir.errors import DpirError, UnknownNameError

HERE = Path(__file__).resolve().parent
# Module attributes (not constants baked into functions) so tests can point them at fixtures.
REGISTRY_PATH = HERE / "registry.json"
DEFAULT_LOCK_PATH = HERE / "registry.lock.json"

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


def root_dir(root: str) -> Path:
    """The directory a ``{root}`` placeholder stands for, read from the environment at call time."""
    env = os.environ
    if root == "data":
        return Path(env.get("DPIR_DATA") or Path.cwd() / "data" / "downloads")
    if root == "weights":
        return Path(env.get("DPIR_WEIGHTS") or Path.cwd() / "data" / "weights")
    cache = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    if root == "torch_hub":
        # Same rule as torch.hub.get_dir() (without importing torch): $TORCH_HOME/hub.
        return Path(env.get("TORCH_HOME") or cache / "torch") / "hub"
    if root == "hf_hub":
        if env.get("HF_HUB_CACHE"):
            return Path(env["HF_HUB_CACHE"])
        return Path(env.get("HF_HOME") or cache / "huggingface") / "hub"
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
    sha = raw.get("sha256")
    if sha is not None and not _HEX64.match(sha):
        raise DpirError(f"{where}: sha256 must be 64 lower-case hex digits or null (got {sha!r})")
    size = raw.get("size")
    if size is not None and (not isinstance(size, int) or size < 0):
        raise DpirError(f"{where}: size must be a non-negative integer or null (got {size!r})")
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
    return Entry(**kwargs, extra={k: v for k, v in raw.items() if k not in known})


def entries() -> dict[str, Entry]:
    """All registry entries by name, read from :data:`REGISTRY_PATH` (validated on every read)."""
    try:
        doc = json.loads(Path(REGISTRY_PATH).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DpirError(f"cannot read the download registry {REGISTRY_PATH}: {e}") from None
    out: dict[str, Entry] = {}
    for raw in doc.get("entries", []):
        e = _entry(raw, Path(REGISTRY_PATH))
        if e.name in out:
            raise DpirError(f"{REGISTRY_PATH}: entry {e.name!r} is listed twice")
        out[e.name] = e
    return out


def get(name: str) -> Entry:
    table = entries()
    if name not in table:
        raise UnknownNameError("download", name, table)
    return table[name]


# ---------------------------------------------------------------------------------------------
# Lock file: hashes recorded on first verified download of files without a published checksum.

def lock_path() -> Path:
    return Path(os.environ.get("DPIR_REGISTRY_LOCK") or DEFAULT_LOCK_PATH)


def read_lock() -> dict[str, dict[str, Any]]:
    path = lock_path()
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DpirError(f"{path} is not valid JSON ({e}); restore it from version control") from None
    return doc.get("files", {})


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    # The flock file lives in the temp dir so the (committed) folder of the lock stays clean.
    path.parent.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"dpir-registry-lock-{key}.flock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def record_lock(entry: Entry, sha256: str, size: int, url: str) -> None:
    """Record the hash of a first verified download; never overwrite a different recorded hash."""
    path = lock_path()
    with _locked(path):
        files = read_lock()
        old = files.get(entry.name)
        if old and old.get("sha256") != sha256:
            raise DpirError(f"{path} already records sha256 {old.get('sha256')} for {entry.name!r}, "
                            f"not {sha256}; delete that record only if you trust the new file")
        files[entry.name] = {"sha256": sha256, "size": size, "url": url,
                             "recorded": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        doc = {"about": "SHA-256 of files whose publisher gives none, recorded by `dpir fetch` on the "
                        "first verified download and enforced afterwards. Commit this file.",
               "files": dict(sorted(files.items()))}
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        os.replace(tmp, path)


def expected(entry: Entry) -> tuple[str | None, int | None, str]:
    """(sha256, size, source) that a file must match: published values first, then the lock."""
    if entry.sha256:
        return entry.sha256, entry.size, "published"
    rec = read_lock().get(entry.name)
    if rec:
        return rec.get("sha256"), entry.size if entry.size is not None else rec.get("size"), \
            f"recorded in {lock_path()}"
    return None, entry.size, "unpublished"
