"""Time-evolution benchmark: time, peak memory and error of ``fp.evolve`` against a plain scipy reference and
the peer package fplanck, on the Ornstein-Uhlenbeck problems of ``_common.py``.

From the Gaussian ``N(m0, 0.09 I)`` (sampled at the cell centres, the same vector for every solver) to
``t = 1``; the exact answer is Gaussian with mean ``e^{-At} m0`` and covariance
``S(t) = S_inf + e^{-At} (S0 - S_inf) e^{-A^T t}``.

Solvers:

* ``ours``: ``fp.evolve(prob, p0, 1.0, n_save=2, dt=0.01, scheme="tr-bdf2")`` (100 steps; one sparse LU in 2D,
iterative stage solves in 3D).
  ``factor/setup`` is the sparse LU of ``I - gamma dt/2 A`` timed separately.
* ``ours-expm``: ``scheme="expm"`` (``scipy.sparse.linalg.expm_multiply`` on our generator).
* ``scipy-fd-cn``: the textbook centred finite-volume generator (scipy.sparse), Crank-Nicolson with the same
  100 steps, one ``splu``.
* ``scipy-fd-expm``: the same generator, ``expm_multiply``.
* ``fplanck``: ``fokker_planck(...).propagate(p0, 1.0)`` (its assembly, then ``expm_multiply``), ``ou-iso``
  only.
* ``fipy`` (optional, ``pip install fipy``; scipy solver suite): ``TransientTerm() == DiffusionTerm(D) -
  ExponentialConvectionTerm(v)`` (``_common.fipy_operator``), implicit Euler (FiPy's time discretisation),
  the same 100 steps, one ``solve`` per step (FiPy rebuilds and re-solves the matrix every step; the explicit
  tensor cross terms of ``ou-full`` lag one step -- sweeping each step to convergence changed err_cov by 1%
  at 64^2 for 3x the time). Linear solver: FiPy's default ``LinearLUSolver`` in 2D, ``LinearBicgstabSolver`` +
  ``JacobiPreconditioner`` in 3D (its LU: 13 s per step at 32^3 here).
* ``ours-ie``: ``scheme="implicit-euler"``, the same 100 steps: ours with FiPy's time scheme, to separate the
  first-order time error from the spatial one (run where ``fipy`` runs).

``ratio`` = seconds / seconds of ``ours`` on the same problem and grid, same run (> 1: ours is faster).

    python benchmarks/evolve.py            # 2D 128^2..512^2, 3D 32^3, 40^3 (a subset, ~4 min)
    python benchmarks/evolve.py --quick    # 2D 128^2, 3D 32^3 (ours)        (~1 min, half of it FiPy)
    python benchmarks/evolve.py --full     # + 1024^2, 64^3, 128^3 (long)

``--no-fplanck`` / ``--no-fipy`` drop those peers; FiPy rows are skipped with a note when it is not installed.

Writes ``benchmarks/evolve.json``.
"""

from __future__ import annotations

import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

SCRIPT = os.path.abspath(__file__)
N_STEPS = 100
GAMMA = 2.0 - np.sqrt(2.0)


def _p0(d, n):
    return C.gaussian_on_grid(d, n, C.M0[d], C.S0_SCALE * np.eye(d))


def _ours(problem, d, n, scheme, phases):
    import scipy.sparse as sp

    import fokkerplanck as fp
    from fokkerplanck.linalg import LUFactor

    def make(n_):
        g = fp.Grid(C.axes_of(d, n_), bc="reflecting")
        return fp.Problem(g, fp.landscapes.Quadratic(C.A_MAT[d]), fp.noise.Constant(C.diffusion(problem, d)))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fp.evolve(make(8), _p0(d, 8), C.T_END, n_save=2, dt=C.T_END / 4, scheme=scheme, progress=False)
        rss0 = C.peak_rss_mb()
        prob = make(n)
        p0 = _p0(d, n)
        t0 = time.perf_counter()
        gen = fp.generator(prob)
        t1 = time.perf_counter()
        kw = {} if scheme == "expm" else {"dt": C.T_END / N_STEPS}
        traj = fp.evolve(prob, p0, C.T_END, n_save=2, scheme=scheme, progress=False, **kw)
        t2 = time.perf_counter()
    out = {
        "seconds": t2 - t0,
        "assembly": t1 - t0,
        "solve": t2 - t1,
        "steps": traj.info.get("steps"),
        "p": traj.final.values if hasattr(traj, "final") else traj[-1].values,
    }
    if phases and scheme != "expm":
        A = gen.A
        t = time.perf_counter()
        lu = LUFactor(
            sp.identity(A.shape[0], format="csr") - (GAMMA * C.T_END / N_STEPS / 2) * A, grid_shape=gen.grid.shape
        )  # the factorisation fp.evolve makes
        out["ph_factor"] = time.perf_counter() - t
        x = np.asarray(p0, float).ravel()
        lu.solve(x)
        t = time.perf_counter()
        for _ in range(5):
            lu.solve(x)
        out["ph_trisolve"] = (time.perf_counter() - t) / 5 * 2 * N_STEPS  # estimate: 2 solves per step
        out["lu_nnz"] = lu.nnz
    out["rss_delta_mb"] = C.peak_rss_mb() - rss0
    return out


def _scipy_fd(problem, d, n, scheme):
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    rss0 = C.peak_rss_mb()
    p = _p0(d, n).ravel()
    t0 = time.perf_counter()
    G = C.fd_generator(problem, d, n)
    t1 = time.perf_counter()
    if scheme == "expm":
        p = spla.expm_multiply(G * C.T_END, p)
        out = {}
    else:  # Crank-Nicolson
        h = C.T_END / N_STEPS
        I = sp.identity(G.shape[0], format="csc")
        t = time.perf_counter()
        lu = spla.splu((I - (h / 2) * G).tocsc(), permc_spec="COLAMD")
        out = {"ph_factor": time.perf_counter() - t}
        B = (I + (h / 2) * G).tocsr()
        for _ in range(N_STEPS):
            p = lu.solve(B @ p)
    t2 = time.perf_counter()
    out.update(
        {"seconds": t2 - t0, "assembly": t1 - t0, "solve": t2 - t1, "p": p, "rss_delta_mb": C.peak_rss_mb() - rss0}
    )
    return out


def _fplanck(problem, d, n):
    assert problem == "ou-iso", "fplanck has diagonal diffusion only"
    rss0 = C.peak_rss_mb()
    p0 = _p0(d, n)
    t0 = time.perf_counter()
    sim = C.fplanck_solver(d, n)
    t1 = time.perf_counter()
    p = sim.propagate(lambda *x: p0.copy(), C.T_END)
    t2 = time.perf_counter()
    return {"seconds": t2 - t0, "assembly": t1 - t0, "solve": t2 - t1, "p": p, "rss_delta_mb": C.peak_rss_mb() - rss0}


def _fipy_run(F, problem, d, n, n_steps):
    mesh, op = C.fipy_operator(F, problem, d, n)
    var = F.CellVariable(mesh=mesh, value=C.fipy_from_grid(_p0(d, n), d), hasOld=True)
    eq = F.TransientTerm() == op
    if d == 2:
        solver, sname = F.LinearLUSolver(tolerance=1e-12, iterations=10), "lu"
    else:
        solver, sname = (
            F.LinearBicgstabSolver(tolerance=1e-10, iterations=2000, precon=F.JacobiPreconditioner()),
            "bicgstab+jacobi",
        )
    dt = C.T_END / N_STEPS
    for _ in range(n_steps):
        var.updateOld()
        eq.solve(var=var, dt=dt, solver=solver)
    return var, sname


def _fipy(problem, d, n):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        F = C.fipy_import()
        _fipy_run(F, problem, d, 6, 2)  # imports, first-call caches
        rss0 = C.peak_rss_mb()
        t0 = time.perf_counter()
        var, sname = _fipy_run(F, problem, d, n, N_STEPS)
        t1 = time.perf_counter()
    p = C.fipy_to_grid(var.value, d, n)
    return {
        "seconds": t1 - t0,
        "solve": t1 - t0,
        "steps": N_STEPS,
        "method": sname,
        "solver_suite": F.solvers.solver_suite,
        "mass_drift": float(p.sum() - 1.0),
        "p": p,
        "rss_delta_mb": C.peak_rss_mb() - rss0,
    }


def worker(spec):
    problem, d, n, solver = spec["problem"], spec["d"], spec["n"], spec["solver"]
    if solver == "ours":
        out = _ours(problem, d, n, "tr-bdf2", spec.get("phases", False))
    elif solver == "ours-expm":
        out = _ours(problem, d, n, "expm", False)
    elif solver == "ours-ie":
        out = _ours(problem, d, n, "implicit-euler", False)
    elif solver == "scipy-fd-cn":
        out = _scipy_fd(problem, d, n, "cn")
    elif solver == "scipy-fd-expm":
        out = _scipy_fd(problem, d, n, "expm")
    elif solver == "fplanck":
        out = _fplanck(problem, d, n)
    elif solver == "fipy":
        out = _fipy(problem, d, n)
    else:
        raise ValueError(solver)
    C.report(out, d, n, *C.exact_moments(problem, d, C.T_END))


def plan(args):
    sizes = C.grid_sizes(args)
    cases = []
    for d in (2, 3):
        for n in sizes[d]:
            for problem in C.PROBLEMS:
                # in 3D tr-bdf2 solves its stages iteratively (Jacobi-BiCGStab / AMG-GMRES): ~1 s at 32^3; the
                # LU / tri-solve phase columns time a sparse LU, which only the 1D/2D path uses
                cases.append(dict(problem=problem, d=d, n=n, solver="ours", phases=(d == 2 and not args.quick)))
                if args.quick and d == 3:
                    cases.append(dict(problem=problem, d=d, n=n, solver="ours-expm"))
                    if fipy_planned(problem, d, n, args):
                        cases += [dict(problem=problem, d=d, n=n, solver=s) for s in ("ours-ie", "fipy")]
                    continue
                # expm_multiply needs ~||tA||_1 matrix-vector products: > 90 s at 512^2 here
                expm_ok = (d == 2 and n <= (1024 if args.full else 256)) or (d == 3 and n <= 64)
                if expm_ok:
                    cases.append(dict(problem=problem, d=d, n=n, solver="ours-expm"))
                # sparse LU of the 3D reference: 32^3 only (40^3 under --full)
                if (d == 2 and (args.full or n < 512 or problem == "ou-full")) or (d == 3 and args.full and n <= 40):
                    cases.append(dict(problem=problem, d=d, n=n, solver="scipy-fd-cn"))
                if expm_ok:
                    cases.append(dict(problem=problem, d=d, n=n, solver="scipy-fd-expm"))
                if (
                    problem == "ou-iso"
                    and not args.no_fplanck
                    and ((d == 2 and n <= (512 if args.full else 256)) or (d == 3 and n <= (40 if args.full else 32)))
                ):
                    cases.append(dict(problem=problem, d=d, n=n, solver="fplanck"))
                if fipy_planned(problem, d, n, args):
                    cases += [dict(problem=problem, d=d, n=n, solver=s) for s in ("ours-ie", "fipy")]
    return cases


def fipy_planned(problem, d, n, args):
    """FiPy rebuilds and solves its matrix in each of the 100 steps: measured here 2D 128^2 ~11 s, 256^2 ~50 s,
    3D 32^3 ~40 s (ou-iso) / ~60 s (ou-full); 2D 512^2 (~4 min) and 3D 40^3 only under --full."""
    if args.no_fipy or not C.fipy_installed():
        return False
    if args.quick:
        return d == 2 and n <= 128
    return n <= ((1024 if args.full else 256) if d == 2 else (64 if args.full else 32))


NOTES = [
    "fplanck: ou-full not expressible (diagonal, per-axis diffusion only); 3D 40^3 only under --full.",
    "scipy-fd-cn: 3D only under --full (32^3 took 55 s here: sparse LU fill-in); at 512^2 ou-full only by default.",
    "fplanck: 2D <= 256^2 by default (512^2 took > 90 s here: 17 s assembly + expm_multiply).",
    "*-expm (expm_multiply): 2D <= 256^2 by default (512^2 took > 90 s here), <= 64^3 in 3D.",
    "ours (tr-bdf2): one sparse LU of I - gamma dt/2 A in 1D/2D; in 3D iterative stage solves (Jacobi-BiCGStab, "
    "AMG-GMRES for stiff steps), so no fill-in wall.",
    "fipy: implicit Euler, 100 steps, one matrix build + solve per step (2D LU, 3D BiCGSTAB+Jacobi); 2D <= 256^2 "
    "and 3D 32^3 by default, 2D 128^2 only under --quick. ours-ie: ours with the same implicit Euler steps.",
]


def main(argv=None):
    args, rows, t_start = C.run_benchmark(SCRIPT, __doc__, argv, plan, worker, default_timeout=90.0, solver_width=14)
    if rows is None:  # a --worker process: its one case is done
        return
    cols = [
        ("problem", "problem", ""),
        ("grid", C.grid_label, ""),
        ("solver", "solver", ""),
        ("seconds", "seconds", ".3g"),
        ("assembly", "assembly", ".3g"),
        ("solve", "solve", ".3g"),
        ("LU", "ph_factor", ".3g"),
        ("tri-solves~", "ph_trisolve", ".3g"),
        ("err_cov", "err_cov", ".2e"),
        ("err_mean", "err_mean", ".2e"),
        ("err_L1", "err_L1", ".2e"),
        ("min/max", "min_value", ".1e"),
        ("peak MB", "peak_rss_mb", ".0f"),
        ("ratio", "ratio", ".3g"),
        ("status", lambda r: "" if r["status"] == "ok" else r["status"], ""),
    ]
    table = C.print_table(rows, cols)
    print("\nNotes:\n  " + "\n  ".join(NOTES))
    print(f"\ntotal wall time {time.perf_counter() - t_start:.0f} s")
    C.write_json("evolve", args, rows, table, t_end=C.T_END, steps=N_STEPS, notes=NOTES)


if __name__ == "__main__":
    main()
