"""Streaming, resumable, verified HTTP downloads (standard library only).

pooch verifies hashes but cannot resume, and a 3.5 GB DIV2K archive over a flaky link needs to, so
this is the minimal streaming code instead:

* bytes go to ``<target>.part``; an existing ``.part`` is continued with ``Range: bytes=<n>-`` (a
  server that ignores the range answers 200 and the file restarts from zero);
* the transfer is checked against the published (or recorded) size: a short body keeps the
  ``.part`` for the next run, a longer/different one is an error and nothing is kept;
* the SHA-256 is checked, a mismatch deletes the ``.part`` and raises :class:`DpirError` naming
  the file, the expected and the actual hash;
* only then is the ``.part`` renamed onto the target (atomic on one filesystem), so a file already
  there (``dpir fetch --force``) survives a failed download;
* :func:`download` says whether the length of the transfer was confirmed (a Content-Length or
  Content-Range total that the body matched, or a known expected size): a body that simply ended
  without either may be a cut-short transfer, whose hash must never become the recorded reference.

Google Drive (best effort, no extra dependency): ``https://drive.google.com/uc?export=download&id=<id>``;
for large files Drive answers with an HTML "cannot scan for viruses" page whose form carries the
confirm token; the form is followed once.  Drive quotas and page changes can still break it: the
error then says how to download by hand and pre-stage the file.

Mirror ($DPIR_MIRROR): one setting redirects every host of the registry, for a machine behind a proxy
or with an internal mirror.  Set it to a base URL (``http://``, ``https://`` or ``file://``) and the
file of ``https://<host>/<path>?<query>`` is fetched from ``<mirror>/<host>/<path>`` (the query
dropped), the file of Google Drive id ``<id>`` from ``<mirror>/drive.google.com/<id>``; the original
hosts are then never contacted, and the registry's hashes and sizes are checked as always.  A mirror is
thus a plain folder tree (``wget -x`` lays one out), served by any static web server
(``python -m http.server``) or read directly through ``file://``.  It is read from the environment at
each download, so the command line and Snakemake jobs (which inherit it) see the same setting.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from typing import BinaryIO, NamedTuple

from dpir.errors import DpirError

# Module attributes so tests (and slow links) can change them.
TIMEOUT = 60.0                 # seconds without a byte before a connection is given up
CHUNK = 1 << 20
RESUME_ATTEMPTS = 3            # automatic resumes within one call after a dropped connection
GDRIVE_URL = "https://drive.google.com/uc"
USER_AGENT = "dpir-bench-fetch/0.1 (+python urllib)"
MIRROR_VAR = "DPIR_MIRROR"
_MIRROR_SCHEMES = ("http", "https", "file")


def gdrive_url(file_id: str) -> str:
    return f"{GDRIVE_URL}?{urllib.parse.urlencode({'export': 'download', 'id': file_id})}"


def mirror_base() -> str | None:
    """The mirror base URL of $DPIR_MIRROR (no trailing slash), None when unset; a bad value is one line."""
    value = os.environ.get(MIRROR_VAR, "").strip()
    if not value:
        return None
    u = urllib.parse.urlsplit(value)
    if u.scheme not in _MIRROR_SCHEMES or (u.scheme != "file" and not u.netloc) or u.query or u.fragment:
        raise DpirError(f"${MIRROR_VAR}={value!r} is not a mirror base URL: use http://HOST[/PATH], "
                        f"https://HOST[/PATH] or file:///FOLDER (files are fetched from "
                        f"<mirror>/<host>/<path>), or unset {MIRROR_VAR} to download from the original hosts")
    return value.rstrip("/")


def mirror_url(base: str, url: str) -> str:
    """Where mirror ``base`` serves the file of ``url``: ``<base>/<host>/<path>`` (the query dropped)."""
    u = urllib.parse.urlsplit(url)
    host = u.netloc.rsplit("@", 1)[-1].lower()
    return f"{base}/{host}/{u.path.lstrip('/')}"


def gdrive_mirror_url(base: str, file_id: str) -> str:
    """Where mirror ``base`` serves Google Drive file ``file_id``: ``<base>/drive.google.com/<id>``."""
    return f"{base}/drive.google.com/{urllib.parse.quote(file_id, safe='')}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def part_path(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def _validator_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def discard_part(part: Path) -> None:
    """Delete a ``.part`` and the validator (ETag/Last-Modified) kept beside it for resuming."""
    for p in (part, _validator_path(part)):
        if p.exists():
            p.unlink()


def _read_validator(part: Path, url: str) -> str | None:
    try:
        rec = json.loads(_validator_path(part).read_text())
    except (OSError, ValueError):
        return None
    return rec.get("validator") if rec.get("url") == url else None


def _write_validator(part: Path, url: str, resp: http.client.HTTPResponse) -> None:
    etag = resp.headers.get("ETag")
    validator = etag if etag and not etag.startswith("W/") else resp.headers.get("Last-Modified")
    _validator_path(part).write_text(json.dumps({"url": url, "validator": validator}))


# --------------------------------------------------------------------------------------------
# Verification stamps: hashing a 3.5 GB file on every `dpir fetch`/`status` costs ~10 s, so a
# verified file gets a sidecar recording (sha256, size, mtime); a changed file invalidates it.

def _stamp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.sha256")


def write_stamp(path: Path, sha256: str, *, unconfirmed: bool = False) -> None:
    """Record (sha256, size, mtime) of ``path``; ``unconfirmed`` marks a download of unconfirmed length."""
    st = path.stat()
    tmp = _stamp_path(path).with_suffix(f".tmp{os.getpid()}")
    rec = {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if unconfirmed:
        rec["unconfirmed_length"] = True
    tmp.write_text(json.dumps(rec))
    os.replace(tmp, _stamp_path(path))


def remove_stamp(path: Path) -> bool:
    """Delete the verification stamp of ``path``; True if there was one."""
    stamp = _stamp_path(path)
    if stamp.exists():
        stamp.unlink()
        return True
    return False


def _stamp(path: Path) -> dict | None:
    try:
        rec = json.loads(_stamp_path(path).read_text())
        st = path.stat()
    except (OSError, ValueError):
        return None
    if isinstance(rec, dict) and rec.get("size") == st.st_size and rec.get("mtime_ns") == st.st_mtime_ns:
        return rec
    return None


def stamped_sha256(path: Path) -> str | None:
    """The hash recorded for ``path`` if the file is unchanged since it was verified."""
    rec = _stamp(path)
    return rec.get("sha256") if rec else None


def stamped_unconfirmed(path: Path) -> bool:
    """True if ``path`` is, unchanged, a download whose length could not be confirmed."""
    rec = _stamp(path)
    return bool(rec and rec.get("unconfirmed_length"))


def file_sha256(path: Path) -> str:
    """SHA-256 of ``path``, from its stamp when the file has not changed, else computed and stamped."""
    digest = stamped_sha256(path)
    if digest is None:
        digest = sha256_file(path)
        write_stamp(path, digest)
    return digest


def forget_hint(name: str, source: str) -> str:
    """The advice appended to a refusal whose expected value came from the lock file."""
    if not source.startswith("recorded in "):
        return ""
    return (f"; if the value {source} is the wrong one (a bad first download), run `dpir fetch --forget "
            f"{name}` and then `dpir fetch --force {name}`")


def check_file(path: Path, name: str, sha256: str | None, size: int | None,
               sha256_prefix: str | None = None, source: str = "published") -> str:
    """Verify an existing file; return its SHA-256 or raise :class:`DpirError` saying what differs."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise DpirError(f"{path} ({name}) has {actual_size} bytes, expected {size} ({source}): delete it "
                        f"and run `dpir fetch {name}` again (or pre-stage the right file)"
                        f"{forget_hint(name, source)}")
    digest = file_sha256(path)
    if sha256 is not None and digest != sha256:
        raise DpirError(f"{path} ({name}) has sha256 {digest}, expected {sha256} "
                        f"({source}): delete it and run "
                        f"`dpir fetch {name}` again (or pre-stage the right file)"
                        f"{forget_hint(name, source)}")
    if sha256_prefix is not None and not digest.startswith(sha256_prefix):
        raise DpirError(f"{path} ({name}) has sha256 {digest}, which does not start with "
                        f"{sha256_prefix} as its published file name says: delete it and fetch again")
    return digest


# --------------------------------------------------------------------------------------------
# HTTP

class _DriveForm(HTMLParser):
    """Collects the confirm form (or a confirm link) of Google Drive's download warning page."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self.link: str | None = None
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None and (a.get("id") == "download-form"
                                                       or "download" in a.get("action", "")):
            self.action, self._in_form = a["action"], True
        elif tag == "input" and self._in_form and a.get("name"):
            self.fields[a["name"]] = a.get("value", "")
        elif tag == "a" and self.link is None and "confirm=" in a.get("href", ""):
            self.link = a["href"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False


def _drive_confirm_url(page: str, base: str) -> str | None:
    p = _DriveForm()
    p.feed(page)
    if p.action:
        return urllib.parse.urljoin(base, p.action) + "?" + urllib.parse.urlencode(p.fields)
    if p.link:
        return urllib.parse.urljoin(base, p.link.replace("&amp;", "&"))
    return None


def _open(url: str, start: int, if_range: str | None = None) -> http.client.HTTPResponse:
    headers = {"User-Agent": USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
        if if_range:
            # The server sends the whole (new) file instead of the rest if it changed meanwhile.
            headers["If-Range"] = if_range
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT)


def _total_size(resp: http.client.HTTPResponse, start: int) -> tuple[int, int | None]:
    """(offset the body starts at, total file size or None) from the response headers."""
    if resp.status == 206:
        m = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", resp.headers.get("Content-Range", ""))
        if not m:
            raise DpirError(f"{resp.url}: 206 response without a usable Content-Range header")
        return int(m.group(1)), None if m.group(3) == "*" else int(m.group(3))
    length = resp.headers.get("Content-Length")
    return 0, int(length) if length is not None else None


class _Interrupted(Exception):
    pass


class _Refused(Exception):
    """A source that answered but will not serve the file (HTML page instead of data)."""


def _stream(resp: http.client.HTTPResponse, out: BinaryIO, have: int, total: int | None,
            label: str, progress: bool) -> int:
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=label, file=sys.stderr,
                   leave=False)
    try:
        while True:
            try:
                block = resp.read(CHUNK)
            except (http.client.IncompleteRead, ConnectionError, TimeoutError) as e:
                raise _Interrupted(f"{type(e).__name__}") from None
            if not block:
                break
            out.write(block)
            have += len(block)
            if bar is not None:
                bar.update(len(block))
    finally:
        out.flush()
        if bar is not None:
            bar.close()
    if total is not None and have < total:
        raise _Interrupted(f"connection closed after {have} of {total} bytes")
    return have


class Downloaded(NamedTuple):
    url: str                 # the URL that served the file
    length_confirmed: bool   # the body matched a Content-Length/Content-Range total or the expected size


def download(urls: list[str], dest: Path, *, name: str, size: int | None, progress: bool = True,
             drive: set[str] = frozenset(), checked: bool = True, hint: str = "",
             command: str | None = None, mirror: str | None = None) -> Downloaded:
    """Download to ``<dest>.part`` (resuming it if present); return the URL and whether the length of
    the transfer was confirmed (see :class:`Downloaded`).

    The ``.part`` is left in place for the caller to verify and rename; ``dest`` itself is never
    touched.  ``hint`` is appended to a size-mismatch error (where the expected size came from);
    ``command`` is the command an interrupted transfer is resumed with (``dpir fetch NAME``).  ``drive`` holds the URLs that
    are Google Drive endpoints (their HTML warning page is followed once).  A ``.part`` is resumed
    with ``If-Range`` when the server gave an ETag/Last-Modified; without one, and when no hash will
    check the result (``checked=False``), it is restarted: splicing two upstream versions together
    would otherwise be recorded as the reference hash.  ``mirror`` is the $DPIR_MIRROR base the
    ``urls`` were mapped onto (:func:`mirror_url`); a failure then names the setting.
    """
    part = part_path(dest)
    part.parent.mkdir(parents=True, exist_ok=True)
    command = command or f"dpir fetch {name}"
    errors: list[str] = []
    for url in urls:
        attempts = 0
        while True:
            have = part.stat().st_size if part.exists() else 0
            validator = _read_validator(part, url) if have else None
            if (size is not None and have > size) or (have and validator is None and not checked):
                discard_part(part)
                have = 0
            if size is not None and have == size:
                # a complete .part from an earlier run: nothing left to fetch
                return Downloaded(url, True)
            try:
                resp = _open(url, have, validator)
                ctype = resp.headers.get("Content-Type", "")
                if ctype.startswith("text/html"):
                    page = resp.read(1 << 20).decode("utf-8", "replace")
                    resp.close()
                    follow = _drive_confirm_url(page, resp.url) if url in drive else None
                    if follow is None:
                        raise _Refused(f"{url} answered with a web page instead of the file "
                                       f"(quota, login or a moved file)")
                    resp = _open(follow, have, validator)
                    if resp.headers.get("Content-Type", "").startswith("text/html"):
                        resp.close()
                        raise _Refused(f"{url}: Google Drive refused the download (quota exceeded or no "
                                       f"public access); open it in a browser to download by hand")
            except _Refused as e:
                errors.append(str(e))
                break
            except urllib.error.HTTPError as e:
                if e.code == 416 and have:
                    # Range not satisfiable: the .part is complete or longer than the file; start over.
                    discard_part(part)
                    attempts += 1
                    if attempts <= RESUME_ATTEMPTS:
                        continue
                errors.append(f"{url}: HTTP {e.code} {e.reason}")
                break
            except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                errors.append(f"{url}: {getattr(e, 'reason', e)}")
                break
            with resp:
                offset, total = _total_size(resp, have)
                if offset != have or not have:   # fresh start, or the range was refused/outdated
                    have, mode = 0, "wb"
                    _write_validator(part, url, resp)
                else:
                    mode = "ab"
                if total is not None and size is not None and total != size:
                    discard_part(part)
                    raise DpirError(f"{url} offers {total} bytes for {dest.name} but {size} are "
                                    f"expected: the file changed upstream or the URL is wrong; "
                                    f"nothing was kept{hint}")
                with open(part, mode) as out:
                    try:
                        got = _stream(resp, out, have, total, dest.name, progress)
                    except _Interrupted as e:
                        attempts += 1
                        if attempts <= RESUME_ATTEMPTS:
                            continue
                        got = part.stat().st_size
                        raise DpirError(
                            f"download of {dest.name} from {url} was interrupted ({e}) after {got} bytes; "
                            f"the partial file {part} is kept: run `{command}` again to resume"
                        ) from None
            return Downloaded(url, size is not None or (total is not None and got == total))
    if mirror is not None:
        raise DpirError(f"could not download {dest.name} ({name}) from the mirror ${MIRROR_VAR}={mirror}: "
                        f"{'; '.join(errors)}. The mirror must serve it at {' or '.join(urls)}: fix the "
                        f"mirror or {MIRROR_VAR}, or "
                        f"unset {MIRROR_VAR} to download from the original hosts, or put the file at {dest} "
                        f"and run `dpir fetch {name}` to verify it")
    raise DpirError(f"could not download {dest.name} ({name}): {'; '.join(errors)}. Without network, "
                    f"put the file at {dest} and run `dpir fetch {name}` to verify it")
