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
  only): multithreaded supernodal LU, static order (approximate minimum degree in 1D/2D, METIS nested dissection
  in 3D, which measured faster in each case), no scaling, no matching, and no pivot perturbation (threshold
  1e-20 of the matrix norm, far below any pivot of these M-matrices; a factor that reports a perturbed pivot is
  redone by SuperLU). Measured on this 2-core machine, OU with full ``D``: 512^2 cells 0.55 s against SuperLU
  3.0 s, 1024^2 6-7 s against 23 s, 3D 40^3 1.2 s against 29 s (one factorisation and four solves).
* ``"auto"`` (the default): ``pardiso`` when ``pypardiso`` imports, else ``superlu``.

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
    global _pardiso_module
    if _pardiso_module is None:
        try:
            import pypardiso
            _pardiso_module = pypardiso
        except (ImportError, OSError):
            _pardiso_module = False
    return _pardiso_module is not False


class LUFactor:
    """``M = L U`` of a sparse non-singular M-matrix; ``solve(b)`` returns ``M^{-1} b``.

    Attributes: ``backend`` (``"superlu"`` or ``"pardiso"``), ``nnz`` (entries of ``L`` and ``U``)."""

    def __init__(self, M: sp.spmatrix, *, ndim: int = 2, backend: str | None = None):
        if backend is None:
            backend = lu_backend()
        elif backend not in ("superlu", "pardiso"):
            raise ValueError(f"LUFactor: unknown backend {backend!r}; expected superlu or pardiso")
        self.shape = M.shape
        if backend == "pardiso" and self._pardiso(M, ndim):
            return
        self.backend = "superlu"
        self._lu = spla.splu(sp.csc_matrix(M), permc_spec="MMD_AT_PLUS_A")
        self.nnz = int(self._lu.L.nnz + self._lu.U.nnz)
        self.solve = self._lu.solve

    def _pardiso(self, M, ndim: int) -> bool:
        pardiso_available()
        if "PYPARDISO_MKL_RT" not in os.environ:
            # pypardiso looks for MKL (find_library, then a directory walk: ~0.1 s) in every new solver;
            # its documented variable remembers the library found the first time
            solver = _pardiso_module.PyPardisoSolver()
            os.environ["PYPARDISO_MKL_RT"] = solver.libmkl._name
        solver = _pardiso_module.PyPardisoSolver(mtype=11)      # real, structurally non-symmetric
        iparm = {1: 1,                          # use the values below (not PARDISO's defaults)
                 2: 2 if ndim >= 3 else 0,      # METIS nested dissection in 3D, approximate minimum degree else
                 10: 20,                        # pivot perturbation only below 1e-20 ||M||: effectively never
                 11: 0, 13: 0,                  # no scaling, no matching: an M-matrix needs no pivoting
                 18: -1}                        # report the fill
        for i, v in iparm.items():              # pypardiso numbers iparm from 1 (the Fortran manual)
            solver.iparm[i - 1] = v
        Mcsr = sp.csr_matrix(M, dtype=np.float64)
        Mcsr.sort_indices()
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
