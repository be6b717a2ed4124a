"""Safe, bounded, idempotent extraction of zip and tar archives.

Safety: every member is checked BEFORE anything is written; an absolute name, a ``..`` component,
a drive letter, a link (tar symlink/hardlink, zip entry with a symlink mode) or a device/FIFO makes
the whole archive refused, so nothing can land outside the target folder.  Members are copied by
hand (never ``extractall``), so file modes, owners and link semantics of the archive are ignored.

Size (zip/tar bombs): what an archive may unpack to is bounded by the registry entry's
``unpacked_size`` when it declares one, otherwise by :data:`MAX_RATIO` times the archive's size and
at most :data:`MAX_BYTES` (environment overrides: $DPIR_EXTRACT_MAX_RATIO, $DPIR_EXTRACT_MAX_BYTES).
The sizes the members declare are summed before anything is written, and the bytes actually written
are counted while extracting (headers can lie); either going over refuses the archive, and the
temporary folder is removed, so nothing half-extracted is left.

Idempotence: the archive is unpacked into a hidden temporary folder beside its top-level entries,
which are then renamed into the target (replacing leftovers of an interrupted run), and only then is
the marker ``<target>/.complete-<archive name>`` written, holding the archive's SHA-256 and the
top-level entries.  Several archives may share one target folder (the DIV2K HR and LR zips unpack
side by side, and the LR x2/x3/x4 zips even share ``DIV2K_valid_LR_bicubic/``), hence one marker per
archive, and extraction is per archive: a top-level entry that another archive's marker names is
merged into file by file and never removed, so one archive never deletes another's files.  Without a
matching marker a folder is never taken as complete: it is extracted again.

:func:`check_integrity` reads a whole archive (zip CRCs, every tar member and the compressed stream's
own checksum): ``dpir fetch`` uses it to confirm a download whose length the server did not state.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from dpir.atomic import exclusive_lock_file, temp_lock_file
from dpir.errors import DpirError

MARKER_PREFIX = ".complete-"
#: unpacked bytes allowed per byte of archive when the registry declares no ``unpacked_size``
MAX_RATIO = 100.0
#: unpacked bytes allowed for any archive without a declared ``unpacked_size`` (256 GiB)
MAX_BYTES = 256 * 2**30
CHUNK = 1 << 20


def _env_number(var: str, default: float, kind: type) -> float:
    value = os.environ.get(var)
    if not value:
        return default
    try:
        n = kind(value)
    except ValueError:
        n = -1
    if n <= 0:
        raise DpirError(f"${var}={value!r} must be a positive {'integer' if kind is int else 'number'}; "
                        f"fix or unset it")
    return n


def size_limit(archive: Path, declared: int | None = None) -> tuple[int, str]:
    """(most bytes ``archive`` may unpack to, what that limit is) -- see the module docstring."""
    if declared is not None:
        return declared, "the unpacked_size its registry entry declares"
    ratio = _env_number("DPIR_EXTRACT_MAX_RATIO", MAX_RATIO, float)
    cap = int(_env_number("DPIR_EXTRACT_MAX_BYTES", MAX_BYTES, int))
    by_ratio = int(ratio * archive.stat().st_size)
    if by_ratio <= cap:
        return by_ratio, (f"{ratio:g} times the archive's size; raise $DPIR_EXTRACT_MAX_RATIO or declare "
                          f"unpacked_size in the registry if the archive is genuine")
    return cap, ("the absolute cap; raise $DPIR_EXTRACT_MAX_BYTES or declare unpacked_size in the "
                 "registry if the archive is genuine")


class _TooBig(Exception):
    pass


def marker_path(dest: Path, archive: Path) -> Path:
    return dest / f"{MARKER_PREFIX}{archive.name}"


def is_extracted(archive: Path, dest: Path, digest: str) -> bool:
    """True if ``archive`` (with SHA-256 ``digest``) was fully extracted into ``dest``."""
    try:
        rec = json.loads(marker_path(dest, archive).read_text())
    except (OSError, ValueError):
        return False
    return rec.get("sha256") == digest and all((dest / e).exists() for e in rec.get("entries", []))


def _member_parts(archive: Path, name: str) -> tuple[str, ...]:
    def refuse(why: str) -> DpirError:
        return DpirError(f"refusing to extract {archive}: member {name!r} {why}. The archive is unsafe or "
                         f"corrupt; nothing was extracted. Delete it and fetch it again")

    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        raise refuse("has an absolute path")
    parts = tuple(p for p in PurePosixPath(norm).parts if p not in ("", "."))
    if ".." in parts:
        raise refuse("escapes the target folder (..)")
    return parts


def _plan_zip(archive: Path, zf: zipfile.ZipFile) -> list[tuple[tuple[str, ...], object, bool]]:
    plan = []
    for info in zf.infolist():
        parts = _member_parts(archive, info.filename)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise DpirError(f"refusing to extract {archive}: member {info.filename!r} is a symbolic link. "
                            f"Nothing was extracted. Delete the archive and fetch it again")
        if parts:
            plan.append((parts, info, info.is_dir()))
    return plan


def _plan_tar(archive: Path, tf: tarfile.TarFile) -> list[tuple[tuple[str, ...], object, bool]]:
    plan = []
    for m in tf.getmembers():
        parts = _member_parts(archive, m.name)
        if m.issym() or m.islnk():
            raise DpirError(f"refusing to extract {archive}: member {m.name!r} is a "
                            f"{'symbolic' if m.issym() else 'hard'} link (to {m.linkname!r}). "
                            f"Nothing was extracted. Delete the archive and fetch it again")
        if not (m.isfile() or m.isdir()):
            raise DpirError(f"refusing to extract {archive}: member {m.name!r} is a device or FIFO. "
                            f"Nothing was extracted. Delete the archive and fetch it again")
        if parts:
            plan.append((parts, m, m.isdir()))
    return plan


def _declared_size(member: object) -> int:
    return member.file_size if isinstance(member, zipfile.ZipInfo) else member.size


def _open_archive(archive: Path, kind: str):
    try:
        if kind == "zip":
            return zipfile.ZipFile(archive)
        if kind == "tar":
            return tarfile.open(archive, "r:*")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DpirError(f"{archive} is not a readable {kind} archive ({e}); delete it and fetch it "
                        f"again") from None
    raise DpirError(f"unknown archive type {kind!r} for {archive}; use zip or tar")


_READ_ERRORS = (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error)


def check_integrity(archive: Path, kind: str) -> str | None:
    """Read all of ``archive``; None if it is whole, else what is wrong (one line).

    zip: every member's CRC (``ZipFile.testzip``); the central directory sits at the end, so a cut
    file does not even open.  tar: every member is read, then the rest of the (compressed) stream,
    so gzip/bz2/xz verify their own checksums, and the end-of-archive blocks must be there.
    """
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                bad = zf.testzip()
            return None if bad is None else f"member {bad!r} fails its CRC check"
        if kind != "tar":
            return f"unknown archive type {kind!r}"
        with tarfile.open(archive, "r:*") as tf:
            for m in tf:
                if m.isfile():
                    fh = tf.extractfile(m)
                    while fh.read(CHUNK):
                        pass
            tf.fileobj.seek(tf.offset)
            end = tf.fileobj.read(2 * tarfile.BLOCKSIZE)
            while tf.fileobj.read(CHUNK):
                pass
        if end != b"\0" * (2 * tarfile.BLOCKSIZE):
            return "the end-of-archive blocks are missing (the file is cut short)"
        return None
    except _READ_ERRORS as e:
        return f"{type(e).__name__}: {e}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _copy_bounded(src, fh, budget: int) -> int:
    """Copy ``src`` to ``fh``; raise :class:`_TooBig` as soon as more than ``budget`` bytes come."""
    n = 0
    while block := src.read(min(CHUNK, budget - n + 1)):
        n += len(block)
        if n > budget:
            raise _TooBig
        fh.write(block)
    return n


def _dest_lock(dest: Path):
    """One archive at a time moves its files into ``dest`` (the flock file lives in the temp dir)."""
    return exclusive_lock_file(temp_lock_file("extract", dest), f"the extraction into {dest}")


def _claimed_by_others(dest: Path, archive: Path) -> set[str]:
    """Top-level entries of ``dest`` that the marker of another archive names."""
    claimed: set[str] = set()
    own = marker_path(dest, archive).name
    for m in dest.glob(f"{MARKER_PREFIX}*"):
        if m.name == own or re.search(r"\.tmp\d+$", m.name):
            continue            # our own marker, or another one being written
        try:
            rec = json.loads(m.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and isinstance(rec.get("entries"), list):
            claimed.update(e for e in rec["entries"] if isinstance(e, str))
    return claimed


def _merge(archive: Path, src: Path, dst: Path, dest: Path) -> None:
    """Move ``src`` onto ``dst`` file by file; nothing already at ``dst`` is removed."""
    if not (dst.exists() or dst.is_symlink()):
        os.replace(src, dst)
    elif src.is_dir() and dst.is_dir() and not dst.is_symlink():
        for child in sorted(src.iterdir()):
            _merge(archive, child, dst / child.name, dest)
    elif not src.is_dir() and not dst.is_dir():
        os.replace(src, dst)        # the same file in two archives: the later one's copy
    else:
        what = "folder" if dst.is_dir() else "file"
        raise DpirError(f"cannot extract {archive} into {dest}: {dst.relative_to(dest)} is a {what} there, "
                        f"from another archive extracted into the same folder, but not in this archive; "
                        f"give the registry entries different extract_to folders")


def _install(archive: Path, dest: Path, tmp: Path, top: list[str]) -> None:
    """Rename the extracted top-level entries into ``dest``, never removing another archive's files."""
    marker = marker_path(dest, archive)
    if marker.exists():
        marker.unlink()             # from here on, this archive is not "extracted" until the end
    claimed = _claimed_by_others(dest, archive)
    for name in top:
        src, dst = tmp / name, dest / name
        if name in claimed and (dst.exists() or dst.is_symlink()):
            _merge(archive, src, dst, dest)
        else:
            _remove(dst)            # leftovers of an interrupted run of this archive
            os.replace(src, dst)


def extract(archive: Path, dest: Path, *, digest: str, kind: str, max_bytes: int | None = None) -> Path:
    """Extract ``archive`` into ``dest`` once; return ``dest``.  See the module docstring.

    ``max_bytes`` is the registry entry's ``unpacked_size`` (None: the ratio limit and cap apply).
    """
    archive, dest = Path(archive), Path(dest)
    if is_extracted(archive, dest, digest):
        return dest
    with _open_archive(archive, kind) as ar:
        limit, why = size_limit(archive, max_bytes)
        try:
            plan = _plan_zip(archive, ar) if kind == "zip" else _plan_tar(archive, ar)
        except _READ_ERRORS as e:
            raise DpirError(f"{archive} could not be read ({type(e).__name__}: {e}); delete it and fetch "
                            f"it again") from None
        declared = sum(_declared_size(m) for _, m, is_dir in plan if not is_dir)
        if declared > limit:
            raise DpirError(f"refusing to extract {archive}: its members declare {declared} bytes unpacked, "
                            f"more than the limit of {limit} ({why}). Nothing was extracted")
        created = not dest.exists()
        dest.mkdir(parents=True, exist_ok=True)
        for stale in dest.glob(f".extract-{glob.escape(archive.name)}.tmp*"):
            _remove(stale)          # a killed earlier run (we hold the archive's lock)
        tmp = dest / f".extract-{archive.name}.tmp{os.getpid()}"
        tmp.mkdir()
        done = False
        try:
            root = tmp.resolve()
            written = 0
            for parts, member, is_dir in plan:
                out = tmp.joinpath(*parts)
                # Defence in depth: the checked name must still resolve inside the temporary folder.
                if root not in out.resolve().parents and out.resolve() != root:
                    raise DpirError(f"refusing to extract {archive}: member {'/'.join(parts)!r} escapes "
                                    f"the target folder")
                if is_dir:
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                src = ar.open(member) if kind == "zip" else ar.extractfile(member)
                with src, open(out, "wb") as fh:
                    written += _copy_bounded(src, fh, limit - written)
            top = sorted(p.name for p in tmp.iterdir())
            with _dest_lock(dest):
                _install(archive, dest, tmp, top)
                marker = marker_path(dest, archive)
                tmp_marker = marker.with_name(marker.name + f".tmp{os.getpid()}")
                tmp_marker.write_text(json.dumps({"archive": archive.name, "sha256": digest,
                                                  "entries": top}))
                os.replace(tmp_marker, marker)
            done = True
        except _TooBig:
            raise DpirError(f"refusing to extract {archive}: it unpacks to more than the limit of {limit} "
                            f"bytes ({why}) although its members declare {declared}. Nothing was "
                            f"extracted") from None
        except _READ_ERRORS as e:
            raise DpirError(f"{archive} could not be extracted ({type(e).__name__}: {e}); delete it and "
                            f"fetch it again") from None
        finally:
            _remove(tmp)
            if created and not done:
                try:
                    dest.rmdir()
                except OSError:
                    pass
    return dest
