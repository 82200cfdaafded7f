"""Stationary densities: the null vector of the generator, ``A p = 0``, ``sum p |cell| = 1``.

With reflecting or periodic walls and an irreducible jump process, ``A`` has a one-dimensional null
space spanned by a positive vector (Perron-Frobenius for Metzler matrices). Solvers:

* detailed balance (tried first by ``method="auto"``): for a landscape with isotropic constant noise
  ``D = T I`` the scheme's exact discrete steady state is the Boltzmann weight ``exp(-L/T)``; it is
  returned after a check of ``A p = 0`` (one matrix-vector product), with no linear solve.

* ``"direct"`` (default in 1D/2D and small 3D): inverse iteration with ``B = eps I - A``,
  ``eps = 1e-12 max|A_nn|``, factorised once by sparse LU (:mod:`fokkerplanck.solvers.linalg`: MKL PARDISO when
  the optional ``pypardiso`` is installed, else SuperLU with minimum-degree ordering of ``A + A^T``).
  ``B`` is a non-singular M-matrix, so ``B^{-1} >= 0``: the iterates stay non-negative, and each step damps
  the other modes by ``eps / (eps + |lambda_k|)``. Unlike pinning one cell to 1, this keeps its digits on
  metastable problems (wells joined by rates near underflow), where the value at any pinned cell
  can be 1e-17 of the peak, and it keeps symmetric wells balanced.
  Wells joined by rates below the LU's round-off
  (``|lambda_2| << eps``) cannot be weighed against each other by any solve with this matrix: the iteration
  stalls with the split of its uniform start; checked from a second start, such an answer is replaced by the
  Grassmann-Taksar-Heyman elimination where its band fits, and otherwise kept with a warning
  (:func:`_inverse_iteration`, ``info["split_gap"]``, ``info["gth"]``).
* ``"iterative"`` (default for large 3D and very large 2D grids, where LU fill-in grows too fast): one cell
  ``r`` pinned to 1, ``sum_{j != r} A_ij p_j = -A_ir`` for ``i != r`` (a non-singular M-matrix system; a dense
  normalisation row would destroy sparsity), solved by GMRES preconditioned with classical algebraic
  multigrid (pyamg's Ruge-Stuben solver). Its residual cannot tell how mass is shared between wells joined
  by rates near underflow (each well is balanced on its own), so when the loss has a second well -- or, with
  one minimum of the loss or no landscape at all (a drift field), when the answer itself has a second peak --
  the solve is repeated pinned there; if the two answers differ (L1 > 1e-6) ``auto`` falls back to the direct
  method where it fits (3D: up to ``DIRECT_FALLBACK_LIMIT`` cells) and an explicit ``iterative`` warns.
  Metastable states whose peak in the first answer is below ``SECOND_PEAK_FLOOR`` of the highest one are not
  seen: prefer ``direct`` where it fits.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..model.density import Density, warn_wall_mass
from ..model.problem import Problem
from ..numerics.centred import FrozenCentred, PositiveCentred
from ..numerics.operator import (
    DEFAULT_STENCIL_RADIUS,
    Generator,
    generator,
    single_blas_thread,
    stencil_moment_error,
)
from .linalg import LUFactor, gth_stationary, lu_backend, shifted

DIRECT_LIMIT = 1_100_000
DIRECT_LIMIT_3D = 8_000  # SuperLU in 3D: 32^3 took 5.9 s, 40^3 29 s
DIRECT_LIMIT_3D_PARDISO = 120_000  # PARDISO (METIS) in 3D: 40^3 1.2 s, 48^3 2.8 s / 1 GB, 64^3 13 s / 2.6 GB
DIRECT_FALLBACK_LIMIT = {"superlu": 30_000, "pardiso": 300_000}  # 3D, when the iterative answer is doubtful
SECOND_PEAK_FLOOR = 1e-8  # local maxima of an iterative answer below this fraction of its peak: solver noise
MAX_INVERSE_ITERATIONS = 40  # solves of the direct method; a convergence factor of 0.5 reaches 1e-12 in 40
_STALLED = 0.5  # a change at least half the one before: inverse iteration is no longer converging
SPLIT_TOLERANCE = 1e-6  # L1 distance between answers from two starts above which the direct method warns


def _pinned_system(A: sp.csr_matrix, r: int):
    """Matrix and right-hand side of the pinned system (row and column ``r`` replaced by the identity)."""
    A = A.tocsr(copy=True)
    b = -np.asarray(A[:, r].todense()).ravel()
    b[r] = 1.0
    # zero column r and row r, then put 1 on the diagonal (the diagonal entry is always stored)
    A.data[A.indices == r] = 0.0
    start, stop = A.indptr[r], A.indptr[r + 1]
    A.data[start:stop] = np.where(A.indices[start:stop] == r, 1.0, 0.0)
    A.eliminate_zeros()
    return A, b


def _inverse_iteration(A, grid_shape: tuple, max_iterations: int = MAX_INVERSE_ITERATIONS):
    """Null vector of ``A`` by inverse iteration with ``B = eps I - A``, ``eps = 1e-12 max|A_nn|``.

    ``B`` is a non-singular M-matrix, so ``B^{-1} >= 0`` keeps the iterates non-negative, and its LU needs
    no pivoting for stability (column diagonal dominance). Each step damps the other modes by
    ``rho_k = eps / (eps + |lambda_k|)``; this rescues metastable problems (wells joined by rates near
    underflow) where the pinned system loses all its digits. From the uniform start it goes on
    (:func:`_iterate`) while the change ``d_k = max|x_k - x_{k-1}| / max x_k`` shrinks, up to
    ``max_iterations`` solves:

    * a spectral gap (``|lambda_2| >> eps``): two solves (``d_2^2 / d_1`` below 1e-15; measured on OU at 512^2:
      ``d_1 ~ 1``, ``d_2 ~ 1e-9``, a third solve changes nothing above 1e-17);
    * ``|lambda_2|`` a few times ``eps``: geometric convergence, until the tail ``d_k r / (1 - r)``
      (``r = d_k / d_{k-1}``) is below 1e-14 (measured: a tilted double well at T = 0.05, ``r = 0.16``, 17
      solves; four gave an L1 error of 1.3e-4 against the exact Boltzmann weights);
    * ``|lambda_2|`` far below ``eps`` (wells joined by rates below the LU's round-off of the largest ones): the
      change stalls (``r >= 0.5``) and the share of mass between the wells is whatever the start gave them:
      the uniform start splits them by volume (measured: a tilted double well at T = 0.03, left-well mass 0.500
      instead of 0.582). Then a second run, from the answer with its mass moved across the box
      (:func:`_tilted_start`), measures how much the answer depends on the start: ``split_gap``, the L1 distance
      between the two answers. Above ``SPLIT_TOLERANCE`` the stationary vector is computed instead by the
      Grassmann-Taksar-Heyman elimination (:func:`fokkerplanck.solvers.linalg.gth_stationary`: no subtractions, so
      the rates joining the wells keep their digits; exact Boltzmann weights to 1e-15 even at T = 0.005), where
      its band fits (1D, 2D up to a few hundred cells on the short side; ``info["gth"]``); otherwise the uniform
      start's answer is returned, right only where symmetry fixes the split, and ``steady_state`` warns.

    Returns ``x`` and the info entries ``algorithm``, ``lu`` (backend), ``lu_layout``
    (:attr:`LUFactor.layout`), ``iterations``, ``last_change`` and, when the iteration stalled, ``split_gap``
    (and ``gth`` when that elimination gave the answer)."""
    N = A.shape[0]
    eps = 1e-12 * np.max(np.abs(A.diagonal()))
    lu = LUFactor(shifted(A, eps), grid_shape=grid_shape)
    x, change, stalled = _iterate(lu, np.full(N, 1.0 / N), max_iterations)
    info = {
        "algorithm": f"inverse iteration on eps I - A (sparse LU, {lu.backend})",
        "lu": lu.backend,
        "lu_layout": lu.layout,
        "iterations": len(change),
        "last_change": float(change[-1]),
    }
    if stalled:
        y, _, _ = _iterate(lu, _tilted_start(x, grid_shape), max_iterations)
        info["split_gap"] = float(np.abs(x - y).sum())
        if info["split_gap"] > SPLIT_TOLERANCE:
            exact = gth_stationary(A, grid_shape)
            if exact is not None:
                x = exact
                info["algorithm"] = (
                    "Grassmann-Taksar-Heyman elimination (banded), after inverse iteration on "
                    f"eps I - A ({lu.backend}) stalled"
                )
                info["gth"] = True
    return x, info


def _tilted_start(x, grid_shape):
    """``x`` with its mass moved across the box: ``x exp(sum_i a_i t_i)``, ``t_i`` in ``[-1, 1]`` the cell's
    position along axis ``i`` and fixed ``|a_i|`` in ``[1, 2]`` (a reproducible draw), normalised: the shapes
    within regions kept, their shares changed by factors up to ``e^4`` whichever axes separate them."""
    shape = tuple(grid_shape) if grid_shape is not None else (x.size,)
    rng = np.random.default_rng(0)
    a = rng.uniform(1.0, 2.0, len(shape)) * rng.choice([-1.0, 1.0], len(shape))
    exponent = np.zeros(shape)
    for i, n in enumerate(shape):
        t = np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)
        exponent += a[i] * t.reshape((1,) * i + (n,) + (1,) * (len(shape) - i - 1))
    y = x * np.exp(exponent).ravel()
    return y / y.sum()


def _iterate(lu, x, max_iterations: int):
    """Inverse iteration ``x <- B^{-1} x`` (clipped at 0, normalised to sum 1) from ``x``: returns the last
    iterate, the changes ``d_k``, and whether it stopped because the change stalled (``d_k >= d_{k-1} / 2``
    from the third solve on) or ran out of solves rather than converged (see :func:`_inverse_iteration`)."""
    change = []
    for k in range(max_iterations):
        x_new = np.clip(lu.solve(x), 0.0, None)
        x_new /= x_new.sum()
        change.append(np.max(np.abs(x_new - x)) / np.max(x_new))
        x = x_new
        if k == 0:
            continue
        r = change[-1] / change[-2] if change[-2] > 0 else 0.0
        if change[-1] ** 2 <= 1e-15 * change[-2] or (r < _STALLED and change[-1] * r / (1.0 - r) <= 1e-14):
            return x, change, False
        if k >= 2 and r >= _STALLED:
            return x, change, True
    return x, change, True


def _boltzmann_candidate(gen: Generator) -> np.ndarray | None:
    """``exp(-(L - min L)/T)`` at the cell centres when the problem is a landscape (no other drift) with
    isotropic constant noise ``D = T I`` (``Isotropic(T)``, or ``Constant(D)`` with ``D = T I``), else None.

    For such problems every pair of jumps of the scheme is in detailed balance with these weights: the
    exponentially fitted flux along each stencil direction uses the exact difference ``L_m - L_n``, so it
    vanishes on ``P = exp(-L/T)`` (tested to 3e-13). They are then the exact discrete steady state, whatever
    the walls (reflecting or periodic)."""
    from ..model.noise import Constant, Isotropic

    prob = gen.problem
    if getattr(prob, "potential", None) is not None:  # reversible by the user's word, checked on the grid
        psi = prob.potential_on_grid()
        return np.exp(-(psi - psi.min()))
    if prob.landscape is None or getattr(prob, "drift_field", None) is not None:
        return None
    noise = prob.noise
    if isinstance(noise, Isotropic):
        T = float(noise.T)
    elif isinstance(noise, Constant) and np.allclose(
        noise.D, noise.D[0, 0] * np.eye(noise.D.shape[0]), rtol=0.0, atol=1e-15 * abs(noise.D[0, 0])
    ):
        T = float(noise.D[0, 0])
    else:
        return None
    if not T > 0.0:
        return None
    L = np.asarray(prob.loss(gen.grid.points()), dtype=float)
    if not np.all(np.isfinite(L)):
        return None
    return np.exp(-(L - L.min()) / T)


def _unresolved_error_estimate(gen: Generator, dens: Density, method: str, tol: float, maxiter: int) -> dict:
    """``error_estimate``: the L1 distance between ``dens`` and the steady state of the same problem with the
    cross-diffusion the stencil cannot hold dropped (rather than scaled down), on the same stencil."""
    ref = Generator(gen.problem, stencil_radius=gen.info["stencil_radius"], warn=False, drop_unresolved=True)
    other = steady_state(
        ref, method="direct" if method == "gth" else method, tol=tol, maxiter=maxiter, warn=False, estimate_error=False
    )
    return {
        "error_estimate": float(np.abs(dens.values - other.values).sum() * dens.grid.cell_volume),
        "error_estimate_method": "L1 change when the unresolved cross-diffusion is dropped instead of scaled",
    }


PECLET_MASS_LIMIT = (
    1e-2  # above this share of the mass on cells of Peclet number > 2, the answer gets a refinement estimate
)
MOMENT_ERROR = 1e-2  # a cell whose stencil's second moment misses D~ by more than this (relative) is inconsistent
MOMENT_MASS_LIMIT = 1e-2  # above this share of the mass on such cells: a refinement estimate, and the centred scheme


#: above this share of the mass in one cell of a one-dimensional marginal the answer is called under-resolved.
#: A Gaussian marginal of standard deviation ``s`` puts 38% of its mass in its heaviest cell at ``s = h``,
#: 20% at ``s = 2h``, 68% at ``s = h/2``.
PEAK_CELL_MASS_LIMIT = 0.4


def peak_cell_mass(dens: Density) -> float:
    """The largest share of the mass in one cell of any one-dimensional marginal of ``dens``: about
    ``h / (s sqrt(2 pi))`` for a marginal of standard deviation ``s`` wider than a cell, near 1 when the density
    is narrower than a cell."""
    P = dens.values * dens.grid.cell_volume
    P = P / P.sum()
    axes = range(dens.grid.ndim)
    return float(max(P.sum(axis=tuple(a for a in axes if a != k)).max() for k in axes))


def _refinement_error_estimate(gen: Generator, dens: Density, method: str, tol: float, maxiter: int):
    """Where more than ``PECLET_MASS_LIMIT`` of the mass sits on cells whose Peclet number along the stencil
    exceeds 2 (:attr:`Generator.cell_peclet`), the exponentially fitted fluxes there are upwinded and the answer
    can be far from converged (non-reversible drift across a weak diffusion direction). Then solve on the grid
    with half the cells a side and report ``refinement_estimate``, the L1 distance between that answer and
    this one averaged onto it (Richardson's estimate for first order; for second order it overstates the
    error 2-3 fold). Where the generator split the drift, the Peclet number is that of the rest where it is
    fitted whole (:func:`fokkerplanck.numerics.operator.drift_potential`). Measured, non-normal OU with a rotated
    D: anisotropy 1e2 at 48^2 / 96^2, estimates 0.23 / 0.12 against L1 errors 0.14 / 0.023 (at 192^2 the share
    is 2e-4: no estimate, error 0.0023); anisotropy 1e4 at 96^2 / 192^2 / 384^2, estimates 0.70 / 0.78 / 0.24
    against errors 0.90 / 0.28 / 0.17; a turning field at anisotropy 30 / 100 on 192^2, estimates 0.049 / 0.27
    against errors 0.017 / 0.13. ``peclet_mass`` is that share of the mass. The same estimate is made where more
    than ``PECLET_MASS_LIMIT`` of the mass sits on cells where ``D`` is singular (``degenerate_mass``): where the noise
    vanishes the stationary law can be singular (mass on a point or on the edge of the noiseless region), which
    no grid density holds, and where more than ``MOMENT_MASS_LIMIT`` of the mass sits on cells whose stencil misses
    the tensor (``moment_mass``, :func:`_moment_mass`). Skipped where a cell count is odd (``refinement_estimate``
    then absent).

    Returns ``(info, coarse)``: the keys above, and the half-grid answer (None where none was made)."""
    p = dens.values.ravel() / dens.values.sum()
    share = float(p[gen.cell_peclet > 2.0].sum())
    degenerate = float(p[gen.degenerate_cells].sum())
    out = {"peclet_mass": share, "degenerate_mass": degenerate}
    moment = _moment_mass(gen, p)
    if moment is not None:
        out["moment_mass"] = moment
    if max(share, degenerate, moment or 0.0) <= PECLET_MASS_LIMIT or any(n % 2 or n < 8 for n in gen.grid.shape):
        return out, None
    other = steady_state(
        _half_grid_problem(gen.problem),
        method="direct" if method == "gth" else method,
        tol=tol,
        maxiter=maxiter,
        stencil_radius=gen.requested_radius,
        warn=False,
        estimate_error=False,
    )
    out["refinement_estimate"] = _distance_to_half_grid(dens, other)
    return out, other


def _half_grid_problem(prob: Problem) -> Problem:
    """The same problem on the grid with half the cells a side (even counts)."""
    from ..model.grid import Grid

    grid = prob.grid
    coarse = Grid([(lo, hi, n // 2) for lo, hi, n in grid.axes], bc=grid.bc, frame=grid.frame)
    return Problem(
        coarse, prob.landscape, prob.noise, drift=prob.drift_field, convention=prob.convention, potential=prob.potential
    )


def _distance_to_half_grid(dens: Density, other: Density) -> float:
    """L1 distance between ``other`` (half the cells a side) and ``dens`` averaged onto its cells."""
    grid = dens.grid
    blocks = dens.values.reshape(sum(((n // 2, 2) for n in grid.shape), ()))
    averaged = blocks.mean(axis=tuple(range(1, 2 * grid.ndim, 2)))
    return float(np.abs(averaged - other.values).sum() * other.grid.cell_volume)


def _solve_iterative(M, b, x0, tol, maxiter):
    """GMRES on the pinned system, preconditioned by AMG (pyamg) or ILU."""
    info = {}
    Mneg = -M  # an M-matrix (except the pinned row): what AMG expects
    try:
        import pyamg

        # classical (Ruge-Stuben) AMG suits -A: an M-matrix, weakly diagonally dominant by columns
        ml = pyamg.ruge_stuben_solver(Mneg.tocsr(), max_coarse=300, coarse_solver="splu")
        precond = ml.aspreconditioner(cycle="V")
        info["preconditioner"] = "pyamg Ruge-Stuben AMG"
    except ImportError:  # pragma: no cover - pyamg is a core dependency
        ilu = spla.spilu(Mneg.tocsc(), drop_tol=1e-5, fill_factor=20)
        precond = spla.LinearOperator(M.shape, ilu.solve)
        info["preconditioner"] = "incomplete LU"
    its = [0]

    def count(_):
        its[0] += 1

    # scipy counts restart cycles in ``maxiter``; ours is the total number of Krylov iterations
    restart = max(1, min(60, int(maxiter)))
    x, code = spla.gmres(
        Mneg,
        -b,
        x0=x0,
        rtol=tol,
        atol=0.0,
        restart=restart,
        maxiter=max(1, int(maxiter) // restart),
        M=precond,
        callback=count,
        callback_type="pr_norm",
    )
    info["iterations"] = its[0]
    info["converged"] = code == 0
    return x, info


def _pinned_iterative(A, pin: int, tol: float, maxiter: int):
    """Pinned-cell solve by AMG-GMRES; pins the peak and solves again when the pinned value came out tiny."""
    N = A.shape[0]
    for attempt in range(2):
        M, b = _pinned_system(A, pin)
        with single_blas_thread():
            p, extra = _solve_iterative(M, b, np.full(N, 1.0), tol, maxiter)
        if not np.all(np.isfinite(p)):
            break
        peak = int(np.argmax(p))
        if attempt == 0 and p[pin] < 1e-6 * p[peak]:
            pin = peak  # badly scaled pin: pin the peak and solve again
            continue
        break
    return p, extra, pin


def _second_well(loss: np.ndarray, shape: tuple, pin: int) -> int | None:
    """The lowest cell of the second well: local minima of the loss on the grid (no axis neighbour lower),
    grouped into connected patches (ties between symmetric cells, flat bottoms); the patch nearest to ``pin``
    is its well, and the lowest cell of the lowest other patch is returned. None with a single patch."""
    from scipy import ndimage

    L = np.asarray(loss, dtype=float).reshape(shape)
    is_min = np.isfinite(L)
    for ax in range(L.ndim):
        for step in (1, -1):
            nb = np.roll(L, step, axis=ax)
            edge = [slice(None)] * L.ndim
            edge[ax] = 0 if step == 1 else -1
            nb[tuple(edge)] = np.inf  # no neighbour beyond the box
            is_min &= L <= nb
    labels, count = ndimage.label(is_min, structure=np.ones((3,) * L.ndim))
    if count < 2:
        return None
    cells = np.flatnonzero(labels.ravel())
    where = np.array(np.unravel_index(cells, shape)).T
    own = labels.ravel()[cells[np.argmin(((where - np.array(np.unravel_index(pin, shape))) ** 2).sum(axis=1))]]
    rest = cells[labels.ravel()[cells] != own]
    return int(rest[np.argmin(L.ravel()[rest])])


def _second_peak(p: np.ndarray, shape: tuple, pin: int) -> int | None:
    """The highest cell of the highest peak of the density ``p`` other than the one at (or nearest to) the
    pinned cell ``pin`` (:func:`_second_well` of ``-p``), counting only cells above ``SECOND_PEAK_FLOOR`` of the
    highest value; None when ``p`` has one peak."""
    p = np.asarray(p, dtype=float)
    return _second_well(np.where(p >= SECOND_PEAK_FLOOR * p.max(), -p, np.inf), shape, pin)


def steady_state(
    problem: Problem | Generator,
    *,
    method: str = "auto",
    tol: float = 1e-10,
    maxiter: int = 500,
    pin: int | None = None,
    stencil_radius: int | None = DEFAULT_STENCIL_RADIUS,
    warn: bool = True,
    estimate_error: bool = True,
) -> Density:
    """Stationary density of ``dP/dt = A P``.

    Parameters
    ----------
    problem : Problem or Generator
    method : {"auto", "detailed-balance", "direct", "iterative", "gth"}
        ``auto`` first checks whether the problem is in detailed balance by construction (a landscape with
        isotropic constant noise ``T I``): then the Boltzmann weights ``exp(-L/T)`` are the exact discrete
        steady state, and are returned after checking ``max|A p| <= 1e-12 max|A_nn| max p`` (``info["method"]
        == "detailed-balance"``; no linear solve). Otherwise it takes the sparse LU below ``DIRECT_LIMIT`` cells
        (2D) / ``DIRECT_LIMIT_3D`` (3D; ``DIRECT_LIMIT_3D_PARDISO`` with PARDISO) and the preconditioned Krylov
        solver above, checked for pin dependence (module docstring). ``direct`` and ``iterative`` always
        solve. ``gth``: the Grassmann-Taksar-Heyman elimination (:func:`fokkerplanck.solvers.linalg.gth_stationary`),
        slower (1D cheap; 2D ``N b^2`` with ``b`` about the short side) but with every cell to ~1e-14 relative
        however small: the tails an LU leaves to round-off (measured, 2D OU at 200^2 spanning 1e-49 of the peak:
        direct 3% off at 1e-20 of the peak and meaningless below; ``gth`` 1.7e-14 down to 1e-40), which is
        what an effective potential ``-ln P`` far from the minima needs. A ``ValueError`` where its band does not
        fit.
    tol : float
        Relative residual target of the iterative solver.
    maxiter : int
        Most Krylov iterations of the iterative solver (GMRES restarted every 60). Well-posed problems converge
        in tens of iterations; metastable ones, whose wells are joined by rates near underflow, stall -- the
        solver then warns, and the direct method is the answer where it fits.
    pin : int, optional
        Iterative solver: flat index of the cell pinned to 1 (default: the minimum of the loss, or the
        centre cell; the solve is repeated once with the peak cell when the pinned value is tiny).
    stencil_radius : int or None
        See :class:`~fokkerplanck.numerics.operator.Generator`. With the default, the stencil is exact wherever the
        grid can hold the tensor field at all.
    estimate_error : bool
        Where the grid cannot hold the cross-diffusion (the generator scaled it down), solve once more with
        that cross-diffusion dropped, and report the L1 distance between the two answers as
        ``info["error_estimate"]``: the part of the answer decided by what the stencil cannot represent, of
        the order of the answer's error from it, and a warning gives it when above 1e-2. It can understate the
        error several-fold where most of the cross-diffusion is lost (measured cases: docs, numerics, "Where the
        grid cannot hold the tensor"); an aligned frame (:class:`~fokkerplanck.model.grid.Frame`) removes the
        problem where the tensor field has fixed axes. Where drift crosses a weak diffusion direction (cell
        Peclet numbers above 2) or the noise vanishes on cells holding mass, ``refinement_estimate`` (the
        change from the grid with half the cells a side) is reported as well. So it is where the stencil's
        edges miss a turning tensor field on more than 1% of the mass (``info["moment_mass"]``); there the
        positive centred scheme is solved too, and its answer kept when its own refinement estimate is smaller
        (:func:`_second_opinion`; ``info["scheme"]``).

    Returns
    -------
    Density, with ``info``: ``residual`` ``max|A p| / max|diag A| max p`` (about machine precision for the
    direct solver), ``method`` (``detailed-balance``, ``direct`` or ``iterative``), ``lu`` (the sparse LU
    backend, direct only), ``iterations`` and ``last_change`` (direct: solves made and the relative change of
    the last; see :func:`_inverse_iteration`), ``split_gap`` (direct, when the iteration stalled: how far the
    answer moves from another start; above ``SPLIT_TOLERANCE`` the GTH elimination gives the answer where its
    band fits -- then ``gth`` is True -- and otherwise a warning says that the share of mass between nearly
    decoupled regions is not determined), ``lu_layout`` (how the LU's ordering was prepared: ``red-black
    reduction``, ``red-black numbering``, ...; see :class:`fokkerplanck.solvers.linalg.LUFactor`), ``pinned_cell``
    (iterative
    only, else None), ``pin_dependence`` (L1 distance between the answers pinned in two wells, when the
    iterative solver checked it), ``scheme`` / ``centred`` / ``moment_mass`` / ``monotone_refinement_estimate``
    (where the positive centred scheme was tried: which answer was kept and the iteration's diagnostics),
    ``seconds``, ``wall_ratio`` (peak
    density at a wall / overall peak), and the generator's diagnostics.

    Raises
    ------
    ValueError when a wall is absorbing (no stationary density: mass leaves; see
    :func:`~fokkerplanck.solvers.passage.mean_first_passage_time` or evolve the density instead).
    """
    t0 = time.perf_counter()
    gen = problem if isinstance(problem, Generator) else generator(problem, stencil_radius)
    _check_arguments(gen.grid, method, tol, maxiter)
    if gen.A.nnz == 0 or not np.any(gen.A.diagonal()):
        raise ValueError(
            "steady_state: nothing moves -- the drift and the noise vanish on the whole grid, so every "
            "density is stationary; give the problem a drift or noise"
        )
    opts = _Options(requested=method, tol=float(tol), maxiter=int(maxiter), pin=pin, warn=warn)
    p, method, extra = STRATEGIES[_choose(gen, method, opts)](gen, opts)
    dens = _density(gen, p, method, extra, opts)
    if estimate_error:
        dens = _attach_error_estimates(gen, dens, opts)
    dens.info["wall_ratio"] = warn_wall_mass(dens) if opts.warn else None  # of the answer kept
    dens.info["seconds"] = time.perf_counter() - t0
    return dens


# ------------------------------------------------------------------------------------------------------------
# the strategies: each takes (generator, options) and returns (p, method name, extra info)
# ------------------------------------------------------------------------------------------------------------
@dataclass
class _Options:
    requested: str
    tol: float
    maxiter: int
    pin: int | None
    warn: bool
    boltzmann: np.ndarray | None = None  # the exact detailed-balance answer, when auto found one


def _check_arguments(grid, method, tol, maxiter):
    if not grid.conserves_mass:
        raise ValueError(
            "steady_state: the grid has absorbing walls, so there is no stationary density "
            "(all mass eventually leaves); use evolve(), or mean_first_passage_time()"
        )
    if method not in ("auto", *STRATEGIES):
        raise ValueError(f"steady_state: unknown method {method!r}; expected auto, {', '.join(STRATEGIES)}")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0.0 < tol < 1.0:
        raise ValueError(f"steady_state: tol must be a number in (0, 1), got {tol!r}")
    if isinstance(maxiter, bool) or not isinstance(maxiter, (int, np.integer)) or maxiter < 1:
        raise ValueError(f"steady_state: maxiter must be an integer >= 1, got {maxiter!r}")


def _choose(gen: Generator, method: str, opts: _Options) -> str:
    """``auto``: detailed balance when the Boltzmann weights solve ``A p = 0``; else direct below the size
    limits, iterative above."""
    if method != "auto":
        return method
    opts.boltzmann = _detailed_balance_weights(gen)
    if opts.boltzmann is not None:
        return "detailed-balance"
    limit_3d = DIRECT_LIMIT_3D_PARDISO if lu_backend() == "pardiso" else DIRECT_LIMIT_3D
    return "direct" if gen.grid.size <= (DIRECT_LIMIT if gen.grid.ndim < 3 else limit_3d) else "iterative"


def _detailed_balance_weights(gen: Generator) -> np.ndarray | None:
    """The Boltzmann weights when they are the exact discrete steady state, ``max|A p| <= 1e-12 max|A_nn|
    max p``; else None."""
    p = _boltzmann_candidate(gen)
    A = gen.A
    if p is not None and np.max(np.abs(A @ p)) <= 1e-12 * np.max(np.abs(A.diagonal())) * np.max(p):
        return p
    return None


def _by_detailed_balance(gen: Generator, opts: _Options):
    p = opts.boltzmann if opts.boltzmann is not None else _detailed_balance_weights(gen)
    if p is None:
        raise ValueError(
            "steady_state(method='detailed-balance'): the problem is not in detailed balance with "
            "a known potential (a landscape with isotropic constant noise, or Problem(potential=...))"
        )
    return (
        p,
        "detailed-balance",
        {"algorithm": "detailed balance: the Boltzmann weights exp(-L/T), checked against A p = 0"},
    )


def _by_direct(gen: Generator, opts: _Options):
    p, extra = _inverse_iteration(gen.A, gen.grid.shape)
    return p, "direct", extra


def _by_gth(gen: Generator, opts: _Options):
    p = gth_stationary(gen.A, gen.grid.shape)
    if p is None:
        raise ValueError(
            "steady_state(method='gth'): the elimination's band does not fit this grid "
            "(fokkerplanck.solvers.linalg.GTH_WORK_LIMIT, GTH_MEMORY_LIMIT: 1D, and 2D up to a few "
            "hundred cells on the short side), or the chain is not irreducible"
        )
    return p, "gth", {"algorithm": "Grassmann-Taksar-Heyman elimination (banded)", "gth": True}


def _by_iterative(gen: Generator, opts: _Options):
    """Pinned GMRES + AMG; checked by a second solve pinned in another well (module docstring), falling back to
    the direct method (``auto``, where it fits) or warning when the two answers differ."""
    grid, A = gen.grid, gen.A
    loss = gen.problem.loss(grid.points()) if gen.problem.landscape is not None else None
    pin = opts.pin
    if pin is None:
        pin = (
            int(np.argmin(loss))
            if loss is not None
            else int(np.ravel_multi_index(tuple(n // 2 for n in grid.shape), grid.shape))
        )
    p, extra, pin = _pinned_iterative(A, pin, opts.tol, opts.maxiter)
    extra["pinned_cell"] = int(pin)
    # A residual cannot see how mass is shared between wells: each well is in balance on its own. With two or
    # more minima of the loss, solve again pinned in the second-lowest; with one minimum, or a drift field
    # without a landscape, the wells are those of the answer (a second peak of p).
    other = _second_well(loss, grid.shape, pin) if loss is not None else None
    if other is None and np.all(np.isfinite(p)):
        other = _second_peak(p, grid.shape, pin)
    if other is None or not np.all(np.isfinite(p)):
        return p, "iterative", extra
    q, _, _ = _pinned_iterative(A, other, opts.tol, opts.maxiter)
    gap = float(np.abs(p / p.sum() - q / q.sum()).sum()) if np.all(np.isfinite(q)) else np.inf
    extra["pin_dependence"] = gap
    if gap > 1e-6:
        fits = grid.size <= DIRECT_FALLBACK_LIMIT.get(lu_backend(), 0) or grid.ndim < 3
        if opts.requested == "auto" and fits:
            p, extra = _inverse_iteration(A, grid.shape)
            extra["algorithm"] += f", after the iterative answer depended on the pinned cell (L1 gap {gap:.1e})"
            extra["pin_dependence"] = gap
            return p, "direct", extra
        if opts.warn:
            warnings.warn(
                f"steady_state: metastable problem -- the iterative answer depends on the pinned "
                f"cell (L1 distance {gap:.1e} between pins in two wells): the share "
                "of mass between wells is not determined; use method='direct'",
                RuntimeWarning,
                stacklevel=3,
            )
    return p, "iterative", extra


#: method name -> strategy
STRATEGIES = {
    "detailed-balance": _by_detailed_balance,
    "direct": _by_direct,
    "iterative": _by_iterative,
    "gth": _by_gth,
}


# ------------------------------------------------------------------------------------------------------------
# what every strategy's answer goes through
# ------------------------------------------------------------------------------------------------------------
def _density(gen: Generator, p: np.ndarray, method: str, extra: dict, opts: _Options) -> Density:
    """Clip round-off negatives, measure the residual, wrap as a Density, and warn where the answer is doubtful."""
    grid, A = gen.grid, gen.A
    scale = np.max(np.abs(p))
    neg = p.min() / scale
    p = np.clip(p, 0.0, None)
    res = np.max(np.abs(A @ p)) / (np.max(np.abs(A.diagonal())) * np.max(p))
    info = {
        "method": method,
        "residual": float(res),
        "most_negative_before_clip": float(min(neg, 0.0)),
        "pinned_cell": None,
        **extra,
        **gen.info,
    }
    dens = Density(grid, p.reshape(grid.shape), normalize=True, generator=gen, info=info)
    dens.info["peak_cell_mass"] = peak_cell_mass(dens)
    if not opts.warn:
        return dens
    if dens.info["peak_cell_mass"] > PEAK_CELL_MASS_LIMIT:
        warnings.warn(
            f"steady_state: under-resolved -- {dens.info['peak_cell_mass']:.0%} of the mass sits in one "
            "cell of a marginal (the density is narrower than about a cell): moments and the density's "
            "shape are set by the grid, not the equation; refine the grid or shrink the box",
            RuntimeWarning,
            stacklevel=3,
        )
    if method == "iterative" and not extra.get("converged", True):
        warnings.warn(
            f"steady_state: the iterative solver did not converge in {opts.maxiter} iterations "
            f"(residual {res:.2e}); try method='direct' or a larger maxiter",
            RuntimeWarning,
            stacklevel=3,
        )
    if method == "direct" and extra.get("split_gap", 0.0) > SPLIT_TOLERANCE and not extra.get("gth"):
        warnings.warn(
            f"steady_state: nearly decoupled regions -- the share of mass between them is not determined "
            f"(inverse iteration stalled; from another start the answer moved by {extra['split_gap']:.1e} "
            "in L1): the rates joining them are below the round-off of the sparse LU (~1e-12 of the "
            "largest rates). The answer keeps the split of a uniform start, which is right only where "
            "symmetry fixes it; relate the regions' weights through their escape times "
            "(fp.mean_first_passage_time) instead",
            RuntimeWarning,
            stacklevel=3,
        )
    if res > 1e-6 or neg < -1e-8:
        warnings.warn(
            f"steady_state: the discrete steady state is ill-determined (relative residual {res:.2e}, "
            f"most negative entry {neg:.2e} of the peak before clipping): nearly decoupled regions or "
            "rates that underflow (cell Peclet numbers in the hundreds); refine the grid",
            RuntimeWarning,
            stacklevel=3,
        )
    return dens


ALIGNMENT_ANISOTROPY = 10.0  # a frame is suggested where the mass-weighted mean tensor is at least this anisotropic


def aligned_frame(gen: Generator, dens: Density):
    """A frame to suggest where the grid cannot resolve the anisotropy: the principal axes of the mass-weighted
    mean diffusion tensor ``sum_n p_n D(theta_n)`` (largest eigenvalue last), centred on the density's mean, or
    ``None`` where that mean tensor has no dominant orientation (condition number below
    ``ALIGNMENT_ANISOTROPY``). Measured on the PRL valley rotated by 0.5 rad (0.2 rad), plain 160^2 grid:
    0.487-0.497 rad (0.196-0.199) at Delta_S = 3e-3 and 1e-3; solved in the frame turned by 0.4875 rad,
    ``<|x'|>`` is 0.11% from the exact frame's answer, against 8.4% off on the plain grid
    (``tests/test_anisotropy.py``)."""
    from ..model.grid import Frame

    grid = dens.grid
    p = dens.values.ravel() * grid.cell_volume
    if not np.isfinite(p).all() or p.sum() <= 0:
        return None
    p = p / p.sum()
    pts = grid.points()
    D = np.broadcast_to(gen.problem.diffusion(pts), (grid.size, grid.ndim, grid.ndim))
    mean_D = np.einsum("n,nij->ij", p, D)
    ev = np.linalg.eigvalsh(mean_D)
    if not ev[-1] > ALIGNMENT_ANISOTROPY * max(ev[0], 0.0):
        return None
    return Frame.principal_axes(mean_D, origin=p @ pts)


def _frame_advice(gen: Generator, dens: Density) -> str:
    """The warnings' pointer to an aligned frame: the suggested one where :func:`aligned_frame` finds one (also
    put in ``info["aligned_frame"]``), else the general advice."""
    F = aligned_frame(gen, dens)
    if F is None:
        return "Grid(..., frame=fp.Frame.rotation(angle)) or Frame.principal_axes(H)"
    dens.info["aligned_frame"] = {"matrix": F.matrix.tolist(), "origin": F.origin.tolist()}
    if F.ndim == 2:
        angle = float(np.arctan2(F.matrix[1, 0], F.matrix[0, 0]))
        angle = (angle + np.pi / 2) % np.pi - np.pi / 2  # the axis, not its sign: in [-pi/2, pi/2)
        dens.info["aligned_frame"]["angle"] = angle
        return f"here the mean tensor's axes: Grid(axes_in_xi, frame=fp.Frame.rotation({angle:.3g}))"
    return "here the mean tensor's axes: fp.Frame(**info['aligned_frame']), the box laid out in xi"


# ------------------------------------------------------------------------------------------------------------
# a second opinion where the monotone stencil is not consistent: the positive centred scheme
# ------------------------------------------------------------------------------------------------------------
CENTRED_TOLERANCE = 1e-6  # the Picard iteration stops when one step moves the density by less (L1)
CENTRED_MAX_ITERATIONS = 30


def _moment_mass(gen: Generator, p: np.ndarray) -> float | None:
    """The share of the mass (``p``, flat, summing to 1) on cells whose edges' second moment misses ``D~`` by more
    than ``MOMENT_ERROR`` (:func:`fokkerplanck.numerics.operator.stencil_moment_error`): where the tensor's axes
    turn faster than the stencil's offsets can follow, the monotone scheme is not consistent. None where the
    question does not arise: 1D, a constant tensor, or a scaled (Ito form) stencil."""
    if gen.info["form"] != "divergence" or gen.grid.ndim < 2 or gen.info["cross_diffusion_shrunk_cells"]:
        return None
    return float(p[stencil_moment_error(gen) > MOMENT_ERROR].sum())


def _centred_may_help(gen: Generator, dens: Density) -> bool:
    """Whether to try the positive centred scheme (:mod:`fokkerplanck.numerics.centred`): more than
    ``MOMENT_MASS_LIMIT`` of the mass sits on cells where the monotone stencil misses the tensor
    (``info["moment_mass"]``, which also makes a refinement estimate). Its closure at a reflecting wall (the pair
    fluxes of the centred differences, none across the wall) is cruder than the monotone one; the two refinement
    estimates weigh that too."""
    return "refinement_estimate" in dens.info and dens.info.get("moment_mass", 0.0) > MOMENT_MASS_LIMIT


def _approximate_inverse(Mp: sp.csr_matrix, direct: bool):
    """``r -> Mp^-1 r``, exactly (sparse LU) or approximately (one V-cycle of Ruge-Stuben AMG on ``-Mp``, an
    M-matrix but for the pinned row): the preconditioner the Picard steps share while ``M(p)`` changes little."""
    if direct:
        return spla.splu(Mp.tocsc()).solve
    import pyamg

    cycle = pyamg.ruge_stuben_solver((-Mp).tocsr(), max_coarse=300, coarse_solver="splu").aspreconditioner(cycle="V")
    return lambda r: -(cycle @ r)


def positive_centred_steady_state(gen: Generator, start: np.ndarray):
    """The fixed point ``M(p) p = 0`` of the positive centred scheme (:mod:`fokkerplanck.numerics.centred`) by
    Picard iteration, ``p <- null(M(p))``. In 2D it starts from the centred scheme's own null vector clipped at
    zero (its negative entries are far tails: 4e-7 of the mass on the turning field), in 3D from ``start`` (the
    monotone answer). Each step solves the pinned system of a Metzler generator by GMRES preconditioned with an
    earlier step's sparse LU (3D: one AMG V-cycle; the LU of the 27-point stencil took 12 s a step at 32^3), made
    afresh when 20 GMRES steps do not reach 1e-12: ``M(p)`` changes only in the tails. Returns ``(p, M, info)``,
    ``p`` normalised to sum 1, ``M = M(p)`` and ``info`` with ``iterations``, ``last_change`` (L1 change of the
    last step), ``capped_rates`` and ``seconds``. Measured on the turning field: 2D (anisotropy 30-100,
    96^2-384^2) 1-7 steps to 1e-6, about a hundredth of the scheme's own error; 3D (anisotropy 30, 24^3 / 32^3)
    the 30 steps allowed, last change 7e-6, against errors of 3e-2 / 1.8e-2, in 8.5 / 22 s."""
    t0 = time.perf_counter()
    scheme = PositiveCentred(gen.problem, -gen.A.diagonal())
    direct = gen.grid.ndim < 3
    if direct:
        pin = int(np.argmin(gen.A.diagonal()))  # any cell: the answer is normalised
        Cp, b = _pinned_system(scheme.linear(), pin)
        p = spla.spsolve(Cp.tocsc(), b)
    else:
        p = np.asarray(start, dtype=float).ravel()
    p = np.clip(p, 0.0, None)
    if not (np.all(np.isfinite(p)) and p.sum() > 0):
        raise FloatingPointError("the centred scheme's start is not a density")
    p = p / p.sum()
    pin = int(np.argmax(p))
    solve = None
    change, iterations = np.inf, 0
    while iterations < CENTRED_MAX_ITERATIONS and change >= CENTRED_TOLERANCE:
        iterations += 1
        M, capped = scheme.matrix(p)
        Mp, b = _pinned_system(M, pin)
        for attempt in range(2):
            if solve is None:
                solve = _approximate_inverse(Mp, direct)
                if direct:
                    q = solve(b)
                    break
            precond = spla.LinearOperator(Mp.shape, solve)
            restarts = 1 if attempt == 0 else 25
            q, code = spla.gmres(Mp, b, x0=p / p[pin], rtol=1e-12, atol=0.0, restart=20, maxiter=restarts, M=precond)
            if code == 0:
                break
            solve = None  # M(p) moved too far from the preconditioner's: make it afresh
        q = np.clip(q, 0.0, None)
        if not (np.all(np.isfinite(q)) and q.sum() > 0):
            raise FloatingPointError(f"Picard step {iterations} gave no density")
        q = q / q.sum()
        change = float(np.abs(q - p).sum())
        p = q
    M, capped = scheme.matrix(p)
    info = {
        "iterations": iterations,
        "last_change": change,
        "capped_rates": capped,
        "seconds": time.perf_counter() - t0,
    }
    return p, M, info


def _second_opinion(gen: Generator, dens: Density, coarse: Density) -> Density:
    """Solve with the positive centred scheme on this grid and on the half grid; keep whichever answer has the
    smaller refinement estimate. ``info["scheme"]`` says which (``monotone`` or ``positive centred``);
    ``info["centred"]`` has the iteration's diagnostics and ``refinement_estimate``, and
    ``info["monotone_refinement_estimate"]`` keeps the monotone one. Where the centred solve fails (a singular
    factorisation, no density), the monotone answer stays and ``info["centred"]["failed"]`` says why. Measured on
    the turning field of anisotropy
    100 (S = 0.5): monotone L1 0.38 / 0.13 / 0.035 at 96^2 / 192^2 / 384^2 (estimates 0.47 / 0.27 / 0.096),
    centred 2.3e-3 / 6.2e-4 / 2.1e-4 (estimates 6.3e-3 / 1.6e-3 / 4.4e-4); with S = 0 (reversible) the monotone
    answer is the better one (1.35e-3 against 1.55e-2 at 96^2; estimates 7.9e-3 against 2.7e-2) and is kept."""
    try:
        p, M, info = positive_centred_steady_state(gen, dens.values)
        q, _, _ = positive_centred_steady_state(coarse.generator, coarse.values)
    except (FloatingPointError, RuntimeError, np.linalg.LinAlgError) as exc:  # singular LU, no density, ...
        dens.info.update(scheme="monotone", centred={"failed": str(exc)})
        return dens
    grid = dens.grid
    answer = Density(grid, p.reshape(grid.shape), normalize=True, generator=FrozenCentred(gen.problem, M))
    half = Density(coarse.grid, q.reshape(coarse.grid.shape), normalize=True)
    info["refinement_estimate"] = _distance_to_half_grid(answer, half)
    monotone = dens.info["refinement_estimate"]
    dens.info["centred"] = info
    if info["refinement_estimate"] >= monotone:
        dens.info["scheme"] = "monotone"
        return dens
    answer.info = dict(dens.info)
    answer.info.update(
        scheme="positive centred",
        monotone_refinement_estimate=monotone,
        refinement_estimate=info["refinement_estimate"],
        residual=float(np.max(np.abs(M @ p)) / (np.max(np.abs(M.diagonal())) * np.max(p))),
        peak_cell_mass=peak_cell_mass(answer),
    )
    return answer


def _attach_error_estimates(gen: Generator, dens: Density, opts: _Options) -> Density:
    """``info["error_estimate"]``: from the cross-diffusion the stencil dropped, and from the half-resolution
    grid where drift crosses a weak diffusion direction (``refinement_estimate``); a warning above 1e-2. Where
    the stencil's moments miss a turning tensor field, the positive centred scheme's answer replaces this one
    when its own refinement estimate is smaller (:func:`_second_opinion`)."""
    args = (gen, dens, opts.requested, opts.tol, opts.maxiter)
    shrunk = gen.info.get("cross_diffusion_shrunk_cells")
    if shrunk:
        dens.info.update(_unresolved_error_estimate(*args))
    if dens.info["method"] != "detailed-balance":
        estimate, coarse = _refinement_error_estimate(*args)
        dens.info.update(estimate)
        if _centred_may_help(gen, dens):
            dens = _second_opinion(gen, dens, coarse)
    if "refinement_estimate" in dens.info:
        dens.info["error_estimate"] = max(dens.info.get("error_estimate", 0.0), dens.info["refinement_estimate"])
    if dens.info.get("error_estimate", 0.0) > 1e-2:
        advice = _frame_advice(gen, dens)  # also info["aligned_frame"]
    if "refinement_estimate" in dens.info:
        if opts.warn and dens.info["refinement_estimate"] > 1e-2 and dens.info["degenerate_mass"] > PECLET_MASS_LIMIT:
            warnings.warn(
                f"steady_state: {dens.info['degenerate_mass']:.0%} of the mass sits on cells where the "
                "diffusion tensor is singular (no noise along some direction): the stationary law can be "
                "singular there (mass on a point or on the edge of the noiseless region), which no grid "
                "density converges to: the answer moved by "
                f"{dens.info['refinement_estimate']:.2g} in L1 from the grid with half the cells a side, "
                "and its error can be far larger. Compare with particles (fp.simulate), or give the noise "
                "a floor",
                RuntimeWarning,
                stacklevel=3,
            )
        elif opts.warn and dens.info["refinement_estimate"] > 1e-2:
            if dens.info.get("scheme") == "positive centred":
                why = (
                    f"on cells holding {dens.info['moment_mass']:.0%} of the mass the monotone stencil misses the "
                    "tensor; the positive centred scheme's answer is kept (info['scheme'])"
                )
            elif dens.info["peclet_mass"] > PECLET_MASS_LIMIT:
                why = (
                    f"{dens.info['peclet_mass']:.0%} of the mass sits on cells whose Peclet number along the "
                    "stencil exceeds 2 (drift across a weak diffusion direction)"
                )
            else:
                why = (
                    f"on cells holding {dens.info['moment_mass']:.0%} of the mass the stencil misses the tensor "
                    "(its axes turn faster than the offsets can follow)"
                )
            warnings.warn(
                f"steady_state: {why}; estimated error {dens.info['refinement_estimate']:.2g} in L1 (the change "
                "from the grid with half the cells a side). Refine, or align the grid with the tensor's "
                f"principal axes ({advice})",
                RuntimeWarning,
                stacklevel=3,
            )
    if shrunk and opts.warn and dens.info["error_estimate"] > 1e-2:
        warnings.warn(
            f"steady_state: the grid cannot hold the cross-diffusion at {shrunk} of {gen.grid.size} "
            f"cells; estimated error {dens.info['error_estimate']:.2g} in L1 (how far the answer moves "
            "when that cross-diffusion is dropped instead of scaled; it can understate the error "
            f"several-fold). Align the grid with the problem's principal axes ({advice}), "
            "or refine across the narrow direction",
            RuntimeWarning,
            stacklevel=3,
        )
    return dens
