"""Zoomed crops of the report (dpir.report.crops): the image and window rules, and the figure from files."""
import numpy as np
import pytest
from helpers import base_config
from PIL import Image

from dpir import paths
from dpir.report import crops as K


def test_window_is_where_the_outputs_differ_most():
    a = np.zeros((32, 32, 3))
    b = a.copy()
    b[20:28, 4:12] = 1.0          # the outputs differ only in this 8x8 patch
    assert K.pick_window([a, b], 8, 4) == (20, 4)
    assert K.pick_window([a, b], 8, 2) == (20, 4)
    assert K.pick_window([a, a], 8, 4) == (0, 0)       # no difference anywhere: the first window


def rec(method, seed, psnr, images=("x", "y", "z"), label=None):
    return {"method": method, "seed": seed, "label": label or method, "images": list(images),
            "metrics": {"psnr_y": {"available": True, "per_image": dict(zip(images, psnr))}}}


def test_image_with_the_largest_spread_across_rows():
    runs = {"a": [rec("a", 0, [30, 30, 30]), rec("a", 1, [30, 32, 30])],   # seed mean on y: 31
            "b": [rec("b", 0, [29, 27, 25])]}
    # spreads: x 1, y 4, z 5
    assert K.pick_image(runs, "psnr_y", ["x", "y", "z"]) == ("z", 5.0)
    assert K.pick_image(runs, "psnr_y", ["x", "y"]) == ("y", 4.0)
    assert K.pick_image({"a": runs["a"]}, "psnr_y", ["x"]) is None          # one row: nothing to compare


def png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8)).save(path)


@pytest.mark.parametrize("with_lq", [True, False])
def test_crop_figure_from_files(tmp_path, with_lq):
    cfg = base_config(tmp_path)
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 255, (64, 64, 3))
    root = paths.prepared(cfg, "sr", "bundled") / "test"
    for i in ("x", "y"):
        png(root / "gt" / f"{i}.png", gt)
        if with_lq:
            png(root / "lq" / f"{i}.png", gt[::4, ::4])
    good, bad = gt.copy(), gt.copy()
    bad[40:56, 8:24] = 0          # the second method fails in one 16x16 region (32x32 window, stride 8)
    for m, img in (("good", good), ("bad", bad)):
        for i in ("x", "y"):
            png(paths.restored_dir(cfg, "sr", "bundled", m, 0) / f"{i}.png", img)
    records = [rec("good", 0, [40.0, 41.0], ("x", "y"), "Good"), rec("bad", 0, [35.0, 30.0], ("x", "y"), "Bad")]
    fig = tmp_path / "fig.png"
    got = K.crop_figure(cfg, "sr", "bundled", records, ["good", "bad"], fig)
    assert got is not None and got[0] == fig and fig.stat().st_size > 5000
    caption = got[1]
    assert caption.startswith("Zoomed crops of `y` (64x64, window at row 24, column 0); per-image psnr_y")
    assert "spread across rows: 11.00" in caption and "the 32x32 window (on a stride-8 grid)" in caption
    assert ("input panel is left out" in caption) is (not with_lq)
    # one method only: no figure
    assert K.crop_figure(cfg, "sr", "bundled", records[:1], ["good"], tmp_path / "none.png") is None
