"""Sparse LU factorisation behind every direct solve: steady states, implicit time steps, first-passage times.

All the matrices factorised here are non-singular M-matrices: ``eps I - A`` (steady state), ``I - gamma h A``
(implicit steps) and ``-A^T`` restricted to the interior cells (first passage), with ``A`` the Metzler generator
whose columns sum to zero (or less, at absorbing walls). Their LU factors exist without pivoting and every pivot
is positive (each Schur complement of an M-matrix is again an M-matrix), so a solver may keep the fill-reducing
order and skip numerical pivoting altogether.

Backends
--------
* ``"superlu"``: :func:`scipy.sparse.linalg.splu` with minimum degree on ``A + A^T``; always available,
  single-threaded.
* ``"pardiso"``: Intel MKL PARDISO through ``pypardiso`` (the optional extra ``fokkerplanck[pardiso]``, x86-64
  only): multithreaded supernodal LU, static order (minimum degree in 1D/2D, METIS nested dissection in 3D
  and for 2D factors of stencils without diagonal links that serve many solves, which measured faster in each
  case), no scaling, no matching, and no pivot perturbation (threshold 1e-20 of the matrix norm, far below any
  pivot of these M-matrices; a factor that reports a perturbed pivot is redone by SuperLU). MKL's minimum degree depends on the numbering
  and the pattern it is given, so in 2D it gets one of two layouts (measurements above
  ``_two_dimensional_layout``): stencils with diagonal links at (nearly) every cell, as a full tensor ``D`` gives,
  are renumbered red-black, which halves the flops of the factorisation (512^2: 23.3 M factor entries against
  29.1 M in the natural numbering); 5-point stencils (diagonal ``D``) carry explicit zeros at the four diagonal
  neighbours of every cell (the 9-point pattern), without which the ordering took 2-4 s at 512^2 (0.2 s with
  them). Measured on this 2-core machine, one factorisation and one solve, OU with full ``D``: 512^2 cells
  0.45-0.8 s against SuperLU 3.0 s; 1024^2 3.6 s against 23 s; 3D 40^3 1.2 s against 29 s.
* ``"auto"`` (the default): ``pardiso`` when ``pypardiso`` imports, else ``superlu``.

Reproducibility: SuperLU and a PARDISO factor made on one thread give the same bits in every run; a
multithreaded PARDISO factor agrees to round-off (1e-13 of the answer), not bit for bit. Steady states and
first-passage times use the multithreaded factor; :func:`~fokkerplanck.evolve.evolve` asks for the one-thread
factor (``reproducible=True``), so that a run resumed from a checkpoint repeats an uninterrupted one exactly.

Choose with :func:`set_lu_backend` or the environment variable ``FOKKERPLANCK_LU``
(``auto``/``superlu``/``pardiso``). Both backends agree to round-off (measured: 1e-14 of the peak on the OU
steady states above).
"""
from __future__ import annotations

import os
import weakref

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from numba import njit

BACKENDS = ("auto", "superlu", "pardiso")
_backend = None          # set_lu_backend(); None: the environment variable, else "auto"


def set_lu_backend(name: str) -> None:
    """Select the sparse LU for all direct solves: ``"auto"``, ``"superlu"`` or ``"pardiso"``."""
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"set_lu_backend: unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
    if name == "pardiso" and not pardiso_available():
        raise ImportError("set_lu_backend('pardiso') needs pypardiso (Intel MKL, x86-64): "
                          "pip install 'fokkerplanck[pardiso]'")
    _backend = name


def lu_backend() -> str:
    """The backend the next factorisation uses (``"superlu"`` or ``"pardiso"``; ``auto`` resolved)."""
    name = _backend or os.environ.get("FOKKERPLANCK_LU", "auto")
    if name not in BACKENDS:
        raise ValueError(f"FOKKERPLANCK_LU={name!r}; expected one of {', '.join(BACKENDS)}")
    if name == "auto":
        return "pardiso" if pardiso_available() else "superlu"
    if name == "pardiso" and not pardiso_available():
        raise ImportError("FOKKERPLANCK_LU=pardiso needs pypardiso (Intel MKL, x86-64): "
                          "pip install 'fokkerplanck[pardiso]'")
    return name


_pardiso_module = None


def pardiso_available() -> bool:
    """Whether pypardiso imports and finds MKL's ``mkl_rt`` (checked once, by making a solver)."""
    global _pardiso_module
    if _pardiso_module is None:
        try:
            import pypardiso
            solver = pypardiso.PyPardisoSolver()
            # pypardiso looks for MKL (find_library, then a directory walk: ~0.1 s) in every new solver;
            # its documented variable remembers the library found this first time
            os.environ.setdefault("PYPARDISO_MKL_RT", solver.libmkl._name)
            _pardiso_module = pypardiso
        except (ImportError, OSError, AttributeError):
            _pardiso_module = False
    return _pardiso_module is not False


class LUFactor:
    """``M = L U`` of a sparse non-singular M-matrix; ``solve(b)`` returns ``M^{-1} b``.

    ``grid_shape``: the grid whose cells (C order) index the rows of ``M``; ``cells``: the flat indices of
    those cells when ``M`` is restricted to some of them (default: all). They choose PARDISO's ordering
    (above); without them ``M`` is treated as 1D/2D. ``many_solves``: the factor will serve hundreds of
    solves (implicit time steps), so a 2D stencil without diagonal links (which would be padded for minimum
    degree) is ordered by METIS nested dissection instead, whose longer analysis (0.7-1.2 s at 512^2) buys
    less fill and faster solves (5-point, 512^2: 17.3 M entries, 0.038-0.048 s a solve, against 28.7 M and
    0.054 s padded). ``reproducible``:
    factorise on one thread. PARDISO's multithreaded factorisation is reproducible to round-off only (the
    METIS-ordered factor gave solutions 1.7e-13 apart between identical runs on 2 threads; MKL's reproducible
    mode made every solve 2.5-6x slower); its solves with a given factor were identical in every run.

    Attributes: ``backend`` (``"superlu"`` or ``"pardiso"``), ``nnz`` (entries of ``L`` and ``U``)."""

    def __init__(self, M: sp.spmatrix, *, grid_shape: tuple | None = None, cells: np.ndarray | None = None,
                 backend: str | None = None, many_solves: bool = False, reproducible: bool = False):
        if backend is None:
            backend = lu_backend()
        elif backend not in ("superlu", "pardiso"):
            raise ValueError(f"LUFactor: unknown backend {backend!r}; expected superlu or pardiso")
        self.shape = M.shape
        if backend == "pardiso" and self._pardiso(M, grid_shape, cells, many_solves, reproducible):
            return
        self.backend = "superlu"
        self._lu = spla.splu(sp.csc_matrix(M), permc_spec="MMD_AT_PLUS_A")
        self.nnz = int(self._lu.L.nnz + self._lu.U.nnz)
        self.solve = self._lu.solve

    def _pardiso(self, M, grid_shape, cells, many_solves, reproducible) -> bool:
        if not pardiso_available():
            raise ImportError("LUFactor(backend='pardiso') needs pypardiso (Intel MKL, x86-64): "
                              "pip install 'fokkerplanck[pardiso]'")
        ndim = 1 if grid_shape is None else len(grid_shape)
        Mcsr = sp.csr_matrix(M, dtype=np.float64)
        self._order = None
        if ndim == 2:
            Mcsr, self._order, nested_dissection = _two_dimensional_layout(Mcsr, grid_shape, cells, many_solves)
        else:
            Mcsr.sort_indices()
            nested_dissection = ndim >= 3
        solver = _pardiso_module.PyPardisoSolver(mtype=11)      # real, structurally non-symmetric
        iparm = {1: 1,                          # use the values below (not PARDISO's defaults)
                 2: 2 if nested_dissection else 0,   # METIS nested dissection, or minimum degree
                 10: 20,                        # pivot perturbation only below 1e-20 ||M||: effectively never
                 11: 0, 13: 0,                  # no scaling, no matching: an M-matrix needs no pivoting
                 18: -1}                        # report the fill
        for i, v in iparm.items():              # pypardiso numbers iparm from 1 (the Fortran manual)
            solver.iparm[i - 1] = v
        if reproducible:    # one thread: the same factor, bit for bit, in every run
            previous = solver.libmkl.MKL_Set_Num_Threads_Local(1)
            try:
                solver.factorize(Mcsr)
            finally:
                solver.libmkl.MKL_Set_Num_Threads_Local(previous)
        else:
            solver.factorize(Mcsr)
        if solver.iparm[13] > 0:                # perturbed pivots: not the M-matrix this module expects
            solver.free_memory(everything=False)
            return False
        self.backend = "pardiso"
        self.nnz = int(solver.iparm[17])
        self._matrix = Mcsr
        self._solver = solver
        weakref.finalize(self, solver.free_memory, False)   # MKL's memory, not Python's
        return True

    def solve(self, b: np.ndarray) -> np.ndarray:      # pardiso path (superlu binds its own in __init__)
        b = np.asarray(b, dtype=np.float64)
        if self._order is None:
            return self._solver.solve(self._matrix, np.ascontiguousarray(b))
        x = np.empty_like(b)
        x[self._order] = self._solver.solve(self._matrix, np.ascontiguousarray(b[self._order]))
        return x


# --- how PARDISO's orderings see a 2D matrix --------------------------------------------------------------
# MKL's minimum degree is sensitive to the numbering it starts from and to the pattern (measured at 512^2,
# factor entries / analysis + factorisation seconds on 2 cores):
#   * 7-point stencils (a full constant D: every cell linked to one pair of diagonal neighbours): 29.1 M,
#     0.16 + 0.35-0.45 s in the natural numbering; 23.3 M, 0.13-0.26 + 0.26-0.35 s (half the flops) with the
#     cells numbered red-black (parity of i + j) and the j axis reversed when the links are anti-diagonal
#     (otherwise 32.7 M). Also 1024^2: 131 -> 110 M entries, 4.8 -> 3.6 s; the PRL landscape with
#     D = Delta_S H^2 at 1600 x 384: 90 -> 67 M, 2.9 -> 1.9 s.
#   * 5-point stencils (diagonal D): 16.6 M entries but 2.3 s of analysis (74 s at 1024^2) in any regular
#     numbering; with explicit zeros at the four diagonal neighbours (the 9-point pattern) 28.7 M in 0.2 s.
#   * mixed patterns (diagonal links in part of the domain): the red-black numbering gained little and its
#     analysis took up to 2.3 s; the 9-point pattern is used unless nearly every cell has a diagonal link.
#   * factors for many solves (I - h A, one thread): red-black minimum degree against METIS, 7-point 512^2:
#     23.3 M entries, factorisation 0.7-1.8 s, 0.035 s a solve, against 24.6 M, 1.7-2.5 s, 0.046-0.049 s.
#     Without diagonal links METIS stays better (17.3 M entries against 28.7 M padded).
_RED_BLACK_MIN_LINKED = 0.999     # fraction of the cells off the box's edge that need a diagonal link for red-black


def _grid_rows(shape, cells):
    """Flat cell index of every row, and the row of every cell (-1 for cells not in the matrix)."""
    full = int(np.prod(shape))
    if cells is None:
        rows = np.arange(full, dtype=np.int64)
        return rows, rows
    rows = np.asarray(cells, dtype=np.int64)
    pos = np.full(full, -1, dtype=np.int64)
    pos[rows] = np.arange(rows.size)
    return rows, pos


def _two_dimensional_layout(M: sp.csr_matrix, shape, cells, many_solves: bool):
    """The matrix to hand PARDISO for a 2D grid, the numbering it uses (``order[k]``: the row of ``M`` that
    is row ``k`` there; None for ``M``'s own), and whether to order it by METIS nested dissection rather than
    minimum degree (see the measurements above):

    * nearly every cell has a diagonal link: ``M`` renumbered red-black, minimum degree;
    * otherwise, for a factor that will serve many solves: ``M`` as it is, METIS;
    * otherwise: ``M`` padded to the 9-point pattern, minimum degree."""
    M.sum_duplicates()                              # sorted, unique column indices in every row
    rows, _ = _grid_rows(shape, cells)
    n0, n1 = int(shape[0]), int(shape[1])
    interior, linked, diagonal, anti = _diagonal_links(M.indptr, M.indices, rows, n0, n1)
    if interior == 0 or linked < _RED_BLACK_MIN_LINKED * interior:
        if many_solves:
            return M, None, True
        return _with_diagonal_neighbours(M, shape, cells), None, False
    i, j = np.divmod(rows, n1)
    if anti > diagonal:
        j = n1 - 1 - j
    order = np.argsort((((i + j) % 2) * int(shape[0]) + i) * n1 + j, kind="stable")
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    indptr, indices, data = _permuted(M.indptr, M.indices, M.data, order, inverse)
    out = sp.csr_matrix((data, indices, indptr), shape=M.shape)
    out.has_sorted_indices = True
    out.has_canonical_format = True
    return out, order, False


@njit(cache=True)
def _diagonal_links(indptr, indices, rows, n0, n1):
    """Rows whose cell is inside the box (not on its edge), how many of them have a stored entry at a
    diagonal neighbour (cells ``(i +- 1, j +- 1)``), and the entries along ``(1, 1)`` and along ``(1, -1)``."""
    interior, linked, diagonal, anti = 0, 0, 0, 0
    for r in range(indptr.shape[0] - 1):
        i, j = rows[r] // n1, rows[r] % n1
        found = False
        for a in range(indptr[r], indptr[r + 1]):
            c = rows[indices[a]]
            di, dj = c // n1 - i, c % n1 - j
            if (di == 1 or di == -1) and (dj == 1 or dj == -1):
                found = True
                if di == dj:
                    diagonal += 1
                else:
                    anti += 1
        if 0 < i < n0 - 1 and 0 < j < n1 - 1:
            interior += 1
            if found:
                linked += 1
    return interior, linked, diagonal, anti


@njit(cache=True)
def _permuted(indptr, indices, data, order, inverse):
    """CSR arrays of ``P M P^T`` (row and column ``k`` = row and column ``order[k]`` of ``M``), columns
    sorted."""
    N = indptr.shape[0] - 1
    new_ptr = np.zeros(N + 1, dtype=np.int64)
    for k in range(N):
        new_ptr[k + 1] = new_ptr[k] + indptr[order[k] + 1] - indptr[order[k]]
    new_idx = np.empty(new_ptr[N], dtype=indices.dtype)
    new_val = np.empty(new_ptr[N])
    for k in range(N):
        q0 = new_ptr[k]
        q = q0
        for a in range(indptr[order[k]], indptr[order[k] + 1]):
            col = inverse[indices[a]]
            val = data[a]
            b = q
            while b > q0 and new_idx[b - 1] > col:     # insertion sort: rows are short
                new_idx[b] = new_idx[b - 1]
                new_val[b] = new_val[b - 1]
                b -= 1
            new_idx[b] = col
            new_val[b] = val
            q += 1
    return new_ptr, new_idx, new_val


def _with_diagonal_neighbours(M: sp.csr_matrix, shape, cells) -> sp.csr_matrix:
    """``M`` with explicit zeros wherever two cells of a 2D grid are diagonal neighbours (flat offsets
    ``+-(n1 - 1)``, ``+-(n1 + 1)``; wrapping at the ends of rows only adds harmless structure), every value of
    ``M`` kept. ``cells``: the flat indices of the cells that index the rows of ``M`` (default: all).
    Returns a CSR matrix with sorted indices (two numba passes: 20-30 ms at 512^2, against 90 ms by adding
    a pattern matrix with scipy)."""
    rows, pos = _grid_rows(shape, cells)
    M = sp.csr_matrix(M, dtype=np.float64)
    M.sum_duplicates()                          # sorted, unique column indices in every row
    indptr, indices, data = _pad_rows(M.indptr, M.indices, M.data, rows, pos, int(shape[1]))
    out = sp.csr_matrix((data, indices, indptr), shape=M.shape)
    out.has_sorted_indices = True
    out.has_canonical_format = True
    return out


@njit(cache=True)
def _diagonal_neighbours(c, pos, n1, extra):
    """The rows (in ``M``'s numbering, ascending) of the diagonal neighbours of flat cell ``c``; their count."""
    full = pos.shape[0]
    k = 0
    for off in (-(n1 + 1), -(n1 - 1), n1 - 1, n1 + 1):
        t = c + off
        if 0 <= t < full and pos[t] >= 0:
            col = pos[t]
            j = k
            while j > 0 and extra[j - 1] > col:     # insertion sort (cells need not be ascending)
                extra[j] = extra[j - 1]
                j -= 1
            extra[j] = col
            k += 1
    return k


@njit(cache=True)
def _pad_rows(indptr, indices, data, rows, pos, n1):
    """CSR arrays of ``M`` merged, row by row, with zeros at the diagonal neighbours (sorted columns kept
    sorted, no duplicates): one pass counts, a second fills."""
    N = indptr.shape[0] - 1
    extra = np.empty(4, dtype=np.int64)
    new_ptr = np.zeros(N + 1, dtype=np.int64)
    new_idx = np.empty(0, dtype=indices.dtype)
    new_val = np.empty(0)
    for fill in (False, True):
        if fill:
            new_idx = np.empty(new_ptr[N], dtype=indices.dtype)
            new_val = np.empty(new_ptr[N])
        for r in range(N):
            k = _diagonal_neighbours(rows[r], pos, n1, extra)
            a, b, q = indptr[r], 0, new_ptr[r]
            while a < indptr[r + 1] or b < k:
                if b == k or (a < indptr[r + 1] and indices[a] <= extra[b]):
                    if b < k and indices[a] == extra[b]:
                        b += 1
                    if fill:
                        new_idx[q] = indices[a]
                        new_val[q] = data[a]
                    a += 1
                else:
                    if fill:
                        new_idx[q] = extra[b]
                        new_val[q] = 0.0
                    b += 1
                q += 1
            if not fill:
                new_ptr[r + 1] = q
    return new_ptr, new_idx, new_val
