"""Steady-state benchmark: time, peak memory and error of ``fp.steady_state`` against a plain scipy
reference and the peer package fplanck, on the Ornstein-Uhlenbeck problems of ``_common.py``.

Problems (drift ``-A theta``, ``A`` symmetric, domain ``[-5, 5]^d``, reflecting walls):

* ``ou-full``: constant full (off-diagonal) ``D``; exact stationary covariance from ``A S + S A^T = 2D``.
* ``ou-iso``: ``D = T I``; exact answer the Boltzmann density ``exp(-L/T)`` (fplanck can only express this one).

Solvers:

* ``ours``: ``fp.steady_state(prob, method="auto")``; ``seconds`` = assembly (``fp.generator``) + solve.
  The phase columns split the solve further (sparse LU factorisation vs triangular solves, or AMG setup vs
  GMRES), measured in a second, separate solve of the same pinned system. On ``ou-iso`` "auto" recognises
  detailed balance and returns ``exp(-L/T)`` (the scheme's exact discrete steady state) without a solve.
* ``ours-direct``: ``method="direct"`` (inverse iteration, one sparse LU): ``ou-iso`` in 2D, and 3D 32^3.
* ``scipy-fd``: the textbook centred finite-volume scheme assembled with ``scipy.sparse`` (Kronecker products),
  one cell pinned, solved by ``scipy.sparse.linalg.spsolve`` (SuperLU, COLAMD).
* ``fplanck``: ``fplanck.fokker_planck(...).steady_state()`` (its Python-loop assembly, then ARPACK
  shift-invert ``eigs`` at sigma=0), ``ou-iso`` only.
* ``fipy`` (optional, ``pip install fipy``; scipy solver suite): ``DiffusionTerm(D) -
  ExponentialConvectionTerm(v)`` on a ``Grid2D``/``Grid3D`` (``_common.fipy_operator``), the centre cell pinned
  by an ``ImplicitSourceTerm`` (FiPy's recipe for a fixed interior value), normalised afterwards. ``ou-iso``:
  one solve; ``ou-full``: FiPy's tensor cross terms are explicit, so the pinned equation is swept until its
  residual drops 1e-8 below the first one. Linear solver: FiPy's default ``LinearLUSolver`` in 2D,
  ``LinearBicgstabSolver`` + ``ILUPreconditioner`` in 3D (its LU takes 15 s per solve at 32^3 here).

Every case runs in its own interpreter (peak RSS from ``getrusage``; a timeout skips a case with a note).
``ratio`` = seconds / seconds of ours on the same problem and grid, measured in the same run (> 1: ours is
faster). The machine is shared and noisy: read the ratios, not the absolute times.

    python benchmarks/steady_state.py            # 2D 128^2..512^2, 3D 32^3, 40^3   (~4-5 min)
    python benchmarks/steady_state.py --quick    # 2D 128^2, 3D 32^3                (~30 s)
    python benchmarks/steady_state.py --full     # + 1024^2, 64^3, 128^3, fplanck at 40^3 (long)

``--no-fplanck`` / ``--no-fipy`` drop those peers; FiPy rows are skipped with a note when it is not installed.

Writes ``benchmarks/steady_state.json``.
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


# --- one case (runs in a fresh interpreter) ----------------------------------------------------------------
def _ours(problem, d, n, method, phases, lu=None):
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    import fokkerplanck as fp

    if lu is not None:
        fp.linalg.set_lu_backend(lu)

    def make(n_):
        g = fp.Grid(C.axes_of(d, n_), bc="reflecting")
        return fp.Problem(g, fp.landscapes.Quadratic(C.A_MAT[d]), fp.noise.Constant(C.diffusion(problem, d)))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fp.steady_state(make(8), method=method)  # load / compile the numba kernels
        rss0 = C.peak_rss_mb()
        prob = make(n)
        t0 = time.perf_counter()
        gen = fp.generator(prob)
        t1 = time.perf_counter()
        ss = fp.steady_state(prob, method=method)
        t2 = time.perf_counter()
    out = {
        "seconds": t2 - t0,
        "assembly": t1 - t0,
        "solve": t2 - t1,
        "method": ss.info.get("method") + (f" ({ss.info['lu']})" if ss.info.get("lu") else ""),
        "residual": ss.info.get("residual"),
        "iterations": ss.info.get("iterations"),
        "nnz": gen.info.get("nnz"),
        "p": ss.values,
    }
    if phases:
        try:
            from fokkerplanck import steady as S

            if ss.info["method"] == "direct":
                # the direct path: inverse iteration with eps I - A, one LU (as in fokkerplanck.steady)
                from fokkerplanck.linalg import LUFactor

                eps = 1e-12 * np.max(np.abs(gen.A.diagonal()))
                t = time.perf_counter()
                lu = LUFactor(sp.identity(gen.A.shape[0], format="csr") * eps - gen.A, grid_shape=gen.grid.shape)
                out["ph_factor"] = time.perf_counter() - t
                t = time.perf_counter()
                lu.solve(np.ones(gen.A.shape[0]))
                out["ph_trisolve"] = time.perf_counter() - t
                out["lu_nnz"] = lu.nnz
            else:
                import pyamg

                M, b = S._pinned_system(gen.A, int(ss.info["pinned_cell"]))
                t = time.perf_counter()
                ml = pyamg.ruge_stuben_solver((-M).tocsr(), max_coarse=300)
                out["ph_factor"] = time.perf_counter() - t  # AMG setup
                pre = ml.aspreconditioner(cycle="V")
                t = time.perf_counter()
                spla.gmres(-M, -b, x0=np.ones(M.shape[0]), rtol=1e-10, atol=0.0, restart=60, maxiter=500, M=pre)
                out["ph_trisolve"] = time.perf_counter() - t  # GMRES iterations
                out["amg_levels"] = len(ml.levels)
        except Exception as exc:  # private helpers may change; the phases are a diagnostic only
            out["phases_error"] = repr(exc)[:200]
    out["rss_delta_mb"] = C.peak_rss_mb() - rss0
    return out


def _scipy_fd(problem, d, n):
    import scipy.sparse.linalg as spla

    rss0 = C.peak_rss_mb()
    t0 = time.perf_counter()
    G = C.fd_generator(problem, d, n)
    N = G.shape[0]
    r = int(np.ravel_multi_index((n // 2,) * d, (n,) * d))
    # pin p_r = 1: replace row r by the unit row (a dense normalisation row would ruin the LU fill)
    G = G.tolil()
    G.rows[r] = [r]
    G.data[r] = [1.0]
    M = G.tocsc()
    b = np.zeros(N)
    b[r] = 1.0
    t1 = time.perf_counter()
    p = spla.spsolve(M, b)
    t2 = time.perf_counter()
    return {
        "seconds": t2 - t0,
        "assembly": t1 - t0,
        "solve": t2 - t1,
        "nnz": int(M.nnz),
        "p": p,
        "rss_delta_mb": C.peak_rss_mb() - rss0,
    }


def _fplanck(problem, d, n):
    assert problem == "ou-iso", "fplanck has diagonal diffusion only"
    rss0 = C.peak_rss_mb()
    t0 = time.perf_counter()
    sim = C.fplanck_solver(d, n)
    t1 = time.perf_counter()
    p = sim.steady_state()
    t2 = time.perf_counter()
    return {
        "seconds": t2 - t0,
        "assembly": t1 - t0,
        "solve": t2 - t1,
        "nnz": int(sim.master_matrix.nnz),
        "p": p,
        "rss_delta_mb": C.peak_rss_mb() - rss0,
    }


def _fipy_steady(F, problem, d, n, tol=1e-8, max_sweeps=200):
    mesh, op = C.fipy_operator(F, problem, d, n)
    N = mesh.numberOfCells
    var = F.CellVariable(mesh=mesh, value=1.0 / N)
    r = int(np.ravel_multi_index((n // 2,) * d, (n,) * d, order="F"))  # the centre cell, as scipy-fd
    mask = F.CellVariable(mesh=mesh, value=0.0)
    mask[r] = 1.0
    h = 2 * C.HALF_WIDTH / n
    c = 2 * d * float(np.max(np.diag(C.diffusion(problem, d)))) / h**2  # ~ the diffusion diagonal
    eq = op - F.ImplicitSourceTerm(coeff=c * mask) + c * mask * (1.0 / N)
    if d == 2:
        solver, sname = F.LinearLUSolver(tolerance=1e-12, iterations=10), "lu"
    else:
        solver, sname = (
            F.LinearBicgstabSolver(tolerance=1e-10, iterations=2000, precon=F.ILUPreconditioner()),
            "bicgstab+ilu",
        )
    res = []
    for _k in range(1 if problem == "ou-iso" else max_sweeps):
        res.append(float(eq.sweep(var=var, solver=solver)))
        if len(res) > 1 and res[-1] < tol * res[0]:
            break
    return var, {
        "sweeps": len(res),
        "residual": res[-1] / res[0] if len(res) > 1 else None,
        "method": f"{sname}, {len(res)} sweep" + ("s" if len(res) > 1 else ""),
    }


def _fipy(problem, d, n):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        F = C.fipy_import()
        _fipy_steady(F, problem, d, 6)  # imports, first-call caches
        rss0 = C.peak_rss_mb()
        t0 = time.perf_counter()
        var, info = _fipy_steady(F, problem, d, n)
        t1 = time.perf_counter()
    # FiPy builds (Python, vectorised numpy) and solves the matrix inside every sweep: no separate assembly
    return {
        "seconds": t1 - t0,
        "solve": t1 - t0,
        **info,
        "solver_suite": F.solvers.solver_suite,
        "p": C.fipy_to_grid(var.value, d, n),
        "rss_delta_mb": C.peak_rss_mb() - rss0,
    }


def worker(spec):
    problem, d, n, solver = spec["problem"], spec["d"], spec["n"], spec["solver"]
    if solver == "ours":
        out = _ours(problem, d, n, "auto", spec.get("phases", False))
    elif solver == "ours-direct":
        out = _ours(problem, d, n, "direct", spec.get("phases", False))
    elif solver == "ours-superlu":
        out = _ours(problem, d, n, "direct", False, lu="superlu")
    elif solver == "scipy-fd":
        out = _scipy_fd(problem, d, n)
    elif solver == "fplanck":
        out = _fplanck(problem, d, n)
    elif solver == "fipy":
        out = _fipy(problem, d, n)
    else:
        raise ValueError(solver)
    C.report(out, d, n, np.zeros(d), C.stationary_cov(problem, d))


# --- the driver -------------------------------------------------------------------------------------------
def plan(args):
    sizes = C.grid_sizes(args)
    cases = []
    for d in (2, 3):
        for n in sizes[d]:
            for problem in C.PROBLEMS:
                cases.append(dict(problem=problem, d=d, n=n, solver="ours", phases=(problem == "ou-full")))
                # ou-iso: "auto" returns the exact Boltzmann weights (detailed balance, no solve); ours-direct
                # shows the sparse LU it skips. 3D 32^3: why "auto" picks the iterative solver in 3D.
                if (d == 3 and n <= 32 and not args.quick) or (d == 2 and problem == "ou-iso"):
                    cases.append(dict(problem=problem, d=d, n=n, solver="ours-direct", phases=False))
                # with PARDISO installed, the single-threaded SuperLU path it replaces
                if d == 2 and problem == "ou-full" and pardiso_available() and n <= 512:
                    cases.append(dict(problem=problem, d=d, n=n, solver="ours-superlu", phases=False))
                # plain scipy: the sparse LU of the 3D reference grows too fast (32^3: ~50 s here)
                if d == 2 or (not args.quick and n <= (40 if args.full else 32)):
                    cases.append(dict(problem=problem, d=d, n=n, solver="scipy-fd"))
                if problem == "ou-iso" and fplanck_planned(d, n, args):
                    cases.append(dict(problem=problem, d=d, n=n, solver="fplanck"))
                if fipy_planned(problem, d, n, args):
                    cases.append(dict(problem=problem, d=d, n=n, solver="fipy"))
    return cases


def pardiso_available():
    from fokkerplanck.linalg import lu_backend

    return lu_backend() == "pardiso"


def fipy_planned(problem, d, n, args):
    """FiPy measured here: ou-iso is one solve (2D 512^2 5 s, 3D 40^3 7 s); ou-full needs ~20 sweeps, each a
    full matrix build + solve (2D 256^2 22 s, 3D 32^3 ~50 s): ou-full 2D 512^2 and 3D 40^3 only under --full."""
    if args.no_fipy or not C.fipy_installed():
        return False
    if args.quick:
        return n <= (128 if d == 2 else 32) and (d == 2 or problem == "ou-iso")
    if args.full:
        return n <= (1024 if d == 2 else 64)
    if problem == "ou-iso":
        return n <= (512 if d == 2 else 40)
    return n <= (256 if d == 2 else 32)


def fplanck_planned(d, n, args):
    """fplanck's cost (its Python assembly loop + shift-invert eigs) measured here: 2D 256^2 ~8 s,
    512^2 ~1 min, 3D 32^3 ~130 s, 40^3 ~460 s (the issue). Above ~60 s it runs only under --full."""
    if args.no_fplanck:
        return False
    if d == 2:
        return n <= (128 if args.quick else 512)
    return args.full and n <= 40


SKIP_NOTES = [
    "fplanck: ou-full not expressible (fplanck has diagonal, per-axis diffusion only).",
    "fplanck: 3D runs only under --full (32^3 took 132 s here; the issue quotes ~460 s at 40^3); "
    "2D 1024^2 and 3D >= 64^3 never (minutes to hours).",
    "scipy-fd: 3D above 32^3 (40^3 under --full) skipped: SuperLU fill-in of the 3D 19-point stencil (32^3: ~50 s).",
    "ours on ou-iso: method 'auto' recognises detailed balance (landscape + isotropic constant noise) and "
    "returns the exact discrete steady state exp(-L/T) after checking A p = 0, without a solve; ours-direct is "
    "the sparse LU solve it skips (2D), and in 3D (32^3 only) shows why 'auto' otherwise picks the iterative solver.",
    "fipy: steady state by pinning the centre cell (ImplicitSourceTerm) and sweeping (explicit tensor cross "
    "terms); seconds include FiPy's matrix build in every sweep; 2D LU, 3D BiCGSTAB+ILU. ou-full (~20 sweeps) "
    "skipped at 2D 512^2 and 3D 40^3 by default (run under --full) and in 3D under --quick.",
]


def main(argv=None):
    args, rows, t_start = C.run_benchmark(SCRIPT, __doc__, argv, plan, worker, default_timeout=150.0, solver_width=12)
    if rows is None:  # a --worker process: its one case is done
        return
    cols = [
        ("problem", "problem", ""),
        ("grid", C.grid_label, ""),
        ("solver", "solver", ""),
        ("seconds", "seconds", ".3g"),
        ("assembly", "assembly", ".3g"),
        ("solve", "solve", ".3g"),
        ("factor/setup", "ph_factor", ".3g"),
        ("tri/krylov", "ph_trisolve", ".3g"),
        ("err_cov", "err_cov", ".2e"),
        ("err_L1", "err_L1", ".2e"),
        ("min/max", "min_value", ".1e"),
        ("peak MB", "peak_rss_mb", ".0f"),
        ("ratio", "ratio", ".3g"),
        ("status", lambda r: r["status"] if r["status"] != "ok" else (r.get("method") or ""), ""),
    ]
    table = C.print_table(rows, cols)
    targets = check_targets(rows)
    print("\nTargets (issue 2):")
    for t in targets:
        print(f"  [{t['verdict']}] {t['target']}: {t['measured']}")
    print("\nNotes:\n  " + "\n  ".join(SKIP_NOTES))
    print(f"\ntotal wall time {time.perf_counter() - t_start:.0f} s")
    C.write_json("steady_state", args, rows, table, targets=targets, notes=SKIP_NOTES)


def _get(rows, problem, d, n, solver):
    for r in rows:
        if (r["problem"], r["d"], r["n"], r["solver"]) == (problem, d, n, solver) and r["status"] == "ok":
            return r
    return None


def check_targets(rows):
    res = []

    def add(target, ok, measured):
        res.append(
            {
                "target": target,
                "verdict": "not run" if ok is None else ("MET" if ok else "NOT MET"),
                "measured": measured,
            }
        )

    for problem in C.PROBLEMS:
        r = _get(rows, problem, 2, 512, "ours")
        add(
            f"2D 512^2 {problem} under 1 s",
            None if r is None else r["seconds"] < 1.0,
            "-" if r is None else f"{r['seconds']:.2f} s (assembly {r['assembly']:.2f} s, solve {r['solve']:.2f} s)",
        )
    f = _get(rows, "ou-iso", 2, 512, "fplanck")
    for solver, how in (("ours", "auto: detailed balance, no solve"), ("ours-direct", "solved by sparse LU")):
        r = _get(rows, "ou-iso", 2, 512, solver)
        add(
            f">= 20x faster than fplanck at 2D 512^2 ({how})",
            None if (r is None or f is None) else f["seconds"] / r["seconds"] >= 20,
            "-"
            if (r is None or f is None)
            else f"{f['seconds'] / r['seconds']:.1f}x (fplanck {f['seconds']:.1f} s, ours {r['seconds']:.2f} s)",
        )
    for problem in C.PROBLEMS:
        r = _get(rows, problem, 3, 40, "ours")
        add(
            f"3D 40^3 {problem} under 3 s",
            None if r is None else r["seconds"] < 3.0,
            "-" if r is None else f"{r['seconds']:.2f} s (assembly {r['assembly']:.2f} s, solve {r['solve']:.2f} s)",
        )
    for problem in C.PROBLEMS:
        r = _get(rows, problem, 3, 128, "ours")
        add(
            f"3D 128^3 {problem} under 60 s and 8 GB",
            None if r is None else (r["seconds"] < 60 and r["peak_rss_mb"] < 8192),
            "-" if r is None else f"{r['seconds']:.1f} s, peak {r['peak_rss_mb'] / 1024:.2f} GB",
        )
    return res


if __name__ == "__main__":
    main()
