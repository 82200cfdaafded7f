"""The phase diagrams and search times of Yang, Tang & Tu, PRL 130, 237101 (2023), as sweep point functions.

* Fig. 5(b): :func:`prl_steady_point` (the Fokker-Planck steady state at one ``Delta_S``), :func:`prl_sgd_point`
  and :func:`prl_sde_point` (discrete SGD and Ito-SDE particles at one ``(eta, sigma)``); :func:`prl_phase_diagram`
  runs the particle and solver sweeps together.
* Search times: :func:`prl_search_point` (particles and MFPT at one ``Delta_S``), :func:`prl_search_time_point`,
  :func:`prl_search_diagram`.
* Fig. 3(c): :func:`highdim_sgd_point`, the steady-state flatness of the high-dimensional model (``N_S = 5``,
  ``N_F = 100``), and :func:`highdim_phase_diagram`.

Both diagrams are tables indexed ``[sigma, eta]``; :func:`save_phase_diagram` writes them (``fokkerplanck
phase-diagram``). The point functions are registered by name in :data:`fokkerplanck.scale.sweep.POINT_FUNCTIONS`
(``"prl_steady"``, ``"prl_sgd"``, ``"prl_sde"``, ``"prl_search"``, ``"prl_search_sgd"``, ``"highdim_sgd"``).
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path

import numpy as np

from ..numerics.operator import DEFAULT_STENCIL_RADIUS
from ..scale.sweep import SweepResult, register_point_function, sweep

__all__ = [
    "prl_steady_point",
    "prl_sgd_point",
    "prl_sde_point",
    "prl_search_point",
    "prl_search_time_point",
    "prl_phase_diagram",
    "prl_search_diagram",
    "highdim_sgd_point",
    "highdim_phase_diagram",
    "save_phase_diagram",
    "PRL_FIG5B_ETAS",
    "PRL_FIG5B_SIGMAS",
    "HIGHDIM_LAMBDAS",
    "HIGHDIM_ETAS",
    "HIGHDIM_SIGMAS",
]


# ------------------------------------------------------------------------------------------------------------
# built-in point functions: the PRL Fig. 5 model  L = eps l0 x^2/2 + lambda(x) y^2/2,  lambda = 8 - 2x^2 + x^4
# ------------------------------------------------------------------------------------------------------------
def _prl_landscape(eps, lambdas):
    from ..model.landscapes import DegenerateValley

    return DegenerateValley(lambdas=tuple(float(v) for v in lambdas), eps=float(eps))


def _flat_optimum(land) -> tuple[float, float]:
    """``(x_F, F(x_F))``: the flattest solution of a DegenerateValley on ``x >= 0`` (dense scan on [0, 3])."""
    x = np.linspace(0.0, 3.0, 30001)
    F = land.flatness(x)
    k = int(np.nanargmax(F))
    return float(x[k]), float(F[k])


def prl_steady_point(
    delta_s: float,
    eps: float = 1e-3,
    lambdas=(8.0, -2.0, 1.0),
    cells=(120, 80),
    x_max: float = 2.0,
    y_max: float | None = None,
    stencil_radius: int = DEFAULT_STENCIL_RADIUS,
    quick: bool = False,
) -> dict:
    """Steady state of the Fokker-Planck equation with SGD noise ``D = Delta_S H^2`` (:class:`HessianAligned`) on
    the PRL Fig. 5 landscape (``DegenerateValley(lambdas, eps)``), reflecting box ``[-x_max, x_max] x
    [-y_max, y_max]`` (``y_max`` default ``max(0.6, 6 sqrt(Delta_S lambda_0))``, six standard deviations of
    ``y``). The FP model depends on ``eta`` and ``sigma`` only through ``Delta_S = eta sigma``.

    Returns ``mean_abs_x`` ``<|x|>``, ``x_peak`` (``|x|`` at the peak of the x-marginal), ``flatness`` =
    ``F(<|x|>) = lambda(<|x|>)^(-1/2)``, ``mean_flatness`` ``<F(x)>``, ``flatness_min`` ``F(0)`` and
    ``flatness_max`` ``F(x_F)``, ``transition`` ``Delta_S* = -eps/lambda_1``, and diagnostics ``wall_ratio``,
    ``residual``, ``split_gap`` (None, or how far the answer moved from another start when the wells are joined
    by rates below the LU's round-off: their split is then the symmetric one of a uniform start, see
    :func:`fokkerplanck.solvers.steady.steady_state`), ``shrunk_cells`` / ``min_cross_factor`` (cells whose
    cross-diffusion the monotone stencil had
    to scale down -- on this landscape near every cell: ``<|x|>`` then depends on ``stencil_radius``),
    ``error_estimate`` (the measured estimate of :func:`fokkerplanck.solvers.steady.steady_state`, L1),
    ``seconds``. ``quick`` halves the grid."""
    from ..model.grid import Grid
    from ..model.noise import HessianAligned
    from ..model.problem import Problem
    from ..sgd import theory
    from ..solvers.steady import steady_state

    land = _prl_landscape(eps, lambdas)
    nx, ny = (int(cells[0]) // 2, int(cells[1]) // 2) if quick else (int(cells[0]), int(cells[1]))
    if y_max is None:
        y_max = max(0.6, 6.0 * math.sqrt(float(delta_s) * float(land.lambdas[0])))
    grid = Grid([(-x_max, x_max, nx), (-y_max, y_max, ny)], bc="reflecting")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the cross-diffusion warning is reported in the row instead
        ss = steady_state(Problem(grid, land, HessianAligned(float(delta_s))), stencil_radius=stencil_radius)
    mx = ss.marginal(0)
    x = mx.grid.centers[0]
    w = mx.values * mx.grid.spacing[0]
    w = w / w.sum()
    mean_abs = float(np.sum(np.abs(x) * w))
    xF, FF = _flat_optimum(land)
    lam1 = float(land.lambdas[1]) if land.lambdas.size > 1 else 0.0
    return {
        "delta_s": float(delta_s),
        "mean_abs_x": mean_abs,
        "x_peak": float(abs(x[int(np.argmax(mx.values))])),
        "flatness": float(land.flatness(mean_abs)),
        "mean_flatness": float(np.sum(land.flatness(x) * w)),
        "flatness_min": float(land.flatness(0.0)),
        "flatness_max": FF,
        "x_flattest": xF,
        "transition": theory.transition_noise(land.eps, lam1) if lam1 < 0 else None,
        "wall_ratio": float(ss.info.get("wall_ratio") or 0.0),
        "residual": float(ss.info.get("residual", float("nan"))),
        "shrunk_cells": int(ss.info.get("cross_diffusion_shrunk_cells", 0)),
        "min_cross_factor": float(ss.info.get("cross_diffusion_min_factor", 1.0)),
        "split_gap": ss.info.get("split_gap"),
        "error_estimate": ss.info.get("error_estimate"),
        "stencil_radius": stencil_radius,
        "cells": [nx, ny],
        "seconds": time.perf_counter() - t0,
    }


def _particle_summary(land, ens_pos, live, times, mean_abs_t, avg_from: float) -> dict:
    """Steady-state statistics of a particle run: ``<|x|>`` time-averaged over the recorded times after
    ``avg_from * t_end`` (the PRL's "time averaging of x_t after convergence"), flatness of it, ``<F>``
    over the final live particles."""
    t = np.asarray(times)
    sel = t >= avg_from * t[-1]
    ma = np.asarray(mean_abs_t, dtype=float)
    good = sel & np.isfinite(ma)
    mean_abs = float(np.mean(ma[good])) if good.any() else float("nan")
    x_fin = ens_pos[live, 0]
    out = {
        "mean_abs_x": mean_abs,
        "mean_abs_x_final": float(np.mean(np.abs(x_fin))) if x_fin.size else float("nan"),
        "mean_abs_x_stderr": float(np.std(np.abs(x_fin), ddof=1) / math.sqrt(x_fin.size))
        if x_fin.size > 1
        else float("nan"),
        "flatness": float(land.flatness(mean_abs)) if np.isfinite(mean_abs) else float("nan"),
        "mean_flatness": float(np.mean(land.flatness(x_fin))) if x_fin.size else float("nan"),
    }
    return out


def prl_sgd_point(
    eta: float,
    sigma: float,
    n_particles: int = 1000,
    n_steps: int | None = None,
    t_end: float = 1600.0,
    seed: int = 0,
    theta0=(1.5, 1.5),
    eps: float = 1e-3,
    lambdas=(8.0, -2.0, 1.0),
    shift: str = "linear",
    n_records: int = 20,
    average_from: float = 0.5,
    divergence_threshold: float = 1e3,
    quick: bool = False,
) -> dict:
    """Discrete random-shift SGD particles (PRL Eq. 7) on the PRL Fig. 5 landscape, all started at ``theta0``.

    Returns ``delta_s`` ``= eta sigma``, ``mean_abs_x`` (``<|x|>`` over live particles, time-averaged over the
    last ``1 - average_from`` of the run), ``mean_abs_x_final`` (+ ``_stderr``), ``flatness`` ``F(<|x|>)``,
    ``mean_flatness`` ``<F(x)>``, ``diverged`` (fraction; ``|theta| > divergence_threshold``), ``t_end``
    (``n_steps eta``), ``seconds``. The run lasts ``n_steps`` steps, or ``t_end / eta`` (default: the same time
    ``t = 1600`` whatever ``eta``: below ``Delta_S*`` the approach to ``x = 0`` has rate ``~ eps lambda_0`` and
    slows down critically near ``Delta_S*``). ``quick``: 200 particles, a quarter of the steps.
    Near ``Delta_S*`` the relaxation is critically slow: check ``mean_abs_x_final`` against ``mean_abs_x``."""
    from ..particles import simulate

    land = _prl_landscape(eps, lambdas)
    n = 200 if quick else int(n_particles)
    steps = int(n_steps) if n_steps is not None else int(round(float(t_end) / float(eta)))
    steps = max(1, steps // 4) if quick else steps
    rec = max(1, steps // max(1, int(n_records)))
    t0 = time.perf_counter()
    ens = simulate(
        land,
        method="sgd",
        n_particles=n,
        theta0=np.asarray(theta0, float),
        eta=float(eta),
        sigma=float(sigma),
        n_steps=steps,
        shift=shift,
        seed=int(seed),
        record_every=rec,
        divergence_threshold=float(divergence_threshold),
    )
    out = {
        "delta_s": float(eta) * float(sigma),
        "diverged": float(ens.diverged.mean()),
        "t_end": steps * float(eta),
        "n_particles": n,
    }
    out.update(_particle_summary(land, ens.positions, ens.alive, ens.times, ens.stats["mean_abs"][:, 0], average_from))
    out["seconds"] = time.perf_counter() - t0
    return out


def prl_sde_point(
    delta_s: float,
    dt: float = 0.01,
    t_end: float = 1600.0,
    n_particles: int = 1000,
    seed: int = 0,
    theta0=(1.5, 1.5),
    eps: float = 1e-3,
    lambdas=(8.0, -2.0, 1.0),
    n_records: int = 20,
    average_from: float = 0.5,
    quick: bool = False,
) -> dict:
    """Euler-Maruyama particles of the SDE behind the Fokker-Planck model, ``D = Delta_S H^2`` (the continuum
    limit ``eta -> 0`` of the SGD at fixed ``Delta_S``): the Monte Carlo reference for :func:`prl_steady_point`.
    Same outputs as :func:`prl_sgd_point` (no divergence at small ``dt``)."""
    from ..model.noise import HessianAligned
    from ..particles import simulate

    land = _prl_landscape(eps, lambdas)
    n = 200 if quick else int(n_particles)
    t_end = float(t_end) / 4 if quick else float(t_end)
    steps = int(round(t_end / float(dt)))
    rec = max(1, steps // max(1, int(n_records)))
    t0 = time.perf_counter()
    ens = simulate(
        land,
        HessianAligned(float(delta_s)),
        method="sde",
        n_particles=n,
        theta0=np.asarray(theta0, float),
        dt=float(dt),
        n_steps=steps,
        seed=int(seed),
        record_every=rec,
    )
    out = {
        "delta_s": float(delta_s),
        "diverged": float(ens.diverged.mean()),
        "t_end": steps * float(dt),
        "n_particles": n,
    }
    out.update(_particle_summary(land, ens.positions, ens.alive, ens.times, ens.stats["mean_abs"][:, 0], average_from))
    out["seconds"] = time.perf_counter() - t0
    return out


def prl_search_point(
    delta_s: float,
    eta: float = 0.04,
    n_particles: int = 300,
    n_steps: int = 100_000,
    n_records: int = 400,
    theta0=(1.5, 1.5),
    tol: float = 0.05,
    eps: float = 1e-3,
    lambdas=(8.0, -2.0, 1.0),
    cells=(120, 80),
    stencil_radius: int = DEFAULT_STENCIL_RADIUS,
    seed: int = 0,
    quick: bool = False,
) -> dict:
    """Search time of the PRL Fig. 5 model at one ``Delta_S``: SGD particles at learning rate ``eta`` (``sigma =
    Delta_S / eta``) and the MFPT of the Fokker-Planck model, each to its own steady-state ``<|x|>`` (particles:
    late-time mean; solver: :func:`prl_steady_point`). Returns ``tau_particles``,
    ``tau_particles_reached``, ``x_ss_particles``, ``tau_mfpt``, ``x_ss_solver``, ``t_end``, ``seconds``."""
    from ..model.grid import Grid
    from ..model.landscapes import DegenerateValley
    from ..model.noise import HessianAligned
    from ..model.problem import Problem
    from .flatness import search_time_mfpt, search_time_particles

    t0 = time.perf_counter()
    land = DegenerateValley(lambdas=tuple(float(v) for v in lambdas), eps=float(eps))
    n = 100 if quick else int(n_particles)
    steps = int(n_steps) // 4 if quick else int(n_steps)
    sp = search_time_particles(
        land,
        theta0=theta0,
        n_particles=n,
        method="sgd",
        eta=float(eta),
        sigma=float(delta_s) / float(eta),
        n_steps=steps,
        n_records=int(n_records),
        tol=tol,
        seed=seed,
    )
    ss = prl_steady_point(delta_s, eps=eps, lambdas=lambdas, cells=cells, stencil_radius=stencil_radius, quick=quick)
    nx, ny = ss["cells"]
    y_max = max(0.6, 6.0 * math.sqrt(float(delta_s) * float(land.lambdas[0])))
    grid = Grid([(-2.0, 2.0, nx), (-y_max, y_max, ny)], bc="reflecting")
    mf = search_time_mfpt(
        Problem(grid, land, HessianAligned(float(delta_s))),
        ss["mean_abs_x"],
        theta0,
        tol=tol,
        stencil_radius=stencil_radius,
    )
    return {
        "delta_s": float(delta_s),
        "eta": float(eta),
        "tau_particles": sp["tau_s"],
        "tau_particles_stderr": sp["stderr"],
        "tau_particles_reached": sp["reached"],
        "x_ss_particles": sp["x_ss"],
        "diverged": sp["diverged"],
        "t_end": sp["t_end"],
        "tau_mfpt": mf["tau_s"],
        "x_ss_solver": ss["mean_abs_x"],
        "mfpt_theta0": mf["theta0"],
        "seconds": time.perf_counter() - t0,
    }


# ------------------------------------------------------------------------------------------------------------
# the high-dimensional model (PRL Eq. 5, N_S = 5 sharp and N_F = 100 flat variables): Fig. 3(c)
# ------------------------------------------------------------------------------------------------------------
#: Default coefficients ``lambda^(i)(r) = l0 + l1 r + l2 r^2`` (``r = |x|^2``) of the five sharp directions of
#: :func:`highdim_sgd_point`. The PRL gives its high-dimensional coefficients only in its Supplemental Material;
#: these are our choice: positive everywhere, the first row is the Fig. 5 model, the others have their
#: flattest radius at ``r = 1, 1.5, 0.5, 1.5`` and their own ``l1 / l0`` (so their transitions differ and blur,
#: as the PRL says of Fig. 3c). ``lambda_bar0 = 5.2``.
HIGHDIM_LAMBDAS = ((8.0, -2.0, 1.0), (6.0, -3.0, 1.5), (5.0, -1.5, 0.5), (4.0, -1.0, 1.0), (3.0, -1.2, 0.4))


def _highdim_landscape(n_flat, n_sharp, lambdas, eps):
    from ..model.landscapes import HighDimValley

    if lambdas is None:
        lambdas = [HIGHDIM_LAMBDAS[i % len(HIGHDIM_LAMBDAS)] for i in range(int(n_sharp))]
    return HighDimValley(
        n_flat=int(n_flat), n_sharp=int(n_sharp), lambdas=np.asarray(lambdas, dtype=float), eps=float(eps)
    )


def _highdim_flat_range(land) -> dict:
    """``F(0)`` (the global minimum), the flattest radius ``|x_F|`` and ``F(x_F)`` (dense scan of ``|x|`` in
    [0, 3]), and ``lambda_max(0)`` (the sharpest direction at the global minimum) of a HighDimValley."""
    rad = np.linspace(0.0, 3.0, 6001)
    pts = np.zeros((rad.size, land.n_flat))
    pts[:, 0] = rad
    with np.errstate(invalid="ignore", divide="ignore"):
        F = land.flatness(pts)
    k = int(np.nanargmax(F))
    return {
        "flatness_min": float(F[0]),
        "flatness_max": float(F[k]),
        "x_flattest": float(rad[k]),
        "lambda_max_at_0": float(np.max(land.lambdas[:, 0])),
    }


def highdim_sgd_point(
    eta: float,
    sigma: float,
    n_particles: int = 100,
    t_end: float = 800.0,
    n_steps: int | None = None,
    seed: int = 0,
    n_flat: int = 100,
    n_sharp: int = 5,
    lambdas=None,
    eps: float = 1e-3,
    x0_norm: float = 0.1,
    y0: float = 0.1,
    shift: str = "linear",
    n_records: int = 20,
    average_from: float = 0.5,
    divergence_threshold: float = 1e3,
    quick: bool = False,
) -> dict:
    """Steady-state flatness of discrete random-shift SGD particles (PRL Eq. 7) on the high-dimensional valley
    (PRL Eq. 5 with the degeneracy-breaking term; :class:`~fokkerplanck.model.landscapes.HighDimValley`):

        L(x, y) = 1/2 sum_i lambda^(i)(x) y_i^2 + (eps/2) lambda_bar0 |x|^2,   x in R^N_F, y in R^N_S,
        theta_{t+1} = theta_t - eta (grad L(theta_t) - H(theta_t) mu_t),  mu_t ~ N(0, 2 sigma I),

    with ``lambda^(i)`` polynomials in ``|x|^2`` (``lambdas``: ``(n_sharp, K)``; default
    :data:`HIGHDIM_LAMBDAS`). Each particle starts at ``x = x0_norm u`` (``u`` a random unit vector, seeded)
    and ``y_i = y0``, near the sharpest point ``x = 0`` (the global minimum), and runs ``n_steps`` steps or
    ``t_end / eta`` (time ``t = step eta``; default the same ``t = 800`` for every ``eta``). The flatness of a
    particle is PRL Eq. (6), ``F(x) = prod_i lambda^(i)(x)^(-1/(2 N_S))``.

    Returns

    * ``mean_flatness``: ``<F(x)>`` over live particles, averaged over the ``n_records`` record times
      ``t >= average_from * t_end`` (the PRL's time average after convergence: Fig. 3c's average flatness of
      the steady-state solution); ``mean_flatness_final`` and ``mean_flatness_stderr`` (``std / sqrt(n_live)``)
      at the last record; ``mean_flatness_drift``: the late-time average over the last quarter of the run
      minus the one over the quarter before it (near 0 once converged; positive while still flattening);
    * ``flatness``: ``F`` at the time-averaged ``<|x|>`` (``mean_abs_x``), as :func:`prl_sgd_point` reports;
    * ``diverged``: fraction of particles with ``|theta| > divergence_threshold`` (or non-finite) at the end;
    * ``mean_lambda``: ``<lambda^(i)(x)>_ss`` per sharp direction (time-averaged like ``mean_flatness``) and
      ``eta_lambda``: ``eta max_i <lambda^(i)>_ss``, the PRL's convergence parameter -- the discrete SGD of a
      sharp direction is stable for ``eta <lambda> < 2`` (:func:`fokkerplanck.sgd.theory.sgd_converges`);
      ``eta_lambda_0``: ``eta max_i lambda^(i)(0)``, the same at the global minimum;
    * ``flatness_min`` ``F(0)``, ``flatness_max`` ``F(x_F)``, ``x_flattest`` ``|x_F|``, ``delta_s`` ``= eta sigma``,
      ``t_end``, ``n_particles``, ``seconds``.

    ``quick``: 24 particles, a quarter of the steps. NaN entries mean no particle survived."""
    from ..sgd.flatness import flat_norm, flatness_of_points, particle_record

    land = _highdim_landscape(n_flat, n_sharp, lambdas, eps)
    n = 24 if quick else int(n_particles)
    steps = int(n_steps) if n_steps is not None else int(round(float(t_end) / float(eta)))
    steps = max(1, steps // 4) if quick else max(1, steps)
    rng = np.random.default_rng([int(seed), 0x5EED])
    u = rng.normal(size=(n, land.n_flat))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    theta0 = np.concatenate([float(x0_norm) * u, np.full((n, land.n_sharp), float(y0))], axis=1)
    nf = land.n_flat
    obs = {"flatness": lambda p: flatness_of_points(land, p), "abs_x": lambda p: flat_norm(land, p)}
    for i in range(land.n_sharp):
        obs[f"lambda{i}"] = lambda p, i=i: land.lam(p[:, :nf])[:, i]
    t0 = time.perf_counter()
    with np.errstate(invalid="ignore", over="ignore"):
        rec = particle_record(
            land,
            method="sgd",
            theta0=theta0,
            n_particles=n,
            eta=float(eta),
            sigma=float(sigma),
            n_steps=steps,
            n_records=int(n_records),
            seed=int(seed),
            observables=obs,
            divergence_threshold=float(divergence_threshold),
        )
    t = rec.times
    late = (t >= float(average_from) * t[-1]) & (t > 0)
    q3 = (t >= 0.5 * t[-1]) & (t < 0.75 * t[-1]) & (t > 0)
    q4 = (t >= 0.75 * t[-1]) & (t > 0)

    def tavg(name, sel):
        m, _ = rec.mean(name)
        m = m[sel]
        m = m[np.isfinite(m)]
        return float(m.mean()) if m.size else float("nan")

    mF, seF = rec.mean("flatness")
    lam = [tavg(f"lambda{i}", late) for i in range(land.n_sharp)]
    lam_max = float(np.max(lam)) if np.all(np.isfinite(lam)) else float("nan")
    mean_abs = tavg("abs_x", late)
    r = np.zeros((1, nf))
    r[0, 0] = mean_abs if np.isfinite(mean_abs) else 0.0
    ref = _highdim_flat_range(land)
    out = {
        "delta_s": float(eta) * float(sigma),
        "mean_flatness": tavg("flatness", late),
        "mean_flatness_final": float(mF[-1]),
        "mean_flatness_stderr": float(seF[-1]),
        "mean_flatness_drift": tavg("flatness", q4) - tavg("flatness", q3),
        "flatness": float(land.flatness(r)[0]) if np.isfinite(mean_abs) else float("nan"),
        "mean_abs_x": mean_abs,
        "diverged": float(1.0 - rec.alive[-1].mean()),
        "mean_lambda": lam,
        "eta_lambda": float(eta) * lam_max,
        "eta_lambda_0": float(eta) * ref["lambda_max_at_0"],
        **{k: ref[k] for k in ("flatness_min", "flatness_max", "x_flattest")},
        "t_end": steps * float(eta),
        "n_particles": n,
        "n_flat": land.n_flat,
        "n_sharp": land.n_sharp,
        "seconds": time.perf_counter() - t0,
    }
    return out


def prl_search_time_point(
    eta: float,
    sigma: float,
    n_particles: int = 200,
    t_end: float = 1600.0,
    n_records: int = 400,
    theta0=(1.5, 1.5),
    tol: float = 0.05,
    eps: float = 1e-3,
    lambdas=(8.0, -2.0, 1.0),
    seed: int = 0,
    quick: bool = False,
) -> dict:
    """Search time of the discrete random-shift SGD on the PRL Fig. 5 landscape at one ``(eta, sigma)`` (PRL
    Fig. 5d): ``tau_s = eta <t_s>``, the mean first record time (time ``t = step eta``) at which a particle's
    ``|x|`` lies within ``tol`` of the steady-state solution ``x_ss`` -- the late-time ``<|x|>`` of the same run
    (:func:`fokkerplanck.sgd.flatness.search_time_particles`; ``n_records`` records over ``t_end``, which sets the
    time resolution ``t_end / n_records``). All particles start at ``theta0``.

    Returns ``delta_s``, ``tau_s`` (+ ``tau_s_stderr``), ``reached`` (fraction that got there; the others are
    left out, so ``tau_s`` is then a lower bound), ``x_ss``, ``diverged``, ``resolution``, ``t_end``,
    ``seconds``. ``quick``: 50 particles, a quarter of the time."""
    from ..sgd.flatness import search_time_particles

    land = _prl_landscape(eps, lambdas)
    n = 50 if quick else int(n_particles)
    t_run = float(t_end) / 4 if quick else float(t_end)
    steps = max(1, int(round(t_run / float(eta))))
    t0 = time.perf_counter()
    with np.errstate(invalid="ignore", over="ignore"):
        st = search_time_particles(
            land,
            theta0=np.asarray(theta0, float),
            n_particles=n,
            method="sgd",
            eta=float(eta),
            sigma=float(sigma),
            n_steps=steps,
            n_records=min(int(n_records), steps),
            tol=float(tol),
            seed=int(seed),
        )
    return {
        "delta_s": float(eta) * float(sigma),
        "tau_s": st["tau_s"],
        "tau_s_stderr": st["stderr"],
        "reached": st["reached"],
        "x_ss": st["x_ss"],
        "diverged": st["diverged"],
        "resolution": st["resolution"],
        "t_end": st["t_end"],
        "n_particles": n,
        "seconds": time.perf_counter() - t0,
    }


for _name, _func in {
    "prl_steady": prl_steady_point,
    "prl_sgd": prl_sgd_point,
    "prl_sde": prl_sde_point,
    "prl_search": prl_search_point,
    "prl_search_sgd": prl_search_time_point,
    "highdim_sgd": highdim_sgd_point,
}.items():
    register_point_function(_name, _func)


def _particle_tables(point, etas, sigmas, fixed: dict, columns: dict, **runner):
    """Sweep a particle point function over ``(eta, sigma)`` and pivot the ``columns`` (table name -> output)
    into tables indexed ``[sigma, eta]``; returns ``(SweepResult, tables)``."""
    part = sweep(point, {"eta": etas, "sigma": sigmas}, fixed=fixed, **runner)
    return part, {name: part.pivot("sigma", "eta", col) for name, col in columns.items()}


def _transition_estimate(delta, mean_abs, threshold: float) -> float | None:
    """Smallest ``Delta_S`` where ``<|x|>`` first exceeds ``threshold`` (linear interpolation), else None."""
    d = np.asarray(delta, float)
    m = np.asarray(mean_abs, float)
    order = np.argsort(d)
    d, m = d[order], m[order]
    for k in range(1, d.size):
        if np.isfinite(m[k]) and np.isfinite(m[k - 1]) and m[k - 1] < threshold <= m[k]:
            return float(d[k - 1] + (threshold - m[k - 1]) * (d[k] - d[k - 1]) / (m[k] - m[k - 1]))
    return None


def _theory_curve(land, etas) -> list:
    """``[sigma*, eta]`` pairs of the discrete-SGD transition ``sigma* = Delta_S*(eta) / eta``
    (:func:`fokkerplanck.sgd.theory.valley_transition_noise`) on 60 learning rates spanning ``etas`` (x 1.5 either
    side), leaving out those with no transition."""
    from ..sgd import theory

    pts = []
    for e in np.geomspace(min(etas) / 1.5, max(etas) * 1.5, 60).tolist():
        try:
            pts.append([theory.valley_transition_noise(land, e) / e, e])
        except ValueError:
            pass
    return pts


def prl_phase_diagram(
    etas=(0.01, 0.02, 0.04, 0.08),
    sigmas=(0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16),
    delta_s=None,
    *,
    particles: dict | None = None,
    solver: dict | None = None,
    threshold: float = 0.1,
    cache_dir=None,
    scheduler=None,
    n_workers=None,
    progress=None,
    quick: bool = False,
    out=None,
) -> dict:
    """PRL Fig. 5(b): the (sigma, eta) phase diagram of the SGD steady state, from discrete SGD particles
    (:func:`prl_sgd_point`, keyword overrides in ``particles``) and from the Fokker-Planck solver as a function
    of ``Delta_S = eta sigma`` (:func:`prl_steady_point`, overrides in ``solver``; the FP model only depends on
    the product). The transition is located where ``<|x|>`` first exceeds ``threshold``, and compared with
    ``Delta_S* = -eps/lambda_1``.

    Returns a dict: ``particles`` and ``solver`` (SweepResults), ``Z_mean_abs_x`` / ``Z_flatness`` /
    ``Z_diverged`` (arrays indexed ``[sigma, eta]``), ``etas``, ``sigmas``, ``transition_theory``,
    ``transition_theory_curve`` (``[sigma*, eta]`` pairs with the discrete-SGD factor of
    :func:`fokkerplanck.sgd.theory.valley_transition_noise`, which lowers ``Delta_S*`` as ``eta`` grows),
    ``transition_solver`` (in Delta_S), ``transition_particles`` (per eta: Delta_S where ``<|x|>`` crosses).
    ``out`` writes ``out/result.json`` with all of it."""
    from ..sgd import theory

    pkw = dict(particles or {})
    skw = dict(solver or {})
    etas, sigmas = [float(e) for e in etas], [float(s) for s in sigmas]
    common = dict(cache_dir=cache_dir, scheduler=scheduler, n_workers=n_workers, progress=progress, quick=quick)
    part = sweep(prl_sgd_point, {"eta": etas, "sigma": sigmas}, fixed=pkw, **common)
    if delta_s is None:
        delta_s = sorted({e * s for e in etas for s in sigmas})
    solv = sweep(prl_steady_point, {"delta_s": [float(d) for d in delta_s]}, fixed=skw, **common)
    Zm = part.pivot("sigma", "eta", "mean_abs_x")
    Zf = part.pivot("sigma", "eta", "flatness")
    Zd = part.pivot("sigma", "eta", "diverged")
    eps = float(skw.get("eps", pkw.get("eps", 1e-3)))
    lam1 = float((skw.get("lambdas") or pkw.get("lambdas") or (8.0, -2.0, 1.0))[1])
    params = {
        "function": "prl_phase_diagram",
        "etas": etas,
        "sigmas": sigmas,
        "delta_s": [float(d) for d in delta_s],
        "particles": pkw,
        "solver": skw,
        "quick": quick,
    }
    res = {
        "parameters": params,
        "particles": part,
        "solver": solv,
        "etas": etas,
        "sigmas": sigmas,
        "Z_mean_abs_x": Zm,
        "Z_flatness": Zf,
        "Z_diverged": Zd,
        "transition_theory": theory.transition_noise(eps, lam1) if lam1 < 0 else None,
        "transition_theory_curve": _theory_curve(
            _prl_landscape(eps, skw.get("lambdas") or pkw.get("lambdas") or (8.0, -2.0, 1.0)), etas
        ),
        "transition_solver": _transition_estimate(solv.column("delta_s"), solv.column("mean_abs_x"), threshold),
        "transition_particles": {
            str(e): _transition_estimate([e * s for s in sigmas], Zm[:, j], threshold) for j, e in enumerate(etas)
        },
        "threshold": threshold,
    }
    if out is not None:
        save_phase_diagram(res, out)
    return res


def prl_search_diagram(
    etas=(0.01, 0.02, 0.04, 0.08, 0.16),
    sigmas=(0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16),
    *,
    point: dict | None = None,
    diverged_threshold: float = 0.5,
    cache_dir=None,
    scheduler=None,
    n_workers=None,
    progress=None,
    quick: bool = False,
    out=None,
) -> dict:
    """PRL Fig. 5(d): the (sigma, eta) phase diagram of the search time ``tau_s = eta <t_s>`` of random-shift
    SGD on the PRL Fig. 5 landscape (:func:`prl_search_time_point`; keyword overrides in ``point``). The search
    slows down critically near the transition ``Delta_S* = -eps/lambda_1`` and speeds up beyond it, until the
    dynamics diverges.

    Returns a dict: ``particles`` (the SweepResult), tables indexed ``[sigma, eta]``: ``Z_search_time``,
    ``Z_search_time_stderr``, ``Z_reached``, ``Z_x_ss``, ``Z_diverged``; ``transition_theory``
    (``-eps/lambda_1``), ``transition_theory_curve`` (as in :func:`prl_phase_diagram`), ``slowest`` (per eta:
    the ``Delta_S`` of the longest search time among cells that did not diverge -- the critical slowing
    down). ``out`` writes ``out/result.json`` (:func:`save_phase_diagram`)."""
    from ..sgd import theory

    pkw = dict(point or {})
    etas, sigmas = [float(e) for e in etas], [float(s) for s in sigmas]
    part, Z = _particle_tables(
        prl_search_time_point,
        etas,
        sigmas,
        pkw,
        {
            "Z_search_time": "tau_s",
            "Z_search_time_stderr": "tau_s_stderr",
            "Z_reached": "reached",
            "Z_x_ss": "x_ss",
            "Z_diverged": "diverged",
        },
        cache_dir=cache_dir,
        scheduler=scheduler,
        n_workers=n_workers,
        progress=progress,
        quick=quick,
    )
    eps = float(pkw.get("eps", 1e-3))
    lambdas = pkw.get("lambdas") or (8.0, -2.0, 1.0)
    slowest = {}
    for j, e in enumerate(etas):
        col = np.where(Z["Z_diverged"][:, j] < diverged_threshold, Z["Z_search_time"][:, j], np.nan)
        slowest[str(e)] = float(e * sigmas[int(np.nanargmax(col))]) if np.any(np.isfinite(col)) else None
    res = {
        "parameters": {
            "function": "prl_search_diagram",
            "etas": etas,
            "sigmas": sigmas,
            "point": pkw,
            "diverged_threshold": float(diverged_threshold),
            "quick": quick,
        },
        "particles": part,
        "etas": etas,
        "sigmas": sigmas,
        **Z,
        "transition_theory": theory.transition_noise(eps, float(lambdas[1])) if float(lambdas[1]) < 0 else None,
        "transition_theory_curve": _theory_curve(_prl_landscape(eps, lambdas), etas),
        "slowest": slowest,
        "diverged_threshold": float(diverged_threshold),
    }
    if out is not None:
        save_phase_diagram(res, out)
    return res


def save_phase_diagram(res: dict, out, *, command: str = "sweep", figures=(), notes=(), timings=None) -> Path:
    """Write a phase diagram of :func:`prl_phase_diagram`, :func:`prl_search_diagram` or
    :func:`highdim_phase_diagram` to
    ``out/result.json`` (parameters; every non-table entry and the sweep rows as metrics -- ``particle_rows``,
    ``solver_rows`` -- with the ``Z_*`` tables as nested lists indexed ``[sigma, eta]``) and ``out/arrays.npz``
    (the ``Z_*`` tables). Returns the path of ``result.json``."""
    from ..results import io

    sweeps = {k: v for k, v in res.items() if isinstance(v, SweepResult)}
    metrics = {k: v for k, v in res.items() if k != "parameters" and not isinstance(v, SweepResult)}
    for k, v in sweeps.items():
        metrics[("particle" if k == "particles" else k) + "_rows"] = v.rows
    arrays = {k: np.asarray(v, dtype=float) for k, v in res.items() if k.startswith("Z_")}
    t = {f"{k}_s": v.info["seconds"] for k, v in sweeps.items()}
    t.update(timings or {})
    return io.save(
        out,
        command=command,
        parameters=res.get("parameters", {}),
        metrics=metrics,
        arrays=arrays,
        timings=t,
        figures=figures,
        notes=notes,
    )


#: Axes of ``fokkerplanck phase-diagram prl-fig5b``: :func:`prl_phase_diagram`'s defaults widened to
#: ``eta = 0.16`` and ``sigma = 0.32``, so that all three phases of PRL Fig. 5(b) appear (I: the global
#: minimum, II: flatter solutions, III: divergence).
PRL_FIG5B_ETAS = (0.01, 0.02, 0.04, 0.08, 0.16)
PRL_FIG5B_SIGMAS = (0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32)

#: Default axes of :func:`highdim_phase_diagram` (``quick`` uses the second pair): learning rates from
#: well inside the stable range to beyond ``2 / lambda_max(0) = 0.25``, shift variances over three decades.
HIGHDIM_ETAS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32)
HIGHDIM_SIGMAS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
HIGHDIM_ETAS_QUICK = (0.02, 0.08, 0.32)
HIGHDIM_SIGMAS_QUICK = (0.001, 0.01, 0.1, 1.0)


def highdim_phase_diagram(
    etas=None,
    sigmas=None,
    *,
    point: dict | None = None,
    diverged_threshold: float = 0.5,
    threshold: float = 0.1,
    cache_dir=None,
    scheduler=None,
    n_workers=None,
    progress=None,
    quick: bool = False,
    out=None,
) -> dict:
    """PRL Fig. 3(c): the (sigma, eta) phase diagram of the average steady-state flatness of the
    high-dimensional model (``N_S = 5`` sharp, ``N_F = 100`` flat variables), from discrete random-shift SGD
    particles (:func:`highdim_sgd_point`; keyword overrides in ``point``, e.g. ``{"n_particles": 200}``).

    ``etas`` / ``sigmas`` default to :data:`HIGHDIM_ETAS` x :data:`HIGHDIM_SIGMAS` (7 x 7 points, a few minutes
    on two cores), or to the 3 x 4 quick axes when ``quick`` (which also shrinks each point). A cell counts as
    diverged when at least ``diverged_threshold`` of its particles diverged (the PRL's gray region).

    Returns a dict: ``particles`` (the SweepResult), ``etas``, ``sigmas``, tables indexed ``[sigma, eta]``:
    ``Z_flatness`` (time-averaged ``<F>``), ``Z_flatness_stderr``, ``Z_flatness_final``, ``Z_diverged``
    (fraction), ``Z_mean_abs_x``, ``Z_eta_lambda`` (``eta max_i <lambda^(i)>_ss``) and ``Z_drift``;
    ``flatness_min`` / ``flatness_max`` (``F(0)``, ``F(x_F)``), ``eta_max_at_0`` (``2 / max_i lambda^(i)(0)``:
    the linear-stability bound of ``eta <lambda> < 2`` at the global minimum), and ``convergence``: the
    convergence condition against the measured divergence -- the largest ``eta <lambda>_ss`` among cells that
    did not diverge, how many of them satisfy ``eta <lambda>_ss < 2``, and the diverged cells whose
    ``eta lambda_max(0) >= 2``. The onset of flattening is compared with the leading-order theory
    :func:`fokkerplanck.sgd.theory.valley_transition_noise`: ``transition_theory`` (``Delta_S*`` as ``eta -> 0``),
    ``transition_theory_eta`` (per ``eta``, with the discrete-SGD factor; ``None`` where ``eta lambda_0 >= 2``),
    ``transition_theory_curve`` (``[sigma*, eta]`` pairs, ``sigma* = Delta_S*(eta) / eta``, on a fine ``eta`` grid)
    and ``transition_particles`` (per ``eta``: the ``Delta_S`` at which ``<|x|>`` first exceeds ``threshold``,
    linear interpolation between cells; ``None`` when it does not). ``out`` writes ``out/result.json``
    (:func:`save_phase_diagram`)."""
    from ..sgd import theory

    pkw = dict(point or {})
    if etas is None:
        etas = HIGHDIM_ETAS_QUICK if quick else HIGHDIM_ETAS
    if sigmas is None:
        sigmas = HIGHDIM_SIGMAS_QUICK if quick else HIGHDIM_SIGMAS
    etas, sigmas = [float(e) for e in etas], [float(s) for s in sigmas]
    part, Z = _particle_tables(
        highdim_sgd_point,
        etas,
        sigmas,
        pkw,
        {
            "Z_flatness": "mean_flatness",
            "Z_flatness_stderr": "mean_flatness_stderr",
            "Z_flatness_final": "mean_flatness_final",
            "Z_diverged": "diverged",
            "Z_mean_abs_x": "mean_abs_x",
            "Z_eta_lambda": "eta_lambda",
            "Z_drift": "mean_flatness_drift",
        },
        cache_dir=cache_dir,
        scheduler=scheduler,
        n_workers=n_workers,
        progress=progress,
        quick=quick,
    )
    land = _highdim_landscape(pkw.get("n_flat", 100), pkw.get("n_sharp", 5), pkw.get("lambdas"), pkw.get("eps", 1e-3))
    ref = _highdim_flat_range(land)
    div = Z["Z_diverged"] >= float(diverged_threshold)
    el = Z["Z_eta_lambda"]
    ok = ~div & np.isfinite(el)
    eta_grid = np.broadcast_to(np.asarray(etas)[None, :], div.shape)
    conv = {
        "max_eta_lambda_converged": float(np.max(el[ok])) if ok.any() else None,
        "converged_cells": int(ok.sum()),
        "converged_cells_with_eta_lambda_below_2": int(np.sum(el[ok] < 2.0)),
        "diverged_cells": int(div.sum()),
        "diverged_cells_beyond_eta_max_at_0": int(np.sum(div & (eta_grid * ref["lambda_max_at_0"] >= 2.0))),
        "diverged_cells_min_delta_s": (
            float(np.min((eta_grid * np.asarray(sigmas)[:, None])[div])) if div.any() else None
        ),
    }

    def transition(eta):
        try:
            return theory.valley_transition_noise(land, eta)
        except ValueError:
            return None

    res = {
        "parameters": {
            "function": "highdim_phase_diagram",
            "etas": etas,
            "sigmas": sigmas,
            "point": pkw,
            "diverged_threshold": float(diverged_threshold),
            "threshold": float(threshold),
            "quick": quick,
            "landscape": land.params(),
        },
        "particles": part,
        "etas": etas,
        "sigmas": sigmas,
        **Z,
        "flatness_min": ref["flatness_min"],
        "flatness_max": ref["flatness_max"],
        "x_flattest": ref["x_flattest"],
        "eta_max_at_0": 2.0 / ref["lambda_max_at_0"],
        "diverged_threshold": float(diverged_threshold),
        "convergence": conv,
        "transition_theory": transition(0.0),
        "transition_theory_eta": {str(e): transition(e) for e in etas},
        "transition_theory_curve": _theory_curve(land, etas),
        "transition_particles": {
            str(e): _transition_estimate([e * s for s in sigmas], Z["Z_mean_abs_x"][:, j], threshold)
            for j, e in enumerate(etas)
        },
        "threshold": float(threshold),
    }
    if out is not None:
        save_phase_diagram(res, out)
    return res
