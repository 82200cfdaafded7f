"""Monte Carlo particles: Euler-Maruyama SDEs, gradient Langevin dynamics and the random-shift minibatch SGD.

Three stochastic dynamics, all simulated for an ensemble of independent particles (numba, parallel over
particles, reproducible by seed whatever the number of threads):

``method="sde"`` -- Ito Euler-Maruyama for ``d theta = v dt + sqrt(2 D(theta)) dW`` with ``v = -grad L``::

    theta_{k+1} = theta_k - dt grad L(theta_k) + sqrt(dt) G(theta_k) xi_k,    G G^T = 2 D,  xi_k ~ N(0, I)

  ``G`` per noise model: ``Constant`` -- the symmetric square root of ``2D`` (computed once, PSD-singular
  allowed); ``Isotropic`` -- ``sqrt(2T) I``; ``HessianAligned`` -- ``sqrt(2 Delta_S) H`` (no factorisation:
  ``(sqrt(2 Delta_S) H)^2 = 2 Delta_S H^2``); ``HessianLinear`` -- the symmetric root ``sqrt(2 Delta) V
  diag(sqrt([w]_+)) V^T`` from
  an eigen-decomposition ``H = V diag(w) V^T`` (Jacobi; closed form in 2D; negative curvature clipped); ``Field``
  noise or a
  ``Custom`` landscape -- a vectorised numpy step that evaluates ``D`` for all particles and factors it with a
  PSD-tolerant Cholesky (slower, same random stream).

``method="langevin"`` -- gradient Langevin dynamics ``d theta = -grad L dt + sqrt(2T) dW`` (the SDE with
  ``D = T I``); its stationary density is ``exp(-L/T)/Z``.

``method="sgd"`` -- the discrete random-shift minibatch SGD of Yang, Tang & Tu, PRL 130, 237101 (2023), Eq. (7):
  the minibatch loss is ``L(theta - mu_k)`` with ``mu_k ~ N(0, 2 sigma I)`` i.i.d. per step, and

  * ``shift="linear"`` (default, Eq. 7 to first order in ``mu``):
    ``theta_{k+1} = theta_k - eta (grad L(theta_k) - H(theta_k) mu_k)``; noise covariance per step
    ``2 sigma eta^2 H^2``, i.e. ``D = eta sigma H^2 = Delta_S H^2`` per unit time ``t = k eta``. It is exactly the
    Euler-Maruyama step of the ``HessianAligned(eta*sigma)`` SDE with ``dt = eta``.
  * ``shift="exact"``: ``theta_{k+1} = theta_k - eta grad L(theta_k - mu_k)``. At finite ``sigma`` this also
    descends the Gaussian-smoothed loss ``E[L(theta - mu)]`` (the mean gradient is that of the smoothed loss,
    not of ``L``), which moves the flattest point; on the PRL Fig. 5 landscape it does not show the paper's
    transition from the sharp global minimum to the flattest solution. On a quadratic both shifts coincide.

  Time is reported as ``t = step * eta``.

Particles whose ``|theta|`` exceeds ``divergence_threshold`` or becomes non-finite are flagged *diverged* and
frozen at their last finite position (positions never hold NaN); the step is recorded (``divergence_time``).
With a ``grid``, particles obey its walls: ``reflecting`` (mirrored back into the box), ``periodic`` (wrapped),
``absorbing`` (flagged *absorbed*, frozen on the wall, its exit time recorded in ``absorption_time``; a crossing
is detected at the step ends only, so exit times carry an ``O(sqrt(dt))`` bias upwards).
"""

from __future__ import annotations

import math
import sys
import time as _time
import warnings
from dataclasses import dataclass

import numpy as np

from ..model import budget
from ..model import landscapes as _L
from ..model import noise as _N
from ..model.density import Density
from ..model.grid import Grid
from ..solvers import checkpoint as ckpt_io
from . import kernels as K

__all__ = ["simulate", "Ensemble", "METHODS"]

METHODS = ("sde", "langevin", "sgd")
SHIFTS = ("linear", "exact")

#: particle-steps per kernel call when no recording interval is asked for (sets the progress-bar granularity)
_CHUNK_WORK = 20_000_000
#: tests set this to check the 2D kernel against the generic one
_FORCE_GENERIC = False
#: runs with more particle-steps than this show a progress bar (when stderr is a terminal)
_PROGRESS_WORK = 200_000_000


# --- packing models into kind codes + flat parameter arrays ----------------------------------------------------
def pack_landscape(landscape, d: int):
    """``(kind, params)`` of a landscape the numba kernels know, or ``None`` (use the numpy fallback).

    Only the exact classes are packed: a subclass may override ``grad``, so it takes the numpy path."""
    t = type(landscape)
    if t is _L.Quadratic:
        return K.LAND_QUADRATIC, np.concatenate([landscape.A.ravel(), landscape.center.ravel()]).astype(float)
    if t is _L.DegenerateValley:
        lam = np.asarray(landscape.lambdas, dtype=float)
        head = [1.0, 1.0, float(lam.size), landscape.eps * landscape.lambda_bar0]
        return K.LAND_DEGENERATE, np.concatenate([head, lam]).astype(float)
    hdv = getattr(_L, "HighDimValley", None)
    if hdv is not None and t is hdv:
        lam = np.asarray(landscape.lambdas, dtype=float)
        if lam.ndim == 1:
            lam = np.broadcast_to(lam, (landscape.n_sharp, lam.size))
        head = [
            float(landscape.n_flat),
            float(landscape.n_sharp),
            float(lam.shape[1]),
            landscape.eps * landscape.lambda_bar0,
        ]
        return K.LAND_HIGHDIM, np.concatenate([head, lam.ravel()]).astype(float)
    mv = getattr(_L, "MultiValley", None)
    if mv is not None and t is mv:
        c = np.asarray(landscape.centers, dtype=float)
        C = np.asarray(landscape.curvatures, dtype=float)
        Kw, dim = c.shape
        if C.ndim == 1:
            C = C[:, None, None] * np.eye(dim)
        C = 0.5 * (C + np.swapaxes(C, -1, -2))
        b = np.zeros(Kw) if landscape.depths is None else np.asarray(landscape.depths, dtype=float)
        head = [float(Kw), float(dim), float(landscape.beta)]
        return K.LAND_MULTI, np.concatenate([head, c.ravel(), C.ravel(), b.ravel()]).astype(float)
    return None


def _sqrt_psd(M):
    w, V = np.linalg.eigh(0.5 * (M + M.T))
    return (V * np.sqrt(np.clip(w, 0.0, None))) @ V.T


def pack_noise(noise, d: int):
    """``(kind, params)`` of a noise model the numba kernels know, or ``None`` (numpy fallback)."""
    t = type(noise)
    if t is _N.Constant:
        return K.NOISE_CONSTANT, _sqrt_psd(2.0 * noise.D).ravel().astype(float)
    if t is _N.Isotropic:
        return K.NOISE_ISOTROPIC, np.array([math.sqrt(2.0 * noise.T)])
    if t is _N.HessianAligned:
        return K.NOISE_HESS_ALIGNED, np.array([math.sqrt(2.0 * noise.delta_s)])
    if t is _N.HessianLinear:
        return K.NOISE_HESS_LINEAR, np.array([math.sqrt(2.0 * noise.delta)])
    return None


# --- results -----------------------------------------------------------------------------------------------------
class Ensemble:
    """Final state of a particle simulation (see :func:`simulate`).

    Attributes
    ----------
    positions : (n, d) array
        Final positions; diverged particles sit at their last finite position, absorbed ones on the wall.
    diverged, absorbed : (n,) bool arrays
    divergence_time, absorption_time : (n,) arrays
        Time of the event (``step * dt``; ``step * eta`` for SGD), NaN for particles it did not happen to.
    time : float
        Final time; ``n_steps`` and ``dt`` (``eta`` for SGD) give it.
    times, stats :
        Recorded summary statistics (when ``record_every`` was given, else only the initial and final
        records): ``stats[name][k]`` at ``times[k]``, names ``mean`` (m, d), ``cov`` (m, d, d), ``mean_abs``
        (m, d: ``<|theta_i|>``), ``loss`` (m,: ``<L>``), ``alive``, ``diverged``, ``absorbed`` (fractions),
        all over the live particles.
    info : dict
        Method, parameters, path (``numba`` or ``numpy``), wall time, particle-steps per second.
    """

    def __init__(self, positions, status, event_step, *, dt, n_steps, times, stats, info):
        self.positions = positions
        self._status = status
        self.diverged = status == K.DIVERGED
        self.absorbed = status == K.ABSORBED
        ev = np.where(event_step >= 0, event_step * dt, np.nan)
        self.divergence_time = np.where(self.diverged, ev, np.nan)
        self.absorption_time = np.where(self.absorbed, ev, np.nan)
        self.dt = dt
        self.n_steps = n_steps
        self.time = n_steps * dt
        self.times = np.asarray(times, dtype=float)
        self.stats = {k: np.asarray(v) for k, v in stats.items()}
        self.info = info

    @property
    def n_particles(self) -> int:
        return self.positions.shape[0]

    @property
    def alive(self) -> np.ndarray:
        """Mask of particles that neither diverged nor were absorbed."""
        return ~(self.diverged | self.absorbed)

    def __len__(self):
        return self.n_particles

    def mean(self) -> np.ndarray:
        """Mean position of the live particles."""
        return self.positions[self.alive].mean(axis=0)

    def cov(self) -> np.ndarray:
        """Covariance of the live particles (``(d, d)``, unbiased)."""
        return np.atleast_2d(np.cov(self.positions[self.alive], rowvar=False))

    def histogram(self, grid: Grid, axes=None) -> Density:
        """Histogram of the live particles on ``grid`` as a :class:`~fokkerplanck.model.density.Density`.

        ``axes`` picks the coordinates to bin (default: all; their number must equal ``grid.ndim``), e.g.
        ``axes=(0, n_flat)`` for a 2D projection of a high-dimensional valley. With ``N`` live particles inside
        the grid and ``n_k`` in cell ``k``, ``values = p_k / |cell|`` with ``p_k = n_k / N`` and
        ``stderr = sqrt(p_k (1 - p_k) / N) / |cell|`` (multinomial). Live particles outside the box are left
        out of ``N``; their fraction is ``info["outside"]`` (a warning is raised above 1e-3)."""
        pts = self.positions[self.alive]
        if axes is not None:
            axes = [int(a) for a in np.atleast_1d(axes)]
            if any(not -self.positions.shape[1] <= a < self.positions.shape[1] for a in axes):
                raise ValueError(
                    f"histogram: axes {axes} out of range for {self.positions.shape[1]}-dimensional particles"
                )
            pts = pts[:, axes]
        if pts.shape[1] != grid.ndim:
            raise ValueError(
                f"histogram: particles are {pts.shape[1]}-dimensional but the grid has {grid.ndim} "
                "axes; pass axes=... to choose the coordinates"
            )
        n_live = pts.shape[0]
        if n_live == 0:
            raise ValueError("histogram: no live particles (all diverged or were absorbed)")
        counts, _ = np.histogramdd(grid.to_local(pts), bins=grid.edges)  # in a frame: binned in xi
        n_in = float(counts.sum())
        if n_in == 0:
            raise ValueError("histogram: no live particle lies inside the grid")
        outside = 1.0 - n_in / n_live
        if outside > 1e-3:
            warnings.warn(
                f"histogram: {outside:.3g} of the live particles lie outside the grid and are left out",
                RuntimeWarning,
                stacklevel=2,
            )
        p = counts / n_in
        vol = grid.cell_volume
        info = {
            "source": "particles",
            "n_particles": int(self.n_particles),
            "n_used": int(n_in),
            "outside": outside,
            "diverged": float(self.diverged.mean()),
            "absorbed": float(self.absorbed.mean()),
            "time": self.time,
        }
        return Density(grid, p / vol, stderr=np.sqrt(p * (1.0 - p) / n_in) / vol, info=info)

    def first_passage(self) -> dict:
        """Exit statistics through absorbing walls: fraction absorbed, mean and standard error of the
        absorption time among the absorbed particles (a lower bound of the mean first-passage time when
        some particles survive: those are censored at ``time``)."""
        t = self.absorption_time[self.absorbed]
        n = t.size
        out = {"fraction": n / self.n_particles, "n": int(n), "censored_at": self.time}
        out["mean"] = float(t.mean()) if n else float("nan")
        out["stderr"] = float(t.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
        return out

    def __repr__(self):
        return (
            f"Ensemble(n={self.n_particles}, d={self.positions.shape[1]}, t={self.time:g}, "
            f"diverged={self.diverged.mean():.3g}, absorbed={self.absorbed.mean():.3g})"
        )


# --- the public entry point ------------------------------------------------------------------------------------------
def _positive(name, value):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return v


def _nonneg(name, value):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not (np.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return v


def _count(name, value, minimum=1):
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        and not (isinstance(value, float) and value.is_integer())
    ):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def step_count(t_end, n_steps, step, who) -> int:
    """The number of steps of a run: ``n_steps``, or ``t_end / step`` when that is a whole number (to 1e-9);
    a ``ValueError`` naming the nearest consistent ``t_end`` otherwise, or when not even one step fits."""
    if n_steps is not None:
        n = _count("n_steps", n_steps, 0)
        if t_end is not None and not math.isclose(n * step, float(t_end), rel_tol=1e-9, abs_tol=1e-12):
            raise ValueError(f"{who}: t_end={t_end} and n_steps={n_steps} disagree (n_steps * step = {n * step})")
        return n
    if t_end is None:
        raise ValueError(f"{who}: give t_end or n_steps")
    t = _nonneg("t_end", t_end)
    if not math.isfinite(t / step):
        raise ValueError(f"{who}: t_end={t:g} takes more steps of {step:g} than can be counted")
    n = int(round(t / step))
    if t > 0 and n == 0:
        raise ValueError(f"{who}: t_end={t:g} is shorter than half a step ({step:g}): no step would be taken")
    if not math.isclose(n * step, t, rel_tol=1e-9, abs_tol=1e-12):
        raise ValueError(
            f"{who}: t_end={t:g} is not a whole number of steps of {step:g} (the nearest run ends at "
            f"{n * step:g}); give t_end={n * step:g} or n_steps={n}, or a step that divides t_end"
        )
    return n


def _seed_key(seed):
    if seed is None:
        seed = int(np.random.SeedSequence().entropy) % 2**64
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed must be an integer in [0, 2**64), got {seed!r}")
    return int(seed), np.uint64(K.seed_key(np.uint64(int(seed))))


def simulate(
    landscape,
    noise=None,
    *,
    method,
    n_particles,
    theta0,
    t_end=None,
    dt=None,
    eta=None,
    sigma=None,
    n_steps=None,
    shift="linear",
    T=None,
    grid=None,
    seed=0,
    record_every=None,
    divergence_threshold=1e6,
    progress=None,
    checkpoint=None,
    checkpoint_every=None,
    resume=False,
    noise_schedule=None,
) -> Ensemble:
    """Simulate ``n_particles`` independent particles of a stochastic gradient dynamics.

    Parameters
    ----------
    landscape : Landscape
        ``Quadratic``, ``DegenerateValley``, ``HighDimValley``, ``MultiValley`` run in compiled kernels;
        ``Custom`` (or a subclass) runs the numpy fallback.
    noise : Noise, optional
        For ``method="sde"`` (required there): ``Constant``, ``Isotropic``, ``HessianAligned``,
        ``HessianLinear`` (compiled) or ``Field`` (numpy fallback). Not used by ``"langevin"`` and ``"sgd"``.
    method : ``"sde"`` | ``"langevin"`` | ``"sgd"``
        See the module docstring for the update rules.
    n_particles : int >= 1
    theta0 : (d,) or (n_particles, d) array
        Initial position(s).
    t_end, dt, n_steps :
        ``sde``/``langevin``: step ``dt`` and ``t_end`` or ``n_steps`` (``n_steps = t_end / dt``, which must be a
        whole number to 1e-9: a run never ends silently at another time than ``t_end``).
        ``sgd``: ``n_steps`` or ``t_end`` (``n_steps = t_end / eta``, likewise); ``dt`` is not accepted.
    eta, sigma : float
        Learning rate ``eta > 0`` and shift variance parameter ``sigma >= 0`` (``mu ~ N(0, 2 sigma I)``) of
        ``method="sgd"``; ``Delta_S = eta sigma``.
    shift : ``"linear"`` | ``"exact"``
        SGD update (PRL Eq. 7 to first order, or the full shifted gradient; see the module docstring --
        ``"exact"`` also descends the smoothed loss ``E[L(theta - mu)]`` and does not show the PRL Fig. 5
        transition).
    T : float
        Temperature of ``method="langevin"``.
    grid : Grid, optional
        Apply its walls (reflecting / absorbing / periodic) to the particles (``d == grid.ndim``).
    seed : int
        Results depend on ``seed`` only (not on the number of numba threads). ``None``: a fresh random seed.
    record_every : int, optional
        Record summary statistics every this many steps (see :class:`Ensemble`).
    divergence_threshold : float
        ``|theta|`` above it (or non-finite) flags a particle diverged and freezes it.
    progress : bool, optional
        tqdm progress bar; default: on for long runs when stderr is a terminal.
    checkpoint : path, optional
        Write the state of the run to this ``.npz`` file every ``checkpoint_every`` steps, atomically (a
        temporary file in the same directory, then ``os.replace``; see
        :func:`fokkerplanck.solvers.checkpoint.write_checkpoint`): positions, status flags, event steps, the step
        counter and
        the statistics recorded so far, with the parameters that identify the run (method, step, number of
        steps, seed, particle count, the packed landscape/noise parameters, walls, ``record_every`` and a
        hash of the initial positions). The finished run is written too (marked complete) and kept.
    checkpoint_every : int, optional
        Steps between checkpoints (a count, not seconds; default ``max(1, n_steps // 20)``).
    resume : bool
        Continue from ``checkpoint`` when the file exists (else start from ``theta0``). The random stream is
        counter-based -- each normal depends on (seed, particle, step, draw) only -- so the resumed run
        reproduces the uninterrupted one exactly (``np.array_equal`` positions, flags, event times and
        statistics). A checkpoint of a different run raises a ``ValueError``
        (:class:`fokkerplanck.solvers.checkpoint.CheckpointMismatch`) naming what differs.
    noise_schedule : callable ``g(t) -> float``, optional
        Time-dependent noise. ``sde``/``langevin``: ``D(theta, t) = g(t) D(theta)`` (``g >= 0``), Euler-Maruyama
        with the amplitude ``sqrt(g(t_k)) G(theta)`` at the start of each step (Ito), ``t_k = k dt``.
        ``sgd``: a learning-rate schedule ``eta_k = eta g(t_k)`` (``g > 0``) with ``t_{k+1} = t_k + eta_k``: each
        step is the SGD step of learning rate ``eta_k`` (linear shift: noise ``sqrt(2 eta_k sigma) H``; exact
        shift: the shift ``mu ~ N(0, 2 sigma)`` is unchanged), and the last step is shortened to end at
        ``t_end`` exactly (with ``n_steps`` instead of ``t_end``: that many steps). In the continuous limit both
        are ``fp.evolve(..., noise_schedule=g)``. Event times and ``Ensemble.time`` are the ``t_k``.

    Returns
    -------
    Ensemble
    """
    # ---- the shared checks, then the method's own (METHOD_SETUPS)
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}")
    if not isinstance(landscape, _L.Landscape):
        raise ValueError(f"landscape must be a fokkerplanck.model.landscapes.Landscape, got {type(landscape).__name__}")
    n = _count("n_particles", n_particles)
    pos, d = _initial_positions(theta0, n, landscape)
    thr = _positive("divergence_threshold", divergence_threshold)
    if shift not in SHIFTS:
        raise ValueError(f"shift must be 'linear' or 'exact', got {shift!r}")
    dyn = METHOD_SETUPS[method](
        d=d,
        noise=noise,
        t_end=t_end,
        dt=dt,
        eta=eta,
        sigma=sigma,
        n_steps=n_steps,
        shift=shift,
        T=T,
        scheduled=noise_schedule is not None,
    )
    lower, upper, bc, use_walls = _walls(grid, d, pos)
    if record_every is not None:
        record_every = _count("record_every", record_every)
    seed_int, key = _seed_key(seed)
    nsteps = dyn.nsteps
    sched_steps = sched_scales = None
    if noise_schedule is not None:
        sched_steps, sched_scales = schedule_steps(noise_schedule, method, dyn.step, nsteps, t_end, n_steps)
        nsteps = sched_steps.size
    step_times = None if sched_steps is None else np.concatenate([[0.0], np.cumsum(sched_steps)])
    budget.check_work(nsteps, n, "particle-steps", f"simulate ({method})")  # dt = 1e-300 asked for 1e302 steps

    packed_land = pack_landscape(landscape, d)
    if packed_land is not None and packed_land[0] == K.LAND_MULTI and int(packed_land[1][1]) != d:
        raise ValueError(f"theta0 is {d}-dimensional but the MultiValley is {int(packed_land[1][1])}-dimensional")
    use_numba = packed_land is not None and dyn.nk is not None
    use_2d = (
        use_numba
        and d == 2
        and not _FORCE_GENERIC
        and (
            packed_land[0] in (K.LAND_QUADRATIC, K.LAND_DEGENERATE)
            or (packed_land[0] == K.LAND_HIGHDIM and int(packed_land[1][0]) == 1 and int(packed_land[1][1]) == 1)
        )
    )
    status = np.zeros(n, dtype=np.int8)
    event = np.full(n, -1, dtype=np.int64)
    rec = _Recorder(landscape, pos, status, d, dyn.step, step_times)

    # ---- checkpointing: the run's identity, and the state to resume from
    done0, complete = 0, False
    ckpt = None
    if checkpoint is not None:
        meta = {
            "method": method,
            "n_particles": n,
            "dim": d,
            "step": dyn.step,
            "n_steps": nsteps,
            "seed": seed_int,
            "shift": shift if method == "sgd" else None,
            "sigma": sigma if method == "sgd" else None,
            "T": None if T is None else float(T),
            "record_every": record_every,
            "divergence_threshold": thr,
            "walls": ckpt_io.array_hash(lower, upper, bc) if use_walls else None,
            "path": ("numba-2d" if use_2d else "numba") if use_numba else "numpy",
            "landscape": (
                ckpt_io.array_hash(np.int64(packed_land[0]), packed_land[1])
                if use_numba
                else _strip_addresses(repr(landscape))
            ),
            "noise": (
                ckpt_io.array_hash(np.int64(dyn.nk), dyn.npar) if use_numba else _strip_addresses(repr(dyn.noise_model))
            ),
            "theta0_hash": ckpt_io.array_hash(pos),
            "schedule": None if sched_steps is None else ckpt_io.array_hash(sched_steps, sched_scales),
        }
        ckpt = _ParticleCheckpoint(checkpoint, checkpoint_every, nsteps, meta, pos, status, event, rec)
        if resume:
            done0, complete = ckpt.resume()

    def after_steps(done):
        """Record and checkpoint at step ``done`` (the stream depends on the step index only, so where the
        kernel calls are split changes nothing)."""
        if record_every is not None and done % record_every == 0:
            rec.record(done)
        if ckpt is not None and done % ckpt.every == 0 and done < nsteps:
            ckpt.save(done)

    bar = _particle_progress(progress, n * (nsteps - done0), nsteps, done0, method)
    t0 = _time.perf_counter()
    if done0 == 0 and not complete:
        rec.record(0)
    if use_numba:
        _run_compiled(
            packed_land,
            dyn,
            d,
            use_2d,
            pos,
            status,
            event,
            key,
            lower,
            upper,
            bc,
            use_walls,
            thr,
            done0,
            nsteps,
            record_every,
            None if ckpt is None else ckpt.every,
            sched_steps,
            sched_scales,
            after_steps,
            bar,
        )
    else:
        _numpy_path(
            landscape,
            dyn.noise_model,
            method,
            shift,
            sigma,
            pos,
            status,
            event,
            dyn.step,
            nsteps,
            key,
            lower,
            upper,
            bc,
            use_walls,
            thr,
            after_steps,
            bar,
            start=done0,
            steps=sched_steps,
            scales=sched_scales,
        )
    wall = _time.perf_counter() - t0
    if bar is not None:
        bar.close()
    if not complete and (record_every is None or nsteps % record_every != 0 or nsteps == 0):
        if nsteps > 0:
            rec.record(nsteps)
    if ckpt is not None and not complete:
        ckpt.save(nsteps, final=True)

    # ---- the ensemble
    step = dyn.step
    info = {
        "method": method,
        "path": "numba" if use_numba else "numpy",
        "seed": seed_int,
        "n_particles": n,
        "n_steps": nsteps,
        "step": step,
        "wall_s": wall,
        "particle_steps_per_s": (n * nsteps / wall) if wall > 0 else float("nan"),
        "landscape": repr(landscape),
        "noise": repr(dyn.noise_model) if dyn.noise_model is not None else None,
    }
    if method == "sgd":
        info.update(eta=eta, sigma=sigma, delta_s=eta * sigma, shift=shift)
    elif method == "langevin":
        info.update(T=float(T))
    if grid is not None:
        info["grid"] = grid.to_dict()
    if checkpoint is not None:
        info["checkpoint"] = str(checkpoint)
        if done0 or complete:
            info["resumed_from_step"] = done0
    ens = Ensemble(pos, status, event, dt=step, n_steps=nsteps, times=rec.times, stats=rec.stats, info=info)
    if step_times is not None:  # variable steps: times from the schedule, not step * dt
        info["noise_schedule"] = {
            "min": float(sched_scales.min()) if nsteps else 1.0,
            "max": float(sched_scales.max()) if nsteps else 1.0,
        }
        ev = np.where(event >= 0, step_times[np.clip(event, 0, nsteps)], np.nan)
        ens.divergence_time = np.where(ens.diverged, ev, np.nan)
        ens.absorption_time = np.where(ens.absorbed, ev, np.nan)
        ens.time = float(step_times[-1])
    return ens


# ------------------------------------------------------------------------------------------------------------
# what every method shares: the starting points, the walls, the record of statistics, the checkpoint
# ------------------------------------------------------------------------------------------------------------
def _initial_positions(theta0, n: int, landscape) -> tuple[np.ndarray, int]:
    """``(n, d)`` starting positions from a point or an array of them, checked."""
    d_guess = np.shape(theta0)[-1] if np.ndim(theta0) >= 1 else 1
    budget.check(80.0 * n * d_guess, f"simulate: {n:,} particles")  # ~10 numbers a coordinate: positions, normals
    theta0 = np.asarray(theta0, dtype=float)
    if theta0.ndim == 0:
        theta0 = theta0[None]
    if theta0.ndim == 1:
        d = theta0.shape[0]
        pos = np.broadcast_to(theta0, (n, d)).copy()
    elif theta0.ndim == 2:
        if theta0.shape[0] != n:
            raise ValueError(f"theta0 has {theta0.shape[0]} rows but n_particles={n}")
        d = theta0.shape[1]
        pos = np.ascontiguousarray(theta0.copy())
    else:
        raise ValueError(f"theta0 must be a (d,) point or an (n_particles, d) array, got shape {theta0.shape}")
    if d < 1:
        raise ValueError("theta0 is empty")
    if landscape.dim is not None and d != landscape.dim:
        raise ValueError(
            f"theta0 is {d}-dimensional but the landscape {type(landscape).__name__} is {landscape.dim}-dimensional"
        )
    if not np.all(np.isfinite(pos)):
        raise ValueError("theta0 has non-finite entries")
    return pos, d


def _walls(grid, d: int, pos: np.ndarray):
    """``(lower, upper, bc codes, use_walls)`` of the grid's box, or no walls without a grid."""
    if grid is None:
        return np.zeros(d), np.zeros(d), np.zeros((d, 2), dtype=np.int64), False
    if not isinstance(grid, Grid):
        raise ValueError(f"grid must be a fokkerplanck.Grid, got {type(grid).__name__}")
    if grid.ndim != d:
        raise ValueError(f"grid has {grid.ndim} axes but the particles are {d}-dimensional")
    if grid.frame is not None:
        raise ValueError(
            "the particles' walls are those of a grid without frame: pass grid=None, or a grid "
            "whose box is in theta (histogram onto the framed grid afterwards)"
        )
    if np.any(~grid.contains(pos)):
        raise ValueError("some theta0 lie outside the grid")
    bc = np.ascontiguousarray(grid.bc_codes(), dtype=np.int64)
    return grid.lower.astype(float), grid.upper.astype(float), bc, True


class _Recorder:
    """Ensemble statistics of the live particles at recorded steps: mean, covariance, mean ``|theta|``, mean loss,
    and the fractions alive, diverged and absorbed."""

    NAMES = ("mean", "cov", "mean_abs", "loss", "alive", "diverged", "absorbed")

    def __init__(self, landscape, pos, status, d, step, step_times):
        self.landscape, self.pos, self.status, self.d = landscape, pos, status, d
        self.step, self.step_times = step, step_times
        self.times, self.stats = [], {k: [] for k in self.NAMES}

    def record(self, k: int):
        live = self.status == K.ALIVE
        p = self.pos[live]
        d, stats = self.d, self.stats
        self.times.append(k * self.step if self.step_times is None else float(self.step_times[k]))
        if p.shape[0]:
            m = p.mean(axis=0)
            z = p - m
            stats["mean"].append(m)
            stats["cov"].append(z.T @ z / max(p.shape[0] - 1, 1))
            stats["mean_abs"].append(np.abs(p).mean(axis=0))
            with np.errstate(all="ignore"):
                stats["loss"].append(float(np.mean(self.landscape.loss(p))))
        else:
            stats["mean"].append(np.full(d, np.nan))
            stats["cov"].append(np.full((d, d), np.nan))
            stats["mean_abs"].append(np.full(d, np.nan))
            stats["loss"].append(np.nan)
        stats["alive"].append(live.mean())
        stats["diverged"].append(np.mean(self.status == K.DIVERGED))
        stats["absorbed"].append(np.mean(self.status == K.ABSORBED))


class _ParticleCheckpoint:
    """The checkpoint file of a run: positions, status flags, event steps, the step counter and the statistics
    recorded so far, written every ``every`` steps (default about 5% of the run)."""

    def __init__(self, path, every, nsteps: int, meta: dict, pos, status, event, rec: _Recorder):
        if every is not None and (isinstance(every, bool) or int(every) != every or int(every) < 1):
            raise ValueError(f"checkpoint_every must be a whole number of steps >= 1, got {every!r}")
        self.every = max(1, nsteps // 20) if every is None else int(every)
        self.path, self.meta, self.pos, self.status, self.event, self.rec = path, meta, pos, status, event, rec

    def resume(self) -> tuple[int, bool]:
        """Load the state in place; ``(steps done, complete)``, ``(0, False)`` without a file."""
        got = ckpt_io.read_checkpoint(self.path, "simulate", self.meta)
        if got is None:
            return 0, False
        arrays, complete = got
        if arrays["pos"].shape != self.pos.shape or arrays["status"].shape != self.status.shape:
            raise ckpt_io.CheckpointMismatch(f"checkpoint '{self.path}' holds arrays of the wrong shape")
        self.pos[...] = arrays["pos"]
        self.status[...] = arrays["status"]
        self.event[...] = arrays["event"]
        self.rec.times = [float(t) for t in arrays["times"]]
        for k in _Recorder.NAMES:
            self.rec.stats[k] = list(arrays["stat_" + k])
        return int(arrays["done"]), complete

    def save(self, done: int, final: bool = False):
        ckpt_io.write_checkpoint(
            self.path,
            "simulate",
            self.meta,
            {
                "pos": self.pos,
                "status": self.status,
                "event": self.event,
                "done": np.int64(done),
                "times": np.asarray(self.rec.times, dtype=float),
                **{"stat_" + k: np.asarray(self.rec.stats[k], dtype=float) for k in _Recorder.NAMES},
            },
            complete=final,
        )


def _particle_progress(progress, work: int, nsteps: int, done0: int, method: str):
    """A tqdm bar over steps, or None (``progress=None``: only for long runs on a terminal)."""
    if progress is None:
        progress = work > _PROGRESS_WORK and sys.stderr.isatty()
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=nsteps, initial=done0, desc=f"simulate[{method}]", unit="step")


# ------------------------------------------------------------------------------------------------------------
# the methods: each resolves its step, its step count and its noise, with the checks of its own parameters
# ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Dynamics:
    step: float  # dt, or eta for SGD
    nsteps: int | None  # None: set by a noise schedule
    noise_model: object  # the Noise model, or None (SGD with the exact shift)
    nk: int | None  # the compiled kernels' noise kind, None: numpy fallback
    npar: np.ndarray | None  # its parameters


def _sgd_setup(*, d, noise, t_end, dt, eta, sigma, n_steps, shift, T, scheduled) -> _Dynamics:
    """Random-shift minibatch SGD: step ``eta``, noise ``D = eta sigma H^2`` (linear shift) or the exact shift."""
    if eta is None or sigma is None:
        raise ValueError("method='sgd' needs eta (learning rate) and sigma (shift variance parameter)")
    if dt is not None:
        raise ValueError("method='sgd' takes eta as its time step; do not pass dt")
    if noise is not None:
        raise ValueError("method='sgd' sets its own noise (D = eta*sigma*H^2); do not pass noise")
    if T is not None:
        raise ValueError("T is for method='langevin'")
    eta = _positive("eta", eta)
    sigma = _nonneg("sigma", sigma)
    nsteps = step_count(t_end, n_steps, eta, "method='sgd'") if not scheduled else None
    if shift == "linear":
        return _Dynamics(
            eta, nsteps, _N.HessianAligned(eta * sigma), K.NOISE_HESS_ALIGNED, np.array([math.sqrt(2.0 * eta * sigma)])
        )
    return _Dynamics(eta, nsteps, None, K.NOISE_SHIFT_EXACT, np.array([math.sqrt(2.0 * sigma)]))


def _diffusion_setup(method, noise_model, *, d, t_end, dt, eta, sigma, n_steps, shift) -> _Dynamics:
    """Euler-Maruyama of ``d theta = -grad L dt + sqrt(2 D) dW`` with step ``dt``."""
    if eta is not None or sigma is not None:
        raise ValueError(f"eta and sigma are parameters of method='sgd', not of method={method!r}")
    if shift != "linear":
        raise ValueError("shift is a parameter of method='sgd'")
    if dt is None:
        raise ValueError(f"method={method!r} needs a time step dt")
    step = _positive("dt", dt)
    nsteps = step_count(t_end, n_steps, step, f"method={method!r}")
    if type(noise_model) is _N.Constant and noise_model.D.shape[0] != d:
        raise ValueError(f"Constant noise is {noise_model.D.shape[0]}-dimensional but theta0 is {d}-dimensional")
    packed = pack_noise(noise_model, d)
    nk, npar = packed if packed is not None else (None, None)
    return _Dynamics(step, nsteps, noise_model, nk, npar)


def _langevin_setup(*, d, noise, t_end, dt, eta, sigma, n_steps, shift, T, scheduled) -> _Dynamics:
    """Langevin dynamics: isotropic noise ``D = T I``."""
    if T is None:
        raise ValueError("method='langevin' needs a temperature T")
    if noise is not None:
        raise ValueError("method='langevin' sets the noise D = T I; pass T, not noise (or use method='sde')")
    return _diffusion_setup(
        "langevin",
        _N.Isotropic(_nonneg("T", T)),
        d=d,
        t_end=t_end,
        dt=dt,
        eta=eta,
        sigma=sigma,
        n_steps=n_steps,
        shift=shift,
    )


def _sde_setup(*, d, noise, t_end, dt, eta, sigma, n_steps, shift, T, scheduled) -> _Dynamics:
    """The Ito SDE of any noise model."""
    if T is not None:
        raise ValueError("T is for method='langevin'; for method='sde' pass noise=Isotropic(T)")
    if noise is None:
        raise ValueError("method='sde' needs a noise model (e.g. noise.Isotropic(T), noise.Constant(D))")
    if not isinstance(noise, _N.Noise):
        raise ValueError(f"noise must be a fokkerplanck.model.noise.Noise, got {type(noise).__name__}")
    return _diffusion_setup("sde", noise, d=d, t_end=t_end, dt=dt, eta=eta, sigma=sigma, n_steps=n_steps, shift=shift)


#: method -> its setup
METHOD_SETUPS = {"sgd": _sgd_setup, "langevin": _langevin_setup, "sde": _sde_setup}


def _run_compiled(
    packed_land,
    dyn: _Dynamics,
    d,
    use_2d,
    pos,
    status,
    event,
    key,
    lower,
    upper,
    bc,
    use_walls,
    thr,
    done,
    nsteps,
    record_every,
    ckpt_every,
    sched_steps,
    sched_scales,
    after_steps,
    bar,
):
    """The numba kernels, in chunks of steps that end at every record and checkpoint step (and, under a noise
    schedule, at every change of step size or noise factor)."""
    import numba

    lk, lp = packed_land
    ws = K.scratch_size(lk, lp, d)
    n = pos.shape[0]
    n_blocks = int(min(n, max(1, 8 * numba.get_num_threads())))
    npar = np.ascontiguousarray(dyn.npar, dtype=float)
    lp = np.ascontiguousarray(lp, dtype=float)
    chunk = record_every if record_every is not None else max(1, min(max(nsteps, 1), _CHUNK_WORK // n))
    while done < nsteps:
        m = min(chunk, nsteps - done)
        if record_every is not None:
            m = min(m, record_every - done % record_every)
        if ckpt_every is not None:
            m = min(m, ckpt_every - done % ckpt_every)
        h, par = dyn.step, npar
        if sched_steps is not None:  # a run of steps with the same step size and noise factor
            h, gk = float(sched_steps[done]), float(sched_scales[done])
            same = (sched_steps[done : done + m] == h) & (sched_scales[done : done + m] == gk)
            m = int(np.argmin(same)) if not same.all() else m
            par = npar if dyn.nk == K.NOISE_SHIFT_EXACT else np.ascontiguousarray(npar * math.sqrt(gk))
        state = (pos, status, event, np.int64(lk), lp)
        rest = (np.int64(dyn.nk), par, float(h), np.int64(done), np.int64(m), key, lower, upper, bc, use_walls)
        rest += (float(thr), np.int64(n_blocks))
        if use_2d:  # the 2D kernel needs no scratch space
            K.run_chunk_2d(*state, *rest)
        else:
            K.run_chunk(*state, np.int64(ws), *rest)
        done += m
        if bar is not None:
            bar.update(m)
        after_steps(done)


def schedule_steps(schedule, method: str, step: float, nsteps, t_end, n_steps):
    """Per-step ``(step sizes, noise factors)`` of a run with ``noise_schedule`` (see :func:`simulate`)."""
    if not callable(schedule):
        raise ValueError(f"noise_schedule must be a callable g(t) -> float, got {type(schedule).__name__}")

    def g_at(t):
        try:
            v = float(schedule(float(t)))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"noise_schedule(t={t:g}) did not return a number ({exc})") from None
        if not np.isfinite(v) or v < 0 or (method == "sgd" and v == 0):
            need = "> 0 (a learning-rate factor)" if method == "sgd" else ">= 0"
            raise ValueError(f"noise_schedule(t={t:g}) = {v!r}; it must be finite and {need}")
        return v

    if method != "sgd":
        scales = np.array([g_at(k * step) for k in range(nsteps)])
        return np.full(nsteps, step), scales
    steps, scales = [], []
    t = 0.0
    if n_steps is not None:
        for _ in range(_count("n_steps", n_steps, 0)):
            gk = g_at(t)
            steps.append(step * gk)
            scales.append(gk)
            t += step * gk
        if t_end is not None and not math.isclose(t, float(t_end), rel_tol=1e-9, abs_tol=1e-12):
            raise ValueError(
                f"method='sgd': t_end={t_end} and n_steps={n_steps} disagree under the schedule "
                f"(the steps end at {t:g}); give one of them"
            )
        return np.array(steps), np.array(scales)
    if t_end is None:
        raise ValueError("method='sgd': give t_end or n_steps")
    t_end = _nonneg("t_end", t_end)
    while t < t_end * (1 - 1e-12):
        gk = g_at(t)
        h = min(step * gk, t_end - t)
        steps.append(h)
        scales.append(h / step)  # the last, shortened step: learning rate h
        t += h
        if len(steps) > 10**8:
            raise ValueError("method='sgd': the noise schedule makes more than 1e8 steps; is it decaying to 0?")
    return np.array(steps), np.array(scales)


def _strip_addresses(text: str) -> str:
    """``repr`` text without memory addresses (``<function f at 0x7f...>``), stable across processes."""
    import re

    return re.sub(r" at 0x[0-9a-fA-F]+", "", text)


def _numpy_path(
    landscape,
    noise,
    method,
    shift,
    sigma,
    pos,
    status,
    event,
    step,
    nsteps,
    key,
    lower,
    upper,
    bc,
    use_walls,
    thr,
    after_step,
    bar,
    start=0,
    steps=None,
    scales=None,
):
    """Vectorised numpy Euler-Maruyama / SGD step for models the kernels do not know (Custom landscapes,
    Field noise). Same random stream as the compiled path; the per-step bookkeeping (divergence, walls) is
    the compiled :func:`~fokkerplanck.particles.kernels.finish_step`. Steps ``start .. nsteps-1``;
    ``after_step(s + 1)`` records and checkpoints."""
    n, d = pos.shape
    xi = np.empty((n, d))
    new = np.empty((n, d))
    sqdt = math.sqrt(step)
    const_G = None
    if noise is not None:
        packed = pack_noise(noise, d)
        if packed is not None and packed[0] in (K.NOISE_CONSTANT, K.NOISE_ISOTROPIC):
            const_G = packed[1].reshape(d, d) if packed[0] == K.NOISE_CONSTANT else packed[1][0] * np.eye(d)
    for s in range(start, nsteps):
        amp = 1.0
        if steps is not None:  # a noise schedule: this step's size and noise factor
            step = float(steps[s])
            sqdt = math.sqrt(step)
            amp = 1.0 if (method == "sgd" and shift == "exact") else math.sqrt(float(scales[s]))
        K.fill_normals(xi, key, np.int64(s), np.int64(0))
        live = status == K.ALIVE
        p = pos[live]
        z = xi[live] if amp == 1.0 else amp * xi[live]
        with np.errstate(all="ignore"):
            if method == "sgd" and shift == "exact":
                inc = -step * landscape.grad(p - math.sqrt(2.0 * sigma) * z)
            else:
                inc = -step * landscape.grad(p)
                if const_G is not None:
                    inc += sqdt * (z @ const_G.T)
                elif type(noise) is _N.HessianAligned:
                    H = landscape.hessian(p)
                    inc += sqdt * math.sqrt(2.0 * noise.delta_s) * np.einsum("nij,nj->ni", H, z)
                else:
                    D = np.ascontiguousarray(noise.tensor(p, landscape), dtype=float)
                    if D.shape != (p.shape[0], d, d):
                        raise ValueError(
                            f"noise {noise!r} returned a tensor of shape {D.shape}, expected {(p.shape[0], d, d)}"
                        )
                    Lc, n_bad = K.batch_psd_cholesky(0.5 * (D + np.swapaxes(D, -1, -2)))
                    if n_bad:
                        raise ValueError(
                            f"noise {noise!r}: D is not positive semi-definite at {n_bad} particle "
                            f"position(s) at step {s}"
                        )
                    inc += sqdt * math.sqrt(2.0) * np.einsum("nij,nj->ni", Lc, z)
        new[live] = p + inc
        K.finish_step(pos, new, status, event, np.int64(s), lower, upper, bc, use_walls, float(thr))
        if bar is not None:
            bar.update(1)
        after_step(s + 1)
