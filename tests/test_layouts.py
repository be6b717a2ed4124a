"""Loaders for the real dataset layouts, on tiny fixture folders built here."""
from __future__ import annotations

import os
import pickle
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from dpir.data import layouts
from dpir.data.layouts import (
    BurstSample,
    Pair,
    div2k_pairs,
    gopro_pairs,
    hide_pairs,
    load_meta_info,
    read_png16,
    syntheticburst_val,
    write_png16,
    zurich_raw2rgb,
)
from dpir.data.burst_io import read_burst
from dpir.errors import DpirError


def png(path, h=4, w=4, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)
    return path


# ------------------------------------------------------------------------------------ DIV2K

@pytest.fixture
def div2k(tmp_path):
    for i in (801, 802, 803):
        png(tmp_path / "DIV2K_valid_HR" / f"0{i}.png", 8, 8)
        png(tmp_path / "DIV2K_valid_LR_bicubic" / "X4" / f"0{i}x4.png", 2, 2)
    return tmp_path


def test_div2k_official_pairs(div2k):
    pairs = div2k_pairs(div2k)
    assert [p.id for p in pairs] == ["0801", "0802", "0803"]
    assert pairs[1] == Pair("0802", div2k / "DIV2K_valid_LR_bicubic/X4/0802x4.png",
                            div2k / "DIV2K_valid_HR/0802.png")


def test_div2k_regenerate_has_no_lq_and_needs_no_lr_folder(div2k):
    import shutil
    shutil.rmtree(div2k / "DIV2K_valid_LR_bicubic")
    pairs = div2k_pairs(div2k, lr="regenerate")
    assert [(p.id, p.lq) for p in pairs] == [("0801", None), ("0802", None), ("0803", None)]
    with pytest.raises(DpirError, match=r"DIV2K_valid_LR_bicubic/X4 does not exist.*div2k_valid_lr_x4"):
        div2k_pairs(div2k)


def test_div2k_missing_counterparts_name_the_file(div2k):
    (div2k / "DIV2K_valid_LR_bicubic/X4/0802x4.png").unlink()
    with pytest.raises(DpirError, match=r"X4/0802x4\.png is missing"):
        div2k_pairs(div2k)
    png(div2k / "DIV2K_valid_LR_bicubic/X4/0802x4.png")
    (div2k / "DIV2K_valid_HR/0803.png").unlink()
    with pytest.raises(DpirError, match=r"0803x4\.png has no HR counterpart"):
        div2k_pairs(div2k)


def test_div2k_bad_arguments(div2k, tmp_path):
    with pytest.raises(DpirError, match="split"):
        div2k_pairs(div2k, split="test")
    with pytest.raises(DpirError, match="lr must be"):
        div2k_pairs(div2k, lr="matlab")
    with pytest.raises(DpirError, match=r"DIV2K_train_HR does not exist.*dpir fetch div2k_train_hr"):
        div2k_pairs(div2k, split="train")


# ------------------------------------------------------------------------------------ GoPro / HIDE

def test_gopro_large_layout_from_parent_folder(tmp_path):
    for scene, frames in (("GOPR0384_11_00", ("000001", "000002")), ("GOPR0385_11_01", ("003011",))):
        for f in frames:
            png(tmp_path / "GOPRO_Large/test" / scene / "blur" / f"{f}.png")
            png(tmp_path / "GOPRO_Large/test" / scene / "sharp" / f"{f}.png")
        png(tmp_path / "GOPRO_Large/test" / scene / "blur_gamma" / "000001.png")   # ignored
    pairs = gopro_pairs(tmp_path)
    assert [p.id for p in pairs] == ["GOPR0384_11_00/000001", "GOPR0384_11_00/000002",
                                     "GOPR0385_11_01/003011"]
    assert pairs[2].lq == tmp_path / "GOPRO_Large/test/GOPR0385_11_01/blur/003011.png"
    assert pairs[2].gt == tmp_path / "GOPRO_Large/test/GOPR0385_11_01/sharp/003011.png"
    assert gopro_pairs(tmp_path / "GOPRO_Large") == pairs
    (tmp_path / "GOPRO_Large/test/GOPR0384_11_00/sharp/000002.png").unlink()
    with pytest.raises(DpirError, match=r"GOPR0384_11_00/sharp/000002\.png is missing"):
        gopro_pairs(tmp_path)


def test_gopro_restormer_layout(tmp_path):
    for n in ("GOPR0396_11_00-000001", "GOPR0396_11_00-000002"):
        png(tmp_path / "test/GoPro/input" / f"{n}.png")
        png(tmp_path / "test/GoPro/target" / f"{n}.png")
    pairs = gopro_pairs(tmp_path)
    assert [p.id for p in pairs] == ["GOPR0396_11_00-000001", "GOPR0396_11_00-000002"]
    assert pairs[0].lq.parent.name == "input" and pairs[0].gt.parent.name == "target"
    png(tmp_path / "test/GoPro/target/extra.png")
    with pytest.raises(DpirError, match=r"GoPro/input/extra\.png is missing"):
        gopro_pairs(tmp_path)


def test_gopro_unknown_layout(tmp_path):
    with pytest.raises(DpirError, match=r"GOPRO_Large/test/<scene>.*dpir fetch gopro"):
        gopro_pairs(tmp_path)


def test_hide_dataset_layout(tmp_path):
    root = tmp_path / "HIDE_dataset"
    png(root / "test/test-close-ups/10fromGOPR1088.MP4.png")
    png(root / "test/test-long-shot/1fromGOPR0950.MP4.png")
    for n in ("10fromGOPR1088.MP4", "1fromGOPR0950.MP4", "9fromGOPR0001.MP4"):   # GT also holds train
        png(root / "GT" / f"{n}.png")
    pairs = hide_pairs(tmp_path)
    assert [p.id for p in pairs] == ["test-close-ups/10fromGOPR1088.MP4", "test-long-shot/1fromGOPR0950.MP4"]
    assert pairs[0].gt == root / "GT/10fromGOPR1088.MP4.png"
    (root / "GT/1fromGOPR0950.MP4.png").unlink()
    with pytest.raises(DpirError, match=r"GT/1fromGOPR0950\.MP4\.png is missing"):
        hide_pairs(root)


def test_hide_restormer_layout(tmp_path):
    png(tmp_path / "test/HIDE/input/a.png")
    png(tmp_path / "test/HIDE/target/a.png")
    assert hide_pairs(tmp_path) == [Pair("a", tmp_path / "test/HIDE/input/a.png",
                                         tmp_path / "test/HIDE/target/a.png")]


# ------------------------------------------------------------------------------------ 16-bit PNG

def reference_png(path, arr):
    """The harness's previous hand-written PNG encoder (filter-0 rows, zlib level 6), kept as the
    reference: data prepared by earlier versions is in files like these and must decode the same."""
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[..., None]
    h, w, ch = arr.shape
    color = {1: 0, 2: 4, 3: 2, 4: 6}[ch]
    depth = 16 if arr.dtype == np.uint16 else 8
    rows = np.ascontiguousarray(arr.astype(">u2" if depth == 16 else np.uint8)).view(np.uint8)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows.reshape(h, -1)], axis=1).tobytes()

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("shape,dtype", [((5, 7), np.uint8), ((5, 7), np.uint16), ((5, 7, 3), np.uint8),
                                         ((5, 7, 3), np.uint16), ((5, 7, 4), np.uint8), ((5, 7, 4), np.uint16)])
def test_png_round_trip(tmp_path, shape, dtype):
    g = np.random.default_rng(1)
    a = g.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    write_png16(tmp_path / "a.png", a)
    b = read_png16(tmp_path / "a.png")
    assert b.dtype == dtype and b.shape == shape and np.array_equal(a, b)


@pytest.mark.parametrize("shape", [(9, 11), (9, 11, 3), (9, 11, 4)])
def test_png16_matches_the_previous_codec(tmp_path, shape):
    # 16-bit gray, RGB and RGBA, full range plus the extremes, both ways:
    g = np.random.default_rng(3)
    a = g.integers(0, 2 ** 16, shape).astype(np.uint16)
    a.flat[:2] = 0, 65535
    # files of the previous encoder decode to exactly the array it was given, in file order, and
    # read_png_unchanged is the official loader's cv2.imread(IMREAD_UNCHANGED): BGR(A)
    old = reference_png(tmp_path / "old.png", a)
    assert read_png16(old).dtype == np.uint16 and np.array_equal(read_png16(old), a)
    bgr = a[..., layouts._CV2_ORDER[a.shape[2]]] if a.ndim == 3 else a
    assert np.array_equal(layouts.read_png_unchanged(old), bgr)
    # the new writer's file holds the same values in the same channel order: Pillow reads 16-bit gray
    # exactly and 16-bit colour as its high bytes, independently of OpenCV
    write_png16(tmp_path / "new.png", a)
    assert np.array_equal(read_png16(tmp_path / "new.png"), a)
    pil = np.asarray(Image.open(tmp_path / "new.png"))
    assert np.array_equal(pil, a if a.ndim == 2 else (a >> 8).astype(np.uint8))


def test_png_8bit_matches_pillow(tmp_path):
    # Pillow writes adaptive filters for 8-bit RGB and decodes 8-bit exactly: an independent check.
    g = np.random.default_rng(2)
    y, x = np.mgrid[0:40, 0:40]
    a = np.stack([(3 * x + 2 * y) % 256, (x * y) % 256, (5 * y) % 256], -1).astype(np.uint8)
    a[::4] = g.integers(0, 256, a[::4].shape)
    Image.fromarray(a).save(tmp_path / "p.png")
    assert np.array_equal(read_png16(tmp_path / "p.png"), np.asarray(Image.open(tmp_path / "p.png")))


def test_png_corrupt_files_are_one_line_naming_the_file(tmp_path, capfd):
    data = reference_png(tmp_path / "a.png", np.arange(48, dtype=np.uint16).reshape(4, 4, 3)).read_bytes()
    (tmp_path / "t.png").write_bytes(data[:60])
    bad = bytearray(data)
    bad[50] ^= 0xFF                                   # inside the compressed image data
    (tmp_path / "c.png").write_bytes(bytes(bad))
    (tmp_path / "n.png").write_bytes(b"GIF89a" + data)
    for name, what in [("t", "is a truncated or corrupt PNG"), ("c", "is a truncated or corrupt PNG"),
                       ("n", "is not a PNG file"), ("missing", "cannot read")]:
        with pytest.raises(DpirError) as e:
            read_png16(tmp_path / f"{name}.png")
        assert what in str(e.value) and str(tmp_path / f"{name}.png") in str(e.value) and "\n" not in str(e.value)
    assert "WARN" not in capfd.readouterr().err       # OpenCV's own warnings are silenced (our error says it)


def test_write_png16_rejects_what_png_cannot_hold(tmp_path):
    with pytest.raises(DpirError, match=r"needs uint8 or uint16 data, not float32 \(for .*f\.png\)"):
        write_png16(tmp_path / "f.png", np.zeros((2, 2), np.float32))
    with pytest.raises(DpirError, match=r"1, 3 or 4 channels, not shape \(2, 2, 2\)"):
        write_png16(tmp_path / "la.png", np.zeros((2, 2, 2), np.uint16))
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------ SyntheticBurst

def make_burst_set(root, n_bursts=2, n_frames=3, h=3, w=5, writer=write_png16):
    """Files in the official layout; arrays are given in the official loader's channel order and
    stored in file order (the inverse of the BGR(A) swap the cv2 reader applies)."""
    g = np.random.default_rng(4)
    truth = {}
    for b in range(n_bursts):
        bid = f"{b:04d}"
        frames = g.integers(0, 2 ** 14, (n_frames, h, w, 4)).astype(np.uint16)
        gt = g.integers(0, 2 ** 14, (8 * h, 8 * w, 3)).astype(np.uint16)
        for i, f in enumerate(frames):
            writer(root / "bursts" / bid / f"im_raw_{i:02d}.png", f[..., [2, 1, 0, 3]])
        writer(root / "gt" / bid / "im_rgb.png", gt[..., ::-1])
        meta = {"rgb2cam": torch.eye(3) * (b + 1), "cam2rgb": torch.eye(3) / (b + 1), "rgb_gain": 1.25,
                "red_gain": torch.tensor(2.0), "blue_gain": np.float32(1.5), "smoothstep": True,
                "gamma": True, "shot_noise_level": 0.001, "read_noise_level": np.array([1e-4])}
        with open(root / "gt" / bid / "meta_info.pkl", "wb") as fh:
            pickle.dump(meta, fh)
        truth[bid] = (frames, gt, meta)
    return truth


def test_syntheticburst_listing_and_reading(tmp_path):
    truth = make_burst_set(tmp_path / "SyntheticBurstVal")
    samples = syntheticburst_val(tmp_path, burst_size=3)
    assert [s.id for s in samples] == ["0000", "0001"]
    s = samples[1]
    assert s.frames == [tmp_path / f"SyntheticBurstVal/bursts/0001/im_raw_{i:02d}.png" for i in range(3)]
    assert s.gt.name == "im_rgb.png" and s.meta.name == "meta_info.pkl"
    frames, gt, meta = read_burst(s)
    ref_frames, ref_gt, _ = truth["0001"]
    assert frames.dtype == torch.float32 and frames.shape == (3, 4, 3, 5)
    assert gt.shape == (3, 24, 40)
    assert torch.equal(frames, torch.from_numpy(ref_frames.astype(np.float32)).permute(0, 3, 1, 2) / 2 ** 14)
    assert torch.equal(gt, torch.from_numpy(ref_gt.astype(np.float32)).permute(2, 0, 1) / 2 ** 14)
    assert float(frames.max()) < 1.0
    assert torch.equal(meta["rgb2cam"], torch.eye(3) * 2) and meta["rgb_gain"] == 1.25
    assert float(meta["red_gain"]) == 2.0 and meta["blue_gain"] == np.float32(1.5)
    assert meta["burst_name"] == "0001" and meta["smoothstep"] is True


def test_syntheticburst_matches_official_cv2_reader(tmp_path):
    cv2 = pytest.importorskip("cv2")
    make_burst_set(tmp_path, n_bursts=1, n_frames=2,
                   writer=lambda p, a: (p.parent.mkdir(parents=True, exist_ok=True),
                                        cv2.imwrite(str(p), a[..., layouts._CV2_ORDER[a.shape[2]]])))
    s = syntheticburst_val(tmp_path, burst_size=2)[0]
    frames, gt, _ = read_burst(s)
    # The official SyntheticBurstVal: cv2.imread(IMREAD_UNCHANGED) -> float / 2**14 -> HWC to CHW.
    for i, f in enumerate(s.frames):
        ref = torch.from_numpy(cv2.imread(str(f), cv2.IMREAD_UNCHANGED).astype(np.float32)).permute(2, 0, 1)
        assert torch.equal(frames[i], ref / 2 ** 14)
    ref = torch.from_numpy(cv2.imread(str(s.gt), cv2.IMREAD_UNCHANGED).astype(np.float32)).permute(2, 0, 1)
    assert torch.equal(gt, ref / 2 ** 14)


def test_syntheticburst_missing_and_mismatched_files(tmp_path):
    make_burst_set(tmp_path, n_bursts=1, n_frames=3)
    with pytest.raises(DpirError, match=r"bursts/0000/im_raw_03\.png is missing"):
        syntheticburst_val(tmp_path, burst_size=4)
    with pytest.raises(DpirError, match="burst_size"):
        syntheticburst_val(tmp_path, burst_size=15)
    s = syntheticburst_val(tmp_path, burst_size=3)[0]
    write_png16(s.frames[2], np.zeros((4, 5, 4), np.uint16))
    with pytest.raises(DpirError, match=r"im_raw_02\.png is 5x4 but .*im_raw_00\.png is 5x3"):
        read_burst(s)
    write_png16(s.frames[2], np.zeros((3, 5, 3), np.uint16))
    with pytest.raises(DpirError, match=r"im_raw_02\.png is a 3x5x3 uint16 image; expected 4 channels"):
        read_burst(s)
    write_png16(s.frames[2], np.zeros((3, 5, 4), np.uint16))
    write_png16(s.gt, np.zeros((16, 40, 3), np.uint16))
    with pytest.raises(DpirError, match=r"im_rgb\.png is 40x16; expected 40x24"):
        read_burst(s)
    s.meta.unlink()
    with pytest.raises(DpirError, match=r"gt/0000/meta_info\.pkl is missing"):
        syntheticburst_val(tmp_path, burst_size=3)


class _Evil:
    def __init__(self, canary):
        self.canary = canary

    def __reduce__(self):
        return (os.remove, (str(self.canary),))


def test_meta_info_unpickler_refuses_code(tmp_path):
    canary = tmp_path / "canary.txt"
    canary.write_text("alive")
    bad = tmp_path / "meta_info.pkl"
    bad.write_bytes(pickle.dumps({"rgb2cam": _Evil(canary)}))
    with pytest.raises(DpirError, match=r"meta_info\.pkl refers to posix\.remove.*not loaded"):
        load_meta_info(bad)
    assert canary.read_text() == "alive"
    bad.write_bytes(b"\x80\x04garbage")
    with pytest.raises(DpirError, match="not a readable meta_info pickle"):
        load_meta_info(bad)
    bad.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(DpirError, match="holds a list"):
        load_meta_info(bad)


def test_burst_sample_is_plain_data(tmp_path):
    s = BurstSample("0000", [tmp_path / "a.png"], tmp_path / "gt.png", tmp_path / "m.pkl")
    assert s.frames[0].name == "a.png" and s.id == "0000"


def test_meta_info_to_json_keeps_every_value(tmp_path):
    meta = {"rgb2cam": torch.tensor([[1.0, 0.1], [0.2, 0.3]]), "rgb_gain": torch.tensor(1.1),
            "red_gain": np.float32(2.1), "blue_gain": 1.7, "levels": np.array([1e-4, 2e-4]), "gamma": True,
            "nested": {"t": (torch.tensor(3), "x")}, "none": None}
    out = layouts.meta_info_to_json(meta)
    assert out == {"rgb2cam": [[1.0, float(np.float32(0.1))], [float(np.float32(0.2)), float(np.float32(0.3))]],
                   "rgb_gain": float(np.float32(1.1)), "red_gain": float(np.float32(2.1)), "blue_gain": 1.7,
                   "levels": [1e-4, 2e-4], "gamma": True, "nested": {"t": [3, "x"]}, "none": None}
    import json
    assert json.loads(json.dumps(out)) == out
    with pytest.raises(DpirError, match=r"m\.pkl: metadata key 'bad' holds a set"):
        layouts.meta_info_to_json({"bad": {1}}, tmp_path / "m.pkl")


# ------------------------------------------------------------------------------------ Zurich RAW-to-RGB

def test_zurich_layout(tmp_path):
    root = tmp_path / "Zurich-RAW-to-DSLR-Dataset"
    for n in ("2", "10", "0", "1"):
        png(root / "train" / "canon" / f"{n}.png")          # other files are ignored
        (root / "train" / "canon" / f"{n}.jpg").write_bytes(b"jpg")
    (root / "train" / "huawei_raw").mkdir()
    pairs = zurich_raw2rgb(tmp_path)
    assert [p.id for p in pairs] == ["0", "1", "2", "10"]
    assert pairs[3] == Pair("10", None, root / "train/canon/10.jpg")
    assert zurich_raw2rgb(root) == pairs
    with pytest.raises(DpirError, match=r"test/canon does not exist.*dpir fetch zurich_raw2rgb"):
        zurich_raw2rgb(tmp_path, "test")
    (root / "test" / "canon").mkdir(parents=True)
    with pytest.raises(DpirError, match="no JPG images"):
        zurich_raw2rgb(tmp_path, "test")
    with pytest.raises(DpirError, match="split"):
        zurich_raw2rgb(tmp_path, "valid")
