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
    # per-seed means 31 and 33 -> 32; 2 images x 2 seeds: each extreme bootstrap resample (one image and one
    # seed drawn twice) has probability 1/16 > 2.5 %, so the 95 % interval is exactly [30, 35]
    assert t.rows[1]["psnr_y ↑ [dB]"] == "32.00 [30.00, 35.00]"
    assert t.numeric[1]["psnr_y"] == 32.0 and t.numeric[1]["psnr_y_std"] == pytest.approx(2 ** 0.5)
    assert (t.numeric[1]["psnr_y_ci_low"], t.numeric[1]["psnr_y_ci_high"]) == (30.0, 35.0)
    assert t.rows[0]["lpips_alex ↓"].startswith("n/a[^sr-x-")
    md = t.markdown()
    assert "weights missing. Fix: `dpir fetch lpips_alex`" in md
    assert t.rows[1]["Params total (M)"] == "2.000" and t.rows[1]["Params trained (M)"] == "0.500"
    assert t.rows[1]["TFLOPs/img"].startswith("0.002") and t.rows[1]["images × seeds"] == "2 × 2"


def test_acceleration_verdict_is_a_paired_non_inferiority_test():
    """"No loss" needs the whole 95 % interval of the paired gain above -margin (0.1 dB by default):
    an improvement is never a loss, a clear drop is a loss, and a noisy variant is inconclusive even
    though its mean equals the reference's (the old 2-sigma seed rule called that "no loss")."""
    import numpy as np

    ids = tuple(f"i{k}" for k in range(8))
    base = np.linspace(24.0, 34.0, 8)                       # hard and easy images
    full = [record("full", s, list(base + 0.01 * s), nfe=1001, images=ids) for s in (0, 1)]
    better = [record("jump", s, list(base + 1.0 + 0.01 * s), nfe=51, images=ids[:6]) for s in (0, 1)]
    worse = [record("worse", s, list(base - 1.0), nfe=6, images=ids) for s in (0, 1)]
    wiggle = np.array([2.0, -2.0, 1.5, -1.5, 2.5, -2.5, 1.0, -1.0])
    noisy = [record("noisy", s, list(base + 0.01 * s + (1 - 2 * s) * wiggle), nfe=6, images=ids) for s in (0, 1)]
    t, verdicts = acceleration_table(full + better + worse + noisy, "full", ["jump", "worse", "noisy"], ["psnr_y"],
                                     "acc", "A")
    assert [r["images × seeds"] for r in t.rows] == ["8 × 2", "6 × 2", "8 × 2", "8 × 2"]   # common images only
    assert t.rows[1]["NFE cut"] == "19.6×" and t.rows[1]["Δpsnr_y"] == "+1.00 [+0.99, +1.01]"
    assert "margin 0.1 dB: no loss" in verdicts[0] and verdicts[0].endswith("agrees with the paper's claim.")
    assert "margin 0.1 dB: a loss" in verdicts[1] and "does not reproduce the paper's claim" in verdicts[1]
    assert t.numeric[3]["delta_psnr_y"] == pytest.approx(0.0, abs=1e-12)     # equal means...
    assert "inconclusive" in verdicts[2]                                       # ...but no evidence of "no loss"
    # a margin declared in the config decides: 3 dB covers the noisy variant's interval
    _, wide = acceleration_table(full + noisy, "full", ["noisy"], ["psnr_y"], "acc", "A", margins={"psnr": 3.0})
    assert "margin 3 dB: no loss" in wide[0]


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
    assert row["psnr_rgb ↑ [dB]"] == "31.66" and row["psnr_y ↑ [dB]"] == "—" and row["NFE"] == "—"
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


def test_tables_are_rendered_in_the_papers_order():
    from dpir.report.report import paper_order

    cfg = {"tasks": {"sr": {"title": "Table 3: SR"}, "extra": {"title": "my task"}, "deblur": {"title": "Table 2: x"},
                     "burst": {"title": "Table 1: y"}}}
    assert paper_order(cfg) == ["burst", "deblur", "sr", "extra"]


def test_per_image_scores_are_written_next_to_the_table(tmp_path):
    recs = [record("m", 1, [31.0, 35.0]), record("m", 0, [30.0, 32.0]), record("b", 0, [25.0, 26.0])]
    t = build_table(recs, "sr_x", "T", ["psnr_y", "lpips_alex"], ["b", "m"])
    t.write(tmp_path)
    # one row per (method, seed, image), sorted by method then seed; an unavailable metric is empty
    assert (tmp_path / "sr_x_per_image.csv").read_text().splitlines() == [
        "method,seed,image,psnr_y,lpips_alex", "b,0,a,25.0,", "b,0,b,26.0,", "m,0,a,30.0,", "m,0,b,32.0,",
        "m,1,a,31.0,", "m,1,b,35.0,"]


def test_a_published_row_may_give_the_official_burst_score(tmp_path):
    """``psnr_linear_official`` (the protocol table's official SyntheticBurst column) is the one score name
    a published row may give beside the metric presets; the main table ignores it."""
    from dpir.config import validate_config
    from helpers import base_config

    cfg = base_config(tmp_path)
    cfg["tasks"]["burst"]["methods"]["bsrt_pub"] = {"kind": "published", "label": "BSRT", "source": "paper",
                                                    "scores": {"bundled": {"psnr_linear_official": 41.5}}}
    validate_config(cfg)
