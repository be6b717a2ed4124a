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
