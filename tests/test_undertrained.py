"""Rows trained here that do not beat their task's trivial baseline are flagged (dpir.report.undertrained)."""
from __future__ import annotations

from dpir.config import load_config
from dpir.report.undertrained import footnotes, trivial_baseline, undertrained
from helpers import ROOT

IMAGES = ("a", "b", "c", "d")


def rec(method, seed, psnr):
    return {"task": "sr", "dataset": "bundled", "method": method, "seed": seed,
            "metrics": {"psnr_rgb": {"available": True, "per_image": dict(zip(IMAGES, psnr))},
                        "psnr_y": {"available": True, "per_image": dict(zip(IMAGES, [p + 5 for p in psnr]))}}}


def test_baselines_of_the_default_tasks():
    cfg = load_config([ROOT / "config" / "config.yaml"])
    assert [trivial_baseline(cfg, t) for t in ("sr", "deblur", "burst")] == ["bicubic", "blurry", "burst_bicubic"]


def test_a_trained_row_below_bicubic_is_flagged_on_the_paired_interval():
    cfg = load_config([ROOT / "config" / "config.yaml"])
    bic = [26.0, 27.0, 28.0, 29.0]
    records = [rec("bicubic", 0, bic),
               rec("srdiff", 0, [b - 7.8 for b in bic]), rec("srdiff", 1, [b - 8.0 for b in bic]),   # far below
               rec("swinir", 0, [b + 0.4 for b in bic]),                                          # above
               rec("rrdb", 0, [b + d for b, d in zip(bic, (-0.5, 0.6, -0.4, 0.5))]),              # no clear side
               rec("byo_sharp", 0, [b - 3 for b in bic])]                                         # not trained here
    flags = undertrained(cfg, "sr", records)
    assert [(f["method"], f["metric"]) for f in flags] == [("srdiff", "psnr_y"), ("srdiff", "psnr_rgb")]
    assert abs(flags[0]["interval"].estimate + 7.9) < 1e-9 and flags[0]["interval"].high < 0
    note = footnotes(flags, {"srdiff": "SRDiff (T=100)"})
    assert len(note) == 1 and note[0].startswith("**Under-trained**: SRDiff (T=100) (`srdiff`) scores below the "
                                                 "trivial baseline") and "psnr_y -7.90" in note[0]


def test_official_networks_are_not_judged(tmp_path):
    cfg = load_config([ROOT / "config" / "config.yaml"])
    cfg["networks"]["rrdb_sr"]["official"] = "rrdb_psnr_x4"
    bic = [26.0, 27.0, 28.0, 29.0]
    assert undertrained(cfg, "sr", [rec("bicubic", 0, bic), rec("rrdb", 0, [b - 2 for b in bic])]) == []


def test_error_split_names_a_colour_cast_chroma_noise_and_structure():
    import numpy as np

    from dpir.report.undertrained import OPPONENT, cause, error_split

    assert np.allclose(OPPONENT @ OPPONENT.T, np.eye(3))          # orthonormal: the split is exact
    rng = np.random.default_rng(0)
    gt = [rng.uniform(0.2, 0.8, (16, 16, 3)) for _ in range(2)]
    cast = [g + np.array([0.1, 0.0, -0.05]) for g in gt]           # a pure per-channel offset
    s = error_split(cast, gt)
    assert np.allclose(s["offset"], [0.1, 0.0, -0.05]) and abs(s["offset_share"] - 1) < 1e-12
    assert abs(s["mse"] - (0.1 ** 2 + 0.05 ** 2) / 3) < 1e-12
    assert cause(s).startswith("a colour cast: 100 % of its RGB squared error is a constant per-channel offset "
                               "(R +0.100, G +0.000, B -0.050 on [0, 1])")
    # zero-mean noise on a chroma axis only: no offset, all chroma
    noise = rng.normal(0, 0.05, (16, 16, 1)) * OPPONENT[1]
    s = error_split([g + noise for g in gt], gt)
    assert s["offset_share"] < 0.02 and abs(s["chroma_share"] - 1) < 1e-12
    assert cause(s).startswith("colour error beyond a cast")
    # the same noise on every channel (grey): luminance only
    grey = rng.normal(0, 0.05, (16, 16, 1)) * np.ones(3)
    s = error_split([g + grey for g in gt], gt)
    assert s["chroma_share"] < 1e-12 and cause(s).startswith("luminance and structure error, not colour")


def test_footnote_carries_the_cause_when_the_split_is_known():
    from dpir.report.paired import Interval

    iv = Interval(-2.0, -3.0, -1.0, 4, 1, 0.95)
    split = {"offset": [0.1, 0.0, 0.0], "offset_share": 0.8, "chroma_share": 0.6, "mse": 0.004}
    note = footnotes([{"method": "rrdb", "baseline": "bicubic", "metric": "psnr_rgb", "interval": iv,
                       "split": split}], {"rrdb": "RRDB"})
    assert len(note) == 1 and note[0].endswith(
        "What dominates its error: a colour cast: 80 % of its RGB squared error is a constant per-channel offset "
        "(R +0.100, G +0.000, B +0.000 on [0, 1]), 60 % lies on the chroma axes.")


def test_diagnose_reads_the_restored_pngs_and_the_ground_truth(tmp_path):
    import numpy as np
    from PIL import Image

    from dpir.report.undertrained import diagnose

    cfg = {"out": str(tmp_path / "out"), "data_dir": str(tmp_path / "data"), "tasks": {"sr": {"crop_border": 2}}}
    gt = np.full((12, 12, 3), 100, np.uint8)
    out = gt.copy()
    out[..., 0] += 51                    # red +0.2 everywhere ...
    out[0, :, 2] = 255                   # ... and a blue edge inside the 2 px border, which is not scored
    for folder, img in (("data/sr/bundled/test/gt", gt), ("out/restored/sr/bundled/rrdb/seed0", out)):
        (tmp_path / folder).mkdir(parents=True)
        Image.fromarray(img).save(tmp_path / folder / "a.png")
    run = {"method": "rrdb", "seed": 0, "images": ["a"]}
    s = diagnose(cfg, "sr", "bundled", [run, {**run, "seed": 1}])     # the first seed is read
    assert np.allclose(s["offset"], [0.2, 0, 0]) and abs(s["offset_share"] - 1) < 1e-9
    assert diagnose(cfg, "sr", "bundled", [{**run, "images": ["missing"]}]) is None
