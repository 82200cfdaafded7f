"""Throughput of the particle simulator: numba Euler-Maruyama vs a vectorised numpy Euler-Maruyama.

The problem is the 2D Ornstein-Uhlenbeck process ``d theta = -A theta dt + sqrt(2D) dW`` with a full
(off-diagonal) constant ``D``. Both simulators take the same number of particles and steps; the table gives
particle-steps per second and their ratio (target: numba >= 5x numpy). A second table compares normal
generators (the counter-based hash + ziggurat used by the simulators, hash + Box-Muller, numba's
``np.random.standard_normal``, numpy's ``Generator.standard_normal``).

    python benchmarks/sde_throughput.py [--particles 200000] [--steps 200] [--repeat 3]

Writes ``benchmarks/sde_throughput.json`` next to this file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numba  # noqa: E402

from fokkerplanck import _particle_kernels as K  # noqa: E402
from fokkerplanck import landscapes, noise  # noqa: E402
from fokkerplanck.particles import simulate  # noqa: E402

A = np.array([[2.0, 0.5], [0.5, 1.0]])
D = np.array([[0.5, 0.2], [0.2, 0.3]])


def numpy_em(n, n_steps, dt, seed=0):
    """Reference vectorised numpy Euler-Maruyama for the same OU process."""
    rng = np.random.default_rng(seed)
    w, V = np.linalg.eigh(2.0 * D)
    S = (V * np.sqrt(w)) @ V.T * np.sqrt(dt)
    M = (np.eye(2) - dt * A).T
    x = np.zeros((n, 2))
    xi = np.empty((n, 2))
    for _ in range(n_steps):
        rng.standard_normal(out=xi)
        x = x @ M + xi @ S.T
    return x


def best_of(f, repeat):
    best = np.inf
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--particles", type=int, default=200_000)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--dt", type=float, default=1e-3)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    n, m, dt = args.particles, args.steps, args.dt
    land, nz = landscapes.Quadratic(A), noise.Constant(D)

    t = time.perf_counter()
    simulate(land, nz, method="sde", n_particles=10, theta0=[0.0, 0.0], dt=dt, n_steps=2)
    warm = time.perf_counter() - t

    rows = []
    t_np, x_np = best_of(lambda: numpy_em(n, m, dt), args.repeat)
    rows.append(("numpy vectorised EM", t_np, None))
    for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
        numba.set_num_threads(threads)
        t_nb, ens = best_of(
            lambda: simulate(
                land, nz, method="sde", n_particles=n, theta0=[0.0, 0.0], dt=dt, n_steps=m, seed=1, progress=False
            ),
            args.repeat,
        )
        rows.append((f"numba EM, {threads} thread(s)", t_nb, threads))
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)

    work = n * m
    print(f"2D OU, full D, {n} particles x {m} steps (first-call warm-up incl. compile/cache load: {warm:.2f} s)")
    print(f"{'simulator':32s} {'time [s]':>10s} {'Mps/s':>10s} {'vs numpy':>9s}")
    table = []
    for name, tt, threads in rows:
        rate = work / tt
        print(f"{name:32s} {tt:10.3f} {rate / 1e6:10.1f} {t_np / tt:8.1f}x")
        table.append(
            {
                "simulator": name,
                "threads": threads,
                "seconds": tt,
                "particle_steps_per_s": rate,
                "ratio_vs_numpy": t_np / tt,
            }
        )

    # normal generators
    key = np.uint64(K.seed_key(np.uint64(1)))
    per, npart = 2000, max(1000, n // 20)
    for meth in (0, 1, 2):
        K.bench_normals(4, 16, key, meth)
    gens = []
    names = {0: "hash + ziggurat (used)", 1: "hash + Box-Muller", 2: "numba np.random.standard_normal"}
    for meth in (0, 1, 2):
        tt, _ = best_of(lambda: K.bench_normals(per, npart, key, meth), args.repeat)
        gens.append((names[meth], per * npart / tt))
    rng = np.random.default_rng(0)
    buf = np.empty(per * npart // 10)
    tt, _ = best_of(lambda: rng.standard_normal(out=buf), args.repeat)
    gens.append(("numpy Generator (1 thread)", buf.size / tt))
    print(f"\n{'normal generator':34s} {'M normals/s':>12s}  ({numba.config.NUMBA_NUM_THREADS} numba threads)")
    for name, rate in gens:
        print(f"{name:34s} {rate / 1e6:12.1f}")

    out = {
        "problem": "2D OU, A=[[2,0.5],[0.5,1]], D=[[0.5,0.2],[0.2,0.3]]",
        "n_particles": n,
        "n_steps": m,
        "dt": dt,
        "warmup_s": warm,
        "simulators": table,
        "normals_per_s": {name: rate for name, rate in gens},
        "numba_threads": numba.config.NUMBA_NUM_THREADS,
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "numba": numba.__version__,
        "numpy": np.__version__,
        "load_average": os.getloadavg(),
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sde_throughput.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=2)
    print(f"\nwrote {path}")
    return out


if __name__ == "__main__":
    main()
