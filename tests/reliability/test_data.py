"""Reliability of data preparation (issue 11): odd inputs and interrupted or concurrent runs.

Each test's docstring is one catalogue line: what is attempted and what the harness must do.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import warnings
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ROOT, base_config, write_yaml
from PIL import Image

from dpir import paths
from dpir.cli import main
from dpir.data.images import SkippedFile, read_image
from dpir.data.prepare import prepare, read_manifest
from dpir.errors import DpirError


def _png(path: Path, h: int, w: int, seed: int = 0) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def _folder_cfg(tmp_path: Path, src: Path) -> dict:
    return base_config(tmp_path, datasets={"mine": {"kind": "folder", "path": str(src)}},
                       tasks={"sr": {"test_datasets": ["mine"]}})


def _cli_args(tmp_path: Path, src: Path, data_dir: Path | None = None) -> list[str]:
    extra = write_yaml(tmp_path / "extra.yaml", {
        "out": str(tmp_path / "results"), "data_dir": str(data_dir or tmp_path / "data"),
        "datasets": {"mine": {"kind": "folder", "path": str(src)}}, "tasks": {"sr": {"test_datasets": ["mine"]}}})
    return ["prepare", "-q", "-c", str(ROOT / "config" / "config.yaml"), "-c", str(ROOT / "config" / "test.yaml"),
            "-c", str(extra), "--task", "sr", "--dataset", "mine"]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [ln for ln in err if ln.startswith("dpir: error:")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


@contextmanager
def _deadline(seconds: int):
    """Fail instead of hanging (a FIFO read blocks forever)."""
    def fire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _assert_complete(root: Path) -> dict:
    """The published folder holds exactly the files its manifest lists, and no private leftovers beside it."""
    man = json.loads((root / "manifest.json").read_text())
    ids = man["splits"]["test"]["ids"]
    for kind in ("gt", "lq"):
        assert sorted(p.stem for p in (root / "test" / kind).iterdir()) == sorted(ids)
    for i in ids:
        h, w = man["splits"]["test"]["sizes"][i]
        assert tuple(read_image(root / "test" / "gt" / f"{i}.png").shape) == (3, h, w)
        assert tuple(read_image(root / "test" / "lq" / f"{i}.png").shape) == (3, h // 4, w // 4)
    assert sorted(p.name for p in root.iterdir()) == ["manifest.json", "test"]
    leftovers = [p.name for p in root.parent.iterdir() if p.name.startswith(f".{root.name}.")
                 and not p.name.endswith(".lock")]
    assert leftovers == []
    return man


# --- 1. duplicate ids ------------------------------------------------------------------------------

def test_same_stem_different_extension_is_an_error_naming_both(tmp_path, capsys):
    """Attempt: a folder dataset holding a.png and a.jpg (both would be stored as a.png). Expected: prepare
    stops before writing anything with one line naming both files and saying to rename one."""
    src = tmp_path / "src"
    src.mkdir()
    _png(src / "a.png", 16, 16)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(src / "a.jpg")
    _png(src / "b.png", 16, 16)
    with pytest.raises(DpirError, match=r"a\.jpg and .*a\.png both give image id 'a'.*rename one"):
        prepare(_folder_cfg(tmp_path, src), "sr", "mine", splits=("test",))
    assert not (tmp_path / "data" / "sr" / "mine").exists()
    assert main(_cli_args(tmp_path, src)) == 2
    line = _one_line_error(capsys)
    assert "a.jpg" in line and "a.png" in line and "rename one" in line


# --- 2. decompression bombs --------------------------------------------------------------------------

def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _bomb_png(path: Path, w: int = 30000, h: int = 30000) -> Path:
    """A 100-byte PNG whose header declares w x h RGB pixels (its data is one row: never decoded)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 4))
                     + _chunk(b"IEND", b""))
    return path


def test_decompression_bomb_header_is_skipped_and_recorded(tmp_path):
    """Attempt: a tiny PNG whose header declares 30000x30000 pixels (Pillow's DecompressionBombError) among
    good images. Expected: it is skipped with a SkippedFile warning naming it and the pixel limit, recorded
    in the manifest's `skipped`, and the other images are prepared."""
    src = tmp_path / "src"
    src.mkdir()
    _png(src / "good.png", 16, 16)
    _bomb_png(src / "bomb.png")
    with pytest.warns(SkippedFile, match=r"bomb\.png.*decompression-bomb limit"):
        man = prepare(_folder_cfg(tmp_path, src), "sr", "mine", splits=("test",))
    assert man["splits"]["test"]["ids"] == ["good"]
    assert [s["id"] for s in man["skipped"]] == ["bomb"] and "MAX_IMAGE_PIXELS" in man["skipped"][0]["reason"]


def test_image_over_lowered_pixel_limit_is_skipped_not_fatal(tmp_path, monkeypatch):
    """Attempt: an image just over Image.MAX_IMAGE_PIXELS (where Pillow only warns with
    DecompressionBombWarning), with warnings turned into errors as under `python -W error`. Expected: it is
    skipped with a SkippedFile warning and recorded in the manifest, never a traceback."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 600)
    src = tmp_path / "src"
    src.mkdir()
    _png(src / "small.png", 16, 16)         # 256 pixels: under the limit
    _png(src / "large.png", 24, 32)         # 768 pixels: over the limit, under twice it (a warning in Pillow)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("error")
        warnings.simplefilter("always", SkippedFile)
        man = prepare(_folder_cfg(tmp_path, src), "sr", "mine", splits=("test",))
    assert any(issubclass(w.category, SkippedFile) and "large.png" in str(w.message) for w in caught)
    assert man["splits"]["test"]["ids"] == ["small"] and [s["id"] for s in man["skipped"]] == ["large"]


# --- 3. special files ------------------------------------------------------------------------------

@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_named_pipes_are_skipped_without_being_opened(tmp_path):
    """Attempt: an image folder holding named pipes (one called `x.png`, one without suffix) and a symlink to
    a good image. Expected: prepare finishes at once (never opens a pipe), warns SkippedFile naming both
    pipes, records `x` in the manifest's `skipped`, and prepares the real image and the symlinked one."""
    src = tmp_path / "src"
    src.mkdir()
    _png(tmp_path / "elsewhere.png", 16, 16, seed=1)
    _png(src / "good.png", 16, 16)
    os.symlink(tmp_path / "elsewhere.png", src / "linked.png")
    os.mkfifo(src / "x.png")
    os.mkfifo(src / "pipe")
    with _deadline(60), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        man = prepare(_folder_cfg(tmp_path, src), "sr", "mine", splits=("test",))
    msgs = [str(w.message) for w in caught if issubclass(w.category, SkippedFile)]
    assert any("x.png" in m and "named pipe" in m for m in msgs)
    assert any(m.startswith(f"skipping {src / 'pipe'}") and "named pipe" in m for m in msgs)
    assert man["splits"]["test"]["ids"] == ["good", "linked"]
    assert [s["id"] for s in man["skipped"]] == ["x"] and "named pipe" in man["skipped"][0]["reason"]
    with _deadline(10), pytest.raises(DpirError, match=r"x\.png: it is a named pipe \(FIFO\), not a regular file"):
        read_image(src / "x.png")


# --- 4. images smaller than a method's padding ----------------------------------------------------

def _tiny_nets(tmp_path: Path) -> Path:
    from dpir.checkpoint import save_network
    from dpir.nets import build_network

    torch.manual_seed(0)
    specs = {
        "swinir_tiny": ("swinir", dict(upscale=4, in_chans=3, img_size=16, window_size=8, img_range=1.0, depths=[1],
                                       embed_dim=6, num_heads=[1], mlp_ratio=1.0, upsampler="pixelshuffledirect",
                                       resi_connection="1conv")),
        "mirnet_tiny": ("mirnet_s", dict(n_feat=8, n_rrg=1, n_msrb=1, height=2, width=1)),
        "fusion_tiny": ("fusion", dict(n_f=4, growth=2, n_layers=1, t_dim=8, t_hidden=8)),
        "bsrt_tiny": ("bsrt", dict(burst_size=2, embed_dim=8, depths=[1], num_heads=[2], window_size=8, mlp_ratio=1.0,
                                   num_feat=4, groups=2, flow=False, extract="conv", trunk="swin", base_skip=True)),
    }
    from dpir.diffusion.estimator import denoiser_range, fusion_range

    facts = {"mirnet_tiny": {"trained_for": denoiser_range(0.0, 1e3, "uniform")},        # DP-IR's range check
             "fusion_tiny": {"trained_for": fusion_range(20, {"T": 20, "beta_start": 1e-4, "beta_end": 2e-2})}}
    for name, (arch, kwargs) in specs.items():
        save_network(build_network(arch, **kwargs), tmp_path / "nets" / name, arch, kwargs, **facts.get(name, {}))
    return tmp_path / "nets"


@pytest.mark.parametrize("hw", [(3, 5), (1, 1)])
def test_images_smaller_than_the_window_restore_at_the_right_size(tmp_path, hw):
    """Attempt: restore a 3x5 (and a 1x1) input with DP-IR (SwinIR x4 with 8x8 windows, MIRNet-S, fusion net,
    tiny random weights) and with the SwinIR backbone row, and a burst of odd 3x5 frames with the BSRT
    backbone. Expected: no padding error; outputs of 4x (burst: 8x) the input size, finite."""
    from dpir.methods.base import BuildContext
    from dpir.methods.dpir import build
    from dpir.methods.simple import backbone

    nets = _tiny_nets(tmp_path)
    ctx = BuildContext(task_name="sr", task={"kind": "sr", "scale": 4}, networks_dir=str(nets),
                       device=torch.device("cpu"))
    h, w = hw
    y = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    method = build({"kind": "dpir", "ir": "swinir_tiny", "denoiser": "mirnet_tiny", "fusion": "fusion_tiny",
                    "T": 20, "tau": 3}, ctx)
    out = method.restore(y, torch.Generator().manual_seed(1))
    assert out.shape == (1, 3, 4 * h, 4 * w) and torch.isfinite(out).all()
    out = backbone({"network": "swinir_tiny"}, ctx).restore(y)
    assert out.shape == (1, 3, 4 * h, 4 * w) and torch.isfinite(out).all()
    burst_ctx = BuildContext(task_name="burst", task={"kind": "burst", "scale": 4}, networks_dir=str(nets),
                             device=torch.device("cpu"))
    frames = torch.rand(1, 2, 4, h, w, generator=torch.Generator().manual_seed(2))   # odd frames: BSRT wants even
    out = backbone({"network": "bsrt_tiny"}, burst_ctx).restore(frames)
    assert out.shape == (1, 3, 8 * h, 8 * w) and torch.isfinite(out).all()


def test_image_smaller_than_the_blur_kernel_is_skipped(tmp_path):
    """Attempt: prepare the deblur task (17x17 motion-blur kernels, reflect boundary) on a folder holding a
    6x6 image beside a 24x24 one. Expected: the 6x6 image is skipped with a SkippedFile warning naming it,
    its size and the kernel, recorded in the manifest; the other one is prepared."""
    src = tmp_path / "src"
    src.mkdir()
    _png(src / "big.png", 24, 24)
    _png(src / "small.png", 6, 6)
    cfg = base_config(tmp_path, datasets={"mine": {"kind": "folder", "path": str(src)}},
                      tasks={"deblur": {"test_datasets": ["mine"]}})
    with pytest.warns(SkippedFile, match=r"small: image 6x6 is too small for a 17x17 blur kernel"):
        man = prepare(cfg, "deblur", "mine", splits=("test",))
    assert man["splits"]["test"]["ids"] == ["big"] and [s["id"] for s in man["skipped"]] == ["small"]


def test_pad_to_multiple_any_size():
    """Attempt: pad images of 1..9 px per side (and 5-D bursts) to multiples of 1, 2, 8 and 32. Expected: the
    right padded size, the original pixels untouched at the top left, reflect padding where it fits."""
    from dpir.methods.simple import pad_to_multiple

    for h in (1, 2, 3, 5, 9):
        for w in (1, 4, 7):
            x = torch.rand(1, 3, h, w)
            for m in (1, 2, 8, 32):
                xp, size = pad_to_multiple(x, m)
                assert size == (h, w) and xp.shape[-2] % m == 0 and xp.shape[-1] % m == 0
                assert xp.shape[-2] - h < m and xp.shape[-1] - w < m and torch.equal(xp[..., :h, :w], x)
    x = torch.arange(12.0).view(1, 1, 3, 4)
    xp = pad_to_multiple(x, 5)[0]                       # 3x4 -> 5x5: small enough pads reflect
    assert torch.equal(xp[0, 0, 3, :4], x[0, 0, 1]) and torch.equal(xp[0, 0, :3, 4], x[0, 0, :, 2])
    burst = torch.rand(2, 3, 4, 3, 5)
    assert pad_to_multiple(burst, 2)[0].shape == (2, 3, 4, 4, 6)


# --- 5. data roots that are files -------------------------------------------------------------------

def test_data_dir_that_is_a_file_is_one_line(tmp_path, capsys):
    """Attempt: `data_dir` (where prepared data go) pointing at a regular file. Expected: one line naming
    the key and the file and saying to set it to a folder; exit status 2, no traceback."""
    src = tmp_path / "src"
    src.mkdir()
    _png(src / "a.png", 16, 16)
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    with pytest.raises(DpirError, match=r"config key data_dir: .*not_a_folder is a file, not a folder"):
        prepare(base_config(tmp_path, data_dir=str(blocker), datasets={"mine": {"kind": "folder", "path": str(src)}},
                            tasks={"sr": {"test_datasets": ["mine"]}}), "sr", "mine", splits=("test",))
    assert main(_cli_args(tmp_path, src, data_dir=blocker)) == 2
    line = _one_line_error(capsys)
    assert "data_dir" in line and "not_a_folder" in line
    # a dataset `path` that is a file is one line too
    assert main(_cli_args(tmp_path, blocker)) == 2
    assert "is not a folder" in _one_line_error(capsys)


# --- 6. concurrent and interrupted runs --------------------------------------------------------------

RACE = textwrap.dedent('''
    import os, sys, time
    from pathlib import Path
    import dpir.data.prepare as P

    def wait(barrier, tag):  # both processes hold a complete private folder before either publishes
        (barrier / f"{tag}-{os.getpid()}").touch()
        t0 = time.time()
        while len(list(barrier.glob(f"{tag}-*"))) < 2:
            if time.time() - t0 > 120:
                raise SystemExit("the other process never arrived")
            time.sleep(0.02)

    def racing(publish, barrier):
        def racing_publish(src, dst):
            wait(barrier, "ready")
            n = len(list(dst.parent.glob(f".{dst.name}.tmp-*")))
            (barrier / f"private-{os.getpid()}").write_text(str(n))
            wait(barrier, "go")
            publish(src, dst)
        return racing_publish

    if __name__ == "__main__":
        P.publish_dir = racing(P.publish_dir, Path(sys.argv[1]))
        from dpir.cli import main
        sys.exit(main(sys.argv[2:]))
''')


def test_two_concurrent_prepares_both_succeed_with_one_complete_result(tmp_path, monkeypatch):
    """Attempt: two prepares of the same (task, dataset) at once in two processes (`dpir prepare` in a
    subprocess, prepare() here), both finishing their work before either publishes. Expected: both succeed;
    the published folder is complete, its files are exactly those of its manifest, and no private or old
    folder is left beside it."""
    import importlib.util

    import dpir.data.prepare as P

    src = tmp_path / "src"
    src.mkdir()
    for k in range(3):
        _png(src / f"im{k}.png", 16, 20, seed=k)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    script = tmp_path / "race.py"
    script.write_text(RACE)
    spec = importlib.util.spec_from_file_location("_dpir_race", script)
    race = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(race)
    args = _cli_args(tmp_path, src)
    proc = subprocess.Popen([sys.executable, str(script), str(barrier), *args], cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        monkeypatch.setattr(P, "publish_dir", race.racing(P.publish_dir, barrier))
        assert main(args) == 0
    finally:
        out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out
    # both private folders existed side by side: the two runs really overlapped
    assert [int(p.read_text()) for p in sorted(barrier.glob("private-*"))] == [2, 2]
    man = _assert_complete(tmp_path / "data" / "sr" / "mine")
    assert man["splits"]["test"]["ids"] == ["im0", "im1", "im2"]


def test_crash_between_the_two_renames_is_recovered(tmp_path, monkeypatch):
    """Attempt: a second prepare that dies after renaming the old result aside and before renaming the new
    one in (the swap's second rename raises), with a stale private folder of a dead process beside it.
    Expected: the old complete result is kept aside and put back by the next read of the manifest or the
    next prepare, which then publishes a complete result and removes the leftovers."""
    from dpir import atomic

    src = tmp_path / "src"
    src.mkdir()
    _png(src / "a.png", 16, 16)
    cfg = _folder_cfg(tmp_path, src)
    prepare(cfg, "sr", "mine", splits=("test",))
    root = paths.prepared(cfg, "sr", "mine")
    _png(src / "b.png", 16, 16, seed=3)

    real, calls = atomic._rename, []

    def crashing_rename(a, b):      # the swap's renames (dpir.atomic.swap_in)
        calls.append((Path(a).name, Path(b).name))
        if len(calls) == 2:
            raise OSError("simulated crash between the renames")
        real(a, b)

    monkeypatch.setattr(atomic, "_rename", crashing_rename)
    with pytest.raises(OSError, match="simulated crash"):
        prepare(cfg, "sr", "mine", splits=("test",))
    monkeypatch.setattr(atomic, "_rename", real)
    assert calls[0] == ("mine", ".mine.old")
    assert not root.exists() and (root.parent / ".mine.old" / "manifest.json").exists()
    # readers find the previous complete result again
    assert read_manifest(cfg, "sr", "mine")["splits"]["test"]["ids"] == ["a"]
    _assert_complete(root)

    # a dead process's private folder (as a crash leaves it) is removed by the next prepare
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = root.parent / f".mine.tmp-{socket.gethostname()}-{int(dead.stdout)}-abc"
    (stale / "test").mkdir(parents=True)
    # and a crash between the renames again, now recovered by prepare itself
    calls.clear()
    monkeypatch.setattr(atomic, "_rename", crashing_rename)
    with pytest.raises(OSError, match="simulated crash"):
        prepare(cfg, "sr", "mine", splits=("test",))
    monkeypatch.setattr(atomic, "_rename", real)
    man = prepare(cfg, "sr", "mine", splits=("test",))
    assert man["splits"]["test"]["ids"] == ["a", "b"]
    assert not stale.exists()
    _assert_complete(root)
