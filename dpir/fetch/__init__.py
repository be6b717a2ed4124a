"""Paper-scale datasets and official weights: download, verify, unpack.

``fetch(name)`` makes one registry entry (see ``registry.json``) present and verified, and returns
the folder it was unpacked to (archives) or the file (weights).  Nothing is fetched implicitly: every
other stage only reads files, so an offline cluster pre-stages them under $DPIR_DATA / $DPIR_WEIGHTS
/ $TORCH_HOME / $HF_HUB_CACHE and ``fetch`` then verifies them without any network access.

    >>> from dpir import fetch
    >>> fetch.list_names()                      # every name
    >>> fetch.fetch("div2k_valid_hr")           # -> Path('data/downloads/div2k')
    >>> print(fetch.format_status_table(fetch.status()))

``fetch(name, force=True)`` downloads beside the file (``<file>.part``) and replaces it only once the
new bytes are verified, so a failed download leaves a good file in place.  For an entry without a
published hash, the hash of a download is recorded in the lock only when its length was confirmed
(see :mod:`dpir.fetch.download`); ``forget(name)`` (``dpir fetch --forget NAME``) drops a recorded
hash and the local verification stamp.

$DPIR_MIRROR (a base URL) redirects every download to a mirror laid out as ``<mirror>/<host>/<path>``
(see :mod:`dpir.fetch.download`); an entry with ``member`` (see :mod:`dpir.fetch.registry`) returns
the one file it picks out of a downloaded archive, or the download itself when that is a bare file.
"""
from __future__ import annotations

import fcntl
import logging
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

__all__ = ["Entry", "fetch", "forget", "format_status_table", "list_names", "status"]

log = logging.getLogger(__name__)

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


def _sources(entry: Entry) -> tuple[list[str], set[str], str | None]:
    """(URLs to try in order, those that are Google Drive endpoints, the $DPIR_MIRROR base or None)."""
    mirror = _download.mirror_base()
    if mirror is not None:
        # only the mirror is contacted: a proxied or offline machine must not wait on the real hosts
        urls = [_download.gdrive_mirror_url(mirror, entry.gdrive_id)] if entry.gdrive_id else []
        urls += [_download.mirror_url(mirror, u) for u in entry.urls]
        return list(dict.fromkeys(urls)), set(), mirror
    urls = list(entry.urls)
    drive: set[str] = set()
    if entry.gdrive_id:
        u = _download.gdrive_url(entry.gdrive_id)
        urls.insert(0, u)
        drive.add(u)
    return urls, drive, None


def _archive_kind(entry: Entry, path: Path) -> str | None:
    """How ``path`` (the download or its ``.part``) is unpacked: the entry's ``archive``, or for an
    entry with ``member`` the kind of container it turned out to be (None: a bare file)."""
    if entry.archive:
        return entry.archive
    return _archive.container_kind(path) if entry.member else None


def _member_dir(entry: Entry) -> Path:
    return entry.extract_dir or entry.path.parent


def _verify_new(entry: Entry, part: Path, sha256: str | None, size: int | None, source: str,
                cmd: str) -> str:
    """Check a finished ``.part``: truncation keeps it (resumable), anything else deletes it."""
    got = part.stat().st_size
    hint = _download.forget_hint(entry.name, source)
    if size is not None and got < size:
        raise DpirError(f"download of {entry.path.name} stopped at {got} of {size} bytes; the partial file "
                        f"{part} is kept: run `{cmd}` again to resume")
    if size is not None and got != size:
        _download.discard_part(part)
        raise DpirError(f"downloaded {entry.path.name} has {got} bytes but {size} were expected ({source}); "
                        f"the download was deleted. The upstream file changed or the URL is wrong{hint}")
    actual = _download.sha256_file(part)
    if sha256 is not None and actual != sha256:
        _download.discard_part(part)
        raise DpirError(f"checksum mismatch for {entry.path.name} ({entry.name}): expected sha256 {sha256} "
                        f"({source}), got {actual}; the bad download was deleted. Run `{cmd}` "
                        f"to retry{hint}")
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
        return _archive.extract(entry.path, entry.extract_dir, digest=digest, kind=entry.archive,
                                max_bytes=entry.unpacked_size)
    if entry.member:
        kind = _archive.container_kind(entry.path)
        if kind is None:
            log.info("%s: %s is a single file, not an archive: used as it is", entry.name, entry.path)
            return entry.path
        return _archive.extract_member(entry.path, _member_dir(entry), entry.member, digest=digest,
                                       kind=kind, entry=entry.name, registry=str(_registry.REGISTRY_PATH),
                                       max_bytes=entry.unpacked_size)
    return entry.path


def _not_recorded(entry: Entry, path: Path, digest: str, why: str) -> None:
    log.warning("%s (%s): %s, so its sha256 %s is NOT recorded in %s (a cut-short transfer must never "
                "become the reference). The file is kept. If you have checked it, run `dpir fetch --forget "
                "%s` and then `dpir fetch %s` to record it; else `dpir fetch --force %s` downloads it again",
                path.name, entry.name, why, digest, _registry.lock_path(), entry.name, entry.name,
                entry.name)


def _download_new(entry: Entry, sha256: str | None, size: int | None, source: str, *,
                  progress: bool) -> tuple[str, bool]:
    """Download, verify and rename onto the target; (sha256, length confirmed).

    The target is replaced only after the new bytes are verified: a file already there (``force``)
    stays in place when the download fails; a ``.part`` left by an earlier attempt is resumed (the
    download never splices two upstream versions, see :func:`dpir.fetch.download.download`).
    """
    path = entry.path
    part = _download.part_path(path)
    had = path.exists()
    cmd = f"dpir fetch {'--force ' if had else ''}{entry.name}"
    urls, drive, mirror = _sources(entry)
    try:
        got = _download.download(urls, path, name=entry.name, size=size, progress=progress, drive=drive,
                                 checked=sha256 is not None or entry.sha256_prefix is not None,
                                 hint=_download.forget_hint(entry.name, source), command=cmd,
                                 mirror=mirror)
        digest = _verify_new(entry, part, sha256, size, source, cmd)
        confirmed = got.length_confirmed
        kind = _archive_kind(entry, part) if sha256 is None and not confirmed else None
        if kind is not None:
            # No stated length: an archive that reads whole (CRCs, end blocks) was not cut short.
            why = _archive.check_integrity(part, kind)
            if why is not None:
                log.warning("%s (%s): the archive fails its integrity check (%s)", path.name, entry.name,
                            why)
            confirmed = why is None
    except DpirError as e:
        if had:
            raise DpirError(f"{e} (the existing {path} was left as it was)") from None
        raise
    os.replace(part, path)
    _download.discard_part(part)
    _download.write_stamp(path, digest, unconfirmed=sha256 is None and not confirmed)
    if sha256 is None:
        if confirmed:
            _registry.record_lock(entry, digest, path.stat().st_size, got.url)
        else:
            _not_recorded(entry, path, digest, f"{got.url} did not state the file's length")
    return digest, confirmed


def fetch(name: str, *, force: bool = False, progress: bool = True) -> Path:
    """Make registry entry ``name`` present, verified (and unpacked); return its folder or file.

    A file already at the target (downloaded before, or pre-staged by hand) is verified against the
    published or recorded SHA-256 and never downloaded again.  ``force`` downloads anew and replaces
    the file only once the new one is verified.  Files without a published checksum get theirs
    recorded in the lock file on the first download whose length was confirmed.  For an entry with
    ``member`` the returned file is the one taken out of the downloaded archive (or the download
    itself when it is a single file).
    """
    entry = _registry.get(name)
    path = entry.path
    with _file_lock(path):
        sha256, size, source = _registry.expected(entry)
        if force or not path.exists():
            digest, _ = _download_new(entry, sha256, size, source, progress=progress)
            return _finish(entry, digest)
        digest = _download.check_file(path, entry.name, sha256, size, entry.sha256_prefix, source)
        if sha256 is None:
            # A pre-staged file of an entry without any known hash: its hash becomes the reference,
            # unless it is our own download of unconfirmed length or an archive that is not whole.
            why = None
            if _download.stamped_unconfirmed(path):
                why = "it was downloaded without a stated length"
            elif (kind := _archive_kind(entry, path)) is not None:
                bad = _archive.check_integrity(path, kind)
                why = None if bad is None else f"the archive fails its integrity check ({bad})"
            if why is None:
                _registry.record_lock(entry, digest, path.stat().st_size, f"pre-staged at {path}")
            else:
                _not_recorded(entry, path, digest, why)
        return _finish(entry, digest)


def forget(name: str) -> dict[str, Any] | None:
    """Drop the hash recorded for ``name`` in the lock file and its local verification stamp.

    Returns the dropped lock record, or None if there was none.  The file itself is kept: the next
    ``fetch(name)`` records it anew (as pre-staged), ``fetch(name, force=True)`` downloads it again.
    """
    entry = _registry.get(name)
    path = entry.path
    if not path.parent.is_dir():
        return _registry.forget_lock(entry)
    with _file_lock(path):
        rec = _registry.forget_lock(entry)
        _download.remove_stamp(path)
    return rec


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
    note = "" if sha256 else ("hash not recorded (download of unconfirmed length)"
                              if _download.stamped_unconfirmed(path) else "hash not yet recorded")
    if entry.archive:
        done = _archive.is_extracted(path, entry.extract_dir, digest)
        note = ", ".join(x for x in (note, "extracted" if done else "not extracted") if x)
    elif entry.member:
        note = ", ".join(x for x in (note, _member_note(entry, path, digest)) if x)
    return "present", actual_size, note


def _member_note(entry: Entry, path: Path, digest: str) -> str:
    """What became of the member of a container entry: which file, its size and SHA-256."""
    done = _archive.member_extracted(path, _member_dir(entry), digest)
    if done is not None:
        rec = _archive.member_record(path, _member_dir(entry)) or {}
        return (f"member {rec.get('member')} extracted to {done.name} ({done.stat().st_size} bytes, "
                f"sha256 {str(rec.get('member_sha256'))[:12]}...)")
    if _archive.container_kind(path) is None:
        return "a single file, used as it is"
    return "member not extracted"


def status(names: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """One row per entry: name, kind, path, state (present/missing/corrupt/partial), size, note.

    ``size`` is the bytes on disk (of the ``.part`` for a partial download), None when missing.
    Verifying a large file hashes it once; the result is cached beside it until the file changes.
    """
    table = _registry.entries()
    rows = []
    alias = _registry.aliases(table)
    for name in (sorted(table) if names is None else names):
        if name not in table and name not in alias:
            from dpir.errors import UnknownNameError
            raise UnknownNameError("download", name, [*table, *alias])
        e = table[alias.get(name, name)]
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
