"""Anisotropy benchmark: density error, positivity and time of ``fp.steady_state`` against a textbook
centred finite-difference reference (``scipy.sparse``) and the peer package FiPy, on three 2D stationary
problems with strongly anisotropic, rotated diffusion and an exact stationary density.

Problems (reflecting walls; the exact density is negligible at every wall):

* ``rot-ou``: rotated Ornstein-Uhlenbeck with Hessian-aligned noise. ``A = R(0.3) diag(1, 1/10) R(0.3)^T``
  (anisotropy ``kappa = 10``), drift ``-A theta``, ``D = A^2`` (``delta_s = 1``); exact ``N(0, A)``.
  Box ``[-6, 6]^2``.
* ``nonrev-ou``: non-reversible OU. ``A = [[1, 2], [-0.5, 1.5]]`` (non-normal), constant
  ``D = R(0.6) diag(1, 1/100) R(0.6)^T`` (anisotropy 100); exact ``N(0, S)`` with ``A S + S A^T = 2 D``
  (``scipy.linalg.solve_continuous_lyapunov``). Box half-width ``5.5 sqrt(max diag S)``.
* ``field``: a turning tensor field. ``psi = x^2/2 + y^2 + 0.1 x^4``,
  ``D(theta) = 0.5 R(phi) diag(1, 1/30) R(phi)^T`` with ``phi = 0.8 x + 0.4 y`` (anisotropy 30, principal
  axes turning across the box), Ito drift ``v = -(D + S) grad psi + div D`` with the antisymmetric
  ``S = [[0, 0.5], [-0.5, 0]]`` (non-reversible); exact ``exp(-psi)``. Box ``[-3, 3]^2``.

Solvers (all on the same ``n x n`` cell-centre grid):

* ``ours``: ``fp.steady_state(fp.Problem(...))`` with default arguments. Numba kernels are warmed up on an
  ``8 x 8`` grid of each problem before timing; ``seconds`` = the ``steady_state`` call (assembly + solve).
* ``centred``: the textbook second-order centred finite-difference generator of
  ``dP/dt = sum_ij d_i d_j (D_ij P) - sum_i d_i (v_i P)`` assembled with ``scipy.sparse`` Kronecker products:
  5-point second differences for ``D_ii P``, the 4-corner centred cross difference for ``D_12 P`` and centred
  first differences for ``v_i P``, with ``D``, ``v`` at the cell centres (``problem.diffusion``,
  ``problem.ito_velocity``); outside values are treated as zero (the density is negligible at the walls).
  The centre cell is pinned (its row replaced by the unit row) and the system solved with
  ``scipy.sparse.linalg.spsolve``; negative values are *not* clipped. ``seconds`` = coefficients +
  assembly + solve.
* ``fipy`` (optional; FiPy 4, scipy solver suite): ``Grid2D`` with the same cells,
  ``0 = DiffusionTerm(coeff=(D_face,)) - ExponentialConvectionTerm(coeff=b_face)`` in conservative form,
  ``D_face`` a rank-2 ``FaceVariable`` and ``b = v - div D`` the conservative drift (``div D`` by central
  differences of ``problem.diffusion`` with step 1e-6; zero for the constant-``D`` problems). The centre
  cell is pinned with an ``ImplicitSourceTerm`` (FiPy's recipe for a fixed interior value); FiPy treats the
  tensor cross terms explicitly, so the pinned equation is swept (``LinearLUSolver``) until the residual is
  1e-8 of the first one or 30 sweeps. That fixed-point iteration contracts slowly at these anisotropies
  (measured at 96^2: residual ~1e-4 after 30 sweeps on the OU problems, 1e-8 only after ~80 on
  ``nonrev-ou``); unconverged rows say so in the note (sweeps, residual ratio, last relative change of P).
  Going from 30 to 80 sweeps moved L1 little (``rot-ou`` 96^2: 0.179 -> 0.162; ``nonrev-ou``: unchanged)
  but shrank the negative ``minP/maxP`` by orders of magnitude, so FiPy's ``minP/maxP`` here is partly
  iteration error. At 192^2 the sweeps do not settle (residual ratio grows on ``rot-ou``) and on ``field``
  they diverge (measured: residual 4e-2, last change 0.9, minP/maxP -1.2, L1 0.35): that row reports
  FiPy's unconverged iterate, not a converged FiPy discretisation. ``seconds`` = face coefficients + every
  sweep (FiPy rebuilds the matrix in each). A failure is recorded in the row (L1 = nan, note = the error)
  instead of stopping the run.

Columns: ``L1`` = ``sum |p - exact| * cell_volume`` with both normalised to ``sum(values) * cell_volume = 1``
(cell-centre values of the exact density); ``minP/maxP`` of the computed density (negative: the scheme is
not positive); ``seconds``.

    python benchmarks/anisotropy.py            # n = 48, 96, 192 for every solver  (~35 s on 2 cores here)
    python benchmarks/anisotropy.py --quick    # n = 48, 96              (~10 s)
    python benchmarks/anisotropy.py --no-fipy  # skip FiPy (also skipped, with a note, when not installed)

Writes ``benchmarks/anisotropy.json`` (``--json PATH`` to change).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
import warnings

import numpy as np
import scipy
import scipy.sparse as sp
import scipy.sparse.linalg as spla

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for path in (ROOT, HERE):
    if path not in sys.path:
        sys.path.insert(0, path)

import _common as C  # noqa: E402

import fokkerplanck as fp  # noqa: E402
from fokkerplanck.noise import tensor_divergence  # noqa: E402
from fokkerplanck.theory import invariant_measure_drift, ou_stationary_cov, rotated_tensor  # noqa: E402

PROBLEMS = ("rot-ou", "nonrev-ou", "field")
SOLVERS = ("ours", "centred", "fipy")
FIPY_TOL = 1e-8
FIPY_MAX_SWEEPS = 30


def _gauss(cov):
    prec = np.linalg.inv(cov)
    return lambda pts: np.exp(-0.5 * np.einsum("...i,ij,...j->...", pts, prec, pts))


# --- the problems ----------------------------------------------------------------------------------------
def make_problem(name: str, n: int):
    """``(problem, exact)``: an ``fp.Problem`` on an ``n x n`` grid and the exact (unnormalised) stationary
    density as a function of points ``(..., 2)``."""
    if name == "rot-ou":
        kappa, angle = 10.0, 0.3
        A = rotated_tensor(angle, (1.0, 1.0 / kappa))
        half = 6.0
        grid = fp.Grid([(-half, half, n), (-half, half, n)], bc="reflecting")
        prob = fp.Problem(grid, landscape=fp.landscapes.Quadratic(A), noise=fp.noise.HessianAligned(delta_s=1.0))
        return prob, _gauss(A)
    if name == "nonrev-ou":
        A = np.array([[1.0, 2.0], [-0.5, 1.5]])
        D = rotated_tensor(0.6, (1.0, 1.0 / 100.0))
        S = ou_stationary_cov(A, D)  # A S + S A^T = 2 D
        half = 5.5 * np.sqrt(np.diag(S).max())
        grid = fp.Grid([(-half, half, n), (-half, half, n)], bc="reflecting")
        prob = fp.Problem(grid, drift=lambda th: -th @ A.T, noise=fp.noise.Constant(D))
        return prob, _gauss(S)
    if name == "field":
        aniso, S12 = 30.0, 0.5

        def psi(t):
            x, y = t[..., 0], t[..., 1]
            return 0.5 * x**2 + y**2 + 0.1 * x**4

        def gpsi(t):
            x, y = t[..., 0], t[..., 1]
            return np.stack([x + 0.4 * x**3, 2 * y], -1)

        def Dfun(t):
            return rotated_tensor(0.8 * t[..., 0] + 0.4 * t[..., 1], (0.5, 0.5 / aniso))

        v = invariant_measure_drift(Dfun, gpsi, S=np.array([[0.0, S12], [-S12, 0.0]]))

        grid = fp.Grid([(-3.0, 3.0, n), (-3.0, 3.0, n)], bc="reflecting")
        prob = fp.Problem(grid, drift=v, noise=fp.noise.Field(Dfun))
        return prob, (lambda pts: np.exp(-psi(pts)))
    raise ValueError(name)


def normalised(grid, values):
    p = np.asarray(values, dtype=float).reshape(grid.shape)
    return p / (p.sum() * grid.cell_volume)


def measure(prob, exact, values) -> dict:
    g = prob.grid
    p = normalised(g, values)
    q = normalised(g, exact(g.points().reshape(g.shape + (2,))))
    return {"L1": float(np.abs(p - q).sum() * g.cell_volume), "min_over_max": float(p.min() / p.max())}


# --- solvers ---------------------------------------------------------------------------------------------
def solve_ours(prob):
    t0 = time.perf_counter()
    ss = fp.steady_state(prob)
    dt = time.perf_counter() - t0
    return ss.values, dt, {"method": ss.info.get("method"), "scheme": ss.info.get("scheme", "monotone")}


def centred_generator(prob) -> sp.csr_matrix:
    """``L P = sum_ij d_i d_j (D_ij P) - sum_i d_i (v_i P)``, centred differences, zero values outside."""
    g = prob.grid
    n0, n1 = g.shape
    h0, h1 = g.spacing
    pts = g.points()
    D = prob.diffusion(pts).reshape(-1, 2, 2)
    v = prob.ito_velocity(pts).reshape(-1, 2)

    def d1(n, h):
        e = np.full(n - 1, 0.5 / h)
        return sp.diags([-e, e], [-1, 1], shape=(n, n), format="csr")

    def d2(n, h):
        return (
            sp.diags([np.ones(n - 1), -2 * np.ones(n), np.ones(n - 1)], [-1, 0, 1], shape=(n, n), format="csr") / h**2
        )

    I0, I1 = sp.identity(n0, format="csr"), sp.identity(n1, format="csr")
    Dx, Dy = sp.kron(d1(n0, h0), I1, format="csr"), sp.kron(I0, d1(n1, h1), format="csr")
    Dxx, Dyy = sp.kron(d2(n0, h0), I1, format="csr"), sp.kron(I0, d2(n1, h1), format="csr")
    Dxy = Dx @ Dy  # the 4-corner centred cross difference
    diag = sp.diags
    L = (
        Dxx @ diag(D[:, 0, 0])
        + Dyy @ diag(D[:, 1, 1])
        + 2.0 * (Dxy @ diag(D[:, 0, 1]))
        - Dx @ diag(v[:, 0])
        - Dy @ diag(v[:, 1])
    )
    return L.tocsr()


def solve_centred(prob):
    t0 = time.perf_counter()
    L = centred_generator(prob)
    N = L.shape[0]
    r = int(np.ravel_multi_index(tuple(s // 2 for s in prob.grid.shape), prob.grid.shape))
    L = L.tolil()
    L.rows[r] = [r]
    L.data[r] = [1.0]
    b = np.zeros(N)
    b[r] = 1.0
    p = spla.spsolve(L.tocsc(), b)
    dt = time.perf_counter() - t0
    return p, dt, {"nnz": int(L.nnz)}


def fipy_import():
    os.environ.setdefault("FIPY_SOLVERS", "scipy")
    import fipy

    return fipy


def solve_fipy(prob, name):
    F = fipy_import()
    g = prob.grid
    n0, n1 = g.shape
    h0, h1 = g.spacing
    t0 = time.perf_counter()
    mesh = F.Grid2D(dx=h0, dy=h1, nx=n0, ny=n1) + [[g.lower[0]], [g.lower[1]]]
    fc = np.asarray(mesh.faceCenters).T  # (nfaces, 2)
    Df = prob.diffusion(fc).reshape(-1, 2, 2)
    b = prob.ito_velocity(fc).reshape(-1, 2)
    if name == "field":  # conservative drift b = v - div D
        b = b - tensor_divergence(prob.diffusion, fc)
    Dface = F.FaceVariable(mesh=mesh, rank=2, value=np.transpose(Df, (1, 2, 0)))
    bface = F.FaceVariable(mesh=mesh, rank=1, value=b.T)
    N = mesh.numberOfCells
    var = F.CellVariable(mesh=mesh, value=1.0 / N)
    r = (n1 // 2) * n0 + n0 // 2  # the centre cell (x fastest)
    mask = F.CellVariable(mesh=mesh, value=0.0)
    mask[r] = 1.0
    c = 2.0 * float(np.max(Df[:, [0, 1], [0, 1]])) * (1 / h0**2 + 1 / h1**2)
    eq = (
        F.DiffusionTerm(coeff=(Dface,))
        - F.ExponentialConvectionTerm(coeff=bface)
        - F.ImplicitSourceTerm(coeff=c * mask)
        + c * mask * (1.0 / N)
    )
    solver = F.LinearLUSolver(tolerance=1e-12, iterations=10)
    res, change = [], None
    for _ in range(FIPY_MAX_SWEEPS):
        old = np.array(var.value)
        res.append(float(eq.sweep(var=var, solver=solver)))
        new = np.asarray(var.value)
        change = float(np.max(np.abs(new - old)) / np.max(np.abs(new)))
        if len(res) > 1 and res[-1] < FIPY_TOL * res[0]:
            break
    dt = time.perf_counter() - t0
    p = np.asarray(var.value).reshape(n1, n0).T  # back to our (axis 0 = theta_1) layout
    rel = res[-1] / res[0] if res[0] > 0 else 0.0
    info = {"sweeps": len(res), "residual": rel, "last_change": change}
    if rel >= FIPY_TOL:
        info["note"] = f"{len(res)} sweeps, residual {rel:.0e}, last change {change:.0e} (not converged)"
    return p, dt, info


# --- driver ----------------------------------------------------------------------------------------------
def fipy_version():
    try:
        from importlib.metadata import version

        return version("fipy")
    except Exception:
        return None


def run_case(name, n, solver):
    prob, exact = make_problem(name, n)
    row = {"problem": name, "n": n, "solver": solver}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if solver == "ours":
                p, dt, info = solve_ours(prob)
            elif solver == "centred":
                p, dt, info = solve_centred(prob)
            else:
                p, dt, info = solve_fipy(prob, name)
        row.update(measure(prob, exact, p))
        row["seconds"] = dt
        row.update(info)
    except Exception as exc:  # record, don't crash (FiPy in particular)
        row.update(
            {
                "L1": float("nan"),
                "min_over_max": float("nan"),
                "seconds": float("nan"),
                "note": (str(exc).strip().splitlines() or [repr(exc)])[0][:160],
            }
        )
    return row


def print_table(rows):
    def note(r):
        if r.get("note"):
            return r["note"]
        if "sweeps" in r:
            return f"{r['sweeps']} sweeps"
        return ", ".join(r[k] for k in ("method", "scheme") if r.get(k))

    return C.print_table(
        rows,
        [
            ("problem", "problem", "s"),
            ("n", "n", "d"),
            ("solver", "solver", "s"),
            ("L1", "L1", ".2e"),
            ("minP/maxP", "min_over_max", ".1e"),
            ("seconds", "seconds", ".3g"),
            ("note", note, "s"),
        ],
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="n = 48, 96 only")
    ap.add_argument("--no-fipy", action="store_true", help="skip the FiPy rows")
    ap.add_argument("--json", default=os.path.join(HERE, "anisotropy.json"), help="output JSON path")
    args = ap.parse_args(argv)

    sizes = [48, 96] if args.quick else [48, 96, 192]
    have_fipy = fipy_version() is not None
    solvers = ["ours", "centred"]
    notes = []
    if args.no_fipy:
        notes.append("fipy: skipped (--no-fipy).")
    elif not have_fipy:
        notes.append("fipy: not installed (pip install fipy): its rows are skipped.")
    else:
        solvers.append("fipy")
    for note in notes:
        print(note)

    t_start = time.perf_counter()
    with warnings.catch_warnings():  # load / compile the numba kernels of every problem type
        warnings.simplefilter("ignore")
        for name in PROBLEMS:
            fp.steady_state(make_problem(name, 8)[0])
    if "fipy" in solvers:  # FiPy's imports and first-call caches
        run_case("rot-ou", 8, "fipy")

    rows = []
    for name in PROBLEMS:
        for n in sizes:
            for solver in solvers:
                r = run_case(name, n, solver)
                rows.append(r)
                print(
                    f"  {name:9s} {n:4d} {solver:8s} L1 {C.fmt(r['L1'], '.2e')}  "
                    f"min/max {C.fmt(r['min_over_max'], '.1e')}  {C.fmt(r['seconds'], '.3g')} s"
                    + (f"  ({r['note']})" if r.get("note") else ""),
                    flush=True,
                )
    print()
    table = print_table(rows)
    total = time.perf_counter() - t_start
    print(f"\ntotal wall time {total:.0f} s")

    meta = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "fipy": fipy_version(),
        "fokkerplanck": getattr(fp, "__version__", None),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    out = {
        "benchmark": "anisotropy",
        "mode": "quick" if args.quick else "default",
        "sizes": sizes,
        "solvers": solvers,
        "machine": meta,
        "notes": notes,
        "total_seconds": total,
        "rows": rows,
        "table": table,
    }
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1, default=float)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
