"""Mean first-passage times and escape rates from the backward equation.

The mean time ``T(theta)`` to reach a target set (or to leave through absorbing walls) solves the backward
(adjoint) equation of the generator,

    v . grad T + sum_ij D_ij d_i d_j T = -1      outside the target,      T = 0 on the target,

whose discrete form uses the transpose of the forward generator: ``(A^T T)_n = sum_m k_{n->m} (T_m - T_n)``
over the jumps of the scheme (jumps out through an absorbing wall land where ``T = 0``). Since ``-A^T``
restricted to the non-target cells is a non-singular M-matrix, ``T >= 0`` everywhere, with the same
monotone discretisation as :mod:`fokkerplanck.operator`.
"""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse.linalg as spla
from scipy.interpolate import RegularGridInterpolator

from .density import Density
from .linalg import LUFactor
from .operator import DEFAULT_STENCIL_RADIUS, Generator, generator
from .problem import Problem


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
        return interp(theta.reshape(-1, self.grid.ndim)).reshape(theta.shape[:-1] if theta.ndim > 1 else ())

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


def mean_first_passage_time(problem: Problem | Generator, target=None, *,
                            stencil_radius: int = DEFAULT_STENCIL_RADIUS) -> FirstPassageTime:
    """Mean first-passage time ``T(theta)`` to ``target`` (or through the absorbing walls).

    Parameters
    ----------
    problem : Problem or Generator
    target : None, callable ``theta -> bool`` on ``(..., d)`` points, or boolean mask of ``grid.shape``
        The target set. ``None``: the process stops at the absorbing walls, which must exist.

    Raises ``ValueError`` when nothing can be reached (no target cells and no absorbing wall).
    """
    t0 = time.perf_counter()
    gen = problem if isinstance(problem, Generator) else generator(problem, stencil_radius)
    grid = gen.grid
    mask = _target_mask(grid, target)
    if not mask.any() and grid.conserves_mass:
        raise ValueError("mean_first_passage_time: give a target region or absorbing walls "
                         "(with reflecting/periodic walls and no target the process never stops)")
    free = ~mask.ravel()
    At = gen.A.T.tocsr()[free][:, free]
    T = np.zeros(grid.size)
    lu = LUFactor(-At, grid_shape=grid.shape, cells=np.flatnonzero(free))          # -A^T on the free cells: a non-singular M-matrix
    T[free] = lu.solve(np.ones(int(free.sum())))
    if not np.all(np.isfinite(T)):
        raise ValueError("mean_first_passage_time: the target cannot be reached from some cells")
    res = np.max(np.abs(At @ T[free] + 1.0))
    info = {"lu": lu.backend, "lu_layout": lu.layout, "residual": float(res), "seconds": time.perf_counter() - t0,
            "min_before_clip": float(T.min())}
    return FirstPassageTime(grid, np.clip(T, 0.0, None).reshape(grid.shape), mask, info)


def escape_rate(problem: Problem | Generator, target=None, *, stencil_radius: int = DEFAULT_STENCIL_RADIUS) -> float:
    """Slowest decay rate of the probability that has not yet reached the target: ``-lambda_1`` for the
    eigenvalue of the generator (restricted to the non-target cells) with the largest real part.
    For a metastable well it agrees with ``1 / MFPT`` up to exponentially small corrections."""
    gen = problem if isinstance(problem, Generator) else generator(problem, stencil_radius)
    mask = _target_mask(gen.grid, target)
    if not mask.any() and gen.grid.conserves_mass:
        raise ValueError("escape_rate: give a target region or absorbing walls")
    free = ~mask.ravel()
    Af = gen.A.tocsr()[free][:, free]
    if Af.shape[0] <= 400:
        lam = np.linalg.eigvals(Af.toarray())
        return float(-np.max(lam.real))
    lam = spla.eigs(Af.tocsc(), k=1, sigma=0.0, which="LM", return_eigenvectors=False)
    return float(-lam.real[0])
