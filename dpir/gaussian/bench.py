"""Build a world, its oracles and every sampler law, timed; print the perception-distortion table.

``python -m dpir.gaussian.bench [--size 32] [--task sr]``: the cost figure of the package (the
issue's budget is 5 extra minutes in the default main job) and a first look at where DP-IR's exact
samplers sit relative to Freirich et al.'s bound.
"""
from __future__ import annotations

import argparse
import math
import time

#: the sampler rows timed and tabulated: the paper's settings and the ablation's tau grid
SAMPLERS = (("full", 1000, None, "beta"), ("jump", 250, None, "beta"), ("jump", 250, None, "posterior"),
            ("jump", 250, 5, "beta"), ("jump", 100, None, "beta"), ("jump", 50, None, "beta"),
            ("jump", 20, None, "beta"), ("noised_start", 250, None, "beta"))


def run(size: int = 32, task: str = "sr", noise: float = 0.01) -> dict:
    """Times (seconds) and (P, D) per pixel of each sampler of :data:`SAMPLERS`, the MMSE estimator and
    the posterior sampler; ``bound`` is D(P) at each row's P; ``w2_posterior`` the W2 distance of the
    output law given one observation from the exact posterior p(x0 | y), per pixel."""
    import torch

    from dpir.diffusion.schedule import linear_schedule
    from dpir.gaussian import laws, oracles, w2, world

    kw = {"size": size, "task": task, "noise": noise}
    t0 = time.perf_counter()
    world.fitted_prior(size)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    ir, den, fus = oracles.GaussianIR(**kw), oracles.GaussianDenoiser(**kw), oracles.GaussianFusion(**kw)
    w = ir.world
    t_world = time.perf_counter() - t0
    schedule = linear_schedule()
    t0 = time.perf_counter()
    marg = laws.Marginals(w)
    mmse_pt, post_pt = marg.mmse_point(), marg.posterior_point()
    points = [marg.sampler_point(schedule, laws.Sampler(mode, tau, stride, var))
              for mode, tau, stride, var in SAMPLERS]
    y = w.observe(w.sample(8, 0), torch.Generator().manual_seed(0))
    # W2 given y: the MMSE estimator is a point mass at E[x0|y] (W2 = sqrt(MMSE)), the posterior sampler 0
    given_y = [math.sqrt(w.mmse()), 0.0] + [laws.conditional_law(w, schedule, laws.Sampler(mode, tau, stride, var), y[0]).w2_to_posterior()
                             for mode, tau, stride, var in SAMPLERS]
    t_laws = time.perf_counter() - t0
    pix = 3 * size * size
    rows = []
    for pt, wy in zip((mmse_pt, post_pt, *points), given_y):
        rows.append({"label": pt.label, "P": pt.perception / math.sqrt(pix), "D": pt.distortion / pix,
                     "bound": w2.pd_bound(pt.perception, w.mmse(), mmse_pt.perception) / pix,
                     "w2_posterior": wy / math.sqrt(pix)})
    # one exact oracle call pattern of a reverse step on a batch of 8, for the per-step cost
    t0 = time.perf_counter()
    x0 = ir(y)
    for t in range(250, 240, -1):
        s = torch.full((8,), float(schedule.sigma_tilde(t)), dtype=torch.float64)
        fus(x0, den(x0, s), torch.full((8,), t))
    t_step = (time.perf_counter() - t0) / 10
    return {"fit_s": t_fit, "world_s": t_world, "laws_s": t_laws, "step_batch8_s": t_step, "rows": rows,
            "mmse_per_pixel": w.mmse() / pix, "w0_per_pixel": mmse_pt.perception / math.sqrt(pix)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--task", default="sr")
    ap.add_argument("--noise", type=float, default=0.01)
    a = ap.parse_args(argv)
    r = run(a.size, a.task, a.noise)
    print(f"fit {r['fit_s']:.2f} s, world + oracles {r['world_s']:.2f} s, marginal laws of "
          f"{len(SAMPLERS) + 2} estimators {r['laws_s']:.2f} s, one oracle step (batch 8) {r['step_batch8_s']*1e3:.1f} ms")
    print(f"MMSE per pixel {r['mmse_per_pixel']:.6g}, W0 per pixel (W2 / sqrt(pixels)) {r['w0_per_pixel']:.6g}")
    print("P = W2(law of x_hat, prior), D = E|x0 - x_hat|^2, W2|y = W2(law of x_hat given y, p(x0|y)) for one y; "
          "all per pixel (W2 / sqrt(pixels), D / pixels)")
    print(f"{'estimator':42s} {'P':>10s} {'D':>12s} {'D(P) bound':>12s} {'W2|y':>10s}")
    for row in r["rows"]:
        wy = f"{row['w2_posterior']:.5f}"
        print(f"{row['label']:42s} {row['P']:10.5f} {row['D']:12.7f} {row['bound']:12.7f} {wy:>10s}")


if __name__ == "__main__":
    main()
