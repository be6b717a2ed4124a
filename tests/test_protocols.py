"""The protocol-sensitivity table (dpir.report.protocols) and the official SyntheticBurst score
(dpir.metrics.burst_official): golden values on fixed images, each checked against an independent numpy
computation, the ranking-change detection, n/a with a footnote for LPIPS without weights, and the CLI's
one-line errors."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from dpir import paths
from dpir.data.images import read_image, write_png
from dpir.metrics import get_metric
from dpir.metrics.burst_official import (
    official_psnr,
    official_psnr_from_srgb,
    quantise_official,
    srgb_to_linear,
)
from dpir.report.protocols import (
    compute,
    markdown,
    protocols_for,
    ranking,
    swapped_pairs,
    write_protocols,
)


@pytest.fixture(autouse=True)
def empty_torch_cache(monkeypatch, tmp_path):
    """No LPIPS weights (an empty hub cache), one thread on the shared machine."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def pair(size=32):
    """A fixed 8-bit image pair (uint8 arrays (3, H, W)): a random target and a noisy copy."""
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, (3, size, size))
    out = np.clip(ref + rng.integers(-20, 21, ref.shape), 0, 255)
    return out.astype(np.uint8), ref.astype(np.uint8)


def as_tensor(a):
    return torch.from_numpy(a.astype(np.float32) / 255)[None]


def numpy_psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / mse)


def numpy_y(a):
    r, g, b = (a.astype(np.float64) / 255)
    return 16 + 65.481 * r + 128.553 * g + 24.966 * b


# ------------------------------------------------------------------------------------- SR protocols

def test_sr_protocols_golden_and_independent():
    out, ref = pair()
    o, r = as_tensor(out), as_tensor(ref)
    y_crop4 = float(get_metric("psnr_y", crop_border=4)(o, r)[0])
    rgb = float(get_metric("psnr_rgb", crop_border=0)(o, r)[0])
    # independent: BT.601 Y (16-235), 4 px cut on each side; RGB on all pixels
    assert y_crop4 == pytest.approx(numpy_psnr(numpy_y(out)[4:-4, 4:-4], numpy_y(ref)[4:-4, 4:-4]), abs=1e-9)
    assert rgb == pytest.approx(numpy_psnr(out, ref), abs=1e-9)
    assert y_crop4 == pytest.approx(31.8614429, abs=1e-6)
    assert rgb == pytest.approx(26.8236976, abs=1e-6)
    # SSIM on Y with crop 4: scikit-image's Gaussian SSIM (sigma 1.5, population covariance) is the same
    # definition on the interior, where no padding reaches the 11x11 window
    from skimage.metrics import structural_similarity

    ys = float(get_metric("ssim_y", crop_border=4)(o, r)[0])
    ya, yb = numpy_y(out)[4:-4, 4:-4], numpy_y(ref)[4:-4, 4:-4]
    sk = structural_similarity(ya, yb, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    assert ys == pytest.approx(sk, abs=1e-9)
    assert ys == pytest.approx(0.9882665, abs=1e-6)


def test_protocol_lists_by_task_kind():
    names = [p.name for p in protocols_for({"kind": "sr", "scale": 4}, {})]
    assert names == ["psnr_y_crop4", "ssim_y_crop4", "psnr_rgb_crop0", "ssim_rgb_crop0", "lpips_alex", "lpips_vgg"]
    assert [p.name for p in protocols_for({"kind": "burst"}, {})][:2] == ["psnr_linear_official", "psnr_srgb_crop40"]
    b = protocols_for({"kind": "burst"}, {"report": {"protocols": {"burst_border": 8}}})
    assert b[0].crop == 8 and b[1].name == "psnr_srgb_crop8"
    from dpir.errors import DpirError

    with pytest.raises(DpirError, match=r"report\.protocols\.burst_border must be a non-negative integer"):
        protocols_for({"kind": "burst"}, {"report": {"protocols": {"burst_border": -1}}})


# ------------------------------------------------------------------------------------- official burst score

def fixture_burst():
    """A fixed linear target (3, 96, 96) on the 14-bit grid, its burst metadata, and a linear prediction."""
    from dpir.data.burst import synthesize_burst
    from dpir.rng import make_generator

    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:144, 0:144] / 143.0
    rgb = np.stack([0.2 + 0.6 * xx, 0.2 + 0.6 * yy, 0.5 + 0.3 * np.sin(6 * xx * yy)]) + 0.02 * rng.standard_normal((3, 144, 144))
    _, gt, meta = synthesize_burst(torch.from_numpy(np.clip(rgb, 0, 1)).float(), 2, make_generator(0, "fixture"), None)
    gt = torch.round(gt.double() * 2 ** 14) / 2 ** 14          # the file format of the targets
    pred = (gt * 0.97 + 0.01 * torch.from_numpy(rng.standard_normal(gt.shape))).clamp(0, 1)
    return gt, meta, pred


def numpy_inverse_isp(srgb, meta):
    """The inverse ISP written out in numpy: inverse smoothstep, gamma 2.2, inverse cam2rgb, gains."""
    x = np.clip(srgb.astype(np.float64), 0, 1)
    x = 0.5 - np.sin(np.arcsin(1 - 2 * x) / 3)
    x = np.maximum(x, 1e-8) ** 2.2
    x = np.einsum("ij,jhw->ihw", np.linalg.inv(np.asarray(meta["cam2rgb"], dtype=np.float64)), x)
    g = meta["rgb_gain"] * np.array([meta["red_gain"], 1.0, meta["blue_gain"]])
    return np.clip(x / g[:, None, None], 0, 1)


def numpy_official(pred_linear, gt_linear, border=40):
    q = np.floor(np.clip(pred_linear, 0, 1) * 2 ** 14) / 2 ** 14
    a, b = q[:, border:-border, border:-border], gt_linear[:, border:-border, border:-border]
    return -10 * np.log10(np.mean((a - b) ** 2))


def test_official_burst_score_golden_and_independent():
    from dpir.isp import process_linear_to_srgb

    gt, meta, pred = fixture_burst()
    assert gt.shape == (3, 96, 96)
    # on linear predictions
    v = float(official_psnr(pred[None], gt[None])[0])
    assert v == pytest.approx(numpy_official(pred.numpy(), gt.numpy()), abs=1e-9)
    assert v == pytest.approx(39.8013350, abs=1e-6)
    # on the 8-bit sRGB PNG of the prediction (what a run stores): inverse ISP, then the same score
    srgb = torch.round(process_linear_to_srgb(pred, meta).float() * 255) / 255
    w = float(official_psnr_from_srgb(srgb[None], gt[None], meta)[0])
    assert w == pytest.approx(numpy_official(numpy_inverse_isp(srgb.numpy(), meta), gt.numpy()), abs=1e-9)
    assert w == pytest.approx(39.7793360, abs=1e-6)


def test_official_quantisation_truncates_and_the_border_is_ignored():
    gt, _, _ = fixture_burst()
    # 0.9 of a 14-bit step above the target truncates back to it: identical images, +inf
    assert math.isinf(float(official_psnr((gt + 0.9 / 2 ** 14)[None], gt[None])[0]))
    assert torch.equal(quantise_official(torch.tensor([0.49999, 1.2, -0.1])),
                       torch.tensor([8191 / 16384, 1.0, 0.0], dtype=torch.float64))
    # anything inside the 40 px border does not count
    wrong = gt.clone()
    wrong[:, :40] = 0
    wrong[:, :, -40:] = 1
    assert math.isinf(float(official_psnr(wrong[None], gt[None])[0]))
    from dpir.errors import DpirError

    with pytest.raises(DpirError, match=r"ignores 40 px on each side, which leaves nothing of a 64x64 image"):
        official_psnr(gt[None, :, :64, :64], gt[None, :, :64, :64])


def test_inverse_isp_round_trip_is_exact_where_nothing_was_clipped():
    from dpir.isp import apply_ccm, apply_gains, process_linear_to_srgb

    gt, meta, _ = fixture_burst()
    back = srgb_to_linear(process_linear_to_srgb(gt, meta), meta)
    wb = apply_gains(gt, meta["rgb_gain"], meta["red_gain"], meta["blue_gain"])
    ccm = apply_ccm(wb, torch.tensor(meta["cam2rgb"], dtype=torch.float64))
    gains = meta["rgb_gain"] * torch.tensor([meta["red_gain"], 1.0, meta["blue_gain"]], dtype=torch.float64)
    kept = ((ccm >= 0) & (ccm <= 1)).all(0) & (gt * gains.view(3, 1, 1) <= 1).all(0)
    assert kept.float().mean() > 0.9
    assert (back - gt).abs()[:, kept].max() < 1e-7


# ------------------------------------------------------------------------------------- rankings

def test_swapped_pairs_and_ties():
    order = ["a", "b", "c", "d"]
    default = {"a": 30.0, "b": 29.0, "c": 28.0, "d": 28.0}
    assert ranking(default, False, order) == ["a", "b", "c", "d"]          # a tie keeps the config's order
    same = {"a": 31.0, "b": 30.0, "c": 27.0, "d": 27.5}                       # c/d: a tie before, not a swap
    assert swapped_pairs(default, False, same, False, order) == []
    other = {"a": 28.5, "b": 29.5, "c": 28.9, "d": None}
    assert swapped_pairs(default, False, other, False, order) == [["a", "b"], ["a", "c"]]
    # lower is better (LPIPS) against a higher-is-better default
    lp = {"a": 0.3, "b": 0.1, "c": 0.2, "d": 0.4}
    assert ranking(lp, True, order) == ["b", "c", "a", "d"]
    assert swapped_pairs(default, False, lp, True, order) == [["a", "b"], ["a", "c"]]


# ------------------------------------------------------------------------------------- the table from files

def metric_entry(values: dict, lower=False):
    return {"available": True, "lower_better": lower, "convention": "test", "mean": float(np.mean(list(values.values()))),
            "per_image": values, "n_nonfinite": 0}


COST = {"nfe": 1, "nfe_groups": {"net": 1}, "nfe_note": "", "params_total": 1, "params_trained": 1,
        "flops_per_image": 1.0, "flops_input_size": [8, 8], "seconds_per_image": 0.1, "peak_rss_mib": 1.0}


def write_run(cfg, task, ds, method, seed, images: dict, psnr_y: dict):
    """Restored PNGs where the workflow puts them, and a results record with the given default scores."""
    run = paths.restored_dir(cfg, task, ds, method, seed)
    for i, x in images.items():
        write_png(run / f"{i}.png", x)
    rec = {"task": task, "dataset": ds, "method": method, "seed": seed, "label": method.upper(),
           "n_images": len(images), "images": sorted(images), "cost": COST,
           "metrics": {"psnr_y": metric_entry(psnr_y),
                       "lpips_alex": {"available": False, "lower_better": True, "convention": "LPIPS",
                                      "reason": "weights file x is missing.", "fix": "dpir fetch lpips_alex"}}}
    p = paths.scores(cfg, task, ds, method, seed)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(rec))


def sr_results(tmp_path):
    cfg = {"out": str(tmp_path / "results"), "data_dir": str(tmp_path / "data"),
           "tasks": {"sr": {"kind": "sr", "title": "SR", "scale": 4, "crop_border": 4, "metrics": ["psnr_y", "lpips_alex"],
                            "test_datasets": ["d"], "methods": {"a": {"kind": "x"}, "b": {"kind": "x"},
                                                                 "c": {"kind": "x"}}}}}
    out, ref = pair()
    r = as_tensor(ref)[0]
    gt = paths.prepared(cfg, "sr", "d") / "test" / "gt"
    write_png(gt / "i1.png", r)
    o = as_tensor(out)[0]
    # c is the closest to the target, then b, then a; the records' default column says a > b > c
    write_run(cfg, "sr", "d", "a", 0, {"i1": (0.5 * o + 0.5 * torch.flip(r, [-1]))}, {"i1": 30.0})
    write_run(cfg, "sr", "d", "b", 0, {"i1": (0.5 * o + 0.5 * r)}, {"i1": 20.0})
    write_run(cfg, "sr", "d", "c", 0, {"i1": r}, {"i1": 10.0})
    return cfg


def test_table_from_files_shifts_rankings_and_na_footnotes(tmp_path):
    cfg = sr_results(tmp_path)
    data = compute(cfg)
    (t,) = data["tables"]
    assert t["defaults"]["psnr"]["scores"] == {"a": 30.0, "b": 20.0, "c": 10.0}
    assert t["defaults"]["psnr"]["ranking"] == ["a", "b", "c"]
    protos = {p["name"]: p for p in t["protocols"]}
    rgb = protos["psnr_rgb_crop0"]
    b_img = read_image(paths.restored_dir(cfg, "sr", "d", "b", 0) / "i1.png")[None]
    ref = read_image(paths.prepared(cfg, "sr", "d") / "test" / "gt" / "i1.png")[None]
    assert rgb["scores"]["b"] == float(get_metric("psnr_rgb")(b_img, ref)[0])
    assert rgb["scores"]["c"] == math.inf                            # identical to its target
    assert rgb["shift"]["b"] == pytest.approx(rgb["scores"]["b"] - 20.0, abs=1e-12)
    assert rgb["ranking"] == ["c", "b", "a"] and rgb["ranking_changed"] is True
    assert rgb["swapped"] == [["a", "b"], ["a", "c"], ["b", "c"]]
    # LPIPS without weights: n/a, with why and how to fix, never a number
    for name, fix in (("lpips_alex", "dpir fetch lpips_alex"), ("lpips_vgg", "vgg16-397923af.pth")):
        p = protos[name]
        assert not p["available"] and set(p["scores"].values()) == {None} and p["ranking_changed"] is None
        assert fix in p["fix"]
    md = markdown(data)
    assert "| A | 30.00 | n/a[^proto-sr-d-" in md
    assert "is missing and metrics never download. Fix: `dpir fetch lpips_alex`, then re-run `dpir protocols`." in md
    assert "LPIPS v0.1, AlexNet, inputs [-1, 1]: n/a: weights file" in md
    assert "https://download.pytorch.org/models/vgg16-397923af.pth" in md
    assert "| PSNR, RGB, no crop | SRDiff | c > b > a | no | a ↔ b, a ↔ c, b ↔ c |" in md
    # every n/a CELL carries its footnote, not only the column header (the dress rehearsal's check)
    defined = set(re.findall(r"^\[\^([\w-]+)\]:", md, re.M))
    na_cells = [c.strip() for line in md.splitlines() if line.startswith("| ") for c in line.strip("|").split("|")
                if c.strip().startswith("n/a")]
    assert len(na_cells) >= 6, na_cells          # 3 methods x 2 LPIPS protocols
    for c in na_cells:
        assert re.findall(r"\[\^([\w-]+)\]", c) and set(re.findall(r"\[\^([\w-]+)\]", c)) <= defined, c
    written, md_path, _ = write_protocols(cfg)
    assert written == paths.protocols(cfg) and json.loads(written.read_text())["tables"][0]["task"] == "sr"
    assert md_path.read_text().startswith("## Protocol sensitivity")


def test_missing_restored_image_is_one_line(tmp_path):
    from dpir.errors import DpirError

    cfg = sr_results(tmp_path)
    (paths.restored_dir(cfg, "sr", "d", "b", 0) / "i1.png").unlink()
    with pytest.raises(DpirError, match=r"seed0/i1\.png is missing .*`dpir restore --task sr --dataset d --method b "
                                        r"--seed 0`"):
        compute(cfg)


def test_burst_table_uses_the_linear_targets(tmp_path):
    """A prepared burst test set (SyntheticBurst layout) and one run: the official cell is the official score
    of the run's sRGB PNG, and the ceiling is that of the target's own sRGB PNG."""
    from dpir.data.burst_io import write_burst
    from dpir.isp import process_linear_to_srgb

    gt, meta, pred = fixture_burst()
    cfg = {"out": str(tmp_path / "results"), "data_dir": str(tmp_path / "data"),
           "tasks": {"burst": {"kind": "burst", "title": "Burst", "scale": 4, "crop_border": 0,
                               "metrics": ["psnr_y"], "test_datasets": ["d"],
                               "methods": {"m": {"kind": "x"},
                                           # a row of published scores (a fixture value, not BSRT's number)
                                           "pub": {"kind": "published", "label": "Published", "source": "a paper",
                                                   "scores": {"d": {"psnr_linear_official": 41.5}}}}}}}
    test = paths.prepared(cfg, "burst", "d") / "test"
    write_burst(test / "burst", "b1", torch.zeros(2, 4, 12, 12), gt, meta)
    write_png(test / "gt" / "b1.png", process_linear_to_srgb(gt, meta).float())
    write_run(cfg, "burst", "d", "m", 0, {"b1": process_linear_to_srgb(pred, meta).float()}, {"b1": 25.0})
    data = compute(cfg)
    (t,) = data["tables"]
    off = next(p for p in t["protocols"] if p["name"] == "psnr_linear_official")
    assert off["published"] == {"pub": 41.5} and off["ranking"] == ["m"]
    assert "| Published[^proto-burst-d-" in markdown(data) and "| — | 41.50 | — | — | — |" in markdown(data)
    stored = read_image(paths.restored_dir(cfg, "burst", "d", "m", 0) / "b1.png").double().numpy()
    assert off["scores"]["m"] == pytest.approx(numpy_official(numpy_inverse_isp(stored, meta), gt.numpy()), abs=1e-6)
    target = read_image(test / "gt" / "b1.png").double().numpy()
    assert off["ceiling"] == pytest.approx(numpy_official(numpy_inverse_isp(target, meta), gt.numpy()), abs=1e-6)
    assert off["shift"]["m"] == pytest.approx(off["scores"]["m"] - 25.0, abs=1e-12)


# ------------------------------------------------------------------------------------- CLI

def test_cli_missing_results_folder_is_one_line(tmp_path, capsys):
    from dpir.cli import main

    rc = main(["protocols", "-q", "--set", f"out={tmp_path / 'nothing'}", "--set", f"data_dir={tmp_path / 'd'}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert err.startswith("dpir: error: no results folder ") and "`dpir score` first" in err


def test_lpips_vgg_loads_a_cached_trunk(tmp_path):
    """With torchvision's VGG-16 file in the cache (random weights here: only the loading and calling are
    checked), the VGG preset is available, loads the file's trunk and scores like lpips' own call."""
    from dpir.metrics.lpips_vgg import VGG16, LPIPSVgg

    # torchvision's VGG-16 ``features.<i>`` convolutions, random (building the whole network takes 20 s)
    g = torch.Generator().manual_seed(0)
    state, cin = {}, 3
    for i, cout in zip((0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
                       (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)):
        state[f"features.{i}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * (2 / (9 * cin)) ** 0.5
        state[f"features.{i}.bias"] = torch.zeros(cout)
        cin = cout
    VGG16.path().parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, VGG16.path())
    m = LPIPSVgg()
    m.check_available()
    out, ref = (as_tensor(a) for a in pair())
    s = m(out, ref)
    assert s.shape == (1,) and s.dtype == torch.float64 and float(s[0]) > 0
    assert float(m(ref, ref)[0]) == 0.0
    net = m._net
    assert not net.training and net.pnet_type == "vgg" and net.version == "0.1"
    assert torch.equal(net.net.slice5._modules["28"].weight, state["features.28.weight"])
    assert torch.equal(net(out, ref, normalize=True).flatten().double(), s)


def test_burst_images_too_small_for_the_border_are_na(tmp_path):
    from dpir.data.burst_io import write_burst
    from dpir.isp import process_linear_to_srgb

    gt, meta, pred = fixture_burst()
    cfg = {"out": str(tmp_path / "results"), "data_dir": str(tmp_path / "data"),
           "report": {"protocols": {"burst_border": 48}},
           "tasks": {"burst": {"kind": "burst", "title": "Burst", "crop_border": 0, "metrics": ["psnr_rgb"],
                               "test_datasets": ["d"], "methods": {"m": {"kind": "x"}}}}}
    test = paths.prepared(cfg, "burst", "d") / "test"
    write_burst(test / "burst", "b1", torch.zeros(2, 4, 12, 12), gt, meta)
    write_png(test / "gt" / "b1.png", process_linear_to_srgb(gt, meta).float())
    write_run(cfg, "burst", "d", "m", 0, {"b1": process_linear_to_srgb(pred, meta).float()}, {"b1": 25.0})
    data = compute(cfg)
    off = data["tables"][0]["protocols"][0]
    assert off["name"] == "psnr_linear_official" and not off["available"] and off["scores"] == {"m": None}
    assert "ignores 48 px on each side, which leaves nothing of a 96x96 image" in off["reason"]
    assert "which leaves nothing of a 96x96 image" in markdown(data) and "ceiling" not in off


def test_report_embeds_the_table_with_its_footnotes(tmp_path):
    from dpir.report.report import _protocols_section

    cfg = sr_results(tmp_path)
    assert _protocols_section(cfg) == []                  # not computed yet: the report has no such section
    write_protocols(cfg)
    text = "\n".join(_protocols_section(cfg))
    assert text.startswith("## Protocol sensitivity") and "### Protocol sensitivity: SR — dataset `d`" in text
    assert "[^proto-sr-d-1]: LPIPS v0.1, AlexNet, inputs [-1, 1]: n/a: weights file" in text
    paths.protocols(cfg).write_text("{}")
    from dpir.errors import DpirError

    with pytest.raises(DpirError, match=r"protocols\.json is not a protocol table .* run `dpir protocols` again"):
        _protocols_section(cfg)
