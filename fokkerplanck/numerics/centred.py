"""The centred second-order scheme, kept non-negative by a nonlinear rewrite of its negative rates.

Why. The monotone generator (:mod:`fokkerplanck.numerics.operator`) carries the diffusion on Selling's offsets,
each edge weighted by the average of its two cells' weights. Where the tensor's axes turn faster than a long
offset can follow -- the strong direction's offsets change every few cells -- those averaged weights no longer
reproduce ``D``: on a field of anisotropy 100 turning by 7 rad across a 192^2 box the edges' second moment misses
``D~`` by up to 24%, and the truncation error of ``div(D grad P)`` does not fall under refinement. A reversible flux
vanishes edge by edge and does not feel it; a circulating one does (L1 0.13 at 192^2). No linear monotone stencil
is consistent there on such grids. The compact centred scheme is (second order), but not monotone.

Scheme. ``C P = sum_ij d_i d_j (D_ij P) - sum_i d_i (v_i P)`` (Ito ``v``) by centred differences on the grid's
cells (periodic axes wrap; past other walls ``P = 0``). Written as pair fluxes -- for every pair of cells ``(i, j)``
the net flow into ``i`` is ``f_ij = c_ij P_j - c_ji P_i`` -- it conserves mass by construction. A negative entry
``c_ij < 0`` would move mass out of ``i`` in proportion to ``P_j``; it is rewritten as the rate ``|c_ij| P_j / P_i``
from ``i`` to ``j`` (the flow is the same at ``P``), capped at ``CAP_FACTOR`` times the monotone generator's exit
rate of ``i``. The result ``M(P)`` is a Metzler generator with zero column sums whose product ``M(P) P`` is ``C P``
wherever no cap binds, so its fixed point ``M(P) P = 0`` (Picard: ``P <- null(M(P))``) is the centred answer where
that answer is positive, and a positive density everywhere (the nonlinear two-point-flux idea of Le Potier and of
Lipnikov, Svyatskiy & Vassilevski: every iterate is a Metzler generator). The caps bind only in far tails, where the
centred scheme would go negative (4e-7 of the mass on the turning field above).

Used by :func:`fokkerplanck.solvers.steady.steady_state` as a second opinion where the monotone answer's refinement
estimate is large and the stencil's moments miss ``D``; the answer with the smaller refinement estimate is kept.
Measured there and on the documentation's numerics page ("Turning fields").
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..model.problem import Problem

CAP_FACTOR = 4.0  # a rewritten rate is at most this many times the monotone generator's exit rate of its cell


def _difference_matrices(n: int, h: float, periodic: bool):
    """First (centred) and second differences along one axis of ``n`` cells."""
    one = np.ones(n)
    first = sp.diags([-0.5 * one[1:], 0.5 * one[1:]], [-1, 1], shape=(n, n), format="lil") / h
    second = sp.diags([one[1:], -2.0 * one, one[1:]], [-1, 0, 1], shape=(n, n), format="lil") / h**2
    if periodic and n > 2:
        first[0, n - 1], first[n - 1, 0] = -0.5 / h, 0.5 / h
        second[0, n - 1], second[n - 1, 0] = 1.0 / h**2, 1.0 / h**2
    return first.tocsr(), second.tocsr()


def centred_generator(problem: Problem) -> sp.csr_matrix:
    """``C`` with ``(C P)_n = sum_ij d_i d_j (D_ij P) - sum_i d_i (v_i P)`` at cell ``n``: centred differences
    of the Ito form, in the grid's coordinates (``D_xi = M^-1 D M^-T``, ``v_xi = M^-1 v`` in a frame). Its
    off-diagonal entries are what :func:`pairs` reads; the diagonal is not used."""
    grid = problem.grid
    d, shape, h = grid.ndim, grid.shape, grid.spacing
    pts = grid.points()
    D = np.broadcast_to(problem.diffusion(pts), (grid.size, d, d))
    v = problem.ito_velocity(pts)
    if grid.frame is not None:
        D, v = grid.frame.tensor_in_xi(D), grid.frame.vector_in_xi(v)
    first, second = [], []
    for k in range(d):
        f, s = _difference_matrices(shape[k], h[k], grid.bc[k][0] == "periodic")
        left, right = (
            sp.identity(int(np.prod(shape[:k])), format="csr"),
            sp.identity(int(np.prod(shape[k + 1 :])), format="csr"),
        )
        first.append(sp.kron(sp.kron(left, f), right, format="csr"))
        second.append(sp.kron(sp.kron(left, s), right, format="csr"))
    C = sp.csr_matrix((grid.size, grid.size))
    for k in range(d):
        C = C + second[k] @ sp.diags(D[:, k, k]) - first[k] @ sp.diags(v[:, k])
        for m in range(k + 1, d):
            C = C + 2.0 * (first[k] @ first[m]) @ sp.diags(D[:, k, m])
    return C.tocsr()


def pairs(C: sp.spmatrix):
    """The pairs ``i < j`` joined by an off-diagonal entry of ``C``: ``(i, j, c_ij, c_ji)``, ``c_ij`` the rate
    from ``j`` into ``i``. With zero column sums (mass conserved), ``(C P)_i = sum_j (c_ij P_j - c_ji P_i)``."""
    C = C.tocoo()
    off = C.row != C.col
    r, c, x = C.row[off].astype(np.int64), C.col[off].astype(np.int64), C.data[off]
    lo, hi = np.minimum(r, c), np.maximum(r, c)
    N = C.shape[0]
    key, inverse = np.unique(lo * N + hi, return_inverse=True)
    i, j = key // N, key % N
    c_ij, c_ji = np.zeros(key.size), np.zeros(key.size)
    upper = r == lo
    np.add.at(c_ij, inverse[upper], x[upper])
    np.add.at(c_ji, inverse[~upper], x[~upper])
    return i, j, c_ij, c_ji


def _from_pairs(N: int, i, j, into_i, into_j) -> sp.csr_matrix:
    """The generator with rates ``into_i`` from ``j`` to ``i`` and ``into_j`` from ``i`` to ``j``, and the diagonal
    that makes every column sum to zero."""
    R = sp.csr_matrix(
        (np.concatenate([into_i, into_j]), (np.concatenate([i, j]), np.concatenate([j, i]))), shape=(N, N)
    )
    return (R - sp.diags(np.asarray(R.sum(axis=0)).ravel())).tocsr()


class PositiveCentred:
    """The centred scheme of ``problem`` as the family of Metzler generators ``M(P)`` (module docstring).

    ``matrix(P)`` returns ``(M(P), capped)``, ``capped`` the number of rewritten rates held at their cap.
    ``exit_rate`` is the monotone generator's (``-diag A``), the scale of the caps."""

    def __init__(self, problem: Problem, exit_rate: np.ndarray):
        self.grid = problem.grid
        self.i, self.j, self.c_ij, self.c_ji = pairs(centred_generator(problem))
        self.cap = CAP_FACTOR * np.asarray(exit_rate, dtype=float)

    def linear(self) -> sp.csr_matrix:
        """The centred scheme itself in pair-flux form (zero column sums, negative entries kept): its null vector,
        clipped, is where the iteration starts."""
        return _from_pairs(self.grid.size, self.i, self.j, self.c_ij, self.c_ji)

    def matrix(self, P) -> tuple[sp.csr_matrix, int]:
        i, j, c_ij, c_ji = self.i, self.j, self.c_ij, self.c_ji
        P = np.asarray(P, dtype=float).ravel()
        tiny = np.finfo(float).tiny
        Pi, Pj = np.maximum(P[i], tiny), np.maximum(P[j], tiny)
        # j -> i: the positive part of c_ij, and a negative c_ji rewritten (it would take P_i out of j)
        back_i = np.maximum(-c_ji, 0.0) * (Pi / Pj)
        back_j = np.maximum(-c_ij, 0.0) * (Pj / Pi)
        cap_i, cap_j = self.cap[i], self.cap[j]
        into_i = np.maximum(c_ij, 0.0) + np.minimum(back_i, cap_j)
        into_j = np.maximum(c_ji, 0.0) + np.minimum(back_j, cap_i)
        capped = int(np.count_nonzero(back_i > cap_j) + np.count_nonzero(back_j > cap_i))
        return _from_pairs(self.grid.size, i, j, into_i, into_j), capped


class FrozenCentred:
    """The generator ``M(P*)`` at the fixed point ``P*`` found by the steady-state solver: what a corrected
    :class:`~fokkerplanck.model.density.Density` carries as its ``generator`` (``A``, ``grid``, ``problem`` and
    ``current``), so that its current is the scheme's own and vanishes in divergence (``M(P*) P* = 0``)."""

    def __init__(self, problem: Problem, M: sp.csr_matrix):
        self.problem, self.grid, self.A = problem, problem.grid, M.tocsr()

    def current(self, P) -> np.ndarray:
        """Probability current at cell centres, ``grid.shape + (d,)``: for each pair of cells the net flow
        ``M_ij P_j - M_ji P_i`` along the displacement from ``j`` to ``i`` (the nearest image across a periodic
        wall), shared between the two cells, as :meth:`fokkerplanck.numerics.operator.Generator.current`."""
        grid = self.grid
        P = np.asarray(P, dtype=float).ravel()
        i, j, m_ij, m_ji = pairs(self.A)
        flow = m_ij * P[j] - m_ji * P[i]
        shape = np.array(grid.shape)
        disp = np.array(np.unravel_index(i, grid.shape)).T - np.array(np.unravel_index(j, grid.shape)).T
        periodic = np.array([lo == "periodic" for lo, _ in grid.bc])
        wrap = periodic & (np.abs(disp) > shape // 2)
        disp = np.where(wrap, disp - np.sign(disp) * shape, disp) * np.asarray(grid.spacing)
        J = np.zeros((grid.size, grid.ndim))
        np.add.at(J, i, 0.5 * flow[:, None] * disp)
        np.add.at(J, j, 0.5 * flow[:, None] * disp)
        if grid.frame is not None:
            J = J @ grid.frame.matrix.T
        return J.reshape(grid.shape + (grid.ndim,))
