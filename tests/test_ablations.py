"""Ablation tables (dpir.report.ablations and the modules it uses) from synthetic results files: exact cells, verdicts, plots,
and the config checks of the `ablations` section."""
import json
import statistics

import pytest

from dpir.config import ablation_tables, all_methods, method_config
from dpir.errors import DpirError
from dpir.report import ablation_cost as C
from dpir.report import ablation_rows as R
from dpir.report import ablations as A
from dpir.report import paired as P
from dpir.report import stats as S
from helpers import base_config, write_scores


def record(method, seed, psnr, lpips, images=("a", "b"), nfe=51, label=None, dataset="bundled", cfg=None):
    def metric(vals, lower):
        return {"available": True, "lower_better": lower, "convention": "c", "mean": statistics.fmean(vals),
                "per_image": dict(zip(images, vals)), "n_nonfinite": 0}
    return {"task": "sr", "dataset": dataset, "method": method, "seed": seed, "label": label or method,
            "n_images": len(images), "images": list(images), "method_config": cfg or {},
            "metrics": {"psnr_y": metric(psnr, False), "lpips_alex": metric(lpips, True)},
            "cost": {"nfe": nfe, "seconds_per_image": 1.5, "flops_per_image": 1e9, "flops_input_size": [24, 24],
                     "params_total": 1, "params_trained": 1, "peak_rss_mib": 1.0}}


write = write_scores


@pytest.fixture
def cfg(tmp_path):
    return base_config(tmp_path)


def test_default_config_declares_every_paper_ablation(cfg):
    cfg["ablations"].pop("enabled_tables", None)     # config/test.yaml runs one table per kind
    tables = ablation_tables(cfg)
    assert {"t4_modularity", "t5_fusion", "t6_tau", "t7_training", "t8_acceleration", "t9_cost", "t10_ddim",
            "t12_robustness", "t13_deblur_tau"} <= set(tables)
    # ablation methods are found by the same lookup the restore stage uses
    assert method_config(cfg, "sr", "t4_udp_rrdb")["denoiser"] == "udp_denoiser"
    assert "dpir_jump_ddim" in all_methods(cfg, "sr") and "t6_tau10" in all_methods(cfg, "sr")
    # the fusion variants are the architectures of the paper's Table 5; L-DWT has 30 parameters
    nets = {cfg["networks"][f"fusion_{v}_sr"]["arch"] for v in ("tdwa", "ldwt", "unet")}
    assert nets == {"fusion_tdwa", "fusion_ldwt", "fusion_unet"}
    cfg["run_ablations"] = False
    assert ablation_tables(cfg) == {}


def test_config_errors_name_the_key(tmp_path):
    from dpir.config import validate_config

    cfg = base_config(tmp_path)
    cfg["ablations"]["tables"]["t4_modularity"]["rows"].append("t4_udp_swimir")
    with pytest.raises(DpirError, match=r"ablations\.tables\.t4_modularity\.rows.*'t4_udp_swimir'.*Did you mean 't4_udp_swinir'"):
        validate_config(cfg)
    cfg = base_config(tmp_path)
    cfg["ablations"]["methods"]["sr"]["bicubic"] = {"kind": "bicubic"}
    with pytest.raises(DpirError, match=r"ablations\.methods\.sr\.bicubic.*already has a method"):
        validate_config(cfg)
    cfg = base_config(tmp_path)
    cfg["ablations"]["methods"]["sr"]["t4_udp_rrdb"]["fusion"] = "fusion_nope"
    with pytest.raises(DpirError, match=r"ablations\.methods\.sr\.t4_udp_rrdb\.fusion.*fusion_nope"):
        validate_config(cfg)
    cfg = base_config(tmp_path)
    cfg["ablations"]["tables"]["t10_ddim"]["expect"][0]["vs"] = "dpir_full"
    with pytest.raises(DpirError, match=r"t10_ddim\.expect\[0\]\.vs': 'dpir_full' is not one of the table's rows"):
        validate_config(cfg)
    cfg = base_config(tmp_path)
    cfg["ablations"]["tables"]["t6_tau"]["colour"] = "red"
    with pytest.raises(DpirError, match=r"ablations\.tables\.t6_tau\.colour.*not a known setting"):
        validate_config(cfg)


def test_difference_verdicts():
    # per-image paired differences on the two rows' common images: a constant shift is a zero-width interval
    def rows(shift_a, seeds_a=(0, 1), lp=(0.3, 0.3)):
        a = [record("a", s, [30.0 + shift_a, 32.0 + shift_a], list(lp)) for s in seeds_a]
        return a, [record("b", 0, [30.0, 32.0], [0.2, 0.2])]
    a, b = rows(1.0)
    line = S.difference_verdict("A", a, "B", b, ["a", "b"], "psnr_y", False, "better", "A wins", 2)
    assert line == ("- Paper: A wins. Ours: A vs B: psnr_y 32.00 vs 31.00 dB; paired Δ +1.00 [+1.00, +1.00] dB "
                    "(95 % bootstrap CI over 2 image(s) × 2 vs 1 seed(s)) → **agrees**.")
    a, b = rows(-1.0)
    assert "**disagrees**" in S.difference_verdict("A", a, "B", b, ["a", "b"], "psnr_y", False, "better", "x")
    # lower-is-better metrics: a larger LPIPS is "worse"
    a, b = rows(0.0)
    assert S.difference_verdict("U", a, "M", b, ["a", "b"], "lpips_alex", True, "worse", "x").endswith("**agrees**.")
    # only the images both rows scored are compared
    c = [record("c", 0, [31.0, 33.0, 99.0], [0.2] * 3, images=("a", "b", "z"))]
    assert "over 2 image(s) × 1 vs 1 seed(s)" in S.difference_verdict("C", c, "B", b, ["a", "b"], "psnr_y", False,
                                                                      "better", "x")


def test_spearman_and_trend():
    assert S.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert S.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert S.spearman([1, 2, 3], [1, 1, 2]) == pytest.approx(0.8660254, abs=1e-6)  # ties get average ranks
    # PSNR falling with tau = quality decreasing: agrees with a "decreasing" statement
    assert "**agrees (monotone)**" in S.trend_verdict([5, 10, 20], [30.0, 29.0, 28.0], "psnr_y", False, "decreasing", "p")
    # LPIPS falling with tau = perceptual quality increasing
    assert "**agrees (monotone)**" in S.trend_verdict([5, 10, 20], [0.3, 0.2, 0.1], "lpips", True, "increasing", "p")
    assert "**disagrees**" in S.trend_verdict([5, 10, 20], [0.1, 0.2, 0.3], "lpips", True, "increasing", "p")
    # a sweep whose end rows' paired interval includes 0 is no evidence either way (tests/test_report_paired.py)
    line = S.trend_verdict([5, 10, 20], [27.245, 27.243, 27.242], "psnr_y", False, "decreasing", "p",
                           P.Interval(-0.003, -0.2, 0.15, 2, 4))
    assert "includes 0 → **inconclusive — τ makes no measurable difference here**" in line


def test_rows_table_uses_common_images_and_partial_rows(cfg, tmp_path):
    out = tmp_path / "out"
    cfg["out"] = str(out)
    ab = ("a", "b")
    write(out, record("dpir_full", 0, [30.0], [0.20], images=("a",), nfe=1001))
    for s, (p1, p2) in enumerate([(30.0, 32.0), (31.0, 33.0)]):
        write(out, record("t6_tau50", s, [p1, p2], [0.3, 0.3], images=ab))
        write(out, record("t8_sdedit50", s, [p1 - 3, p2 - 3], [0.35, 0.35], images=ab))
        write(out, record("dpir_jump", s, [p1, p2, 99.0], [0.2, 0.2, 0.2], images=("a", "b", "c")))
        write(out, record("t6_tau25", s, [p1, p2], [0.3, 0.3], images=ab))
        write(out, record("t8_sdedit25", s, [p1 - 1, p2 - 1], [0.25, 0.25], images=ab))
        write(out, record("t8_ccdf50", s, [p1 - 2, p2 - 2], [0.32, 0.32], images=ab))
        write(out, record("t8_ccdf25", s, [p1 - 2, p2 - 2], [0.32, 0.32], images=ab))
    # the config's Table 8 with the rows and claims this test writes scores for (the config may add rows)
    rows = ["dpir_full", "t6_tau25", "t8_sdedit25", "t8_ccdf25", "t6_tau50", "t8_sdedit50", "t8_ccdf50", "dpir_jump"]
    expect = [e for e in cfg["ablations"]["tables"]["t8_acceleration"]["expect"] if e["row"] != "dpir_jump_wide"]
    expect.append({"row": "dpir_jump", "vs": "dpir_full", "metric": "psnr", "direction": "close", "paper": "close"})
    spec = dict(cfg["ablations"]["tables"]["t8_acceleration"], rows=rows, partial=["dpir_full"], expect=expect)
    table, verdicts, info = R.rows_table(cfg, "t8_acceleration", spec)
    assert info["images"] == ["a", "b"]  # image c of dpir_jump is left out; dpir_full is partial
    row = {r["method"]: r for r in table.numeric}
    # dpir_jump per-seed means over a, b: 31 and 32 -> 31.5 ± 0.707
    assert row["dpir_jump"]["psnr_y"] == pytest.approx(31.5)
    assert row["dpir_jump"]["psnr_y_std"] == pytest.approx(2 ** -0.5)
    assert row["dpir_full"]["psnr_y"] == 30.0 and row["t8_sdedit50"]["psnr_y"] == pytest.approx(28.5)
    # the partial row (dpir_full, 1 image) is set apart below the table
    assert [r["Start"] for r in table.rows] == ["one-step jump", "SDEdit (denoiser only)", "CCDF (denoiser + back-projection)",
                                                "one-step jump", "SDEdit (denoiser only)",
                                                "CCDF (denoiser + back-projection)", "one-step jump"]
    assert table.apart[0]["Start"] == "full chain" and "[^t8-acceleration-" in table.apart[0]["Method"]
    assert table.apart[0]["images × seeds"] == "1 × 1" and table.rows[0]["images × seeds"] == "2 × 2"
    assert table.rows[3]["τ"] == str(method_config(cfg, "sr", "t6_tau50")["tau"])
    # 2 images x 2 seeds: the extreme resamples have probability 1/16 each, so the interval is exact
    assert table.rows[6]["psnr_y ↑ [dB]"] == "31.50 [30.00, 33.00]" and table.rows[0]["lpips_alex ↓"] == "0.3000 [0.3000, 0.3000]"
    assert (row["dpir_jump"]["psnr_y_ci_low"], row["dpir_jump"]["psnr_y_ci_high"]) == (30.0, 33.0)
    assert "2 test image(s) of `sr/bundled` common to every row (a, b)" in table.footnotes[0]
    # tau25 - sdedit25 per seed pair is 0, 1 or 2 dB: the interval [0, 2] touches 0 (the old rule: "within seed noise")
    assert ("paired Δ +1.00 [+0.00, +2.00] dB (95 % bootstrap CI over 2 image(s) × 2 vs 2 seed(s)) → **inconclusive — "
            "the interval includes no difference**") in verdicts[0]
    assert "paired Δ +3.00 [+2.00, +4.00] dB" in verdicts[1] and verdicts[1].endswith("→ **agrees**.")
    # LPIPS 0.30 (jump) vs 0.25 (SDEdit) on every image: the jump is worse on the perceptual axis
    assert "lpips_alex 0.3000 vs 0.2500; paired Δ +0.0500 [+0.0500, +0.0500]" in verdicts[2] and "**disagrees**" in verdicts[2]
    # jump vs full chain share image a only: no interval, never "no loss" (the old rule said "agrees — no loss")
    assert ("psnr_y 30.50 vs 30.00 dB; paired Δ +0.50 dB (95 % bootstrap CI over 1 image(s) × 2 vs 1 seed(s); "
            "equivalence margin ±0.1 dB) → **inconclusive — one common image gives no interval**") in verdicts[6]
    # CCDF rows: 2 dB below the jump on every image and seed, LPIPS 0.32 vs the jump's 0.30
    assert "paired Δ +2.00 [+1.00, +3.00] dB" in verdicts[3] and verdicts[3].endswith("→ **agrees**.")
    assert "paired Δ +2.00 [+1.00, +3.00] dB" in verdicts[4] and verdicts[4].endswith("→ **agrees**.")
    assert "lpips_alex 0.3000 vs 0.3200" in verdicts[5] and "**agrees**" in verdicts[5]


def test_rows_table_missing_scores_names_the_rows(cfg, tmp_path):
    cfg["out"] = str(tmp_path / "empty")
    with pytest.raises(DpirError, match=r"no scores for dpir_jump_ddim, t4_udp_swinir.*snakemake --cores all ablations"):
        R.rows_table(cfg, "t4_modularity", cfg["ablations"]["tables"]["t4_modularity"])


def test_tau_sweep_renders_table_plot_and_trend(cfg, tmp_path):
    out = tmp_path / "out"
    cfg["out"] = str(out)
    cfg["ablations"]["tables"] = {"t6_tau": cfg["ablations"]["tables"]["t6_tau"]}
    rows = cfg["ablations"]["tables"]["t6_tau"]["rows"]
    for i, m in enumerate(rows):
        for s in (0, 1):
            write(out, record(m, s, [30.0 - i + 0.1 * s] * 2, [0.4 - 0.05 * i] * 2, nfe=10 + i))
    parts = A.render_ablations(cfg)
    text = "\n".join(parts)
    assert "### Table 6" in text and "![t6_tau](ablations/figures/t6_tau.png)" in text
    assert (out / "ablations" / "figures" / "t6_tau.png").stat().st_size > 5000
    assert (out / "ablations" / "t6_tau.csv").read_text().startswith("method,label,tau,psnr_y")
    assert text.count("**agrees (monotone)**") == 2
    path = A.write_ablations_report(cfg)
    assert path.read_text().startswith("# dpir-bench ablations\n")


def test_training_cost_reads_train_logs(cfg, tmp_path):
    out = tmp_path / "out"
    cfg["out"] = str(out)

    def log(net, params, steps, batch, images, secs):
        d = out / "networks" / net
        d.mkdir(parents=True)
        (d / "train_log.json").write_text(json.dumps({"trained_params": params, "steps": steps, "batch": batch,
                                                      "train_images": images, "seconds_this_run": secs}))
    log("fusion_sr", 150_000, 300, 4, 6, 100.0)
    log("mirnet_s", 560_000, 300, 8, 6, 200.0)
    log("swinir_sr", 300_000, 700, 8, 6, 300.0)
    log("srdiff_rrdb", 100_000, 300, 8, 6, 50.0)
    log("srdiff", 900_000, 300, 8, 6, 150.0)
    log("indi", 400_000, 300, 8, 6, 80.0)
    log("diffir_s1", 500_000, 300, 8, 6, 60.0)
    log("diffir_s2", 600_000, 300, 8, 6, 70.0)
    table, verdicts = C.training_cost_table(cfg, "t7", cfg["ablations"]["tables"]["t7_training"])
    row = {r["method"]: r for r in table.numeric}
    # DP-IR: only the fusion net is trained for the task; the denoiser and IR net are reused
    assert row["dpir_jump_ddim"]["params_trained"] == 150_000 and row["dpir_jump_ddim"]["samples"] == 1200
    assert set(row["dpir_jump_ddim"]["reused"]) == {"mirnet_s", "swinir_sr"}
    assert row["srdiff"]["params_trained"] == 1_000_000 and row["srdiff"]["iterations"] == 600
    assert row["diffir"]["params_trained"] == 1_100_000 and row["diffir"]["seconds"] == 130.0
    assert "`mirnet_s` (denoiser, shared by all tasks, 0.560M)" in table.rows[0]["Reused (not trained for this task)"]
    assert len(verdicts) == 3 and all("**agrees**" in v for v in verdicts)


def test_flops_table_ratios(cfg, tmp_path):
    out = tmp_path / "out"
    cfg["out"] = str(out)
    rows = [{"method": m, "label": m, "nfe": n, "per_step_tflops": x, "steps": n - 1, "once_tflops": y,
             "total_tflops": x * (n - 1) + y}
            for m, n, x, y in [("dpir_jump_ddim", 51, 0.1, 1.0), ("dpir_jump", 251, 0.1, 1.0), ("dpir_full", 1001, 0.1, 1.0),
                               ("srdiff", 101, 0.5, 0.2), ("indi", 11, 0.3, 0.0), ("diffir", 5, 0.0, 0.5)]]
    (out / "cost").mkdir(parents=True)
    (out / "cost" / "sr_tflops_1280x720.json").write_text(json.dumps({"width": 1280, "height": 720, "rows": rows}))
    table, verdicts = C.flops_table(cfg, "t9", cfg["ablations"]["tables"]["t9_cost"])
    num = {r["method"]: r for r in table.numeric}
    assert num["dpir_jump_ddim"]["total_tflops"] == pytest.approx(6.0) and num["srdiff"]["ratio"] == pytest.approx(50.2 / 6)
    assert table.rows[3]["TFLOPs/img at 1280x720"] == "50.2" and table.rows[3]["× ref"] == "8.37"
    assert verdicts[0] == ("- Paper: DP-IR costs 2x-100x fewer TFLOPs than SRDiff. Ours: srdiff needs 8.37× the "
                           "TFLOPs of dpir_jump_ddim (50.2 vs 6) → **agrees — within the claimed 2x-100x**.")
    # DiffIR (0.5) is cheaper here: a ratio below 1 is printed as a fraction, never "0.1×"
    assert verdicts[2] == ("- Paper: DP-IR costs fewer TFLOPs than DiffIR. Ours: diffir needs 1/12 (0.083×) the "
                           "TFLOPs of dpir_jump_ddim (0.5 vs 6) → **disagrees**.")
    assert table.rows[5]["× ref"] == "0.083"
    assert table.rows[0]["s/img on this CPU"].startswith("n/a")             # nothing restored in this test


def test_cost_ratios_are_readable_at_any_magnitude():
    """A ratio of 1/45 printed "0.0× the TFLOPs" (one decimal); a claimed range is checked on the count."""
    from dpir.report.tables import ratio_number, ratio_text

    assert (ratio_number(1 / 45), ratio_text(1 / 45)) == ("0.022", "1/45 (0.022×)")
    assert (ratio_number(3.0), ratio_number(0.5), ratio_number(1 / 3040), ratio_number(None)) == (
        "3.00", "0.50", "0.00033", "n/a")
    assert (ratio_text(8.3666), ratio_text(3940.2)) == ("8.37×", "3,940×")
    dpir, cheap = {"label": "DP-IR", "total_tflops": 4.5}, {"label": "Cheap", "total_tflops": 0.1}
    e = {"row": "dpir", "vs": "cheap", "direction": "better", "paper": "DP-IR costs 2x-100x fewer TFLOPs than Cheap"}
    assert C.cost_verdict(e, dpir, cheap) == (
        "- Paper: DP-IR costs 2x-100x fewer TFLOPs than Cheap. Ours: Cheap needs 1/45 (0.022×) the TFLOPs of DP-IR "
        "(0.1 vs 4.5) → **disagrees**.")
    big = {"label": "Big", "total_tflops": 4.5 * 150}
    assert C.cost_verdict(e, dpir, big).endswith("Big needs 150× the TFLOPs of DP-IR (675 vs 4.5) → **agrees in "
                                                 "direction — beyond the claimed 100x**.")
    near = {"label": "Near", "total_tflops": 4.5 * 1.5}
    assert C.cost_verdict(e, dpir, near).endswith("→ **disagrees — fewer, but under the claimed 2x**.")
    assert C.cost_verdict(dict(e, paper="DP-IR is cheaper"), dpir, near).endswith("1.5× the TFLOPs of DP-IR (6.75 "
                                                                                   "vs 4.5) → **agrees**.")


def test_paper_config_ablations_are_paper_sized():
    from dpir.config import load_config
    from dpir.methods import networks_of
    from helpers import ROOT

    cfg = load_config([ROOT / "config" / "config.yaml", ROOT / "config" / "paper.yaml"])
    tables = ablation_tables(cfg)
    assert len(tables) == 12 and tables["t13_deblur_tau"]["dataset"] == "gopro"   # + the two variance tables
    for spec in tables.values():
        for row in spec["rows"]:
            m = method_config(cfg, spec["task"], row)
            for n in networks_of(m):
                net = cfg["networks"][n]
                # official weights or trained on the paper's data at the paper's schedules, never the small nets
                assert net.get("official") or net["train"]["dataset"] in ("div2k", "gopro", "zurich"), (row, n)
                if net["arch"] == "fusion":
                    assert net["kwargs"]["n_f"] == 64 and net["train"]["steps"] == 300_000
            for n in networks_of(m):
                # the CPU-budget skips of config.yaml are off at paper scale: the paper's architectures
                assert not cfg["networks"][n]["kwargs"].get("image_skip") and not cfg["networks"][n]["kwargs"].get("base_skip")
            if row.startswith(("t4_", "t5_", "t6_", "t8_", "t12_")):
                assert m["max_images"] is None  # every DIV2K valid image


def test_cli_ablations_errors(tmp_path, capsys):
    from dpir.cli import main

    base = ["--set", f"out={tmp_path}", "--set", f"data_dir={tmp_path}"]
    assert main(["ablations", *base, "--set", "run_ablations=false"]) == 2
    assert "no ablation table to render: `run_ablations` is false" in capsys.readouterr().err
    assert main(["ablations", *base]) == 2    # nothing restored yet: names the rows and the command
    err = capsys.readouterr().err
    assert err.startswith("dpir: error: ablation 't4_modularity': no scores for") and "Traceback" not in err


def test_directions_and_perceptual_axis_come_from_the_presets(cfg, tmp_path):
    out = tmp_path / "out"
    cfg["out"] = str(out)
    cfg["ablations"]["tables"] = {"t6_tau": cfg["ablations"]["tables"]["t6_tau"]}
    spec = cfg["ablations"]["tables"]["t6_tau"]
    for i, m in enumerate(spec["rows"]):
        rec = record(m, 0, [30.0 - i] * 2, [0.4 - 0.05 * i] * 2, nfe=10 + i)
        rec["metrics"]["lpips_alex"]["lower_better"] = False     # a record's claim never beats the preset
        rec["metrics"]["gmsd"] = dict(rec["metrics"]["lpips_alex"], lower_better=False)
        write(out, rec)
    table, verdicts, info = R.rows_table(cfg, "t6_tau", spec)
    assert "lpips_alex ↓" in table.columns and "psnr_y ↑ [dB]" in table.columns
    assert info["lower"]["lpips_alex"] is True and info["lower"]["gmsd"] is True
    # the perceptual axis is the first of PERCEPTUAL_AXES with numbers: lpips_alex before gmsd
    assert R.resolve_metric("perceptual", info["metrics"], info["runs"]) == "lpips_alex"
    without = {m: [dict(r, metrics={k: v for k, v in r["metrics"].items() if k != "lpips_alex"}) for r in rs]
               for m, rs in info["runs"].items()}
    assert R.resolve_metric("perceptual", info["metrics"], without) == "gmsd"
    assert R.resolve_metric("psnr", ["ssim_y", "psnr_y"], without) == "psnr_y"
    assert R.resolve_metric("ssim", ["ssim_y", "psnr_y"], without) is None      # not scored here


def test_plot_directions_and_unknown_column():
    from dpir.report.ablation_cells import header_label
    from dpir.report.plots import axis_label, direction

    assert direction("gmsd") == "lower is better" and direction("psnr_y") == "higher is better"
    assert direction("my_metric") == "higher is better" and direction("my_metric", True) == "lower is better"
    assert axis_label("psnr_y") == "psnr_y [dB] (higher is better)"
    assert header_label("tau") == "τ"
    with pytest.raises(DpirError, match=r"unknown ablation column 'colour'; known: denoiser, ir, fusion"):
        header_label("colour")
