"""Assembly of the generator on one thread and on all of numba's, and the product ``A P`` with and without ``A``.

For each case the table gives the best of ``--repeat`` runs, all in this process after a warm-up:

* ``build 1T`` / ``build nT``: ``fp.operator.Generator(problem)`` with ``numba.set_num_threads(1)`` and with all
  of numba's threads (``NUMBA_NUM_THREADS``); the jump lists of consecutive ranges of cells are assembled by
  threads, and the matrix is the same bit for bit (checked here too);
* ``A@P``: the sparse product; ``matrix-free``: ``G.apply(P, matrix_free=True)``, the jumps made again a block
  of cells at a time without ``A`` (their largest difference, relative to ``max|A| max P``, is printed);
* ``current``: ``G.current(P)``, which walks the jumps the same way.

Cases: the Ornstein-Uhlenbeck problem with a full constant ``D`` (``ou-full``, as in ``steady_state.py``) in 2D
and 3D, and the PRL Fig. 5 valley with ``D = Delta_S H^2`` (a tensor that changes from cell to cell).

    python benchmarks/assembly.py            # 2D 256^2, 512^2; 3D 32^3, 48^3; PRL 400 x 96, 800 x 192 (~1 min)
    python benchmarks/assembly.py --quick    # the smallest of each
    python benchmarks/assembly.py --full     # + 1024^2 and 64^3

Writes ``benchmarks/assembly.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

import _common as C  # noqa: E402
import numba  # noqa: E402

import fokkerplanck as fp  # noqa: E402


def ou_full(d, n):
    grid = fp.Grid(C.axes_of(d, n), bc="reflecting")
    return fp.Problem(grid, fp.landscapes.Quadratic(C.A_MAT[d]), fp.noise.Constant(C.diffusion("ou-full", d)))


def prl_valley(nx, ny):
    grid = fp.Grid([(-2.0, 2.0, nx), (-0.6, 0.6, ny)], bc="reflecting")
    return fp.Problem(grid, fp.landscapes.DegenerateValley(lambdas=(8, -2, 1), eps=1e-3), fp.noise.HessianAligned(3e-3))


def cases(args):
    out = [("ou-full", f"{n}^2", lambda n=n: ou_full(2, n)) for n in (256, 512, 1024)]
    out += [("ou-full", f"{n}^3", lambda n=n: ou_full(3, n)) for n in (32, 48, 64)]
    out += [("prl-valley", f"{nx}x{ny}", lambda nx=nx, ny=ny: prl_valley(nx, ny)) for nx, ny in ((400, 96), (800, 192))]
    if args.quick:
        keep = {"256^2", "32^3", "400x96"}
    elif args.full:
        keep = {label for _, label, _ in out}
    else:
        keep = {"256^2", "512^2", "32^3", "48^3", "400x96", "800x192"}
    return [c for c in out if c[1] in keep]


def best_of(f, repeat):
    best, out = np.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t)
    return best, out


def build(make, threads):
    numba.set_num_threads(threads)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the PRL valley's cross-diffusion warning
            return fp.operator.Generator(make())
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    threads = numba.config.NUMBA_NUM_THREADS
    t0 = time.perf_counter()
    build(lambda: ou_full(2, 16), 1)  # load / compile the kernels
    build(lambda: ou_full(3, 8), threads).apply(np.ones(512), matrix_free=True)

    rows = []
    for problem, label, make in cases(args):
        t1, G1 = best_of(lambda: build(make, 1), args.repeat)
        tn, Gn = best_of(lambda: build(make, threads), args.repeat)
        same = bool(
            np.array_equal(G1.A.indptr, Gn.A.indptr)
            and np.array_equal(G1.A.indices, Gn.A.indices)
            and np.array_equal(G1.A.data, Gn.A.data)
        )
        P = np.random.default_rng(0).random(Gn.grid.size)
        t_sparse, y = best_of(lambda: Gn.A @ P, args.repeat)
        t_free, y_free = best_of(lambda: Gn.apply(P, matrix_free=True).ravel(), args.repeat)
        t_current, _ = best_of(lambda: Gn.current(P), args.repeat)
        rows.append(
            {
                "problem": problem,
                "grid": label,
                "cells": Gn.grid.size,
                "nnz": int(Gn.A.nnz),
                "build_1_thread": t1,
                "build_threads": tn,
                "threads": threads,
                "build_speedup": t1 / tn,
                "same_matrix": same,
                "product_sparse": t_sparse,
                "product_matrix_free": t_free,
                "matrix_free_slowdown": t_free / t_sparse,
                "current": t_current,
                "matrix_free_error": float(np.abs(y_free - y).max() / (abs(Gn.A).max() * P.max())),
            }
        )
        print(f"  {problem:10s} {label:8s} done", flush=True)

    cols = [
        ("problem", "problem", ""),
        ("grid", "grid", ""),
        ("cells", "cells", "d"),
        ("nnz", "nnz", "d"),
        ("build 1T", "build_1_thread", ".3g"),
        (f"build {threads}T", "build_threads", ".3g"),
        ("speed-up", "build_speedup", ".2f"),
        ("same A", lambda r: "yes" if r["same_matrix"] else "NO", ""),
        ("A@P", "product_sparse", ".3g"),
        ("matrix-free", "product_matrix_free", ".3g"),
        ("ratio", "matrix_free_slowdown", ".3g"),
        ("error", "matrix_free_error", ".1e"),
        ("current", "current", ".3g"),
    ]
    print()
    table = C.print_table(rows, cols)
    print(
        f"\nseconds, best of {args.repeat}; {threads} numba threads; total wall time {time.perf_counter() - t0:.0f} s"
    )
    out = {
        "benchmark": "assembly",
        "mode": "quick" if args.quick else "full" if args.full else "default",
        "machine": C.machine_info(),
        "repeat": args.repeat,
        "rows": rows,
        "table": table,
    }
    path = os.path.join(HERE, "assembly.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1, default=float)
    print(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
