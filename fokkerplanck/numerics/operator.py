"""The discrete generator ``A`` of ``dP/dt = A P`` (finite volumes, monotone by construction).

Scheme
------
Write the diffusion tensor in grid-index units, ``D~_ij = D_ij / (h_i h_j)``, and split it at every cell
by Selling's decomposition into lattice directions with non-negative weights,
``D~ = sum_e rho_e e e^T`` (:mod:`fokkerplanck.numerics.kernels`). Because the offsets ``e`` are constant
vectors, the Ito diffusion term splits exactly:

    sum_ij d_i d_j (D_ij P) = sum_e (e . grad~)^2 (rho_e P).

* The drift is spread over the same directions in proportion to their diffusion,
  ``v~ = D~ g = sum_e rho_e (e . g) e`` with ``g = D~^+ v~`` (index units, ``v~_i = v_i / h_i``); the part of
  ``v~`` outside the range of ``D~`` (singular tensors) is upwinded along the axes.
* Along each direction ``e`` the one-dimensional Ito flux ``F = a P - d(rho P)``, ``a = rho (e . g)``, is
  integrated exactly for constant coefficients (exponential fitting, Scharfetter-Gummel / Chang-Cooper):

      F = rho_h [ B(-a~/rho_h) P_n - B(a~/rho_h) P_m ],   a~ = a - (rho_m - rho_n),   B(z) = z / (e^z - 1).

  For a landscape, ``e . g`` uses the exact difference ``L_m - L_n`` along ``e``, so for ``D = T I`` the
  flux vanishes on ``P = exp(-L/T)``: the discrete Boltzmann weights are the discrete steady state.

Every term is a jump ``n -> m`` with a non-negative rate: ``A`` has non-negative off-diagonal entries
(a Metzler matrix, so ``exp(tA) >= 0`` and densities stay non-negative) and zero column sums
(mass is conserved to round-off with reflecting and periodic walls). The scheme is second-order accurate
where the Selling weights are smooth (the measured orders are on the documentation's numerics page).

Stencil length. Selling's offsets grow like ``sqrt(cond D~)``. By default (``stencil_radius=None``) every
cell gets the exact decomposition when every tensor of the field fits offsets of a quarter of the shortest
axis (:func:`resolve_stencil_radius`): the scheme then solves the stated equation at any orientation, and
converges at second order (``tests/test_anisotropy.py``). Jumps that cross a reflecting wall land on the mirror
image of their target (blocked, they left corner cells without any jump: closed classes), and the drift of the
cells whose diagonal offsets reach a reflecting wall is upwinded along the axes (the drift spread over long
offsets is large and cancelling under strong anisotropy; cut at the wall, it trapped mass there).

Where some tensor needs longer offsets -- a monotone stencil of radius ``R`` holds only
``|D~_ij| <= R min(D~_ii, D~_jj)``, and ``Delta_S H^2`` on a degenerate valley needs hundreds of cells near the
valley floor -- the grid cannot resolve the field. The short stencil (``SHORT_STENCIL_RADIUS``) is used, with the
off-diagonal part scaled down to a diagonally dominant tensor of the same diagonal where it does not fit
(:func:`fokkerplanck.numerics.kernels.selling_field`), a warning, and a measured error estimate from
:func:`fokkerplanck.solvers.steady.steady_state`: the equation solved there is a nearby one. (Long exact
offsets next to scaled tensors do worse than the short stencil throughout: docs, numerics, "Where the grid
cannot hold the tensor".)

Divergence form. Where the stencil holds a varying ``D`` exactly, the drift the stencil carries is the
conservative ``b = v - div D`` (``div D`` by central differences of the noise model) and each direction's flux is
``rho_h [B(-z) P_n - B(z) P_m]`` with ``z = e . D~^+ b~`` averaged plainly across the face: the divergence form
``div(D grad P - b P)`` of the same equation. ``D^+ b`` is smooth (``-grad psi`` for a reversible problem),
while the Ito form's ``D^+ v`` carries a large ``D^+ div D`` that only approximately cancels the differences of the
Selling weights under strong anisotropy (an error 150 times larger on a field whose axes turn across the box:
docs, numerics, "Anisotropy at any orientation"). Constant tensors are the same in both forms; the scaled
(fallback) stencil keeps the Ito form. ``info["form"]`` says which.

Drift split. Under strong anisotropy a non-reversible drift's drop ``e . D~^+ b~`` along a long oblique offset is
amplified (its non-gradient part is divided by the weak eigenvalue) and, fitted whole, upwinds across the narrow
direction. At cells whose ``D~`` has condition number >= ``SPLIT_ANISOTROPY``, the drops are split into a
least-squares potential (fitted) and a rest (centred on diagonal edges, or carried along the axes where centring
would make a rate negative): :func:`drift_potential`, :func:`fokkerplanck.numerics.kernels.split_mode`. The rates
stay non-negative and the columns sum to zero. Measured in the documentation's numerics page ("Non-reversible
drift under strong anisotropy"); ``info["drift_split"]`` says whether it was used.

Frames. On a grid with a :class:`~fokkerplanck.model.grid.Frame`, ``theta = origin + M xi``, the fields are evaluated
at the cell centres in ``theta`` and transformed: ``D_xi = M^-1 D M^-T``, ``v_xi = M^-1 v`` (and ``b``),
``grad_xi L = M^T grad L``; the scheme then runs on the ``xi`` cells unchanged.

Reversible problems. Given ``psi`` with ``v - div D = -D grad psi`` (``Problem(potential=psi)``), every edge
is balanced against ``exp(-psi)`` (rates ``rho_h B(psi_m - psi_n)`` and ``rho_h B(psi_n - psi_m)``): the
sampled exact density is the discrete steady state, for any tensor field and stencil.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import scipy.sparse as sp

from ..model import budget, noise
from ..model.problem import Problem
from . import kernels

DEFAULT_STENCIL_RADIUS = None  # the exact decomposition where the whole field fits a quarter of the grid
SHORT_STENCIL_RADIUS = 2  # else: this radius, the cross-diffusion scaled down where it does not fit
_PINV_RCOND = 1e-12  # eigenvalues of D_r below this fraction of the largest are dropped from D_r^+


class Generator:
    """The sparse generator ``A`` (``dP/dt = A P``) of a :class:`~fokkerplanck.model.problem.Problem`.

    Attributes
    ----------
    A : scipy.sparse.csr_matrix, shape ``(N, N)`` with ``N = grid.size`` (C-ordered cells)
    stencil_radius : int or None
        Longest jump of the diffusion stencil, in cells. ``None`` (default): Selling's exact decomposition
        everywhere when every tensor of the field fits offsets of a quarter of the shortest axis
        (:func:`resolve_stencil_radius`), else the short stencil (``SHORT_STENCIL_RADIUS``) with the
        cross-diffusion scaled down where it does not fit. An integer ``R``: exact where offsets up to ``R``
        suffice, scaled down elsewhere (see :func:`fokkerplanck.numerics.kernels.selling_field`). Scaling comes with
        a warning, and ``steady_state`` measures what it may cost (``info["error_estimate"]``).
    drop_unresolved : bool
        Drop the cross-diffusion where it does not fit instead of scaling it (the reference of that
        error estimate).
    split_drift : bool
        Split a non-reversible drift into a fitted potential part and a centred rest where the tensor is
        strongly anisotropic (module docstring, "Drift split"; default). False: every drop fitted whole.
    info : dict
        ``cross_diffusion_shrunk_cells`` and ``cross_diffusion_min_factor``, ``max_offset`` (longest stencil
        offset, in cells), ``drift_split`` (and where True ``drift_rest``, ``split_edges``, ``upwinded_edges``,
        ``rest_moved_edges``, ``split_seconds``: :func:`drift_potential`), ``assembly_seconds``, ``nnz``.

    ``cell_peclet`` is each cell's largest Peclet number along its stencil (:func:`_cell_peclet`).

    ``apply(P)`` is ``A P``; ``apply(P, matrix_free=True)`` the same product without ``A``, from the jumps made
    again a block of cells at a time; ``current(P)`` the scheme's fluxes at the cell centres. The jumps are
    assembled on as many threads as numba may use, into the same ``A`` on any number of them.
    """

    def __init__(
        self,
        problem: Problem,
        stencil_radius: int | None = DEFAULT_STENCIL_RADIUS,
        warn: bool = True,
        drop_unresolved: bool = False,
        split_drift: bool = True,
    ):
        resolve_stencil_radius(problem.grid, stencil_radius)  # validates
        budget.check_grid(problem.grid, "the generator")
        with single_blas_thread():  # many small dense products: threads only add overhead
            self._build(problem, stencil_radius, warn, drop_unresolved, split_drift)

    def _build(self, problem: Problem, stencil_radius: int | None, warn: bool, drop_unresolved: bool, split: bool):
        t0 = time.perf_counter()
        self.problem = problem
        self.requested_radius = stencil_radius
        grid = problem.grid
        self.grid = grid
        d, N, h = grid.ndim, grid.size, grid.spacing
        pts = grid.points()

        if type(problem.noise) in (noise.Constant, noise.Isotropic):
            D = problem.diffusion(pts[:1])  # the same tensor at every cell: (1, d, d)
        else:
            D = problem.diffusion(pts)  # (N, d, d)
        v, grad = problem.velocity_and_gradient(pts)  # grad L evaluated once
        v = v + problem.noise_induced_drift(pts)  # = problem.ito_velocity(pts)
        if not np.all(np.isfinite(v)):
            bad = pts[~np.all(np.isfinite(v), axis=1)][0]
            raise ValueError(f"Problem: the drift is not finite at theta={bad}")
        if grid.frame is not None:
            D = grid.frame.tensor_in_xi(D)  # theta = c + M xi: D_xi = M^-1 D M^-T (and v_xi = M^-1 v, below)

        # --- Selling decomposition of D~ = D / (h_i h_j) -------------------------------------------
        # A constant tensor is decomposed once: offsets (1, K, d), weights (1, K) serve every cell.
        Dt = D / np.outer(h, h)
        constant = Dt.shape[0] == 1 or np.array_equal(Dt.min(axis=0), Dt.max(axis=0))
        Dt = np.ascontiguousarray(Dt[:1] if constant else Dt)
        self.tensor_index_units = Dt  # (1, d, d) for a constant tensor, else (N, d, d)
        radius = resolve_stencil_radius(grid, stencil_radius)
        offsets, weights, factor = kernels.selling_field(Dt, radius, drop_unresolved)
        if stencil_radius is None and np.any(factor < 1.0):
            # Some tensor needs offsets longer than a quarter of the grid: the grid cannot resolve this field
            # with a monotone stencil. The short stencil throughout beats long offsets mixed with scaled tensors
            # (module docstring), and steady_state reports a measured error estimate (info["error_estimate"]).
            radius = SHORT_STENCIL_RADIUS
            offsets, weights, factor = kernels.selling_field(Dt, radius, drop_unresolved)
        shrunk_cells = int(np.count_nonzero(factor < 1.0)) * (N if constant else 1)
        # Divergence form where the stencil holds D exactly and D varies: the drift carried by the stencil is the
        # conservative b = v - div D, with g = D^+ b (module docstring, "Divergence form"). Where the tensor had
        # to be scaled, the Ito form is kept: the scaled tensor's own divergence is not div D.
        conservative = not constant and shrunk_cells == 0
        if conservative:
            v = v - problem.diffusion_divergence(pts)
        if shrunk_cells and warn and not drop_unresolved:
            warnings.warn(
                f"cross-diffusion at {shrunk_cells} of {N} cells needs a monotone stencil longer than "
                f"{radius} cells; its off-diagonal part was scaled down there (smallest factor "
                f"{factor.min():.3g}), keeping the diagonal of D exactly: the scheme solves a nearby equation. "
                "steady_state reports the measured error estimate in info['error_estimate']; refine the grid "
                "across the narrow direction, or compare with particles (fp.simulate).",
                RuntimeWarning,
                stacklevel=3,
            )

        if grid.frame is not None:
            # v_xi = M^-1 v (also for b: div_xi D_xi = M^-1 div_theta D), and the landscape's gradient along xi is
            # M^T grad L (so v_xi = -grad_xi L exactly when M is orthogonal)
            v = grid.frame.vector_in_xi(v)
            if grad is not None:
                grad = grad @ grid.frame.matrix

        # --- drift, in index units, split into the range of D~ (spread over the stencil) and the rest --
        # D_r = sum_k rho_k e_k e_k^T (= D~ where the decomposition is exact), g = D_r^+ v~.
        Dr = kernels.stencil_tensor(offsets, weights)
        pinv, rank = kernels.pinv_psd(Dr, _PINV_RCOND)
        if grad is not None:
            L = np.ascontiguousarray(problem.loss(pts), dtype=float)
            grad = np.ascontiguousarray(grad, dtype=float)
            check_loss_and_gradient(grid, L, grad, pts)
            Q = pinv / (h * h)[None, None, :]  # D~^+ diag(1/h^2)
        else:  # no gradient part at all
            L, Q, grad = np.zeros(0), np.zeros((0, d, d)), np.zeros((0, d))
        # D_r^+ v~_extra (v~_extra = (v + grad L)/h: the drift beyond -grad L), v~ - D_r D_r^+ v~, h grad L
        gx, resid, gradL = kernels.split_drift(Dr, pinv, rank, v, grad, h)
        self.cell_peclet = _cell_peclet(offsets, weights, gx)
        # cells where the stencil's tensor is singular (D vanishes along some direction there)
        self.degenerate_cells = np.broadcast_to(rank < d, (N,)) if rank.shape[0] == 1 else rank < d
        keys, axis_weights, _ = kernels.offset_keys(offsets, weights)
        # cells whose diagonal offsets cross a reflecting wall: their drift goes along the axes
        upwind = _reflected_cells(grid, offsets, weights)
        if upwind.any():
            gx[upwind] = 0.0
            resid[upwind] = v[upwind] / h
            if Q.shape[0] == 1 and N > 1:
                Q = np.ascontiguousarray(np.broadcast_to(Q, (N, d, d)))
            if Q.shape[0]:
                Q[upwind] = 0.0

        psi = problem.potential_on_grid() if problem.potential is not None else np.zeros(0)
        # what assemble_jumps needs to make the jumps again (current(), apply(matrix_free=True)): kept instead
        # of the jump lists, which take 28 bytes a jump (3-4x less memory with a constant tensor)
        fixed = (np.array(grid.shape, dtype=np.int64), grid.bc_codes(), offsets, weights, keys, axis_weights)
        fields = (L, gradL, Q, gx)

        def walk(resid, phi):
            return (*fixed, *fields, resid, psi, not conservative, phi, False)

        self._walk = walk(resid, np.zeros(0))
        split_info = {"drift_split": False}
        if split and psi.shape[0] == 0 and not shrunk_cells:
            # cells whose tensor is far from isotropic (in index units): only there is the drop amplified
            ev = np.linalg.eigvalsh(Dt)
            mild = ev[:, -1] < SPLIT_ANISOTROPY * np.maximum(ev[:, 0], 0.0)
            mild = np.broadcast_to(mild, (N,)) if mild.shape[0] == 1 else mild
            phi, moved, cell_pe, split_info = drift_potential(N, self._walk, upwind | mild)
            if phi is not None:  # the rests moved off their edges join the drift the axis faces carry
                self._walk = walk(resid + moved, phi)
                self.cell_peclet = np.where(np.isnan(cell_pe), self.cell_peclet, cell_pe)
        jumps = _jumps_in_threads(N, self._walk)
        count = sum(chunk[0].shape[0] for chunk in jumps)
        index_dtype = np.int32 if count + N <= np.iinfo(np.int32).max else np.int64
        indptr, indices, data = kernels.jumps_to_csr(N, jumps, index_dtype)
        del jumps
        self.A = sp.csr_matrix((data, indices, indptr), shape=(N, N))
        self.A.has_sorted_indices = True  # canonical: sorted, duplicates summed
        self.A.has_canonical_format = True
        self.info = {
            "cross_diffusion_shrunk_cells": shrunk_cells,
            "cross_diffusion_min_factor": float(factor.min()),
            "stencil_radius": int(radius),
            "stencil": "scaled cross-diffusion" if shrunk_cells else "exact",
            "form": "divergence" if conservative else "ito",
            "max_offset": int(kernels.longest_offset(offsets, weights)),
            **split_info,
            "assembly_seconds": time.perf_counter() - t0,
            "nnz": int(self.A.nnz),
            "cells": N,
        }

    # --- uses ------------------------------------------------------------------------------------------
    @property
    def shape(self):
        return self.A.shape

    def apply(self, P, matrix_free: bool = False) -> np.ndarray:
        """``A P`` for a density given on the grid (any shape with ``grid.size`` entries). ``matrix_free``:
        without ``A``, from the jumps made again a block of cells at a time
        (:func:`fokkerplanck.numerics.kernels.walk_jumps`, one exponential per edge), each moving ``k P_src`` from its
        source to its target: the same numbers as ``A @ P`` but for the order of the sums (round-off; measured
        2e-16 to 6e-16 of ``max|A| max P``), in the memory of one block's jumps rather than of ``A``, and 30-90x
        slower than the sparse product (``benchmarks/assembly.py``; 512^2: 0.075 s against 1.7 ms)."""
        P = self._density(P)
        if not matrix_free:
            return (self.A @ P).reshape(self.grid.shape)
        out = np.zeros(self.grid.size)
        kernels.walk_jumps(
            self.grid.size, self._walk, lambda src, dst, rate, _: kernels.add_jump_flows(out, src, dst, rate, P)
        )
        return out.reshape(self.grid.shape)

    def current(self, P) -> np.ndarray:
        """Probability current at cell centres, ``grid.shape + (d,)``, from the scheme's jump fluxes:
        for each pair of cells joined by jumps, the net flow ``k_nm P_n - k_mn P_m`` along their
        displacement, shared between the two cells (all of it to the source for a jump out through an
        absorbing wall). Exactly zero at discrete detailed balance. The jumps are made again, matrix-free.
        In a frame, the components are those of ``theta``."""
        P = self._density(P)
        J = np.zeros((self.grid.size, self.grid.ndim))
        h = np.asarray(self.grid.spacing, dtype=float)
        kernels.walk_jumps(
            self.grid.size,
            self._walk,
            lambda src, dst, rate, disp: kernels.add_jump_current(J, src, dst, rate, disp, h, P),
        )
        if self.grid.frame is not None:
            J = J @ self.grid.frame.matrix.T  # the current is a velocity times a density: J_theta = M J_xi
        return J.reshape(self.grid.shape + (self.grid.ndim,))

    def exit_rates(self) -> np.ndarray:
        """Total rate of the jumps out of each cell through the absorbing walls (flat, ``grid.size``; zero
        away from them), summed from the jumps themselves: not ``-A_nn`` minus the rest of the column, whose
        round-off would be as large as the small rates it is meant to find."""
        out = np.zeros(self.grid.size)

        def add(src, dst, rate, _):
            leaves = dst < 0
            np.add.at(out, src[leaves], rate[leaves])

        kernels.walk_jumps(self.grid.size, self._walk, add)
        return out

    def _density(self, P) -> np.ndarray:
        P = np.asarray(P, dtype=float).ravel()
        if P.shape[0] != self.grid.size:
            raise ValueError(f"Generator: a density needs {self.grid.size} values (the grid's cells), got {P.shape[0]}")
        return P

    def max_rate(self) -> float:
        """Largest total escape rate ``max |A_nn|``: the explicit Euler step is stable and positive for
        ``dt <= 1 / max_rate``."""
        return float(np.max(-self.A.diagonal()))


#: relative mismatch between differences of the loss and the gradient integrated along the grid's edges above
#: which a landscape is refused: a smooth consistent landscape measures O(h^2) (see the tests for the package's
#: landscapes on coarse grids); a gradient off by a factor 2 measures 1/3, an unrelated one about 1
LOSS_GRADIENT_MISMATCH = 0.2


def check_loss_and_gradient(grid, L: np.ndarray, grad: np.ndarray, pts: np.ndarray) -> float:
    """Refuse a landscape whose loss is not finite on the grid, or whose loss and gradient disagree.

    The scheme takes the landscape's drift from differences of ``L`` across faces and the particles follow
    ``grad L``: both must describe the same landscape. Along every edge between neighbouring cells the
    trapezoidal rule gives ``L_j - L_i = h (g_i + g_j) / 2 + O(h^3)``; the relative mismatch
    ``sum |dL - h g_mean| / sum (|dL| + |h g_mean|)`` over all edges is returned, and above
    :data:`LOSS_GRADIENT_MISMATCH` a ``ValueError`` says so (``grid`` in the frame's coordinates: ``grad`` is
    the gradient along them)."""
    if not np.all(np.isfinite(L)):
        bad = ~np.isfinite(L)
        raise ValueError(
            f"Problem: the loss is not finite at {int(bad.sum())} of {L.size} cells (first at "
            f"theta={pts[np.argmax(bad)]}); the scheme takes the drift from differences of the loss"
        )
    Lg = L.reshape(grid.shape)
    gg = grad.reshape(grid.shape + (grid.ndim,))
    num = den = 0.0
    for k in range(grid.ndim):
        if grid.shape[k] < 2:
            continue
        upper = tuple(slice(1, None) if a == k else slice(None) for a in range(grid.ndim))
        lower = tuple(slice(None, -1) if a == k else slice(None) for a in range(grid.ndim))
        dL = Lg[upper] - Lg[lower]
        trap = 0.5 * grid.spacing[k] * (gg[upper + (k,)] + gg[lower + (k,)])
        num += float(np.abs(dL - trap).sum())
        den += float(np.abs(dL).sum() + np.abs(trap).sum())
    mismatch = num / den if den > 0 else 0.0
    if mismatch > LOSS_GRADIENT_MISMATCH:
        raise ValueError(
            f"Problem: the landscape's loss and gradient disagree on the grid (differences of the loss "
            f"against the gradient integrated along the edges: relative mismatch {mismatch:.2g}); the "
            "solver uses the loss, particles the gradient -- fix one of them"
        )
    return mismatch


SPLIT_ANISOTROPY = 20.0  # the drift is split only at cells whose D~ has at least this condition number
_SPLIT_REST_TOL = 1e-6  # below this share of the carried drift the rest is the potential solve's round-off


def drift_potential(N: int, walk: tuple, skip: np.ndarray | None = None):
    """The potential ``phi`` of the drift split, or ``None`` where the drift is a potential drop already.

    Every edge ``n -> m`` with diffusion ``rho`` carries a drift ``a`` (exponentially fitted: rates
    ``rho B(-a/rho)`` and ``rho B(a/rho)``). ``phi`` is the weighted least-squares potential of the drops,

        min_phi  sum_edges rho (a/rho - (phi_n - phi_m))^2,     i.e.  L phi = sum_out a - sum_in a,

    ``L`` the graph Laplacian with the weights ``rho`` (one symmetric positive semi-definite solve). The edge
    then carries ``rho (phi_n - phi_m)`` exponentially fitted and the rest ``c = a - rho (phi_n - phi_m)``
    centred (:func:`fokkerplanck.numerics.kernels.split_rate_pair`). Why: for a non-reversible drift under
    anisotropic noise, ``a/rho = e . D~^+ b~`` is amplified along the weak direction (by ``cond D``), and fitted
    whole it upwinds: numerical diffusion across the narrow direction. Its gradient part is a potential's drop
    and its rest stays the size of ``b`` itself. On a reversible problem the drops are a potential's
    differences, the rest is round-off and nothing changes (``None``). Edges that touch a cell of ``skip`` (the
    cells whose drift goes along the axes at a reflecting wall, not along their offsets) are left out and keep
    their fitted rates (``phi`` is NaN there).

    Only diagonal edges are split, and only where the rest is not small
    (:func:`fokkerplanck.numerics.kernels.split_mode`). A rest that centred would make a rate negative goes along
    the axes instead, half from each end cell: ``moved`` (N, d), added to the drift the axis faces fit whole.

    Returns ``(phi, moved, cell_peclet, info)``, or ``None`` for the first three where nothing changes.
    ``cell_peclet`` is each cell's largest Peclet number of a rest that is fitted whole (``|a - rho dphi| / rho``
    on its edges; ``|moved| / rho`` on its axes): past 2 that fit upwinds (NaN for cells outside the split).
    ``info`` has ``drift_split``, ``drift_rest`` (the rest's share of the drift,
    ``sqrt(sum c^2/rho / sum a^2/rho)``), ``split_edges``, ``upwinded_edges`` (edges whose rest, fitted whole,
    has a Peclet number above 2), ``rest_moved_edges``, ``edges`` and ``split_seconds``.
    """
    t0 = time.perf_counter()
    src, dst, rho, a, disp = _edges(N, walk)
    if skip is not None and skip.any():
        keep = ~(skip[src] | skip[dst])
        src, dst, rho, a, disp = src[keep], dst[keep], rho[keep], a[keep], disp[keep]
    if a.size == 0 or not np.any(a):
        return None, None, None, {"drift_split": False}
    W = sp.csr_matrix((rho, (src, dst)), shape=(N, N))
    W = (W + W.T).tocsr()
    L = sp.diags(np.asarray(W.sum(axis=1)).ravel()) - W
    f = np.bincount(src, a, N) - np.bincount(dst, a, N)
    phi = _graph_laplacian_solve(L.tocsr(), f)
    c = a - rho * (phi[src] - phi[dst])
    share = float(np.sqrt(np.sum(c * c / rho) / np.sum(a * a / rho)))
    if share < _SPLIT_REST_TOL:
        return None, None, None, {"drift_split": False}
    if skip is not None and skip.any():
        phi = np.where(skip, np.nan, phi)
    # rests that do not fit their diagonal edge go along the axes, half from each end cell (index units)
    diagonal = np.count_nonzero(disp, axis=1) > 1
    dphi = phi[src] - phi[dst]
    move = (kernels.split_modes(a, rho, dphi) == 2) & diagonal
    moved = np.zeros((N, disp.shape[1]))
    half = 0.5 * c[move, None] * disp[move]
    np.add.at(moved, src[move], half)
    np.add.at(moved, dst[move], half)
    # the Peclet number of the rest where it is fitted whole with the potential part (an axis face with the
    # moved rests added to its drift): past 2 that fit upwinds the rest; a split edge carries it centred
    axis = ~diagonal
    ax = np.argmax(np.abs(disp), axis=1)
    a_final = a + np.where(axis, 0.5 * (moved[src, ax] + moved[dst, ax]) * disp[np.arange(a.size), ax], 0.0)
    modes = kernels.split_modes(a_final, rho, dphi)
    whole = axis | (modes == 0)  # axis faces are always fitted whole
    edge_pe = np.where(whole, np.abs(a_final - rho * dphi) / rho, 0.0)
    cell_pe = np.full(N, np.nan)
    seen = np.zeros(N, dtype=bool)
    seen[src] = seen[dst] = True
    cell_pe[seen] = 0.0
    np.maximum.at(cell_pe, src, edge_pe)
    np.maximum.at(cell_pe, dst, edge_pe)
    # a moved rest on an axis without diffusion (not in the edge list) is upwinded whole there
    axis_weights = np.broadcast_to(walk[5], (N, walk[5].shape[1]))  # the walk's axis_weights
    with np.errstate(divide="ignore", invalid="ignore"):
        pe_moved = np.where(moved != 0.0, np.abs(moved) / axis_weights, 0.0).max(axis=1)
    cell_pe = np.where(seen, np.maximum(cell_pe, pe_moved), cell_pe)
    upwinded = int(np.count_nonzero(whole & (edge_pe > 2.0)))
    if whole.all():  # every rest small enough to fit whole: the generator would be unchanged
        return None, None, None, {"drift_split": False}
    return (
        phi,
        moved,
        cell_pe,
        {
            "drift_split": True,
            "drift_rest": share,
            "split_edges": int(np.count_nonzero(~whole)),
            "upwinded_edges": upwinded,
            "rest_moved_edges": int(move.sum()),
            "edges": int(a.size),
            "split_seconds": time.perf_counter() - t0,
        },
    )


def _edges(N: int, walk: tuple):
    """Every edge ``n -> m`` of the stencil once: ``(src, dst, rho, a, disp)``, its diffusion ``rho_h``, drift ``a``
    and offset (index units), from the walk made again with ``drops=True`` (its last entry)."""
    chunks = _jumps_in_threads(N, walk[:-1] + (True,))
    src = np.concatenate([c[0][0::2] for c in chunks]).astype(np.int64)
    dst = np.concatenate([c[1][0::2] for c in chunks]).astype(np.int64)
    rho = np.concatenate([c[2][0::2] for c in chunks])
    a = np.concatenate([c[2][1::2] for c in chunks])
    disp = np.concatenate([c[3][0::2] for c in chunks]).astype(float)
    return src, dst, rho, a, disp


def stencil_moment_error(gen: Generator) -> np.ndarray:
    """Each cell's relative error of the diffusion its edges carry: ``|M_n - D~_n| / |D~_n|`` (Frobenius), with
    ``M_n = 1/2 sum_(edges at n) rho_h e e^T`` in index units. Selling's weights reproduce ``D~`` at every cell, but an
    edge's weight is the average of its two end cells': where the tensor's axes turn faster than a long offset can
    follow, ``M`` misses ``D~`` (24% at worst on a field of anisotropy 100 turning by 7 rad across 192^2 cells) and
    the scheme is not consistent there (:mod:`fokkerplanck.numerics.centred`). Zero for a constant tensor, up to
    cells at reflecting walls, where mirrored jumps stand in for the ones that would leave."""
    N, d = gen.grid.size, gen.grid.ndim
    src, dst, rho, _, disp = _edges(N, gen._walk)
    keep = (dst >= 0) & (src != dst)
    src, dst, rho, disp = src[keep], dst[keep], rho[keep], disp[keep]
    M = np.zeros((N, d * d))
    ee = (0.5 * rho[:, None, None] * disp[:, :, None] * disp[:, None, :]).reshape(-1, d * d)
    for k in range(d * d):
        M[:, k] = np.bincount(src, ee[:, k], N) + np.bincount(dst, ee[:, k], N)
    Dt = np.broadcast_to(gen.tensor_index_units.reshape(-1, d * d), (N, d * d))
    with np.errstate(invalid="ignore", divide="ignore"):
        err = np.linalg.norm(M - Dt, axis=1) / np.linalg.norm(Dt, axis=1)
    return np.nan_to_num(err, nan=0.0)


def _graph_laplacian_solve(L, f):
    """``L phi = f`` for a weighted graph Laplacian (``f`` sums to zero on every connected part): a tiny shift makes
    it definite; a direct solve up to 10k cells, else conjugate gradients preconditioned by Ruge-Stuben AMG
    (pyamg). The split is exact for any ``phi`` (the rest carries what the potential does not), so a relative
    residual of 1e-3 is ample: against 1e-5 the density moved by 3e-8 in L1 on a non-normal OU at 512^2, in
    0.6 s instead of 1.3 s (smoothed aggregation to 1e-8 took 3 s at 64^3)."""
    N = L.shape[0]
    shift = 1e-12 * float(np.abs(L.diagonal()).max() or 1.0)
    M = (L + sp.identity(N, format="csr") * shift).tocsr()
    if N <= 10_000:  # (3D fill-in: a direct solve took 1.9 s at 32^3, AMG-CG 0.3 s)
        import scipy.sparse.linalg as spla

        return spla.spsolve(M.tocsc(), f)
    import pyamg

    ml = pyamg.ruge_stuben_solver(M, max_coarse=500)
    return ml.solve(f, tol=1e-3, accel="cg", maxiter=50)


def _cell_peclet(offsets, weights, gx) -> np.ndarray:
    """The largest cell Peclet number ``|e . g|`` over each cell's stencil offsets, for ``g = D~^+ v~`` of the drift
    other than a landscape's ``-grad L`` (``gx`` of :func:`fokkerplanck.numerics.kernels.split_drift`; all of it for
    a drift
    field). Past about 2 the exponentially fitted fluxes upwind and their numerical diffusion rivals the physical
    one. The landscape's part is left out: its drops along the offsets are differences of ``L`` (exact Boltzmann
    weights for isotropic noise, exact Gaussians for Hessian-aligned noise on a quadratic) however large."""
    z = np.einsum("nkp,np->nk", offsets, gx) if offsets.shape[0] > 1 else gx @ offsets[0].T
    return np.max(np.where(weights > 0, np.abs(z), 0.0), axis=1)


def _reflected_cells(grid, offsets, weights) -> np.ndarray:
    """Cells with a diagonal offset (two or more non-zero components) that crosses a reflecting wall: their
    mirrored jumps carry no drift, so the drift the stencil would share out between the offsets, large
    and cancelling under strong anisotropy, would no longer cancel there (measured: wall cells then trap the
    mass). The drift of these cells is upwinded along the axes instead. Axis offsets never cross a wall
    (its face has zero flux), so isotropic noise keeps its exact Boltzmann weights."""
    shape = np.array(grid.shape)
    diagonal = (np.count_nonzero(offsets, axis=2) > 1) & (weights > 0)
    reach = np.max(np.where(diagonal[:, :, None], np.abs(offsets), 0), axis=1)  # (M, d)
    idx = np.indices(grid.shape).reshape(grid.ndim, -1).T  # (N, d)
    low = np.array([lo == "reflecting" for lo, _ in grid.bc])
    high = np.array([hi == "reflecting" for _, hi in grid.bc])
    near = ((idx < reach) & low) | ((idx >= shape - reach) & high)
    return np.any(near, axis=1)


_CELLS_PER_THREAD = 65_536  # below this a thread's start costs more than it saves


def _jumps_in_threads(N: int, args: tuple, workers: int | None = None) -> list:
    """The jump lists of :func:`fokkerplanck.numerics.kernels.assemble_jumps` over all ``N`` cells, split into
    consecutive ranges assembled by as many threads as numba may use (``numba.get_num_threads()``, set by
    ``NUMBA_NUM_THREADS``), at least ``_CELLS_PER_THREAD`` cells each; the kernel runs without the GIL.
    Returns one ``(src, dst, rate, disp)`` per range, in order: :func:`fokkerplanck.numerics.kernels.jumps_to_csr`
    makes the same matrix from them, bit for bit, whatever the number of threads. Measured on 2 cores, a
    full constant tensor: the whole generator at 96^3 (885k cells) in 1.24-1.28 s against 1.7-2.0 s on one
    thread; at 512^2 the kernel alone in 0.06 s against 0.1 s."""
    if workers is None:
        import numba

        workers = max(1, min(numba.get_num_threads(), N // _CELLS_PER_THREAD))
    bounds = [N * k // workers for k in range(workers + 1)]
    if workers == 1:
        return [kernels.assemble_jumps(*args, 0, N, kernels.cell_index_like(N))]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:
        index_like = kernels.cell_index_like(N)
        return list(
            pool.map(lambda k: kernels.assemble_jumps(*args, bounds[k], bounds[k + 1], index_like), range(workers))
        )


def single_blas_thread():
    """Context manager limiting OpenBLAS (and BLIS) to one thread: the Krylov and AMG solvers do many small
    dense operations, for which their threads cost far more than they give (measured on 2 cores: an AMG-GMRES
    3D steady state 5.0 s with default threads, 1.3 s with one). MKL is left alone: its threads are PARDISO's
    (:mod:`fokkerplanck.solvers.linalg`), which the implicit time steps use inside this context."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl is a core dependency
        import contextlib

        return contextlib.nullcontext()
    return ThreadpoolController().select(internal_api=["openblas", "blis"]).limit(limits=1)


def resolve_stencil_radius(grid, stencil_radius: int | None) -> int:
    """The longest stencil offset allowed, in cells: ``stencil_radius`` itself (an integer >= 1), or for
    ``None`` a quarter of the grid's shortest axis (at least 2) -- as long as Selling's decomposition needs on
    any grid that can resolve it; offsets longer than that would reach across the density itself."""
    if stencil_radius is None:
        return max(2, min(grid.shape) // 4)
    if isinstance(stencil_radius, bool) or int(stencil_radius) != stencil_radius or int(stencil_radius) < 1:
        raise ValueError(f"stencil_radius must be an integer >= 1 (or None), got {stencil_radius!r}")
    return int(stencil_radius)


def generator(problem: Problem, stencil_radius: int | None = DEFAULT_STENCIL_RADIUS) -> Generator:
    """The generator of ``problem``, cached on the problem per stencil radius."""
    cache = problem.__dict__.setdefault("_cache", {})
    key = ("generator", None if stencil_radius is None else resolve_stencil_radius(problem.grid, stencil_radius))
    if key not in cache:
        cache[key] = Generator(problem, stencil_radius)
    return cache[key]
