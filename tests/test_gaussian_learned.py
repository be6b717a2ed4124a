"""Learned parts in the Gaussian world (dpir.gaussian.learned): the excess-error estimators against cases
with an analytic answer (and the exact oracle MSEs they are shown beside), reproducible training, the
learned rows in the JSON, the Markdown and the claims, the baselines trained in the world (InDI, SRDiff,
DiffIR: their rows, NFE, reproducibility, SRDiff's absence for blur), and the one-line errors of a bad
``gaussian.learned`` section.

Size 8 x 8, a few training steps, tens of samples: plumbing and identities, not the networks' quality.
"""
from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import pytest
import torch
from torch import nn

from dpir.cli import main
from dpir.diffusion.schedule import linear_schedule
from dpir.errors import DpirError
from dpir.gaussian import learned as L
from dpir.gaussian.oracles import GaussianDenoiser, GaussianFusion, GaussianIR
from dpir.gaussian.world import cached_world
from dpir.report import gaussian as G
from helpers import ROOT, base_config, same_weights, write_yaml

SCHED = linear_schedule()
SEC = {"size": 8, "degradations": ["sr4"], "noise": 0.01, "taus": [5], "tau": 10, "ddim_stride": 5}
TINY = {"size": 8, "tau": 10, "ddim_stride": 5, "steps": 3, "batch": 4, "samples": 32, "seed": 3, "baseline_steps": 3}
#: the NFE of each baseline's method by its own definition (each method's expected_nfe): InDI N steps, SRDiff
#: T U-Net steps + 1 RRDB pass, DiffIR 4 IPR-denoiser steps + 1 DIRformer + 1 CPEN_S2 pass
NFE = {"indi": L.BASELINE_METHODS["indi"]["steps"], "srdiff": L.BASELINE_NETS["srdiff"][1]["T"] + 1, "diffir": 4 + 2}
N = 1500


@pytest.fixture(scope="module")
def world():
    return cached_world(G.settings({"gaussian": SEC})["specs"]["sr4"])


@pytest.fixture(scope="module")
def pairs(world):
    x = world.sample(N, 1, "test")
    return x, L.observe(world, x, range(N), 1, "test")


class Perturbed(nn.Module):
    """An oracle plus a known perturbation: ``eps (oracle - m) + delta`` (m the prior mean image)."""

    def __init__(self, oracle, mean, eps=0.0, delta=0.0):
        super().__init__()
        self.oracle, self.mean, self.eps, self.delta = oracle, mean, eps, delta

    def forward(self, *args):
        o = self.oracle(*args)
        return o + self.eps * (o - self.mean) + self.delta


def test_draw_is_the_worlds_own_sample(world):
    x = world.sample(5, 2, "train")
    assert torch.equal(L.draw(world, range(5), 2, "train"), x)
    assert torch.equal(L.draw(world, [3, 4], 2, "train"), x[3:])          # any index range, same images


def test_ir_excess_is_mse_minus_mmse_on_a_known_perturbation(world, pairs):
    """f = E[x0|y] + eps (E[x0|y] - m): its excess is eps^2 tr Cov(E[x0|y]) = eps^2 (tr C - MMSE), exactly."""
    x, y = pairs
    pix = 3 * world.d
    mean = torch.from_numpy(world.prior.mean_rgb)[None, :, None, None]
    eps = 0.05
    analytic = eps ** 2 * (float(world.spectra.sum()) - world.mmse()) / pix
    e = L.excess_ir(world, Perturbed(GaussianIR(**asdict(world.spec)), mean, eps=eps), x, y)
    assert e["oracle_mse"] == pytest.approx(world.mmse() / pix, rel=1e-12)
    assert abs(e["excess"] - analytic) < 4 * e["excess_se"], (e, analytic)
    # the same excess as MSE(f) - MSE(oracle), within the direct estimate's (larger) error
    assert abs(e["mse"] - e["oracle_mse"] - e["excess"]) < 4 * e["mse_se"]
    assert e["excess_se"] < e["mse_se"] / 3                    # why the excess is estimated directly
    # the oracle as its own "learned" net: zero excess, exactly
    z = L.excess_ir(world, GaussianIR(**asdict(world.spec)), x, y)
    assert z["excess"] == 0.0 and z["excess_se"] == 0.0 and z["ratio"] == 0.0


def test_denoiser_and_fusion_excess_and_their_exact_oracle_mse(world, pairs):
    """A constant shift delta has excess delta^2 exactly; MSE(shifted) - delta^2 is then a Monte Carlo
    estimate of the oracle's MSE, which checks the exact formulas shown beside the excess."""
    x, y = pairs
    kw = asdict(world.spec)
    den, fus = GaussianDenoiser(**kw), GaussianFusion(**kw)
    delta = 0.02
    ts = [1, 5, 25, 50]
    for rows in (L.excess_denoiser(world, Perturbed(den, 0.0, delta=delta), den, x, SCHED, ts, 0),
                 L.excess_fusion(world, Perturbed(fus, 0.0, delta=delta), (None, den, fus), x, y, SCHED, ts, 0)):
        assert [r["t"] for r in rows] == ts
        for r in rows:
            assert r["excess"] == pytest.approx(delta ** 2, rel=1e-9) and r["excess_se"] < 1e-12
            assert abs(r["mse"] - delta ** 2 - r["oracle_mse"]) < 4 * r["mse_se"], r
    assert [r["oracle_mse"] for r in rows] == [L.fusion_mmse(world, SCHED, t) for t in ts]
    # more information, less error: the fusion's oracle beats E[x0|y] and E[x0|x_t] alone at every t
    for t in ts:
        assert L.fusion_mmse(world, SCHED, t) < min(world.mmse() / (3 * world.d),
                                                    L.denoiser_mmse(world, float(SCHED.sigma_tilde(t))))
    zero = L.excess_fusion(world, fus, (None, den, fus), x[:64], y[:64], SCHED, [5], 0)[0]
    assert zero["excess"] == 0.0


def test_training_is_reproducible_and_leaves_the_global_rng_alone(world):
    ls = L.check_settings(TINY)
    state = torch.get_rng_state()
    a, fa = L.train_ir(world, ls)
    b, fb = L.train_ir(world, ls)
    assert torch.equal(torch.get_rng_state(), state)
    assert same_weights(a, b) and fa["loss_first"] == fb["loss_first"] and fa["loss_last"] == fb["loss_last"]
    assert fa["seed"] == 3 and fa["arch"] == "msrresnet" and fa["kwargs"]["upscale"] == 4
    c, _ = L.train_ir(world, {**ls, "seed": 4})
    assert not same_weights(a, c)
    assert not any(p.requires_grad for p in a.parameters()) and not a.training       # frozen after training


@pytest.fixture(scope="module")
def computed(tmp_path_factory):
    # one thread, as the tests that recompute its numbers run (conftest's per-test pin comes after a
    # module fixture): float reductions are reproducible at a fixed thread count, not across counts
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("g")
        cfg = {"out": str(out / "results"), "gaussian": {**SEC, "learned": TINY}}
        return cfg, *G.write_gaussian(cfg)
    finally:
        torch.set_num_threads(n)


def test_learned_rows_in_the_json_and_the_markdown(computed):
    _, path, data = computed
    lrn = data["learned"]
    assert data["settings"]["learned"] == {**L.DEFAULTS, **TINY} == lrn["settings"]
    assert lrn["denoiser"]["seed"] == 3 and lrn["t_grid"] == [1, 5]
    (g,) = lrn["degradations"]
    rows = {r["key"]: r for r in g["rows"]}
    assert list(rows) == ["mmse", "dpir_exact", "ir_learned", "dpir_learned", "dpir_fusion_learned",
                          "dpir_ir_learned", "dpir_oracle", "indi", "srdiff", "diffir"]
    assert rows["dpir_learned"]["parts"] == ["learned"] * 3 and rows["dpir_fusion_learned"]["parts"] == [
        "oracle", "oracle", "learned"]
    for r in g["rows"]:
        if r["exact"]:
            assert r["D_se"] == 0.0 and r["P_se"] == 0.0
        else:
            assert r["n"] == 32 and r["D_se"] > 0 and r["P_se"] >= 0
            assert r["steps"] == NFE[r["key"]] if r["family"] == "baseline" else r["steps"] in (0, 2)
            assert r["D"] >= g["mmse"] and r["bound"] >= g["mmse"] * (1 - 1e-12)
    # the IR alone: D = MMSE + its excess (the same test draws); the estimator check near its exact law
    assert rows["ir_learned"]["D"] == pytest.approx(g["mmse"] + g["excess"]["ir"]["excess"], rel=1e-12)
    check, exact = rows["dpir_oracle"], rows["dpir_exact"]
    assert abs(check["D"] - exact["D"]) < 4 * check["D_se"]
    assert {c["claim"][:40] for c in g["claims"]} == {"a small fusion net (9251 parameters, 3 s",
                                                      "with learned parts, DP-IR's output law i",
                                                      "with learned parts, DP-IR is nearer the "}
    md = path.with_suffix(".md").read_text()
    assert "### Learned parts (8×8 world, estimated from 32 samples)" in md
    r = rows["dpir_learned"]
    assert (f"| DP-IR, all parts learned, jump τ=10 + DDIM/5 | learned | learned | learned | 2 | "
            f"{r['D']:.4g} ± {r['D_se']:.2g} | {r['psnr']:.2f} | {r['P']:.4g} ± {r['P_se']:.2g} |") in md
    e = g["excess"]["fusion"][1]
    assert f"| fusion F(E[x0\\|y], E[x0\\|x_t], t) vs E[x0\\|y,x_t] | 5 | {e['excess']:.4g} ± {e['excess_se']:.2g} |" in md
    table = False
    for line in md.splitlines():
        if line.startswith("| estimator | IR |"):
            table = True
        elif not line.startswith("|"):
            table = False
        if table:
            assert line.replace("\\|", "").count("|") == 10, line              # 9 columns
    assert (path.parent / "pd_plane.png").stat().st_size > 1000


def test_the_report_claims_table_lists_the_gaussian_claims(computed, tmp_path):
    from dpir.report.claims import claims_section, gaussian_claims, meaning

    _, path, data = computed
    claims = gaussian_claims(G.read_gaussian(path))
    exact = [c for c in claims if c.source == "Gaussian world (sr4)"]
    learned = [c for c in claims if c.source == "Gaussian world (sr4, learned parts)"]
    assert len(exact) == len(data["degradations"][0]["claims"]) and len(learned) == 3
    assert all(c.verdict.interval == "exact" and c.verdict.kind in ("agrees", "disagrees") for c in exact)
    assert {c.verdict.kind for c in learned} <= {"agrees", "disagrees", "inconclusive"}
    assert meaning(exact[0]).startswith("Exact laws of the Gaussian world")
    lines = claims_section(base_config(tmp_path), claims)
    row = next(x for x in lines if x.startswith("| Gaussian world (sr4) |"))
    assert "| exact | — | exact Gaussian world, 8x8 | yes — exact laws, no sampling |" in row
    row = next(x for x in lines if x.startswith("| Gaussian world (sr4, learned parts) | with learned parts"))
    assert "| 32 test images | Gaussian world, 8x8, parts trained here (3 steps) | yes — estimated from 32" in row
    assert row.endswith("| Estimated from 32 test images of an exactly known world: only the sampling error (the "
                        "interval, ± 2 SE) limits the verdict. |")
    assert gaussian_claims(None) == []


def test_absent_or_null_learned_section_has_no_learned_rows():
    assert G.settings({"gaussian": SEC})["learned"] is None
    assert G.settings({"gaussian": {**SEC, "learned": None}})["learned"] is None
    assert G.settings({"gaussian": {**SEC, "learned": {}}})["learned"] == L.DEFAULTS


@pytest.mark.parametrize("bad, message", [
    ({"stepz": 3}, "config key 'gaussian.learned.stepz' is not a known setting"),
    ({"steps": 0}, "config key 'gaussian.learned.steps'"),
    ({"tau": 10, "ddim_stride": 10}, "config key 'gaussian.learned.ddim_stride' must be null (ancestral steps) or an "
                                     "integer in 1..9"),
    ({"size": 6}, "config key 'gaussian.learned.size' (sr4): Gaussian world: size 6 must be divisible"),
    ({"baselines": ["srdif"]}, ("config key 'gaussian.learned.baselines': unknown baseline 'srdif'; known: indi, "
                                "srdiff, diffir")),
])
def test_bad_learned_section_is_one_line_error(tmp_path, capsys, bad, message):
    over = {"out": str(tmp_path / "r"), "gaussian": {**SEC, "learned": {**TINY, **bad}}}
    code = main(["gaussian", "-q", "-c", str(ROOT / "config" / "test.yaml"), "-c", str(write_yaml(tmp_path / "g.yaml", over))])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and err.startswith("dpir: error: "), err
    assert message in err, err


@pytest.mark.parametrize("bad, message", [
    ({"stepz": 3}, "config key 'gaussian.learned.stepz' is not a known setting; known: size, tau"),
    ({"samples": 8}, "config key 'gaussian.learned.samples' must be an integer >= 16, got 8"),
    ({"lr": 0}, "config key 'gaussian.learned.lr' must be a number > 0, got 0"),
    ({"size": 40}, "config key 'gaussian.learned.size': 40 is too large for the W2 estimate"),
    ({"baselines": ["indi", "ddpm"]}, ("config key 'gaussian.learned.baselines': unknown baseline 'ddpm'; known: "
                                       "indi, srdiff, diffir")),
    ({"baselines": "indi"}, "config key 'gaussian.learned.baselines' must be a list of baseline names"),
    ({"baselines": ["indi", "indi"]}, "config key 'gaussian.learned.baselines' names a baseline twice"),
])
def test_learned_settings_check_without_the_schema(bad, message):
    with pytest.raises(DpirError) as e:
        G.settings({"gaussian": {**SEC, "learned": {**TINY, **bad}}})
    assert message in str(e.value) and "\n" not in str(e.value)


def test_estimate_row_p_matches_an_exact_law(world, pairs):
    """P of the MMSE estimator from 1500 samples (d = 192) against the exact W0, within 4 stated errors."""
    from dpir.gaussian import laws

    x, y = pairs
    prior = (world.prior_mean_dense(), world.prior_cov_dense())
    r = L.estimate_row(world, lambda v, g: world.posterior_mean(v), x, y, prior, 0)
    w0 = laws.Marginals(world).mmse_point().perception / math.sqrt(3 * world.d)
    assert abs(r["P"] - w0) < 4 * r["P_se"] and r["P_se"] < 0.1 * w0, (r, w0)
    assert r["D"] == pytest.approx(world.mmse() / (3 * world.d), rel=1e-5)        # float32 y, nothing else
    assert np.isfinite(r["D_direct"]) and r["n"] == N


# ------------------------------------------------------------------------------------ baselines

def test_baseline_rows_sr4_nfe_params_and_markdown(computed):
    """Every baseline has a row for sr4: finite D and P at or above the bound, its NFE by the method's own
    definition (and as counted), parameters and training losses in the JSON, and a Markdown row."""
    _, path, data = computed
    (g,) = data["learned"]["degradations"]
    rows = {r["key"]: r for r in g["rows"]}
    assert g["baselines_skipped"] == {} and list(g["baselines"]) == ["indi", "srdiff", "diffir"]
    md = path.with_suffix(".md").read_text()
    for name in ("indi", "srdiff", "diffir"):
        r, f = rows[name], g["baselines"][name]
        assert r["family"] == "baseline" and r["method"] == name and r["parts"] == ["—"] * 3
        assert math.isfinite(r["D"]) and math.isfinite(r["P"]) and r["D"] >= g["mmse"] and r["gap"] >= 0
        assert r["steps"] == NFE[name] == r["nfe_counted"] == f["nfe"]
        assert r["params"] == f["params"] > 0
        for net in f["nets"].values():
            assert net["steps"] == 3 and net["params"] > 0 and math.isfinite(net["loss_first"] + net["loss_last"])
        assert (f"| {r['label']} | — | — | — | {r['steps']} | {r['D']:.4g} ± {r['D_se']:.2g} | {r['psnr']:.2f} | "
                f"{r['P']:.4g} ± {r['P_se']:.2g} | {r['bound']:.4g} |") in md
    assert list(g["baselines"]["srdiff"]["nets"]) == ["srdiff_rrdb", "srdiff"]
    assert list(g["baselines"]["diffir"]["nets"]) == ["diffir_s1", "diffir_s2"]
    assert rows["indi"]["label"] == f"InDI (baseline, N={NFE['indi']})"
    # the rows are paired with DP-IR's: the same test images (the D identity's MMSE part is shared)
    assert all(rows[k]["n"] == rows["dpir_learned"]["n"] for k in ("indi", "srdiff", "diffir"))
    claim = next(c for c in g["claims"] if c["claim"].startswith("with learned parts, DP-IR is nearer the "))
    assert claim["holds"] in (True, False, None) and "(InDI, SRDiff, DiffIR)" in claim["claim"]
    assert claim["half_width"] > 0 and "SRDiff gap" in claim["text"]


def test_baselines_are_reproducible_and_paired(computed, world):
    """The same seed gives identical baseline rows (trained and sampled again from scratch), and ``[]`` none."""
    from dpir.gaussian import laws

    _, _, data = computed
    ls = L.check_settings(TINY)
    x = world.sample(ls["samples"], ls["seed"], "test")
    y = L.observe(world, x, range(ls["samples"]), ls["seed"], "test")
    prior = (world.prior_mean_dense(), world.prior_cov_dense())
    w0 = laws.Marginals(world).mmse_point().perception
    rows, facts, skipped = L.compute_baselines(world, ls, x, y, prior, world.mmse(), w0)
    (g,) = data["learned"]["degradations"]
    assert rows == [r for r in g["rows"] if r["family"] == "baseline"] and skipped == {}
    for name, f in facts.items():
        for role, net in f["nets"].items():
            old = g["baselines"][name]["nets"][role]
            assert (net["loss_first"], net["loss_last"], net["init_seed"]) == (old["loss_first"], old["loss_last"],
                                                                             old["init_seed"])
    assert L.compute_baselines(world, {**ls, "baselines": []}, x, y, prior, world.mmse(), w0) == ([], {}, {})


@pytest.fixture(scope="module")
def blur_learned():
    s = G.settings({"gaussian": {**SEC, "degradations": ["blur"], "learned": TINY}})
    return L.compute(s["learned"], s["learned_specs"])


def test_baselines_for_blur_and_srdiff_absent_with_its_reason(blur_learned):
    (g,) = blur_learned["degradations"]
    rows = {r["key"]: r for r in g["rows"] if r["family"] == "baseline"}
    assert list(rows) == ["indi", "diffir"] and list(g["baselines_skipped"]) == ["srdiff"]
    assert g["baselines_skipped"]["srdiff"].startswith("not run: SRDiff is an SR method")
    for name, r in rows.items():
        assert math.isfinite(r["D"]) and math.isfinite(r["P"]) and r["steps"] == NFE[name] == r["nfe_counted"]
    md = "\n".join(G.learned_markdown(blur_learned))
    assert "| SRDiff (baseline) | — | — | — | — | not run: SRDiff is an SR method" in md
    assert f"| InDI (baseline, N={NFE['indi']}) | — | — | — | {NFE['indi']} |" in md
    assert "| DiffIR (baseline, 4 IPR steps) | — | — | — | 6 |" in md
    assert "SRDiff clips its output" not in md            # said only where SRDiff has a row
