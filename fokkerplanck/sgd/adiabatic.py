"""Adiabatic-elimination checks of PRL Eqs. (11)-(12) with the grid solver.

PRL Eq. (11) is a time-scale-separation result, not an exact steady state: for ``L = 1/2 lambda(x) y^2``,
``D = diag(Delta/kappa, Delta)`` the computed x-marginal approaches ``lambda(x)^(-kappa/2)`` as ``Delta -> 0``.
:func:`adiabatic_error_study` measures that distance and its log-log slope in ``Delta``;
:func:`valley_effective_potential` extracts ``L_SGD(x) = L_eff(x, 0) - L(x, 0)`` (PRL Eq. 12) from a density.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

from ..model.density import Density
from ..model.grid import Grid
from ..results.compare import compare
from . import theory


def _interp_to_zero(logp: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
    """Quadratic (3-point Lagrange) interpolation of ``logp`` along ``axis`` to ``y = 0``: exact for a
    Gaussian profile in ``y``, whose log is a parabola."""
    if not (y[0] < 0 < y[-1]):
        raise ValueError("valley_effective_potential: the grid must contain y = 0 inside each sharp axis")
    k = int(np.argmin(np.abs(y)))
    k = min(max(k, 1), y.size - 2)
    idx = [k - 1, k, k + 1]
    ys = y[idx]
    out = 0.0
    for j, i in enumerate(idx):
        others = [ys[m] for m in range(3) if m != j]
        w = np.prod([(0.0 - o) / (ys[j] - o) for o in others])
        out = out + w * np.take(logp, i, axis=axis)
    return out


def valley_effective_potential(density: Density, landscape, scale: float, n_flat: int = 1, normalize_min: bool = True):
    """``L_SGD(x) = L_eff(x, 0) - L(x, 0)`` along the valley floor ``y = 0`` (PRL Eq. 12), with
    ``L_eff = -scale ln P`` (``Z`` drops out up to a constant).

    The first ``n_flat`` grid axes are the flat variables ``x``, the others sharp (``y``); ``ln P`` is
    interpolated to ``y = 0`` along each sharp axis with a 3-point parabola (exact for a Gaussian ``y``
    profile). Returns ``(x_centres, L_SGD)`` -- ``x_centres`` a list of 1D arrays, ``L_SGD`` of shape
    ``grid.shape[:n_flat]``, shifted to minimum 0 when ``normalize_min``."""
    grid = density.grid
    if not 1 <= n_flat < grid.ndim:
        raise ValueError(f"valley_effective_potential: need 1 <= n_flat < {grid.ndim}, got {n_flat}")
    with np.errstate(divide="ignore"):
        logp = np.log(np.clip(density.values, 1e-300, None))
    for ax in range(grid.ndim - 1, n_flat - 1, -1):
        logp = _interp_to_zero(logp, grid.centers[ax], ax)
    xs = [grid.centers[i] for i in range(n_flat)]
    mesh = np.stack(np.meshgrid(*xs, indexing="ij"), axis=-1)
    pts = np.concatenate([mesh, np.zeros(mesh.shape[:-1] + (grid.ndim - n_flat,))], axis=-1)
    L0 = np.asarray(landscape.loss(pts), dtype=float)
    Lsgd = -float(scale) * logp - L0
    if normalize_min:
        Lsgd = Lsgd - Lsgd.min()
    return xs, Lsgd


def adiabatic_error_study(
    deltas: Sequence[float],
    kappa: float = 3.0,
    lam_fn: Callable | None = None,
    *,
    x_range: tuple[float, float] = (-2.5, 2.5),
    nx: int = 160,
    ny: int = 120,
    y_sigmas: float = 6.0,
    lam_min: float | None = None,
) -> dict:
    """PRL Eq. (11) check: for each ``Delta``, the steady state of ``L = 1/2 lambda(x) y^2`` (``eps = 0``) with
    ``D = diag(Delta/kappa, Delta)`` on an ``nx x ny`` reflecting grid, ``y in +-y_sigmas sqrt(Delta/lam_min)``,
    and the L1 distance of its x-marginal to ``lambda(x)^(-kappa/2)`` normalised on the same x cells.

    ``lam_fn`` defaults to ``lambda(x) = 1 + x^2`` (``DegenerateValley(lambdas=(1, 1), eps=0)``); otherwise a
    :class:`~fokkerplanck.model.landscapes.Custom` landscape is built from it (``lam_fn`` must then also accept
    ``derivative=1, 2`` keyword for the gradient/Hessian -- or pass a polynomial via DegenerateValley).

    Returns ``{"deltas", "l1", "slope", "intercept", "seconds", "residuals"}``: ``slope`` is the least-squares
    slope of ``log l1`` against ``log Delta`` (1 for an O(Delta) adiabatic error)."""
    from ..model.landscapes import DegenerateValley
    from ..model.noise import Constant
    from ..model.problem import Problem
    from ..solvers.steady import steady_state

    if lam_fn is None:
        land = DegenerateValley(lambdas=(1.0, 1.0), eps=0.0)
    elif hasattr(lam_fn, "lam") and hasattr(lam_fn, "loss"):
        land = lam_fn
    else:
        raise TypeError(
            "adiabatic_error_study: lam_fn must be None or a DegenerateValley-like landscape "
            "(exact gradient and Hessian are needed)"
        )
    xs = np.linspace(*x_range, 2001)
    lmin = float(np.min(land.lam(xs))) if lam_min is None else float(lam_min)
    l1, secs, res = [], [], []
    for Delta in deltas:
        Delta = float(Delta)
        ymax = y_sigmas * np.sqrt(Delta / lmin)
        grid = Grid([(x_range[0], x_range[1], nx), (-ymax, ymax, ny)], bc="reflecting")
        t0 = time.perf_counter()
        ss = steady_state(Problem(grid, landscape=land, noise=Constant(np.diag([Delta / kappa, Delta]))), warn=False)
        secs.append(time.perf_counter() - t0)
        res.append(float(ss.info.get("residual", np.nan)))
        mx = ss.marginal(0)
        ref = theory.eq11_marginal_x(mx.grid, land, kappa)
        l1.append(compare(mx, ref)["l1"])
    d = np.log(np.asarray(deltas, dtype=float))
    e = np.log(np.asarray(l1))
    slope, intercept = np.polyfit(d, e, 1) if len(l1) > 1 else (np.nan, np.nan)
    return {
        "deltas": [float(x) for x in deltas],
        "l1": l1,
        "slope": float(slope),
        "intercept": float(intercept),
        "seconds": secs,
        "residuals": res,
        "kappa": float(kappa),
        "grid_cells": (nx, ny),
    }
