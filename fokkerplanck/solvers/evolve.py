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

from ..model.density import Density, Trajectory
from ..model.problem import Problem
from ..numerics.operator import DEFAULT_STENCIL_RADIUS, Generator, generator, single_blas_thread
from . import checkpoint as _io
from .linalg import LUFactor, lu_backend, shifted

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
        kwargs = {"restart": 30, "maxiter": 20}  # scipy counts restart cycles: 600 iterations

    def solve(y):
        x, code = method(B, y, x0=y, rtol=1e-12, atol=0.0, M=precond, **kwargs)
        if code != 0:
            raise RuntimeError(
                f"evolve: the iterative linear solver did not converge (code {code}); "
                "try linear_solver='direct' or a smaller dt"
            )
        return x

    return solve


def _scaled_problem(gen: Generator, g: float) -> Problem:
    """The generator's problem with its noise scaled by ``g`` (:func:`fokkerplanck.noise.scaled`)."""
    from ..model.noise import scaled

    pb = gen.problem
    return Problem(pb.grid, pb.landscape, scaled(pb.noise, g), drift=pb.drift_field, convention=pb.convention)


def _absorbing(gen: Generator, keep: np.ndarray) -> Generator:
    """A copy of ``gen`` whose cells with ``keep == 0`` have no jumps out (their columns of ``A`` zeroed): mass
    that reaches them stays, so it counts the first passages (:func:`fokkerplanck.passage.first_passage_probability`).
    The copy carries ``absorb_keep``, so a noise schedule in :func:`evolve` treats its generators alike."""
    import copy

    import scipy.sparse as sp

    out = copy.copy(gen)
    out.A = (gen.A @ sp.diags(keep)).tocsr()
    out.absorb_keep = keep
    return out


def _schedule_values(schedule, gen: Generator, scheme: str, times, step_max: float, hold: int = 1) -> np.ndarray:
    """``g`` of every time step of the run (the steps :func:`evolve` takes: each save interval cut into equal
    steps no longer than ``step_max``): its value at the midpoint of each group of ``hold`` consecutive steps,
    checked: finite and ``>= 0``."""
    if isinstance(hold, bool) or not isinstance(hold, (int, np.integer)) or hold < 1:
        raise ValueError(f"evolve: schedule_hold must be an integer >= 1, got {hold!r}")
    if not callable(schedule):
        raise ValueError(f"evolve: noise_schedule must be a callable g(t) -> float >= 0, got {type(schedule).__name__}")
    if scheme not in ("tr-bdf2", "implicit-euler"):
        raise ValueError(
            f"evolve: noise_schedule needs an implicit time-stepping scheme (tr-bdf2 or implicit-euler), not {scheme!r}"
        )
    if getattr(gen, "problem", None) is None or gen.problem.potential is not None:
        raise ValueError(
            "evolve: noise_schedule does not apply to a problem with a potential (psi changes with the "
            "noise); give the problem without it"
        )
    starts, ends = [], []
    start = 0.0
    for t in times:
        iv = t - start
        ns = int(np.ceil(iv / step_max - 1e-9)) if iv > 0 else 0
        if ns:
            starts.extend(start + np.arange(ns) * (iv / ns))
            ends.extend(start + np.arange(1, ns + 1) * (iv / ns))
        start = t
    n = len(starts)
    first = np.arange(0, n, hold)
    mids = 0.5 * (np.asarray(starts)[first] + np.asarray(ends)[np.minimum(first + hold, n) - 1]) if n else []
    out = np.empty(n)
    for j, t in enumerate(mids):
        try:
            v = float(schedule(float(t)))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"evolve: noise_schedule(t={t:g}) did not return a number ({exc})") from None
        if not (np.isfinite(v) and v >= 0):
            raise ValueError(f"evolve: noise_schedule(t={t:g}) = {v!r}; it must be finite and >= 0")
        out[j * hold : (j + 1) * hold] = v
    return out


def _progress(total: int, enabled):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a core dependency
        return None
    disable = (not sys.stderr.isatty()) if enabled is None else (not enabled)
    return tqdm(total=total, disable=disable or total < 50, desc="evolve", unit="step", leave=False)


def evolve(
    problem: Problem | Generator,
    p0,
    t_end: float,
    *,
    n_save: int = 11,
    save_times=None,
    dt: float | None = None,
    scheme: str = "tr-bdf2",
    cfl: float = 0.9,
    progress=None,
    linear_solver: str = "auto",
    stencil_radius: int = DEFAULT_STENCIL_RADIUS,
    checkpoint=None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    noise_schedule=None,
    schedule_hold: int = 1,
) -> Trajectory:
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
        (a temporary file in the same directory, then ``os.replace``; see
        :func:`fokkerplanck.solvers.checkpoint.write_checkpoint`):
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
        (:class:`fokkerplanck.solvers.checkpoint.CheckpointMismatch`) naming the parameters that differ; a complete
        checkpoint
        returns its trajectory without stepping.
    noise_schedule : callable ``g(t) -> float >= 0``, optional
        A time-dependent noise ``D(theta, t) = g(t) D(theta)`` (e.g. a learning-rate schedule: with time
        ``t = eta * steps`` the drift ``-grad L`` carries no ``eta`` and ``g = eta(t) / eta_0``). The generator is
        held piecewise constant: each time step uses ``A`` of ``g(t_mid)`` at its midpoint (second order, like
        the schemes; the exponentially fitted fluxes are not affine in ``D``, so ``A(g)`` is assembled again for
        each new value of ``g`` -- consecutive equal values share one assembly and one LU). Every ``A(g)`` is a
        Metzler matrix with zero column sums, so mass is conserved and the implicit steps stay positive as
        without a schedule. ``g == 1`` at every step reproduces the run without schedule bit for bit.
        Implicit schemes only (``tr-bdf2``, ``implicit-euler``); a problem with a ``potential`` is refused (its
        ``psi`` changes with the noise). ``info["noise_schedule"]``: the range of ``g`` used and the number of
        assemblies. Halve ``dt`` to measure the time-discretisation error.
    schedule_hold : int
        With ``noise_schedule``: hold ``g`` over this many consecutive steps (its value at the midpoint of the
        group), so the generator is assembled and factorised ``steps / schedule_hold`` times; the error of
        holding is second order in the group's length (measured on the 1D two-valley freezing model,
        :mod:`fokkerplanck.sgd.freezing`).

    Returns
    -------
    Trajectory with ``times``, densities ``traj[k]``, ``final`` and diagnostics ``mass``, ``minimum``,
    ``entropy``; ``info`` holds ``steps``, ``dt`` and ``seconds``.
    """
    t0 = time.perf_counter()
    gen = problem if isinstance(problem, Generator) else generator(problem, stencil_radius)
    grid = gen.grid
    times = _check_arguments(grid, t_end, n_save, save_times, dt, scheme, linear_solver)
    t_end = float(t_end)
    p = _initial_values(grid, p0)
    sched = None
    if noise_schedule is not None:
        sched = _schedule_values(
            noise_schedule, gen, scheme, times, dt if dt is not None else t_end / 200.0, schedule_hold
        )
    run = _Run(gen, times, p, {"scheme": scheme})
    if checkpoint is not None:
        run.checkpoint = _Checkpoint(
            checkpoint, checkpoint_every, _identity(gen, run, scheme, t_end, dt, cfl, linear_solver, sched)
        )
        if resume:
            run.resume()
        run.info["checkpoint"] = str(checkpoint)
    if scheme == "expm":
        _by_expm(run)
    else:
        _by_steps(run, scheme, _step_sizes(gen, times, scheme, dt, t_end, cfl), linear_solver, sched, progress)
    run.finish()
    run.info["seconds"] = time.perf_counter() - t0
    return Trajectory(grid, times, run.out, generator=gen, info=run.info)


# ------------------------------------------------------------------------------------------------------------
# the checks every scheme shares, the run's state and its checkpoint
# ------------------------------------------------------------------------------------------------------------
def _check_arguments(grid, t_end, n_save, save_times, dt, scheme, linear_solver) -> np.ndarray:
    """The save times, after checking every argument; one-line ``ValueError`` otherwise."""
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
    return times


class _Run:
    """The state of a run between steps: save interval ``k``, step ``i`` within it, steps ``done`` in all, the
    density ``p`` and the densities saved so far (``out[:k]``). A checkpoint stores exactly that, so a resumed
    run does the same floating-point operations in the same order as an uninterrupted one."""

    def __init__(self, gen: Generator, times: np.ndarray, p: np.ndarray, info: dict):
        self.gen, self.times, self.p, self.info = gen, times, p, info
        self.out = np.empty((len(times),) + gen.grid.shape)
        self.k, self.i, self.done, self.total = 0, 0, 0, len(times)
        self.checkpoint = None
        self.complete = False

    def resume(self):
        state = self.checkpoint.read(self.gen.grid, len(self.times))
        if state is not None:
            self.k, self.i, self.done, self.p = state["k"], state["i"], state["done"], state["p"]
            self.out[: self.k] = state["saved"]
            self.complete = state["complete"]
            self.info["resumed_from_step"] = self.done

    def save(self, k: int, i: int, done: int):
        """Checkpoint after step ``done`` (``k``, ``i`` as in the class docstring), when one is due."""
        if self.checkpoint is not None and done % self.checkpoint.every == 0 and done < self.total:
            self.checkpoint.write(self.p, self.out[:k], k, i, done)

    def finish(self):
        if self.checkpoint is not None and not self.complete:
            self.checkpoint.write(self.p, self.out, len(self.times), 0, self.total, complete=True)


def _identity(gen, run, scheme, t_end, dt, cfl, linear_solver, sched) -> dict:
    """The parameters that identify a run; a checkpoint of another run is refused by naming those that differ."""
    A = gen.A.tocsr()
    meta = {
        "scheme": scheme,
        "t_end": t_end,
        "dt": None if dt is None else float(dt),
        "cfl": float(cfl) if scheme == "explicit" else None,
        "save_times": run.times.tolist(),
        "grid_shape": list(gen.grid.shape),
        "A_hash": _io.array_hash(np.asarray(A.shape), A.indptr, A.indices, A.data),
        "p0_hash": _io.array_hash(run.p),
        "linear_solver": None if scheme in ("expm", "explicit") else linear_solver,
        # the LU back end: PARDISO and SuperLU agree to round-off, not bit for bit, so a resumed run
        # repeats an uninterrupted one only under the same back end
        "lu_backend": None if scheme in ("expm", "explicit") else lu_backend(),
    }
    if sched is not None:
        meta["noise_schedule_hash"] = _io.array_hash(sched)
    return meta


class _Checkpoint:
    """A run's checkpoint file (:mod:`fokkerplanck.solvers.checkpoint`): its identity and how often it is written
    (``every``: steps; for ``expm``, save times)."""

    def __init__(self, path, every, meta: dict):
        if every is not None and (isinstance(every, bool) or int(every) != every or int(every) < 1):
            raise ValueError(f"evolve: checkpoint_every must be a whole number of steps >= 1, got {every!r}")
        self.path, self.meta, self.requested = path, meta, every
        self.every = 1 if every is None else int(every)

    def read(self, grid, n_times: int):
        got = _io.read_checkpoint(self.path, "evolve", self.meta)
        if got is None:
            return None
        arrays, complete = got
        state = {
            "k": int(arrays["k"]),
            "i": int(arrays["i"]),
            "done": int(arrays["done"]),
            "p": np.array(arrays["p"], dtype=float),
            "saved": arrays["saved"],
            "complete": complete,
        }
        if (
            state["p"].shape != (grid.size,)
            or state["saved"].shape[1:] != grid.shape
            or state["saved"].shape[0] != state["k"]
            or not 0 <= state["k"] <= n_times
        ):
            raise _io.CheckpointMismatch(f"checkpoint '{self.path}' holds arrays of the wrong shape")
        return state

    def write(self, p, saved, k, i, done, complete=False):
        _io.write_checkpoint(
            self.path,
            "evolve",
            self.meta,
            {"p": p, "saved": saved, "k": np.int64(k), "i": np.int64(i), "done": np.int64(done)},
            complete=complete,
        )


# ------------------------------------------------------------------------------------------------------------
# the strategies: the matrix exponential between save times, or time steps of one of three schemes
# ------------------------------------------------------------------------------------------------------------
def _by_expm(run: _Run):
    """``p(t_k) = exp((t_k - t_{k-1}) A) p(t_{k-1})`` by :func:`scipy.sparse.linalg.expm_multiply`."""
    A, times, grid = run.gen.A, run.times, run.gen.grid
    t_prev = times[run.k - 1] if run.k > 0 else 0.0
    for k in range(run.k, len(times)):
        if times[k] > t_prev:
            run.p = spla.expm_multiply(A * (times[k] - t_prev), run.p)
            t_prev = times[k]
        run.out[k] = run.p.reshape(grid.shape)
        if k + 1 < len(times):
            run.save(k + 1, 0, k + 1)
    run.info["steps"] = len(times)


def _step_sizes(gen: Generator, times, scheme: str, dt, t_end: float, cfl: float) -> list[int]:
    """Steps in each save interval, so that every save time is hit exactly: of at most ``dt`` (default
    ``t_end / 200``), or ``cfl / max|A_nn|`` for the explicit scheme."""
    from ..model import budget

    step_max = cfl / gen.max_rate() if scheme == "explicit" else (dt if dt is not None else t_end / 200.0)
    intervals = np.diff(np.concatenate([[0.0], times]))
    with np.errstate(over="ignore"):
        planned = float(np.sum(np.ceil(intervals / step_max - 1e-9)))
    budget.check_work(
        planned, gen.grid.size, "explicit cell-steps" if scheme == "explicit" else "cell-steps", f"evolve ({scheme})"
    )  # before any step: dt = 1e-9 asked for 5e10 steps
    return [int(np.ceil(iv / step_max - 1e-9)) if iv > 0 else 0 for iv in intervals]


def _heun(A, solve, p, h):
    """Explicit second-order Runge-Kutta (Heun): stable for ``h max|A_nn| <= 1``."""
    p1 = p + h * (A @ p)
    return 0.5 * p + 0.5 * (p1 + h * (A @ p1))


def _implicit_euler(A, solve, p, h):
    """``(I - h A) p_new = p``: first order, L-stable."""
    return solve(p)


def _tr_bdf2(A, solve, p, h):
    """TR-BDF2 (Bank et al. 1985) with ``gamma = 2 - sqrt 2``: a trapezoidal stage to ``t + gamma h``, then BDF2;
    second order, L-stable, both stages with the same matrix ``I - (gamma h / 2) A``."""
    ps = solve(p + (_GAMMA * h / 2) * (A @ p))
    return solve((ps - (1 - _GAMMA) ** 2 * p) / (_GAMMA * (2 - _GAMMA)))


#: scheme -> one time step ``(A, solve, p, h) -> p_new``, ``solve(x) = (I - c h A)^{-1} x``
STEPPERS = {"explicit": _heun, "implicit-euler": _implicit_euler, "tr-bdf2": _tr_bdf2}


class _ImplicitSolves:
    """``solve(h)``: ``x -> (I - c h A)^{-1} x`` for the current generator -- one LU per step size (PARDISO on one
    thread, so runs repeat bit for bit), or AMG-preconditioned GMRES in 3D; under a noise schedule the generator
    of each step (``at_step``), assembled again when ``g`` changes."""

    def __init__(self, gen: Generator, scheme: str, linear_solver: str, sched, info: dict):
        grid = gen.grid
        self.base, self.sched, self.info = gen, sched, info
        self.c = _GAMMA / 2 if scheme == "tr-bdf2" else 1.0
        self.iterative = linear_solver == "iterative" or (
            linear_solver == "auto" and grid.ndim == 3 and grid.size > 8_000
        )
        info["linear_solver"] = "amg-gmres" if self.iterative else lu_backend()
        self.gen, self.g, self.assemblies = gen, 1.0, 0
        self.cache = {}

    def at_step(self, done: int) -> Generator:
        """The generator of step ``done`` under the noise schedule (the last one assembled is kept)."""
        g = float(self.sched[done])
        if g != self.g:
            self.cache.clear()
            self.gen = (
                self.base
                if g == 1.0
                else Generator(_scaled_problem(self.base, g), self.base.requested_radius, warn=self.assemblies == 0)
            )
            keep = getattr(self.base, "absorb_keep", None)  # fokkerplanck.solvers.passage.first_passage_probability
            if keep is not None and g != 1.0:
                self.gen = _absorbing(self.gen, keep)
            self.g = g
            self.assemblies += 1
        return self.gen

    def solve(self, h: float):
        key = round(h, 15)
        if key not in self.cache:
            B = shifted(self.gen.A, 1.0, self.c * h)
            if self.iterative:
                self.cache[key] = _iterative_solve(B, self.c * h * self.gen.max_rate())
            else:
                lu = LUFactor(B, grid_shape=self.gen.grid.shape, many_solves=True, reproducible=True)
                self.info["lu_layout"] = lu.layout
                self.cache[key] = lu.solve
        return self.cache[key]


def _by_steps(run: _Run, scheme: str, nsteps: list[int], linear_solver: str, sched, progress):
    """Time steps of ``scheme`` (:data:`STEPPERS`), ``nsteps[k]`` equal ones in save interval ``k``."""
    grid, times = run.gen.grid, run.times
    intervals = np.diff(np.concatenate([[0.0], times]))
    run.total = int(sum(nsteps))
    if run.checkpoint is not None and run.checkpoint.requested is None:
        run.checkpoint.every = max(1, run.total // 20)
    step = STEPPERS[scheme]
    solves = _ImplicitSolves(run.gen, scheme, linear_solver, sched, run.info)
    A = run.gen.A
    bar = _progress(run.total, progress)
    if bar is not None and run.done:
        bar.update(run.done)
    try:
        with single_blas_thread():
            for k in range(run.k, len(times)):
                ns = nsteps[k]
                i = run.i if k == run.k else 0
                if i < ns:
                    h = intervals[k] / ns
                    solve = None if scheme == "explicit" else solves.solve(h)
                    while i < ns:
                        if sched is not None:
                            A = solves.at_step(run.done).A
                            solve = solves.solve(h)
                        run.p = step(A, solve, run.p, h)
                        i += 1
                        run.done += 1
                        if bar is not None:
                            bar.update(1)
                        run.save(k, i, run.done)
                run.out[k] = run.p.reshape(grid.shape)
    finally:
        if bar is not None:
            bar.close()
    if sched is not None:
        run.info["noise_schedule"] = {
            "min": float(sched.min()),
            "max": float(sched.max()),
            "assemblies": int(solves.assemblies),
        }
    run.info["steps"] = run.total
    run.info["dt"] = float(min((iv / ns for iv, ns in zip(intervals, nsteps) if ns > 0), default=0.0))
