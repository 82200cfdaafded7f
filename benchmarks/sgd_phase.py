"""Quick PRL Fig. 5 check: random-shift minibatch SGD (Eq. 7, linear shift) on the 2D degenerate valley.

Landscape ``DegenerateValley(lambdas=(8, -2, 1), eps=1e-3)``: global minimum ``x* = 0`` (lambda = 8), flattest
solutions ``x_F = +-1`` (lambda = 7). Start at (1.5, 1.5). For each (eta, sigma) we report, over the particles
that did not diverge, ``<|x|>`` averaged over the last quarter of the run, and the diverged fraction. Expected
(PRL Fig. 5b): ``<|x|> ~ 0`` for ``Delta_S = eta sigma`` below ``Delta_S* = -eps / lambda_1 = 5e-4``,
``|x|`` moving toward ``x_F = 1`` above it, and divergence for large eta, sigma (``eta <lambda> > 2``). The flat
direction relaxes slowly (rate ``eps lambda_0 = 0.008`` at sigma = 0, slower still near ``Delta_S*``), so short
runs are not converged near the boundary.

    python benchmarks/sgd_phase.py [--particles 1000] [--time 400] [--shift linear]

Writes ``benchmarks/sgd_phase.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fokkerplanck import landscapes  # noqa: E402
from fokkerplanck.particles import simulate  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--particles", type=int, default=1000)
    ap.add_argument("--time", type=float, default=400.0, help="simulated time eta * steps per point")
    ap.add_argument("--etas", type=float, nargs="+", default=[0.01, 0.04, 0.1, 0.2, 0.3])
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2])
    ap.add_argument("--shift", default="linear", choices=["linear", "exact"])
    args = ap.parse_args(argv)
    land = landscapes.DegenerateValley(lambdas=(8.0, -2.0, 1.0), eps=1e-3)
    rows = []
    t0 = time.perf_counter()
    print(f"{'eta':>6s} {'sigma':>6s} {'Delta_S':>9s} {'<|x|>':>7s} {'<|y|>':>8s} {'diverged':>9s}")
    for eta in args.etas:
        for sigma in args.sigmas:
            n_steps = int(round(args.time / eta))
            rec = max(1, n_steps // 20)
            ens = simulate(
                land,
                method="sgd",
                n_particles=args.particles,
                theta0=[1.5, 1.5],
                eta=eta,
                sigma=sigma,
                n_steps=n_steps,
                seed=0,
                record_every=rec,
                shift=args.shift,
            )
            tail = ens.times >= 0.75 * ens.time
            ma = ens.stats["mean_abs"][tail]
            mx = float(np.nanmean(ma[:, 0])) if np.any(np.isfinite(ma)) else float("nan")
            my = float(np.nanmean(ma[:, 1])) if np.any(np.isfinite(ma)) else float("nan")
            div = float(ens.diverged.mean())
            rows.append(
                {
                    "eta": eta,
                    "sigma": sigma,
                    "delta_s": eta * sigma,
                    "mean_abs_x": mx,
                    "mean_abs_y": my,
                    "diverged": div,
                    "n_steps": n_steps,
                }
            )
            print(f"{eta:6.3f} {sigma:6.3f} {eta * sigma:9.2e} {mx:7.3f} {my:8.2e} {div:9.3f}")
    wall = time.perf_counter() - t0
    print(f"({args.particles} particles per point, t = {args.time:g} per point, shift={args.shift}, {wall:.1f} s)")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sgd_phase.json")
    with open(path, "w") as f:
        json.dump(
            {
                "landscape": land.params(),
                "theta0": [1.5, 1.5],
                "particles": args.particles,
                "time": args.time,
                "shift": args.shift,
                "delta_s_star": 5e-4,
                "rows": rows,
                "wall_s": wall,
            },
            f,
            indent=2,
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
