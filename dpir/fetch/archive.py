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

Idempotence: the archive is unpacked into a hidden temporary folder inside the target, its files are
then renamed into place one by one, and only then is the marker ``<target>/.complete-<archive name>``
written: the archive's SHA-256 and a manifest of every file it produced (relative path -> bytes).
The marker describes exactly that archive's files, because several archives may share one target
folder (the DIV2K HR and LR zips unpack side by side, and the LR x2/x3/x4 zips even share
``DIV2K_valid_LR_bicubic/``).  Hence:

- an archive counts as extracted only while its marker's hash matches and every file of its manifest
  is there with its recorded size: a deleted or truncated file (a partial or corrupted extraction)
  makes it "not extracted", and the next ``fetch`` extracts it again;
- extracting never removes a file that the archive does not produce, except the files that the same
  archive's previous marker lists and the new one does not (an upstream update).  Another archive's
  files, a user's files and a lost marker's files all stay; a file that another archive's manifest
  lists with the same size is left as it is, one with another size, or a file where a folder must go,
  is an error naming both archives (their registry entries then need different ``extract_to``);
- a marker of the pre-manifest format (top-level entries only) is not trusted as it is: ``extract``
  checks the files the archive lists (names and sizes from its headers, nothing unpacked) and writes
  the manifest when all are there, else extracts the archive again, which rewrites only its own files.

:func:`extract_member` takes ONE file out of an archive, chosen by a glob of its registry entry's
``member`` (a release bundle of several checkpoints, such as BSRT's Google Drive file), and
:func:`container_kind` tells such a bundle from a bare checkpoint (a torch checkpoint is a zip too).

:func:`check_integrity` reads a whole archive (zip CRCs, every tar member and the compressed stream's
own checksum): ``dpir fetch`` uses it to confirm a download whose length the server did not state.
"""
from __future__ import annotations

import fnmatch
import glob
import hashlib
import json
import logging
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

log = logging.getLogger(__name__)

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


def _read_marker(path: Path) -> dict | None:
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def _manifest(rec: dict | None) -> dict[str, int] | None:
    """The ``files`` manifest of a marker record (relative path -> bytes), None if it has none."""
    files = rec.get("files") if rec else None
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, int)
                                              for k, v in files.items()):
        return None
    return files


def _missing(dest: Path, files: dict[str, int]) -> str | None:
    """The first file of a manifest that is absent or has another size in ``dest`` (None: all there)."""
    for rel, size in files.items():
        try:
            st = (dest / rel).lstat()
        except OSError:
            return rel
        if not stat.S_ISREG(st.st_mode) or st.st_size != size:
            return rel
    return None


def is_extracted(archive: Path, dest: Path, digest: str) -> bool:
    """True if ``archive`` (with SHA-256 ``digest``) was fully extracted into ``dest``: its marker
    matches and every file of its manifest is there with its recorded size."""
    rec = _read_marker(marker_path(dest, archive))
    files = _manifest(rec)
    return files is not None and rec.get("sha256") == digest and _missing(dest, files) is None


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


def _write_marker(dest: Path, archive: Path, rec: dict) -> None:
    marker = marker_path(dest, archive)
    tmp_marker = marker.with_name(marker.name + f".tmp{os.getpid()}")
    tmp_marker.write_text(json.dumps(rec))
    os.replace(tmp_marker, marker)


def _others(dest: Path, archive: Path) -> dict[str, tuple[int, str]]:
    """Every file another archive's marker in ``dest`` lists: relative path -> (bytes, archive name)."""
    owned: dict[str, tuple[int, str]] = {}
    own = marker_path(dest, archive).name
    for m in dest.glob(f"{MARKER_PREFIX}*"):
        if m.name == own or re.search(r"\.tmp\d+$", m.name):
            continue            # our own marker, or another one being written
        rec = _read_marker(m)
        for rel, size in (_manifest(rec) or {}).items():
            owned.setdefault(rel, (size, str(rec.get("archive") or m.name.removeprefix(MARKER_PREFIX))))
    return owned


def _conflict(archive: Path, dest: Path, rel: str, what: str, owned: dict[str, tuple[int, str]],
              why: str = "") -> DpirError:
    other = owned.get(rel) or next((v for k, v in owned.items() if k.startswith(rel + "/")), None)
    if other is not None:
        return DpirError(f"cannot extract {archive} into {dest}: {rel} is {what} there that archive "
                         f"{other[1]} (extracted into the same folder) holds{why}; give their registry "
                         f"entries different extract_to folders. Nothing was changed")
    return DpirError(f"cannot extract {archive} into {dest}: {rel} is {what} there that this archive "
                     f"does not produce; move it away and run `dpir fetch` again. Nothing was changed")


def _check_paths(archive: Path, dest: Path, files: dict[str, int], dirs: set[str],
                 owned: dict[str, tuple[int, str]]) -> None:
    """Refuse, before anything moves, where this archive's files or folders cannot go."""
    for rel in sorted(dirs):
        p = dest / rel
        if p.is_symlink() or (p.exists() and not p.is_dir()):
            raise _conflict(archive, dest, rel, "a file (or link) where it has a folder", owned)
    for rel, size in files.items():
        p = dest / rel
        if p.is_symlink() or p.is_dir():
            raise _conflict(archive, dest, rel, "a folder (or link) where it has a file", owned)
        other = owned.get(rel)
        if other is not None and other[0] != size:
            raise _conflict(archive, dest, rel, f"a file of {other[0]} bytes", owned,
                            f", while this archive's copy has {size} bytes")


def _install(archive: Path, dest: Path, tmp: Path, files: dict[str, int], dirs: set[str]) -> None:
    """Move the extracted files into ``dest`` one by one (see the module docstring): nothing that this
    archive does not produce is removed, except what its own previous marker listed and it no longer has."""
    marker = marker_path(dest, archive)
    previous = _manifest(_read_marker(marker)) or {}
    owned = _others(dest, archive)
    _check_paths(archive, dest, files, dirs, owned)
    if marker.exists():
        marker.unlink()             # from here on, this archive is not "extracted" until the end
    for rel in sorted(dirs):
        (dest / rel).mkdir(parents=True, exist_ok=True)
    for rel, size in files.items():
        dst = dest / rel
        other = owned.get(rel)
        if other is not None and dst.is_file() and dst.stat().st_size == size:
            continue                # the same file, already there from the other archive: leave it
        os.replace(tmp / rel, dst)
    for rel in sorted(set(previous) - set(files) - set(owned)):
        stale = dest / rel          # dropped from this archive since it was last extracted
        if stale.is_file() and not stale.is_symlink():
            stale.unlink()
            _prune_empty(stale.parent, dest)


def _prune_empty(folder: Path, dest: Path) -> None:
    """Remove ``folder`` and its parents below ``dest`` while they are empty."""
    while folder != dest and dest in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def _upgrade_old_marker(archive: Path, dest: Path, digest: str, plan: list) -> bool:
    """A pre-manifest marker of this very archive whose files are all there (as its headers list them):
    write the manifest instead of extracting again (a 20 GB dataset need not be unpacked anew)."""
    rec = _read_marker(marker_path(dest, archive))
    if rec is None or _manifest(rec) is not None or rec.get("sha256") != digest:
        return False
    files = {"/".join(parts): _declared_size(m) for parts, m, is_dir in plan if not is_dir}
    if _missing(dest, files) is not None:
        return False
    with _dest_lock(dest):
        _write_marker(dest, archive, {**rec, "files": dict(sorted(files.items()))})
    return True


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
        if _upgrade_old_marker(archive, dest, digest, plan):
            return dest
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
            files: dict[str, int] = {}
            dirs: set[str] = set()
            for parts, member, is_dir in plan:
                out = tmp.joinpath(*parts)
                # Defence in depth: the checked name must still resolve inside the temporary folder.
                if root not in out.resolve().parents and out.resolve() != root:
                    raise DpirError(f"refusing to extract {archive}: member {'/'.join(parts)!r} escapes "
                                    f"the target folder")
                rel = "/".join(parts)
                if is_dir:
                    out.mkdir(parents=True, exist_ok=True)
                    dirs.add(rel)
                    continue
                if out.is_dir():
                    raise DpirError(f"{archive} holds both a folder and a file named {rel!r}; it is "
                                    f"corrupt: delete it and fetch it again")
                out.parent.mkdir(parents=True, exist_ok=True)
                src = ar.open(member) if kind == "zip" else ar.extractfile(member)
                with src, open(out, "wb") as fh:
                    n = _copy_bounded(src, fh, limit - written)
                written += n
                files[rel] = n          # what was written, not what the header says
                dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
            with _dest_lock(dest):
                _install(archive, dest, tmp, files, dirs)
                _write_marker(dest, archive, {"archive": archive.name, "sha256": digest,
                                              "entries": sorted({r.split("/")[0] for r in (*files, *dirs)}),
                                              "files": dict(sorted(files.items()))})
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


# --------------------------------------------------------------------------------------------
# One member out of a release bundle

#: names a bare torch checkpoint holds: the zip format (torch >= 1.6) has ``<stem>/data.pkl``, the
#: legacy tar format (torch < 0.4) exactly these members
_TORCH_ZIP = re.compile(r"^[^/]+/data\.pkl$")
_TORCH_TAR = {"sys_info", "pickle", "storages", "tensors"}


def container_kind(path: Path) -> str | None:
    """``"zip"`` or ``"tar"`` if ``path`` is an archive of files, None if it is one file (a torch
    checkpoint, which is a zip or a tar itself, a pickle, a safetensors file, anything else)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
            return None if any(_TORCH_ZIP.match(n) for n in names) else "zip"
        if tarfile.is_tarfile(path):
            with tarfile.open(path, "r:*") as tf:
                names = tf.getnames()
            return None if set(names) == _TORCH_TAR else "tar"
    except _READ_ERRORS:
        return None
    return None


def _patterns(member: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    return (member,) if isinstance(member, str) else tuple(member)


def _candidates(archive: Path, ar, kind: str) -> list[tuple[str, object, int]]:
    """(name, member, bytes) of every regular file of an opened archive (links and devices skipped)."""
    out = []
    if kind == "zip":
        for info in ar.infolist():
            if not info.is_dir() and not stat.S_ISLNK(info.external_attr >> 16):
                out.append((info.filename, info, info.file_size))
    else:
        for m in ar.getmembers():
            if m.isfile():
                out.append((m.name, m, m.size))
    return out


def choose_member(archive: Path, names: list[str], member: str | tuple[str, ...], *,
                  entry: str, registry: str = "the download registry") -> str:
    """The one name of ``names`` that the ``member`` glob(s) pick, or a one-line error listing them.

    Globs are matched case-insensitively against the whole member path (``*`` also matches ``/``);
    the first glob that matches any name decides and must match exactly one.
    """
    patterns = _patterns(member)
    for pat in patterns:
        hits = [n for n in names if fnmatch.fnmatchcase(n.lower(), pat.lower())]
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise DpirError(f"{archive} ({entry}) holds {len(hits)} files matching the member pattern "
                            f"{pat!r}: {', '.join(sorted(hits))}; make `member` of entry {entry!r} "
                            f"in {registry} pick one, or extract the checkpoint by hand and point the "
                            f"config's `official:` at it")
    ckpts = [n for n in names if n.lower().endswith((".pth", ".pt", ".ckpt", ".safetensors", ".bin"))]
    shown = sorted(ckpts or names)
    more = f" and {len(shown) - 20} more" if len(shown) > 20 else ""
    raise DpirError(f"{archive} ({entry}) holds no file matching the member pattern"
                    f"{'s' if len(patterns) > 1 else ''} {', '.join(repr(p) for p in patterns)}; its "
                    f"{'checkpoints' if ckpts else 'files'} are: {', '.join(shown[:20]) or '(none)'}{more}. "
                    f"Fix `member` of entry {entry!r} in {registry}, or extract the checkpoint by hand and "
                    f"point the config's `official:` at it")


def member_extracted(archive: Path, dest: Path, digest: str) -> Path | None:
    """The file :func:`extract_member` took out of ``archive`` (SHA-256 ``digest``), if still intact."""
    rec = _read_marker(marker_path(dest, archive))
    files = _manifest(rec)
    if files is None or len(files) != 1 or rec.get("sha256") != digest or _missing(dest, files):
        return None
    return dest / next(iter(files))


def extract_member(archive: Path, dest: Path, member: str | tuple[str, ...], *, digest: str, kind: str,
                   entry: str, registry: str = "the download registry", max_bytes: int | None = None) -> Path:
    """Extract the one file of ``archive`` that ``member`` picks (:func:`choose_member`) to
    ``dest/<its base name>``, once; return that path.

    The marker ``dest/.complete-<archive name>`` records the archive's SHA-256, the member's path in
    the archive and the extracted file's size and SHA-256 (also logged): the size is checked on every
    call, so a deleted or truncated file is extracted again.
    """
    archive, dest = Path(archive), Path(dest)
    done = member_extracted(archive, dest, digest)
    if done is not None:
        return done
    with _open_archive(archive, kind) as ar:
        try:
            cands = _candidates(archive, ar, kind)
        except _READ_ERRORS as e:
            raise DpirError(f"{archive} could not be read ({type(e).__name__}: {e}); delete it and fetch "
                            f"it again") from None
        name = choose_member(archive, [c[0] for c in cands], member, entry=entry, registry=registry)
        _, info, declared = next(c for c in cands if c[0] == name)
        parts = _member_parts(archive, name)
        out = dest / parts[-1]
        if out.resolve() == archive.resolve():
            raise DpirError(f"member {name!r} of {archive} would overwrite the archive itself; give registry "
                            f"entry {entry!r} an extract_to folder")
        limit, why = size_limit(archive, max_bytes)
        if declared > limit:
            raise DpirError(f"refusing to extract {name!r} from {archive}: it declares {declared} bytes, more "
                            f"than the limit of {limit} ({why}). Nothing was extracted")
        dest.mkdir(parents=True, exist_ok=True)
        tmp = dest / f".{out.name}.tmp{os.getpid()}"
        h = hashlib.sha256()

        class _Hashing:
            def __init__(self, fh):
                self.fh = fh

            def write(self, block: bytes) -> None:
                h.update(block)
                self.fh.write(block)

        try:
            src = ar.open(info) if kind == "zip" else ar.extractfile(info)
            with src, open(tmp, "wb") as fh:
                size = _copy_bounded(src, _Hashing(fh), limit)
            with _dest_lock(dest):
                marker = marker_path(dest, archive)
                if marker.exists():
                    marker.unlink()
                os.replace(tmp, out)
                _write_marker(dest, archive, {"archive": archive.name, "sha256": digest, "member": name,
                                              "member_sha256": h.hexdigest(), "files": {out.name: size}})
        except _TooBig:
            raise DpirError(f"refusing to extract {name!r} from {archive}: it unpacks to more than the limit "
                            f"of {limit} bytes ({why}). Nothing was extracted") from None
        except _READ_ERRORS as e:
            raise DpirError(f"{name!r} could not be extracted from {archive} ({type(e).__name__}: {e}); delete "
                            f"the archive and fetch it again") from None
        finally:
            if tmp.exists():
                tmp.unlink()
    log.info("%s: took %s (%d bytes, sha256 %s) out of %s (sha256 %s) to %s", entry, name, size,
             h.hexdigest(), archive.name, digest, out)
    return out


def member_record(archive: Path, dest: Path) -> dict | None:
    """The marker of :func:`extract_member` (member, member_sha256, files, sha256), or None."""
    rec = _read_marker(marker_path(dest, archive))
    return rec if rec and "member" in rec else None
