"""Mean first-passage times and escape rates from the backward equation.

The mean time ``T(theta)`` to reach a target set (or to leave through absorbing walls) solves the backward
(adjoint) equation of the generator,

    v . grad T + sum_ij D_ij d_i d_j T = -1      outside the target,      T = 0 on the target,

whose discrete form uses the transpose of the forward generator: ``(A^T T)_n = sum_m k_{n->m} (T_m - T_n)``
over the jumps of the scheme (jumps out through an absorbing wall land where ``T = 0``). Since ``-A^T``
restricted to the non-target cells is a non-singular M-matrix, ``T >= 0`` everywhere, with the same
monotone discretisation as :mod:`fokkerplanck.numerics.operator`.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import scipy.sparse.linalg as spla
from scipy.interpolate import RegularGridInterpolator

from ..model.density import Density
from ..model.problem import Problem
from ..numerics.operator import DEFAULT_STENCIL_RADIUS, Generator, generator
from .linalg import LUFactor, gth_escape_rate, gth_first_passage


class FirstPassageTime:
    """Mean first-passage time field: ``values`` on the grid (0 on the target), ``at(theta)`` interpolated,
    ``mean_from(density)`` averaged over a starting density, ``rate`` helpers."""

    def __init__(self, grid, values, target_mask, info):
        self.grid = grid
        self.values = values
        self.target = target_mask
        self.info = info

    def at(self, theta) -> np.ndarray:
        """``T`` at arbitrary points inside the box (linear interpolation between cell centres)."""
        theta = np.asarray(theta, dtype=float)
        interp = RegularGridInterpolator(self.grid.centers, self.values, bounds_error=False, fill_value=None)
        xi = self.grid.to_local(theta.reshape(-1, self.grid.ndim))
        return interp(xi).reshape(theta.shape[:-1] if theta.ndim > 1 else ())

    def mean_from(self, p0: Density) -> float:
        """``int T p0``: the mean first-passage time from a starting density."""
        if p0.grid != self.grid:
            raise ValueError("mean_from: the density lives on another grid")
        return float((self.values * p0.values).sum() / p0.values.sum())

    def __repr__(self):
        return f"FirstPassageTime(max T = {self.values.max():.4g}, target cells = {int(self.target.sum())})"


def _target_mask(grid, target) -> np.ndarray:
    if target is None:
        return np.zeros(grid.shape, dtype=bool)
    if callable(target):
        mask = np.asarray(target(grid.mesh()), dtype=bool)
    else:
        mask = np.asarray(target, dtype=bool)
    if mask.shape != grid.shape:
        raise ValueError(f"mean_first_passage_time: target mask has shape {mask.shape}, grid {grid.shape}")
    return mask


CONDITION_LIMIT = 1e10  # above it (relative error of an LU up to ~1e-6) the times are recomputed without subtractions


def mean_first_passage_time(
    problem: Problem | Generator, target=None, *, stencil_radius: int = DEFAULT_STENCIL_RADIUS, warn: bool = True
) -> FirstPassageTime:
    """Mean first-passage time ``T(theta)`` to ``target`` (or through the absorbing walls).

    Parameters
    ----------
    problem : Problem or Generator
    target : None, callable ``theta -> bool`` on ``(..., d)`` points, or boolean mask of ``grid.shape``
        The target set. ``None``: the process stops at the absorbing walls, which must exist.
    stencil_radius : int or None
        See :class:`~fokkerplanck.numerics.operator.Generator`.
    warn : bool
        Warn when the times may have lost digits and cannot be recomputed (see Notes).

    Returns
    -------
    FirstPassageTime
        The times on the grid (``.values``, ``.at(theta)``) and ``info``: ``lu``, ``lu_layout``, ``condition``,
        ``gth``, ``residual``, ``relative_residual``, ``min_before_clip``, ``seconds``.

    Raises
    ------
    ValueError
        When nothing can be reached (no target cells and no absorbing wall), when the target covers every cell
        (nothing to compute), or when some cells cannot reach it (a singular system).

    Notes
    -----
    The sparse LU of ``-A^T`` on the free cells gives the times first. Its condition number is ``max T`` times
    the largest rate, so deep wells (times of ``e^(Delta U / T)``) make it lose digits; past
    ``CONDITION_LIMIT``, a relative residual above 1e-10 or negative times, the times are recomputed by the
    subtraction-free band elimination (:func:`fokkerplanck.solvers.linalg.gth_first_passage`), or a warning is given
    where its band does not fit.

    The backward equation needs a stationary generator: for a time-dependent noise (a learning-rate schedule) use
    :func:`first_passage_probability`, the probability of having reached the target by each time.
    """
    t0 = time.perf_counter()
    gen = problem if isinstance(problem, Generator) else generator(problem, stencil_radius)
    grid = gen.grid
    mask = _target_mask(grid, target)
    if not mask.any() and grid.conserves_mass:
        raise ValueError(
            "mean_first_passage_time: give a target region or absorbing walls "
            "(with reflecting/periodic walls and no target the process never stops)"
        )
    if mask.all():
        raise ValueError(
            "mean_first_passage_time: the target covers every cell of the grid (T = 0 everywhere); "
            "give a smaller target region"
        )
    free = ~mask.ravel()
    cells = np.flatnonzero(free)
    At = gen.A.T.tocsr()[free][:, free]
    T = np.zeros(grid.size)
    try:
        lu = LUFactor(-At, grid_shape=grid.shape, cells=cells)  # -A^T on the free cells: a non-singular M-matrix
        T[free] = lu.solve(np.ones(cells.size))
    except RuntimeError as exc:  # a singular system: cells from which neither target nor wall is reached
        raise ValueError(
            "mean_first_passage_time: the target cannot be reached from some cells (the linear system "
            f"is singular: {str(exc).splitlines()[0]})"
        ) from None
    if not np.all(np.isfinite(T)):
        raise ValueError("mean_first_passage_time: the target cannot be reached from some cells")
    # ||(-A^T)^-1||_inf = max T (a non-negative inverse times ones): the condition number, and the relative
    # error an LU may leave, u times it, follow from the answer -- when it is an answer at all: past ~1e17 the
    # LU's times can be garbage (measured: 0.17 where they are 9e23), which the residual and the signs show
    norm = float(np.max(np.abs(At).sum(axis=1)))
    condition = norm * float(np.max(np.abs(T)))
    res = float(np.max(np.abs(At @ T[free] + 1.0)))
    relative_residual = res / (condition + 1.0)
    info = {"lu": lu.backend, "lu_layout": lu.layout, "condition": condition, "gth": False}
    if condition > CONDITION_LIMIT or relative_residual > 1e-10 or T.min() < 0:
        exact = gth_first_passage(cells.size, *_absorbing_chain(gen, cells), grid.shape, cells)
        if exact is not None:
            T[free] = exact
            info["gth"] = True
            info["condition"] = condition = norm * float(T.max())
            res = float(np.max(np.abs(At @ T[free] + 1.0)))
        elif warn:
            warnings.warn(
                f"mean_first_passage_time: times up to {T.max():.2e}, condition number {condition:.1e}, "
                f"relative residual {relative_residual:.1e}: the LU answer may have lost its digits "
                "(relative error up to ~1e-16 times the condition number, more where the residual is "
                "large), and the subtraction-free elimination does not fit this grid "
                "(fokkerplanck.solvers.linalg.GTH_WORK_LIMIT)",
                RuntimeWarning,
                stacklevel=2,
            )
    info.update(
        {
            "residual": res,
            "relative_residual": res / (condition + 1.0),
            "seconds": time.perf_counter() - t0,
            "min_before_clip": float(T.min()),
        }
    )
    return FirstPassageTime(grid, np.clip(T, 0.0, None).reshape(grid.shape), mask, info)


def _absorbing_chain(gen: Generator, cells):
    """The chain on ``cells`` (the cells outside the target): the jumps among them from ``A`` (``src, dst,
    rate``, numbered within ``cells``) and each cell's exit rate, the target's entries of its column of ``A``
    plus its jumps out through absorbing walls (:meth:`Generator.exit_rates`) -- all sums of rates, no
    differences."""
    position = np.full(gen.grid.size, -1, dtype=np.int64)
    position[cells] = np.arange(cells.size)
    coo = gen.A.tocoo()
    src, dst = position[coo.col], position[coo.row]
    among = (src >= 0) & (dst >= 0) & (coo.row != coo.col)
    into_target = (src >= 0) & (dst < 0) & (coo.row != coo.col)
    exit_rate = gen.exit_rates()[cells]
    np.add.at(exit_rate, src[into_target], coo.data[into_target])
    return src[among], dst[among], coo.data[among], exit_rate


def escape_rate(problem: Problem | Generator, target=None, *, stencil_radius: int = DEFAULT_STENCIL_RADIUS) -> float:
    """Slowest decay rate of the probability that has not yet reached the target: ``-lambda_1`` for the
    eigenvalue of the generator (restricted to the non-target cells) with the largest real part.
    For a metastable well it agrees with ``1 / MFPT`` up to exponentially small corrections.

    Computed by inverse iteration with the subtraction-free band elimination
    (:func:`fokkerplanck.solvers.linalg.gth_escape_rate`) where the band fits: an eigensolver's absolute error,
    round-off
    of the largest rates, swamps the rates of deep wells (measured: a 1D tilted double well at T = 0.03,
    ``3.4e-13`` and ``8.4e-15`` on 300 and 600 cells where the rate is ``1.0e-16``; now equal to
    ``1 / MFPT`` from the well to 0.1%). Otherwise a dense eigensolver up to 400 cells, else ARPACK
    shift-invert about 0, with a warning when the rate is below 1e-10 of the largest."""
    gen = problem if isinstance(problem, Generator) else generator(problem, stencil_radius)
    mask = _target_mask(gen.grid, target)
    if not mask.any() and gen.grid.conserves_mass:
        raise ValueError("escape_rate: give a target region or absorbing walls")
    free = ~mask.ravel()
    cells = np.flatnonzero(free)
    rate = gth_escape_rate(cells.size, *_absorbing_chain(gen, cells), gen.grid.shape, cells)
    if rate is not None:
        return rate
    Af = gen.A.tocsr()[free][:, free]
    if Af.shape[0] <= 400:
        lam = float(-np.max(np.linalg.eigvals(Af.toarray()).real))
    else:
        lam = float(-spla.eigs(Af.tocsc(), k=1, sigma=0.0, which="LM", return_eigenvectors=False).real[0])
    largest = float(np.max(np.abs(Af.diagonal())))
    if lam < 1e-10 * largest:
        warnings.warn(
            f"escape_rate: {lam:.2e} is below 1e-10 of the largest rate ({largest:.2e}), where an "
            "eigensolver's round-off can dominate it, and the subtraction-free elimination does not fit "
            "this grid (fokkerplanck.solvers.linalg.GTH_WORK_LIMIT); 1 / mean_first_passage_time is a check",
            RuntimeWarning,
            stacklevel=2,
        )
    return lam


def first_passage_probability(
    problem: Problem | Generator,
    p0,
    target,
    t_end: float,
    *,
    n_save: int = 11,
    dt: float | None = None,
    noise_schedule=None,
    schedule_hold: int = 1,
    stencil_radius: int = DEFAULT_STENCIL_RADIUS,
) -> dict:
    """Probability ``F(t)`` that the process started from ``p0`` has reached ``target`` by time ``t``.

    The mean first-passage time (:func:`mean_first_passage_time`) needs a stationary generator: under a
    time-dependent noise ``D(theta, t) = g(t) D(theta)`` (a learning-rate schedule) the escape statistics
    depend on when the walk starts, and the time-resolved first-passage probability is the meaningful
    quantity. It is computed forward: the target cells are made absorbing *and keep their mass* (their columns
    of ``A`` are zeroed: no jump leaves them), so the generator still conserves mass, and ``F(t)`` is the mass
    in the target, evolved by :func:`fokkerplanck.evolve.evolve` (with ``noise_schedule`` and ``schedule_hold``
    as there: the generator of each group of steps is assembled for ``g`` at the group's midpoint and made
    absorbing in the same way, :func:`fokkerplanck.evolve._absorbing`). Without a schedule the mean first-passage
    time from ``p0`` is
    ``int_0^inf (1 - F) dt``, the check used in the tests.

    ``target``: a callable ``theta -> bool`` on ``(..., d)`` points or a boolean mask of ``grid.shape``.
    Returns ``{"times", "probability", "survival", "info"}`` (arrays; ``survival = 1 - probability``).
    """
    from .evolve import _absorbing, evolve

    gen = problem if isinstance(problem, Generator) else generator(problem, stencil_radius)
    grid = gen.grid
    mask = _target_mask(grid, target)
    if not mask.any():
        raise ValueError("first_passage_probability: the target region holds no cell of the grid")
    if mask.all():
        raise ValueError("first_passage_probability: the target covers every cell of the grid")
    keep = (~mask.ravel()).astype(float)

    t_end = float(t_end)
    times = np.linspace(0.0, t_end, int(n_save))
    t0 = time.perf_counter()
    tr = evolve(
        _absorbing(gen, keep),
        p0,
        t_end,
        save_times=times,
        dt=dt,
        noise_schedule=noise_schedule,
        schedule_hold=schedule_hold,
    )
    vals = tr.values
    mass_in = np.array([v.ravel()[mask.ravel()].sum() for v in vals]) * grid.cell_volume
    total = np.array([v.sum() for v in vals]) * grid.cell_volume
    prob = mass_in / total
    return {
        "times": times,
        "probability": prob,
        "survival": 1.0 - prob,
        "info": {
            "seconds": time.perf_counter() - t0,
            "target_cells": int(mask.sum()),
            "mass_error": float(np.max(np.abs(total - 1.0))),
        },
    }
