"""The claims table (dpir.report.claims): structured verdicts, the "not informative at this scale" rule
(every DP-IR row within the margin of its IR backbone row), the JSON round trip and the section."""
import json
import statistics

import pytest
from helpers import base_config, write_scores

from dpir.report import claims as C
from dpir.report import stats as S

IMAGES = ("a", "b", "c")


def record(method, seed, psnr, label=None, images=IMAGES):
    return {"task": "sr", "dataset": "bundled", "method": method, "seed": seed, "label": label or method,
            "n_images": len(images), "images": list(images), "method_config": {},
            "metrics": {"psnr_y": {"available": True, "lower_better": False, "convention": "c",
                                   "mean": statistics.fmean(psnr), "per_image": dict(zip(images, psnr)),
                                   "n_nonfinite": 0}},
            "cost": {"nfe": 1, "seconds_per_image": 1.0, "flops_per_image": 1e9, "flops_input_size": [24, 24],
                     "params_total": 1, "params_trained": 1, "peak_rss_mib": 1.0}}


write = write_scores


@pytest.fixture
def cfg(tmp_path):
    cfg = base_config(tmp_path)
    cfg["tasks"]["sr"]["methods"] = {
        "ir": {"kind": "backbone", "network": "net_a", "label": "IR"},
        "ir_b": {"kind": "backbone", "network": "net_b", "label": "IR b"},
        "quiet": {"kind": "dpir", "mode": "jump", "ir": "net_a", "label": "quiet"},
        "quiet2": {"kind": "dpir", "mode": "jump", "ir": "net_a", "label": "quiet2"},
        "loud": {"kind": "dpir", "mode": "jump", "ir": "net_b", "label": "loud"},
        "orphan": {"kind": "dpir", "mode": "jump", "ir": "net_c", "label": "orphan"},
    }
    out = tmp_path / "results"
    base = [30.0, 28.0, 26.0]
    write(out, record("ir", 0, base))
    write(out, record("ir_b", 0, base))
    write(out, record("quiet", 0, [v + 0.01 for v in base]))      # +0.01 dB on every image: inside ±0.1
    write(out, record("quiet2", 0, [v + 0.03 for v in base]))
    write(out, record("loud", 0, [v + 0.5 for v in base]))        # +0.5 dB: the diffusion part does something
    write(out, record("orphan", 0, base))
    return cfg


def test_difference_check_is_structured_and_its_line_unchanged():
    a = [record("A", 0, [31.0, 30.0, 29.0])]
    b = [record("B", 0, [30.0, 29.5, 28.0])]
    v = S.difference_check("A", a, "B", b, list(IMAGES), "psnr_y", False, "better", "A wins", 2)
    assert v.line == S.difference_verdict("A", a, "B", b, list(IMAGES), "psnr_y", False, "better", "A wins", 2)
    # per-image differences 1.0, 0.5, 1.0: every resample's mean is within [0.5, 1.0]
    assert (v.claim, v.kind, v.verdict, v.metric) == ("A wins", "agrees", "agrees", "psnr_y")
    assert v.interval == "+0.83 [+0.50, +1.00] dB" and v.n == "3 image(s) × 1 vs 1 seed(s)"
    assert v.half_width == pytest.approx(0.25)
    assert v.line.endswith(f"paired Δ {v.interval} (95 % bootstrap CI over {v.n}) → **agrees**.")
    flat = S.trend_check([5, 10, 20], [30.0, 29.0, 28.0], "psnr_y", False, "decreasing", "p")
    assert (flat.kind, flat.verdict, flat.interval, flat.half_width) == ("agrees", "agrees (monotone)", "", None)


def test_scale_rule_marks_dp_ir_rows_inside_the_margin_of_their_ir_row(cfg):
    check = C.ScaleCheck(cfg, "sr", "bundled")
    assert C.backbone_of(check.methods, "quiet") == "ir" and C.backbone_of(check.methods, "ir") is None
    assert C.backbone_of(check.methods, "orphan") is None
    # both DP-IR rows within ±0.1 dB of SwinIR's own output: no verdict about the diffusion part can be read
    assert check.sentence(("quiet", "quiet2")) == (
        "**no** — every DP-IR row is within ±0.1 dB of its IR network's output (quiet − ir +0.010 [+0.010, "
        "+0.010] dB; quiet2 − ir +0.030 [+0.030, +0.030] dB)")
    # one row beyond the margin: the comparison can be informative, and the row that breaks the rule is named
    assert check.sentence(("quiet", "loud")) == (
        "yes — not every DP-IR row is within ±0.1 dB of its IR output (loud − ir_b +0.500 [+0.500, +0.500] dB)")
    assert check.sentence(("orphan", "ir")) == ""          # no DP-IR row with a backbone row: not assessed
    cfg["report"]["margins"] = {"psnr": 0.005}
    assert C.ScaleCheck(cfg, "sr", "bundled").sentence(("quiet",)).startswith("yes — not every DP-IR row is within ±0.005 dB")


def test_claims_round_trip_and_section(cfg):
    runs = C.ScaleCheck(cfg, "sr", "bundled").runs
    v = S.difference_check("quiet", runs["quiet"], "quiet2", runs["quiet2"], list(IMAGES), "psnr_y", False, "close",
                           "jump is close to the chain", 2, {"psnr": 0.1}).with_rows("quiet", "quiet2")
    assert v.verdict == "agrees — equivalent within ±0.1 dB" and v.rows == ("quiet", "quiet2")
    claim = C.Claim("Table 10", "sr", "bundled", v, C.ScaleCheck(cfg, "sr", "bundled").sentence(v.rows))
    C.write_claims(cfg, [claim])
    assert C.read_claims(cfg) == [claim]
    lines = C.claims_section(cfg, [claim])
    row = next(x for x in lines if x.startswith("| Table 10"))
    assert row.split(" | ")[2:5] == ["agrees — equivalent within ±0.1 dB", "-0.02 [-0.02, -0.02] dB",
                                     "3 image(s) × 1 vs 1 seed(s)"]
    assert "| **no** — every DP-IR row is within ±0.1 dB" in row
    assert row.endswith("| The diffusion part is inactive at this scale: no verdict on the paper's claim can be read "
                        "here. |")
    assert C.INACTIVE_RULE in lines


def test_read_claims_absent_or_foreign(cfg):
    assert C.read_claims(cfg) is None
    C.claims_path(cfg).parent.mkdir(parents=True, exist_ok=True)
    C.claims_path(cfg).write_text(json.dumps({"format": "other"}))
    assert C.read_claims(cfg) is None


def test_table9_claims_are_exact_counts():
    data = {"rows": [
        {"task": "sr", "kind": "dpir", "label": "DP-IR", "tflops": 2.0, "nfe": 6},
        {"task": "sr", "kind": "srdiff", "label": "SRDiff", "tflops": 20.0, "nfe": 100},
        {"task": "sr", "kind": "backbone", "label": "SwinIR", "tflops": 1.0, "nfe": 1},
    ]}
    (c,) = C.table9_claims(data)
    assert (c.source, c.verdict.kind, c.verdict.interval) == ("Table 9 (paper size)", "agrees", "10x (exact count)")
    assert C.meaning(c) == "An exact count (no sampling noise): the verdict does not depend on the data."
    assert C.table9_claims(None) == []


def with_gmsd(rec, gmsd):
    """``rec`` with per-image GMSD scores and LPIPS not computed (no weights cached offline): the perceptual
    axis then resolves to GMSD, a stand-in."""
    images = rec["images"]
    rec["metrics"]["gmsd"] = {"available": True, "lower_better": True, "convention": "c", "mean": statistics.fmean(gmsd),
                              "per_image": dict(zip(images, gmsd)), "n_nonfinite": 0}
    rec["metrics"]["lpips_alex"] = {"available": False, "lower_better": True, "convention": "c",
                                    "reason": "weights not cached.", "fix": "dpir fetch lpips_alex"}
    return rec


def test_claims_on_a_stand_in_metric_say_so_and_a_size_is_not_checked_there(tmp_path):
    """Table 12's "about 30 % worse LPIPS" was judged "agrees" from a 0.7 % GMSD change: a size is never
    checked on a stand-in (only the direction, said to be on the stand-in), a direction claim on it is marked,
    and a size on the claim's own metric is said to be untested."""
    from dpir.report import ablation_rows as R

    cfg = base_config(tmp_path)
    out = tmp_path / "out"
    cfg["out"] = str(out)
    write(out, with_gmsd(record("dpir_jump_ddim", 0, [30.0, 28.0, 26.0]), [0.10, 0.12, 0.14]))
    write(out, with_gmsd(record("t12_udp_swinir", 0, [30.25, 28.25, 26.25]), [0.11, 0.13, 0.15]))
    pair = {"row": "t12_udp_swinir", "vs": "dpir_jump_ddim"}
    spec = {"task": "sr", "title": "Table 12: robustness", "kind": "rows", "rows": ["t12_udp_swinir", "dpir_jump_ddim"],
            "expect": [{**pair, "metric": "perceptual", "direction": "worse",
                        "paper": "UDP instead of MIRNet-S gives about 30% worse LPIPS"},
                       {**pair, "metric": "perceptual", "direction": "worse", "paper": "UDP worsens perceptual metrics"},
                       {**pair, "metric": "psnr", "direction": "better",
                        "paper": "UDP instead of MIRNet-S gives slightly higher PSNR (about +0.2 dB)"}]}
    _, lines, info = R.rows_table(cfg, "t12", spec)
    size, direction, psnr = info["claims"]
    assert (size.kind, size.stand_in, size.metric) == ("not checked", "LPIPS", "gmsd")
    assert size.verdict == ("not checked (stand-in metric) — the claimed size (about 30%) is of LPIPS, which this run "
                            "did not compute; the direction on the stand-in `gmsd`: agrees")
    assert lines[0] == ("- Paper: UDP instead of MIRNet-S gives about 30% worse LPIPS. Ours: t12_udp_swinir vs "
                        "dpir_jump_ddim: gmsd 0.1300 vs 0.1200; paired Δ +0.0100 [+0.0100, +0.0100] (95 % bootstrap CI "
                        "over 3 image(s) × 1 vs 1 seed(s)); `gmsd` stands in for LPIPS, which this run did not compute "
                        f"→ **{size.verdict}**.")
    assert (direction.kind, direction.verdict) == ("agrees", "agrees; on the stand-in `gmsd`, not LPIPS")
    assert lines[1].endswith("`gmsd` stands in for LPIPS, which this run did not compute → **agrees; on the stand-in "
                             "`gmsd`, not LPIPS**.")
    assert (psnr.kind, psnr.stand_in) == ("agrees", "")
    assert psnr.verdict == "agrees; direction only: the claimed size (about +0.2 dB) is not tested"
    assert lines[2].endswith("paired Δ +0.25 [+0.25, +0.25] dB (95 % bootstrap CI over 3 image(s) × 1 vs 1 seed(s)) → "
                             "**agrees; direction only: the claimed size (about +0.2 dB) is not tested**.")
    # the claims table says what the stand-in means, and the JSON keeps it
    assert C.meaning(C.Claim("Table 12", "sr", "bundled", size)) == (
        "LPIPS was not computed in this run: the claimed size cannot be read from the stand-in `gmsd`.")
    claim = C.Claim("Table 12", "sr", "bundled", direction)
    assert C.Claim.from_json(json.loads(json.dumps(claim.to_json()))) == claim
    # with LPIPS computed, nothing stands in and the size is said to be untested
    assert R.stand_in_for("perceptual", "lpips_alex") == "" and R.stand_in_for("perceptual", "topiq_delta") == "LPIPS"
    assert R.stand_in_for("psnr", "psnr_y") == ""


def test_claimed_sizes():
    assert S.claimed_magnitude("UDP instead of MIRNet-S gives about 30% worse LPIPS") == "about 30%"
    assert S.claimed_magnitude("slightly higher PSNR (about +0.2 dB)") == "about +0.2 dB"
    assert S.claimed_magnitude("DP-IR costs 2x-100x fewer TFLOPs than SRDiff") == "2x-100x"
    assert S.claimed_range("DP-IR costs 2x-100x fewer TFLOPs than SRDiff") == (2.0, 100.0)
    for words in ("the jump (τ=250) is close to the full chain", "SwinIR-M x4 at 1280x720",
                  "a better IR net (SwinIR over RRDB) improves perceptual metrics"):
        assert S.claimed_magnitude(words) is None and S.claimed_range(words) is None


def test_acceleration_claims_are_the_acceleration_tables_verdicts(cfg):
    """One decision: the claims table's acceleration rows are the structured checks the report's table prints."""
    from dpir.report.analysis import acceleration_checks, acceleration_table

    check = C.ScaleCheck(cfg, "sr", "bundled")
    records = [r for rs in check.runs.values() for r in rs]
    acc = {"reference": "ir", "compare": ["quiet", "loud", "absent"], "metrics": ["psnr_y", "ssim_y"]}
    _, lines = acceleration_table(records, "ir", acc["compare"], acc["metrics"], "acc", "A", margins={"psnr": 0.1})
    claims = C.acceleration_claims(cfg, "sr", "bundled", records, acc, check)
    assert [c.verdict.line for c in claims] == lines
    quiet, loud = claims
    assert (quiet.source, quiet.verdict.kind, quiet.verdict.verdict) == (
        "acceleration (sr)", "agrees", "agrees — no loss beyond the margin")
    assert quiet.verdict.interval == "psnr_y +0.01 [+0.01, +0.01] dB"      # ssim_y not scored: left out of both
    assert lines[0] == ("- quiet: NFE 1 → 1 (1.0× fewer); psnr_y Δ +0.01 [+0.01, +0.01] dB (margin 0.1 dB: no loss); "
                        "3 image(s) × 1 vs 1 seed(s) → no loss beyond the margin (95 % interval): agrees with the "
                        "paper's claim.")
    # the scale rule: quiet is within the margin of its IR row, so the comparison cannot be informative here
    assert quiet.informative.startswith("**no** — every DP-IR row is within ±0.1 dB of its IR network's output")
    assert C.meaning(quiet).startswith("The diffusion part is inactive at this scale")
    assert loud.informative.startswith("yes — ")
    # checks made once can be handed to both
    made = acceleration_checks(records, "ir", acc["compare"], acc["metrics"])
    assert [c.verdict() for c in made] == [c.verdict for c in claims]
    assert C.acceleration_claims(cfg, "sr", "bundled", [], acc, check, checks=made) == claims


def test_gaussian_claims_are_exact_and_keep_their_scale():
    data = {"settings": {"size": 8}, "degradations": [{"degradation": "sr4", "claims": [
        {"claim": "the jump matches the full chain", "holds": True, "criterion": "W2 ≤ ref", "text": "W2 1e-5"},
        {"claim": "DDIM matches", "holds": False, "criterion": "|ΔD| ≤ 5 %", "text": "ΔD 11 %"}]}]}
    ok, bad = C.gaussian_claims(data)
    assert (ok.source, ok.verdict.kind, ok.verdict.verdict, ok.verdict.interval) == (
        "Gaussian world (sr4)", "agrees", "agrees — W2 ≤ ref", "exact")
    assert (bad.verdict.kind, ok.scale, ok.informative) == ("disagrees", "exact Gaussian world, 8x8",
                                                             "yes — exact laws, no sampling")
    assert C.Claim.from_json(json.loads(json.dumps(ok.to_json()))) == ok
    old = {k: v for k, v in ok.to_json().items() if k != "scale"}        # a claims file from before the field
    assert C.Claim.from_json(old).scale == ""
    assert C.gaussian_claims(None) == []
