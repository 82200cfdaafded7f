"""Wall time of a >= 100-point sweep: serial loop vs a Dask LocalCluster, in the same run.

Two point functions: a cheap analytic one (measures the per-point overhead of the scheduler) and a small
Fokker-Planck steady state (``prl_steady_point`` on a 40 x 28 grid, ~0.1 s a point: where the cluster should
pay off). Prints a table and writes ``benchmarks/sweep_scaling.json`` (gitignored).

    python benchmarks/sweep_scaling.py [--points N] [--workers W]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from fokkerplanck.sweep import dask_available, prl_steady_point, sweep  # noqa: E402


def analytic(a: float, b: float) -> dict:
    s = 0.0
    for k in range(2000):  # ~1 ms of Python work
        s += math.sin(a * k + b)
    return {"s": s}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=100)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args(argv)
    n = max(100, args.points)
    side = int(math.ceil(math.sqrt(n)))
    cases = {
        "analytic (~1 ms/pt)": (
            analytic,
            {"a": [0.01 * i for i in range(side)], "b": [0.1 * j for j in range(side)]},
            {},
        ),
        "FP steady 40x28 (prl_steady_point)": (
            prl_steady_point,
            {"delta_s": [1e-4 * (1 + i) for i in range(n)]},
            {"cells": [40, 28]},
        ),
    }
    rows = []
    for name, (f, grid, fixed) in cases.items():
        npts = math.prod(len(v) for v in grid.values())
        t = time.perf_counter()
        ser = sweep(f, grid, scheduler="serial", fixed=fixed)
        t_ser = time.perf_counter() - t
        row = {"case": name, "points": npts, "serial_s": t_ser, "dask_s": None, "speedup": None, "identical": None}
        if dask_available():
            t = time.perf_counter()
            par = sweep(f, grid, scheduler="local", n_workers=args.workers, fixed=fixed)
            row["dask_s"] = time.perf_counter() - t
            row["speedup"] = t_ser / row["dask_s"]
            row["scheduler"] = par.info["scheduler"]
            strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
            row["identical"] = strip(par.rows) == strip(ser.rows)
        rows.append(row)
    print(f"{'case':40s} {'points':>6s} {'serial s':>9s} {'dask s':>9s} {'speedup':>8s}  identical")
    for r in rows:
        d = "n/a" if r["dask_s"] is None else f"{r['dask_s']:.2f}"
        sp = "n/a" if r["speedup"] is None else f"{r['speedup']:.2f}"
        print(f"{r['case']:40s} {r['points']:6d} {r['serial_s']:9.2f} {d:>9s} {sp:>8s}  {r['identical']}")
    doc = {
        "rows": rows,
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "dask": dask_available(),
        "note": "dask_s includes starting and stopping the LocalCluster",
    }
    with open(os.path.join(HERE, "sweep_scaling.json"), "w") as fh:
        json.dump(doc, fh, indent=2)
    return doc


if __name__ == "__main__":
    main()
