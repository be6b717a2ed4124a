"""dpir.fetch against a local HTTP server (127.0.0.1, port 0) started here; no other host is contacted."""
from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import tarfile
import threading
import urllib.parse
import urllib.request
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dpir import fetch as F
from dpir.errors import DpirError, UnknownNameError
from dpir.fetch import archive, download, registry


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# ------------------------------------------------------------------------------------ server

class Server:
    """Serves ``files`` (path -> bytes) with Range support; ``cut[path] = n`` makes the next response
    for ``path`` stop after n body bytes (connection dropped); the Drive pages live at /uc and /download;
    ``lengths = False`` leaves out Content-Length."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.if_range: list[str | None] = []
        self.drive_refuses = False
        self.etags = True
        self.lengths = True      # False: no Content-Length (the body ends when the connection closes)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 5

            def log_message(self, *args):
                pass

            def do_GET(self):
                u = urllib.parse.urlparse(self.path)
                q = dict(urllib.parse.parse_qsl(u.query))
                outer.requests.append((self.path, self.headers.get("Range")))
                outer.if_range.append(self.headers.get("If-Range"))
                if u.path == "/uc" or (u.path == "/download" and outer.drive_refuses):
                    page = (b'<html><body>Google Drive can\'t scan this file for viruses.'
                            b'<form id="download-form" action="/download" method="get">'
                            b'<input type="hidden" name="id" value="%s">'
                            b'<input type="hidden" name="export" value="download">'
                            b'<input type="hidden" name="confirm" value="t">'
                            b'<input type="submit" value="Download anyway"></form></body></html>'
                            % q.get("id", "").encode())
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                    return
                key = f"/drive/{q['id']}" if u.path == "/download" and q.get("confirm") == "t" else u.path
                if key not in outer.files:
                    self.send_error(404)
                    return
                body, start = outer.files[key], 0
                etag = f'"{sha(body)[:16]}"'
                rng = self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                if rng and if_range is not None and if_range != etag:
                    rng = None                                  # changed since: send it all
                if rng:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                if outer.lengths:
                    self.send_header("Content-Length", str(len(body) - start))
                if outer.etags:
                    self.send_header("ETag", etag)
                self.end_headers()
                payload = body[start:]
                if key in outer.cut:
                    payload = payload[:outer.cut.pop(key)]
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.timeout = 5
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def env(tmp_path, monkeypatch, server):
    """Every root and the lock in tmp_path; loopback only; a registry file the test fills in."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("DPIR_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("DPIR_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("DPIR_REGISTRY_LOCK", str(tmp_path / "registry.lock.json"))
    monkeypatch.setattr(download, "TIMEOUT", 5.0)
    monkeypatch.setattr(download, "RESUME_ATTEMPTS", 0)
    monkeypatch.setattr(download, "GDRIVE_URL", server.base + "/uc")
    real_urlopen = urllib.request.urlopen

    def loopback_only(req, *a, **k):
        host = urllib.parse.urlparse(req.full_url if hasattr(req, "full_url") else req).hostname
        assert host == "127.0.0.1", f"test tried to contact {host}"
        return real_urlopen(req, *a, **k)

    monkeypatch.setattr(urllib.request, "urlopen", loopback_only)
    reg = tmp_path / "registry.json"
    monkeypatch.setattr(registry, "REGISTRY_PATH", reg)

    def set_entries(*entries):
        reg.write_text(json.dumps({"entries": list(entries)}))

    set_entries()
    return set_entries


def entry(name, server, path, data=None, **kw):
    e = {"name": name, "kind": "weights", "urls": [server.base + path],
         "target": "{weights}/" + path.strip("/"), "size": None if data is None else len(data),
         "sha256": None if data is None else sha(data), "archive": None}
    e.update(kw)
    return e


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    return buf.getvalue()


# ------------------------------------------------------------------------------------ downloads

def test_good_file_is_downloaded_verified_and_not_downloaded_again(env, server, tmp_path):
    data = bytes(range(256)) * 40
    server.files["/w/model.pth"] = data
    env(entry("good", server, "/w/model.pth", data))
    p = F.fetch("good", progress=False)
    assert p == tmp_path / "weights/w/model.pth" and p.read_bytes() == data
    assert not download.part_path(p).exists()
    assert len(server.requests) == 1 and server.requests[0][1] is None
    assert F.fetch("good", progress=False) == p
    assert len(server.requests) == 1
    assert F.status() == [{"name": "good", "kind": "weights", "path": str(p), "state": "present",
                           "size": len(data), "expected_size": len(data), "note": ""}]


def test_checksum_mismatch_deletes_and_names_file_and_hashes(env, server, tmp_path):
    data, wrong = b"payload" * 100, b"other" * 140
    server.files["/w/bad.pth"] = data
    env(entry("bad", server, "/w/bad.pth", wrong, size=len(data)))
    with pytest.raises(DpirError) as err:
        F.fetch("bad", progress=False)
    msg = str(err.value)
    assert "bad.pth" in msg and f"expected sha256 {sha(wrong)}" in msg and f"got {sha(data)}" in msg
    target = tmp_path / "weights/w/bad.pth"
    assert not target.exists() and not download.part_path(target).exists()


def test_truncated_transfer_is_kept_and_resumed_with_range(env, server, tmp_path):
    data = bytes(range(256)) * 64
    server.files["/w/big.bin"] = data
    server.cut["/w/big.bin"] = 5000
    env(entry("big", server, "/w/big.bin", data))
    with pytest.raises(DpirError, match=r"interrupted.*after 5000 bytes.*big\.bin\.part is kept.*resume"):
        F.fetch("big", progress=False)
    part = download.part_path(tmp_path / "weights/w/big.bin")
    assert part.read_bytes() == data[:5000]
    assert F.status()[0]["state"] == "partial" and F.status()[0]["size"] == 5000
    p = F.fetch("big", progress=False)
    assert server.requests[-1] == ("/w/big.bin", "bytes=5000-")
    assert server.if_range[-1] == f'"{sha(data)[:16]}"'
    assert p.read_bytes() == data and not part.exists()
    assert sorted(x.name for x in p.parent.iterdir()) == [".big.bin.lock", ".big.bin.sha256", "big.bin"]


def test_resume_never_splices_two_upstream_versions(env, server, tmp_path):
    old, new = b"o" * 4000, b"n" * 4000
    server.files["/w/u.bin"] = old
    server.cut["/w/u.bin"] = 1000
    env(entry("u", server, "/w/u.bin"))                         # no published hash: nothing would catch it
    with pytest.raises(DpirError, match="interrupted"):
        F.fetch("u", progress=False)
    server.files["/w/u.bin"] = new                              # upstream changed in between
    assert F.fetch("u", progress=False).read_bytes() == new     # If-Range: server sent the new file whole
    assert server.requests[-1][1] == "bytes=1000-" and server.if_range[-1] == f'"{sha(old)[:16]}"'
    lock = json.loads((tmp_path / "registry.lock.json").read_text())["files"]
    assert lock["u"]["sha256"] == sha(new)


def test_without_validator_an_unchecked_part_is_restarted(env, server, tmp_path):
    server.etags = False
    data = b"q" * 4000
    server.files["/w/q.bin"] = data
    server.cut["/w/q.bin"] = 1000
    env(entry("q", server, "/w/q.bin"))
    with pytest.raises(DpirError, match="interrupted"):
        F.fetch("q", progress=False)
    assert F.fetch("q", progress=False).read_bytes() == data
    assert server.requests[-1][1] is None                       # no Range: restarted from zero


def test_dropped_connection_resumes_within_one_call(env, server, monkeypatch):
    monkeypatch.setattr(download, "RESUME_ATTEMPTS", 2)
    data = b"x" * 3000 + b"y" * 3000
    server.files["/w/r.bin"] = data
    server.cut["/w/r.bin"] = 1234
    env(entry("r", server, "/w/r.bin", data))
    assert F.fetch("r", progress=False).read_bytes() == data
    assert [r for _, r in server.requests] == [None, "bytes=1234-"]


def test_wrong_size_is_an_error_and_nothing_is_kept(env, server, tmp_path):
    data = b"z" * 1000
    server.files["/w/s.bin"] = data
    env(entry("s", server, "/w/s.bin", data, size=1010))
    with pytest.raises(DpirError, match=r"offers 1000 bytes for s\.bin but 1010 are expected"):
        F.fetch("s", progress=False)
    assert not list((tmp_path / "weights").rglob("s.bin*"))


def test_prestaged_file_is_accepted_without_network(env, server, tmp_path):
    data = b"pre-staged archive"
    env(entry("pre", server, "/never/served.zip", data, kind="dataset", target="{data}/pre/served.bin"))
    staged = tmp_path / "data/pre/served.bin"
    staged.parent.mkdir(parents=True)
    staged.write_bytes(data)
    assert F.fetch("pre", progress=False) == staged
    assert server.requests == []
    staged.write_bytes(b"pre-staged archivE")      # same size, wrong bytes
    with pytest.raises(DpirError, match=r"served\.bin \(pre\) has sha256 .*, expected " + sha(data)):
        F.fetch("pre", progress=False)
    assert server.requests == [] and staged.exists()


def test_unpublished_checksum_is_recorded_then_enforced(env, server, tmp_path):
    data = b"first version" * 50
    server.files["/w/u.bin"] = data
    env(entry("u", server, "/w/u.bin"))                         # size and sha256 null
    p = F.fetch("u", progress=False)
    lock = json.loads((tmp_path / "registry.lock.json").read_text())["files"]
    assert lock["u"]["sha256"] == sha(data) and lock["u"]["size"] == len(data)
    assert lock["u"]["url"] == server.base + "/w/u.bin"
    server.files["/w/u.bin"] = b"first versioN" * 50   # same size, other bytes
    with pytest.raises(DpirError, match=f"expected sha256 {sha(data)}.*dpir fetch --forget u"):
        F.fetch("u", force=True, progress=False)
    assert p.read_bytes() == data                      # the verified file is only replaced by a verified one
    server.files["/w/u.bin"] = data
    assert F.fetch("u", progress=False).read_bytes() == data


def test_status_reports_present_missing_corrupt(env, server, tmp_path):
    a, b = b"a" * 100, b"b" * 100
    server.files["/w/a.bin"], server.files["/w/b.bin"] = a, b
    env(entry("a", server, "/w/a.bin", a), entry("b", server, "/w/b.bin", b),
        entry("c", server, "/w/c.bin", b"c"))
    F.fetch("a", progress=False)
    F.fetch("b", progress=False)
    (tmp_path / "weights/w/b.bin").write_bytes(b"B" * 100)        # tampered after download
    rows = {r["name"]: r for r in F.status()}
    assert {n: r["state"] for n, r in rows.items()} == {"a": "present", "b": "corrupt", "c": "missing"}
    assert rows["c"]["size"] is None and "sha256" in rows["b"]["note"]
    table = F.format_status_table(F.status())
    lines = table.splitlines()
    assert lines[0].split() == ["name", "kind", "state", "size", "path", "note"]
    assert lines[2].split()[:4] == ["a", "weights", "present", "100"] and "missing" in lines[4]
    assert F.list_names() == ["a", "b", "c"] and F.list_names("dataset") == []


def test_unknown_name(env, server):
    env(entry("swinir_classical_x4", server, "/w/x", b"x"))
    with pytest.raises(UnknownNameError,
                       match=r"unknown download 'swinir_x4'.*Did you mean 'swinir_classical_x4'"):
        F.fetch("swinir_x4")
    with pytest.raises(UnknownNameError):
        F.status(["nope"])


def test_sha256_prefix_from_file_name_is_checked(env, server):
    data = b"alexnet"
    server.files["/w/alexnet-owt-00000000.pth"] = data
    env(entry("alex", server, "/w/alexnet-owt-00000000.pth", sha256=None, size=None,
              sha256_prefix="00000000"))
    with pytest.raises(DpirError, match=rf"expected a sha256 starting with 00000000.*got {sha(data)}"):
        F.fetch("alex", progress=False)


def test_google_drive_confirm_page_is_followed(env, server):
    data = b"drive payload" * 30
    server.files["/drive/FILEID"] = data
    env(entry("g", server, "/unused", data, urls=[], gdrive_id="FILEID", target="{weights}/g/file.pth"))
    assert F.fetch("g", progress=False).read_bytes() == data
    assert [p.split("?")[0] for p, _ in server.requests] == ["/uc", "/download"]
    assert "confirm=t" in server.requests[1][0] and "id=FILEID" in server.requests[1][0]


def test_google_drive_refusal_falls_back_then_explains(env, server, tmp_path):
    server.drive_refuses = True
    data = b"mirror copy"
    server.files["/mirror/file.pth"] = data
    env(entry("g", server, "/mirror/file.pth", data, gdrive_id="FILEID", target="{weights}/g/file.pth"))
    assert F.fetch("g", progress=False).read_bytes() == data       # the fallback URL served it
    env(entry("h", server, "/unused", data, urls=[], gdrive_id="FILEID", target="{weights}/h/file.pth"))
    with pytest.raises(DpirError, match=r"Google Drive refused.*put the file at .*h/file\.pth"):
        F.fetch("h", progress=False)
    assert not (tmp_path / "weights/h").exists() or not any((tmp_path / "weights/h").glob("file.pth*"))


def test_unreachable_source_says_how_to_prestage(env, server):
    env(entry("m", server, "/missing.bin", b"x"))
    with pytest.raises(DpirError, match=r"HTTP 404.*Without network, put the file at .*missing\.bin"):
        F.fetch("m", progress=False)


# ------------------------------------------------------------------------------------ weights roots

def test_torch_hub_root_is_where_torch_looks(env, server, tmp_path):
    import torch
    data = b"alex"
    server.files["/models/alexnet-owt-7be5be79.pth"] = data
    env(entry("alex", server, "/models/alexnet-owt-7be5be79.pth", data,
              target="{torch_hub}/checkpoints/alexnet-owt-7be5be79.pth"))
    p = F.fetch("alex", progress=False)
    assert p == Path(torch.hub.get_dir()) / "checkpoints/alexnet-owt-7be5be79.pth"
    assert p == tmp_path / "torch/hub/checkpoints/alexnet-owt-7be5be79.pth"


def test_hf_cache_layout_is_resolved_offline_by_huggingface_hub(env, server, tmp_path):
    hf = pytest.importorskip("huggingface_hub")
    data = b"safetensors bytes"
    server.files["/timm/model.safetensors"] = data
    base = "{hf_hub}/models--timm--resnet50.a1_in1k"
    env(entry("timm", server, "/timm/model.safetensors", data,
              target=base + "/snapshots/dpir-fetch/model.safetensors", hf_ref=base + "/refs/main"))
    p = F.fetch("timm", progress=False)
    assert (tmp_path / "hf/models--timm--resnet50.a1_in1k/refs/main").read_text() == "dpir-fetch"
    found = hf.hf_hub_download("timm/resnet50.a1_in1k", "model.safetensors", cache_dir=tmp_path / "hf",
                               local_files_only=True)
    assert Path(found) == p


# ------------------------------------------------------------------------------------ archives

def test_archive_is_extracted_once_and_redone_without_marker(env, server, tmp_path):
    data = zip_bytes({"DIV2K_valid_HR/0801.png": b"img1", "DIV2K_valid_HR/0802.png": b"img2"})
    server.files["/DIV2K_valid_HR.zip"] = data
    env(entry("div", server, "/DIV2K_valid_HR.zip", data, kind="dataset", archive="zip",
              target="{data}/div2k/DIV2K_valid_HR.zip", extract_to="{data}/div2k"))
    out = F.fetch("div", progress=False)
    assert out == tmp_path / "data/div2k"
    img = out / "DIV2K_valid_HR/0801.png"
    assert img.read_bytes() == b"img1" and (out / "DIV2K_valid_HR/0802.png").read_bytes() == b"img2"
    marker = json.loads((out / ".complete-DIV2K_valid_HR.zip").read_text())
    assert marker == {"archive": "DIV2K_valid_HR.zip", "sha256": sha(data), "entries": ["DIV2K_valid_HR"],
                      "files": {"DIV2K_valid_HR/0801.png": 4, "DIV2K_valid_HR/0802.png": 4}}
    img.write_bytes(b"IMG1")                                    # complete (sizes match): not extracted again
    F.fetch("div", progress=False)
    assert img.read_bytes() == b"IMG1" and F.status()[0]["note"] == "extracted"
    (out / ".complete-DIV2K_valid_HR.zip").unlink()             # interrupted run: no marker
    (out / "DIV2K_valid_HR/junk.tmp").write_bytes(b"half written")
    assert "not extracted" in F.status()[0]["note"]
    F.fetch("div", progress=False)
    assert img.read_bytes() == b"img1" and F.status()[0]["note"] == "extracted"
    # a file the archive does not produce is never removed (it may be a user's or another archive's)
    assert (out / "DIV2K_valid_HR/junk.tmp").read_bytes() == b"half written"
    assert len(server.requests) == 1
    assert not [p for p in out.iterdir() if p.name.startswith(".extract-")]


def _tar_with(tmp_path, add) -> Path:
    p = tmp_path / "a.tar"
    with tarfile.open(p, "w") as t:
        info = tarfile.TarInfo("ok/file.txt")
        info.size = 2
        t.addfile(info, io.BytesIO(b"ok"))
        add(t)
    return p


@pytest.mark.parametrize("case", ["zip_dotdot", "zip_abs", "zip_symlink", "tar_symlink", "tar_hardlink",
                                  "tar_dotdot"])
def test_unsafe_archives_are_refused_and_write_nothing(tmp_path, case):
    work = tmp_path / "work"
    work.mkdir()
    dest = work / "dest"
    if case.startswith("zip"):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("ok/file.txt", b"ok")
            if case == "zip_dotdot":
                z.writestr("../evil.txt", b"evil")
            elif case == "zip_abs":
                z.writestr("/tmp/evil_abs.txt", b"evil")
            else:
                info = zipfile.ZipInfo("ok/link")
                info.external_attr = (0o120777 << 16)
                z.writestr(info, "../../evil.txt")
        arc = work / "a.zip"
        arc.write_bytes(buf.getvalue())
        kind = "zip"
    else:
        def add(t):
            if case == "tar_dotdot":
                info = tarfile.TarInfo("../evil.txt")
                info.size = 4
                t.addfile(info, io.BytesIO(b"evil"))
                return
            info = tarfile.TarInfo("ok/link")
            info.type = tarfile.SYMTYPE if case == "tar_symlink" else tarfile.LNKTYPE
            info.linkname = "/etc/passwd" if case == "tar_symlink" else "ok/file.txt"
            t.addfile(info)
        arc = _tar_with(work, add)
        kind = "tar"
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(DpirError, match=r"refusing to extract .*a\.(zip|tar): member .*Nothing was extracted|"
                                        r"refusing to extract .*nothing was extracted"):
        archive.extract(arc, dest, digest="d", kind=kind)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert not Path("/tmp/evil_abs.txt").exists()


def test_tar_archive_through_fetch(env, server, tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        info = tarfile.TarInfo("bursts/0000/im_raw_00.png")
        info.size = 3
        t.addfile(info, io.BytesIO(b"raw"))
    data = buf.getvalue()
    server.files["/sb.tar.gz"] = data
    env(entry("sb", server, "/sb.tar.gz", data, kind="dataset", archive="tar",
              target="{data}/sb/sb.tar.gz", extract_to="{data}/sb/x"))
    out = F.fetch("sb", progress=False)
    assert (out / "bursts/0000/im_raw_00.png").read_bytes() == b"raw"


def test_corrupt_archive_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK not really")
    with pytest.raises(DpirError, match=r"bad\.zip is not a readable zip archive"):
        archive.extract(bad, tmp_path / "x", digest="d", kind="zip")


# ------------------------------------------------------------------------------------ one member of a bundle

BUNDLE = {"BSRT_models/synthetic/BSRT_Small.pth": b"small synthetic weights",
          "BSRT_models/synthetic/BSRT_Large.pth": b"large synthetic weights, longer",
          "BSRT_models/real/BSRT_Large_real.pth": b"large real weights",
          "BSRT_models/README.txt": b"read me"}


def test_member_is_taken_out_of_a_bundle_verified_and_reported(env, server, tmp_path, caplog):
    data = zip_bytes(BUNDLE)
    server.files["/bsrt.zip"] = data
    env(entry("bsrt", server, "/bsrt.zip", data, target="{weights}/bsrt/release.bin",
              member="*BSRT_Small*.pth"))
    with caplog.at_level(logging.INFO, logger="dpir.fetch"):
        p = F.fetch("bsrt", progress=False)
    small = BUNDLE["BSRT_models/synthetic/BSRT_Small.pth"]
    assert p == tmp_path / "weights/bsrt/BSRT_Small.pth" and p.read_bytes() == small
    assert (tmp_path / "weights/bsrt/release.bin").read_bytes() == data         # the verified container stays
    marker = json.loads((tmp_path / "weights/bsrt/.complete-release.bin").read_text())
    assert marker == {"archive": "release.bin", "sha256": sha(data), "member": "BSRT_models/synthetic/BSRT_Small.pth",
                      "member_sha256": sha(small), "files": {"BSRT_Small.pth": len(small)}}
    assert f"took BSRT_models/synthetic/BSRT_Small.pth ({len(small)} bytes, sha256 {sha(small)})" in caplog.text
    assert F.status()[0]["note"] == (f"member BSRT_models/synthetic/BSRT_Small.pth extracted to BSRT_Small.pth "
                                     f"({len(small)} bytes, sha256 {sha(small)[:12]}...)")
    assert sorted(x.name for x in p.parent.iterdir() if not x.name.startswith(".")) == ["BSRT_Small.pth",
                                                                                        "release.bin"]
    p.write_bytes(small[:5])                                    # truncated: detected and taken out again
    assert F.status()[0]["note"] == "member not extracted"
    assert F.fetch("bsrt", progress=False).read_bytes() == small
    assert len(server.requests) == 1


@pytest.mark.parametrize("member, want", [
    ("*bsrt_large*.pth", (r"holds 2 files matching the member pattern '\*bsrt_large\*\.pth': "
                          r"BSRT_models/real/BSRT_Large_real\.pth, BSRT_models/synthetic/BSRT_Large\.pth; "
                          r"make `member` of entry 'bsrt' in .*registry\.json pick one")),
    (["*tiny*.pth", "*base*.pth"], (r"holds no file matching the member patterns '\*tiny\*\.pth', "
                                    r"'\*base\*\.pth'; its checkpoints are: BSRT_models/real/BSRT_Large_real\.pth, "
                                    r"BSRT_models/synthetic/BSRT_Large\.pth, BSRT_models/synthetic/BSRT_Small\.pth\. "
                                    r"Fix `member` of entry 'bsrt' in .*registry\.json")),
])
def test_no_or_several_matching_members_is_one_line_listing_them(env, server, tmp_path, capsys, member, want):
    from dpir import cli

    data = zip_bytes(BUNDLE)
    server.files["/bsrt.zip"] = data
    env(entry("bsrt", server, "/bsrt.zip", data, target="{weights}/bsrt/release.bin", member=member))
    assert cli.main(["fetch", "-q", "bsrt"]) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and re.search(want, lines[0]), lines
    assert sorted(x.name for x in (tmp_path / "weights/bsrt").iterdir() if not x.name.startswith(".")) == \
        ["release.bin"]                                          # verified and kept; nothing taken out
    # the first pattern that matches decides: a later one resolves nothing earlier left ambiguous
    env(entry("bsrt", server, "/bsrt.zip", data, target="{weights}/bsrt/release.bin",
              member=["*synthetic*large*.pth", "*large*.pth"]))
    assert F.fetch("bsrt", progress=False).read_bytes() == BUNDLE["BSRT_models/synthetic/BSRT_Large.pth"]


def test_a_bare_checkpoint_is_used_as_it_is(env, server, tmp_path):
    torch = pytest.importorskip("torch")
    buf = io.BytesIO()
    torch.save({"conv.weight": torch.arange(6.0).reshape(2, 3)}, buf)     # a torch checkpoint is a zip too
    data = buf.getvalue()
    assert zipfile.is_zipfile(io.BytesIO(data))
    server.files["/ckpt"] = data
    env(entry("bsrt", server, "/ckpt", data, target="{weights}/bsrt/release.bin", member="*BSRT_Small*.pth"))
    p = F.fetch("bsrt", progress=False)
    assert p == tmp_path / "weights/bsrt/release.bin" and p.read_bytes() == data
    assert torch.load(p)["conv.weight"].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert F.status()[0]["note"] == "a single file, used as it is"
    assert not (tmp_path / "weights/bsrt/.complete-release.bin").exists()


def test_member_of_a_tar_container_without_a_stated_length_is_recorded(env, server, tmp_path):
    """No hash, no Content-Length: the container counts as whole (and its hash is recorded) only after
    the tar reads whole; the member goes to extract_to."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, body in (("models/bsrt_small.pth", b"S" * 300), ("models/bsrt_large.pth", b"L" * 500)):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            t.addfile(info, io.BytesIO(body))
    data = buf.getvalue()
    server.lengths = False
    server.files["/b.tar.gz"] = data
    env(entry("b", server, "/b.tar.gz", target="{weights}/b/release.bin", member="*small*",
              extract_to="{weights}/b/picked"))
    p = F.fetch("b", progress=False)
    assert p == tmp_path / "weights/b/picked/bsrt_small.pth" and p.read_bytes() == b"S" * 300
    lock = json.loads((tmp_path / "registry.lock.json").read_text())["files"]
    assert lock["b"]["sha256"] == sha(data) and lock["b"]["size"] == len(data)


def test_member_entries_are_validated(env, server):
    env(entry("x", server, "/x", b"x", member="*.pth", archive="zip", extract_to="{weights}/x"))
    with pytest.raises(DpirError, match=r"member .* and archive .* exclude each other; set archive to null"):
        F.list_names()
    env(entry("x", server, "/x", b"x", member=[]))
    with pytest.raises(DpirError, match=r"member must be a glob or a non-empty list of globs \(got \[\]\)"):
        F.list_names()
    env(entry("x", server, "/x", b"x", member=["*.pth"]))
    assert registry.get("x").member == ("*.pth",)


# ------------------------------------------------------------------------------------ committed registry

def test_committed_registry_is_valid_and_complete():
    table = registry.entries()
    want = {"div2k_train_hr", "div2k_valid_hr", "div2k_train_lr_x4", "div2k_valid_lr_x4", "gopro", "hide",
            "gopro_test_restormer", "hide_test_restormer", "syntheticburst_val", "zurich_raw2rgb",
            "swinir_classical_x4", "fftformer_gopro", "rrdb_psnr_x4", "spynet", "lpips_alexnet",
            "topiq_nr_koniq", "topiq_fr_kadid", "timm_resnet50"}
    assert want <= set(table)
    v = table["div2k_valid_hr"]
    assert v.size == 448993893
    assert v.sha256 == "20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc"
    assert table["div2k_train_hr"].size == 3530603713
    assert table["div2k_valid_lr_x4"].sha256.startswith("a50a5d1c")
    for e in table.values():
        assert e.kind in ("dataset", "weights")
        assert all(u.startswith("https://") for u in e.urls)
        if e.kind == "dataset":
            assert e.archive == "zip" and e.extract_to.startswith("{data}/")
    assert table["syntheticburst_val"].gdrive_id == "1DHu3-_tGSc_8Wwwu6sHFaPtmd9ymd0rZ"
    assert table["lpips_alexnet"].target == "{torch_hub}/checkpoints/alexnet-owt-7be5be79.pth"


def test_registry_weight_urls_match_the_installed_libraries():
    import importlib.util
    spec = importlib.util.find_spec("pyiqa")
    if spec is None:
        pytest.skip("pyiqa not installed")
    topiq_src = (Path(spec.origin).parent / "archs/topiq_arch.py").read_text()
    table = registry.entries()
    for name in ("topiq_nr_koniq", "topiq_fr_kadid"):
        fname = table[name].target.rsplit("/", 1)[1]
        assert f"get_url_from_name('{fname}')" in topiq_src
        hf = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/"
        assert table[name].urls == (hf + fname,)
    tv = importlib.util.find_spec("torchvision")     # read the source: importing costs seconds
    alexnet_src = (Path(tv.origin).parent / "models/alexnet.py").read_text()
    assert f'url="{table["lpips_alexnet"].urls[0]}"' in alexnet_src


def test_bad_registry_is_rejected(env, server):
    env({"name": "x", "kind": "weights", "urls": ["https://a/b"], "target": "/abs/path"})
    with pytest.raises(DpirError, match=r"target '/abs/path' must start with one of"):
        F.list_names()
    env({"name": "x", "kind": "model", "urls": ["https://a/b"], "target": "{weights}/x"})
    with pytest.raises(DpirError, match="kind must be one of"):
        F.list_names()
    env({"name": "x", "kind": "weights", "urls": ["https://a/b"], "target": "{weights}/x", "sha256": "abc"})
    with pytest.raises(DpirError, match="sha256 must be 64"):
        F.list_names()


def test_timm_default_resnet50_weights_are_the_registered_hf_repo():
    timm = pytest.importorskip("timm")
    cfg = timm.models.get_pretrained_cfg("resnet50")
    target = registry.entries()["timm_resnet50"].target
    assert cfg.hf_hub_id == "timm/resnet50.a1_in1k"
    assert target.startswith("{hf_hub}/models--timm--resnet50.a1_in1k/snapshots/")
