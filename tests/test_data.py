"""Degradation, image reading policy and dataset preparation."""
import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from dpir.data.degrade import bicubic_down, bicubic_resize, mod_crop
from dpir.data.images import SkippedFile, list_images, quantize, read_image, write_png
from dpir.data.patches import PatchSampler, dihedral
from dpir.data.prepare import load_split, prepare
from dpir.errors import DpirError
from helpers import base_config


def keys(x, a=-0.5):
    x = abs(x)
    if x <= 1:
        return (a + 2) * x**3 - (a + 3) * x**2 + 1
    if x < 2:
        return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
    return 0.0


def matlab_imresize_1d(signal, scale):
    """MATLAB imresize (bicubic, antialiasing) written out from its documented definition:
    output i sits at input coordinate (i + 0.5) / scale - 0.5; the kernel is Keys' cubic (a = -0.5)
    stretched by 1/scale and normalised; the border is extended symmetrically."""
    n = len(signal)
    out = []
    for i in range(int(round(n * scale))):
        u = (i + 0.5) / scale - 0.5
        js = range(int(np.floor(u - 2 / scale)) - 1, int(np.ceil(u + 2 / scale)) + 2)
        k = min(scale, 1.0)  # the kernel is stretched only when downscaling (antialiasing)
        w = np.array([k * keys(k * (u - j)) for j in js])
        idx = [(-j - 1 if j < 0 else (2 * n - 1 - j if j >= n else j)) for j in js]
        out.append(float(np.dot(w / w.sum(), signal[idx])))
    return np.array(out)


def test_bicubic_matches_matlab_definition_on_random_rows():
    rng = np.random.default_rng(0)
    sig = rng.random(32)
    img = torch.tensor(np.tile(sig, (8, 1)))[None]  # rows identical: the vertical pass is exact
    got = bicubic_resize(img, 0.25)[0, 0].numpy()
    expected = matlab_imresize_1d(sig, 0.25)
    np.testing.assert_allclose(got, expected, atol=1e-12)
    # x4 upscaling (the Bicubic row of the table) follows the same definition without stretching
    up = bicubic_resize(torch.tensor(np.tile(sig[:8], (4, 1)))[None], 4.0)[0, 0].numpy()
    np.testing.assert_allclose(up, matlab_imresize_1d(sig[:8], 4.0), atol=1e-12)


def test_bicubic_known_values():
    # interior of a linear ramp is reproduced exactly: output i sits at input coordinate 4i + 1.5
    ramp = torch.arange(32.0).view(1, 1, 32).expand(1, 8, 32).double()
    out = bicubic_resize(ramp, 0.25)[0, 0]
    assert out[2:6].tolist() == [9.5, 13.5, 17.5, 21.5]
    # the symmetric border pulls the first sample towards the edge: 1.35986328125 (hand-computed)
    assert out[0].item() == pytest.approx(matlab_imresize_1d(np.arange(32.0), 0.25)[0], abs=1e-12)
    assert out[0].item() == pytest.approx(1.3598632812, abs=1e-9)
    # constants stay constant (zero padding, resize-right's default, would fail this)
    c = torch.full((3, 16, 20), 0.3, dtype=torch.float64)
    assert torch.allclose(bicubic_down(c, 4), torch.full((3, 4, 5), 0.3, dtype=torch.float64), atol=1e-12)


def test_bicubic_down_rejects_indivisible_and_mod_crop():
    x = torch.rand(3, 18, 21)
    with pytest.raises(DpirError, match="not divisible by the scale 4"):
        bicubic_down(x, 4)
    assert mod_crop(x, 4).shape == (3, 16, 20)


def test_read_image_conversions(tmp_path):
    gray = (np.arange(64, dtype=np.uint8).reshape(8, 8))
    Image.fromarray(gray).save(tmp_path / "gray.png")
    x = read_image(tmp_path / "gray.png")
    assert x.shape == (3, 8, 8) and torch.equal(x[0], x[2]) and x[0, 0, 1].item() == pytest.approx(1 / 255)
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 10
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    x = read_image(tmp_path / "rgba.png")
    assert x.shape == (3, 4, 4) and x[0, 0, 0].item() == pytest.approx(200 / 255)
    import cv2

    sixteen = np.full((5, 6, 3), 65535, np.uint16)
    sixteen[0, 0] = [0, 32768, 65535]
    cv2.imwrite(str(tmp_path / "deep.png"), sixteen[..., ::-1])
    notes = []
    x = read_image(tmp_path / "deep.png", notes)
    assert x.shape == (3, 5, 6) and x[1, 0, 0].item() == pytest.approx(32768 / 65535)
    assert notes == ["16-bit, scaled by 1/65535"]
    x16 = torch.rand(3, 4, 5)
    write_png(tmp_path / "w16.png", x16, bits=16)
    assert torch.allclose(read_image(tmp_path / "w16.png"), x16, atol=1 / 65535)


def test_read_image_errors_name_the_file(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(good)
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(good.read_bytes()[:60])
    with pytest.raises(DpirError, match=r"cannot read image .*trunc\.png"):
        read_image(trunc)
    with pytest.raises(DpirError, match=r"missing\.png does not exist"):
        read_image(tmp_path / "missing.png")


def test_list_images_skips_non_images_with_warning(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.warns(SkippedFile, match=r"skipping .*notes\.txt: not an image"):
        files = list_images(tmp_path)
    assert [f.name for f in files] == ["a.png"]


def test_write_png_roundtrip_and_atomic(tmp_path):
    x = torch.rand(3, 7, 9)
    write_png(tmp_path / "x.png", x)
    assert torch.equal(read_image(tmp_path / "x.png"), quantize(x))
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]  # no temporary file left


def test_prepare_folder_dataset_with_odd_files(tmp_path):
    src = tmp_path / "hr"
    src.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (34, 41, 3), dtype=np.uint8)).save(src / "odd_size.png")
    Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(src / "gray.png")
    Image.fromarray(rng.integers(0, 255, (32, 32, 4), dtype=np.uint8), "RGBA").save(src / "rgba.png")
    Image.fromarray(rng.integers(0, 255, (5, 5, 3), dtype=np.uint8)).save(src / "tiny.png")
    (src / "trunc.png").write_bytes((src / "gray.png").read_bytes()[:50])
    (src / "readme.md").write_text("not an image")
    cfg = base_config(tmp_path, datasets={"mine": {"kind": "folder", "path": str(src)}},
                      tasks={"sr": {"test_datasets": ["mine"]}})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        man = prepare(cfg, "sr", "mine", splits=("test",))
    msgs = " | ".join(str(w.message) for w in caught)
    assert "readme.md" in msgs and "trunc.png" in msgs and "tiny" in msgs
    assert man["splits"]["test"]["ids"] == ["gray", "odd_size", "rgba"]
    assert man["splits"]["test"]["sizes"]["odd_size"] == [32, 40]
    assert any("mod-cropped from 34x41" in n for n in man["notes"]["odd_size"])
    assert any("grayscale" in n for n in man["notes"]["gray"])
    assert {s["id"] for s in man["skipped"]} == {"tiny", "trunc"}
    (i, lq, gt), *_ = load_split(cfg, "sr", "mine", "test")
    assert lq.shape[-2:] == (gt.shape[-2] // 4, gt.shape[-1] // 4)
    assert json.loads((tmp_path / "data" / "sr" / "mine" / "manifest.json").read_text())["scale"] == 4


def test_prepare_bundled_split_is_fixed(tmp_path):
    cfg = base_config(tmp_path)
    man = prepare(cfg, "sr", "bundled")
    assert man["splits"]["test"]["ids"] == ["astronaut", "chelsea"]  # max_test_images 2 in test.yaml
    assert "astronaut" not in man["splits"]["train"]["ids"]
    assert set(man["splits"]["train"]["ids"]) == {"rocket", "hubble_deep_field", "immunohistochemistry", "retina",
                                                  "motorcycle_left", "motorcycle_right"}
    # lq is exactly the MATLAB bicubic of the stored (8-bit) gt, rounded to 8 bits
    _, lq, gt = load_split(cfg, "sr", "bundled", "test")[0]
    assert torch.equal(lq, quantize(bicubic_down(gt.double(), 4).float()))


def test_prepare_empty_folder_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    cfg = base_config(tmp_path, datasets={"mine": {"kind": "folder", "path": str(tmp_path / "empty")}},
                      tasks={"sr": {"test_datasets": ["mine"]}})
    with pytest.raises(DpirError, match="no usable test image"):
        prepare(cfg, "sr", "mine", splits=("test",))


def test_patch_sampler_alignment_and_determinism():
    gt = torch.rand(3, 64, 80)
    lq = bicubic_down(gt.double(), 4).float()
    s = PatchSampler([(lq, gt)], patch=32, scale=4)
    b1 = s.sample(4, torch.Generator().manual_seed(3))
    b2 = s.sample(4, torch.Generator().manual_seed(3))
    assert torch.equal(b1["gt"], b2["gt"]) and b1["lq"].shape == (4, 3, 8, 8)
    # each lq patch is the aligned crop of the lq image (under the same dihedral transform)
    for k in range(8):
        assert torch.equal(dihedral(dihedral(gt, k), (8 - k) % 8 if k < 4 else k), gt) or k < 4
    with pytest.raises(DpirError, match="smaller than the patch size"):
        PatchSampler([(lq, gt)], patch=96, scale=4)
