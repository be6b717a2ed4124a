"""Paired statistics in the rendered tables and verdicts (dpir.report.stats, tables, ablation_rows):
verdicts decided on per-image differences, "close" as an equivalence test with a margin, intervals in
every cell and CSV, and rows on fewer images set apart."""
from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pytest

from dpir.report import paired as P
from dpir.report import stats as S
from dpir.report.tables import build_table


def run(method, seed, psnr, images=None, label=None):
    """A results record with per-image psnr_y only (the fields the tables and verdicts read)."""
    images = list(images or [f"i{k}" for k in range(len(psnr))])
    return {"task": "sr", "dataset": "bundled", "method": method, "seed": seed, "label": label or method,
            "n_images": len(images), "images": images,
            "metrics": {"psnr_y": {"available": True, "lower_better": False, "convention": "PSNR Y",
                                   "mean": statistics.fmean(psnr), "per_image": dict(zip(images, psnr)),
                                   "n_nonfinite": 0}},
            "cost": {"nfe": 1, "params_total": 1_000_000, "params_trained": 1_000_000, "flops_per_image": 1e9,
                     "flops_input_size": [24, 24], "seconds_per_image": 0.5, "peak_rss_mib": 1.0}}


#: hard and easy images: a large spread between images, which pairing cancels
BASE = [28.0, 31.0, 25.0, 33.0, 29.0, 26.0]
IMAGES = [f"i{k}" for k in range(len(BASE))]


def shifted(method, shift, seeds=(0,)):
    return [run(method, s, [v + shift for v in BASE]) for s in seeds]


def verdict(a, b, direction, margins=None, digits=2):
    return S.difference_verdict("A", a, "B", b, IMAGES, "psnr_y", False, direction, "p", digits, margins)


def test_a_constant_shift_gives_a_zero_width_interval_and_agrees():
    a, b = shifted("a", 0.3, seeds=(0, 1)), shifted("b", 0.0)
    assert verdict(a, b, "better") == (
        "- Paper: p. Ours: A vs B: psnr_y 28.97 vs 28.67 dB; paired Δ +0.30 [+0.30, +0.30] dB (95 % bootstrap CI "
        "over 6 image(s) × 2 vs 1 seed(s)) → **agrees**.")
    assert verdict(a, b, "worse").endswith("→ **disagrees**.")
    # the same shift, unpaired, would be lost in the spread between images: the cells' intervals overlap
    ca, cb = S.cell_interval(a, "psnr_y", IMAGES), S.cell_interval(b, "psnr_y", IMAGES)
    assert ca.low < cb.high


def test_noise_alone_is_inconclusive_where_the_seed_noise_rule_said_no_loss():
    # per-image differences of +-1 dB that cancel in every seed's mean: the old rule saw a difference of 0
    # within a seed noise of 0 and printed "agrees — no loss beyond seed noise"
    wiggle = [1.0, -1.0, 1.0, -1.0, 0.5, -0.5]
    a = [run("a", 0, [v + w for v, w in zip(BASE, wiggle)]), run("a", 1, [v - w for v, w in zip(BASE, wiggle)])]
    b = shifted("b", 0.0)
    old = (statistics.fmean(r["metrics"]["psnr_y"]["mean"] for r in a), b[0]["metrics"]["psnr_y"]["mean"])
    assert old[0] == pytest.approx(old[1])
    line = verdict(a, b, "close")
    assert "paired Δ +0.00 [" in line and "equivalence margin ±0.1 dB" in line
    assert line.endswith("→ **inconclusive — the interval is not within ±0.1 dB**.")
    iv = P.paired_difference(P.score_matrix(a, "psnr_y", IMAGES), P.score_matrix(b, "psnr_y", IMAGES))
    assert iv.low < -0.1 and iv.high > 0.1
    assert verdict(a, b, "better").endswith("→ **inconclusive — the interval includes no difference**.")


def test_close_is_an_equivalence_test_against_the_margin():
    b = shifted("b", 0.0)
    assert verdict(shifted("a", -0.05), b, "close").endswith("→ **agrees — equivalent within ±0.1 dB**.")
    # a large improvement is not "close" either, and the line says which way it differs
    assert verdict(shifted("a", 0.3), b, "close").endswith("→ **disagrees — better by more than ±0.1 dB**.")
    assert verdict(shifted("a", -0.3), b, "close").endswith("→ **disagrees — worse by more than ±0.1 dB**.")
    # the config's report.margins, by preset name, beat the family default
    line = verdict(shifted("a", 0.3), b, "close", margins={"psnr_y": 0.5})
    assert "equivalence margin ±0.5 dB" in line and line.endswith("**agrees — equivalent within ±0.5 dB**.")
    # a metric without a margin is not checked, and the line says where to declare one
    line = S.difference_verdict("A", renamed(shifted("a", 0.0)), "B", renamed(b), IMAGES, "my_score", False, "close",
                                "p", 2, {"psnr": 0.1})
    assert line.endswith("→ **not checked — no equivalence margin for `my_score`: declare one under "
                         "`report.margins`**.")


def renamed(rs, name="my_score"):
    """The records with their psnr_y scores under a metric name that has no preset and no margin."""
    return [dict(r, metrics={name: r["metrics"]["psnr_y"]}) for r in rs]


def test_a_difference_below_display_precision_never_reads_as_a_direction():
    # deterministic rows 0.001 dB apart on every image: the interval is [-0.001, -0.001], "-0.00" at 2 digits;
    # without a margin the display precision decides, and at 3 digits the direction is certain
    a, b = renamed(shifted("a", -0.001)), renamed(shifted("b", 0.0))
    line = S.difference_verdict("A", a, "B", b, IMAGES, "my_score", False, "better", "p", 2, {})
    assert "paired Δ -0.00 [-0.00, -0.00]" in line
    assert line.endswith("→ **inconclusive — no difference at this precision**.")
    assert S.difference_verdict("A", a, "B", b, IMAGES, "my_score", False, "better", "p", 3, {}).endswith(
        "→ **disagrees**.")


def test_a_direction_inside_the_margin_is_no_difference_as_in_the_close_verdict():
    """The reader's complaint: "Δ -0.00 → disagrees" in one table, "inconclusive" / "close" for the same
    numbers in another.  An interval wholly inside the equivalence margin is the same finding for every claim:
    "close" agrees, and a stated direction is "no difference beyond the margin" on either side (the old rule
    said "disagrees" for -0.004 dB and "agrees" for +0.004 dB)."""
    b = shifted("b", 0.0)
    for shift in (-0.004, 0.004):
        assert verdict(shifted("a", shift), b, "close").endswith("→ **agrees — equivalent within ±0.1 dB**.")
        for direction in ("better", "worse"):
            assert verdict(shifted("a", shift), b, direction, digits=3).endswith(
                "→ **disagrees — no difference beyond ±0.1 dB: equivalent within the margin**.")
    # noise wider than the margin: "inconclusive" for "close", and for a direction, as before
    wiggle = [1.0, -1.0, 1.0, -1.0, 0.5, -0.5]
    noisy = [run("a", 0, [v + w for v, w in zip(BASE, wiggle)])]
    assert verdict(noisy, b, "close").endswith("→ **inconclusive — the interval is not within ±0.1 dB**.")
    assert verdict(noisy, b, "better").endswith("→ **inconclusive — the interval includes no difference**.")
    # beyond the margin the direction decides
    assert verdict(shifted("a", -0.3), b, "better").endswith("→ **disagrees**.")


def test_one_common_image_has_no_interval():
    a, b = [run("a", 0, [30.0], images=["i0"])], [run("b", 0, [29.0], images=["i0"])]
    line = S.difference_verdict("A", a, "B", b, ["i0"], "psnr_y", False, "better", "p", 2)
    assert "paired Δ +1.00 dB (95 % bootstrap CI over 1 image(s) × 1 vs 1 seed(s))" in line
    assert line.endswith("→ **inconclusive — one common image gives no interval**.")


def test_infinite_scores_are_left_out_of_the_pairing():
    a = shifted("a", 0.5)
    a[0]["metrics"]["psnr_y"]["per_image"]["i0"] = math.inf
    line = verdict(a, shifted("b", 0.0), "better")
    assert "over 5 image(s) × 1 vs 1 seed(s)" in line and "paired Δ +0.50 [+0.50, +0.50] dB" in line


def test_trend_beyond_noise_uses_the_paired_interval_of_its_end_rows():
    wide = P.Interval(-0.003, -0.2, 0.15, 4, 4)
    line = S.trend_verdict([5, 10, 20], [27.245, 27.243, 27.242], "psnr_y", False, "decreasing", "p", wide, 3)
    assert line == ("- Paper: p. Ours: psnr_y over τ (τ=5: 27.25, τ=10: 27.24, τ=20: 27.24); paired Δ(τ=20 − τ=5) "
                    "-0.003 [-0.200, +0.150] dB (95 % bootstrap CI over 4 image(s)) includes 0 → **inconclusive — τ "
                    "makes no measurable difference here**.")
    # a sweep whose end rows lie within the margin is flat by the equivalence test, whether its interval includes
    # 0 or not: 0.004 dB is no trend (the old rule: "agrees (monotone)" once the interval left 0 at 2 digits)
    for ends in (P.Interval(-0.003, -0.004, 0.001, 4, 4), P.Interval(-0.006, -0.007, -0.005, 2, 4)):
        line = S.trend_verdict([5, 10, 20], [27.246, 27.243, 27.240], "psnr_y", False, "decreasing", "p", ends, 2)
        assert line.endswith("(95 % bootstrap CI over " f"{ends.n_images} image(s)) → **disagrees — τ changes psnr_y by "
                             "no more than ±0.1 dB: equivalent within the margin**.")
    # without a margin (a metric that has none) the display precision still decides
    tiny = P.Interval(-0.001, -0.001, -0.001, 2, 4)
    line = S.trend_verdict([5, 10, 20], [27.245, 27.243, 27.242], "my_score", False, "decreasing", "p", tiny, 2)
    assert line.endswith("paired Δ(τ=20 − τ=5) -0.00 [-0.00, -0.00] (95 % bootstrap CI over 2 image(s)) → "
                         "**inconclusive — τ makes no difference at this precision**.")
    clear = P.Interval(-2.0, -2.2, -1.8, 4, 4)
    line = S.trend_verdict([5, 10, 20], [30.0, 29.0, 28.0], "psnr_y", False, "decreasing", "p", clear, 2)
    assert "paired Δ(τ=20 − τ=5) -2.00 [-2.20, -1.80] dB" in line and line.endswith("**agrees (monotone)**.")


def test_main_table_cells_have_intervals_and_rows_on_fewer_images_are_set_apart(tmp_path):
    recs = [run("m", 0, [30.0, 32.0], images=["a", "b"]), run("m", 1, [31.0, 35.0], images=["a", "b"]),
            run("b", 0, [25.0, 25.0], images=["a", "b"]), run("full", 0, [20.0], images=["a"], label="Full chain")]
    t = build_table(recs, "sr_x", "T", ["psnr_y"], ["full", "b", "m"])
    assert t.columns[1] == "psnr_y ↑ [dB]"
    assert [r["Method"] for r in t.rows] == ["b", "m"]
    # 2 images x 2 seeds: each extreme resample (one seed, one image twice) has probability 1/16 > 2.5 %,
    # so the percentile interval is exactly [30, 35]; a constant row has a zero-width one
    assert t.rows[1]["psnr_y ↑ [dB]"] == "32.00 [30.00, 35.00]" and t.rows[1]["images × seeds"] == "2 × 2"
    assert t.rows[0]["psnr_y ↑ [dB]"] == "25.00 [25.00, 25.00]"
    assert [r["Method"] for r in t.apart] == ["Full chain[^sr-x-1]"]
    assert t.apart[0]["psnr_y ↑ [dB]"] == "20.00" and t.apart[0]["images × seeds"] == "1 × 1"
    md = t.markdown()
    assert md.index("| m ") < md.index("Rows scored on fewer than the 2 test images") < md.index("| Full chain")
    assert ("[^sr-x-1]: Full chain: scored on 1 of the 2 test images (a; the method's `max_images`): its cells are "
            "means over those images only, not comparable with the rows above.") in md
    num = {n["method"]: n for n in t.numeric}
    assert num["full"]["partial"] and not num["m"]["partial"] and num["full"]["images"] == 1
    t.write(tmp_path)
    head = (tmp_path / "sr_x.csv").read_text().splitlines()[0].split(",")
    assert {"psnr_y", "psnr_y_std", "psnr_y_ci_low", "psnr_y_ci_high"} <= set(head)
    assert (num["m"]["psnr_y_ci_low"], num["m"]["psnr_y_ci_high"]) == (30.0, 35.0)
    assert "psnr_y_ci_low" not in num["full"]              # one image, one seed: no interval


def test_intervals_are_the_same_on_every_render():
    recs = [run("m", s, list(np.random.default_rng(s).normal(30, 2, size=5))) for s in (0, 1)]
    one, two = build_table(recs, "t", "T", ["psnr_y"]), build_table(recs, "t", "T", ["psnr_y"])
    assert one.rows == two.rows and one.numeric == two.numeric


def test_margins_config_key(tmp_path):
    from helpers import ROOT

    from dpir.config import load_config, validate_config
    from dpir.errors import DpirError

    cfg = load_config([ROOT / "config" / "config.yaml"])
    assert cfg["report"]["margins"] == P.DEFAULT_MARGINS
    cfg["report"]["margins"]["psnr"] = 0
    with pytest.raises(DpirError, match=r"report\.margins\.psnr"):
        validate_config(cfg)


def test_ablation_verdicts_read_the_config_margins(tmp_path):
    from helpers import base_config

    from dpir.report import ablation_rows as R

    cfg = base_config(tmp_path)
    out = tmp_path / "out"
    cfg["out"] = str(out)
    spec = {"task": "sr", "title": "T", "kind": "rows", "rows": ["dpir_jump", "dpir_full"],
            "expect": [{"row": "dpir_jump", "vs": "dpir_full", "metric": "psnr", "direction": "close", "paper": "p"}]}
    for rec in [*shifted("dpir_jump", 0.3, seeds=(0, 1)), *shifted("dpir_full", 0.0)]:
        p = out / "scores" / "sr" / "bundled" / rec["method"] / f"seed{rec['seed']}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(rec))
    cfg["report"] = dict(cfg.get("report") or {}, margins={"psnr": 0.1})
    _, verdicts, _ = R.rows_table(cfg, "t", spec)
    assert verdicts[0].endswith("**disagrees — better by more than ±0.1 dB**.")
    cfg["report"]["margins"] = {"psnr": 0.5}
    _, verdicts, _ = R.rows_table(cfg, "t", spec)
    assert "6 image(s) × 2 vs 1 seed(s); equivalence margin ±0.5 dB" in verdicts[0]
    assert verdicts[0].endswith("**agrees — equivalent within ±0.5 dB**.")
