"""Safe, idempotent extraction of zip and tar archives.

Safety: every member is checked BEFORE anything is written; an absolute name, a ``..`` component,
a drive letter, a link (tar symlink/hardlink, zip entry with a symlink mode) or a device/FIFO makes
the whole archive refused, so nothing can land outside the target folder.  Members are copied by
hand (never ``extractall``), so file modes, owners and link semantics of the archive are ignored.

Idempotence: the archive is unpacked into a hidden temporary folder beside the target, its top-level
entries are then moved into the target (replacing leftovers of an interrupted run), and only then is
the marker ``<target>/.complete-<archive name>`` written, holding the archive's SHA-256 and the
top-level entries.  Several archives may share one target folder (the DIV2K HR and LR zips unpack
side by side), hence one marker per archive.  Without a matching marker a folder is never taken as
complete: it is extracted again.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from dpir.errors import DpirError

MARKER_PREFIX = ".complete-"


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


def _open_archive(archive: Path, kind: str):
    try:
        if kind == "zip":
            return zipfile.ZipFile(archive)
        if kind == "tar":
            return tarfile.open(archive, "r:*")
    except (zipfile.BadZipFile, tarfile.TarError, OSError) as e:
        raise DpirError(f"{archive} is not a readable {kind} archive ({e}); delete it and fetch it "
                        f"again") from None
    raise DpirError(f"unknown archive type {kind!r} for {archive}; use zip or tar")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def extract(archive: Path, dest: Path, *, digest: str, kind: str) -> Path:
    """Extract ``archive`` into ``dest`` once; return ``dest``.  See the module docstring."""
    archive, dest = Path(archive), Path(dest)
    if is_extracted(archive, dest, digest):
        return dest
    with _open_archive(archive, kind) as ar:
        plan = _plan_zip(archive, ar) if kind == "zip" else _plan_tar(archive, ar)
        dest.mkdir(parents=True, exist_ok=True)
        tmp = dest / f".extract-{archive.name}.tmp{os.getpid()}"
        _remove(tmp)
        tmp.mkdir()
        try:
            root = tmp.resolve()
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
                    shutil.copyfileobj(src, fh, 1 << 20)
            top = sorted(p.name for p in tmp.iterdir())
            for name in top:
                _remove(dest / name)
                os.replace(tmp / name, dest / name)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
            raise DpirError(f"{archive} could not be extracted ({type(e).__name__}: {e}); delete it and "
                            f"fetch it again") from None
        finally:
            _remove(tmp)
    marker = marker_path(dest, archive)
    tmp_marker = marker.with_name(marker.name + f".tmp{os.getpid()}")
    tmp_marker.write_text(json.dumps({"archive": archive.name, "sha256": digest, "entries": top}))
    os.replace(tmp_marker, marker)
    return dest
