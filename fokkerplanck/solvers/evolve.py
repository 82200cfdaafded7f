"""Time evolution ``dP/dt = A P`` from an initial density.

Schemes (``scheme=``):

* ``"tr-bdf2"`` (default): the L-stable, second-order TR-BDF2 method with ``gamma = 2 - sqrt(2)``,
  for which both stages share one matrix, factorised once:

      (I - gamma dt/2 A) P*      = (I + gamma dt/2 A) P^n                           (trapezoid to t + gamma dt)
      (I - gamma dt/2 A) P^{n+1} = [P* - (1 - gamma)^2 P^n] / (gamma (2 - gamma))    (BDF2 to t + dt)

  (``(1 - gamma)/(2 - gamma) = gamma/2`` for this gamma). Mass is conserved to round-off; positivity
  is guaranteed only for ``dt <= 2 / (gamma max|A_nn|)`` (the trapezoid stage), and the minimum is
  reported in the diagnostics.
* ``"implicit-euler"``: first order, ``(I - dt A) P^{n+1} = P^n``; ``(I - dt A)^{-1} >= 0`` for a Metzler
  ``A`` so densities stay non-negative for every ``dt``.
* ``"explicit"``: SSP Runge-Kutta 2 (Heun) with the automatic step ``dt = cfl / max|A_nn|``
  (``cfl <= 1`` keeps densities non-negative: each stage is a convex combination of Euler steps
  ``P + dt A P >= 0``).
* ``"expm"``: the exact exponential ``P(t) = exp(tA) P0`` by ``scipy.sparse.linalg.expm_multiply``.
"""
from __future__ import annotations

import sys
import time

import numpy as np
import scipy.sparse.linalg as spla

from . import checkpoint as _io
from ..model.density import Density, Trajectory
from .linalg import LUFactor, lu_backend, shifted
from ..numerics.operator import DEFAULT_STENCIL_RADIUS, Generator, generator, single_blas_thread
from ..model.problem import Problem

SCHEMES = ("tr-bdf2", "implicit-euler", "explicit", "expm")
_GAMMA = 2.0 - np.sqrt(2.0)


def _initial_values(grid, p0) -> np.ndarray:
    if isinstance(p0, Density):
        if p0.grid != grid:
            raise ValueError(f"evolve: the initial density lives on {p0.grid!r}, the problem on {grid!r}")
        vals = p0.values
    else:
        vals = np.asarray(p0, dtype=float)
        if vals.size != grid.size:
            raise ValueError(f"evolve: p0 has {vals.size} values, the grid has {grid.size} cells")
    vals = vals.reshape(-1).astype(float)
    if not np.all(np.isfinite(vals)):
        raise ValueError("evolve: the initial density has NaN or infinite values")
    if np.any(vals < 0):
        raise ValueError(f"evolve: the initial density is negative somewhere (min {vals.min():.3g})")
    mass = vals.sum() * grid.cell_volume
    if not mass > 0:
        raise ValueError("evolve: the initial density has zero mass")
    return vals / mass


def _iterative_solve(B, stiffness: float):
    """Solver for ``B x = y`` with ``B = I - c h A`` (an M-matrix), relative residual 1e-12 (far below the
    time-discretisation error), warm-started at ``y``. For mild steps (``c h max|A_nn| <= 5``) ``B`` is
    strongly diagonally dominant and Jacobi-preconditioned BiCGStab needs a handful of matrix-vector
    products; for stiffer steps Ruge-Stuben AMG preconditions GMRES."""
    if stiffness <= 5.0:
        dinv = 1.0 / B.diagonal()
        precond = spla.LinearOperator(B.shape, lambda r: dinv * r)
        method = spla.bicgstab
        kwargs = {"maxiter": 500}
    else:
        import pyamg

        ml = pyamg.ruge_stuben_solver(B, max_coarse=300, coarse_solver="splu")
        precond = ml.aspreconditioner(cycle="V")
        method = spla.gmres
        kwargs = {"restart": 30, "maxiter": 20}          # scipy counts restart cycles: 600 iterations

    def solve(y):
        x, code = method(B, y, x0=y, rtol=1e-12, atol=0.0, M=precond, **kwargs)
        if code != 0:
            raise RuntimeError(f"evolve: the iterative linear solver did not converge (code {code}); "
                               "try linear_solver='direct' or a smaller dt")
        return x

    return solve


def _progress(total: int, enabled):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a core dependency
        return None
    disable = (not sys.stderr.isatty()) if enabled is None else (not enabled)
    return tqdm(total=total, disable=disable or total < 50, desc="evolve", unit="step", leave=False)


def evolve(problem: Problem | Generator, p0, t_end: float, *, n_save: int = 11, save_times=None,
           dt: float | None = None, scheme: str = "tr-bdf2", cfl: float = 0.9, progress=None,
           linear_solver: str = "auto", stencil_radius: int = DEFAULT_STENCIL_RADIUS, checkpoint=None,
           checkpoint_every: int | None = None, resume: bool = False) -> Trajectory:
    """Evolve ``p0`` under ``dP/dt = A P`` up to ``t_end``.

    Parameters
    ----------
    problem : Problem or Generator
    p0 : Density or array of ``grid.size`` values (non-negative; normalised here)
    t_end : float
    n_save : int
        Number of equally spaced save times in ``[0, t_end]`` (ignored when ``save_times`` is given).
    save_times : array, optional
        Increasing times in ``[0, t_end]``; ``t_end`` is always saved.
    dt : float, optional
        Time step (implicit schemes; default ``t_end / 200``, shortened to land on every save time).
        The explicit scheme chooses its own stable step ``cfl / max|A_nn|``.
    scheme : {"tr-bdf2", "implicit-euler", "explicit", "expm"}
    progress : bool or None
        tqdm progress bar; ``None`` shows it only on a terminal.
    linear_solver : {"auto", "direct", "iterative"}
        Implicit schemes: sparse LU factorised once per step size (``direct``; default in 1D/2D;
        :mod:`fokkerplanck.solvers.linalg`, PARDISO with a one-thread factor when installed, so runs repeat bit for
        bit, else SuperLU; ``info["linear_solver"]`` names it and ``info["lu_layout"]`` the layout its
        ordering was given, see :class:`fokkerplanck.solvers.linalg.LUFactor`), or GMRES preconditioned by algebraic
        multigrid, warm-started from the previous step (``iterative``; default in 3D above 8000 cells, where
        LU fill-in is prohibitive).
    checkpoint : path, optional
        Write the state of the run to this ``.npz`` file every ``checkpoint_every`` time steps, atomically
        (a temporary file in the same directory, then ``os.replace``; see :func:`fokkerplanck.solvers.checkpoint.write_checkpoint`):
        the current density, the position in the save schedule (save interval, step within it, steps done),
        the densities saved so far, and the parameters that identify the problem (``t_end``, ``dt``,
        ``scheme``, the save times, the grid shape, SHA-256 hashes of the generator ``A`` and of the
        normalised ``p0``). The finished run is written too (marked complete) and the file is kept.
    checkpoint_every : int, optional
        Time steps between checkpoints (a count of steps, not seconds, so where a run stops and resumes is
        reproducible); default about 5% of the run, ``max(1, total_steps // 20)``. For ``scheme="expm"``:
        save times between checkpoints (default 1).
    resume : bool
        Continue from ``checkpoint`` when the file exists (else start from ``p0``). The resumed run performs
        the same floating-point operations in the same order as an uninterrupted run (the LU factors of a
        step size are recomputed from the same matrix, deterministically), so its densities are identical
        (``np.array_equal``), not merely close. A checkpoint of a different problem raises a ``ValueError``
        (:class:`fokkerplanck.solvers.checkpoint.CheckpointMismatch`) naming the parameters that differ; a complete checkpoint
        returns its trajectory without stepping.

    Returns
    -------
    Trajectory with ``times``, densities ``traj[k]``, ``final`` and diagnostics ``mass``, ``minimum``,
    ``entropy``; ``info`` holds ``steps``, ``dt`` and ``seconds``.
    """
    t0 = time.perf_counter()
    gen = problem if isinstance(problem, Generator) else generator(problem, stencil_radius)
    grid = gen.grid
    if linear_solver not in ("auto", "direct", "iterative"):
        raise ValueError(f"evolve: unknown linear_solver {linear_solver!r}; expected auto, direct or iterative")
    if scheme not in SCHEMES:
        raise ValueError(f"evolve: unknown scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    t_end = float(t_end)
    if not np.isfinite(t_end) or t_end <= 0:
        raise ValueError(f"evolve: t_end must be positive, got {t_end}")
    if save_times is None:
        if int(n_save) < 2:
            raise ValueError("evolve: n_save must be at least 2 (the start and the end)")
        times = np.linspace(0.0, t_end, int(n_save))
    else:
        times = np.unique(np.append(np.asarray(save_times, dtype=float), t_end))
        if times[0] < 0 or times[-1] > t_end or not np.all(np.isfinite(times)):
            raise ValueError("evolve: save_times must lie in [0, t_end]")
    if dt is not None and not (np.isfinite(dt) and dt > 0):
        raise ValueError(f"evolve: dt must be positive, got {dt}")
    from ..model import budget
    budget.check(8.0 * len(times) * grid.size, f"evolve: {len(times)} saved densities of {grid.size:,} cells")
    p = _initial_values(grid, p0)
    A = gen.A
    N = grid.size
    out = np.empty((len(times),) + grid.shape)
    info = {"scheme": scheme}

    # ---- checkpointing: the problem's identity, and the state to resume from
    ckpt = None
    if checkpoint is not None:

        if checkpoint_every is not None and (isinstance(checkpoint_every, bool) or int(checkpoint_every) != checkpoint_every
                                             or int(checkpoint_every) < 1):
            raise ValueError(f"evolve: checkpoint_every must be a whole number of steps >= 1, got {checkpoint_every!r}")
        Acsr = A.tocsr()
        ckpt_meta = {"scheme": scheme, "t_end": t_end, "dt": None if dt is None else float(dt),
                     "cfl": float(cfl) if scheme == "explicit" else None, "save_times": times.tolist(),
                     "grid_shape": list(grid.shape),
                     "A_hash": _io.array_hash(np.asarray(Acsr.shape), Acsr.indptr, Acsr.indices, Acsr.data),
                     "p0_hash": _io.array_hash(p),
                     "linear_solver": None if scheme in ("expm", "explicit") else linear_solver}
        ckpt = {"path": checkpoint, "meta": ckpt_meta, "io": _io}
    state = None
    if ckpt is not None and resume:
        got = ckpt["io"].read_checkpoint(checkpoint, "evolve", ckpt["meta"])
        if got is not None:
            arrays, complete = got
            state = {"k": int(arrays["k"]), "i": int(arrays["i"]), "done": int(arrays["done"]),
                     "p": np.array(arrays["p"], dtype=float), "saved": arrays["saved"], "complete": complete}
            if state["p"].shape != (N,) or state["saved"].shape[1:] != grid.shape or \
                    state["saved"].shape[0] != state["k"] or not 0 <= state["k"] <= len(times):
                raise ckpt["io"].CheckpointMismatch(f"checkpoint '{checkpoint}' holds arrays of the wrong shape")
    k0, i0, done0 = 0, 0, 0
    if state is not None:
        k0, i0, done0, p = state["k"], state["i"], state["done"], state["p"]
        out[:k0] = state["saved"]
        info["resumed_from_step"] = done0
    if ckpt is not None:
        info["checkpoint"] = str(checkpoint)

    def save_checkpoint(k, i, done, complete=False):
        ckpt["io"].write_checkpoint(checkpoint, "evolve", ckpt["meta"],
                                    {"p": p, "saved": out[:k], "k": np.int64(k), "i": np.int64(i),
                                     "done": np.int64(done)}, complete=complete)

    if scheme == "expm":
        every = 1 if checkpoint_every is None else int(checkpoint_every)
        t_prev = times[k0 - 1] if k0 > 0 else 0.0
        for k in range(k0, len(times)):
            t = times[k]
            if t > t_prev:
                p = spla.expm_multiply(A * (t - t_prev), p)
                t_prev = t
            out[k] = p.reshape(grid.shape)
            if ckpt is not None and (k + 1) % every == 0 and k + 1 < len(times):
                save_checkpoint(k + 1, 0, k + 1)
        info["steps"] = len(times)
        total = len(times)
    else:
        if scheme == "explicit":
            step_max = cfl / gen.max_rate()
        else:
            step_max = dt if dt is not None else t_end / 200.0
        # steps per save interval, so every save time is hit exactly
        intervals = np.diff(np.concatenate([[0.0], times]))
        with np.errstate(over="ignore"):
            planned = float(np.sum(np.ceil(intervals / step_max - 1e-9)))
        budget.check_work(planned, N, "explicit cell-steps" if scheme == "explicit" else "cell-steps",
                          f"evolve ({scheme})")        # before any step: dt = 1e-9 asked for 5e10 steps
        nsteps = [int(np.ceil(iv / step_max - 1e-9)) if iv > 0 else 0 for iv in intervals]
        total = int(sum(nsteps))
        every = max(1, total // 20) if checkpoint_every is None else int(checkpoint_every)
        bar = _progress(total, progress)
        if bar is not None and done0:
            bar.update(done0)
        c = _GAMMA / 2 if scheme == "tr-bdf2" else 1.0
        iterative = linear_solver == "iterative" or (linear_solver == "auto" and grid.ndim == 3 and N > 8_000)
        info["linear_solver"] = "amg-gmres" if iterative else lu_backend()
        solvers = {}

        def solver(h):
            """``x -> (I - c h A)^{-1} x``: one LU per step size, or AMG-preconditioned GMRES in 3D."""
            key = round(h, 15)
            if key not in solvers:
                B = shifted(A, 1.0, c * h)
                if iterative:
                    solvers[key] = _iterative_solve(B, c * h * gen.max_rate())
                else:
                    lu = LUFactor(B, grid_shape=grid.shape, many_solves=True, reproducible=True)
                    info["lu_layout"] = lu.layout
                    solvers[key] = lu.solve
            return solvers[key]

        # The state between steps is (k, i, p): save interval k, i of its nsteps[k] steps done, density p;
        # out[:k] holds the densities saved so far. A checkpoint stores exactly that, so a resumed run does
        # the same floating-point operations in the same order as an uninterrupted one.
        limiter = single_blas_thread()
        limiter.__enter__()
        done = done0
        try:
            for k in range(k0, len(times)):
                iv, ns = intervals[k], nsteps[k]
                i = i0 if k == k0 else 0
                if i < ns:
                    h = iv / ns
                    solve = None if scheme == "explicit" else solver(h)
                    while i < ns:
                        if scheme == "explicit":
                            p1 = p + h * (A @ p)
                            p = 0.5 * p + 0.5 * (p1 + h * (A @ p1))
                        elif scheme == "implicit-euler":
                            p = solve(p)
                        else:
                            ps = solve(p + (_GAMMA * h / 2) * (A @ p))
                            p = solve((ps - (1 - _GAMMA) ** 2 * p) / (_GAMMA * (2 - _GAMMA)))
                        i += 1
                        done += 1
                        if bar is not None:
                            bar.update(1)
                        if ckpt is not None and done % every == 0 and done < total:
                            save_checkpoint(k, i, done)
                out[k] = p.reshape(grid.shape)
        finally:
            limiter.__exit__(None, None, None)
            if bar is not None:
                bar.close()
        info["steps"] = total
        info["dt"] = float(min((iv / ns for iv, ns in zip(intervals, nsteps) if ns > 0), default=0.0))
    if ckpt is not None and not (state is not None and state["complete"]):
        save_checkpoint(len(times), 0, total, complete=True)
    info["seconds"] = time.perf_counter() - t0
    return Trajectory(grid, times, out, generator=gen, info=info)
