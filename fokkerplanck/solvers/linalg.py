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
  pivot of these M-matrices; a factor that reports a perturbed pivot is redone by SuperLU). In 2D, stencils
  without diagonal links that are not reduced (below) carry explicit zeros at the four diagonal neighbours of
  every cell (the 9-point pattern), without which MKL's minimum degree ordering of a 5-point pattern took
  2-4 s at 512^2 (0.2 s with them). Measured on this 2-core machine, one factorisation and one solve, OU with
  full ``D``: 512^2 cells 0.45-0.8 s against SuperLU 1.7-1.9 s (3.0 s in the natural numbering); 1024^2 3.6 s
  against 23 s; 3D 40^3 1.2 s against 29 s.
* ``"auto"`` (the default): ``pardiso`` when ``pypardiso`` imports, else ``superlu``.

Red-black numbering (both backends): the minimum degree orderings of MKL and SuperLU depend on the numbering
they start from. 2D stencils with diagonal links at (nearly) every cell, as a full tensor ``D`` gives, are
renumbered red-black first, which halves the flops of the factorisation (512^2: 23.3 M factor entries
against 29.1 M in the natural numbering; measurements above :func:`_red_black_numbering`).

Red-black reduction (both backends): in 2D, when every link of the stencil joins a red cell (``i + j`` even) to
a black one, as the 5-point stencils of a diagonal ``D`` do, the red cells are eliminated first and only the
Schur complement on the black cells (half the unknowns, an M-matrix again) is factorised
(:class:`_RedBlackReduction`): at 512^2 a direct steady state of ``ou-iso`` took 0.56-0.71 s with PARDISO
(0.85-1.16 s before) and 1.26-1.47 s with SuperLU (2.06 s before).

Nearly decoupled chains: an LU of ``eps I - A`` cannot weigh against each other regions joined by rates below
its round-off of the largest ones; :func:`gth_stationary` (the Grassmann-Taksar-Heyman elimination, which never
subtracts) can, in a band of the grid, and :mod:`fokkerplanck.solvers.steady` turns to it when inverse iteration
stalls.

Reproducibility: SuperLU and a PARDISO factor made on one thread give the same bits in every run; a
multithreaded PARDISO factor agrees to round-off (1e-13 of the answer), not bit for bit. Steady states and
first-passage times use the multithreaded factor; :func:`~fokkerplanck.solvers.evolve.evolve` asks for the one-thread
factor (``reproducible=True``), so that a run resumed from a checkpoint repeats an uninterrupted one exactly.

Choose with :func:`set_lu_backend` or the environment variable ``FOKKERPLANCK_LU``
(``auto``/``superlu``/``pardiso``). Both backends agree to round-off (measured: 1e-14 of the peak on the OU
steady states above).
"""

from __future__ import annotations

import ctypes
import os
import weakref

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .kernels import (
    add_to_diagonal,
    diagonal_links,
    gth_absorbing_solve,
    gth_band,
    gth_eliminate,
    off_diagonal_rows,
    pad_rows,
    permuted,
    schur_complement,
)

BACKENDS = ("auto", "superlu", "pardiso")
_backend = None  # set_lu_backend(); None: the environment variable, else "auto"


def set_lu_backend(name: str) -> None:
    """Select the sparse LU for all direct solves: ``"auto"``, ``"superlu"`` or ``"pardiso"``."""
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"set_lu_backend: unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
    if name == "pardiso" and not pardiso_available():
        raise ImportError(
            "set_lu_backend('pardiso') needs pypardiso (Intel MKL, x86-64): pip install 'fokkerplanck[pardiso]'"
        )
    _backend = name


def lu_backend() -> str:
    """The backend the next factorisation uses (``"superlu"`` or ``"pardiso"``; ``auto`` resolved)."""
    name = _backend or os.environ.get("FOKKERPLANCK_LU", "auto")
    if name not in BACKENDS:
        raise ValueError(f"FOKKERPLANCK_LU={name!r}; expected one of {', '.join(BACKENDS)}")
    if name == "auto":
        return "pardiso" if pardiso_available() else "superlu"
    if name == "pardiso" and not pardiso_available():
        raise ImportError(
            "FOKKERPLANCK_LU=pardiso needs pypardiso (Intel MKL, x86-64): pip install 'fokkerplanck[pardiso]'"
        )
    return name


_pardiso_module = None


def pardiso_available() -> bool:
    """Whether pypardiso imports and finds MKL's ``mkl_rt`` (checked once, by making a solver)."""
    global _pardiso_module
    if _pardiso_module is None:
        try:
            import importlib.util

            if importlib.util.find_spec("pypardiso") is None:
                raise ImportError("pypardiso")
            if "PYPARDISO_MKL_RT" not in os.environ:  # pypardiso's documented variable
                found = _mkl_runtime()
                if found is not None:
                    os.environ["PYPARDISO_MKL_RT"] = found
            import pypardiso

            solver = pypardiso.PyPardisoSolver()
            os.environ.setdefault("PYPARDISO_MKL_RT", solver.libmkl._name)  # found by pypardiso's own search
            _pardiso_module = pypardiso
        except (ImportError, OSError, AttributeError):
            _pardiso_module = False
    return _pardiso_module is not False


def _mkl_runtime() -> str | None:
    """MKL's runtime library where pip and conda install it (``<prefix>/lib``, ``Library/bin`` on Windows), or
    None. Without a path, pypardiso makes every new solver search the whole prefix recursively (importing it
    made one): 0.8 s a search here, 1.7 s before the first factorisation of every process."""
    import glob
    import site
    import sys

    for base in (sys.prefix, getattr(site, "USER_BASE", None)):
        if not base:
            continue
        for pattern in ("lib/libmkl_rt.so*", "lib/libmkl_rt*.dylib", "Library/bin/mkl_rt*.dll"):
            found = sorted(glob.glob(os.path.join(base, pattern)), key=len)
            if found:
                return found[0]
    return None


def shifted(A: sp.csr_matrix, shift: float, scale: float = 1.0) -> sp.csr_matrix:
    """``shift I - scale A``, the matrices factorised here (``eps I - A``, ``I - gamma h A``), with the pattern
    of ``A`` when every diagonal entry of ``A`` is stored (as in every generator): one copy of ``A`` instead of
    scipy's merge of two patterns (33 ms at 512^2, against a few)."""
    A = sp.csr_matrix(A)
    B = A.copy()
    B.data *= -float(scale)
    if not add_to_diagonal(B.indptr, B.indices, B.data, float(shift)):
        B = (sp.identity(A.shape[0], format="csr") * shift - A * scale).tocsr()
    return B


class LUFactor:
    """``M = L U`` of a sparse non-singular M-matrix; ``solve(b)`` returns ``M^{-1} b`` (``b`` of shape ``(N,)``
    or ``(N, k)``).

    ``grid_shape``: the grid whose cells (C order) index the rows of ``M``; ``cells``: the flat indices of
    those cells when ``M`` is restricted to some of them (default: all). In 2D they allow the red-black
    reduction (:class:`_RedBlackReduction`) or numbering (:func:`_red_black_numbering`); without
    them ``M`` is factorised as it is, with minimum degree. ``many_solves``: the factor will serve hundreds of
    solves (implicit time steps), so a 2D stencil that is neither reduced nor has diagonal links, and would be
    padded for minimum degree, is ordered by METIS nested dissection instead, whose longer analysis (0.7-1.2 s
    at 512^2) buys less fill and faster solves (5-point, 512^2, before the reduction: 17.3 M entries,
    0.038-0.048 s a solve, against 28.7 M and 0.054 s padded; reduced: 15.6 M and 0.02-0.03 s).
    ``reproducible``: factorise on one thread. PARDISO's multithreaded factorisation is reproducible to
    round-off only (the METIS-ordered factor gave solutions 1.7e-13 apart between identical runs on 2 threads;
    MKL's reproducible mode made every solve 2.5-6x slower); its solves with a given factor were identical in
    every run.

    Attributes: ``backend`` (``"superlu"`` or ``"pardiso"``), ``nnz`` (entries of ``L`` and ``U``; with the
    red-black reduction, those of the reduced matrix's factors plus the entries of ``M`` kept to eliminate and
    restore the red cells), ``layout`` (what the ordering was given: ``"red-black reduction"``, ``"red-black
    numbering"``, ``"9-point padding"``, ``"nested dissection"`` (METIS) or ``"as given"``)."""

    def __init__(
        self,
        M: sp.spmatrix,
        *,
        grid_shape: tuple | None = None,
        cells: np.ndarray | None = None,
        backend: str | None = None,
        many_solves: bool = False,
        reproducible: bool = False,
    ):
        if backend is None:
            backend = lu_backend()
        elif backend not in ("superlu", "pardiso"):
            raise ValueError(f"LUFactor: unknown backend {backend!r}; expected superlu or pardiso")
        self.shape = M.shape
        self._order = None  # the numbering the factor uses (order[k]: row k of the factorised matrix)
        self._solver = None  # PARDISO's, when it made the factor
        self.layout = "as given"
        if grid_shape is not None and len(grid_shape) == 2:
            M = sp.csr_matrix(M, dtype=np.float64)
            M.sum_duplicates()  # sorted, unique column indices in every row
            reduction = _RedBlackReduction.of(M, grid_shape, cells)
            if reduction is not None:
                inner = LUFactor(reduction.matrix, backend=backend, reproducible=reproducible)
                self.backend, self.nnz = inner.backend, inner.nnz + reduction.kept_entries
                self.layout = "red-black reduction"
                self._solve_other = lambda b: reduction.solve(b, inner.solve)
                return
            numbered = _red_black_numbering(M, grid_shape, cells)
            if numbered is not None:
                M, self._order = numbered
                self.layout = "red-black numbering"
        if backend == "pardiso" and self._pardiso(M, grid_shape, cells, many_solves, reproducible):
            return
        self.backend = "superlu"
        self._lu = spla.splu(sp.csc_matrix(M), permc_spec="MMD_AT_PLUS_A")
        self.nnz = int(self._lu.L.nnz + self._lu.U.nnz)
        self._solve_other = self._lu.solve

    def solve(self, b: np.ndarray) -> np.ndarray:
        """``M^{-1} b``."""
        b = np.asarray(b, dtype=np.float64)
        if self._order is None:
            return self._solve_factored(b)
        x = np.empty_like(b)
        x[self._order] = self._solve_factored(b[self._order])
        return x

    def _solve_factored(self, b: np.ndarray) -> np.ndarray:
        # no bound method of self is stored on self: a reference cycle would keep PARDISO's memory (hundreds
        # of MB) until the garbage collector ran, instead of freeing it with the last reference
        if self._solver is not None:
            return self._pardiso_call(33, b)  # forward and backward substitution
        return self._solve_other(b)

    def _pardiso(self, M, grid_shape, cells, many_solves, reproducible) -> bool:
        if not pardiso_available():
            raise ImportError(
                "LUFactor(backend='pardiso') needs pypardiso (Intel MKL, x86-64): pip install 'fokkerplanck[pardiso]'"
            )
        ndim = 1 if grid_shape is None else len(grid_shape)
        Mcsr = sp.csr_matrix(M, dtype=np.float64)
        Mcsr.sort_indices()
        nested_dissection = ndim >= 3
        layout = self.layout
        if ndim == 2 and self._order is None:  # no red-black numbering: METIS for many solves, else padding
            nested_dissection = many_solves
            if not many_solves:
                Mcsr = _with_diagonal_neighbours(Mcsr, grid_shape, cells)
                layout = "9-point padding"
        if nested_dissection:
            layout = "nested dissection"
        if not np.all(np.diff(Mcsr.indptr)):
            return False  # an empty row: singular, and MKL would crash; SuperLU says so
        solver = _pardiso_module.PyPardisoSolver(mtype=11)  # real, structurally non-symmetric
        iparm = {
            1: 1,  # use the values below (not PARDISO's defaults)
            2: 2 if nested_dissection else 0,  # METIS nested dissection, or minimum degree
            10: 20,  # pivot perturbation only below 1e-20 ||M||: effectively never
            11: 0,
            13: 0,  # no scaling, no matching: an M-matrix needs no pivoting
            18: -1,
        }  # report the fill
        for i, v in iparm.items():  # pypardiso numbers iparm from 1 (the Fortran manual)
            solver.iparm[i - 1] = v
        self._solver = solver
        self._matrix = Mcsr
        self._ia = Mcsr.indptr.astype(np.int32) + 1  # PARDISO's one-based CSR arrays, made once
        self._ja = Mcsr.indices.astype(np.int32) + 1
        free = weakref.finalize(self, solver.free_memory, False)  # MKL's memory, not Python's
        if reproducible:  # one thread: the same factor, bit for bit, in every run
            previous = solver.libmkl.MKL_Set_Num_Threads_Local(1)
            try:
                self._pardiso_call(12, np.zeros(Mcsr.shape[0]))  # analysis and factorisation
            finally:
                solver.libmkl.MKL_Set_Num_Threads_Local(previous)
        else:
            self._pardiso_call(12, np.zeros(Mcsr.shape[0]))
        if solver.iparm[13] > 0:  # perturbed pivots: not the M-matrix this module expects
            free()  # at once (a finalizer runs once)
            self._solver = self._matrix = None
            return False
        self.backend, self.layout = "pardiso", layout
        self.nnz = int(solver.iparm[17])
        return True

    def _pardiso_call(self, phase: int, b: np.ndarray) -> np.ndarray:
        """One call of MKL's ``pardiso`` (phase 12: analysis and factorisation; 33: solve) on the factorised
        matrix, made directly: ``pypardiso``'s ``factorize`` keeps a copy of the matrix and ``solve`` compares
        the whole matrix with it and rebuilds the one-based index arrays on every call (measured at 512^2:
        50-60 ms a factorisation, 10 ms of a 50 ms solve, where implicit time steps make hundreds)."""
        s = self._solver
        b = np.asfortranarray(b, dtype=np.float64)  # PARDISO reads right-hand sides column by column
        x = np.zeros_like(b)
        int32_p, double_p = ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(ctypes.c_double)
        pt_p = ctypes.POINTER(ctypes.c_int64 if s.pt.dtype == np.int64 else ctypes.c_int32)
        error = ctypes.c_int32(0)
        one = ctypes.c_int32(1)
        s.libmkl.pardiso(
            s.pt.ctypes.data_as(pt_p),
            ctypes.byref(one),
            ctypes.byref(one),
            ctypes.byref(ctypes.c_int32(s.mtype)),
            ctypes.byref(ctypes.c_int32(phase)),
            ctypes.byref(ctypes.c_int32(self.shape[0])),
            self._matrix.data.ctypes.data_as(double_p),
            self._ia.ctypes.data_as(int32_p),
            self._ja.ctypes.data_as(int32_p),
            s.perm.ctypes.data_as(int32_p),
            ctypes.byref(ctypes.c_int32(1 if b.ndim == 1 else b.shape[1])),
            s.iparm.ctypes.data_as(int32_p),
            ctypes.byref(ctypes.c_int32(s.msglvl)),
            b.ctypes.data_as(double_p),
            x.ctypes.data_as(double_p),
            ctypes.byref(error),
        )
        if error.value != 0:
            what = "factorisation" if phase == 12 else "solve"
            raise RuntimeError(f"PARDISO {what} failed (error {error.value})")
        return np.ascontiguousarray(x)


# --- red-black reduction of bipartite stencils --------------------------------------------------------------
class _RedBlackReduction:
    """Elimination of the red cells (``i + j`` even) of a 2D matrix whose every off-diagonal entry joins a red
    cell to a black one, as the stencils of a diagonal ``D`` do (5-point; also longer odd offsets such as
    ``(2, 1)``). With the rows split into red (r) and black (b),

        M = [[D_r, M_rb], [M_br, D_b]],   D_r, D_b diagonal,   S = D_b - M_br D_r^{-1} M_rb,

    ``M x = y`` is ``S x_b = y_b - M_br D_r^{-1} y_r`` and ``x_r = D_r^{-1} (y_r - M_rb x_b)``. The Schur
    complement ``S`` of an M-matrix is again an M-matrix, so it too needs no pivoting; it has half the rows and
    (5-point) a 9-point pattern on the black lattice. Measured at 512^2 (``eps I - A``, ``ou-iso``, PARDISO on 2
    cores): 15.6 M factor entries, analysis 0.11-0.16 s, factorisation 0.22-0.31 s, a solve 0.02-0.03 s, against
    28.7 M, 0.24-0.31 s, 0.55-0.64 s and 0.055 s for the whole matrix padded to 9 points (METIS on the whole
    matrix: 17.3 M entries)."""

    def __init__(self, M, red, black, position, S):
        self.red, self.black, self.matrix = red, black, S
        self.d_red = M.diagonal()[red]
        self.M_rb = _off_diagonal_block(M, red, position, black.size)  # red rows, black columns
        self.M_br = _off_diagonal_block(M, black, position, red.size)  # black rows, red columns
        self.kept_entries = int(red.size + self.M_rb.nnz + self.M_br.nnz)

    @classmethod
    def of(cls, M, shape, cells):
        """The reduction of ``M`` (rows: the cells ``cells`` of a grid of ``shape``), or None when some
        off-diagonal entry joins two cells of one colour (diagonal links, a periodic seam across an odd number
        of cells) or a red diagonal entry is not positive."""
        M = sp.csr_matrix(M, dtype=np.float64)
        M.sum_duplicates()
        rows, _ = _grid_rows(shape, cells)
        n1 = int(shape[1])
        colour = ((rows // n1 + rows % n1) % 2).astype(np.int8)  # 0 red (eliminated), 1 black
        position = np.empty(rows.size, dtype=np.int64)
        red, black = np.flatnonzero(colour == 0), np.flatnonzero(colour == 1)
        if red.size == 0 or black.size == 0:
            return None
        position[red], position[black] = np.arange(red.size), np.arange(black.size)
        out = schur_complement(M.indptr, M.indices, M.data, colour, position, black)
        if out is None:
            return None
        return cls(M, red, black, position, _canonical_csr(*out, shape=(black.size, black.size)))

    def solve(self, y, solve_reduced):
        """``M^{-1} y`` given ``solve_reduced``, the solve with ``S``."""
        y = np.asarray(y, dtype=np.float64)
        scale = self.d_red.reshape((-1,) + (1,) * (y.ndim - 1))
        y_red = y[self.red]
        x = np.empty_like(y)
        x_black = solve_reduced(y[self.black] - self.M_br @ (y_red / scale))
        x[self.black] = x_black
        x[self.red] = (y_red - self.M_rb @ x_black) / scale
        return x


def _off_diagonal_block(M, rows, position, n_columns):
    """The rows ``rows`` of ``M`` without their diagonal entries, columns renumbered by ``position``."""
    indptr, indices, data = off_diagonal_rows(M.indptr, M.indices, M.data, rows, position)
    return _canonical_csr(data, indices, indptr, shape=(rows.size, n_columns))


# --- how the orderings see a 2D matrix -----------------------------------------------------------------------
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
#   * SuperLU's minimum degree on A + A^T gains as much from the red-black numbering: 7-point 512^2, 29.4 M
#     entries and 2.8-3.1 s in the natural numbering, 23.5 M and 1.7-1.9 s red-black.
_RED_BLACK_MIN_LINKED = 0.999  # fraction of the cells off the box's edge that need a diagonal link for red-black


def _canonical_csr(data, indices, indptr, shape) -> sp.csr_matrix:
    """A CSR matrix from arrays that are already canonical (sorted, unique columns in every row), marked so,
    so that scipy and pypardiso do not check or sort them again."""
    out = sp.csr_matrix((data, indices, indptr), shape=shape)
    out.has_sorted_indices = True
    out.has_canonical_format = True
    return out


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


def _red_black_numbering(M: sp.csr_matrix, shape, cells):
    """``M`` renumbered red-black and the numbering (``order[k]``: the row of ``M`` that is row ``k``), when
    nearly every cell off the box's edge has a diagonal link (see the measurements above); else None. ``M``:
    CSR with sorted, unique column indices."""
    rows, _ = _grid_rows(shape, cells)
    n0, n1 = int(shape[0]), int(shape[1])
    interior, linked, diagonal, anti = diagonal_links(M.indptr, M.indices, rows, n0, n1)
    if interior == 0 or linked < _RED_BLACK_MIN_LINKED * interior:
        return None
    i, j = np.divmod(rows, n1)
    if anti > diagonal:
        j = n1 - 1 - j
    order = np.argsort((((i + j) % 2) * n0 + i) * n1 + j, kind="stable")
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    indptr, indices, data = permuted(M.indptr, M.indices, M.data, order, inverse)
    return _canonical_csr(data, indices, indptr, shape=M.shape), order


def _with_diagonal_neighbours(M: sp.csr_matrix, shape, cells) -> sp.csr_matrix:
    """``M`` with explicit zeros wherever two cells of a 2D grid are diagonal neighbours (flat offsets
    ``+-(n1 - 1)``, ``+-(n1 + 1)``; wrapping at the ends of rows only adds harmless structure), every value of
    ``M`` kept. ``cells``: the flat indices of the cells that index the rows of ``M`` (default: all).
    Returns a CSR matrix with sorted indices (two numba passes: 20-30 ms at 512^2, against 90 ms by adding
    a pattern matrix with scipy)."""
    rows, pos = _grid_rows(shape, cells)
    M = sp.csr_matrix(M, dtype=np.float64)
    M.sum_duplicates()  # sorted, unique column indices in every row
    indptr, indices, data = pad_rows(M.indptr, M.indices, M.data, rows, pos, int(shape[1]))
    return _canonical_csr(data, indices, indptr, shape=M.shape)


# --- stationary vectors of nearly decoupled chains: Grassmann-Taksar-Heyman elimination --------------------
GTH_WORK_LIMIT = 3e9  # multiply-adds of the banded elimination (~1 GFlop/s here: ~3 s)
GTH_MEMORY_LIMIT = 1.0e9  # bytes of the band


def gth_stationary(A: sp.csr_matrix, shape) -> np.ndarray | None:
    """The stationary vector ``p`` of a generator ``A`` (``A[m, n]`` the rate of ``n -> m``, ``A p = 0``,
    ``sum p = 1``) by the Grassmann-Taksar-Heyman elimination, or None when its band would exceed
    ``GTH_WORK_LIMIT`` / ``GTH_MEMORY_LIMIT`` or the chain is not irreducible.

    States are eliminated one at a time, last first. With ``r_ij`` the rate ``i -> j`` among the states left,
    eliminating ``k`` leaves the chain on ``0 .. k-1`` with ``r_ij += r_ik r_kj / s_k``,
    ``s_k = sum_{j < k} r_kj``; then ``p_0 = 1`` and ``p_k = sum_{i < k} p_i r_ik / s_k``. The diagonal is never
    used -- each ``s_k`` is a sum of rates, not a difference -- so every step adds, multiplies and divides
    non-negative numbers and the answer keeps its relative accuracy however small the rates joining its parts
    (Grassmann, Taksar & Heyman, Oper. Res. 33, 1985; O'Cinneide, Numer. Math. 65, 1993). That is what inverse
    iteration on ``eps I - A`` cannot do once those rates are below the LU's round-off of the largest ones.

    The cells of a grid of ``shape`` are numbered in the axis order that makes the band narrowest (usually the
    longest axis slowest), so the stencil's links stay within a band of half-width ``b`` (about the shortest
    axis times the stencil radius; a periodic seam along the slowest axis would make it the whole grid) and so
    does the fill: ``N b^2`` work, ``N (2 b + 1)`` numbers. Fine in 1D and for 2D grids up to a few hundred
    cells on the short side; rarely in 3D."""
    A = sp.coo_matrix(A)
    off = A.row != A.col
    banded = _rate_band(A.shape[0], A.col[off], A.row[off], A.data[off], shape, None)
    if banded is None:
        return None
    band, b, order = banded
    p = gth_band(band, b)
    if p.size == 0 or not np.all(np.isfinite(p)) or not p.sum() > 0:
        return None
    out = np.empty(p.size)
    out[order] = p / p.sum()
    return out


def gth_first_passage(n, src, dst, rate, exit_rate, shape, cells) -> np.ndarray | None:
    """Mean first-passage times ``T`` of a chain on ``n`` states (the cells ``cells`` of a grid of ``shape``)
    with jumps ``src -> dst`` at ``rate`` among them and ``exit_rate`` from each into the target:
    ``(sum_m r_nm + e_n) T_n - sum_m r_nm T_m = 1``. Gaussian elimination in the same band as
    :func:`gth_stationary`, and like it without subtractions: eliminating ``k`` adds ``r_ik r_kj / d_k`` to
    ``r_ij``, ``r_ik e_k / d_k`` to ``e_i`` and ``r_ik b_k / d_k`` to the right-hand side ``b_i``, with the pivot
    ``d_k = sum_j r_kj + e_k`` a sum. So times of ``e^(Delta U / T)`` keep their relative accuracy, where an LU of
    the matrix, whose condition number is about ``max T`` times the largest rate, loses them (measured: a 1D
    double well at T = 0.03, times of 1e16, 99% off). None when the band exceeds the limits or some state
    cannot reach the target."""
    banded = _rate_band(n, src, dst, rate, shape, cells)
    if banded is None:
        return None
    band, b, order = banded
    d = gth_eliminate(band, b, np.asarray(exit_rate, dtype=float)[order].copy(), 0)
    if d.size == 0:
        return None
    t = gth_absorbing_solve(band, b, d, np.ones(n))
    if not np.all(np.isfinite(t)):
        return None
    out = np.empty(n)
    out[order] = t
    return out


def gth_escape_rate(
    n, src, dst, rate, exit_rate, shape, cells, tol: float = 1e-13, max_iterations: int = 200
) -> float | None:
    """Slowest decay rate ``lambda_1`` of the mass not yet absorbed, for the chain of :func:`gth_first_passage`:
    the smallest eigenvalue of the M-matrix ``M = diag(sum_j r_kj + e_k) - R``, by inverse iteration with the
    subtraction-free factor of that function. ``M^{-1} >= 0``, so from ``x_0 = 1`` every iterate is positive and
    ``lambda ~ sum x_k / sum x_{k+1}`` (between the Collatz-Wielandt bounds ``min`` and ``max`` of
    ``x_k / x_{k+1}``) converges at the rate ``lambda_1 / lambda_2``: a few solves for a metastable well. Stops
    when the estimate changes by less than ``tol`` relative; None when the band exceeds the limits, some state
    cannot reach the target, or it has not converged."""
    banded = _rate_band(n, src, dst, rate, shape, cells)
    if banded is None:
        return None
    band, b, order = banded
    d = gth_eliminate(band, b, np.asarray(exit_rate, dtype=float)[order].copy(), 0)
    if d.size == 0:
        return None
    x = np.ones(n)
    estimate = np.inf
    for _ in range(max_iterations):
        y = gth_absorbing_solve(band, b, d, x)
        new = x.sum() / y.sum()
        if abs(new - estimate) <= tol * new:
            return float(new)
        estimate = new
        x = y / y.max()
    return None


def _rate_band(n, src, dst, rate, shape, cells):
    """The rates ``src -> dst`` among ``n`` states (cells ``cells`` of a grid of ``shape``, default all) in band
    storage ``band[i, j - i + b] = r_ij``, the states numbered in C order of the grid's axes taken in the order
    that makes the band narrowest (the longest axis slowest, unless a periodic seam along it says otherwise;
    ``order[k]``: the state at position ``k``): ``(band, b, order)``, or None past ``GTH_WORK_LIMIT`` /
    ``GTH_MEMORY_LIMIT`` or with a negative rate."""
    import itertools

    shape = tuple(int(m) for m in shape) if shape is not None else (n,)
    src, dst = np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
    rate = np.asarray(rate, dtype=float)
    best = None
    for axes in itertools.permutations(range(len(shape))):
        rank = np.empty(int(np.prod(shape)), dtype=np.int64)
        rank[np.arange(rank.size).reshape(shape).transpose(axes).ravel()] = np.arange(rank.size)
        state_rank = rank if cells is None else rank[np.asarray(cells, dtype=np.int64)]
        order = np.argsort(state_rank, kind="stable")  # order[k]: the state at position k
        position = np.empty(n, dtype=np.int64)
        position[order] = np.arange(n)
        b = int(np.max(np.abs(position[dst] - position[src]))) if src.size else 0
        if best is None or b < best[0]:
            best = (b, order, position)
    b, order, position = best
    if n * float(b) * b > GTH_WORK_LIMIT or n * (2.0 * b + 1) * 8 > GTH_MEMORY_LIMIT or np.any(rate < 0):
        return None
    i, j = position[src], position[dst]
    band = np.zeros((n, 2 * b + 1))
    np.add.at(band, (i, j - i + b), rate)
    return band, b, order
