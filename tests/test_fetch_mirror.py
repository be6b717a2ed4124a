"""$DPIR_MIRROR: the committed registry's files fetched from a mirror tree that http.server serves on
127.0.0.1 (and through file://), with only the hashes replaced by the fixtures'; the BSRT release
bundle through the mirror up to `dpir import-official`.  No other host is contacted."""
from __future__ import annotations

import functools
import io
import json
import threading
import urllib.parse
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import test_fetch as base  # tests/test_fetch.py: the loopback-only environment and the zip helper

from dpir import cli
from dpir import fetch as F
from dpir.errors import DpirError
from dpir.fetch import download, registry

sha, zip_bytes = base.sha, base.zip_bytes
server, env = base.server, base.env          # the fixtures, used by name

COMMITTED = json.loads((registry.HERE / "registry.json").read_text())["entries"]
#: where a mirror must hold the files of these committed entries (<mirror>/<host>/<path>)
LR_X4 = "data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_valid_LR_bicubic_X4.zip"
SWINIR = "github.com/JingyunLiang/SwinIR/releases/download/v0.0/001_classicalSR_DF2K_s64w8_SwinIR-M_x4.pth"
HIDE = "www.dropbox.com/s/04w3wqxcuin9dy8/HIDE_dataset.zip"          # the committed URL ends in ?dl=1
BSRT = "drive.google.com/1Bv1ZwoE3s8trhG--wjB0Yt6WJIQPpvsn"           # a gdrive_id entry
#: the official BSRT layout at toy width (as in tests/test_paper_tasks.py)
BSRT_TINY = {"burst_size": 3, "embed_dim": 12, "depths": [1, 1], "num_heads": [2, 2], "window_size": 4,
             "mlp_ratio": 2.0, "num_feat": 8, "groups": 2, "flow": True, "extract": "swin", "trunk": "swin"}


class Mirror:
    """A folder tree served by the standard library's static file server on 127.0.0.1 (port 0)."""

    def __init__(self, root: Path):
        self.root, self.requests = root, []
        outer = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests.append(self.path)
                super().do_GET()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def put(self, rel: str, data: bytes) -> None:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    m = Mirror(tmp_path / "mirror")
    monkeypatch.setenv("DPIR_MIRROR", m.base + "/")          # a trailing slash is fine
    yield m
    m.close()


def committed(name: str, data: bytes | None) -> dict:
    """The committed registry entry ``name`` with the fixture's hash and size (the only change)."""
    e = dict(next(e for e in COMMITTED if e["name"] == name))
    e["sha256"], e["size"] = (sha(data), len(data)) if data is not None else (None, None)
    return e


def one_line_error(capsys, *argv) -> str:
    capsys.readouterr()
    assert cli.main(list(argv)) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("dpir: error: ") and "Traceback" not in lines[0], lines
    return lines[0]


# ------------------------------------------------------------------------------------ mapping

def test_mirror_urls_are_host_and_path_of_the_original():
    base_url = "http://mirror.internal:8080/dpir"
    assert download.mirror_url(base_url, "https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_valid_HR.zip") == \
        "http://mirror.internal:8080/dpir/data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_valid_HR.zip"
    assert download.mirror_url(base_url, "https://www.dropbox.com/s/04w3wqxcuin9dy8/HIDE_dataset.zip?dl=1") == \
        "http://mirror.internal:8080/dpir/" + HIDE
    assert download.gdrive_mirror_url(base_url, "1Bv1ZwoE3s8trhG--wjB0Yt6WJIQPpvsn") == \
        "http://mirror.internal:8080/dpir/" + BSRT


# ------------------------------------------------------------------------------------ fetching

def test_committed_entries_come_from_the_mirror_and_are_verified(env, server, mirror, tmp_path):
    lr = zip_bytes({"DIV2K_valid_LR_bicubic/X4/0801x4.png": b"lr pixels"})
    weights = b"swinir weights" * 100
    hide = zip_bytes({"HIDE_dataset/GT/a.png": b"gt"})
    mirror.put(LR_X4, lr)
    mirror.put(SWINIR, weights)
    mirror.put(HIDE, hide)
    env(committed("div2k_valid_lr_x4", lr), committed("swinir_classical_x4", weights), committed("hide", None))
    out = F.fetch("div2k_valid_lr_x4", progress=False)
    assert out == tmp_path / "data/div2k" and (out / "DIV2K_valid_LR_bicubic/X4/0801x4.png").read_bytes() == b"lr pixels"
    p = F.fetch("swinir_classical_x4", progress=False)
    assert p == tmp_path / "weights/swinir/001_classicalSR_DF2K_s64w8_SwinIR-M_x4.pth" and p.read_bytes() == weights
    assert (F.fetch("hide", progress=False) / "HIDE_dataset/GT/a.png").read_bytes() == b"gt"
    assert mirror.requests == ["/" + LR_X4, "/" + SWINIR, "/" + HIDE]
    assert server.requests == []                     # the test's own fake origin server is never asked either
    # a hash unknown to the registry is recorded with the mirror URL it came from
    lock = json.loads((tmp_path / "registry.lock.json").read_text())["files"]
    assert lock == {"hide": {**lock["hide"], "sha256": sha(hide), "size": len(hide), "url": mirror.base + "/" + HIDE}}


def test_a_wrong_file_on_the_mirror_fails_its_hash(env, server, mirror, tmp_path):
    good, bad = b"swinir weights" * 100, b"swinir weightz" * 100
    mirror.put(SWINIR, bad)
    env(committed("swinir_classical_x4", good))
    with pytest.raises(DpirError, match=f"checksum mismatch .*expected sha256 {sha(good)}.*got {sha(bad)}"):
        F.fetch("swinir_classical_x4", progress=False)
    assert [p.name for p in (tmp_path / "weights/swinir").iterdir()] == [
        ".001_classicalSR_DF2K_s64w8_SwinIR-M_x4.pth.lock"]       # the bad download was deleted


def test_an_unreachable_or_incomplete_mirror_is_one_line_naming_the_setting(env, server, mirror, monkeypatch,
                                                                         capsys, tmp_path):
    weights = b"swinir weights" * 100
    env(committed("swinir_classical_x4", weights), committed("bsrt_weights", None))
    line = one_line_error(capsys, "fetch", "-q", "swinir_classical_x4")           # the file is not on it
    assert f"from the mirror $DPIR_MIRROR={mirror.base}: {mirror.base}/{SWINIR}: HTTP 404" in line
    assert "unset DPIR_MIRROR to download from the original hosts" in line
    mirror.close()                                                                  # the mirror goes down
    for name, where in (("swinir_classical_x4", SWINIR), ("bsrt_weights", BSRT)):
        line = one_line_error(capsys, "fetch", "-q", name)
        assert f"from the mirror $DPIR_MIRROR={mirror.base}: {mirror.base}/{where}: " in line
        assert "Connection refused" in line and f"The mirror must serve it at {mirror.base}/{where}: " in line
    for value in ("mirror.internal/dpir", "ftp://mirror.internal", "http://"):
        monkeypatch.setenv("DPIR_MIRROR", value)
        line = one_line_error(capsys, "fetch", "-q", "swinir_classical_x4")
        assert f"$DPIR_MIRROR={value!r} is not a mirror base URL" in line and "unset DPIR_MIRROR" in line
    assert not (tmp_path / "weights").exists() or not list((tmp_path / "weights").rglob("*.pth"))


def test_a_file_url_mirror_needs_no_server(env, server, tmp_path, monkeypatch):
    weights = b"swinir weights" * 100
    tree = tmp_path / "offline-mirror"
    (tree / SWINIR).parent.mkdir(parents=True)
    (tree / SWINIR).write_bytes(weights)
    env(committed("swinir_classical_x4", weights))
    monkeypatch.setenv("DPIR_MIRROR", tree.as_uri())
    opened = []
    opener = urllib.request.build_opener()

    def file_only(req, *a, **k):
        url = req.full_url if hasattr(req, "full_url") else req
        assert urllib.parse.urlparse(url).scheme == "file", url
        opened.append(url)
        return opener.open(req, *a, **k)

    monkeypatch.setattr(urllib.request, "urlopen", file_only)
    assert F.fetch("swinir_classical_x4", progress=False).read_bytes() == weights
    assert opened == [f"{tree.as_uri()}/{SWINIR}"]


# ------------------------------------------------------------------------------------ BSRT bundle

def test_bsrt_bundle_through_the_mirror_up_to_import_official(env, server, mirror, tmp_path):
    """The release is one Drive file; served as a zip of several checkpoints, `dpir fetch bsrt_weights`
    takes out the synthetic BSRT-Small by the committed `member` globs, and import-official loads it."""
    torch = pytest.importorskip("torch")
    from helpers import base_config, same_weights

    from dpir.checkpoint import load_network
    from dpir.nets import build_network
    from dpir.official import import_official

    torch.manual_seed(3)
    small = build_network("bsrt", **BSRT_TINY)
    buf = io.BytesIO()
    torch.save(small.state_dict(), buf)
    bundle = zip_bytes({"BSRT_pretrained/synthetic/bsrt_small.pth": buf.getvalue(),
                        "BSRT_pretrained/synthetic/bsrt_large.pth": b"not this one",
                        "BSRT_pretrained/real/bsrt_small.pth": b"nor this one",
                        "BSRT_pretrained/pwcnet.pth": b"nor this"})
    mirror.put(BSRT, bundle)
    env(committed("bsrt_weights", bundle))
    p = F.fetch("bsrt_weights", progress=False)
    assert p == tmp_path / "weights/bsrt/small/bsrt_small.pth" and p.read_bytes() == buf.getvalue()
    assert mirror.requests == ["/" + BSRT]
    cfg = base_config(tmp_path, networks={"bsrt_burst": {"official": "bsrt_weights",
                                                         "kwargs": {**BSRT_TINY, "base_skip": False}}})
    out = import_official(cfg, "bsrt_burst")
    meta = json.loads((out.parent / "model.json").read_text())
    assert meta["official_source"] == "fetch:bsrt_weights" and meta["official_path"] == str(p)
    assert meta["official_sha256"] == sha(buf.getvalue())
    assert same_weights(load_network(out.parent, expect_arch="bsrt"), small)
    assert mirror.requests == ["/" + BSRT]                       # verified again, never downloaded again
