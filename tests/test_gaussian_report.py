"""The exact Gaussian-world section (dpir.report.gaussian): every row's exact D, P and W2|y against
identities that hold exactly (the MMSE estimator, the posterior sampler, E[x0|y] alone, the bound),
against the independent propagation of dpir.gaussian.laws, and against a dense propagation through the
harness's own oracle modules probed as linear maps; the files, the report's embedding, the one-line
errors of a bad ``gaussian:`` section.

Size 8 x 8 (d = 64 per colour channel): the whole section computes in a few seconds.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict

import numpy as np
import pytest
import torch

from dpir.cli import main
from dpir.diffusion.schedule import linear_schedule
from dpir.errors import DpirError
from dpir.gaussian import laws, w2
from dpir.gaussian.world import cached_world
from dpir.report import gaussian as G
from helpers import ROOT, write_yaml

SEC = {"size": 8, "degradations": ["sr4", "blur"], "noise": 0.01, "taus": [25, 5], "tau": 25, "ddim_stride": 5}
SCHED = linear_schedule()


@pytest.fixture(scope="module")
def data():
    return G.compute({"gaussian": SEC, "out": "unused"})


def _by(g):
    return {r["key"]: r for r in g["rows"]}


def _world(g):
    return cached_world(G.settings({"gaussian": SEC})["specs"][g["degradation"]])


def test_rows_and_settings(data):
    assert data["settings"]["taus"] == [5, 25]                 # sorted, deduplicated
    keys = [r["key"] for r in data["degradations"][0]["rows"]]
    assert keys == ["mmse", "posterior", "full", "jump5", "jump25", "jump25_posterior", "jump25_ddim5",
                    "noised25", "ir_only25", "den_only25"]
    rows = _by(data["degradations"][0])
    assert rows["full"]["steps"] == 1000 and rows["jump25_ddim5"]["steps"] == 5 and rows["jump5"]["steps"] == 5
    assert data["degradations"][1]["spec"]["kernel_size"] == 7      # a 9 x 9 kernel does not fit 8 x 8


@pytest.mark.parametrize("k", [0, 1])
def test_exact_identities(data, k):
    g = data["degradations"][k]
    w = _world(g)
    pix = 3 * w.d
    rows = _by(g)
    mmse = w.mmse() / pix
    # W2 against laws' own marginal of E[x0|y]: the square roots of C_*'s ~0 eigenvalues (the directions
    # y does not see) carry the float64 round-off, ~1e-6 relative
    w0 = laws.Marginals(w).mmse_point().perception / math.sqrt(pix)
    assert g["mmse"] == pytest.approx(mmse, rel=1e-12) and g["w0"] == pytest.approx(w0, rel=1e-5)
    w0 = g["w0"]
    # the MMSE estimator: D = MMSE, P = W0, on the bound
    m = rows["mmse"]
    assert m["D"] == pytest.approx(mmse, rel=1e-12) and m["P"] == pytest.approx(w0, rel=1e-12) and m["gap"] == 0.0
    assert m["W2_given_y"] == pytest.approx(math.sqrt(mmse), rel=1e-9)        # a point mass against p(x0|y)
    assert m["psnr"] == pytest.approx(-10 * math.log10(mmse), rel=1e-12)
    # the exact posterior sampler: D = 2 MMSE, its marginal is the prior, its law given y the posterior
    p = rows["posterior"]
    assert p["D"] == pytest.approx(2 * mmse, rel=1e-12)
    assert p["P"] < 1e-6 and p["W2_given_y"] < 1e-6        # round-off only
    assert p["bound"] == pytest.approx(mmse + (w0 - p["P"]) ** 2, rel=1e-12)
    # E[x0|y] at every step: the last step returns x0_hat, so the output is E[x0|y] itself
    ir = rows["ir_only25"]
    assert ir["D"] == pytest.approx(mmse, rel=1e-10) and ir["P"] == pytest.approx(w0, rel=1e-6)
    assert g["comparisons"]["ir_only_vs_mmse"]["W2_marginal"] < 1e-6
    # every row on or above the bound (Freirich et al.), and the bound is D(P) at the row's P
    for r in g["rows"]:
        assert r["gap"] >= -1e-12 * r["D"], r["label"]
        assert r["bound"] == pytest.approx(w2.pd_bound(r["P"], mmse, w0), rel=1e-12)
        assert r["gap"] == pytest.approx(r["D"] - r["bound"], abs=1e-15)
        assert r["D"] >= mmse * (1 - 1e-12)


@pytest.mark.parametrize("k", [0, 1])
def test_fusion_rows_match_the_independent_propagation(data, k):
    """dpir.gaussian.laws computes D in its own Q-coordinate formula and P from its own marginal law."""
    g = data["degradations"][k]
    w = _world(g)
    pix = 3 * w.d
    marg = laws.Marginals(w)
    samplers = {"full": laws.Sampler("full", 1000), "jump5": laws.Sampler("jump", 5), "jump25": laws.Sampler("jump", 25),
                "jump25_posterior": laws.Sampler("jump", 25, variance="posterior"),
                "jump25_ddim5": laws.Sampler("jump", 25, ddim_stride=5), "noised25": laws.Sampler("noised_start", 25)}
    rows = _by(g)
    for key, s in samplers.items():
        pt = marg.sampler_point(SCHED, s)
        assert rows[key]["D"] == pytest.approx(pt.distortion / pix, rel=1e-10), key
        assert rows[key]["P"] == pytest.approx(pt.perception / math.sqrt(pix), rel=1e-5), key


def _probe(fn, dim):
    """(L, c) of an affine map fn on (B, 3, n, n) images: fn(x) = L x + c on RGB vectors (channel-major)."""
    n = round(math.sqrt(dim // 3))
    basis = torch.cat([torch.zeros(1, dim), torch.eye(dim)]).double().reshape(-1, 3, n, n)
    out = fn(basis).reshape(dim + 1, dim).double().numpy()
    return (out[1:] - out[:1]).T, out[0]


@pytest.mark.parametrize("k", [0, 1])
def test_single_and_fused_chains_against_dense_oracle_propagation(data, k):
    """The jump at tau = 25 with E[x0|x_t] alone and with the fusion, propagated densely in RGB pixel
    space through the harness's GaussianDenoiser / GaussianFusion modules probed as linear maps."""
    from dpir.diffusion.samplers import jump_coefficients
    from dpir.gaussian.oracles import GaussianDenoiser, GaussianFusion

    g = data["degradations"][k]
    w = _world(g)
    spec = asdict(w.spec)
    den, fus = GaussianDenoiser(**spec), GaussianFusion(**spec)
    dim, pix = 3 * w.d, 3 * w.d
    m = w.prior_mean_dense()
    C = w.prior_cov_dense()
    Sig = w.posterior_cov_dense()
    Cs = C - Sig
    I = np.eye(dim)
    a, v = jump_coefficients(SCHED, 25, "beta")
    for family in ("den_only25", "jump25"):
        M, b, S = a * I, np.zeros(dim), v * I
        for t, k1, k2, s in laws.steps(SCHED, 25):
            ab = float(SCHED.abar(t))
            sig = math.sqrt((1 - ab) / ab)
            L, c = _probe(lambda x, sig=sig: den(x, torch.full((x.shape[0],), sig, dtype=torch.float64)), dim)
            L = L / math.sqrt(ab)                                      # x0_d = L x_t + c (den sees x_t / sqrt(abar))
            if family == "den_only25":
                F1, F2, f0 = np.zeros((dim, dim)), I, np.zeros(dim)
            else:
                ts = torch.full((dim + 1,), t)
                F1, f1 = _probe(lambda x, ts=ts: fus(x, torch.zeros_like(x), ts), dim)
                F2, f2 = _probe(lambda x, ts=ts: fus(torch.zeros_like(x), x, ts), dim)
                f0 = f1                                                  # fusion(0, 0, t)
                assert np.allclose(f1, f2, atol=1e-12)
            Gm = k1 * F2 @ L + k2 * I
            M, b, S = Gm @ M + k1 * F1, Gm @ b + k1 * (F2 @ c + f0), Gm @ S @ Gm.T + s * s * I
        D = w.mmse() + np.trace((M - I) @ Cs @ (M - I).T) + (((M - I) @ m + b) ** 2).sum() + np.trace(S)
        P = w2.w2_gaussian(M @ m + b, M @ Cs @ M.T + S, m, C)
        wy = math.sqrt(np.trace((M - I) @ Cs @ (M - I).T) + (((M - I) @ m + b) ** 2).sum()
                       + w2.w2_gaussian_squared(np.zeros(dim), S, np.zeros(dim), Sig))
        r = _by(g)[family]
        assert r["D"] == pytest.approx(D / pix, rel=1e-8), family
        assert r["P"] == pytest.approx(P / math.sqrt(pix), rel=1e-5), family
        assert r["W2_given_y"] == pytest.approx(wy / math.sqrt(pix), rel=1e-6), family


def test_given_y_comparison_against_dense_matrices(data):
    """E_y W2^2 between the jump's and the full chain's laws given y, from their dense (M, b, S)."""
    g = data["degradations"][0]
    w = _world(g)
    C, Sig = w.prior_cov_blocks(), w.posterior_cov_blocks()
    total = 0.0
    co = [laws.coefficients(w, SCHED, s) for s in (laws.Sampler("jump", 25), laws.Sampler("full", 1000))]
    for k in range(3):
        Q, m1 = w.Q[k], np.full(w.d, w.mean_pca[k])
        Ms = [(Q * c.a_r[k]) @ Q.T for c in co]
        bs = [(Q * c.a_mu[k]) @ Q.T @ m1 for c in co]
        Ss = [(Q * c.V[k]) @ Q.T for c in co]
        dM = Ms[0] - Ms[1]
        total += np.trace(dM @ (C[k] - Sig[k]) @ dM.T) + ((dM @ m1 + bs[0] - bs[1]) ** 2).sum()
        total += w2.w2_gaussian_squared(np.zeros(w.d), Ss[0], np.zeros(w.d), Ss[1])
    got = g["comparisons"]["jump25_vs_full"]["W2_given_y"]
    assert got == pytest.approx(math.sqrt(total / (3 * w.d)), rel=1e-6)


def test_comparisons_are_w2_between_the_rows_laws(data):
    g = data["degradations"][0]
    c = g["comparisons"]
    rows = _by(g)
    assert set(c) == {"jump5_vs_full", "jump25_vs_full", "ddim5_vs_ancestral", "posterior_vs_beta",
                      "ir_only_vs_mmse", "full_vs_posterior"}
    x = c["jump25_vs_full"]
    assert x["dD"] == rows["jump25"]["D"] - rows["full"]["D"] and x["dP"] == rows["jump25"]["P"] - rows["full"]["P"]
    # W2 is a metric: |P_a - P_b| <= W2(a, b) (triangle inequality through the prior)
    for name, (a, b) in {"jump25_vs_full": ("jump25", "full"), "ddim5_vs_ancestral": ("jump25_ddim5", "jump25"),
                         "posterior_vs_beta": ("jump25_posterior", "jump25")}.items():
        assert abs(rows[a]["P"] - rows[b]["P"]) <= c[name]["W2_marginal"] * (1 + 1e-9), name
        # the marginal law is a mixture over y of the laws given y: W2 marginal <= rms W2 given y
        assert c[name]["W2_marginal"] <= c[name]["W2_given_y"] * (1 + 1e-9), name
    # the full chain against the posterior sampler: its W2 given y IS its row's W2|y
    assert c["full_vs_posterior"]["W2_given_y"] == pytest.approx(rows["full"]["W2_given_y"], rel=1e-6)
    texts = {cl["claim"]: cl for cl in g["claims"]}
    jump = texts["the one-step jump to τ=25 matches the full chain in law"]
    assert f"ΔD = {x['dD']:+.3g}" in jump["text"]
    assert jump["holds"] == (x["W2_marginal"] <= c["full_vs_posterior"]["W2_marginal"])
    fusion = texts["the fusion E[x0|y,x_t] beats either estimate alone"]
    assert fusion["holds"] == (rows["jump25"]["P"] < rows["ir_only25"]["P"] and rows["jump25"]["D"] < rows["den_only25"]["D"])


def test_files_and_report_section(tmp_path):
    cfg = {"out": str(tmp_path / "results"), "gaussian": {**SEC, "degradations": ["sr4"]}}
    assert G.section(cfg, tmp_path) == []                    # not computed yet: no section
    assert G.section({"out": cfg["out"]}, tmp_path) == []     # no gaussian: key: no section
    out, data = G.write_gaussian(cfg)
    assert out == tmp_path / "results" / "gaussian" / "gaussian.json"
    assert json.loads(out.read_text())["degradations"][0]["rows"] == data["degradations"][0]["rows"]
    assert (out.parent / "pd_plane.png").stat().st_size > 1000
    md = (out.parent / "gaussian.md").read_text()
    assert "![exact perception-distortion plane](pd_plane.png)" in md
    lines = G.section(cfg, tmp_path / "results")
    text = "\n".join(lines)
    assert lines[0] == "## Exact Gaussian world" and "](gaussian/pd_plane.png)" in text
    row = _by(data["degradations"][0])["posterior"]
    assert f"| exact posterior sampler | 0 | {row['D']:.4g} | {row['psnr']:.2f} |" in text
    m = _by(data["degradations"][0])["mmse"]
    assert f"| MMSE estimator E[x0\\|y] | 0 | {m['D']:.4g} |" in text          # pipes inside cells escaped
    for line in text.splitlines():
        if line.startswith("| "):
            assert line.replace("\\|", "").count("|") in (9, 5), line      # 8 or 4 columns
    out.write_text("{")
    with pytest.raises(DpirError, match=r"gaussian\.json is not a readable Gaussian-world section"):
        G.section(cfg, tmp_path)


def test_no_section_is_an_error_for_the_command(tmp_path):
    with pytest.raises(DpirError, match=r"config has no 'gaussian:' section; add e\.g\. gaussian: \{size: 32"):
        G.write_gaussian({"out": str(tmp_path)})


def test_report_embeds_the_section():
    """report.py renders the section right after the protocol tables (the call is there)."""
    src = (ROOT / "dpir" / "report" / "report.py").read_text()
    assert "parts += gaussian_section(config, report_path.parent)" in src


@pytest.mark.parametrize("bad, message", [
    ({"sizes": 8}, "config key 'gaussian.sizes' is not a known setting"),
    ({"degradations": ["sr1"]}, "config key 'gaussian.degradations': unknown degradation 'sr1'"),
    ({"degradations": ["sr3"], "size": 8}, "config key 'gaussian' (sr3): Gaussian world: size 8 must be divisible"),
    ({"ddim_stride": 25, "tau": 25, "taus": [25]}, "config key 'gaussian.ddim_stride': 25 must be smaller than gaussian.tau"),
])
def test_bad_section_is_one_line_error(tmp_path, capsys, bad, message):
    over = {"out": str(tmp_path / "r"), "gaussian": {**SEC, **bad}}
    f = write_yaml(tmp_path / "g.yaml", over)
    code = main(["gaussian", "-q", "-c", str(ROOT / "config" / "test.yaml"), "-c", str(f)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and err.startswith("dpir: error: "), err
    assert message in err, err


def test_report_puts_the_section_claims_in_its_claims_table():
    """report.py adds the section's claims (read from `dpir gaussian`'s JSON) to the top claims table."""
    src = (ROOT / "dpir" / "report" / "report.py").read_text()
    assert "g_data = read_gaussian(gaussian_json(config)) if config.get(\"gaussian\") else None" in src
    assert "table9_claims(t9_data) + gaussian_claims(g_data))" in src
