"""Crash-safe and concurrency-safe file operations shared by every stage (prepare, restore, score, train).

- :func:`atomic_write_text` / :func:`atomic_file`: write to a temporary name unique per host, process
  *and* thread (host + pid + random suffix) in the target's folder, then ``os.replace`` it: a reader sees
  the old or the new file, never half of one, and two writers never share a temporary file.
- :func:`unique_temp_dir`: a fresh hidden sibling folder ``.<target>.tmp-<host>-<pid>-<random>`` for a
  stage's output (the usual permissions, not ``mkdtemp``'s 0700: it becomes the published folder).
- :func:`exclusive_lock`: an ``fcntl.flock`` lock file ``.<target>.lock`` next to the target.  Two runs
  of the same stage (a job left running after Snakemake was killed, then a re-run) take turns
  instead of overwriting each other's files.  The lock goes away with the process, even when killed.
  :func:`exclusive_lock_file` is the same on a lock file named by the caller.
- :func:`swap_in` / :func:`recover`: replace a finished result folder by a new one in two renames
  (old aside to ``.<target>.old``, new in, old deleted).  After a crash at any point the target or
  ``.<target>.old`` holds a complete result (one holding its completion marker: ``run.json`` for a
  run, ``manifest.json`` for prepared data), and :func:`recover` (called before every replacement and
  when a result is looked for) puts the old one back and deletes the temporary folders of dead processes.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import hashlib
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

#: what marks a result folder as complete (written last, atomically)
RUN_MARKER = "run.json"

def _host() -> str:
    # safe in a file name; the owner is read back from the token's end (see _owner)
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "host"


def unique_token() -> str:
    """``<host>-<pid>-<random>``: distinct for every host, process and call (threads included); the
    host and pid name the owner, so a later run can tell a dead process's leftovers from a live one's."""
    return f"{_host()}-{os.getpid()}-{secrets.token_hex(4)}"


def _owner(token: str) -> tuple[str, int] | None:
    """(host, pid) of a :func:`unique_token` (None when ``token`` is not one)."""
    parts = token.rsplit("-", 2)
    if len(parts) != 3 or not parts[0] or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:     # another user's live process
        return True
    return True


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a unique temporary path beside ``path``; on success it replaces ``path`` atomically,
    on any exception it is deleted and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{unique_token()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file unique per process and thread."""
    with atomic_file(path) as tmp:
        # os.open honours the umask (tempfile.mkstemp would make results files private)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def side_path(target: str | os.PathLike, what: str) -> Path:
    """``.<target>.<what>``: a hidden sibling of ``target`` (same file system: renames are atomic)."""
    target = Path(target)
    return target.with_name(f".{target.name}.{what}")


def unique_temp_dir(target: str | os.PathLike) -> Path:
    """Create and return the empty folder ``.<target>.tmp-<host>-<pid>-<random>`` beside ``target``,
    with the usual permissions (``0o777`` less the umask)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        d = side_path(target, f"tmp-{unique_token()}")
        try:
            d.mkdir()
        except FileExistsError:     # 32 random bits: practically never, but never an error
            continue
        return d


def lock_path(target: str | os.PathLike) -> Path:
    return side_path(target, "lock")


def blocking_file(path: str | os.PathLike) -> Path | None:
    """The nearest existing ancestor of ``path`` (``path`` itself included) when it is a file, not a
    folder, so that ``path`` cannot be created; None otherwise."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe if probe.exists() and not probe.is_dir() else None


def temp_lock_file(kind: str, path: str | os.PathLike) -> Path:
    """A lock file in the system temp folder keyed by the absolute ``path`` (for locks that must not
    leave a file beside ``path``, e.g. in a committed folder)."""
    key = hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"dpir-{kind}-{key}.flock"


@contextlib.contextmanager
def exclusive_lock(target: str | os.PathLike, what: str | None = None) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``.<target>.lock`` (created beside ``target``) for the block.

    Yields whether this process had to wait for another holder (so the caller can look whether
    that one already produced what it was about to produce).  The lock file stays (deleting it
    would let a waiter and a newcomer hold two different files)."""
    with exclusive_lock_file(lock_path(target), what or str(target)) as waited:
        yield waited


@contextlib.contextmanager
def exclusive_lock_file(path: str | os.PathLike, what: str | None = None) -> Iterator[bool]:
    """:func:`exclusive_lock` on the lock file ``path`` itself; yields whether it had to wait."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        waited = False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                holder = os.pread(fd, 64, 0).decode().strip()
            log.info("waiting for %s: another process%s holds %s", what or path,
                     f" (pid {holder})" if holder else "", path)
            fcntl.flock(fd, fcntl.LOCK_EX)
            waited = True
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield waited
    finally:
        os.close(fd)  # releases the lock


def file_stamp(path: str | os.PathLike) -> tuple | None:
    """A cheap identity of a file's current version (None when absent)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def old_path(target: str | os.PathLike) -> Path:
    return side_path(target, "old")


def is_complete(folder: str | os.PathLike, marker: str = RUN_MARKER) -> bool:
    return (Path(folder) / marker).is_file()


def _stale_temp(folder: Path, prefix: str, built_under_lock: bool) -> bool:
    """Whether the temporary folder ``folder`` (named ``<prefix><token>``) is a dead process's leftover."""
    owner = _owner(folder.name[len(prefix):])
    if owner is None:
        return built_under_lock
    host, pid = owner
    if host == _host() and pid == os.getpid():
        return False                    # this process's (another thread's build)
    if built_under_lock:
        return True                     # only the lock holder, this process, writes them
    return host == _host() and not _pid_alive(pid)   # another host's process cannot be checked: kept


def recover(target: str | os.PathLike, marker: str = RUN_MARKER, keep: str | os.PathLike | None = None,
            built_under_lock: bool = True) -> None:
    """Repair what a crash during :func:`swap_in` can leave; call it while holding the target's lock.

    A missing or incomplete target (no ``marker``) with a complete ``.<target>.old`` gets the old
    result back; a ``.<target>.old`` beside a complete target is deleted.  So are the temporary folders
    ``.<target>.tmp-<host>-<pid>-*`` of dead processes, except ``keep``: with ``built_under_lock`` (the
    caller's temporary folders are only written while holding the lock) every one not of this process;
    without (builds run side by side and only publishing is locked, as in prepare) those of this host
    whose process has ended."""
    target = Path(target)
    old = old_path(target)
    if old.exists():
        if not is_complete(target, marker) and is_complete(old, marker):
            if target.exists():
                shutil.rmtree(target)   # an incomplete leftover (no marker): nothing finished is lost
            os.rename(old, target)
            log.warning("recovered %s from %s, left by an interrupted replacement", target, old.name)
        else:
            shutil.rmtree(old, ignore_errors=True)
    prefix = side_path(target, "tmp-").name
    for stale in target.parent.glob(glob.escape(prefix) + "*"):
        if keep is not None and stale == Path(keep):
            continue
        if not _stale_temp(stale, prefix, built_under_lock):
            continue
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def _rename(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """The renames of :func:`swap_in` (a module attribute so tests can make one fail)."""
    os.replace(src, dst)


def swap_in(new: str | os.PathLike, target: str | os.PathLike, marker: str = RUN_MARKER,
            built_under_lock: bool = True) -> None:
    """Replace the folder ``target`` by the complete folder ``new`` (a sibling); hold the lock.

    Step 1 renames the old result aside to ``.<target>.old``, step 2 renames ``new`` in, step 3 deletes
    the old one.  A crash between 1 and 2 leaves ``.<target>.old`` complete (restored by
    :func:`recover`); SIGINT/SIGTERM arriving during the renames are held back until they are done."""
    new, target = Path(new), Path(target)
    if not is_complete(new, marker):
        raise RuntimeError(f"{new} is not a complete result ({marker} missing)")
    recover(target, marker, keep=new, built_under_lock=built_under_lock)
    old = old_path(target)
    with deferred_signals():
        if target.exists():
            _rename(target, old)    # POSIX rename: atomic; `old` was removed by recover
        _rename(new, target)
    shutil.rmtree(old, ignore_errors=True)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def deferred_signals(signals=(signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Hold back SIGINT/SIGTERM for a few critical statements, then deliver them."""
    if not _in_main_thread():
        yield
        return
    pending: list[int] = []
    previous = {}
    for s in signals:
        handler = signal.getsignal(s)
        if handler is None:         # installed outside Python: leave it alone
            continue
        previous[s] = handler
        signal.signal(s, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        for s in pending:
            handler = previous.get(s)
            if callable(handler):
                handler(s, None)
            elif s == signal.SIGINT and handler == signal.default_int_handler:
                raise KeyboardInterrupt
            elif handler == signal.SIG_DFL:
                signal.raise_signal(s)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a SLURM time limit, ``kill``), raised like Ctrl-C so the same cleanup runs."""


@contextlib.contextmanager
def sigterm_raises_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (a KeyboardInterrupt) in the main thread."""
    if not _in_main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated(f"signal {signum}")

    previous: Callable | int | None = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
