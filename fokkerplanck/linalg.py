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
  and for 2D factors that serve many solves, which measured faster in each case), no scaling, no matching,
  and no pivot perturbation (threshold 1e-20 of the matrix norm, far below any pivot of these M-matrices; a
  factor that reports a perturbed pivot is redone by SuperLU). In 2D the matrix handed to PARDISO's minimum
  degree carries explicit zeros on the four diagonal neighbours of every cell (the 9-point pattern): MKL's
  minimum degree ordering of a bare 5-point pattern (diagonal noise) took 3-4 s at 512^2, against 0.2 s with
  the 9-point pattern, whose factor was no larger than that of the 7-point full-tensor stencil (28.7 M
  against 29.1 M entries). Measured on this 2-core machine, one factorisation and one solve, OU with full
  ``D``: 512^2 cells 0.55-0.9 s against SuperLU 3.0 s; 1024^2 6-7 s against 23 s; 3D 40^3 1.2 s against
  29 s.
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
    solves (implicit time steps), so in 2D PARDISO takes METIS nested dissection, whose longer analysis
    (0.7-1.2 s at 512^2) buys less fill and faster solves (measured at 512^2: 0.027-0.030 s a solve against
    0.048-0.052 s with the padded minimum-degree order, and 0.037-0.055 s with SuperLU). ``reproducible``:
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
        ndim = 1 if grid_shape is None else len(grid_shape)
        nested_dissection = ndim >= 3 or (ndim == 2 and many_solves)
        if not pardiso_available():
            raise ImportError("LUFactor(backend='pardiso') needs pypardiso (Intel MKL, x86-64): "
                              "pip install 'fokkerplanck[pardiso]'")
        solver = _pardiso_module.PyPardisoSolver(mtype=11)      # real, structurally non-symmetric
        iparm = {1: 1,                          # use the values below (not PARDISO's defaults)
                 2: 2 if nested_dissection else 0,   # METIS nested dissection, or minimum degree
                 10: 20,                        # pivot perturbation only below 1e-20 ||M||: effectively never
                 11: 0, 13: 0,                  # no scaling, no matching: an M-matrix needs no pivoting
                 18: -1}                        # report the fill
        for i, v in iparm.items():              # pypardiso numbers iparm from 1 (the Fortran manual)
            solver.iparm[i - 1] = v
        Mcsr = sp.csr_matrix(M, dtype=np.float64)
        if ndim == 2 and not nested_dissection:
            Mcsr = _with_diagonal_neighbours(Mcsr, grid_shape, cells)
        Mcsr.sort_indices()
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
        return self._solver.solve(self._matrix, np.ascontiguousarray(b, dtype=np.float64))


_STRUCTURAL = 1e-300    # marks the added entries; any |M_ij| this small is an underflowed rate anyway


def _with_diagonal_neighbours(M: sp.csr_matrix, shape, cells) -> sp.csr_matrix:
    """``M`` with explicit zeros wherever two cells of a 2D grid are diagonal neighbours (flat offsets
    ``+-(n1 - 1)``, ``+-(n1 + 1)``; wrapping at the ends of rows only adds harmless structure). The values of
    ``M`` are kept, except that entries with ``|M_ij| <= 1e-300`` (underflowed rates; every diagonal entry
    of these matrices is far larger) become explicit zeros."""
    n1 = int(shape[1])
    full = int(np.prod(shape))
    if cells is None:
        rows = np.arange(full)
        pos = rows
    else:
        rows = np.asarray(cells)
        pos = np.full(full, -1)
        pos[rows] = np.arange(rows.size)
    cols = rows[:, None] + np.array([-(n1 + 1), -(n1 - 1), n1 - 1, n1 + 1])[None, :]
    inside = (cols >= 0) & (cols < full)
    cols = np.where(inside, cols, 0)
    if cells is not None:
        inside &= pos[cols] >= 0
        cols = pos[cols]
    indptr = np.concatenate([[0], np.cumsum(inside.sum(axis=1))])
    Z = sp.csr_matrix((np.full(int(indptr[-1]), _STRUCTURAL), cols[inside], indptr), shape=M.shape)
    out = (M + Z).tocsr()
    out.data[np.abs(out.data) <= _STRUCTURAL] = 0.0
    return out
