"""Shared pieces of the solver benchmarks (``steady_state.py``, ``evolve.py``).

* the test problems (Ornstein-Uhlenbeck with a full constant ``D``, and with isotropic ``D = T I``) and
  their exact answers (Lyapunov covariance, Boltzmann weights, the Gaussian moment ODE);
* a plain scipy reference: the textbook centred finite-volume discretisation (centred drift flux,
  centred second differences, 4-point cross derivative, zero flux through the walls), assembled with
  ``scipy.sparse`` Kronecker products;
* a builder for the peer package ``fplanck`` (isotropic diffusion with a potential only);
* a builder for the peer package FiPy (``DiffusionTerm`` with a scalar or rank-2 coefficient minus
  ``ExponentialConvectionTerm`` with the face velocity, on a ``Grid2D``/``Grid3D``; scipy solver suite);
* one subprocess per case (timeout, peak RSS via ``resource.getrusage``) and the table printer.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# --- problems --------------------------------------------------------------------------------------------
# drift -A theta (A symmetric: a quadratic landscape L = theta^T A theta / 2), constant diffusion D
A_MAT = {
    2: np.array([[2.0, 0.5], [0.5, 1.0]]),
    3: np.array([[2.0, 0.5, 0.2], [0.5, 1.5, 0.3], [0.2, 0.3, 1.0]]),
}
D_FULL = {
    2: np.array([[0.5, 0.2], [0.2, 0.3]]),
    3: np.array([[0.5, 0.2, 0.1], [0.2, 0.4, 0.1], [0.1, 0.1, 0.3]]),
}
T_ISO = 0.5
HALF_WIDTH = 5.0  # domain [-5, 5]^d: at least 6 standard deviations of every density used here
PROBLEMS = ("ou-full", "ou-iso")


def diffusion(problem: str, d: int) -> np.ndarray:
    if problem == "ou-full":
        return D_FULL[d]
    if problem == "ou-iso":
        return T_ISO * np.eye(d)
    raise ValueError(problem)


def stationary_cov(problem: str, d: int) -> np.ndarray:
    """``A S + S A^T = 2 D``."""
    A = A_MAT[d]
    return sla.solve_continuous_lyapunov(A, 2.0 * diffusion(problem, d))


# initial Gaussian of the evolution benchmark, and its horizon
M0 = {2: np.array([1.5, -1.0]), 3: np.array([1.5, -1.0, 0.8])}
S0_SCALE = 0.09  # Sigma_0 = 0.09 I  (sigma_0 = 0.3)
T_END = 1.0


def exact_moments(problem: str, d: int, t: float):
    """Mean ``e^{-At} m0`` and covariance ``S_inf + e^{-At}(S0 - S_inf)e^{-A^T t}`` of the OU process."""
    A = A_MAT[d]
    E = sla.expm(-A * t)
    Sinf = stationary_cov(problem, d)
    S0 = S0_SCALE * np.eye(d)
    return E @ M0[d], Sinf + E @ (S0 - Sinf) @ E.T


def axes_of(d: int, n: int):
    return [(-HALF_WIDTH, HALF_WIDTH, n)] * d


def centres(d: int, n: int):
    h = 2 * HALF_WIDTH / n
    c = -HALF_WIDTH + h * (np.arange(n) + 0.5)
    return [c] * d, h


def gaussian_on_grid(d: int, n: int, mean, cov) -> np.ndarray:
    """Exact normal density at the cell centres, normalised to unit mass on the grid (cell-mass units)."""
    cs, h = centres(d, n)
    pts = np.stack(np.meshgrid(*cs, indexing="ij"), axis=-1) - mean
    prec = np.linalg.inv(cov)
    q = np.exp(-0.5 * np.einsum("...i,ij,...j->...", pts, prec, pts))
    return q / q.sum()


def errors(p: np.ndarray, d: int, n: int, mean, cov) -> dict:
    """Errors of a grid density ``p`` (any normalisation) against ``N(mean, cov)``:
    ``err_cov`` = relative Frobenius error of the covariance (cell-centre moments), ``err_mean`` = max abs
    error of the mean, ``err_L1`` = L1 distance of the normalised cell masses to the exact density sampled
    at the cell centres (also normalised). For ``ou-iso`` that reference is exactly the discrete
    Boltzmann weights ``exp(-L/T)``."""
    p = np.asarray(p, dtype=float).reshape((n,) * d)
    p = p / p.sum()
    cs, h = centres(d, n)
    pts = np.stack(np.meshgrid(*cs, indexing="ij"), axis=-1).reshape(-1, d)
    w = p.ravel()
    m = w @ pts
    z = pts - m
    S = (z * w[:, None]).T @ z
    q = gaussian_on_grid(d, n, mean, cov)
    return {
        "err_cov": float(np.linalg.norm(S - cov) / np.linalg.norm(cov)),
        "err_mean": float(np.max(np.abs(m - mean))),
        "err_L1": float(np.abs(p - q).sum()),
        "min_value": float(p.min() / p.max()),
    }


# --- plain scipy reference --------------------------------------------------------------------------------
def fd_generator(problem: str, d: int, n: int) -> sp.csr_matrix:
    """Generator of ``dP/dt = -div J``, ``J = v P - D grad P`` (``v = -A theta``, constant ``D``), by the
    standard centred finite-volume scheme with zero flux through the walls:

    * on the face between cells k, k+1 of axis i: ``v_i`` at the face times the average of P (centred),
      ``D_ii (P_{k+1} - P_k)/h``, and for ``j != i`` ``D_ij`` times the face average of the centred
      difference along ``j`` (one-sided at the walls);
    * the divergence of the face fluxes (conservative: mass is kept to round-off).

    Second order; not monotone (the centred drift can give small negative values at cell Peclet > 2).
    """
    A = A_MAT[d]
    D = diffusion(problem, d)
    cs, h = centres(d, n)
    I = sp.identity(n, format="csr")
    G1 = sp.diags([-np.ones(n - 1), np.ones(n - 1)], [0, 1], shape=(n - 1, n), format="csr") / h
    Av1 = sp.diags([np.full(n - 1, 0.5), np.full(n - 1, 0.5)], [0, 1], shape=(n - 1, n), format="csr")
    lo = np.full(n - 1, 0.5)
    C1 = sp.diags([-lo, lo], [-1, 1], shape=(n, n), format="lil")
    C1[0, 0], C1[0, 1] = -1.0, 1.0
    C1[n - 1, n - 2], C1[n - 1, n - 1] = -1.0, 1.0
    C1 = C1.tocsr() / h

    def lift(op, axis):
        mats = [I] * d
        mats[axis] = op
        out = mats[0]
        for m in mats[1:]:
            out = sp.kron(out, m, format="csr")
        return out

    faces = -HALF_WIDTH + h * np.arange(1, n)
    gen = sp.csr_matrix((n**d, n**d))
    for i in range(d):
        Gi, Avi = lift(G1, i), lift(Av1, i)
        # coordinates of the i-face centres
        coords = [faces if j == i else cs[j] for j in range(d)]
        mesh = np.meshgrid(*coords, indexing="ij")
        vi = -sum(A[i, j] * mesh[j] for j in range(d)).ravel()
        flux = sp.diags(vi) @ Avi - D[i, i] * Gi
        for j in range(d):
            if j != i and D[i, j] != 0.0:
                flux = flux - D[i, j] * (Avi @ lift(C1, j))
        gen = gen + Gi.T @ flux  # dP/dt = -div F, div = -G^T
    return gen.tocsr()


# --- the peer package fplanck ------------------------------------------------------------------------------
def fplanck_solver(d: int, n: int):
    """``fplanck.fokker_planck`` for the isotropic OU problem: potential ``L = theta^T A theta / 2``,
    drag 1 and temperature ``T / k_B`` (so its ``D = k_B T / drag = T`` and drift ``-grad L``), on the same
    cell centres as ours (fplanck centres its axes on 0). Its scheme: nearest-neighbour jumps with rates
    ``D/h^2 exp(-dU/2T)`` (exact discrete Boltzmann weights); only diagonal, per-axis diffusion."""
    if not hasattr(np, "product"):  # fplanck 0.2.2 calls np.product, removed in NumPy 2
        np.prod = np.prod
    import fplanck
    from scipy import constants

    A = A_MAT[d]
    h = 2 * HALF_WIDTH / n

    def U(*x):
        return 0.5 * sum(A[i, j] * x[i] * x[j] for i in range(d) for j in range(d))

    sim = fplanck.fokker_planck(
        temperature=T_ISO / constants.k, drag=1.0, extent=[n * h] * d, resolution=h * (1 + 1e-12), potential=U
    )
    if tuple(sim.Ngrid) != (n,) * d:
        raise RuntimeError(f"fplanck built a {tuple(sim.Ngrid)} grid, expected {(n,) * d}")
    return sim


# --- the peer package FiPy ---------------------------------------------------------------------------------
def fipy_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("fipy") is not None


def fipy_import():
    """Import FiPy with the scipy solver suite (``FIPY_SOLVERS=scipy`` unless the caller set another)."""
    os.environ.setdefault("FIPY_SOLVERS", "scipy")
    import fipy

    return fipy


def fipy_operator(F, problem: str, d: int, n: int):
    """FiPy's form of the right-hand side ``div(D grad P) - div(v P)``, ``v = -A theta``, on the same cells:

    * mesh: ``Grid2D``/``Grid3D`` with spacing ``h``, translated to ``[-5, 5]^d`` (cell ids run with x fastest);
    * ``DiffusionTerm(coeff=(D,))``: a scalar ``T`` for ``ou-iso``; the rank-2 tensor for ``ou-full``. FiPy
      treats the normal part ``D_nn`` implicitly (5/7-point) and the tangential part ``n.D.t`` as an *explicit*
      source from the cell-centred gradient (harmonic face average) of the current iterate, so a solve with
      the full tensor must be swept to converge;
    * ``ExponentialConvectionTerm(coeff=v_face)``: the exponential (Scharfetter-Gummel-type) scheme with the
      exact face velocity and the face Peclet number from ``D_nn`` -- the scheme that, like ours, gives the
      discrete Boltzmann weights on ``ou-iso``.

    No constraints: FiPy's exterior faces carry no implicit diffusive or convective flux (reflecting walls);
    the explicit cross-diffusion term is also summed over the exterior faces, a leak ``D_nt dP/dt`` that is
    ~1e-18 here (the density at the walls). Returns ``(mesh, op)``."""
    h = 2 * HALF_WIDTH / n
    if d == 2:
        mesh = F.Grid2D(dx=h, dy=h, nx=n, ny=n) + [[-HALF_WIDTH], [-HALF_WIDTH]]
    elif d == 3:
        mesh = F.Grid3D(dx=h, dy=h, dz=h, nx=n, ny=n, nz=n) + [[-HALF_WIDTH], [-HALF_WIDTH], [-HALF_WIDTH]]
    else:
        raise ValueError(d)
    A = A_MAT[d]
    D = diffusion(problem, d)
    v = F.FaceVariable(mesh=mesh, rank=1, value=-(A @ np.asarray(mesh.faceCenters)))
    coeff = float(D[0, 0]) if problem == "ou-iso" else D
    op = F.DiffusionTerm(coeff=(coeff,)) - F.ExponentialConvectionTerm(coeff=v)
    return mesh, op


def fipy_from_grid(p: np.ndarray, d: int) -> np.ndarray:
    """Our ``(n,)*d`` array (axis 0 = theta_1) to FiPy's cell order (x fastest)."""
    return np.ascontiguousarray(np.asarray(p).transpose(tuple(range(d))[::-1])).ravel()


def fipy_to_grid(values, d: int, n: int) -> np.ndarray:
    return np.asarray(values).reshape((n,) * d).transpose(tuple(range(d))[::-1])


# --- running cases -----------------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


def run_worker(script: str, spec: dict, timeout: float, blas_threads: int | None = 1) -> dict:
    """Run one case in a fresh interpreter (``script --worker JSON``) and return its result dict.

    ``blas_threads`` caps the BLAS/OpenMP threads of the worker (``None``: leave the environment alone).
    On a small, shared machine a multi-threaded OpenBLAS makes every vector ``dot``/``norm`` of a Krylov
    solver spin for milliseconds (measured: one AMG V-cycle at 32^3 took 0.5 s with the default threads,
    0.015 s with one). MKL keeps every core (``MKL_NUM_THREADS`` = the core count, which it would otherwise
    take from ``OMP_NUM_THREADS``): here MKL is only PARDISO, our optional sparse LU, and its threads are part
    of what is measured (no peer links MKL)."""
    t0 = time.perf_counter()
    env = dict(os.environ)
    if blas_threads is not None:
        for k in BLAS_ENV:
            env[k] = str(int(blas_threads))
        env.setdefault("MKL_NUM_THREADS", str(os.cpu_count() or 1))
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    try:
        cp = subprocess.run(
            [sys.executable, script, "--worker", json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {**spec, "status": f"timeout>{timeout:.0f}s", "wall": time.perf_counter() - t0}
    for line in cp.stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            return {**spec, **json.loads(line[7:]), "status": "ok"}
    tail = (cp.stderr or cp.stdout).strip().splitlines()[-1:] or ["no output"]
    return {**spec, "status": f"failed: {tail[0][:120]}"}


def machine_info() -> dict:
    import scipy

    info = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": platform.processor(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["processor"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from importlib.metadata import version

        import fplanck  # noqa: F401

        info["fplanck"] = version("fplanck")
    except Exception:
        info["fplanck"] = None
    try:
        from importlib.metadata import version

        info["fipy"] = version("fipy") if fipy_installed() else None
    except Exception:
        info["fipy"] = None
    from fokkerplanck.io import versions  # our dependencies, pypardiso/mkl, and the LU backend in use

    info.update({k: v for k, v in versions().items() if k in ("pypardiso", "mkl", "lu", "pyamg", "numba")})
    return info


def fmt(x, spec=".3g"):
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    return format(x, spec)


def print_table(rows, columns):
    """``columns``: list of (header, key or callable, format)."""
    cells = [[h for h, _, _ in columns]]
    for r in rows:
        line = []
        for _, key, f in columns:
            v = key(r) if callable(key) else r.get(key)
            line.append(fmt(v, f))
        cells.append(line)
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    out = []
    for k, c in enumerate(cells):
        out.append("| " + " | ".join(s.ljust(w) for s, w in zip(c, widths)) + " |")
        if k == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    text = "\n".join(out)
    print(text, flush=True)
    return text


def add_ratios(rows, key="seconds", ours_name="ours"):
    """``ratio`` = seconds / seconds of ``ours`` on the same (problem, grid) (>1: we are faster)."""
    base = {
        (r["problem"], r["d"], r["n"]): r.get(key)
        for r in rows
        if r.get("solver") == ours_name and r.get("status") == "ok"
    }
    for r in rows:
        b = base.get((r["problem"], r["d"], r["n"]))
        r["ratio"] = (r[key] / b) if (b and r.get("status") == "ok" and r.get(key)) else None
    return rows


def grid_label(r):
    return f"{r['n']}^{r['d']}"


def parse_args(description: str, argv=None):
    """The options every comparison script takes (``--quick``/``--full``, ``--no-fplanck``, ``--no-fipy``,
    ``--timeout``,
    ``--blas-threads`` and the internal ``--worker``)."""
    import argparse

    ap = argparse.ArgumentParser(description=description)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="smoke run (~30 s)")
    g.add_argument("--full", action="store_true", help="all sizes of the issue (long)")
    ap.add_argument("--no-fplanck", action="store_true")
    ap.add_argument("--no-fipy", action="store_true", help="skip the FiPy rows")
    ap.add_argument("--timeout", type=float, default=None, help="per-case timeout in seconds")
    ap.add_argument(
        "--blas-threads", type=int, default=1, help="BLAS threads per case (default 1; 0 leaves the environment alone)"
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def run_cases(script: str, specs, args, default_timeout: float, solver_width: int = 12) -> list:
    """Run every case of ``specs`` in its own interpreter, print one progress line each, add the ratios."""
    timeout = args.timeout or (900.0 if args.full else default_timeout)
    rows = []
    for spec in specs:
        r = run_worker(script, spec, timeout, args.blas_threads or None)
        rows.append(r)
        print(
            f"  {spec['problem']:8s} {grid_label(spec):7s} {spec['solver']:{solver_width}s} "
            f"{r.get('status')}  {fmt(r.get('seconds'))} s  err_cov {fmt(r.get('err_cov'))}",
            flush=True,
        )
    add_ratios(rows)
    print()
    return rows


def run_benchmark(script: str, doc: str, argv, plan, worker, *, default_timeout: float, solver_width: int):
    """The driver both benchmark scripts share: parse the options; in a ``--worker`` process run that one case
    (returns ``(args, None, None)``); otherwise run every planned case in its own interpreter and return
    ``(args, rows, start time)``."""
    args = parse_args(doc.splitlines()[0], argv)
    if args.worker:
        worker(json.loads(args.worker))
        return args, None, None
    t_start = time.perf_counter()
    if not args.no_fipy and not fipy_installed():
        print("FiPy not installed (pip install fipy): its rows are skipped.")
    return args, run_cases(script, plan(args), args, default_timeout, solver_width), t_start


def write_json(name: str, args, rows, table, **extra) -> str:
    """``benchmarks/<name>.json``: the mode, the machine, BLAS threads, every row and the printed table."""
    out = {
        "benchmark": name,
        "mode": "quick" if args.quick else "full" if args.full else "default",
        "machine": machine_info(),
        "blas_threads": args.blas_threads,
        **extra,
        "rows": rows,
        "table": table,
    }
    path = os.path.join(HERE, f"{name}.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1, default=float)
    return path


def grid_sizes(args) -> dict:
    """Cells per axis to run, by dimension: ``--quick``, default or ``--full``."""
    if args.quick:
        return {2: [128], 3: [32]}
    if args.full:
        return {2: [128, 256, 512, 1024], 3: [32, 40, 64, 128]}
    return {2: [128, 256, 512], 3: [32, 40]}


def report(out: dict, d: int, n: int, mean, cov) -> None:
    """A worker's last act: errors of its density ``out.pop("p")`` against the exact Gaussian ``(mean, cov)``,
    peak memory, and the ``RESULT`` line the driver reads."""
    p = out.pop("p")
    out.update(errors(p, d, n, mean, cov))
    out["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(out), flush=True)
