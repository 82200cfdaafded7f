"""Flatness dynamics, valley occupation and search times (Yang, Tang & Tu, PRL 130, 237101 (2023), Figs. 2, 3, 5).

* **Flatness** of a solution ``x`` along the sharp directions (PRL Eq. 6): ``F(x) = prod_i lambda^(i)(x)^(-1/(2 N_S))``,
  from the landscape's ``flatness`` method (:class:`~fokkerplanck.model.landscapes.DegenerateValley`,
  :class:`~fokkerplanck.model.landscapes.HighDimValley`). The flatness of a density is the density-weighted mean
  ``<F> = int F(x) P(x, y) dx dy`` (:func:`density_flatness`); of particles, the mean over live particles.
  :func:`flatness_trajectory` turns an :func:`~fokkerplanck.solvers.evolve.evolve` trajectory into ``F(t)``,
  :func:`particle_flatness` runs particles (any dimension) and records ``F(t)``, and :func:`flatness_dynamics`
  compares GD (no noise), SGD (``HessianAligned``) and GLD (``Isotropic``) -- PRL Fig. 2(a);
  :func:`sgd_flatness_vs_noise` runs the discrete SGD at several noise strengths -- PRL Fig. 3(a).
* **Valleys** of a :class:`~fokkerplanck.model.landscapes.MultiValley`: every point belongs to the well ``k`` with the
  largest soft-min weight ``pi_k`` (the lowest quadratic ``q_k``). :func:`valley_fractions` gives the probability in
  each valley (summing to the mass of the density), :func:`valley_fraction_dynamics` follows them in time for
  several noise levels: fast exploration of every valley at high noise, freezing into the first valley reached
  at low noise.
* **Search time** ``tau_s = eta <t_s>`` (PRL Appendix, Fig. 5d): the mean first time the flat coordinate reaches
  the steady-state solution ``|x| = x_ss`` (within ``tol``), from particles (:func:`search_time_particles`) and from
  the backward equation (:func:`search_time_mfpt`); :func:`fokkerplanck.sgd.phase_diagrams.prl_search_point` gives
  both for the PRL model at one
  ``Delta_S``, showing the critical slowing down near ``Delta_S* = -eps/lambda_1``.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..model import landscapes as _L
from ..model import noise as _N
from ..model.density import Density, Trajectory
from ..model.grid import Grid
from ..numerics.operator import DEFAULT_STENCIL_RADIUS

__all__ = [
    "flatness_of_points",
    "density_flatness",
    "flatness_trajectory",
    "FlatnessCurve",
    "particle_record",
    "ParticleRecord",
    "particle_flatness",
    "flatness_dynamics",
    "sgd_flatness_vs_noise",
    "valley_index",
    "valley_fractions",
    "valley_fraction_dynamics",
    "particle_valley_fractions",
    "search_time_particles",
    "search_time_mfpt",
]


def __getattr__(name):
    if name == "prl_search_point":
        raise AttributeError(
            "fokkerplanck.sgd.flatness.prl_search_point has moved to "
            "fokkerplanck.sgd.phase_diagrams.prl_search_point (also fp.sweeps.prl_search_point)"
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------------------------------------------------
# flatness of points, densities and trajectories
# ------------------------------------------------------------------------------------------------------------
def _flat_coords(landscape, theta) -> np.ndarray:
    theta = np.asarray(theta, dtype=float)
    if isinstance(landscape, _L.HighDimValley):
        return theta[..., : landscape.n_flat]
    if isinstance(landscape, _L.DegenerateValley):
        return theta[..., 0]
    raise TypeError(
        f"flatness: {type(landscape).__name__} has no flat/sharp split; use DegenerateValley or HighDimValley"
    )


def flat_norm(landscape, theta) -> np.ndarray:
    """``|x|``, the norm of the flat coordinates of points ``theta`` (``(..., d)``)."""
    x = _flat_coords(landscape, theta)
    return np.abs(x) if isinstance(landscape, _L.DegenerateValley) else np.linalg.norm(x, axis=-1)


def flatness_of_points(landscape, theta) -> np.ndarray:
    """``F(x)`` (PRL Eq. 6) at points ``theta`` of shape ``(..., d)`` -- only the flat part ``x`` matters."""
    if not hasattr(landscape, "flatness"):
        raise TypeError(f"flatness: {type(landscape).__name__} has no flatness method")
    return np.asarray(landscape.flatness(_flat_coords(landscape, theta)), dtype=float)


def density_flatness(density: Density, landscape) -> float:
    """``<F> = sum_cells F(x) P |cell| / mass`` (density-weighted flatness)."""
    F = flatness_of_points(landscape, density.grid.mesh())
    w = np.clip(density.values, 0.0, None)
    return float((F * w).sum() / w.sum())


@dataclass
class FlatnessCurve:
    """``values[k]`` (mean flatness) at ``times[k]``, with ``stderr`` (particles) and extra series in ``extra``
    (e.g. ``mean_abs_x``, ``diverged``)."""

    times: np.ndarray
    values: np.ndarray
    stderr: np.ndarray | None = None
    extra: dict = field(default_factory=dict)
    source: str = ""

    def to_dict(self) -> dict:
        d = {"times": self.times.tolist(), "values": self.values.tolist(), "source": self.source}
        if self.stderr is not None:
            d["stderr"] = self.stderr.tolist()
        d.update({k: np.asarray(v).tolist() for k, v in self.extra.items()})
        return d


def flatness_trajectory(traj: Trajectory, landscape) -> FlatnessCurve:
    """``<F>(t)`` of a trajectory of :func:`~fokkerplanck.solvers.evolve.evolve`, with ``mean_abs_x`` ``<|x|>(t)``."""
    mesh = traj.grid.mesh()
    F = flatness_of_points(landscape, mesh)
    ax = flat_norm(landscape, mesh)
    vals, mabs = [], []
    for k in range(len(traj)):
        w = np.clip(traj.values[k], 0.0, None)
        s = w.sum()
        vals.append(float((F * w).sum() / s))
        mabs.append(float((ax * w).sum() / s))
    return FlatnessCurve(
        traj.times.copy(), np.array(vals), None, {"mean_abs_x": np.array(mabs), "mass": traj.mass.copy()}, "solver"
    )


# ------------------------------------------------------------------------------------------------------------
# particles, recorded in chunks
# ------------------------------------------------------------------------------------------------------------
@dataclass
class ParticleRecord:
    """Per-particle observables at the record times: ``times`` (``n_rec``), ``values[name]`` (``n_rec, n``),
    ``alive`` (``n_rec, n``: neither diverged nor absorbed by then), ``info`` (method, parameters, wall time)."""

    times: np.ndarray
    values: dict
    alive: np.ndarray
    info: dict

    def mean(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard error of ``values[name]`` over the live particles, per record time."""
        v = np.where(self.alive, self.values[name], np.nan)
        n = self.alive.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            m = np.nanmean(v, axis=1)
            se = np.nanstd(v, axis=1, ddof=1) / np.sqrt(n)
        return m, se


def particle_record(
    landscape,
    noise=None,
    *,
    method: str,
    theta0,
    n_particles: int,
    n_records: int = 50,
    t_end=None,
    n_steps=None,
    dt=None,
    eta=None,
    sigma=None,
    T=None,
    grid=None,
    seed: int = 0,
    observables: dict | None = None,
    divergence_threshold: float = 1e6,
    log_times: bool = False,
) -> ParticleRecord:
    """Run :func:`~fokkerplanck.particles.simulate` in ``n_records`` chunks, continuing each chunk from the live
    particles of the last (chunk ``c`` uses seed ``seed + c``), and record per-particle observables
    ``observables = {name: f(positions (n, d)) -> (n,)}`` (default: ``flatness`` and ``abs_x`` ``|x|`` for
    valleys, ``valley`` for a MultiValley). ``log_times`` spaces the records geometrically in steps (the
    dynamics of flatness spans decades). Any dimension (e.g. the PRL's ``N_F = 100, N_S = 5``)."""
    from ..particles import simulate

    if observables is None:
        if isinstance(landscape, _L.MultiValley):
            observables = {"valley": lambda p: valley_index(landscape, p).astype(float)}
        else:
            observables = {
                "flatness": lambda p: flatness_of_points(landscape, p),
                "abs_x": lambda p: flat_norm(landscape, p),
            }
    step = float(eta) if method == "sgd" else float(dt)
    if n_steps is None:
        if t_end is None:
            raise ValueError("particle_record: give t_end or n_steps")
        n_steps = int(round(float(t_end) / step))
    n_steps = int(n_steps)
    n = int(n_particles)
    if log_times:
        marks = np.unique(np.round(np.geomspace(1, max(n_steps, 1), int(n_records))).astype(int))
    else:
        marks = np.unique(np.round(np.linspace(0, n_steps, int(n_records) + 1)[1:]).astype(int))
    marks = marks[marks > 0]
    theta0 = np.asarray(theta0, dtype=float)
    pos = np.broadcast_to(theta0, (n, theta0.shape[-1])).copy() if theta0.ndim == 1 else theta0.copy()
    alive = np.ones(n, dtype=bool)
    rec_t = [0.0]
    rec_v = {k: [np.asarray(f(pos), dtype=float)] for k, f in observables.items()}
    rec_alive = [alive.copy()]
    kw = dict(method=method, divergence_threshold=divergence_threshold)
    if method == "sgd":
        kw.update(eta=eta, sigma=sigma)
    else:
        kw.update(dt=dt)
        if method == "langevin":
            kw.update(T=T)
    if grid is not None:
        kw["grid"] = grid
    t0 = time.perf_counter()
    done = 0
    for c, m in enumerate(marks):
        k = int(m - done)
        idx = np.flatnonzero(alive)
        if k > 0 and idx.size:
            ens = simulate(
                landscape, noise, n_particles=int(idx.size), theta0=pos[idx], n_steps=k, seed=int(seed) + c, **kw
            )
            pos[idx] = ens.positions
            alive[idx[~ens.alive]] = False
        done = int(m)
        rec_t.append(done * step)
        for name, f in observables.items():
            rec_v[name].append(np.asarray(f(pos), dtype=float))
        rec_alive.append(alive.copy())
    info = {
        "method": method,
        "n_particles": n,
        "n_steps": n_steps,
        "step": step,
        "seed": seed,
        "wall_s": time.perf_counter() - t0,
    }
    return ParticleRecord(np.array(rec_t), {k: np.array(v) for k, v in rec_v.items()}, np.array(rec_alive), info)


def particle_flatness(landscape, noise=None, **kwargs) -> FlatnessCurve:
    """``<F>(t)`` over live particles (``kwargs`` as in :func:`particle_record`), with ``stderr`` and extra series
    ``mean_abs_x`` and ``diverged`` (fraction of particles lost by then)."""
    rec = particle_record(landscape, noise, **kwargs)
    m, se = rec.mean("flatness")
    mabs, _ = rec.mean("abs_x")
    return FlatnessCurve(rec.times, m, se, {"mean_abs_x": mabs, "diverged": 1.0 - rec.alive.mean(axis=1)}, "particles")


def _first_time_at_least(times, values, level) -> float:
    """First time the curve reaches ``level`` (linear interpolation between records), NaN if never."""
    v = np.asarray(values, float)
    k = np.flatnonzero(np.isfinite(v) & (v >= level))
    if k.size == 0:
        return float("nan")
    k = int(k[0])
    if k == 0:
        return float(times[0])
    t0, t1, v0, v1 = float(times[k - 1]), float(times[k]), float(v[k - 1]), float(v[k])
    return t1 if v1 == v0 else t0 + (level - v0) * (t1 - t0) / (v1 - v0)


def sgd_flatness_vs_noise(
    landscape,
    sigmas,
    *,
    eta: float,
    theta0,
    n_particles: int = 64,
    n_steps: int | None = None,
    t_end: float | None = None,
    n_records: int = 30,
    seed: int = 0,
) -> dict:
    """Flatness dynamics of the discrete random-shift SGD at one learning rate and several noise strengths
    (PRL Fig. 3a): ``<F>(t)`` over live particles for each ``sigma`` (records spaced geometrically in steps), all
    started at ``theta0`` (a point, or one row per particle).

    On a degenerate valley the PRL finds that ``F`` grows at a rate proportional to ``Delta_S = eta sigma`` (its
    Sec. IV B): the flattening time scales like ``1/sigma``. Each curve is therefore summarised by
    ``t_half``, the first time ``<F>`` is half-way from its start to the flattest value of the valley (the
    landscape's ``flatness`` on a dense radial scan), so ``sigma t_half`` is roughly constant where the
    dynamics is noise-driven.

    Returns ``{"curves": {sigma: FlatnessCurve}, "t_half": {sigma: float}, "flatness_max": F_max,
    "x_flattest": |x_F|, "eta": eta}``."""
    rad = np.linspace(0.0, 3.0, 6001)
    pts = np.zeros((rad.size, landscape.dim))
    pts[:, 0] = rad
    with np.errstate(invalid="ignore", divide="ignore"):
        F = flatness_of_points(landscape, pts)
    k = int(np.nanargmax(F))
    out = {"curves": {}, "t_half": {}, "flatness_max": float(F[k]), "x_flattest": float(rad[k]), "eta": float(eta)}
    for sg in sigmas:
        c = particle_flatness(
            landscape,
            method="sgd",
            eta=float(eta),
            sigma=float(sg),
            theta0=theta0,
            n_particles=int(n_particles),
            n_steps=n_steps,
            t_end=t_end,
            n_records=int(n_records),
            seed=int(seed),
            log_times=True,
        )
        out["curves"][float(sg)] = c
        half = 0.5 * (float(c.values[0]) + out["flatness_max"])
        out["t_half"][float(sg)] = _first_time_at_least(c.times, c.values, half)
    return out


def _default_temperature(landscape, delta_s: float) -> float:
    """GLD temperature with the same total noise power ``tr D`` as the SGD noise ``Delta_S H^2`` at the global
    minimum ``theta = 0``."""
    H0 = landscape.hessian(np.zeros(landscape.dim))
    return float(delta_s) * float(np.trace(H0 @ H0)) / landscape.dim


def flatness_dynamics(
    landscape,
    *,
    delta_s: float = 1e-2,
    T: float | None = None,
    algorithms: dict | None = None,
    grid: Grid | None = None,
    p0: Density | None = None,
    theta0=None,
    t_end: float = 50.0,
    n_save: int = 26,
    n_particles: int = 0,
    dt: float = 1e-2,
    seed: int = 0,
    stencil_radius: int = DEFAULT_STENCIL_RADIUS,
) -> dict:
    """Flatness ``<F>(t)`` of GD, SGD and GLD (PRL Fig. 2a): ``algorithms`` maps names to noise models
    (``None`` = no noise); default ``{"GD": None, "SGD": HessianAligned(delta_s), "GLD": Isotropic(T)}`` with ``T``
    matching the total SGD noise power at the global minimum unless given.

    With ``grid`` (and ``p0``, default a narrow Gaussian at ``theta0``) the Fokker-Planck density is evolved
    (``n_save`` times); with ``n_particles > 0`` Euler-Maruyama particles from ``theta0`` (``dt``) are run too.
    Returns ``{name: {"solver": FlatnessCurve | None, "particles": FlatnessCurve | None}}``."""
    from ..model.problem import Problem
    from ..solvers.evolve import evolve

    if algorithms is None:
        T = _default_temperature(landscape, delta_s) if T is None else float(T)
        algorithms = {"GD": None, "SGD": _N.HessianAligned(delta_s), "GLD": _N.Isotropic(T)}
    if theta0 is None and p0 is None:
        raise ValueError("flatness_dynamics: give theta0 (particles, and the centre of the default p0) or p0")
    if grid is not None and p0 is None:
        p0 = Density.gaussian(grid, mean=np.asarray(theta0, float), cov=(2 * grid.spacing) ** 2)
    out = {}
    for name, nz in algorithms.items():
        nz_eff = _N.Isotropic(0.0) if nz is None else nz
        entry = {"solver": None, "particles": None, "noise": repr(nz)}
        if grid is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                traj = evolve(
                    Problem(grid, landscape, nz_eff), p0, t_end=t_end, n_save=n_save, stencil_radius=stencil_radius
                )
            entry["solver"] = flatness_trajectory(traj, landscape)
        if n_particles:
            entry["particles"] = particle_flatness(
                landscape,
                nz_eff,
                method="sde",
                theta0=theta0,
                n_particles=n_particles,
                t_end=t_end,
                dt=dt,
                seed=seed,
                n_records=n_save - 1,
            )
        out[name] = entry
    return out


# ------------------------------------------------------------------------------------------------------------
# valleys
# ------------------------------------------------------------------------------------------------------------
def valley_index(landscape, theta) -> np.ndarray:
    """The valley of each point: ``argmax_k pi_k(theta)`` of a :class:`MultiValley` (shape ``theta.shape[:-1]``)."""
    if not isinstance(landscape, _L.MultiValley):
        raise TypeError(f"valley_index needs a MultiValley landscape, got {type(landscape).__name__}")
    return np.argmax(landscape.weights(theta), axis=-1)


def valley_fractions(density: Density, landscape) -> np.ndarray:
    """Probability in each valley, shape ``(K,)``; sums to the mass of ``density`` (all of it when no wall is
    absorbing)."""
    idx = valley_index(landscape, density.grid.mesh())
    K = landscape.centers.shape[0]
    return np.bincount(idx.ravel(), weights=density.values.ravel() * density.grid.cell_volume, minlength=K)


def valley_fraction_dynamics(
    landscape,
    noises,
    grid: Grid,
    p0: Density,
    t_end: float,
    *,
    n_save: int = 41,
    save_times=None,
    stencil_radius: int = DEFAULT_STENCIL_RADIUS,
) -> dict:
    """Fraction of probability in each valley against time for several noise levels.

    ``noises``: a list of temperatures (``Isotropic(T)``) or noise models, or a dict ``label -> model``.
    Returns ``{"times": (n_t,), "levels": [labels], "fractions": {label: (n_t, K)}, "mass": {label: (n_t,)}}``."""
    from ..model.problem import Problem
    from ..solvers.evolve import evolve

    if not isinstance(noises, dict):
        noises = {
            (f"T={v:g}" if not isinstance(v, _N.Noise) else repr(v)): (
                v if isinstance(v, _N.Noise) else _N.Isotropic(float(v))
            )
            for v in noises
        }
    fr, mass, times = {}, {}, None
    for label, nz in noises.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traj = evolve(
                Problem(grid, landscape, nz),
                p0,
                t_end=t_end,
                n_save=n_save,
                save_times=save_times,
                stencil_radius=stencil_radius,
            )
        fr[label] = np.array([valley_fractions(d, landscape) for d in traj])
        mass[label] = traj.mass.copy()
        times = traj.times
    return {"times": times, "levels": list(noises), "fractions": fr, "mass": mass}


def particle_valley_fractions(landscape, noise=None, **kwargs) -> dict:
    """Valley fractions of particles against time (``kwargs`` as in :func:`particle_record`); fractions of all
    particles, lost ones (diverged or absorbed) counted apart in ``lost``."""
    rec = particle_record(landscape, noise, **kwargs)
    K = landscape.centers.shape[0]
    v = rec.values["valley"].astype(int)
    n = v.shape[1]
    fr = np.stack([np.sum((v == k) & rec.alive, axis=1) / n for k in range(K)], axis=1)
    return {"times": rec.times, "fractions": fr, "lost": 1.0 - rec.alive.mean(axis=1), "info": rec.info}


# ------------------------------------------------------------------------------------------------------------
# search time tau_s = eta <t_s>
# ------------------------------------------------------------------------------------------------------------
def _first_hits(times, values, alive, x_ss, tol):
    hit = (np.abs(values - x_ss) <= tol) & alive
    any_hit = hit.any(axis=0)
    first = np.where(any_hit, times[np.argmax(hit, axis=0)], np.nan)
    return first, any_hit


def search_time_particles(
    landscape,
    *,
    theta0,
    n_particles: int = 500,
    method: str = "sgd",
    eta=None,
    sigma=None,
    noise=None,
    dt=None,
    t_end=None,
    n_steps=None,
    n_records: int = 400,
    x_ss=None,
    tol: float = 0.05,
    settle_from: float = 0.75,
    seed: int = 0,
) -> dict:
    """Search time from particles: the first record time at which each particle's ``|x|`` lies within ``tol`` of
    ``x_ss``, averaged (time in units of ``t = step eta`` for SGD, so this is ``tau_s = eta <t_s>``).

    ``x_ss`` defaults to the mean ``|x|`` of the live particles over the last ``1 - settle_from`` of the run.
    Returns ``tau_s`` (mean over the particles that got there), ``stderr``, ``reached`` (fraction; particles that
    never did are censored at ``t_end`` and make ``tau_s`` a lower bound), ``x_ss``, ``resolution`` (record
    spacing), ``t_end``."""
    rec = particle_record(
        landscape,
        noise,
        method=method,
        theta0=theta0,
        n_particles=n_particles,
        eta=eta,
        sigma=sigma,
        dt=dt,
        t_end=t_end,
        n_steps=n_steps,
        n_records=n_records,
        seed=seed,
        observables={"abs_x": lambda p: flat_norm(landscape, p)},
    )
    ax = rec.values["abs_x"]
    if x_ss is None:
        late = rec.times >= settle_from * rec.times[-1]
        v = np.where(rec.alive[late], ax[late], np.nan)
        x_ss = float(np.nanmean(v)) if np.any(np.isfinite(v)) else float("nan")  # NaN: every particle diverged
    first, ok = _first_hits(rec.times, ax, rec.alive, float(x_ss), float(tol))
    n_ok = int(ok.sum())
    return {
        "tau_s": float(np.mean(first[ok])) if n_ok else float("nan"),
        "stderr": float(np.std(first[ok], ddof=1) / math.sqrt(n_ok)) if n_ok > 1 else float("nan"),
        "reached": n_ok / ax.shape[1],
        "x_ss": float(x_ss),
        "tol": float(tol),
        "resolution": float(rec.times[1] - rec.times[0]) if rec.times.size > 1 else float("nan"),
        "t_end": float(rec.times[-1]),
        "diverged": float(1.0 - rec.alive[-1].mean()),
        "wall_s": rec.info["wall_s"],
    }


def search_time_mfpt(
    problem, x_ss: float, theta0, tol: float = 0.05, stencil_radius: int = DEFAULT_STENCIL_RADIUS
) -> dict:
    """Search time from the backward equation: the mean first-passage time ``T(theta0)`` to the set
    ``{| |x| - x_ss | <= tol}`` (all sharp coordinates free) on ``problem``'s grid. ``tol`` is raised to half a cell
    width along ``x`` when smaller, so the target is never empty; ``theta0`` is clipped into the box. Also
    returns ``condition`` and ``gth`` of :func:`~fokkerplanck.solvers.passage.mean_first_passage_time`: below the PRL
    transition the times are astronomically long (3.6e38, 7.5e25, 6.0e17 at Delta_S = 2e-4, 3e-4, 4e-4 on 120 x
    80 cells), which only the subtraction-free elimination resolves (the LU had given 0, 1.4e14 and 0)."""
    from ..solvers.passage import mean_first_passage_time

    grid = problem.grid
    land = problem.landscape
    h = float(grid.spacing[0])
    tol_eff = max(float(tol), 0.5 * h + 1e-12)
    ax = flat_norm(land, grid.mesh())
    target = np.abs(ax - float(x_ss)) <= tol_eff
    th = np.clip(np.asarray(theta0, float), grid.lower + 0.5 * grid.spacing, grid.upper - 0.5 * grid.spacing)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="cross-diffusion")  # reported by the steady state's rows
        T = mean_first_passage_time(problem, target, stencil_radius=stencil_radius)
    return {
        "tau_s": float(T.at(th)),
        "x_ss": float(x_ss),
        "tol": tol_eff,
        "theta0": th.tolist(),
        "target_cells": int(target.sum()),
        "condition": T.info["condition"],
        "gth": T.info["gth"],
        "seconds": T.info["seconds"],
    }


def escape_time_vs_sharpness(
    curvatures, *, barrier: float = 1.0, delta: float = 0.05, k_ref: float | None = None, cells: int = 400
) -> list[dict]:
    """Mean escape time from a valley as a function of its sharpness, for SGD-like and isotropic noise.

    The valley is the left well of ``L(x) = barrier (x^2/w^2 - 1)^2`` (minimum at ``-w`` with curvature
    ``k = 8 barrier / w^2``, barrier top at 0); ``w`` is set from each curvature ``k``. The escape time is
    the mean first-passage time from ``-w`` to ``x > 0`` (reflecting wall at ``-2w``), from the solver.

    * SGD-like noise: its strength follows the sharpness of the valley, ``D = delta k`` (the Hessian at the
      minimum; Xie, Sato & Sugiyama 2021), so ``ln tau ~ barrier / (delta k)``: exponential in ``1/k``.
    * Isotropic noise at the matched mean level ``T = delta k_ref`` (default: the geometric mean of the
      curvatures): Kramers' law ``tau ~ (2 pi / sqrt(k |k_b|)) exp(barrier / T)`` depends on ``k`` only
      through the prefactor, polynomially (``|k_b| = k/2`` here, so ``tau ∝ 1/k``).

    Returns one row per curvature: ``k``, ``tau_sgd``, ``tau_isotropic``, and Kramers' and Xie's predictions.
    """
    from ..model.landscapes import Custom
    from ..model.noise import Isotropic
    from ..model.problem import Problem
    from ..solvers.passage import mean_first_passage_time
    from .theory import kramers_rate

    ks = np.asarray(curvatures, dtype=float)
    if np.any(ks <= 0):
        raise ValueError("escape_time_vs_sharpness: curvatures must be positive")
    k_ref = float(np.exp(np.mean(np.log(ks)))) if k_ref is None else float(k_ref)
    rows = []
    for k in ks:
        w = math.sqrt(8.0 * barrier / k)
        land = Custom(
            lambda t, w=w: barrier * ((t[..., 0] / w) ** 2 - 1) ** 2,
            lambda t, w=w: (4 * barrier * t[..., 0] / w**2 * ((t[..., 0] / w) ** 2 - 1))[..., None],
            dim=1,
        )
        grid = Grid([(-2 * w, 0.0, cells)], bc=[("reflecting", "absorbing")])
        tau = {}
        for name, T in (("sgd", delta * k), ("isotropic", delta * k_ref)):
            mfpt = mean_first_passage_time(Problem(grid, land, Isotropic(T)))
            tau[name] = float(mfpt.at(np.array([[-w]]))[0])
        k_b = 4.0 * barrier / w**2  # |L''(0)|
        # Kramers' rate counts crossings of the saddle: the MFPT to the barrier top is half of 1/rate
        rows.append(
            {
                "k": float(k),
                "tau_sgd": tau["sgd"],
                "tau_isotropic": tau["isotropic"],
                "kramers_sgd": 0.5 / kramers_rate(barrier, k, -k_b, delta * k),
                "kramers_isotropic": 0.5 / kramers_rate(barrier, k, -k_b, delta * k_ref),
            }
        )
    return rows
