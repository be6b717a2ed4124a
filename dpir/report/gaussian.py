"""The exact Gaussian-world section of the report (issue 17, exact part): DP-IR's claims checked where
every law is known (:mod:`dpir.gaussian`).

Why.  On photos a sampler's output law is seen only through samples and learned metrics; in the
linear-Gaussian world of :mod:`dpir.gaussian.world` every estimator below is affine in E[x0 | y] plus
independent Gaussian noise, so its distortion, its W2 distance to the prior (the perception axis of
Freirich et al. 2021) and its distance to the exact posterior are closed-form numbers, not estimates.

Every row is an *affine law*: per colour channel (PCA coordinates of :class:`~dpir.gaussian.world.World`),
given y the output is ``N(M r + b, S)`` with r = E[z0 | y] ~ N(m 1, C_*), C_* = C - Cov(z0 | y).  Then
(the error of any function of y and independent noise is orthogonal to the MMSE error)

    D    = E|x0 - x_hat|^2 = MMSE + tr((M - I) C_* (M - I)^T) + |(M - I) m 1 + b|^2 + tr S,
    P    = W2(N(M m 1 + b, M C_* M^T + S), N(m 1, C))               (marginal law against the prior),
    W2|y = sqrt(E_y W2^2(law given y, p(x0 | y)))
         = sqrt(tr((M - I) C_* (M - I)^T) + |(M - I) m 1 + b|^2 + W2^2(N(0, S), N(0, Cov(x0 | y)))),

and the same two formulas between two rows compare samplers in law (marginal, and given y on average).
The rows: the MMSE estimator (M = I, S = 0), the exact posterior sampler (M = I, S = Cov(x0 | y)); DP-IR
with the exact fusion E[x0 | y, x_t] (:func:`dpir.gaussian.laws.coefficients`: diagonal in the
eigenbasis Q of the posterior precision) for the full chain, the jump at each tau, DDIM, the posterior
variance and the forward-noised start; and the two single-estimate chains from the same jump:
x0_hat = E[x0 | y] at every step (scalar recursions: the last step returns x0_hat, so the output IS
E[x0 | y]) and x0_hat = E[x0 | x_t] alone (the prior's denoiser, SDEdit-like: diagonal in the DFT,
``S / (S + sigma_t^2)`` per frequency), propagated by the same step coefficients as the fusion's
(:func:`dpir.gaussian.laws.steps`, read off the harness's own step functions).

Units: D per pixel (/ 3 size^2, PSNR = -10 log10 D for [0, 1] images), W2 per pixel (/ sqrt(3 size^2)).
The bound is D(P) = MMSE + (W0 - P)_+^2 (:func:`dpir.gaussian.w2.pd_bound`, W0 = P of the MMSE estimator);
every row lies on or above it (a theorem), the MMSE estimator on it.  The claims' verdicts state their
criteria (:func:`claims`): "matches" needs a scale, and the section says which one it used.

Cost.  Between two laws diagonal in Q the given-y quantities are sums over coordinates; the marginal
laws need dense d x d algebra (d = size^2 per colour channel: one eigvalsh per row and channel against
the prior, one square root per reference row).  Measured at size 32, two degradations (sr4, blur), the
default rows: 87 s inside the command, 97 s wall, 64 s CPU, 1.3 GB peak, on the shared 2-core development
machine under a load of ~6, one thread; size 8 (the tests): ~5 s.

Learned parts (config ``gaussian.learned``, :mod:`dpir.gaussian.learned`).  The same questions with networks
trained here, in a smaller world (8 x 8 by default: P must then be estimated from samples): the learned IR
alone, DP-IR with all parts learned and mixes of learned and oracle parts, run by the harness's sampler,
their D and P estimated from samples with standard errors, and each network's excess error over its
oracle; a subsection of its own, a second row of panels on the figure, and their claims (with 95 %
intervals) beside the exact ones.  Absent (or null): no learned rows.  Cost at the default config: 98 s
more (the whole command 178 s on the same machine; 76 s without).  The baselines trained in the same world
(``gaussian.learned.baselines``: InDI, SRDiff on SR only, DiffIR) add a row each to the learned tables
(IR/denoiser/fusion "—", steps = their NFE; SRDiff's absence for blur is a row that says why), crosses on
the learned panels, and one claim per degradation (DP-IR's gap to the bound against each baseline's); about
+60 s at the default config (measured side by side under load: 185-204 s without, 244-247 s with).
"""
from __future__ import annotations

import json
import math
import time
from itertools import pairwise
from pathlib import Path

from dpir import paths
from dpir.errors import DpirError

#: the section's keys and defaults (config ``gaussian:``; validated by the schema, then :func:`settings`)
DEFAULTS = {"size": 32, "degradations": ["sr4", "blur"], "noise": 0.01, "taus": [5, 25, 50, 250],
            "tau": 250, "ddim_stride": 5, "seed": 0}
#: degradation names: ``sr<k>`` (the harness's k-x bicubic), ``blur`` (Gaussian kernel, std 1.6, 9 x 9),
#: ``motion`` (the harness's camera-shake kernel, 9 x 9, seed 0); worlds under 9 pixels use the largest
#: odd kernel that fits
BLURS = {"blur": {"task": "blur", "kernel": "gaussian"}, "motion": {"task": "blur", "kernel": "motion"}}


def gaussian_json(config: dict) -> Path:
    """The section's data (``dpir gaussian``); Markdown and the P-D figure lie beside it."""
    return paths.gaussian_dir(config) / "gaussian.json"


def settings(config: dict) -> dict | None:
    """The ``gaussian:`` section with defaults filled in, checked; None when the config has none."""
    sec = config.get("gaussian")
    if not sec:
        return None
    s = {**DEFAULTS, **sec}
    specs = {}
    for name in s["degradations"]:
        specs[name] = world_spec(name, s)
    if len(set(s["degradations"])) != len(s["degradations"]):
        raise DpirError(f"config key 'gaussian.degradations' names a degradation twice: {s['degradations']}")
    for key in ("taus", "tau"):
        for t in (s[key] if key == "taus" else [s[key]]):
            if not 1 <= t <= 1000:
                raise DpirError(f"config key 'gaussian.{key}': tau {t} is outside 1..1000 (the schedule's T)")
    if s["ddim_stride"] >= s["tau"]:
        raise DpirError(f"config key 'gaussian.ddim_stride': {s['ddim_stride']} must be smaller than "
                        f"gaussian.tau ({s['tau']}), or DDIM takes a single step")
    s["taus"] = sorted(set(s["taus"]))
    s["specs"] = specs
    s["learned"], s["learned_specs"] = learned_settings(s)
    return s


def learned_settings(s: dict) -> tuple[dict | None, dict | None]:
    """``gaussian.learned`` checked, with defaults (:data:`dpir.gaussian.learned.DEFAULTS`), and the
    WorldSpec of each degradation at the learned size; (None, None) when absent (no learned rows)."""
    if s.get("learned") is None:
        return None, None
    from dpir.gaussian.learned import check_settings, ir_net

    ls = check_settings(s["learned"])
    specs = {}
    for name in s["degradations"]:
        try:
            specs[name] = world_spec(name, {**s, "size": ls["size"]})
        except DpirError as e:
            raise DpirError(str(e).replace("config key 'gaussian'", "config key 'gaussian.learned.size'", 1)) from None
        ir_net(specs[name])
    return ls, specs


def world_spec(name: str, s: dict):
    """The :class:`dpir.gaussian.world.WorldSpec` of a degradation name, checked (one-line errors)."""
    from dpir.gaussian.world import WorldSpec

    size = int(s["size"])
    if name in BLURS:      # 9 x 9, or the largest odd kernel a small world holds (size 8: 7 x 7)
        kw = {**BLURS[name], "kernel_size": min(9, size - 1 + size % 2)}
    elif name.startswith("sr") and name[2:].isdigit() and int(name[2:]) >= 2:
        kw = {"task": "sr", "scale": int(name[2:])}
    else:
        raise DpirError(f"config key 'gaussian.degradations': unknown degradation {name!r}; use sr<k> (e.g. sr4), "
                        f"{', '.join(BLURS)}")
    spec = WorldSpec(size=size, noise=float(s["noise"]), fit_seed=int(s["seed"]), **kw)
    try:
        return spec.check()
    except DpirError as e:
        raise DpirError(f"config key 'gaussian' ({name}): {e}") from None


# ------------------------------------------------------------------------------------------ laws

class _Law:
    """One row's law given y, per colour channel: either diagonal in the posterior eigenbasis Q
    (``q`` = (a_r, a_mu, V), arrays (3, d): xi = Q^T z ~ N(a_r Q^T r + a_mu Q^T m 1, diag V)) or dense
    (``dense`` = (M, b, S)); the marginal law and its square root are cached (each costs dense algebra)."""

    def __init__(self, q=None, dense=None):
        self.q, self._dense = q, dense
        self.marg = None
        self.marg_sqrt = None


class _Laws:
    """The world's shared dense pieces (per colour channel, PCA coordinates) and the affine-law algebra
    of the module docstring.  Between two laws diagonal in Q the given-y quantities are sums over
    coordinates; only the marginal laws (and the E[x0|x_t]-only row, diagonal in the DFT) are dense."""

    def __init__(self, world):
        import numpy as np

        from dpir.gaussian.w2 import psd_sqrt

        self.w = world
        self.d = world.d
        self.pix = 3 * world.d
        self.C = world.prior_cov_blocks()
        self.Q = world.Q
        QT = np.transpose(world.Q, (0, 2, 1))
        self.Cs_q = QT @ self.C @ world.Q - np.stack([np.diag(1.0 / p) for p in world.p])    # Q^T C_* Q
        self.Cs = self.Q @ self.Cs_q @ QT                                                  # Cov(E[z0|y])
        self.m1 = np.repeat(world.mean_pca[:, None], world.d, axis=1)
        self.mu_q = np.einsum("kde,kd->ke", world.Q, self.m1)                            # Q^T m 1
        self.C_sqrt = np.stack([psd_sqrt(c) for c in self.C])
        self.I = np.eye(world.d)

    def dense(self, law: _Law):
        """(M, b, S) of a law (built from ``q`` on first use)."""
        if law._dense is None:
            a_r, a_mu, V = law.q
            Q = self.Q
            law._dense = ([(Q[k] * a_r[k]) @ Q[k].T for k in range(3)],
                          [Q[k] @ (a_mu[k] * self.mu_q[k]) for k in range(3)],
                          [(Q[k] * V[k]) @ Q[k].T for k in range(3)])
        return law._dense

    def marginal(self, law: _Law):
        import numpy as np

        if law.marg is None:
            if law.q is not None:
                a_r, a_mu, V = law.q
                Q = self.Q
                mean = [Q[k] @ ((a_r[k] + a_mu[k]) * self.mu_q[k]) for k in range(3)]
                cov = [Q[k] @ (a_r[k][:, None] * self.Cs_q[k] * a_r[k][None, :] + np.diag(V[k]))
                       @ Q[k].T for k in range(3)]
            else:
                M, b, S = law._dense
                mean = [M[k] @ self.m1[k] + b[k] for k in range(3)]
                cov = [M[k] @ self.Cs[k] @ M[k].T + S[k] for k in range(3)]
            law.marg = (mean, [0.5 * (c + c.T) for c in cov])
        return law.marg

    def given_y_sq(self, law1: _Law, law2: _Law, cov: bool = True) -> tuple[float, float]:
        """(mean part, covariance part) of E_y W2^2 between the two laws given y (``cov`` False: the
        covariance part is not computed, 0.0)."""
        import numpy as np

        from dpir.gaussian.w2 import w2_gaussian_squared

        if law1.q is not None and law2.q is not None:
            (a1, m1, V1), (a2, m2, V2) = law1.q, law2.q
            da = a1 - a2              # the means differ by da Q^T r + (m1 - m2) Q^T m 1, Q^T r ~ N(Q^T m 1, Q^T C_* Q)
            diag = np.stack([np.diag(c) for c in self.Cs_q])
            mean = float((da ** 2 * diag).sum()) + float((((da + m1 - m2) * self.mu_q) ** 2).sum())
            return mean, float(((np.sqrt(V1) - np.sqrt(V2)) ** 2).sum())
        (M1, b1, S1), (M2, b2, S2) = self.dense(law1), self.dense(law2)
        mean, cov_part = 0.0, 0.0
        zero = np.zeros(self.d)
        for k in range(3):
            dM = M1[k] - M2[k]
            mean += float(((dM @ self.Cs[k]) * dM).sum())               # tr(dM C_* dM^T)
            mean += float(((dM @ self.m1[k] + b1[k] - b2[k]) ** 2).sum())
            cov_part += w2_gaussian_squared(zero, S1[k], zero, S2[k]) if cov else 0.0
        return mean, cov_part

    def w2_marginal(self, law1: _Law, law2: _Law | None) -> float:
        """W2 between the marginal laws (``law2`` None: the prior)."""
        from dpir.gaussian.w2 import psd_sqrt, w2_gaussian_squared

        mean1, cov1 = self.marginal(law1)
        if law2 is None:
            mean2, cov2, root = self.m1, self.C, self.C_sqrt
        else:
            mean2, cov2 = self.marginal(law2)
            if law2.marg_sqrt is None:
                law2.marg_sqrt = [psd_sqrt(c) for c in cov2]
            root = law2.marg_sqrt
        return math.sqrt(sum(w2_gaussian_squared(mean1[k], cov1[k], mean2[k], cov2[k], sqrt_b=root[k])
                             for k in range(3)))

    def point(self, law: _Law, posterior: _Law) -> dict:
        """D, P, W2|y of one law (whole-image units): D = MMSE + E|x_hat - E[x0|y]|^2."""
        mean_part, cov_part = self.given_y_sq(law, posterior)
        trace_S = float(law.q[2].sum()) if law.q is not None else float(sum(S.trace() for S in law._dense[2]))
        mean_to_r, _ = self.given_y_sq(law, self.mmse(), cov=False)
        return {"D": self.w.mmse() + mean_to_r + trace_S, "P": self.w2_marginal(law, None),
                "W2_given_y": math.sqrt(mean_part + cov_part)}

    def compare(self, law1: _Law, law2: _Law) -> dict:
        """W2 between the two marginal laws, and sqrt(E_y W2^2) between the laws given y."""
        return {"W2_marginal": self.w2_marginal(law1, law2), "W2_given_y": math.sqrt(sum(self.given_y_sq(law1, law2)))}

    # --- the rows' laws ---------------------------------------------------------------------------
    def mmse(self) -> _Law:
        import numpy as np

        one = np.ones_like(self.mu_q)
        return _Law(q=(one, 0.0 * one, 0.0 * one))

    def posterior(self) -> _Law:
        import numpy as np

        return _Law(q=(np.ones_like(self.mu_q), np.zeros_like(self.mu_q), 1.0 / self.w.p))

    def fusion(self, schedule, sampler) -> _Law:
        """DP-IR with the exact fusion: diagonal in Q (:func:`dpir.gaussian.laws.coefficients`)."""
        from dpir.gaussian.laws import coefficients

        co = coefficients(self.w, schedule, sampler)
        return _Law(q=(co.a_r, co.a_mu, co.V))

    def ir_only(self, schedule, sampler) -> _Law:
        """x0_hat = E[x0 | y] at every step: the state is a r + noise, scalar recursions."""
        import numpy as np

        from dpir.gaussian.laws import start, steps

        tau, a_r, V = start(schedule, sampler)
        for _t, k1, k2, s in steps(schedule, tau, sampler.ddim_stride, sampler.variance, sampler.eta):
            a_r, V = k2 * a_r + k1, k2 * k2 * V + s * s
        one = np.ones_like(self.mu_q)
        return _Law(q=(a_r * one, 0.0 * one, V * one))

    def denoiser_only(self, schedule, sampler) -> _Law:
        """x0_hat = E[x0 | x_t] (the prior's denoiser alone): diagonal in the DFT, per frequency
        x0_hat = (1 - w) m + (w / sqrt(abar)) x_t, w = S / (S + (1 - abar) / abar)."""
        import numpy as np

        from dpir.gaussian.laws import start, steps
        from dpir.gaussian.world import spectral_matrix

        tau, a, v = start(schedule, sampler)
        spec = self.w.spectra                                            # (3, n, n)
        a_r, a_mu, V = np.full_like(spec, a), np.zeros_like(spec), np.full_like(spec, v)
        for t, k1, k2, s in steps(schedule, tau, sampler.ddim_stride, sampler.variance, sampler.eta):
            ab = float(schedule.abar(t))
            wd = spec / (spec + (1.0 - ab) / ab)
            g = k2 + k1 * wd / math.sqrt(ab)
            a_r, a_mu, V = g * a_r, g * a_mu + k1 * (1.0 - wd), g * g * V + s * s
        M = [spectral_matrix(a_r[k]) for k in range(3)]
        S = [spectral_matrix(V[k]) for k in range(3)]
        # m 1 is a constant image: only the DC coefficient of a_mu acts on it
        return _Law(dense=(M, [a_mu[k, 0, 0] * self.m1[k] for k in range(3)], S))


def _rows(s: dict):
    """[(key, label, family, sampler or None, steps)] of the section, in table order."""
    from dpir.diffusion.samplers import ddim_timesteps
    from dpir.gaussian.laws import Sampler

    tau, stride = int(s["tau"]), int(s["ddim_stride"])
    rows = [("mmse", "MMSE estimator E[x0|y]", "exact", None, 0),
            ("posterior", "exact posterior sampler", "exact", None, 0),
            ("full", "DP-IR full chain (T=1000)", "fusion", Sampler("full", 1000), 1000)]
    for t in s["taus"]:
        rows.append((f"jump{t}", f"DP-IR jump τ={t}", "fusion", Sampler("jump", t), t))
    if tau not in s["taus"]:
        rows.append((f"jump{tau}", f"DP-IR jump τ={tau}", "fusion", Sampler("jump", tau), tau))
    rows += [(f"jump{tau}_posterior", f"DP-IR jump τ={tau}, posterior variance", "fusion",
              Sampler("jump", tau, variance="posterior"), tau),
             (f"jump{tau}_ddim{stride}", f"DP-IR jump τ={tau} + DDIM/{stride}", "fusion",
              Sampler("jump", tau, ddim_stride=stride), len(ddim_timesteps(tau, stride))),
             (f"noised{tau}", f"DP-IR forward-noised start τ={tau}", "fusion", Sampler("noised_start", tau), tau),
             (f"ir_only{tau}", f"E[x0|y] alone, jump τ={tau}", "ir_only", Sampler("jump", tau), tau),
             (f"den_only{tau}", f"E[x0|x_t] alone (SDEdit-like), jump τ={tau}", "denoiser_only",
              Sampler("jump", tau), tau)]
    return rows


def compute_degradation(name: str, s: dict) -> dict:
    """Every row's exact (D, P, W2|y), its bound and gap, and the claims, for one degradation."""
    from dpir.diffusion.schedule import linear_schedule
    from dpir.gaussian.w2 import pd_bound
    from dpir.gaussian.world import cached_world

    t0 = time.perf_counter()
    world = cached_world(s["specs"][name])
    L = _Laws(world)
    schedule = linear_schedule()
    mmse = world.mmse()
    laws, rows = {}, []
    w0 = None
    posterior = L.posterior()
    for key, label, family, sampler, nsteps in _rows(s):
        law = getattr(L, family if family != "exact" else key)() if sampler is None else \
            getattr(L, family)(schedule, sampler)
        laws[key] = law
        pt = L.point(law, posterior)
        if key == "mmse":
            w0 = pt["P"]
        bound = pd_bound(pt["P"], mmse, w0)
        rows.append({"key": key, "label": label, "family": family, "steps": nsteps,
                     "D": pt["D"] / L.pix, "psnr": -10.0 * math.log10(pt["D"] / L.pix), "P": pt["P"] / math.sqrt(L.pix),
                     "bound": bound / L.pix, "gap": (pt["D"] - bound) / L.pix,
                     "W2_given_y": pt["W2_given_y"] / math.sqrt(L.pix)})
    by = {r["key"]: r for r in rows}

    def cmp(a, b):
        c = L.compare(laws[a], laws[b])
        return {"W2_marginal": c["W2_marginal"] / math.sqrt(L.pix), "W2_given_y": c["W2_given_y"] / math.sqrt(L.pix),
                "dD": by[a]["D"] - by[b]["D"], "dP": by[a]["P"] - by[b]["P"]}

    tau, stride = int(s["tau"]), int(s["ddim_stride"])
    comparisons = {f"jump{t}_vs_full": cmp(f"jump{t}", "full") for t in sorted(set(s["taus"]) | {tau})}
    comparisons[f"ddim{stride}_vs_ancestral"] = cmp(f"jump{tau}_ddim{stride}", f"jump{tau}")
    comparisons["posterior_vs_beta"] = cmp(f"jump{tau}_posterior", f"jump{tau}")
    comparisons["ir_only_vs_mmse"] = cmp(f"ir_only{tau}", "mmse")
    comparisons["full_vs_posterior"] = cmp("full", "posterior")
    return {"degradation": name, "spec": _spec_dict(s["specs"][name]), "mmse": mmse / L.pix,
            "w0": w0 / math.sqrt(L.pix), "rows": rows, "comparisons": comparisons,
            "claims": claims(rows, comparisons, s), "seconds": time.perf_counter() - t0}


def _spec_dict(spec) -> dict:
    from dataclasses import asdict

    return asdict(spec)


def _f(x: float) -> str:
    return f"{x:.3g}"


#: the tolerance of the "close" verdicts: a share of the row's D, and of W0 for P (stated in each criterion)
CLOSE = 0.05


def claims(rows: list[dict], comp: dict, s: dict) -> list[dict]:
    """The paper's claims as verdicts computed from the exact numbers (nothing typed in); each states
    its criterion, since "matches" needs a scale: the full chain's own distance from the exact
    posterior sampler for the jump, :data:`CLOSE` of D and of W0 for DDIM and the variance."""
    by = {r["key"]: r for r in rows}
    tau, stride = int(s["tau"]), int(s["ddim_stride"])
    full, jump, post, mm = by["full"], by[f"jump{tau}"], by["posterior"], by["mmse"]
    w0, mmse = mm["P"], mm["D"]
    pct = f"{100 * CLOSE:g} %"
    out = []

    def add(claim, holds, criterion, text, numbers):
        out.append({"claim": claim, "holds": bool(holds), "criterion": criterion, "text": text, "numbers": numbers})

    c = comp[f"jump{tau}_vs_full"]
    ref = comp["full_vs_posterior"]["W2_marginal"]
    add(f"the one-step jump to τ={tau} matches the full chain in law", c["W2_marginal"] <= ref,
        "W2(jump, full) ≤ W2(full, exact posterior sampler)",
        f"W2 between their output laws {_f(c['W2_marginal'])} per pixel (given y, rms: {_f(c['W2_given_y'])}); "
        f"ΔD = {c['dD']:+.3g} ({100 * c['dD'] / full['D']:+.2f} % of the full chain's D), ΔP = {c['dP']:+.3g}; "
        f"the full chain's own W2 to the exact posterior sampler: {_f(ref)}", c)
    taus = list(s["taus"])
    Ds, Ps = [by[f"jump{t}"]["D"] for t in taus], [by[f"jump{t}"]["P"] for t in taus]
    mono_d = all(a <= b + 1e-3 * mmse for a, b in pairwise(Ds))
    mono_p = all(a >= b - 1e-3 * w0 for a, b in pairwise(Ps))
    add("a larger τ trades distortion for perception (D rises, P falls with τ)", mono_d and mono_p,
        "D non-decreasing and P non-increasing in τ, within 0.1 % of MMSE and of W0",
        "; ".join(f"τ={t}: D {_f(d)}, P {_f(p)}" for t, d, p in zip(taus, Ds, Ps))
        + f" (D non-decreasing: {'yes' if mono_d else 'no'}, P non-increasing: {'yes' if mono_p else 'no'})",
        {"taus": taus, "D": Ds, "P": Ps})
    nfe = by[f"jump{tau}_ddim{stride}"]["steps"]
    for key, claim in ((f"ddim{stride}_vs_ancestral", f"DDIM/{stride} from the jump matches ancestral steps at {nfe}/{tau} of the NFE"),
                       ("posterior_vs_beta", f"the reverse variance (posterior β̃ vs β) barely matters at τ={tau}")):
        c = comp[key]
        add(claim, abs(c["dD"]) <= CLOSE * jump["D"] and abs(c["dP"]) <= CLOSE * w0,
            f"|ΔD| ≤ {pct} of D and |ΔP| ≤ {pct} of W0",
            f"W2 between the laws {_f(c['W2_marginal'])} (given y {_f(c['W2_given_y'])}), ΔD = {c['dD']:+.3g} "
            f"({100 * c['dD'] / jump['D']:+.2f} %), ΔP = {c['dP']:+.3g} ({100 * c['dP'] / w0:+.2f} % of W0)", c)
    ir, den = by[f"ir_only{tau}"], by[f"den_only{tau}"]
    add("the fusion E[x0|y,x_t] beats either estimate alone", jump["P"] < ir["P"] and jump["D"] < den["D"],
        "P below E[x0|y] alone's and D below E[x0|x_t] alone's (same jump and steps)",
        f"fusion D {_f(jump['D'])}, P {_f(jump['P'])}; E[x0|y] alone D {_f(ir['D'])} (= MMSE {_f(mmse)}), "
        f"P {_f(ir['P'])}; E[x0|x_t] alone D {_f(den['D'])}, P {_f(den['P'])}; gap to the bound: fusion "
        f"{_f(jump['gap'])}, denoiser alone {_f(den['gap'])}",
        {"fusion": [jump["D"], jump["P"], jump["gap"]], "ir_only": [ir["D"], ir["P"], ir["gap"]],
         "denoiser_only": [den["D"], den["P"], den["gap"]]})
    add("DP-IR's exact chains approach the exact posterior sampler (P = 0, D = 2 MMSE)",
        full["W2_given_y"] <= CLOSE * mm["W2_given_y"],
        f"the full chain's W2|y ≤ {pct} of the MMSE estimator's (a point mass at E[x0|y])",
        f"full chain D {_f(full['D'])} vs 2·MMSE {_f(post['D'])}, P {_f(full['P'])} vs 0; W2|y to p(x0|y): full "
        f"{_f(full['W2_given_y'])}, jump τ={tau} {_f(jump['W2_given_y'])}, MMSE estimator {_f(mm['W2_given_y'])}",
        {"full": [full["D"], full["P"], full["W2_given_y"]], "posterior": [post["D"], post["P"]]})
    return out


# -------------------------------------------------------------------------------------- outputs

def compute(config: dict) -> dict | None:
    """The section's data for every degradation (None without a ``gaussian:`` section)."""
    s = settings(config)
    if s is None:
        return None
    t0 = time.perf_counter()
    degr = [compute_degradation(n, s) for n in s["degradations"]]
    keys = {k: v for k, v in s.items() if k not in ("specs", "learned_specs", "learned")}
    out = {"settings": keys, "degradations": degr}
    if s["learned"] is not None:          # rows with learned parts (dpir.gaussian.learned), estimated
        from dpir.gaussian.learned import compute as compute_learned

        keys["learned"] = s["learned"]
        out["learned"] = compute_learned(s["learned"], s["learned_specs"])
    out["seconds"] = time.perf_counter() - t0
    return out


def pd_figure(data: dict, path: Path) -> Path:
    """The P-D plane per degradation: every row, and the bound D(P) (style of :mod:`dpir.report.plots`);
    with learned rows, a second row of panels for the learned world: its bound, its exact rows, and the
    estimated rows as diamonds with ±2 SE error bars on both axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import seaborn as sns

    from dpir.report.plots import _save

    sns.set_theme(style="whitegrid", context="notebook")
    degr = data["degradations"]
    learned = (data.get("learned") or {}).get("degradations") or []
    nrows = 2 if learned else 1
    fig, axes = plt.subplots(nrows, len(degr), figsize=(6.4 * len(degr), 4.6 + 6.0 * (nrows - 1)), dpi=120,
                             squeeze=False, gridspec_kw={"height_ratios": [1.0, 1.3][:nrows]})
    markers = {"exact": "s", "fusion": "o", "ir_only": "^", "denoiser_only": "v"}

    def bound_curve(ax, g, ps):
        grid = np.linspace(0.0, max(max(ps), g["w0"]) * 1.1, 200)
        bound = g["mmse"] + np.clip(g["w0"] - grid, 0.0, None) ** 2
        ax.plot(grid, bound, "-", color="0.3", lw=1.5, label="bound D(P) = MMSE + (W0 − P)₊²")

    def labels(ax, title, below=False):
        ax.set_xlabel("P = W2(output law, prior) per pixel (lower is better)")
        ax.set_ylabel("D = MSE per pixel, log scale (lower is better)")
        ax.set_yscale("log")            # the single-estimate chains sit far above the rest
        ax.set_title(title, fontsize=10)
        if below:                       # error bars fill the panel: the legend goes under it
            ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1)
        else:
            ax.legend(fontsize=6, loc="best")

    for ax, g in zip(axes[0], degr):
        bound_curve(ax, g, [r["P"] for r in g["rows"]])
        palette = sns.color_palette("tab20", n_colors=max(3, len(g["rows"])))
        for i, r in enumerate(g["rows"]):
            ax.plot(r["P"], r["D"], markers[r["family"]], color=palette[i % len(palette)], label=r["label"])
        labels(ax, f"exact Gaussian world, {g['degradation']} ({g['spec']['size']}×{g['spec']['size']})")
    for ax, g in zip(axes[1] if learned else [], learned):
        n = g["spec"]["size"]
        pix = 3 * n * n

        def p_at(r, k, pix=pix):        # P at W2^2 + k SE: the ±2 SE bar through the square root (never < 0)
            return math.sqrt(max(r["W2sq"] + k * r["W2sq_se"], 0.0) / pix)

        bound_curve(ax, g, [p_at(r, 2) if not r["exact"] else r["P"] for r in g["rows"]])
        palette = sns.color_palette("tab20" if len(g["rows"]) > 10 else "tab10", n_colors=max(3, len(g["rows"])))
        for i, r in enumerate(g["rows"]):
            if r["exact"]:
                ax.plot(r["P"], r["D"], "s", color=palette[i % len(palette)], label=r["label"])
            else:               # baselines trained in the world: crosses, DP-IR's and the IR's rows: diamonds
                base = r.get("family") == "baseline"
                xerr = [[r["P"] - p_at(r, -2)], [p_at(r, 2) - r["P"]]]
                ax.errorbar(r["P"], r["D"], xerr=xerr, yerr=2 * r["D_se"], fmt="X" if base else "D", ms=7 if base else 5,
                            capsize=2, color=palette[i % len(palette)], label=f"{r['label']} (±2 SE)")
        labels(ax, f"learned parts, {g['degradation']} ({n}×{n}), estimated from "
                   f"{data['learned']['settings']['samples']} samples", below=True)
    return _save(fig, path)


def _cell(text: str) -> str:
    """A Markdown table cell: its own pipes (|ΔD|, E[x0|y], W2|y) escaped."""
    return text.replace("|", "\\|")


def markdown(data: dict, figure: str | None = None) -> str:
    """The section's tables, claims and figure link (``figure`` relative to where the text lands)."""
    s = data["settings"]
    intro = (f"Exact laws (no sampling, no learned parts) of {s['size']}×{s['size']} RGB images, noise std "
             f"{s['noise']}: D is the MSE per pixel (PSNR = −10 log10 D), P the W2 distance per pixel of the output "
             "law to the prior, W2|y the rms over y of the W2 distance to the exact posterior p(x0|y); bound = "
             "D(P) = MMSE + (W0 − P)₊² (Freirich et al. 2021), gap = D − bound ≥ 0. Every DP-IR row uses the "
             "exact E[x0|y], E[x0|x_t] and E[x0|y,x_t] on the harness's schedule and step functions (unclipped).")
    out = [intro, ""]
    for g in data["degradations"]:
        out += [f"### {g['degradation']}: MMSE {g['mmse']:.4g}, W0 {g['w0']:.4g}", "",
                "| estimator | steps | D | PSNR | P | bound D(P) | gap | W2\\|y |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in g["rows"]:
            out.append(f"| {_cell(r['label'])} | {r['steps']} | {r['D']:.4g} | {r['psnr']:.2f} | {r['P']:.4g} | "
                       f"{r['bound']:.4g} | {r['gap']:.3g} | {r['W2_given_y']:.4g} |")
        out += ["", "| claim | holds | criterion | numbers (per pixel) |", "|---|---|---|---|"]
        for c in g["claims"]:
            out.append(f"| {_cell(c['claim'])} | {'yes' if c['holds'] else 'no'} | {_cell(c['criterion'])} | "
                       f"{_cell(c['text'])} |")
        out.append("")
    learned = data.get("learned")
    if learned:
        out += learned_markdown(learned)
    if figure:
        more = (" Bottom: the learned-parts world, its exact rows (squares) and the rows estimated from "
                f"{learned['settings']['samples']} samples (diamonds, ±2 SE on both axes; the baselines trained in the "
                "world: crosses).") if learned else ""
        out += [f"![exact perception-distortion plane]({figure})", "",
                "*The exact perception–distortion plane of each degradation: every estimator above and the bound."
                f"{more}*", ""]
    return "\n".join(out)


def _pm(x: float, se: float) -> str:
    return f"{x:.4g} ± {se:.2g}"


def learned_markdown(L: dict) -> list[str]:
    """The learned-parts subsection (:mod:`dpir.gaussian.learned`): training facts, the rows estimated from
    samples (set apart from the exact ones), each network's excess error over its oracle, the claims."""
    from dpir.gaussian.learned import BASELINE_LABELS, EPS_L1_ZERO, sampler_label

    s = L["settings"]
    n = s["size"]
    den = L["denoiser"]
    out = [f"### Learned parts ({n}×{n} world, estimated from {s['samples']} samples)", "",
           f"Networks trained here, in-process, on fresh draws of the world's train split (seed {s['seed']}, "
           f"{s['steps']} Adam steps of batch {s['batch']}, lr {s['lr']:g}, the harness trainers' own losses): the IR "
           "network (the regression baseline), ONE denoiser for every degradation (trained for σ ∈ [0, σ~_τ]) and a "
           f"fusion net per degradation (DPIREstimator's x0 MSE, t ~ U{{1..{s['tau']}}}, on the learned IR and the "
           f"frozen learned denoiser). Rows: the harness's DP-IR sampler ({sampler_label(s)}, "
           f"unclipped) on {s['samples']} test observations, one draw each, the same sampler noise for every row. "
           "D = MMSE + mean |x̂ − E[x0|y]|² (exact by orthogonality; ± its standard error), P = W2 per pixel of the "
           "output law to the prior from the samples (extrapolated plug-in estimate ± its standard error, through "
           "the square root), bound D(P) at the estimated P. The estimator-check row runs the same sampler with "
           "oracle parts: compare it with the exact row. A network's excess error = its MSE − its oracle's MSE "
           "= E|f − oracle|² (orthogonality), estimated directly (± SE); the oracle's MSE is exact.", ""]
    names = s.get("baselines") or []
    if names:
        out += [(f"Baselines ({', '.join(BASELINE_LABELS.get(b, b) for b in names)}): each trained here the same way "
                 f"with its own trainers ({s['baseline_steps']} Adam steps per network, batch {s['batch']}, on the same "
                 "training draws) and run as the harness runs it (its Method class) on the same test observations with "
                 "the same per-image sampler generators (paired with the DP-IR rows). For them the steps column is "
                 "the NFE (network calls per image, the method's own count, checked by counting forward calls), their "
                 "IR/denoiser/fusion columns are — (they have no such parts). Sizes and steps are small for the budget: "
                 "like DP-IR's parts, they are far from their best."), ""]
    out += [f"Denoiser `{den['arch']}` ({den['params']} parameters, loss {den['loss_first']:.3g} → "
            f"{den['loss_last']:.3g}, {den['seconds']:.0f} s), excess over E[x0|x~] on {den['excess'][0]['n']} draws "
            "per σ:", "",
            "| t | σ~_t | excess E\\|D − E[x0\\|x~]\\|² | oracle MSE (exact) | excess / oracle |", "|---:|---:|---:|---:|---:|"]
    for e in den["excess"]:
        out.append(f"| {e['t']} | {e['sigma']:.4g} | {_pm(e['excess'], e['excess_se'])} | {e['oracle_mse']:.4g} | "
                   f"{e['ratio']:.3g} |")
    out.append("")
    for g in L["degradations"]:
        ir, fu = g["ir"], g["fusion"]
        out += [f"#### {g['degradation']} ({n}×{n}): MMSE {g['mmse']:.4g}, W0 {g['w0']:.4g}", "",
                f"IR `{ir['arch']}` ({ir['params']} parameters, loss {ir['loss_first']:.3g} → {ir['loss_last']:.3g}, "
                f"{ir['seconds']:.0f} s); fusion `{fu['arch']}` ({fu['params']} parameters, loss {fu['loss_first']:.3g} "
                f"→ {fu['loss_last']:.3g}, {fu['seconds']:.0f} s).", "",
                "| estimator | IR | denoiser | fusion | steps | D | PSNR | P | bound D(P) |",
                "|---|---|---|---|---:|---:|---:|---:|---:|"]
        for r in g["rows"]:
            d = f"{r['D']:.4g}" if r["exact"] else _pm(r["D"], r["D_se"])
            p = f"{r['P']:.4g}" if r["exact"] else _pm(r["P"], r["P_se"])
            out.append(f"| {_cell(r['label'])} | {' | '.join(r['parts'])} | {r['steps']} | {d} | {r['psnr']:.2f} | {p} | "
                       f"{r['bound']:.4g} |")
        for name, why in (g.get("baselines_skipped") or {}).items():
            out.append(f"| {BASELINE_LABELS.get(name, name)} (baseline) | — | — | — | — | {_cell(why)} | — | — | — |")
        bl = g.get("baselines") or {}
        note = ""
        if bl:
            note = " Baselines: steps = NFE. " + "; ".join(
                f"{BASELINE_LABELS.get(k, k)}: " + ", ".join(
                    f"`{f['arch']}` {f['params']} parameters, loss {f['loss_first']:.3g} → {f['loss_last']:.3g}"
                    for f in b["nets"].values()) + f" ({b['seconds']:.0f} s)" for k, b in bl.items()) + "."
            eps = (bl.get("srdiff") or {}).get("nets", {}).get("srdiff")
            if eps and eps["loss_last"] > 0.9 * EPS_L1_ZERO:
                note += (f" SRDiff's U-Net loss (L1 of the predicted noise) went {eps['loss_first']:.3g} → "
                         f"{eps['loss_last']:.3g}, near the {EPS_L1_ZERO:.2f} of predicting no noise: in "
                         f"{eps['steps']} steps its noise prediction has barely started to learn, and its row shows "
                         "that budget, not SRDiff.")
            if "srdiff" in bl and g.get("outside_unit"):
                note += (f" SRDiff clips its output to [0, 1] (as the official code), while "
                         f"{100 * g['outside_unit']:.1f} % of this world's pixels lie outside: part of its D and P.")
        out += ["", f"*Exact rows: no sampling. The others: estimated from {s['samples']} samples (± one standard "
                f"error).{note}*", "",
                "| network | t | excess E\\|f − oracle\\|² | oracle MSE (exact) | excess / oracle |", "|---|---:|---:|---:|---:|"]
        e = g["excess"]["ir"]
        out.append(f"| IR f(y) vs E[x0\\|y] | — | {_pm(e['excess'], e['excess_se'])} | {e['oracle_mse']:.4g} | {e['ratio']:.3g} |")
        for e in g["excess"]["fusion"]:
            out.append(f"| fusion F(E[x0\\|y], E[x0\\|x_t], t) vs E[x0\\|y,x_t] | {e['t']} | "
                       f"{_pm(e['excess'], e['excess_se'])} | {e['oracle_mse']:.4g} | {e['ratio']:.3g} |")
        out += ["", "| claim | verdict | criterion | 95 % interval | numbers (per pixel) |", "|---|---|---|---|---|"]
        for c in g["claims"]:
            verdict = {True: "agrees", False: "disagrees", None: "inconclusive"}[c["holds"]]
            out.append(f"| {_cell(c['claim'])} | {verdict} | {_cell(c['criterion'])} | {_cell(c['interval'])} | "
                       f"{_cell(c['text'])} |")
        out.append("")
    return out


def write_gaussian(config: dict) -> tuple[Path, dict] | None:
    """``dpir gaussian``: JSON, Markdown and the P-D figure under ``<out>/gaussian/``."""
    from dpir.atomic import atomic_write_text

    data = compute(config)
    if data is None:
        raise DpirError("config has no 'gaussian:' section; add e.g. gaussian: {size: 32, degradations: [sr4, blur]}")
    out = gaussian_json(config)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = pd_figure(data, out.with_name("pd_plane.png"))
    atomic_write_text(out.with_suffix(".md"), markdown(data, fig.name) + "\n")
    atomic_write_text(out, json.dumps(data, indent=1) + "\n")
    return out, data


def read_gaussian(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise DpirError(f"{path} is not a readable Gaussian-world section ({e}); rerun `dpir gaussian`") from None


def section(config: dict, report_dir: Path) -> list[str]:
    """The report's lines: nothing without a ``gaussian:`` section or before ``dpir gaussian`` ran."""
    import os

    if not config.get("gaussian"):
        return []
    path = gaussian_json(config)
    data = read_gaussian(path)
    if data is None:
        return []
    fig = path.with_name("pd_plane.png")
    rel = os.path.relpath(fig, report_dir) if fig.exists() else None
    return ["## Exact Gaussian world", "", markdown(data, rel), ""]
