"""Paper-scale datasets and official weights: download, verify, unpack.

``fetch(name)`` makes one registry entry (see ``registry.json``) present and verified, and returns
the folder it was unpacked to (archives) or the file (weights).  Nothing is fetched implicitly: every
other stage only reads files, so an offline cluster pre-stages them under $DPIR_DATA / $DPIR_WEIGHTS
/ $TORCH_HOME / $HF_HUB_CACHE and ``fetch`` then verifies them without any network access.

    >>> from dpir import fetch
    >>> fetch.list_names()                      # every name
    >>> fetch.fetch("div2k_valid_hr")           # -> Path('data/downloads/div2k')
    >>> print(fetch.format_status_table(fetch.status()))
"""
from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dpir.errors import DpirError
from dpir.fetch import archive as _archive
from dpir.fetch import download as _download
from dpir.fetch import registry as _registry
from dpir.fetch.registry import Entry

__all__ = ["Entry", "fetch", "format_status_table", "list_names", "status"]

STATES = ("present", "missing", "corrupt", "partial")


def list_names(kind: str | None = None) -> list[str]:
    """Registry names, sorted; ``kind`` ("dataset" or "weights") filters."""
    if kind is not None and kind not in _registry.KINDS:
        raise DpirError(f"unknown kind {kind!r}; use one of {', '.join(_registry.KINDS)}")
    return sorted(n for n, e in _registry.entries().items() if kind is None or e.kind == kind)


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """One process at a time per target (parallel Snakemake jobs may ask for the same file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _sources(entry: Entry) -> tuple[list[str], set[str]]:
    urls = list(entry.urls)
    drive: set[str] = set()
    if entry.gdrive_id:
        u = _download.gdrive_url(entry.gdrive_id)
        urls.insert(0, u)
        drive.add(u)
    return urls, drive


def _verify_new(entry: Entry, part: Path, sha256: str | None, size: int | None, source: str) -> str:
    """Check a finished ``.part``: truncation keeps it (resumable), anything else deletes it."""
    got = part.stat().st_size
    if size is not None and got < size:
        raise DpirError(f"download of {entry.path.name} stopped at {got} of {size} bytes; the partial file "
                        f"{part} is kept: run `dpir fetch {entry.name}` again to resume")
    if size is not None and got != size:
        _download.discard_part(part)
        raise DpirError(f"downloaded {entry.path.name} has {got} bytes but {size} were expected; the file "
                        f"was deleted. The upstream file changed or the URL is wrong")
    actual = _download.sha256_file(part)
    if sha256 is not None and actual != sha256:
        _download.discard_part(part)
        raise DpirError(f"checksum mismatch for {entry.path.name} ({entry.name}): expected sha256 {sha256} "
                        f"({source}), got {actual}; the bad file was deleted. Run `dpir fetch {entry.name}` "
                        f"to retry")
    if entry.sha256_prefix and not actual.startswith(entry.sha256_prefix):
        _download.discard_part(part)
        raise DpirError(f"checksum mismatch for {entry.path.name} ({entry.name}): expected a sha256 "
                        f"starting with {entry.sha256_prefix} (from its published file name), got {actual}; "
                        f"the bad file was deleted")
    return actual


def _finish(entry: Entry, digest: str) -> Path:
    if entry.hf_ref:
        # timm/huggingface_hub resolve a branch through refs/<branch> -> snapshots/<name>/<file>.
        ref = _registry.resolve(entry.hf_ref)
        snapshot = entry.path.parent.name
        if not ref.exists() or ref.read_text() != snapshot:
            ref.parent.mkdir(parents=True, exist_ok=True)
            ref.write_text(snapshot)
    if entry.archive:
        return _archive.extract(entry.path, entry.extract_dir, digest=digest, kind=entry.archive)
    return entry.path


def fetch(name: str, *, force: bool = False, progress: bool = True) -> Path:
    """Make registry entry ``name`` present, verified (and unpacked); return its folder or file.

    A file already at the target (downloaded before, or pre-staged by hand) is verified against the
    published or recorded SHA-256 and never downloaded again.  ``force`` deletes it and downloads
    anew.  Files without a published checksum get theirs recorded in the lock file on first success.
    """
    entry = _registry.get(name)
    path = entry.path
    with _file_lock(path):
        sha256, size, source = _registry.expected(entry)
        if force:
            _download.discard_part(_download.part_path(path))
            if path.exists():
                path.unlink()
        if path.exists():
            digest = _download.check_file(path, name, sha256, size, entry.sha256_prefix, source)
        else:
            urls, drive = _sources(entry)
            url = _download.download(urls, path, name=name, size=size, progress=progress, drive=drive,
                                     checked=sha256 is not None or entry.sha256_prefix is not None)
            part = _download.part_path(path)
            digest = _verify_new(entry, part, sha256, size, source)
            os.replace(part, path)
            _download.discard_part(part)
            _download.write_stamp(path, digest)
            if sha256 is None:
                _registry.record_lock(entry, digest, path.stat().st_size, url)
            return _finish(entry, digest)
        if sha256 is None:
            # A pre-staged file of an entry without any known hash: its hash becomes the reference.
            _registry.record_lock(entry, digest, path.stat().st_size, f"pre-staged at {path}")
        return _finish(entry, digest)


def _state(entry: Entry) -> tuple[str, int | None, str]:
    path = entry.path
    part = _download.part_path(path)
    sha256, size, _ = _registry.expected(entry)
    if not path.exists():
        if part.exists():
            return "partial", part.stat().st_size, f"{part.stat().st_size} bytes downloaded"
        return "missing", None, ""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        return "corrupt", actual_size, f"size {actual_size} != {size}"
    digest = _download.file_sha256(path)
    if sha256 is not None and digest != sha256:
        return "corrupt", actual_size, f"sha256 {digest[:12]}... != {sha256[:12]}..."
    if entry.sha256_prefix and not digest.startswith(entry.sha256_prefix):
        return "corrupt", actual_size, f"sha256 does not start with {entry.sha256_prefix}"
    note = "" if sha256 else "hash not yet recorded"
    if entry.archive:
        done = _archive.is_extracted(path, entry.extract_dir, digest)
        note = ", ".join(x for x in (note, "extracted" if done else "not extracted") if x)
    return "present", actual_size, note


def status(names: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """One row per entry: name, kind, path, state (present/missing/corrupt/partial), size, note.

    ``size`` is the bytes on disk (of the ``.part`` for a partial download), None when missing.
    Verifying a large file hashes it once; the result is cached beside it until the file changes.
    """
    table = _registry.entries()
    rows = []
    for name in (sorted(table) if names is None else names):
        if name not in table:
            from dpir.errors import UnknownNameError
            raise UnknownNameError("download", name, table)
        e = table[name]
        state, size, note = _state(e)
        rows.append({"name": name, "kind": e.kind, "path": str(e.path), "state": state, "size": size,
                     "expected_size": _registry.expected(e)[1], "note": note})
    return rows


def _human(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def format_status_table(rows: list[dict[str, Any]]) -> str:
    """A plain aligned text table of :func:`status` rows (for the terminal)."""
    header = ("name", "kind", "state", "size", "path", "note")
    body = [(r["name"], r["kind"], r["state"], _human(r.get("size")), r["path"], r.get("note", ""))
            for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip() for line in (header, *body)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
