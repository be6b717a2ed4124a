"""Synthetic RAW bursts (dpir.data.burst): camera model, geometry against OpenCV, noise; disk layout (dpir.data.burst_io)."""
from __future__ import annotations

import json
import math
import pickle
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dpir.data import burst as B
from dpir.data import burst_io as BIO
from dpir.data import layouts
from dpir.errors import DpirError

IDENTITY_CAMERA = {"random_ccm": False, "random_gains": False, "smoothstep": False, "gamma": False}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def smooth_image(seed: int, size: int, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    x = torch.rand(1, 3, 6, 6, generator=gen(seed))
    x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)[0].clamp(0, 1)
    return lo + (hi - lo) * x


# ------------------------------------------------------------------------------------ mosaic

def test_mosaic_positions_and_bayer_and_demosaic_round_trip():
    H, W = 6, 8
    c, y, x = torch.meshgrid(torch.arange(3.0), torch.arange(H * 1.0), torch.arange(W * 1.0), indexing="ij")
    img = 1000 * c + 10 * y + x                      # every value names its channel and position
    p = B.mosaic(img)
    assert p.shape == (4, 3, 4)
    for i in range(3):
        for j in range(4):
            assert p[0, i, j] == img[0, 2 * i, 2 * j]          # R
            assert p[1, i, j] == img[1, 2 * i, 2 * j + 1]      # G on red rows
            assert p[2, i, j] == img[1, 2 * i + 1, 2 * j]      # G on blue rows
            assert p[3, i, j] == img[2, 2 * i + 1, 2 * j + 1]  # B
    raw = B.bayer(p)[0]
    assert raw[0, 0] == img[0, 0, 0] and raw[0, 1] == img[1, 0, 1]
    assert raw[1, 0] == img[1, 1, 0] and raw[1, 1] == img[2, 1, 1]
    packed = torch.rand(2, 4, 5, 7, generator=gen(0))
    assert torch.equal(B.mosaic(B.demosaic_bilinear(packed)), packed)
    with pytest.raises(DpirError, match="even height and width"):
        B.mosaic(torch.rand(3, 5, 4))


@pytest.mark.parametrize("colour,expected", [((1.0, 0.0, 0.0), (1, 0, 0, 0)), ((0.0, 1.0, 0.0), (0, 1, 1, 0)),
                                             ((0.0, 0.0, 1.0), (0, 0, 0, 1)), ((0.2, 0.5, 0.7), (0.2, 0.5, 0.5, 0.7))])
def test_known_colours_land_in_their_rggb_channels(colour, expected):
    img = torch.tensor(colour).view(3, 1, 1).expand(3, 8, 10)
    p = B.mosaic(img)
    assert torch.equal(p, torch.tensor(expected, dtype=torch.float32).view(4, 1, 1).expand(4, 4, 5))
    assert torch.allclose(B.demosaic_bilinear(p), img, atol=1e-6)


# ------------------------------------------------------------------------------------ camera model

def test_ccm_and_gains_and_noise_level_distributions():
    g = gen(0)
    for _ in range(20):
        m = B.random_ccm(g)
        assert torch.allclose(m.sum(-1), torch.ones(3, dtype=torch.float64), atol=1e-12)
    gains = torch.tensor([B.random_gains(g) for _ in range(2000)], dtype=torch.float64)
    assert 1.9 <= float(gains[:, 1].min()) and float(gains[:, 1].max()) <= 2.4
    assert 1.5 <= float(gains[:, 2].min()) and float(gains[:, 2].max()) <= 1.9
    inv = 1 / gains[:, 0]                               # ~ N(0.8, 0.1)
    assert abs(float(inv.mean()) - 0.8) < 0.01 and abs(float(inv.std()) - 0.1) < 0.01
    levels = torch.tensor([B.random_noise_levels(g) for _ in range(3000)], dtype=torch.float64)
    shot, read = levels[:, 0], levels[:, 1]
    assert 1e-4 <= float(shot.min()) and float(shot.max()) <= 0.012
    resid = read.log() - (2.18 * shot.log() + 1.20)     # Brooks et al.: N(0, 0.26)
    assert abs(float(resid.mean())) < 0.02 and abs(float(resid.std()) - 0.26) < 0.02


def test_smoothstep_inverse_and_safe_gains():
    y = torch.linspace(0, 1, 101)
    assert torch.allclose(B.smoothstep(B.invert_smoothstep(y)), y, atol=1e-6)
    white = torch.ones(3, 2, 2)
    assert torch.allclose(B.safe_invert_gains(white, 1.25, 2.0, 1.7), white, atol=1e-6)   # highlights stay white
    grey = torch.full((3, 2, 2), 0.5)
    out = B.safe_invert_gains(grey, 1.25, 2.0, 1.7)
    assert torch.allclose(out[:, 0, 0], torch.tensor([0.5 / 2.5, 0.5 / 1.25, 0.5 / (1.7 * 1.25)]))


def test_unprocess_then_process_recovers_the_srgb_image():
    rgb = smooth_image(3, 64, 0.15, 0.75)      # low saturation, no highlights: nothing is clipped
    for seed in range(3):
        frames, gt, meta = B.synthesize_burst(rgb, 4, gen(seed), {"add_noise": False, "max_translation": 0,
                                                                  "max_rotation": 0, "warp_margin": 8})
        back = B.process_linear_to_srgb(gt, meta)
        assert (back - rgb[:, 8:-8, 8:-8]).abs().max() < 1e-4
        # the official metadata carries torch tensors; a batch works as well
        official = {**meta, "cam2rgb": torch.tensor(meta["cam2rgb"])}
        assert torch.allclose(B.process_linear_to_srgb(gt[None], official)[0], back, atol=1e-6)
        assert meta["shot_noise_level"] == 0.0 and frames.shape == (4, 4, 6, 6)


# ------------------------------------------------------------------------------------ geometry

def test_no_motion_gives_identical_frames_up_to_noise():
    rgb = smooth_image(1, 48)
    cfg = {"max_translation": 0, "max_rotation": 0, "warp_margin": 0}
    frames, _, meta = B.synthesize_burst(rgb, 5, gen(0), {**cfg, "add_noise": False})
    assert all(torch.equal(frames[0], f) for f in frames[1:])
    assert meta["translations"] == [[1.5, 1.5]] * 5 and meta["rotations"] == [0.0] * 5
    shot, read = 2e-3, 1e-4
    noisy, _, _ = B.synthesize_burst(rgb, 5, gen(0), {**cfg, **IDENTITY_CAMERA, "shot_noise_level": shot,
                                                      "read_noise_level": read})
    clean, _, _ = B.synthesize_burst(rgb, 5, gen(0), {**cfg, **IDENTITY_CAMERA, "add_noise": False})
    z = (noisy - clean) / (clean * shot + read).sqrt()   # standardised noise (clipping is rare here)
    assert abs(float(z.mean())) < 0.05 and abs(float(z.std()) - 1.0) < 0.05


def test_reference_frame_samples_the_gt_grid():
    # frame 0: LR pixel d is the mean of HR pixels 4d+1, 4d+2 of the image shifted by 1.5 px, i.e. the
    # [1/4, 1/2, 1/4] filter of the gt centred at 4d; the R channel of the packed frame sits at 8i.
    rgb = smooth_image(2, 64 + 16)
    frames, gt, _ = B.synthesize_burst(rgb, 1, gen(0), {"add_noise": False, "warp_margin": 8})
    w = torch.tensor([0.25, 0.5, 0.25])
    for i in range(1, 7):
        for j in range(1, 7):
            patch = gt[0, 8 * i - 1: 8 * i + 2, 8 * j - 1: 8 * j + 2]
            assert abs(float(frames[0, 0, i, j]) - float(w @ patch @ w)) < 1e-6
            patch = gt[2, 8 * i + 3: 8 * i + 6, 8 * j + 3: 8 * j + 6]     # B at (8i + 4, 8j + 4)
            assert abs(float(frames[0, 3, i, j]) - float(w @ patch @ w)) < 1e-6


def test_warps_match_the_official_opencv_pipeline():
    cv2 = pytest.importorskip("cv2")
    m = 16
    rgb = smooth_image(4, 64 + 2 * m)
    frames, _, meta = B.synthesize_burst(rgb, 4, gen(5), {**IDENTITY_CAMERA, "add_noise": False, "warp_margin": m,
                                                          "max_translation": 10.0, "max_rotation": 1.0})
    img = rgb.permute(1, 2, 0).numpy().copy()
    size = img.shape[0]
    assert any(abs(r) > 0.1 for r in meta["rotations"][1:])
    for i, ((tx, ty), th) in enumerate(zip(meta["translations"], meta["rotations"])):
        # Bhat et al.'s get_tmat: rotation about (W/2, H/2) after the translation; then warpAffine
        # (bilinear, constant border), crop the margin, cv2.resize(1/4, INTER_LINEAR), mosaic.
        rot = np.vstack([cv2.getRotationMatrix2D((size * 0.5, size * 0.5), th, 1.0), [0, 0, 1]])
        mat = (rot @ np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1.0]]))[:2]
        warped = cv2.warpAffine(img, mat, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        lr = cv2.resize(warped[m:-m, m:-m], None, fx=0.25, fy=0.25, interpolation=cv2.INTER_LINEAR)
        ref = B.mosaic(torch.from_numpy(lr).permute(2, 0, 1))
        assert (frames[i] - ref).abs().max() < 1e-4


def test_motion_ranges_and_seeding():
    rgb = smooth_image(6, 48 + 48)
    f1, g1, m1 = B.synthesize_burst(rgb, 14, gen(9))
    f2, g2, m2 = B.synthesize_burst(rgb, 14, gen(9))
    assert torch.equal(f1, f2) and torch.equal(g1, g2) and m1 == m2
    f3, _, m3 = B.synthesize_burst(rgb, 14, gen(10))
    assert not torch.equal(f1, f3) and m1["rgb2cam"] != m3["rgb2cam"]
    assert f1.shape == (14, 4, 6, 6) and g1.shape == (3, 48, 48)
    t = torch.tensor(m1["translations"][1:])
    assert float(t.abs().max()) <= 24.0 and float(t.abs().max()) > 5.0
    assert max(abs(r) for r in m1["rotations"]) <= 1.0
    assert float(f1.min()) >= 0.0 and float(f1.max()) <= 1.0


def test_synthesis_is_fast_enough():
    rgb = smooth_image(7, 192)
    best = math.inf
    for s in range(3):
        t0 = time.perf_counter()
        B.synthesize_burst(rgb, 14, gen(s))
        best = min(best, time.perf_counter() - t0)
    assert best < 0.2


def test_synthesis_input_errors():
    with pytest.raises(DpirError, match=r"multiple of 8\) \+ 2 x 24 px per side; got 60x60"):
        B.synthesize_burst(torch.rand(3, 60, 60), 2, gen(0))
    with pytest.raises(DpirError, match=r"unknown burst synthesis key\(s\) \['max_shear'\]"):
        B.synthesize_burst(torch.rand(3, 64, 64), 2, gen(0), {"max_shear": 0.1})
    with pytest.raises(DpirError, match="set both shot_noise_level and read_noise_level"):
        B.synthesize_burst(torch.rand(3, 64, 64), 2, gen(0), {"shot_noise_level": 0.01})
    with pytest.raises(DpirError, match=r"one \(3,H,W\) RGB image"):
        B.synthesize_burst(torch.rand(1, 3, 64, 64), 2, gen(0))


# ------------------------------------------------------------------------------------ disk

def test_metadata_is_plain_json():
    _, _, meta = B.synthesize_burst(smooth_image(8, 96), 3, gen(1))
    assert json.loads(json.dumps(meta)) == meta
    assert set(meta) >= {"rgb2cam", "cam2rgb", "rgb_gain", "red_gain", "blue_gain", "smoothstep", "gamma",
                         "shot_noise_level", "read_noise_level", "translations", "rotations"}
    assert np.allclose(np.array(meta["rgb2cam"]) @ np.array(meta["cam2rgb"]), np.eye(3), atol=1e-12)


def test_disk_round_trip_and_official_reader(tmp_path):
    root = tmp_path / "burstset"
    truth = {}
    for k, bid in enumerate(["0000", "0001"]):
        frames, gt, meta = B.synthesize_burst(smooth_image(k, 64 + 48), 3, gen(k))
        BIO.write_burst(root, bid, frames, gt, meta)
        truth[bid] = (frames, gt, meta)
    samples = BIO.list_bursts(root)
    assert [s.id for s in samples] == ["0000", "0001"] and samples[0].meta.name == "meta_info.json"
    for s in samples:
        frames, gt, meta = BIO.read_burst(s)
        f0, g0, m0 = truth[s.id]
        assert torch.equal(frames, torch.round(f0 * 2 ** 14) / 2 ** 14)
        assert torch.equal(gt, torch.round(g0 * 2 ** 14) / 2 ** 14)
        assert meta == {**m0, "burst_name": s.id}
    # read as the official layout (a meta_info.pkl next to our JSON), the same arrays come back
    for bid, (_, _, meta) in truth.items():
        with open(root / "gt" / bid / "meta_info.pkl", "wb") as fh:
            pickle.dump(meta, fh)
    official = layouts.syntheticburst_val(root, burst_size=3)
    for s_off, s_ours in zip(official, samples):
        fo, go, mo = BIO.read_burst(s_off)      # the one reader: official pickle or our JSON
        fr, gr, _ = BIO.read_burst(s_ours)
        assert torch.equal(fo, fr) and torch.equal(go, gr) and mo["rgb_gain"] == truth[s_off.id][2]["rgb_gain"]
    # and so does the official loader's cv2.imread(IMREAD_UNCHANGED): R, G, G, B and R, G, B
    cv2 = pytest.importorskip("cv2")
    a = cv2.imread(str(root / "bursts" / "0001" / "im_raw_02.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(a, np.round(truth["0001"][0][2].double().numpy() * 2 ** 14).astype(np.uint16).transpose(1, 2, 0))
    g = cv2.imread(str(root / "gt" / "0001" / "im_rgb.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(g, np.round(truth["0001"][1].double().numpy() * 2 ** 14).astype(np.uint16).transpose(1, 2, 0))


def test_disk_errors(tmp_path):
    frames, gt, meta = B.synthesize_burst(smooth_image(0, 64 + 48), 3, gen(0))
    with pytest.raises(DpirError, match=r"gt must be \(3, 64, 64\)"):
        BIO.write_burst(tmp_path, "0000", frames, gt[:, :32], meta)
    with pytest.raises(DpirError, match="not plain JSON"):
        BIO.write_burst(tmp_path, "0000", frames, gt, {**meta, "rgb2cam": torch.eye(3)})
    with pytest.raises(DpirError, match="does not exist"):
        BIO.list_bursts(tmp_path)
    BIO.write_burst(tmp_path, "0000", frames, gt, meta)
    with pytest.raises(DpirError, match=r"bursts/0000/im_raw_03\.png is missing"):
        BIO.list_bursts(tmp_path, burst_size=4)
    s = BIO.list_bursts(tmp_path, burst_size=3)[0]
    layouts.write_png16(s.frames[1], np.zeros((8, 9, 4), np.uint16))
    with pytest.raises(DpirError, match=r"im_raw_01\.png is 9x8 but .*im_raw_00\.png is 8x8"):
        BIO.read_burst(s)
    layouts.write_png16(s.frames[1], np.zeros((8, 8, 3), np.uint16))
    with pytest.raises(DpirError, match=r"im_raw_01\.png is a 8x8x3 uint16 image; expected 4 channels"):
        BIO.read_burst(s)
    BIO.write_burst(tmp_path, "0000", frames, gt, meta)
    s.meta.write_text("{broken")
    with pytest.raises(DpirError, match=r"meta_info\.json is not readable JSON"):
        BIO.read_burst(s)
    s.meta.unlink()
    with pytest.raises(DpirError, match=r"gt/0000/meta_info\.pkl is missing"):
        BIO.list_bursts(tmp_path)


def test_burst_io_is_the_one_reader_and_old_names_still_import():
    """dpir.data.burst re-exports the file IO of dpir.data.burst_io (older imports keep working)."""
    assert (B.write_burst, B.list_bursts, B.read_burst) == (BIO.write_burst, BIO.list_bursts, BIO.read_burst)
    assert BIO.CV2_ORDER == {3: [2, 1, 0], 4: [2, 1, 0, 3]}
