"""Accuracy per wall-second: the grid solver (``fp.steady_state``) vs Monte Carlo particles (``fp.simulate``).

Two stationary problems, each measured as error-versus-cost curves and a table:

(a) ``ou``: 2D Ornstein-Uhlenbeck, drift ``-A theta``, full off-diagonal constant ``D`` (``_common.py``:
    ``A = [[2,.5],[.5,1]]``, ``D = [[.5,.2],[.2,.3]]``), box ``[-5,5]^2``, reflecting walls. Exact answer:
    the Gaussian ``N(0, S)`` with ``A S + S A^T = 2D``.
(b) ``prl``: the PRL 2D model in the Eq. (11) setting, ``DegenerateValley(lambdas=(1,1), eps=0)``,
    ``D = diag(Delta/kappa, Delta)``, ``Delta = 0.05``, ``kappa = 3``, box ``[-2,2] x [-1,1]``, reflecting walls.
    Reference: the solver on a fine grid (640 x 400; ``--quick``: 320 x 200).

Errors, all on one common coarse partition ``M`` per case (so particles and solver are scored alike):

* ``err_L1``  = sum |p_k - q_k| over the cells of ``M`` (2D cell masses; ``ou``: 32 x 32, ``prl``: 32 x 20);
  the solver's cell masses are summed onto ``M`` (every solver grid is a multiple of it), the particles are
  histogrammed on ``M``; ``q`` = exact cell masses (Gauss-Legendre quadrature of the Gaussian) or the
  reference's cell masses summed onto ``M``.
* ``err_L1x`` = the same for the x-marginal (32 cells).
* ``err_cov`` = ||S_h - S||_F / ||S||_F (solver: cell-centre moments of its density; particles: sample covariance).
* ``prl`` also: ``err_L1_own`` of the solver on its own grid (vs the reference summed onto it), and the
  particles histogrammed on each solver grid (second table).

Cost: wall seconds of ``fp.steady_state(fp.Problem(...))`` (assembly + solve), and of ``fp.simulate`` (burn-in
included) + histogram. Numba kernels are compiled/loaded by warm-up calls before anything is timed.

Particles (Euler-Maruyama, independent particles, one snapshot after burn-in): for each ``N`` the step ``dt``
is chosen so that the Euler-Maruyama bias is about half the statistical error expected at that ``N``
(``dt ~ N^{-1/2}``, so the cost grows like ``N^{3/2}``): the cheapest run whose error is still statistical.
``ou``: starts at the origin, burn-in ``t = 5 / lambda_min(A)``; its dt bias is exact (discrete Lyapunov
equation ``S = M S M^T + 2 D dt``, ``M = I - dt A``) and reported per row (``dt_bias_*``).
``prl``: starts uniform in the box; burn-in ``t = tau ln(2 d0 / noise)`` with ``tau = 1/0.0262`` the slowest
relaxation time (spectral gap of the generator) and ``d0 = 0.5``; dt bias ``~0.5 dt`` in ``err_L1x`` and
``~0.55 dt`` in ``err_L1`` (calibrated once from runs started at the reference density, dt = 0.1 / 0.05 / 0.025,
N = 2e5), reported as an estimate. ``noise_*`` = the L1 distance pure multinomial noise of that ``N`` gives,
``sqrt(2/pi) sum_k sqrt(q_k (1 - q_k) / N)``.

Headline: for each solver point, the particles' error at the same wall time (log-log interpolation of the
particle curve; a power-law fit beyond its ends, flagged ``extrap``) divided by the solver's error.

    python benchmarks/solver_vs_particles.py [--quick | --full] [--blas-threads 1] [--png]

Default ~70 s on 2 cores, ``--quick`` ~12 s, ``--full`` adds N = 1e6 (ou) and 3e5 (prl): ~5-8 min.
Writes ``benchmarks/solver_vs_particles.json`` (and ``benchmarks/solver_vs_particles.png`` with ``--png``).
"""

from __future__ import annotations

import os
import sys


def _blas_threads_from_argv(argv) -> int:
    for k, a in enumerate(argv):
        if a == "--blas-threads" and k + 1 < len(argv):
            return int(argv[k + 1])
        if a.startswith("--blas-threads="):
            return int(a.split("=", 1)[1])
    return 1


# BLAS threads must be fixed before numpy is imported (see _common.run_worker: a multi-threaded OpenBLAS on
# this small shared machine makes every small dense operation spin).
_BLAS = _blas_threads_from_argv(sys.argv[1:])
if _BLAS > 0:
    for _k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_k] = str(_BLAS)

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import scipy.linalg as sla  # noqa: E402
from scipy.special import erf  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common as C  # noqa: E402

import fokkerplanck as fp  # noqa: E402

# --- case (a): OU ------------------------------------------------------------------------------------------
A_OU = C.A_MAT[2]
D_OU = C.D_FULL[2]
S_OU = sla.solve_continuous_lyapunov(A_OU, 2.0 * D_OU)
LAMBDA_MIN = float(np.linalg.eigvalsh(A_OU).min())
OU_BOX = [(-C.HALF_WIDTH, C.HALF_WIDTH)] * 2
OU_M = (32, 32)
OU_BIAS_COEF = 0.88  # relative covariance bias of Euler-Maruyama ~ 0.88 dt (exact one is reported per row)

# --- case (b): PRL Eq. (11) setting ----------------------------------------------------------------------
DELTA, KAPPA = 0.05, 3.0
PRL_BOX = [(-2.0, 2.0), (-1.0, 1.0)]
PRL_M = (32, 20)
PRL_TAU = 1.0 / 0.0262  # slowest relaxation time: spectral gap of the generator (64 x 40 grid, eigs)
PRL_D0 = 0.5  # L1 distance (x-marginal) of the uniform start from the stationary density, roughly
PRL_BIAS_L1X, PRL_BIAS_L1 = 0.5, 0.55  # EM bias per unit dt (calibrated, see the docstring)


def prl_models():
    land = fp.landscapes.DegenerateValley(lambdas=(1.0, 1.0), eps=0.0)
    noise = fp.noise.Constant(np.diag([DELTA / KAPPA, DELTA]))
    return land, noise


def ou_models():
    return fp.landscapes.Quadratic(A_OU), fp.noise.Constant(D_OU)


def grid_of(box, shape):
    return fp.Grid([(lo, hi, n) for (lo, hi), n in zip(box, shape)], bc="reflecting")


# --- exact / reference cell masses -------------------------------------------------------------------------
def gauss_cell_masses(box, shape, S, order=8):
    """Cell masses of N(0, S) on a box partition (tensor Gauss-Legendre, ``order`` points per cell and axis),
    normalised to the box."""
    xg, wg = np.polynomial.legendre.leggauss(order)
    pts, wts = [], []
    for (lo, hi), n in zip(box, shape):
        e = np.linspace(lo, hi, n + 1)
        h = (hi - lo) / n
        c = 0.5 * (e[:-1] + e[1:])
        pts.append((c[:, None] + 0.5 * h * xg[None, :]))  # (n, order)
        wts.append(0.5 * h * wg)
    P = np.linalg.inv(S)
    X = pts[0][:, None, :, None]
    Y = pts[1][None, :, None, :]
    f = np.exp(-0.5 * (P[0, 0] * X * X + 2 * P[0, 1] * X * Y + P[1, 1] * Y * Y))
    m = np.einsum("ijab,a,b->ij", f, wts[0], wts[1])
    return m / m.sum()


def gauss_marginal_masses(box, n, var):
    lo, hi = box
    e = np.linspace(lo, hi, n + 1) / math.sqrt(2 * var)
    m = 0.5 * np.diff(erf(e))
    return m / m.sum()


def coarsen(masses, shape):
    """Sum cell masses onto a coarser partition (each axis a divisor)."""
    n0, n1 = masses.shape
    a, b = shape
    if n0 % a or n1 % b:
        raise ValueError(f"grid {masses.shape} is not a multiple of {shape}")
    return masses.reshape(a, n0 // a, b, n1 // b).sum(axis=(1, 3))


def l1_noise(q, N):
    return float(math.sqrt(2 / math.pi) * np.sqrt(q * (1 - q) / N).sum())


def rel_cov_err(S_h, S):
    return float(np.linalg.norm(S_h - S) / np.linalg.norm(S))


def density_cov(masses, grid):
    xs = grid.mesh().reshape(-1, 2)
    w = masses.ravel() / masses.sum()
    m = w @ xs
    z = xs - m
    return (z * w[:, None]).T @ z


def histogram_masses(pos, box, shape):
    edges = [np.linspace(lo, hi, n + 1) for (lo, hi), n in zip(box, shape)]
    c, _ = np.histogramdd(pos, bins=edges)
    return c / max(c.sum(), 1.0)


# --- timed runs --------------------------------------------------------------------------------------------
def run_solver(land, noise, box, shape):
    t0 = time.perf_counter()
    grid = grid_of(box, shape)
    ss = fp.steady_state(fp.Problem(grid, landscape=land, noise=noise), warn=False)
    sec = time.perf_counter() - t0
    return grid, ss.values * grid.cell_volume, sec, ss.info


def run_particles(land, noise, box, N, dt, t_burn, theta0, seed):
    grid = grid_of(box, (8, 8))  # only its walls are used
    t0 = time.perf_counter()
    ens = fp.simulate(
        land,
        noise,
        method="sde",
        n_particles=N,
        theta0=theta0,
        dt=dt,
        t_end=t_burn,
        grid=grid,
        seed=seed,
        progress=False,
    )
    return ens, time.perf_counter() - t0


def warm_up():
    """Compile / load the numba kernels of the operator and of the particle simulator before timing."""
    t0 = time.perf_counter()
    for land, noise, box in (ou_models() + (OU_BOX,), prl_models() + (PRL_BOX,)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fp.steady_state(fp.Problem(grid_of(box, (8, 8)), landscape=land, noise=noise), warn=False)
        fp.simulate(
            land,
            noise,
            method="sde",
            n_particles=64,
            theta0=[0.0, 0.0],
            dt=1e-2,
            n_steps=3,
            grid=grid_of(box, (8, 8)),
            seed=0,
            progress=False,
        )
    return time.perf_counter() - t0


# --- case (a) ----------------------------------------------------------------------------------------------
def case_ou(grids, Ns):
    land, noise = ou_models()
    q2 = gauss_cell_masses(OU_BOX, OU_M, S_OU)
    qx = gauss_marginal_masses(OU_BOX[0], OU_M[0], S_OU[0, 0])
    rows = []
    for n in grids:
        grid, p, sec, info = run_solver(land, noise, OU_BOX, (n, n))
        pm = coarsen(p, OU_M)
        rows.append(
            {
                "case": "ou",
                "method": "solver",
                "size": f"{n}x{n}",
                "cells": n * n,
                "h": 2 * C.HALF_WIDTH / n,
                "seconds": sec,
                "err_L1": float(np.abs(pm - q2).sum()),
                "err_L1x": float(np.abs(pm.sum(1) - qx).sum()),
                "err_cov": rel_cov_err(density_cov(p, grid), S_OU),
                "solver_method": info.get("method"),
            }
        )
        print(f"  ou solver {n}x{n}: {sec:.3g} s", flush=True)
    t_burn = 5.0 / LAMBDA_MIN
    for k, N in enumerate(Ns):
        stat_cov = math.sqrt(2.0 / N)
        dt = min(0.025, 0.5 * stat_cov / OU_BIAS_COEF)
        ens, sec = run_particles(land, noise, OU_BOX, N, dt, t_burn, [0.0, 0.0], seed=100 + k)
        t1 = time.perf_counter()
        pos = ens.positions[ens.alive]
        pm = histogram_masses(pos, OU_BOX, OU_M)
        S_hat = np.cov(pos, rowvar=False)
        sec += time.perf_counter() - t1
        # exact Euler-Maruyama stationary law: N(0, S_dt), S_dt = M S_dt M^T + 2 D dt
        Mdt = np.eye(2) - dt * A_OU
        S_dt = sla.solve_discrete_lyapunov(Mdt, 2.0 * D_OU * dt)
        q2_dt = gauss_cell_masses(OU_BOX, OU_M, S_dt)
        qx_dt = gauss_marginal_masses(OU_BOX[0], OU_M[0], S_dt[0, 0])
        rows.append(
            {
                "case": "ou",
                "method": "particles",
                "size": f"N={N:.0e}",
                "N": N,
                "dt": dt,
                "t_burn": t_burn,
                "n_steps": ens.n_steps,
                "seconds": sec,
                "err_L1": float(np.abs(pm - q2).sum()),
                "err_L1x": float(np.abs(pm.sum(1) - qx).sum()),
                "err_cov": rel_cov_err(S_hat, S_OU),
                "noise_L1": l1_noise(q2, N),
                "noise_L1x": l1_noise(qx, N),
                "dt_bias_L1": float(np.abs(q2_dt - q2).sum()),
                "dt_bias_L1x": float(np.abs(qx_dt - qx).sum()),
                "dt_bias_cov": rel_cov_err(S_dt, S_OU),
            }
        )
        print(f"  ou particles N={N:.0e} dt={dt:.2g} steps={ens.n_steps}: {sec:.3g} s", flush=True)
    return rows, {}


# --- case (b) ----------------------------------------------------------------------------------------------
def case_prl(ref_shape, grids, Ns):
    land, noise = prl_models()
    t0 = time.perf_counter()
    gref, pref, sec_ref, _ = run_solver(land, noise, PRL_BOX, ref_shape)
    print(f"  prl reference {ref_shape[0]}x{ref_shape[1]}: {sec_ref:.3g} s", flush=True)
    S_ref = density_cov(pref, gref)
    q2 = coarsen(pref, PRL_M)
    qx = q2.sum(1)
    rows = []
    for shape in grids:
        grid, p, sec, info = run_solver(land, noise, PRL_BOX, shape)
        pm = coarsen(p, PRL_M)
        own = coarsen(pref, shape)
        rows.append(
            {
                "case": "prl",
                "method": "solver",
                "size": f"{shape[0]}x{shape[1]}",
                "cells": shape[0] * shape[1],
                "h": 4.0 / shape[0],
                "seconds": sec,
                "err_L1": float(np.abs(pm - q2).sum()),
                "err_L1x": float(np.abs(pm.sum(1) - qx).sum()),
                "err_cov": rel_cov_err(density_cov(p, grid), S_ref),
                "err_L1_own": float(np.abs(p - own).sum()),
                "solver_method": info.get("method"),
            }
        )
        print(f"  prl solver {shape[0]}x{shape[1]}: {sec:.3g} s", flush=True)
    own_grid = {}
    for k, N in enumerate(Ns):
        nx = l1_noise(qx, N)
        dt = min(0.1, 0.5 * nx / PRL_BIAS_L1X)
        t_burn = max(2.0, math.log(2 * PRL_D0 / nx)) * PRL_TAU
        rng = np.random.default_rng(200 + k)
        lo = np.array([b[0] for b in PRL_BOX])
        hi = np.array([b[1] for b in PRL_BOX])
        theta0 = lo + (hi - lo) * rng.random((N, 2))
        ens, sec = run_particles(land, noise, PRL_BOX, N, dt, t_burn, theta0, seed=300 + k)
        t1 = time.perf_counter()
        pos = ens.positions[ens.alive]
        pm = histogram_masses(pos, PRL_BOX, PRL_M)
        S_hat = np.cov(pos, rowvar=False)
        sec += time.perf_counter() - t1
        rows.append(
            {
                "case": "prl",
                "method": "particles",
                "size": f"N={N:.0e}",
                "N": N,
                "dt": dt,
                "t_burn": t_burn,
                "n_steps": ens.n_steps,
                "seconds": sec,
                "err_L1": float(np.abs(pm - q2).sum()),
                "err_L1x": float(np.abs(pm.sum(1) - qx).sum()),
                "err_cov": rel_cov_err(S_hat, S_ref),
                "noise_L1": l1_noise(q2, N),
                "noise_L1x": nx,
                "dt_bias_L1": PRL_BIAS_L1 * dt,
                "dt_bias_L1x": PRL_BIAS_L1X * dt,
                "dt_bias_is_estimate": True,
            }
        )
        # the same particles histogrammed on every solver grid (error vs the reference summed onto that grid)
        own_grid[N] = {}
        for shape in grids:
            ph = histogram_masses(pos, PRL_BOX, shape)
            own_grid[N][f"{shape[0]}x{shape[1]}"] = float(np.abs(ph - coarsen(pref, shape)).sum())
        print(f"  prl particles N={N:.0e} dt={dt:.2g} t_burn={t_burn:.0f} steps={ens.n_steps}: {sec:.3g} s", flush=True)
    extra = {
        "reference": {"shape": list(ref_shape), "seconds": sec_ref, "cov": S_ref.tolist()},
        "particles_on_solver_grids": {f"{N:.0e}": v for N, v in own_grid.items()},
        "setup_seconds": time.perf_counter() - t0,
    }
    return rows, extra


# --- analysis ----------------------------------------------------------------------------------------------
def slope(xs, ys):
    xs, ys = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    if xs.size < 2:
        return None
    return float(np.polyfit(xs, ys, 1)[0])


def particle_err_at(t, pts):
    """Particle error at wall time ``t``: log-log interpolation between measured points, power-law fit of all
    points outside their range."""
    ts = np.array([p[0] for p in pts])
    es = np.array([p[1] for p in pts])
    o = np.argsort(ts)
    ts, es = ts[o], es[o]
    if ts[0] <= t <= ts[-1]:
        return float(np.exp(np.interp(np.log(t), np.log(ts), np.log(es)))), "interp"
    b, a = np.polyfit(np.log(ts), np.log(es), 1)
    return float(np.exp(a + b * np.log(t))), "extrap"


def analyse(rows):
    out = {}
    for case in ("ou", "prl"):
        sol = [r for r in rows if r["case"] == case and r["method"] == "solver"]
        par = [r for r in rows if r["case"] == case and r["method"] == "particles"]
        if not sol or not par:
            continue
        res = {
            "solver_order_in_h": {
                m: slope([r["h"] for r in sol], [r[m] for r in sol]) for m in ("err_L1", "err_L1x", "err_cov")
            },
            "particle_order_in_N": {
                m: slope([r["N"] for r in par], [r[m] for r in par]) for m in ("err_L1", "err_L1x", "err_cov")
            },
            "particle_order_in_seconds": {
                m: slope([r["seconds"] for r in par], [r[m] for r in par]) for m in ("err_L1", "err_L1x", "err_cov")
            },
            "ratios": {},
        }
        for m in ("err_L1", "err_L1x", "err_cov"):
            pts = [(r["seconds"], r[m]) for r in par]
            lst = []
            for r in sol:
                e, how = particle_err_at(r["seconds"], pts)
                lst.append(
                    {
                        "size": r["size"],
                        "seconds": r["seconds"],
                        "solver": r[m],
                        "particles": e,
                        "ratio": e / r[m],
                        "how": how,
                    }
                )
            res["ratios"][m] = lst
        # headline: the most accurate solver point (the finest grid)
        res["headline"] = {m: res["ratios"][m][-1] for m in res["ratios"]}
        out[case] = res
    return out


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axs = plt.subplots(1, 2, figsize=(10, 4))
    for ax, case, title in ((axs[0], "ou", "(a) 2D OU, full D"), (axs[1], "prl", "(b) PRL Eq. (11) model")):
        for method, mk, col in (("solver", "o-", "#0072B2"), ("particles", "s--", "#D55E00")):
            rr = [r for r in rows if r["case"] == case and r["method"] == method]
            if rr:
                ax.loglog(
                    [r["seconds"] for r in rr],
                    [r["err_L1"] for r in rr],
                    mk,
                    color=col,
                    label=f"{method}: L1 (2D, {'32x32' if case == 'ou' else '32x20'})",
                )
                ax.loglog(
                    [r["seconds"] for r in rr],
                    [r["err_cov"] for r in rr],
                    mk,
                    color=col,
                    alpha=0.45,
                    mfc="none",
                    label=f"{method}: rel. cov error",
                )
        ax.set_xlabel("wall seconds")
        ax.set_ylabel("error")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="small grids and N <= 1e5 (ou) / 3e4 (prl) (~12 s)")
    g.add_argument("--full", action="store_true", help="adds N = 1e6 (ou) and 3e5 (prl)")
    ap.add_argument("--blas-threads", type=int, default=1, help="BLAS threads (default 1; 0 leaves the environment)")
    ap.add_argument("--png", action="store_true", help="also write benchmarks/solver_vs_particles.png")
    args = ap.parse_args(argv)

    if args.quick:
        ou_grids, ou_N = [32, 64, 128], [10**3, 10**4, 10**5]
        prl_ref, prl_grids, prl_N = (320, 200), [(32, 20), (64, 40), (160, 100)], [10**3, 10**4, 3 * 10**4]
    else:
        ou_grids, ou_N = [32, 64, 128, 256], [10**3, 10**4, 10**5, 3 * 10**5]
        prl_ref = (640, 400)
        prl_grids = [(32, 20), (64, 40), (128, 80), (160, 100), (320, 200)]
        prl_N = [10**3, 3 * 10**3, 10**4, 3 * 10**4, 10**5]
        if args.full:
            ou_N.append(10**6)
            prl_N.append(3 * 10**5)

    t_all = time.perf_counter()
    warm = warm_up()
    print(f"warm-up (numba kernels, excluded from timings): {warm:.2f} s", flush=True)
    import numba

    print("(a) 2D Ornstein-Uhlenbeck, full D", flush=True)
    rows_a, _ = case_ou(ou_grids, ou_N)
    print("(b) PRL Eq. (11) model", flush=True)
    rows_b, extra_b = case_prl(prl_ref, prl_grids, prl_N)
    rows = rows_a + rows_b
    res = analyse(rows)
    wall = time.perf_counter() - t_all

    print()
    cols = [
        ("case", "case", ""),
        ("method", "method", ""),
        ("size", "size", ""),
        ("dt", "dt", ".2g"),
        ("seconds", "seconds", ".3g"),
        ("err_L1", "err_L1", ".2e"),
        ("err_L1x", "err_L1x", ".2e"),
        ("err_cov", "err_cov", ".2e"),
        ("noise_L1", "noise_L1", ".2e"),
        ("dt_bias_L1", "dt_bias_L1", ".1e"),
        ("dt_bias_cov", "dt_bias_cov", ".1e"),
    ]
    table = C.print_table(rows, cols)

    print(
        "\nprl: particles histogrammed on each solver grid (L1 vs the reference summed onto that grid); "
        "solver on its own grid"
    )
    gl = [f"{a}x{b}" for a, b in prl_grids]
    head = "| N \\ grid | " + " | ".join(gl) + " |"
    lines = [head, "|" + "---|" * (len(gl) + 1)]
    for N, v in extra_b["particles_on_solver_grids"].items():
        lines.append(f"| particles {N} | " + " | ".join(f"{v[k]:.2e}" for k in gl) + " |")
    lines.append(
        "| solver (own grid) | "
        + " | ".join(f"{r['err_L1_own']:.2e}" for r in rows_b if r["method"] == "solver")
        + " |"
    )
    grid_table = "\n".join(lines)
    print(grid_table)

    print("\nconvergence orders (log-log slopes):")
    for case, r in res.items():
        print(
            f"  {case}: solver err ~ h^p, p = "
            + ", ".join(f"{k} {v:.2f}" for k, v in r["solver_order_in_h"].items())
            + ";  particles err ~ N^q, q = "
            + ", ".join(f"{k} {v:.2f}" for k, v in r["particle_order_in_N"].items())
        )
    print("\nat equal wall time: particle error / solver error (particles interpolated to the solver's seconds):")
    ratio_lines = []
    for case, r in res.items():
        for m, lst in r["ratios"].items():
            s = ", ".join(f"{x['size']} {x['ratio']:.3g}{'*' if x['how'] == 'extrap' else ''}" for x in lst)
            ratio_lines.append(f"  {case} {m}: {s}")
    print("\n".join(ratio_lines) + "\n  (* = particle curve extrapolated by its power-law fit)")
    for case, r in res.items():
        h = r["headline"]["err_L1"]
        print(
            f"HEADLINE {case}: at {h['seconds']:.3g} s (solver {h['size']}) the solver's L1 error {h['solver']:.2e} "
            f"is {h['ratio']:.3g}x smaller than the particles' ({h['particles']:.2e}, {h['how']}); "
            f"covariance: {r['headline']['err_cov']['ratio']:.3g}x, x-marginal: {r['headline']['err_L1x']['ratio']:.3g}x"  # noqa: E501
        )
    print(f"\ntotal {wall:.1f} s")

    out = {
        "mode": "quick" if args.quick else "full" if args.full else "default",
        "rows": rows,
        "analysis": res,
        "prl": extra_b,
        "warmup_s": warm,
        "wall_s": wall,
        "blas_threads": args.blas_threads,
        "numba_threads": numba.get_num_threads(),
        "machine": C.machine_info(),
        "load_average": list(os.getloadavg()),
        "table": table,
        "grid_table": grid_table,
        "ou": {"A": A_OU.tolist(), "D": D_OU.tolist(), "S": S_OU.tolist(), "partition": OU_M},
        "prl_setup": {"Delta": DELTA, "kappa": KAPPA, "box": PRL_BOX, "partition": PRL_M, "tau": PRL_TAU},
    }
    path = os.path.join(HERE, "solver_vs_particles.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1, default=float)
    print(f"wrote {path}")
    if args.png:
        png = os.path.join(HERE, "solver_vs_particles.png")
        plot(rows, png)
        print(f"wrote {png}")


if __name__ == "__main__":
    main()
