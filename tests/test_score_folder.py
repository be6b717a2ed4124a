"""``dpir score-folder`` (dpir/score_folder.py): two folders scored with the metric presets, no config.

Golden values on a fixed image pair, checked against an independent computation (scikit-image's PSNR
and SSIM, with the presets' conventions spelled out: 0-255 scale, BT.601 Y, 11x11 Gaussian window)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from dpir import cli
from dpir.errors import DpirError
from dpir.score_folder import format_table, score_folder, split_presets


def _pair(seed: int, h: int = 40, w: int = 48) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    noise = rng.normal(0, 12, (h, w, 3))
    return gt, np.clip(np.round(gt + noise), 0, 255).astype(np.uint8)


@pytest.fixture
def folders(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir(), gt.mkdir()
    arrays = {}
    for i, name in enumerate(["a", "b"]):
        g, p = _pair(i)
        Image.fromarray(g).save(gt / f"{name}.png")
        Image.fromarray(p).save(pred / f"{name}.png")
        arrays[name] = (g, p)
    return pred, gt, arrays


def _y(x: np.ndarray) -> np.ndarray:
    """BT.601 studio-range luma on the 0-255 scale (MATLAB rgb2ycbcr, unrounded)."""
    x = x.astype(np.float64) / 255
    return 16 + 65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]


def _ssim(a, b, **kw):
    return structural_similarity(a, b, data_range=255, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, **kw)


def test_golden_values_match_an_independent_computation(folders, tmp_path):
    pred, gt, arrays = folders
    c = 4
    rec = score_folder(pred, gt, ["psnr_rgb", "ssim_rgb,psnr_y", "ssim_y"], c, tmp_path / "s.json")
    assert rec["presets"] == ["psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y"] and rec["images"] == ["a", "b"]
    for name, (g, p) in arrays.items():
        g, p = g[c:-c, c:-c], p[c:-c, c:-c]
        want = {"psnr_rgb": peak_signal_noise_ratio(g, p, data_range=255),
                "ssim_rgb": _ssim(g.astype(np.float64), p.astype(np.float64), channel_axis=2),
                "psnr_y": peak_signal_noise_ratio(_y(g), _y(p), data_range=255),
                "ssim_y": _ssim(_y(g), _y(p))}
        for metric, v in want.items():
            assert rec["metrics"][metric]["per_image"][name] == pytest.approx(v, rel=1e-9), (metric, name)
    # pinned: a change of these numbers means a preset's convention changed
    assert rec["means"] == pytest.approx({"psnr_rgb": 26.773156, "ssim_rgb": 0.987082, "psnr_y": 31.485680,
                                          "ssim_y": 0.986481}, abs=1e-6)
    assert rec["crop_border"] == 4 and rec["conventions"]["psnr_y"].endswith("border crop 4")
    on_disk = json.loads((tmp_path / "s.json").read_text())
    assert on_disk == json.loads(json.dumps(rec)) and on_disk["format"] == "dpir-score-folder/1"
    assert {"git", "date"} <= set(on_disk["provenance"])


def test_the_crop_changes_the_numbers(folders):
    pred, gt, arrays = folders
    rec = score_folder(pred, gt, None, 0)
    assert rec["presets"] == ["psnr_rgb", "ssim_rgb"]
    g, p = arrays["a"]
    assert rec["metrics"]["psnr_rgb"]["per_image"]["a"] == pytest.approx(peak_signal_noise_ratio(g, p, data_range=255),
                                                                         rel=1e-9)


def test_identical_images_are_infinite_and_left_out_of_the_mean(tmp_path):
    pred, gt = tmp_path / "p", tmp_path / "g"
    pred.mkdir(), gt.mkdir()
    g, p = _pair(3)
    for folder, second in ((gt, g), (pred, p)):
        Image.fromarray(g).save(folder / "same.png")
        Image.fromarray(second).save(folder / "other.png")
    rec = score_folder(pred, gt, ["psnr_rgb"], 0)
    m = rec["metrics"]["psnr_rgb"]
    assert m["per_image"]["same"] == float("inf") and m["n_nonfinite"] == 1
    assert m["mean"] == pytest.approx(peak_signal_noise_ratio(g, p, data_range=255), rel=1e-9)
    assert "| same " in format_table(rec, per_image=True) and " inf " in format_table(rec, per_image=True)


def test_pairing_and_size_errors_are_one_line(folders):
    pred, gt, _ = folders
    (pred / "b.png").unlink()
    Image.new("RGB", (4, 4)).save(pred / "c.png")
    with pytest.raises(DpirError) as e:
        score_folder(pred, gt)
    assert str(e.value) == (f"the folders do not pair up by file name (stem): 1 target(s) without a restored image in "
                            f"{pred}: b.png; 1 restored image(s) without a target in {gt}: c.png")
    (pred / "c.png").rename(pred / "b.png")
    with pytest.raises(DpirError) as e:
        score_folder(pred, gt)
    assert str(e.value) == (f"1 restored image(s) in {pred} differ in size (width x height) from their target in {gt}: "
                            f"b.png 4x4 vs 48x40")
    Image.new("RGB", (48, 40)).save(pred / "b.tif")
    with pytest.raises(DpirError, match=r"holds more than one image for 1 stem\(s\): b\.png, b\.tif; keep one file"):
        score_folder(pred, gt)
    (pred / "b.tif").unlink()
    with pytest.raises(DpirError, match=r"^--gt .*nowhere is not a folder"):
        score_folder(pred, gt.parent / "nowhere")
    with pytest.raises(DpirError, match=r"unknown metric 'psnr'\. Did you mean"):
        score_folder(pred, gt, ["psnr"])
    with pytest.raises(DpirError, match="--crop must be a whole number >= 0"):
        score_folder(pred, gt, None, -1)


def test_split_presets():
    assert split_presets(["psnr_y,ssim_y", " lpips_alex ", "psnr_y"]) == ["psnr_y", "ssim_y", "lpips_alex"]
    assert split_presets(None) == ["psnr_rgb", "ssim_rgb"]


def test_cli(folders, tmp_path, capsys):
    pred, gt, _ = folders
    out = tmp_path / "r.json"
    assert cli.main(["score-folder", "--pred", str(pred), "--gt", str(gt), "--preset", "psnr_y,ssim_y", "--crop", "4",
                     "--per-image", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rec = json.loads(out.read_text())
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[:5]]
    psnr, ssim = rec["metrics"]["psnr_y"]["per_image"], rec["metrics"]["ssim_y"]["per_image"]
    assert cells[0] == ["image", "psnr_y ↑", "ssim_y ↑"] and set(lines[1]) == {"|", "-"}
    assert cells[2:] == [["a", f"{psnr['a']:.2f}", f"{ssim['a']:.4f}"], ["b", f"{psnr['b']:.2f}", f"{ssim['b']:.4f}"],
                         ["mean (2 images)", f"{(psnr['a'] + psnr['b']) / 2:.2f}", f"{rec['means']['ssim_y']:.4f}"]]
    assert lines[5].startswith("crop 4 px; psnr_y: ") and lines[-1] == f"wrote {out}"
    assert cli.main(["score-folder", "--pred", str(pred), "--gt", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err == f"dpir: error: --gt {tmp_path / 'none'} is not a folder; give the folder that " \
                                      f"holds the images\n"
