"""Transient escape from sharp valleys and freezing under a decaying learning rate.

After Yang, Zhang, Ouyang, Tang & Tu, *Transient learning dynamics drive escape from sharp valleys in
stochastic gradient descent*, arXiv:2601.10962 (issue 14, item 3). What is the paper's and what is ours:

* **The paper's** (from its abstract; no full text was at hand): SGD noise reshapes the loss into an effective
  potential that favours flat valleys; early in training the dynamics escapes sharp valleys repeatedly; as the
  learning rate decays, growing effective barriers stop the inter-valley transitions ("transient freezing"),
  and a larger noise delays freezing, so more runs end in the flat valley. The 2D PRL-type setting follows
  Yang, Tang & Tu, PRL 130, 237101 (2023): SGD noise aligned with the Hessian, strength ``~ eta / B``.
* **Ours** (the issue author's model, checked here): the 1D two-valley loss
  ``L = 1/4 (x^2 - 1)^2 (1 + x/2)`` -- a flat valley at ``x = -1`` (``L'' = 1``), a sharp one at ``x = +1``
  (``L'' = 3``), the barrier top at ``x_b = 0.11652`` -- with the SGD-like noise
  ``D = (eta/2) (Delta L''^2 + sigma0^2)``, ``Delta = 1``, ``sigma0^2 = 0.5``, reflecting walls at ``+-1.8``.
  This ``D`` is the continuous limit of the discrete map
  ``x_{k+1} = x_k - eta (L'(x_k) + sqrt(Delta L''^2 + sigma0^2) xi_k)`` (a minibatch gradient whose noise has
  variance ``Delta L''^2 + sigma0^2``) with time ``t = eta * steps``: the drift ``-L'`` carries no ``eta``,
  only ``D`` does, so a schedule ``eta(t)`` multiplies ``D`` by ``g(t) = eta(t) / eta_0``
  (``evolve(..., noise_schedule=g)``). The schedule ``eta(t) = eta_0 / (1 + t/50)`` from ``N(1, 0.05^2)``
  (the sharp valley) to ``t = 600`` is ours as well, and so are the 2D model of :func:`phase_diagram_2d`
  and the freezing time of :func:`freezing_time`.

Exact 1D results (Ito; zero current with reflecting walls): ``D P_ss ~ exp(-Phi)``, ``Phi = int L'/D``, so

    P_ss ~ exp(-U_eff),      U_eff = int L'/D dx + ln D                       (effective potential)

and the mean first-passage time from ``x`` to ``b < x`` with a reflecting wall at ``R > x`` is

    T(x -> b) = int_b^x dy exp(Phi(y)) int_y^R dz exp(-Phi(z)) / D(z)

(mirror image for ``b > x``). These are evaluated by composite Simpson quadrature on a fine grid
(:func:`effective_potential_1d`, :func:`mfpt_1d`), whose error is measured by halving the spacing.

What is here
------------
* the model: :class:`TwoValley1D` (arrays, and ``Custom`` landscape / ``Field`` noise / ``Problem`` objects);
* exact 1D quadratures: :func:`effective_potential_1d`, :func:`stationary_density_1d`, :func:`fraction_below_1d`,
  :func:`mfpt_1d`, :func:`exact_numbers` (the issue's 32.114 / 220.55 / 0.8776, reproduced);
* the transient under ``eta(t)``: :func:`transient_flat_fraction` (``evolve`` with ``noise_schedule``), the
  independent :func:`reference_transient_1d`, particles :func:`particle_flat_fraction` (SDE, Lamperti-transformed
  Euler-Maruyama, or the discrete SGD);
* freezing: :func:`freezing_time_from` (95% of the change), :func:`quasi_static_freezing` (two-state master
  equation with exact MFPT rates), :func:`rate_freezing_time` (relaxation rate against the schedule's rate);
* the continuous limit against the discrete SGD: :func:`continuum_parameter`, :func:`continuum_warning`,
  :func:`escape_by_time` -- with the issue's parameters the SGD is *not* described by its Fokker-Planck limit at any
  ``eta`` where anything escapes (measured; see ``CONTINUUM_LIMIT``);
* the 2D PRL-type model (ours): :class:`TwoValley2D`, :func:`transient_2d`, :func:`relaxation_rates_2d`,
  :func:`phase_diagram_2d` (JSON-able, for the CLI);
* :func:`freezing_headline` and :func:`plot_freezing_headline`.

The grid solves go through the package's own model, solver and particle layers.
"""

from __future__ import annotations

import math

import numpy as np

from ..model.density import Density
from ..model.grid import Grid
from ..model.landscapes import Custom
from ..model.noise import Field
from ..model.problem import Problem
from ..solvers.evolve import evolve
from ..solvers.passage import escape_rate, first_passage_probability

#: the issue's parameters of the 1D model (ours)
DELTA = 1.0
SIGMA0_SQ = 0.5
WALLS = (-1.8, 1.8)
TAU = 50.0
T_END = 600.0
X0, X0_STD = 1.0, 0.05


class TwoValley1D:
    """The 1D two-valley model (ours): ``L = 1/4 (x^2-1)^2 (1 + x/2)``, ``D = (eta/2)(Delta L''^2 + sigma0^2)``.

    Functions of plain arrays: :meth:`loss`, :meth:`grad`, :meth:`curvature`, :meth:`diffusion`; package
    objects: :meth:`landscape` (a ``Custom`` landscape, ``dim=1``), :meth:`noise` (a ``Field`` noise),
    :meth:`problem` (a ``Problem`` on ``[-1.8, 1.8]`` with reflecting walls)."""

    flat_min, sharp_min = -1.0, 1.0

    def __init__(self, delta: float = DELTA, sigma0_sq: float = SIGMA0_SQ, walls=WALLS):
        self.delta, self.sigma0_sq = float(delta), float(sigma0_sq)
        self.walls = (float(walls[0]), float(walls[1]))
        if not (self.delta >= 0 and self.sigma0_sq > 0 and self.walls[0] < -1 and self.walls[1] > 1):
            raise ValueError("TwoValley1D: need delta >= 0, sigma0_sq > 0 and walls beyond both minima (+-1)")

    # --- the model on arrays
    @staticmethod
    def loss(x):
        x = np.asarray(x, dtype=float)
        return 0.25 * (x * x - 1.0) ** 2 * (1.0 + 0.5 * x)

    @staticmethod
    def grad(x):
        x = np.asarray(x, dtype=float)
        return (x * x - 1.0) * x * (1.0 + 0.5 * x) + 0.125 * (x * x - 1.0) ** 2

    @staticmethod
    def curvature(x):
        x = np.asarray(x, dtype=float)
        return (3.0 * x * x - 1.0) * (1.0 + 0.5 * x) + x * (x * x - 1.0)

    @property
    def barrier(self) -> float:
        """The barrier top: the root of ``L'`` between the minima (0.116515...)."""
        from scipy.optimize import brentq

        return float(brentq(self.grad, -0.5, 0.5, xtol=1e-15))

    def diffusion(self, x, eta: float):
        """``D(x) = (eta/2)(Delta L''(x)^2 + sigma0^2)``."""
        return 0.5 * float(eta) * (self.delta * self.curvature(x) ** 2 + self.sigma0_sq)

    # --- package objects (imported lazily: the package's layout is moving)
    def landscape(self):
        return Custom(
            lambda t: self.loss(t[..., 0]), lambda t: self.grad(t), lambda t: self.curvature(t)[..., None], dim=1
        )

    def noise(self, eta: float):
        eta = float(eta)
        return Field(
            lambda t: self.diffusion(t, eta)[..., None], amplitude=lambda t: np.sqrt(2.0 * self.diffusion(t, eta))
        )

    def grid(self, cells: int = 720):
        return Grid([(self.walls[0], self.walls[1], int(cells))], bc="reflecting")

    def problem(self, eta: float, cells: int = 720):
        return Problem(self.grid(cells), self.landscape(), self.noise(eta))

    def params(self) -> dict:
        return {"delta": self.delta, "sigma0_sq": self.sigma0_sq, "walls": list(self.walls)}


# --- exact quadratures ---------------------------------------------------------------------------------------------
def _cumsimpson(y, x):
    from scipy.integrate import cumulative_simpson

    return cumulative_simpson(y, x=x, initial=0.0)


def _fine(lo, hi, n):
    n = int(n) | 1  # odd: Simpson panels
    return np.linspace(lo, hi, n)


def effective_potential_1d(grad, diffusion, lo: float, hi: float, n: int = 200_001):
    """``U_eff(x) = int_lo^x L'(s)/D(s) ds + ln D(x)``, shifted to minimum 0, on ``n`` points of ``[lo, hi]``.

    ``grad`` and ``diffusion`` are callables of arrays (``L'`` and ``D``). ``exp(-U_eff)`` is the stationary
    density of ``dx = -L' dt + sqrt(2D) dW`` (Ito) between reflecting walls. Returns ``(x, U_eff, Phi)`` with
    ``Phi = int L'/D`` (also shifted to minimum 0). Cumulative Simpson: the error is ``O(h^4)``."""
    x = _fine(lo, hi, n)
    D = np.asarray(diffusion(x), dtype=float)
    if np.any(~np.isfinite(D)) or np.any(D <= 0):
        raise ValueError("effective_potential_1d: D must be finite and > 0 on the interval")
    phi = _cumsimpson(np.asarray(grad(x), dtype=float) / D, x)
    phi -= phi.min()
    U = phi + np.log(D)
    return x, U - U.min(), phi


def stationary_density_1d(grad, diffusion, lo, hi, n: int = 200_001):
    """``(x, P_ss)`` with ``P_ss = exp(-U_eff) / Z`` normalised on ``[lo, hi]`` (Simpson)."""
    from scipy.integrate import simpson

    x, U, _ = effective_potential_1d(grad, diffusion, lo, hi, n)
    p = np.exp(-U)
    return x, p / simpson(p, x=x)


def fraction_below_1d(grad, diffusion, lo, hi, cut: float, n: int = 200_001) -> float:
    """Stationary probability of ``x < cut`` (the flat fraction for ``cut`` = the barrier top)."""
    x, p = stationary_density_1d(grad, diffusion, lo, hi, n)
    from scipy.interpolate import CubicSpline

    c = CubicSpline(x[:: max(1, len(x) // 20_000)], p[:: max(1, len(x) // 20_000)]).antiderivative()
    return float((c(cut) - c(lo)) / (c(hi) - c(lo)))


def mfpt_1d(grad, diffusion, lo, hi, start: float, target: float, n: int = 200_001) -> float:
    """Mean first-passage time from ``start`` to ``target`` of ``dx = -L' dt + sqrt(2D) dW`` with a reflecting
    wall on the far side (``hi`` when ``target < start``, ``lo`` otherwise):

        T = int_target^start dy e^{Phi(y)} int_y^hi dz e^{-Phi(z)} / D(z)        (target < start)

    by cumulative Simpson quadrature on ``n`` points of ``[lo, hi]``."""
    if not (lo <= min(start, target) and max(start, target) <= hi) or start == target:
        raise ValueError("mfpt_1d: start and target must be distinct points inside [lo, hi]")
    x = _fine(lo, hi, n)
    D = np.asarray(diffusion(x), dtype=float)
    phi = _cumsimpson(np.asarray(grad(x), dtype=float) / D, x)
    shift = phi.max()  # e^{Phi - shift} e^{shift - Phi}: no overflow
    w = np.exp(-(phi - shift)) / D
    c = _cumsimpson(w, x)
    inner = (c[-1] - c) if target < start else c  # int_y^hi  or  int_lo^y
    outer = np.exp(phi - shift) * inner
    a, b = sorted((start, target))
    from scipy.interpolate import CubicSpline

    with np.errstate(over="ignore", invalid="ignore"):
        F = CubicSpline(x, _cumsimpson(outer, x))
        T = float(F(b) - F(a))
    if np.isfinite(T) and T > 0:
        return T
    return _mfpt_log(x, phi, D, a, b, target < start)


def _mfpt_log(x, phi, D, a, b, inner_right: bool) -> float:
    """The MFPT double integral by trapezoids in logarithms (``np.logaddexp.accumulate``), for noise so weak that
    ``exp(+-Phi)`` overflow; ``inf`` when the time itself exceeds the floating-point range."""
    h = np.diff(x)
    lw = -phi - np.log(D)
    panel = np.log(h / 2) + np.logaddexp(lw[:-1], lw[1:])
    if inner_right:  # log int_y^hi
        logI = np.append(np.logaddexp.accumulate(panel[::-1])[::-1], -np.inf)
    else:  # log int_lo^y
        logI = np.insert(np.logaddexp.accumulate(panel), 0, -np.inf)
    lo_ = phi + logI
    sel = (x >= a) & (x <= b)
    xs, ls = x[sel], lo_[sel]
    logT = np.logaddexp.reduce(np.log(np.diff(xs) / 2) + np.logaddexp(ls[:-1], ls[1:]))
    return float(np.exp(logT)) if logT < 709 else float("inf")


# --- the model's exact numbers ----------------------------------------------------------------------------------------
def exact_numbers(eta: float = 0.2, model: TwoValley1D | None = None, n: int = 200_001) -> dict:
    """MFPTs sharp -> flat (``+1 -> -1``) and flat -> sharp, and the equilibrium flat fraction (``x < x_b``), by
    quadrature, with the quadrature error estimated from ``n`` against ``n/2`` points."""
    m = model or TwoValley1D()
    gr, Df = m.grad, (lambda x: m.diffusion(x, eta))
    lo, hi = m.walls
    xb = m.barrier

    def numbers(k):
        return (
            mfpt_1d(gr, Df, lo, hi, 1.0, -1.0, k),
            mfpt_1d(gr, Df, lo, hi, -1.0, 1.0, k),
            fraction_below_1d(gr, Df, lo, hi, xb, k),
        )

    fine, coarse = numbers(n), numbers(n // 2)
    return {
        "eta": float(eta),
        "mfpt_sharp_to_flat": fine[0],
        "mfpt_flat_to_sharp": fine[1],
        "flat_fraction_eq": fine[2],
        "barrier": xb,
        "quadrature_error": float(max(abs(a - b) / abs(a) for a, b in zip(fine, coarse))),
    }


# --- the transient: a decaying learning rate ------------------------------------------------------------------------
def learning_rate_schedule(tau: float = TAU):
    """``g(t) = eta(t) / eta_0 = 1 / (1 + t / tau)`` (ours): the factor multiplying ``D``."""
    tau = float(tau)
    return lambda t: 1.0 / (1.0 + t / tau)


def _fraction_below(grid, values, cut: float) -> float:
    """Mass of a 1D cell density left of ``cut`` (the cell holding ``cut`` split linearly)."""
    edges = grid.edges[0]
    h = edges[1] - edges[0]
    inside = np.clip((cut - edges[:-1]) / h, 0.0, 1.0)
    return float(np.sum(values * inside) * h / (np.sum(values) * h))


def transient_flat_fraction(
    eta0: float,
    *,
    t_end: float = T_END,
    tau: float = TAU,
    cells: int = 720,
    dt: float = 1.0,
    n_save: int = 61,
    schedule_hold: int = 1,
    model: TwoValley1D | None = None,
    warn: bool = True,
) -> dict:
    """Flat fraction ``P(x < x_b, t)`` under ``eta(t) = eta0 / (1 + t/tau)`` from ``N(1, 0.05^2)``, by
    ``evolve`` (TR-BDF2) with ``noise_schedule = 1/(1 + t/tau)`` on ``cells`` cells of ``[-1.8, 1.8]``.
    Measured errors at ``eta0 = 0.2`` (final 0.47358 extrapolated): time step ``dt`` 2 / 1 / 0.5 differ by
    6.8e-5 / 1.5e-5 (second order); 360 against 720 cells by 2.6e-4, 720 against 1440 by 6.4e-5 (second
    order in space); ``schedule_hold`` k holds ``g`` over k steps (k dt = 2: 8e-5, 5: 7.7e-4). Warns
    (:func:`continuum_warning`) where ``eta0`` is too large for the continuous limit to describe the discrete SGD.
    Returns ``times``, ``flat_fraction`` at the saved times, ``final``, ``mass_error``, ``seconds``."""
    m = model or TwoValley1D()
    if warn:
        continuum_warning(eta0, m)
    prob = m.problem(eta0, cells)
    p0 = Density.gaussian(prob.grid, mean=[X0], cov=[[X0_STD**2]])
    tr = evolve(
        prob, p0, t_end, n_save=n_save, dt=dt, noise_schedule=learning_rate_schedule(tau), schedule_hold=schedule_hold
    )
    xb = m.barrier
    frac = np.array([_fraction_below(prob.grid, v, xb) for v in tr.values])
    return {
        "eta0": float(eta0),
        "times": tr.times.tolist(),
        "flat_fraction": frac.tolist(),
        "final": float(frac[-1]),
        "mass_error": float(np.max(np.abs(tr.mass - 1.0))),
        "cells": int(cells),
        "dt": float(dt),
        "seconds": tr.info["seconds"],
    }


def reference_transient_1d(
    eta0: float,
    *,
    t_end: float = T_END,
    tau: float = TAU,
    cells: int = 2000,
    rtol: float = 1e-9,
    model: TwoValley1D | None = None,
) -> float:
    """The final flat fraction of :func:`transient_flat_fraction` by an independent solve (no package code):
    second-order central finite volumes, ``J = -L' P - d(DP)/dx`` at the faces (zero at the walls), so that
    ``dP/dt = (A_drift + g(t) A_diffusion) P`` is affine in ``g``, integrated by scipy's adaptive BDF with
    tolerance ``rtol``. Central differences need cell Peclet numbers below 2 (``cells >= 1500`` here)."""
    import scipy.sparse as sp
    from scipy.integrate import solve_ivp

    m = model or TwoValley1D()
    lo, hi = m.walls
    h = (hi - lo) / cells
    xc = lo + (np.arange(cells) + 0.5) * h
    xf = lo + np.arange(1, cells) * h  # interior faces
    a = -m.grad(xf)
    Dc = m.diffusion(xc, eta0)
    # flux through face f between cells f and f+1: a_f (P_f + P_{f+1})/2 - (D_{f+1} P_{f+1} - D_f P_f)/h
    f = np.arange(cells - 1)
    Fd = sp.csr_matrix((np.r_[a / 2, a / 2], (np.r_[f, f], np.r_[f, f + 1])), shape=(cells - 1, cells))
    Fk = sp.csr_matrix((np.r_[Dc[f] / h, -Dc[f + 1] / h], (np.r_[f, f], np.r_[f, f + 1])), shape=(cells - 1, cells))
    div = sp.csr_matrix(
        (np.r_[-np.ones(cells - 1), np.ones(cells - 1)] / h, (np.r_[f, f + 1], np.r_[f, f])), shape=(cells, cells - 1)
    )  # dP_i/dt = (J_{i-1/2} - J_{i+1/2}) / h
    Ad, Ak = (div @ Fd).tocsr(), (div @ Fk).tocsr()
    g = learning_rate_schedule(tau)
    p0 = np.exp(-0.5 * ((xc - X0) / X0_STD) ** 2)
    p0 /= p0.sum() * h
    sol = solve_ivp(
        lambda t, p: Ad @ p + g(t) * (Ak @ p),
        (0.0, t_end),
        p0,
        method="BDF",
        rtol=rtol,
        atol=rtol * 1e-3,
        jac=lambda t, p: Ad + g(t) * Ak,
    )
    p = sol.y[:, -1]
    xb = m.barrier
    inside = np.clip((xb - (xc - h / 2)) / h, 0.0, 1.0)
    return float(np.sum(p * inside) / np.sum(p))


def _fold(x, lo, hi):
    """Mirror reflection at both walls for jumps of any length (a path reflected as often as it crosses)."""
    w = hi - lo
    y = np.mod(x - lo, 2 * w)
    return lo + np.where(y > w, 2 * w - y, y)


def _third_derivative(x):
    x = np.asarray(x, dtype=float)
    return 6.0 * x * (1.0 + 0.5 * x) + 0.5 * (3.0 * x * x - 1.0) + 3.0 * x * x - 1.0


class _Lamperti:
    """The SDE ``dx = -L' dt + sqrt(g(t)) b(x) dW``, ``b = sqrt(2 D_eta0)``, in ``y = int dx / b`` (Ito's formula):
    ``dy = (-L'/b - g b'/2) dt + sqrt(g) dW`` -- additive noise, so Euler-Maruyama in ``y`` has strong order 1
    and none of the bias of a step across a fast-changing ``D``. Tabulated on ``n`` uniform points of ``y``
    (linear interpolation); reflecting walls in ``x`` are reflecting walls in ``y`` (the map is monotone)."""

    def __init__(self, m: TwoValley1D, eta0: float, n: int = 8001):
        xs = np.linspace(m.walls[0], m.walls[1], 64001)
        b = np.sqrt(2.0 * m.diffusion(xs, eta0))
        db = eta0 * m.delta * m.curvature(xs) * _third_derivative(xs) / b
        ys = _cumsimpson(1.0 / b, xs)
        self.Y = float(ys[-1])
        self.y = np.linspace(0.0, self.Y, n)
        self.x = np.interp(self.y, ys, xs)
        self.a = np.interp(self.y, ys, -m.grad(xs) / b)
        self.c = np.interp(self.y, ys, -0.5 * db)
        self.inv = (n - 1) / self.Y
        self.da, self.dc = np.diff(self.a, append=self.a[-1]), np.diff(self.c, append=self.c[-1])

    def to_y(self, x):
        return np.interp(x, self.x, self.y)

    def to_x(self, y):
        return np.interp(y, self.y, self.x)

    def drift(self, y, g):
        u = y * self.inv
        i = np.minimum(u.astype(np.int64), self.y.size - 1)
        f = u - i
        return self.a[i] + f * self.da[i] + g * (self.c[i] + f * self.dc[i])


def particle_flat_fraction(
    eta0: float,
    *,
    n_particles: int = 4000,
    dt: float | None = 0.02,
    t_end: float = T_END,
    tau: float = TAU,
    seed: int = 0,
    model: TwoValley1D | None = None,
    schedule: bool = True,
) -> dict:
    """Flat fraction at ``t_end`` from particles started at ``N(1, 0.05^2)``, under ``eta(t) = eta0 g(t)``.

    ``dt`` a number: the SDE ``dx = -L' dt + sqrt(2 g(t) D_eta0(x)) dW`` by Euler-Maruyama with step ``dt`` in the
    Lamperti variable ``y = int dx / sqrt(2 D_eta0)`` (additive noise; :class:`_Lamperti`). Plain
    Euler-Maruyama in ``x`` (what ``simulate`` does) is useless here at affordable steps: ``D`` changes by
    its own size over one step in the sharp valley (``D' = 7.2``, ``D = 0.95`` at ``x = 1``, ``eta = 0.2``);
    measured final flat fraction 1.0, 0.98, 0.79 at ``dt`` = 0.05, 0.02, 0.01 against 0.4736, while the
    transformed scheme gives 0.489, 0.470, 0.471 (4000 particles, +-0.008).
    ``dt=None``: the discrete SGD of the model (ours), ``x_{k+1} = x_k - eta_k (L'(x_k) + sqrt(Delta L''^2 +
    sigma0^2) xi_k)`` with ``eta_k = eta0 g(t_k)``, ``t_{k+1} = t_k + eta_k`` (the last step shortened to end at
    ``t_end``): plain Euler-Maruyama in ``x`` with ``dt = eta_k``, since ``2 D_{eta_k} eta_k = eta_k^2 (Delta
    L''^2 + sigma0^2)``. Walls at ``+-1.8`` mirror the particles however far they jump (``D`` reaches 42 at the
    wall at ``eta = 0.2``). ``schedule=False``: a constant rate ``eta0``. Vectorised numpy, seeded.
    Returns the fraction left of ``x_b``, its binomial standard error and the number of steps."""
    m = model or TwoValley1D()
    rng = np.random.default_rng(seed)
    n = int(n_particles)
    x = _fold(rng.normal(X0, X0_STD, size=n), *m.walls)
    g = learning_rate_schedule(tau) if schedule else (lambda t: 1.0)
    t, steps = 0.0, 0
    if dt is None:
        while t < t_end * (1 - 1e-12):
            h = min(eta0 * g(t), t_end - t)
            amp = h * np.sqrt(m.delta * m.curvature(x) ** 2 + m.sigma0_sq)
            x = _fold(x - h * m.grad(x) + amp * rng.standard_normal(n), *m.walls)
            t += h
            steps += 1
    else:
        lam = _Lamperti(m, eta0)
        y = lam.to_y(x)
        while t < t_end * (1 - 1e-12):
            h = min(float(dt), t_end - t)
            gk = g(t)
            y = _fold(y + h * lam.drift(y, gk) + math.sqrt(gk * h) * rng.standard_normal(n), 0.0, lam.Y)
            t += h
            steps += 1
        x = lam.to_x(y)
    f = float(np.mean(x < m.barrier))
    return {
        "eta0": float(eta0),
        "final": f,
        "stderr": math.sqrt(f * (1 - f) / n),
        "n_particles": n,
        "dt": None if dt is None else float(dt),
        "steps": steps,
        "seed": int(seed),
        "method": "sgd" if dt is None else "sde",
    }


# --- where the continuous limit fails --------------------------------------------------------------------------------
#: above it the continuous limit is not the discrete SGD (measured, escape_by_time at t = 50 from the sharp valley:
#: eps = 0.47 (eta 0.02): SGD 5e-4 +- 5e-4 against 6e-11; eps = 1.17 (eta 0.05): 0.73 against 6e-4; eps >= 2.3: all
#: SGD paths escape while the continuum gives 0.11-0.98; at eps = 0.23 (eta 0.01) both are 0)
CONTINUUM_LIMIT = 0.2


def continuum_warning(eta: float, model: TwoValley1D | None = None, stacklevel: int = 3) -> float:
    """Warn (RuntimeWarning) when :func:`continuum_parameter` exceeds ``CONTINUUM_LIMIT``: the Fokker-Planck
    answer then describes the SDE, not the discrete SGD it stands for. Returns the parameter."""
    eps = continuum_parameter(eta, model)
    if eps > CONTINUUM_LIMIT:
        import warnings

        warnings.warn(
            f"eta = {eta:g} is too large for the continuous limit of this SGD: D changes by {eps:.2g} of "
            f"itself across one step's noise in the sharp valley (limit {CONTINUUM_LIMIT}); the discrete "
            "SGD escapes the sharp valley far faster (fokkerplanck.sgd.freezing.escape_by_time)",
            RuntimeWarning,
            stacklevel=stacklevel,
        )
    return eps


def continuum_parameter(eta: float, model: TwoValley1D | None = None, x: float = 1.0) -> float:
    """``eps = |dD/dx| sqrt(2 D eta) / D`` at ``x`` (default the sharp minimum): the relative change of ``D``
    across one SGD step's noise, ``eta |C'| / sqrt(C)`` with ``C = Delta L''^2 + sigma0^2`` (``23.4 eta`` at the
    sharp minimum, 0 at the flat one, where ``L''' = 0``). The continuous limit needs ``eps << 1``; the
    measured gap of the discrete SGD is in :func:`discrete_vs_continuous`."""
    m = model or TwoValley1D()
    c = m.delta * m.curvature(x) ** 2 + m.sigma0_sq
    dc = 2.0 * m.delta * m.curvature(x) * _third_derivative(x)
    return float(eta * abs(dc) / math.sqrt(c))


def escape_by_time(
    eta: float,
    t: float = 50.0,
    *,
    n_particles: int = 2000,
    seed: int = 0,
    cells: int = 720,
    model: TwoValley1D | None = None,
) -> dict:
    """Probability of reaching the flat minimum (``x <= -1``) by time ``t`` from ``N(1, 0.05^2)`` at a constant
    learning rate ``eta``: the continuous limit (``first_passage_probability``, ``cells`` cells) and
    the model's discrete SGD (``n_particles``, a path counts once it has stepped to ``x <= -1``)."""

    m = model or TwoValley1D()
    prob = m.problem(eta, cells)
    p0 = Density.gaussian(prob.grid, mean=[X0], cov=[[X0_STD**2]])
    cont = first_passage_probability(prob, p0, lambda th: th[..., 0] <= -1.0, t, n_save=2, dt=min(0.5, t / 20))
    rng = np.random.default_rng(seed)
    n = int(n_particles)
    x = _fold(rng.normal(X0, X0_STD, size=n), *m.walls)
    hit = np.zeros(n, dtype=bool)
    steps = round(t / eta)
    for _ in range(steps):
        x = _fold(
            x - eta * (m.grad(x) + np.sqrt(m.delta * m.curvature(x) ** 2 + m.sigma0_sq) * rng.standard_normal(n)),
            *m.walls,
        )
        hit |= x <= -1.0
    f = float(hit.mean())
    return {
        "eta": float(eta),
        "t": float(t),
        "continuous": float(cont["probability"][-1]),
        "sgd": f,
        "sgd_stderr": math.sqrt(max(f * (1 - f), 1.0 / n) / n),
        "continuum_parameter": continuum_parameter(eta, m),
        "sgd_steps": steps,
    }


# --- freezing ---------------------------------------------------------------------------------------------------------
def freezing_time_from(times, fraction, level: float = 0.95) -> float:
    """The time at which ``fraction`` first covers ``level`` of its total change ``fraction[-1] - fraction[0]``
    (linear interpolation between saved times): after it the valley populations hardly move -- frozen."""
    t, f = np.asarray(times, dtype=float), np.asarray(fraction, dtype=float)
    goal = f[0] + level * (f[-1] - f[0])
    sign = 1.0 if f[-1] >= f[0] else -1.0
    k = int(np.argmax(sign * (f - goal) >= 0))
    if k == 0:
        return float(t[0])
    return float(t[k - 1] + (goal - f[k - 1]) * (t[k] - t[k - 1]) / (f[k] - f[k - 1]))


def rate_freezing_time(times, rate, tau: float = TAU) -> float:
    """The time at which the inter-valley relaxation rate ``k(t) = k_sf + k_fs`` of the noise frozen at ``t`` falls
    to the schedule's own rate of change, ``|d ln eta / dt| = 1 / (t + tau)`` (ours; the adiabatic-freezing
    criterion ``k (t + tau) = 1``): before it the populations follow the slowly changing equilibrium, after it
    they stop. ``0`` when ``k tau <= 1`` already at the start (frozen from the outset: only the initial fast escape
    moves mass); ``times[-1]`` when ``k`` never falls that low. Log-linear interpolation between the times."""
    t, k = np.asarray(times, dtype=float), np.asarray(rate, dtype=float)
    r = np.log(np.maximum(k, 1e-300) * (t + tau))
    if r[0] <= 0:
        return 0.0
    below = np.flatnonzero(r <= 0)
    if below.size == 0:
        return float(t[-1])
    i = below[0]
    return float(t[i - 1] + r[i - 1] * (t[i] - t[i - 1]) / (r[i - 1] - r[i]))


def quasi_static_freezing(
    eta0: float,
    *,
    t_end: float = T_END,
    tau: float = TAU,
    n_times: int = 121,
    n: int = 20_001,
    level: float = 0.95,
    model: TwoValley1D | None = None,
) -> dict:
    """Two-state (Kramers-like) reading of freezing (ours): the rates ``k_sf(t) = 1 / T(+1 -> -1)`` and
    ``k_fs(t) = 1 / T(-1 -> +1)`` of the frozen-in-time noise ``eta(t)`` (exact MFPT quadratures), the master
    equation ``dp_flat/dt = k_sf (1 - p_flat) - k_fs p_flat`` from ``p_flat = 0``, and the freezing time ``t_f``
    by which ``level`` of all the transition attempts ``int_0^t_end (k_sf + k_fs) ds`` have happened (the
    counterpart of :func:`freezing_time_from`), and ``t_freeze_rate`` by :func:`rate_freezing_time`. Returns
    ``times``, ``k_sf``, ``k_fs``, ``p_flat`` (at ``times``), ``final``, ``t_freeze``."""
    from scipy.integrate import cumulative_trapezoid, solve_ivp

    m = model or TwoValley1D()
    g = learning_rate_schedule(tau)
    ts = np.linspace(0.0, t_end, int(n_times))
    lo, hi = m.walls
    ksf, kfs = np.empty(ts.size), np.empty(ts.size)
    for i, t in enumerate(ts):
        e = eta0 * g(t)

        def Df(x, e=e):
            return m.diffusion(x, e)

        ksf[i] = 1.0 / mfpt_1d(m.grad, Df, lo, hi, 1.0, -1.0, n)
        kfs[i] = 1.0 / mfpt_1d(m.grad, Df, lo, hi, -1.0, 1.0, n)
    lsf, lfs = np.log(np.maximum(ksf, 1e-300)), np.log(np.maximum(kfs, 1e-300))  # rates span decades: log-interpolate

    def rhs(t, p):
        a, b = np.exp(np.interp(t, ts, lsf)), np.exp(np.interp(t, ts, lfs))
        return a * (1.0 - p) - b * p

    sol = solve_ivp(rhs, (0.0, t_end), [0.0], t_eval=ts, rtol=1e-8, atol=1e-11, method="LSODA")
    done = cumulative_trapezoid(ksf + kfs, ts, initial=0.0)
    t_f = float(np.interp(level * done[-1], done, ts))
    return {
        "eta0": float(eta0),
        "times": ts.tolist(),
        "k_sf": ksf.tolist(),
        "k_fs": kfs.tolist(),
        "p_flat": sol.y[0].tolist(),
        "final": float(sol.y[0][-1]),
        "t_freeze": t_f,
        "t_freeze_rate": rate_freezing_time(ts, ksf + kfs, tau),
        "transitions_expected": float(done[-1]),
    }


# --- the headline ----------------------------------------------------------------------------------------------------
def freezing_headline(quick: bool = False, seed: int = 0) -> dict:
    """The numbers of issue 14 item 3 on the 1D two-valley model (JSON-able): the exact MFPTs and equilibrium flat
    fraction at ``eta = 0.2`` (walls +-1.8 and +-3), the final flat fraction under ``eta(t) = eta0/(1 + t/50)``
    against ``eta0`` (Fokker-Planck, with its time-step error measured by halving ``dt``, an independent solve and
    the quasi-static two-state estimate), the freezing times, the SDE particle check at ``eta0 = 0.2`` and the
    discrete SGD against the continuous limit. ``quick``: coarser grids and fewer particles (seconds)."""
    import time
    import warnings

    t0 = time.perf_counter()
    cells, dt = (360, 4.0) if quick else (720, 1.0)
    etas = [0.1, 0.2, 0.3] if quick else [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4]
    out = {
        "model": {
            "loss": "1/4 (x^2-1)^2 (1+x/2)",
            "noise": "D = (eta/2)(Delta L''^2 + sigma0^2)",
            **TwoValley1D().params(),
            "schedule": "eta(t) = eta0 / (1 + t/50)",
            "t_end": T_END,
            "start": "N(1, 0.05^2)",
            "source": "ours (issue 14 item 3), after arXiv:2601.10962",
        },
        "quick": bool(quick),
        "seed": int(seed),
        "cells": cells,
        "dt": dt,
    }
    q = 20_001 if quick else 200_001
    out["exact"] = exact_numbers(0.2, n=q)
    wide = exact_numbers(0.2, TwoValley1D(walls=(-3.0, 3.0)), n=q)
    out["exact_walls_3"] = {k: wide[k] for k in ("mfpt_sharp_to_flat", "mfpt_flat_to_sharp", "flat_fraction_eq")}
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the continuum warning: recorded per row instead
        for e in etas:
            r = transient_flat_fraction(e, cells=cells, dt=dt, n_save=61)
            qs = quasi_static_freezing(e, n_times=21 if quick else 121, n=q // 10)
            rows.append(
                {
                    "eta0": e,
                    "final": r["final"],
                    "quasi_static_final": qs["final"],
                    "t_freeze": freezing_time_from(r["times"], r["flat_fraction"]),
                    "t_freeze_quasi_static": qs["t_freeze"],
                    "t_freeze_rate": qs["t_freeze_rate"],
                    "mass_error": r["mass_error"],
                    "continuum_parameter": continuum_parameter(e),
                    "times": r["times"],
                    "flat_fraction": r["flat_fraction"],
                }
            )
        half = transient_flat_fraction(0.2, cells=cells, dt=dt / 2, n_save=2)["final"]
    base = next(r for r in rows if r["eta0"] == 0.2)["final"]
    out["transient"] = rows
    out["time_step_error_eta0_0.2"] = {"dt": dt, "final": base, "final_half_dt": half, "difference": abs(base - half)}
    out["reference_solve_eta0_0.2"] = reference_transient_1d(0.2, cells=1500 if quick else 3000)
    n_p, dt_p = (600, 0.05) if quick else (4000, 0.02)
    out["particles_eta0_0.2"] = particle_flat_fraction(0.2, n_particles=n_p, dt=dt_p, seed=seed)
    out["sgd_eta0_0.2"] = particle_flat_fraction(0.2, n_particles=200 if quick else 2000, dt=None, seed=seed)
    out["escape_by_t50"] = [
        escape_by_time(e, 50.0, n_particles=200 if quick else 2000, seed=seed, cells=cells)
        for e in ((0.05, 0.2) if quick else (0.01, 0.02, 0.05, 0.1, 0.2, 0.3))
    ]
    out["continuum_limit"] = CONTINUUM_LIMIT
    x, U, _ = effective_potential_1d(TwoValley1D.grad, lambda x: TwoValley1D().diffusion(x, 0.2), *WALLS, 1801)
    out["effective_potential_eta_0.2"] = {"x": x[::10].tolist(), "U_eff": U[::10].tolist()}
    out["seconds"] = time.perf_counter() - t0
    return out


def plot_freezing_headline(result: dict, path) -> str:
    """A 2 x 2 PNG of :func:`freezing_headline`: ``L`` and ``U_eff`` at ``eta = 0.2``; the flat fraction against
    time for each ``eta0``; the final flat fraction against ``eta0`` (Fokker-Planck, quasi-static two-state,
    SDE particles, discrete SGD); the escape probability by ``t = 50``, continuous against discrete SGD."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(9, 7))
    ue = result["effective_potential_eta_0.2"]
    x = np.asarray(ue["x"])
    ax[0, 0].plot(x, TwoValley1D.loss(x) / 0.1, label="L / 0.1")
    ax[0, 0].plot(x, ue["U_eff"], label=r"$U_{eff}$ ($\eta$ = 0.2)")
    ax[0, 0].axvline(result["exact"]["barrier"], color="k", lw=0.5)
    ax[0, 0].set(xlabel="x", ylim=(-0.5, 12), title="landscape and effective potential")
    ax[0, 0].legend(fontsize=8)
    for r in result["transient"]:
        ax[0, 1].plot(r["times"], r["flat_fraction"], label=f"$\\eta_0$ = {r['eta0']:g}")
    ax[0, 1].set(xlabel="t", ylabel="flat fraction", title=r"$\eta(t) = \eta_0/(1+t/50)$ from x = 1")
    ax[0, 1].legend(fontsize=7)
    e = [r["eta0"] for r in result["transient"]]
    ax[1, 0].plot(e, [r["final"] for r in result["transient"]], "o-", label="Fokker-Planck")
    ax[1, 0].plot(e, [r["quasi_static_final"] for r in result["transient"]], "s--", label="two-state (MFPT rates)")
    p = result["particles_eta0_0.2"]
    ax[1, 0].errorbar([0.2], [p["final"]], [2 * p["stderr"]], fmt="k^", label="SDE particles")
    ax[1, 0].plot([0.2], [result["sgd_eta0_0.2"]["final"]], "rv", label="discrete SGD")
    ax[1, 0].set(xlabel=r"$\eta_0$", ylabel="final flat fraction (t = 600)")
    ax[1, 0].legend(fontsize=7)
    esc = result["escape_by_t50"]
    ax[1, 1].semilogy([r["eta"] for r in esc], [max(r["continuous"], 1e-16) for r in esc], "o-", label="continuous")
    ax[1, 1].semilogy([r["eta"] for r in esc], [max(r["sgd"], 1e-4) for r in esc], "rv-", label="discrete SGD")
    ax[1, 1].set(xlabel=r"$\eta$ (constant)", ylabel="P(reach x = -1 by t = 50)", title="where the continuum fails")
    ax[1, 1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)


# --- the 2D PRL-type version (ours) -----------------------------------------------------------------------------------
class TwoValley2D:
    """A 2D two-valley model in the spirit of the PRL's degenerate valley (ours): the sharpness of each valley lives in
    a transverse direction ``y``,

        L(x, y) = 1/4 (x^2 - 1)^2 + 1/2 lambda(x) y^2,      lambda(x) = 2 + x,

    equal minima at ``x = -1`` (flat, ``lambda = 1``) and ``x = +1`` (sharp, ``lambda = 3``) -- the curvatures of the
    1D model -- a barrier at ``x = 0``, and Hessian-aligned minibatch noise (PRL: ``C ~ H^2``, strength ``eta / B``)

        D = (eta / 2B) (Delta H^2 + sigma0^2 I).

    The preference for the flat valley comes here only from the noise (``L`` is symmetric in the valley floors):
    ``<y^2> ~ D_yy / lambda`` grows with ``lambda``, an entropic / SGD loss ``L_SGD`` that raises the sharp valley."""

    def __init__(self, delta: float = DELTA, sigma0_sq: float = SIGMA0_SQ, box=((-1.8, 1.8), (-3.0, 3.0))):
        self.delta, self.sigma0_sq = float(delta), float(sigma0_sq)
        self.box = tuple(tuple(map(float, b)) for b in box)

    @staticmethod
    def loss(t):
        x, y = t[..., 0], t[..., 1]
        return 0.25 * (x * x - 1.0) ** 2 + 0.5 * (2.0 + x) * y * y

    @staticmethod
    def grad(t):
        x, y = t[..., 0], t[..., 1]
        return np.stack([x * (x * x - 1.0) + 0.5 * y * y, (2.0 + x) * y], axis=-1)

    @staticmethod
    def hessian(t):
        x, y = t[..., 0], t[..., 1]
        H = np.empty(t.shape[:-1] + (2, 2))
        H[..., 0, 0] = 3.0 * x * x - 1.0
        H[..., 0, 1] = H[..., 1, 0] = y
        H[..., 1, 1] = 2.0 + x
        return H

    def diffusion(self, t, eta: float, batch: float = 1.0):
        H = self.hessian(np.asarray(t, dtype=float))
        return (0.5 * eta / batch) * (self.delta * H @ H + self.sigma0_sq * np.eye(2))

    def continuum_parameter(self, eta: float, batch: float = 1.0, at=(1.0, 0.0)) -> float:
        """``max_i |d D_ii / dx| sqrt(2 D_ii eta) / D_ii`` at the sharp minimum: as for the 1D model
        (:func:`continuum_parameter`), the relative change of the noise across one discrete step (``dt = eta``);
        ``11.3 eta / sqrt(B)`` here (the ``x`` entry)."""
        p = np.array([at], dtype=float)
        h = 1e-6
        dp, dm = p.copy(), p.copy()
        dp[0, 0] += h
        dm[0, 0] -= h
        D = np.diagonal(self.diffusion(p, eta, batch)[0])
        dD = (np.diagonal(self.diffusion(dp, eta, batch)[0]) - np.diagonal(self.diffusion(dm, eta, batch)[0])) / (2 * h)
        return float(np.max(np.abs(dD) * np.sqrt(2.0 * D * eta) / D))

    def problem(self, eta: float, batch: float = 1.0, nx: int = 120, ny: int = 48):
        grid = Grid([(*self.box[0], int(nx)), (*self.box[1], int(ny))], bc="reflecting")
        land = Custom(self.loss, self.grad, self.hessian, dim=2)
        eta, batch = float(eta), float(batch)
        return Problem(grid, land, Field(lambda t: self.diffusion(t, eta, batch)))


def transient_2d(
    eta0: float,
    batch: float = 1.0,
    *,
    nx: int = 120,
    ny: int = 48,
    dt: float = 2.0,
    t_end: float = T_END,
    tau: float = TAU,
    n_save: int = 61,
    model: TwoValley2D | None = None,
) -> dict:
    """Flat-valley fraction ``P(x < 0, t)`` of the 2D model under ``eta(t) = eta0 / (1 + t/tau)`` from
    ``N((1, 0), 0.05^2 I)`` by ``evolve`` with a noise schedule; its final value and freezing time."""
    m = model or TwoValley2D()
    prob = m.problem(eta0, batch, nx, ny)
    p0 = Density.gaussian(prob.grid, mean=[X0, 0.0], cov=np.diag([X0_STD**2, X0_STD**2]))
    import warnings

    with warnings.catch_warnings():  # a scaled cross-diffusion is reported in the result instead
        warnings.simplefilter("ignore", RuntimeWarning)
        tr = evolve(prob, p0, t_end, n_save=n_save, dt=dt, noise_schedule=learning_rate_schedule(tau))
    px = tr.values.sum(axis=2) * prob.grid.spacing[1]  # x-marginals at the saved times
    frac = np.array([_fraction_below(_axis_grid(prob.grid), v, 0.0) for v in px])
    return {
        "eta0": float(eta0),
        "batch": float(batch),
        "times": tr.times.tolist(),
        "flat_fraction": frac.tolist(),
        "final": float(frac[-1]),
        "t_freeze": freezing_time_from(tr.times, frac),
        "mass_error": float(np.max(np.abs(tr.mass - 1.0))),
        "seconds": tr.info["seconds"],
        "cross_diffusion_shrunk_cells": int(tr.generator.info["cross_diffusion_shrunk_cells"]),
    }


def _axis_grid(grid):
    lo, hi = grid.axes[0][0], grid.axes[0][1]
    return Grid([(lo, hi, grid.shape[0])], bc="reflecting")


def relaxation_rates_2d(
    eta0: float,
    batch: float = 1.0,
    times=None,
    *,
    nx: int = 48,
    ny: int = 20,
    tau: float = TAU,
    model: TwoValley2D | None = None,
) -> dict:
    """Escape rates of the 2D model with the noise frozen at ``eta(t)``: ``k_sf`` from the sharp half (``x > 0``)
    into ``x < 0`` and ``k_fs`` back, by ``escape_rate`` (slowest decay of the mass outside the target) at each
    of ``times`` (default 13 points on [0, 600]); and the freezing time :func:`rate_freezing_time`."""
    import warnings

    m = model or TwoValley2D()
    ts = np.linspace(0.0, T_END, 13) if times is None else np.asarray(times, dtype=float)
    g = learning_rate_schedule(tau)
    ksf, kfs = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for t in ts:
            prob = m.problem(eta0 * g(t), batch, nx, ny)
            ksf.append(escape_rate(prob, target=lambda th: th[..., 0] < 0.0))
            kfs.append(escape_rate(prob, target=lambda th: th[..., 0] > 0.0))
    ksf, kfs = np.array(ksf), np.array(kfs)
    return {
        "times": ts.tolist(),
        "k_sf": ksf.tolist(),
        "k_fs": kfs.tolist(),
        "t_freeze_rate": rate_freezing_time(ts, ksf + kfs, tau),
    }


def phase_diagram_2d(
    etas=(0.1, 0.2, 0.3),
    batches=(1, 2, 4),
    *,
    nx: int = 120,
    ny: int = 48,
    dt: float = 2.0,
    t_end: float = T_END,
    tau: float = TAU,
    model: TwoValley2D | None = None,
) -> dict:
    """Final flat-valley fraction and freezing time of the 2D model over ``(eta0, B)`` (JSON-able): ``flat_fraction``,
    ``t_freeze`` (95% of the change, :func:`freezing_time_from`) and ``t_freeze_rate`` (relaxation rate against the
    schedule's rate, :func:`relaxation_rates_2d` on a grid of half the cells) as ``[i][j]`` for ``etas[i]``,
    ``batches[j]``; ``relaxation_rate_t0``: ``k_sf + k_fs`` at ``t = 0``; ``discrete_stable``: ``eta0 lambda_max <
    2`` at
    the sharp minimum (``lambda_max = 3``), beyond which the discrete SGD leaves the valley deterministically;
    ``continuum_parameter`` (:meth:`TwoValley2D.continuum_parameter`): above ``continuum_limit`` the answers describe
    the SDE, not the discrete SGD.

    In the continuous limit ``eta0`` and ``B`` enter only through ``D ~ eta0 / B`` (time is ``t = eta * steps``), so the
    diagram is a function of ``eta0 / B`` alone (measured: equal to 1e-15 along ``eta0 / B`` = const); ``eta0`` by
    itself matters only through the discrete map (``discrete_stable``, ``continuum_parameter``). Measured on
    96 x 40 cells, dt 2 (eta0 / B = 0.05, 0.1, 0.15, 0.2, 0.3): final flat fraction 2.4e-5, 0.0236, 0.233, 0.580,
    0.816; the grid error at eta0 / B = 0.2 is about 4e-3 (60 x 24, 96 x 40, 192 x 80: 0.5904, 0.5804, 0.5771;
    dt 2 against 1: 4e-5)."""
    rows_f, rows_t, rows_r, rows_k = [], [], [], []
    for e in etas:
        r = [transient_2d(e, b, nx=nx, ny=ny, dt=dt, t_end=t_end, tau=tau, n_save=61, model=model) for b in batches]
        k = [
            relaxation_rates_2d(
                e, b, np.linspace(0.0, t_end, 13), nx=max(24, nx // 2), ny=max(12, ny // 2), tau=tau, model=model
            )
            for b in batches
        ]
        rows_f.append([x["final"] for x in r])
        rows_t.append([x["t_freeze"] for x in r])
        rows_r.append([x["t_freeze_rate"] for x in k])
        rows_k.append([x["k_sf"][0] + x["k_fs"][0] for x in k])
    return {
        "etas": [float(e) for e in etas],
        "batches": [float(b) for b in batches],
        "flat_fraction": rows_f,
        "t_freeze": rows_t,
        "t_freeze_rate": rows_r,
        "relaxation_rate_t0": rows_k,
        "discrete_stable": [bool(3.0 * e < 2.0) for e in etas],
        "continuum_parameter": [[(model or TwoValley2D()).continuum_parameter(e, b) for b in batches] for e in etas],
        "continuum_limit": CONTINUUM_LIMIT,
        "grid": [int(nx), int(ny)],
        "dt": float(dt),
        "t_end": float(t_end),
        "model": "L = 1/4 (x^2-1)^2 + 1/2 (2+x) y^2, D = (eta/2B)(Delta H^2 + sigma0^2 I) (ours)",
    }


def freezing_2d_headline(quick: bool = False, seed: int = 0) -> dict:
    """The (eta0, B) phase diagram of the 2D model (:func:`phase_diagram_2d`): final flat-valley fraction and
    freezing time under ``eta(t) = eta0 / (1 + t/50)``. ``quick``: 3 x 2 points on 48 x 20 cells, dt 4 (about
    10 s; grid error about 1e-2 at eta0/B = 0.2); full: 5 x 4 points on 96 x 40 cells, dt 2 (grid error about
    4e-3). ``seed`` is unused (no particles): the signature is that of every headline."""
    if quick:
        return phase_diagram_2d(etas=(0.1, 0.2, 0.3), batches=(1, 2), nx=48, ny=20, dt=4.0)
    return phase_diagram_2d(etas=(0.05, 0.1, 0.2, 0.3, 0.4), batches=(1, 2, 4, 8), nx=96, ny=40, dt=2.0)


def plot_freezing_2d_headline(result: dict, path) -> str:
    """Two heat maps over (eta0, B): the final flat fraction and the rate-based freezing time; cells where the
    continuous limit does not describe the discrete SGD (``continuum_parameter > continuum_limit``) are hatched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    fig = Figure(figsize=(9, 3.8))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    etas, batches = result["etas"], result["batches"]
    bad = np.asarray(result["continuum_parameter"]) > result["continuum_limit"]
    for ax, key, label in zip(
        axes, ("flat_fraction", "t_freeze_rate"), ("final flat fraction", "freezing time (rate criterion)")
    ):
        Z = np.asarray(result[key], dtype=float)
        im = ax.imshow(Z, origin="lower", aspect="auto", cmap="viridis")
        for i in range(len(etas)):
            for j in range(len(batches)):
                ax.text(
                    j,
                    i,
                    f"{Z[i, j]:.3g}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if Z[i, j] < np.nanmax(Z) / 2 else "black",
                )
                if bad[i, j]:
                    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="//", edgecolor="red", lw=0))
        ax.set_xticks(range(len(batches)), [f"{b:g}" for b in batches])
        ax.set_yticks(range(len(etas)), [f"{e:g}" for e in etas])
        ax.set_xlabel("batch size B")
        ax.set_ylabel(r"$\eta_0$")
        ax.set_title(label, fontsize=9)
        fig.colorbar(im, ax=ax)
    fig.suptitle(
        "2D two-valley model (ours): escape and freezing under a decaying learning rate; "
        "hatched: discrete SGD outside the continuous limit",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return str(path)
