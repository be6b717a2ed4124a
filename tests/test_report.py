"""Tables and derived analyses rendered from synthetic results records (exact numbers)."""
import statistics

import pytest

from dpir.report.analysis import acceleration_table, cost_table
from dpir.report.tables import build_table


def record(method, seed, psnr, gmsd=0.1, nfe=1, images=("a", "b"), flops=2e9, seconds=0.5, lpips=None, label=None):
    metrics = {
        "psnr_y": {"available": True, "lower_better": False, "convention": "PSNR Y", "mean": statistics.fmean(psnr),
                   "per_image": dict(zip(images, psnr)), "n_nonfinite": 0},
        "gmsd": {"available": True, "lower_better": True, "convention": "GMSD", "mean": gmsd,
                 "per_image": {i: gmsd for i in images}, "n_nonfinite": 0},
        "lpips_alex": ({"available": False, "lower_better": True, "convention": "LPIPS", "reason": "weights missing.",
                        "fix": "dpir fetch lpips_alex"} if lpips is None else
                       {"available": True, "lower_better": True, "convention": "LPIPS", "mean": lpips,
                        "per_image": {i: lpips for i in images}, "n_nonfinite": 0}),
    }
    return {"method": method, "seed": seed, "label": label or method, "n_images": len(images), "images": list(images),
            "metrics": metrics, "cost": {"nfe": nfe, "nfe_groups": {"net": nfe}, "nfe_note": "", "params_total": 2_000_000,
                                         "params_trained": 500_000, "flops_per_image": flops, "flops_input_size": [24, 24],
                                         "seconds_per_image": seconds, "peak_rss_mib": 700.0}}


def test_table_mean_std_and_na_footnote():
    recs = [record("m", 0, [30.0, 32.0]), record("m", 1, [31.0, 35.0]), record("b", 0, [25.0, 25.0])]
    t = build_table(recs, "sr_x", "T", ["psnr_y", "lpips_alex"], ["b", "m"])
    assert [r["Method"] for r in t.rows] == ["b", "m"]
    # per-seed means 31 and 33 -> 32 ± stdev(31, 33) = 1.414...
    assert t.rows[1]["psnr_y ↑"] == "32.00 ± 1.41"
    assert t.numeric[1]["psnr_y"] == 32.0 and t.numeric[1]["psnr_y_std"] == pytest.approx(2 ** 0.5)
    assert t.rows[0]["lpips_alex ↓"].startswith("n/a[^sr-x-")
    md = t.markdown()
    assert "weights missing. Fix: `dpir fetch lpips_alex`" in md
    assert t.rows[1]["Params total (M)"] == "2.000" and t.rows[1]["Params trained (M)"] == "0.500"
    assert t.rows[1]["TFLOPs/img"].startswith("0.002") and t.rows[1]["images × seeds"] == "2 × 2"


def test_acceleration_verdict_is_one_sided():
    full = [record("full", s, [30.0, 0.0], nfe=1001, images=("a", "z")) for s in (0, 1)]
    # better PSNR by a lot: an improvement, never a "loss"
    jump = [record("jump", 0, [31.0, 28.0], nfe=51), record("jump", 1, [31.2, 28.0], nfe=51)]
    worse = [record("worse", 0, [25.0, 28.0], nfe=6), record("worse", 1, [25.2, 28.0], nfe=6)]
    t, verdicts = acceleration_table(full + jump + worse, "full", ["jump", "worse"], ["psnr_y"], "acc", "A")
    assert [r["images"] for r in t.rows] == ["2", "1", "1"]  # common images only ("a")
    assert t.rows[1]["NFE cut"] == "19.6×" and t.rows[1]["Δpsnr_y"] == "+1.10"
    assert "agrees with the paper" in verdicts[0]
    assert "a loss beyond seed noise" in verdicts[1]


def test_cost_ratios():
    recs = [record("ref", 0, [1.0], flops=1e12, seconds=2.0), record("x", 0, [1.0], flops=3e12, seconds=1.0)]
    t = cost_table(recs, "ref", "c", "C", ["ref", "x"])
    assert t.rows[1]["× ref"] == "3.00" and t.rows[1]["× ref "] == "0.50"
    assert cost_table(recs, "absent", "c", "C", ["x"]) is None


def test_published_row_is_marked_and_never_runs(tmp_path):
    from dpir.config import validate_config
    from dpir.errors import DpirError
    from dpir.methods import build_method, seeds_of
    from dpir.report.tables import published_record
    from helpers import base_config

    cfg = base_config(tmp_path)
    pub = {"kind": "published", "label": "DvSR", "source": "Whang et al. CVPR 2022, Table 1",
           "scores": {"bundled": {"psnr_rgb": 31.66, "ssim_rgb": 0.948}}}
    cfg["tasks"]["deblur"]["methods"]["dvsr"] = pub
    cfg = validate_config(cfg)
    assert seeds_of(pub, cfg["tasks"]["deblur"]) == []          # no restore/score job is ever made
    with pytest.raises(DpirError, match="copied from its paper, never restored"):
        build_method(pub, None)
    recs = [record("m", 0, [30.0, 32.0]), published_record("dvsr", pub, "bundled")]
    assert published_record("dvsr", pub, "other") is None        # no numbers for a dataset: row omitted
    t = build_table(recs, "deblur_x", "T", ["psnr_rgb", "psnr_y"], ["m", "dvsr"])
    row = t.rows[1]
    assert row["Method"].startswith("*DvSR* (published)[^deblur-x-")
    assert row["psnr_rgb ↑"] == "31.66" and row["psnr_y ↑"] == "—" and row["NFE"] == "—"
    assert "scores copied from Whang et al. CVPR 2022, Table 1, not measured by this harness" in t.markdown()
    assert t.numeric[1]["published"] and t.numeric[1]["psnr_rgb"] == 31.66


@pytest.mark.parametrize("bad, match", [
    ({"source": ""}, r"methods\.dvsr\.source.*must cite"),
    ({"scores": {"nope": {"psnr_rgb": 1.0}}}, r"scores\.nope.*not a test dataset"),
    ({"scores": {"bundled": {"psnr_rgbb": 1.0}}}, r"unknown metric preset 'psnr_rgbb'.*Did you mean 'psnr_rgb'"),
    ({"scores": {"bundled": {"psnr_rgb": "31.6 dB"}}}, r"scores\.bundled\.psnr_rgb' must be a number"),
])
def test_published_row_config_errors(tmp_path, bad, match):
    from dpir.config import validate_config
    from dpir.errors import DpirError
    from helpers import base_config

    cfg = base_config(tmp_path)
    cfg["tasks"]["deblur"]["methods"]["dvsr"] = {"kind": "published", "label": "DvSR", "source": "paper",
                                                 "scores": {"bundled": {"psnr_rgb": 31.66}}, **bad}
    with pytest.raises(DpirError, match=match):
        validate_config(cfg)
