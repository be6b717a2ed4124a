"""Reliability of the download/fetch subsystem (issue 11): bounded extraction, per-archive extraction,
an unpoisonable checksum lock, --force that never loses a good file, and one-line errors for bad
environment variables and a broken lock.  Everything runs against the 127.0.0.1 server of
tests/test_fetch.py; no other host is contacted."""
from __future__ import annotations

import io
import json
import logging
import re
import tarfile
import zipfile
from pathlib import Path

import pytest
import test_fetch as base  # tests/test_fetch.py: its 127.0.0.1 server, fixtures and helpers

from dpir import cli
from dpir import fetch as F
from dpir.errors import DpirError
from dpir.fetch import archive, download, registry

entry, sha, zip_bytes = base.entry, base.sha, base.zip_bytes
server, env = base.server, base.env          # the fixtures, used by name

REPO = Path(__file__).resolve().parents[2]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("dpir: error: "), err
    assert "Traceback" not in err
    return lines[0]


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


ZEROS = 8 * 2**20          # 8 MiB of zeros: a ~8 KB zip, i.e. a ratio of about 1000


def bomb(tmp_path: Path, kind: str) -> Path:
    if kind == "zip":
        p = tmp_path / "bomb.zip"
        with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("DIV2K_valid_HR/0801.png", b"tiny")
            z.writestr("DIV2K_valid_HR/zeros.bin", bytes(ZEROS))
        return p
    p = tmp_path / "bomb.tar.gz"
    with tarfile.open(p, "w:gz") as t:
        info = tarfile.TarInfo("bursts/zeros.bin")
        info.size = ZEROS
        t.addfile(info, io.BytesIO(bytes(ZEROS)))
    return p


# ------------------------------------------------------------------------------------ 1. bombs

@pytest.mark.parametrize("case", ["zip_ratio", "tar_ratio", "lying_headers", "declared_unpacked_size"])
def test_archive_bombs_are_refused_and_leave_nothing(env, server, tmp_path, monkeypatch, case):
    """Attempt: extract a small zip / tar.gz that unpacks to 8 MiB of zeros (ratio ~1000), one whose
    headers under-declare the member sizes, and one beyond the unpacked_size its registry entry
    declares. Expected: a one-line DpirError "refusing to extract <archive>: ... more than the limit";
    no file of the archive is written, no temporary folder is left, the target folder is not created."""
    work = tmp_path / "work"
    work.mkdir()
    if case == "declared_unpacked_size":
        data = zip_bytes({"gopro/a.png": b"x" * 5000, "gopro/b.png": b"y" * 5000})
        server.files["/g.zip"] = data
        env(entry("g", server, "/g.zip", data, kind="dataset", archive="zip", target="{data}/g/g.zip",
                  extract_to="{data}/g/out", unpacked_size=9999))
        with pytest.raises(DpirError) as err:
            F.fetch("g", progress=False)
        dest = tmp_path / "data/g/out"
        assert "declare 10000 bytes" in str(err.value) and "unpacked_size" in str(err.value)
    else:
        arc = bomb(work, "tar" if case == "tar_ratio" else "zip")
        if case == "lying_headers":
            monkeypatch.setattr(archive, "_declared_size", lambda member: 0)   # headers claim nothing
        dest = work / "dest"
        before = tree(tmp_path)
        with pytest.raises(DpirError) as err:
            archive.extract(arc, dest, digest="d", kind="tar" if case == "tar_ratio" else "zip")
        assert tree(tmp_path) == before
        want = {"lying_headers": "although its members declare 0", "zip_ratio": f"declare {ZEROS + 4} bytes",
                "tar_ratio": f"declare {ZEROS} bytes"}[case]
        assert want in str(err.value) and "DPIR_EXTRACT_MAX_RATIO" in str(err.value)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("refusing to extract ") and "Nothing was extracted" in msg
    assert not dest.exists()
    # the limit is a module constant that the environment overrides: a genuine archive gets through
    if case == "zip_ratio":
        monkeypatch.setenv("DPIR_EXTRACT_MAX_RATIO", "5000")
        archive.extract(arc, dest, digest="d", kind="zip")
        assert (dest / "DIV2K_valid_HR/zeros.bin").stat().st_size == ZEROS


# ------------------------------------------------------------------------------------ 2. shared folder

def test_archives_sharing_a_top_level_folder_never_delete_each_other(tmp_path):
    """Attempt: extract two zips that both contain DIV2K_valid_LR_bicubic/ (X4 and X2) into one folder,
    then re-extract the first after its marker was lost. Expected: each extraction only adds its own
    files; the other archive's files stay and its marker keeps saying "extracted"."""
    x4, x2 = tmp_path / "DIV2K_valid_LR_bicubic_X4.zip", tmp_path / "DIV2K_valid_LR_bicubic_X2.zip"
    x4.write_bytes(zip_bytes({"DIV2K_valid_LR_bicubic/X4/0801x4.png": b"four"}))
    x2.write_bytes(zip_bytes({"DIV2K_valid_LR_bicubic/X2/0801x2.png": b"two"}))
    dest = tmp_path / "div2k"
    archive.extract(x4, dest, digest="4", kind="zip")
    archive.extract(x2, dest, digest="2", kind="zip")
    f4, f2 = dest / "DIV2K_valid_LR_bicubic/X4/0801x4.png", dest / "DIV2K_valid_LR_bicubic/X2/0801x2.png"
    assert f4.read_bytes() == b"four" and f2.read_bytes() == b"two"
    assert archive.is_extracted(x4, dest, "4") and archive.is_extracted(x2, dest, "2")
    assert not archive.is_extracted(x4, dest, "other-hash")
    archive.marker_path(dest, x4).unlink()                 # X4 interrupted / re-done: X2 must survive
    archive.extract(x4, dest, digest="4", kind="zip")
    assert f4.read_bytes() == b"four" and f2.read_bytes() == b"two"
    assert archive.is_extracted(x4, dest, "4") and archive.is_extracted(x2, dest, "2")
    assert not [p for p in dest.iterdir() if p.name.startswith(".extract-")]


def _lr_zips(tmp_path: Path) -> tuple[Path, Path]:
    x2, x4 = tmp_path / "DIV2K_valid_LR_bicubic_X2.zip", tmp_path / "DIV2K_valid_LR_bicubic_X4.zip"
    x2.write_bytes(zip_bytes({"DIV2K_valid_LR_bicubic/X2/0801x2.png": b"two" * 10,
                              "DIV2K_valid_LR_bicubic/X2/0802x2.png": b"TWO" * 10}))
    x4.write_bytes(zip_bytes({"DIV2K_valid_LR_bicubic/X4/0801x4.png": b"four" * 5,
                              "DIV2K_valid_LR_bicubic/X4/0802x4.png": b"FOUR" * 5}))
    return x2, x4


def test_markers_are_manifests_and_partial_extractions_are_redone(tmp_path):
    """Attempt: extract the X2 then the X4 LR zip (both hold DIV2K_valid_LR_bicubic/) into one folder;
    delete one X2 file, truncate one X4 file; lose the X4 marker and re-extract X2. Expected: each marker
    lists exactly its archive's files with their sizes; a missing or truncated file makes only its own
    archive "not extracted", and extracting it again restores that file alone; files whose marker was
    lost are never removed by another archive's extraction."""
    x2, x4 = _lr_zips(tmp_path)
    dest = tmp_path / "div2k"
    archive.extract(x2, dest, digest="2", kind="zip")
    archive.extract(x4, dest, digest="4", kind="zip")
    lr = dest / "DIV2K_valid_LR_bicubic"
    assert tree(lr) == ["X2", "X2/0801x2.png", "X2/0802x2.png", "X4", "X4/0801x4.png", "X4/0802x4.png"]
    m2 = json.loads(archive.marker_path(dest, x2).read_text())
    assert m2 == {"archive": x2.name, "sha256": "2", "entries": ["DIV2K_valid_LR_bicubic"],
                  "files": {"DIV2K_valid_LR_bicubic/X2/0801x2.png": 30, "DIV2K_valid_LR_bicubic/X2/0802x2.png": 30}}
    assert json.loads(archive.marker_path(dest, x4).read_text())["files"] == {
        "DIV2K_valid_LR_bicubic/X4/0801x4.png": 20, "DIV2K_valid_LR_bicubic/X4/0802x4.png": 20}

    (lr / "X2/0802x2.png").unlink()                             # partial: a file gone
    assert not archive.is_extracted(x2, dest, "2") and archive.is_extracted(x4, dest, "4")
    (lr / "X4/0801x4.png").write_bytes(b"four")                 # corrupted: cut short
    assert not archive.is_extracted(x4, dest, "4")
    inodes = {p: (lr / p).stat().st_ino for p in ("X2/0801x2.png", "X4/0801x4.png", "X4/0802x4.png")}
    archive.extract(x2, dest, digest="2", kind="zip")           # rewrites X2's files only
    assert (lr / "X2/0802x2.png").read_bytes() == b"TWO" * 10 and (lr / "X4/0801x4.png").read_bytes() == b"four"
    assert [(lr / p).stat().st_ino == i for p, i in inodes.items()] == [False, True, True]
    assert archive.is_extracted(x2, dest, "2") and not archive.is_extracted(x4, dest, "4")
    archive.extract(x4, dest, digest="4", kind="zip")
    assert (lr / "X4/0801x4.png").read_bytes() == b"four" * 5
    assert archive.is_extracted(x2, dest, "2") and archive.is_extracted(x4, dest, "4")

    archive.marker_path(dest, x4).unlink()                      # X4's marker lost, its files still there
    archive.marker_path(dest, x2).unlink()
    archive.extract(x2, dest, digest="2", kind="zip")
    assert (lr / "X4/0801x4.png").read_bytes() == b"four" * 5 and (lr / "X4/0802x4.png").read_bytes() == b"FOUR" * 5
    assert not archive.is_extracted(x4, dest, "4")
    archive.extract(x4, dest, digest="4", kind="zip")
    assert archive.is_extracted(x2, dest, "2") and archive.is_extracted(x4, dest, "4")
    assert not [p for p in dest.iterdir() if p.name.startswith(".extract-")]


def test_the_x2_and_x4_zips_through_fetch_keep_each_other(env, server, tmp_path):
    """Attempt: `dpir fetch` the X2 and the X4 LR entries (same extract_to), then --force the X2 one.
    Expected: both stay extracted, with every file of both zips."""
    x2, x4 = _lr_zips(tmp_path)
    for x in (x2, x4):
        server.files["/" + x.name] = x.read_bytes()
    env(*[entry(f"lr_{x.stem[-2:].lower()}", server, "/" + x.name, x.read_bytes(), kind="dataset", archive="zip",
                target="{data}/div2k/" + x.name, extract_to="{data}/div2k") for x in (x2, x4)])
    out = F.fetch("lr_x2", progress=False)
    assert F.fetch("lr_x4", progress=False) == out
    F.fetch("lr_x2", force=True, progress=False)
    assert [r["note"] for r in F.status()] == ["extracted", "extracted"]
    assert tree(out / "DIV2K_valid_LR_bicubic") == ["X2", "X2/0801x2.png", "X2/0802x2.png", "X4",
                                                    "X4/0801x4.png", "X4/0802x4.png"]


def test_archives_that_clash_in_one_folder_are_refused_and_change_nothing(tmp_path):
    """Attempt: extract a second archive holding the same path as the first with other bytes, one
    holding a file where the first has a folder, and one where a stray file of the user stands in the
    way. Expected: a one-line error naming the path and the other archive (or saying the path is not
    this archive's); nothing in the folder changes; a same-size duplicate is fine."""
    dest = tmp_path / "d"
    a = tmp_path / "a.zip"
    a.write_bytes(zip_bytes({"top/x.png": b"aaaa", "top/sub/y.png": b"y"}))
    archive.extract(a, dest, digest="a", kind="zip")
    before = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    cases = {
        "b.zip": ({"top/x.png": b"bbbbbb"}, (r"top/x\.png is a file of 4 bytes there that archive a\.zip .*holds, "
                                              r"while this archive's copy has 6 bytes; give their registry entries "
                                              r"different extract_to")),
        "c.zip": ({"top/sub": b"file"}, r"top/sub is a folder \(or link\) where it has a file"),
        "d.zip": ({"stray/z.png": b"z"}, (r"stray is a file \(or link\) where it has a folder.* that this archive "
                                          r"does not produce; move it away")),
    }
    (dest / "stray").write_bytes(b"the user's file")
    before[dest / "stray"] = b"the user's file"
    for name, (members, want) in cases.items():
        arc = tmp_path / name
        arc.write_bytes(zip_bytes(members))
        with pytest.raises(DpirError, match=want) as err:
            archive.extract(arc, dest, digest=name, kind="zip")
        assert "\n" not in str(err.value) and "Nothing was changed" in str(err.value)
        assert {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()} == before
        assert not archive.marker_path(dest, arc).exists()
    same = tmp_path / "e.zip"
    same.write_bytes(zip_bytes({"top/x.png": b"aaaa", "top/e.png": b"e"}))
    archive.extract(same, dest, digest="e", kind="zip")
    assert archive.is_extracted(a, dest, "a") and archive.is_extracted(same, dest, "e")


def test_an_updated_archive_drops_only_its_own_old_files(tmp_path):
    """Attempt: re-extract an archive whose new version no longer holds a file, into a folder where
    another archive and the user keep files beside it; and find a marker of the old format (top-level
    entries only), once with every file there and once with one missing. Expected: only the dropped
    file of this archive goes; an old-format marker gets its manifest without unpacking when every
    file is there, else the archive is extracted again (removing nothing)."""
    dest = tmp_path / "d"
    v1, other = tmp_path / "v1" / "a.zip", tmp_path / "o.zip"
    v1.parent.mkdir()
    v1.write_bytes(zip_bytes({"top/keep.png": b"k", "top/gone/old.png": b"old"}))
    other.write_bytes(zip_bytes({"top/gone/other.png": b"o"}))
    archive.extract(v1, dest, digest="v1", kind="zip")
    archive.extract(other, dest, digest="o", kind="zip")
    (dest / "top/mine.txt").write_bytes(b"user")
    v2 = tmp_path / "a.zip"
    v2.write_bytes(zip_bytes({"top/keep.png": b"K"}))
    archive.extract(v2, dest, digest="v2", kind="zip")
    assert tree(dest / "top") == ["gone", "gone/other.png", "keep.png", "mine.txt"]
    assert (dest / "top/keep.png").read_bytes() == b"K" and archive.is_extracted(other, dest, "o")
    # a marker of the old format: upgraded in place when every file is there, else extracted again
    old_format = {"archive": "a.zip", "sha256": "v2", "entries": ["top"]}
    archive.marker_path(dest, v2).write_text(json.dumps(old_format))
    assert not archive.is_extracted(v2, dest, "v2")
    inode = (dest / "top/keep.png").stat().st_ino
    archive.extract(v2, dest, digest="v2", kind="zip")
    assert archive.is_extracted(v2, dest, "v2") and (dest / "top/keep.png").stat().st_ino == inode
    assert json.loads(archive.marker_path(dest, v2).read_text()) == {**old_format, "files": {"top/keep.png": 1}}
    archive.marker_path(dest, v2).write_text(json.dumps(old_format))
    (dest / "top/keep.png").unlink()                            # what the old markers could hide
    archive.extract(v2, dest, digest="v2", kind="zip")
    assert archive.is_extracted(v2, dest, "v2") and (dest / "top/keep.png").read_bytes() == b"K"
    assert tree(dest / "top") == ["gone", "gone/other.png", "keep.png", "mine.txt"]


# ------------------------------------------------------------------------------------ 3. lock poisoning

def test_unconfirmed_download_is_never_recorded_and_forget_clears_a_bad_record(env, server, tmp_path,
                                                                               capsys, caplog):
    """Attempt: fetch an entry without a published hash from a server that sends no Content-Length and
    cuts the body short; then, with a bad hash already in registry.lock.json, fetch --force the right
    file. Expected: the short file is kept but its hash is NOT recorded (log warning); a zip that passes
    its own integrity check is recorded; the refusal names `dpir fetch --forget NAME`, which drops the
    record and stamp, after which --force records the right file."""
    good = b"the right bytes " * 200
    server.lengths = False
    server.files["/w/u.bin"] = good
    server.cut["/w/u.bin"] = 1000
    env(entry("u", server, "/w/u.bin"),
        entry("z", server, "/z.zip", kind="dataset", archive="zip", target="{data}/z/z.zip",
              extract_to="{data}/z"))
    lock = tmp_path / "registry.lock.json"
    with caplog.at_level(logging.WARNING, logger="dpir.fetch"):
        p = F.fetch("u", progress=False)
        assert p.read_bytes() == good[:1000]                         # kept, but ...
        assert not lock.exists()                                     # ... never the reference
        assert "did not state the file's length" in caplog.text and "NOT recorded" in caplog.text
        F.fetch("u", progress=False)                                 # found again: still not recorded
        assert not lock.exists()
    # an archive without a stated length is recorded once it reads whole
    zdata = zip_bytes({"z/a.txt": b"a" * 100})
    server.files["/z.zip"] = zdata
    assert (F.fetch("z", progress=False) / "z/a.txt").read_bytes() == b"a" * 100
    assert json.loads(lock.read_text())["files"]["z"]["sha256"] == sha(zdata)

    # a lock poisoned by an earlier (pre-fix) short download
    bad = good[:1000]
    rec = json.loads(lock.read_text())
    rec["files"]["u"] = {"sha256": sha(bad), "size": len(bad), "url": "x", "recorded": "then"}
    lock.write_text(json.dumps(rec))
    server.lengths = True
    rc, _, err = run_cli(capsys, "fetch", "--force", "-q", "u")
    line = one_line_error(err)
    assert rc == 2 and "dpir fetch --forget u" in line and str(lock) in line
    rc, out, _ = run_cli(capsys, "fetch", "--forget", "u")
    assert rc == 0 and f"dropped the recorded sha256 {sha(bad)}" in out
    assert "u" not in json.loads(lock.read_text())["files"] and "z" in json.loads(lock.read_text())["files"]
    assert not (p.parent / ".u.bin.sha256").exists()
    rc, _, _ = run_cli(capsys, "fetch", "--force", "-q", "u")
    assert rc == 0 and p.read_bytes() == good
    assert json.loads(lock.read_text())["files"]["u"]["sha256"] == sha(good)
    rc, out, _ = run_cli(capsys, "fetch", "--forget")
    assert rc == 2


# ------------------------------------------------------------------------------------ 4. --force

def test_force_with_the_server_down_keeps_the_verified_file(env, server, tmp_path, capsys):
    """Attempt: `dpir fetch --force NAME` for a verified file while its server is down. Expected: exit 2
    with one line saying the download failed and the existing file was left as it was; the file
    is untouched and still verifies."""
    data = b"verified weights" * 100
    server.files["/w/good.pth"] = data
    env(entry("good", server, "/w/good.pth", data))
    p = F.fetch("good", progress=False)
    server.close()                                             # the server goes down
    rc, _, err = run_cli(capsys, "fetch", "--force", "-q", "good")
    line = one_line_error(err)
    assert rc == 2 and "could not download good.pth" in line and f"{p} was left as it was" in line
    assert p.read_bytes() == data and not download.part_path(p).exists()
    assert F.status(["good"])[0]["state"] == "present"


# ------------------------------------------------------------------------------------ 5. env vars

@pytest.mark.parametrize("var", ["DPIR_DATA", "DPIR_WEIGHTS", "TORCH_HOME", "HF_HUB_CACHE",
                                 "DPIR_REGISTRY_LOCK"])
def test_root_variable_at_a_file_or_lock_variable_at_a_folder_is_one_line(env, server, tmp_path,
                                                                         monkeypatch, capsys, var):
    """Attempt: point $DPIR_DATA / $DPIR_WEIGHTS / $TORCH_HOME / $HF_HUB_CACHE at a regular file, or
    $DPIR_REGISTRY_LOCK at a folder, and run `dpir fetch --list` and `dpir fetch NAME`. Expected: exit 2
    with one line naming the variable and the fix; no traceback."""
    env(entry("d", server, "/d.bin", target="{data}/d.bin"), entry("w", server, "/w.bin"),
        entry("t", server, "/t.bin", target="{torch_hub}/t.bin"),
        entry("h", server, "/h.bin", target="{hf_hub}/h.bin"))
    odd = tmp_path / "odd"
    if var == "DPIR_REGISTRY_LOCK":
        odd.mkdir()
    else:
        odd.write_text("not a folder")
    monkeypatch.setenv(var, str(odd))
    name = {"DPIR_DATA": "d", "DPIR_WEIGHTS": "w", "TORCH_HOME": "t", "HF_HUB_CACHE": "h"}.get(var, "w")
    for argv in (["fetch", "--list"], ["fetch", "-q", name]):
        rc, _, err = run_cli(capsys, *argv)
        line = one_line_error(err)
        assert rc == 2 and f"${var}={odd}" in line and re.search(r"[Pp]oint (it|" + var + ") at a", line)


# ------------------------------------------------------------------------------------ 6. fix commands

def test_every_fetch_command_the_harness_prints_is_a_registry_name():
    """Attempt: take every `dpir fetch NAME` the harness prints: fetch_command() of every weights file
    of every metric preset that needs weights (the score JSON and report footnotes), and every literal
    `dpir fetch NAME` in dpir/. Expected: each NAME resolves in the committed registry, and a weights
    name lands at the very file require_weights() looks for, from the same URL."""
    from dpir.metrics import METRICS, get_metric
    from dpir.metrics.weights import WEIGHTS, fetch_command

    checked = set()
    for metric in METRICS:
        m = get_metric(metric)
        if not m.needs_weights:
            continue
        assert m.weights
        for w in m.weights:
            cmd = fetch_command(w)
            assert re.fullmatch(r"dpir fetch [a-z0-9_]+", cmd), cmd
            e = registry.get(cmd.split()[-1])
            assert e.kind == "weights" and e.target == "{torch_hub}/" + WEIGHTS[w].relpath
            assert WEIGHTS[w].url in e.urls
            checked.add(w)
    assert checked == {"lpips_alex", "topiq_nr", "topiq_fr"}
    printed = set()
    for src in (REPO / "dpir").rglob("*.py"):
        for m in re.finditer(r"dpir fetch ((?:--\w+ )*)([a-z0-9_]+)(\{?)", src.read_text()):
            if not m.group(3) and m.group(2) not in ("NAME",):
                printed.add(m.group(2))
    assert {"lpips_alex", "gopro"} <= printed
    known = set(registry.entries()) | set(registry.aliases())
    assert printed <= known, sorted(printed - known)


# ------------------------------------------------------------------------------------ 7. broken lock

@pytest.mark.parametrize("content", ['{"files": {"u": {"sha256": "ab', "", "[1, 2]", b"\xff\xfe\x00garbage"])
def test_corrupt_lock_file_is_one_line_naming_it(env, server, tmp_path, capsys, content):
    """Attempt: run `dpir fetch NAME` and `dpir fetch --list` with a registry.lock.json that is cut
    short, empty, not an object, or binary. Expected: exit 2 with one line naming the lock file and
    the fix (restore it from version control or delete it); no traceback."""
    env(entry("u", server, "/w/u.bin"))
    lock = tmp_path / "registry.lock.json"
    if isinstance(content, bytes):
        lock.write_bytes(content)
    else:
        lock.write_text(content)
    for argv in (["fetch", "-q", "u"], ["fetch", "--list"]):
        rc, _, err = run_cli(capsys, *argv)
        line = one_line_error(err)
        assert rc == 2 and f"{lock} is not a valid registry lock" in line
        assert "restore it from version control" in line and "delete it" in line
    assert server.requests == []
