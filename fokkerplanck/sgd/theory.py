"""Closed forms the solver and the particle simulators are checked against.

Conventions are those of the package (see :mod:`fokkerplanck.model.noise`): ``d theta = v dt + sqrt(2 D) dW`` (Ito),
``v = -grad L``; a quadratic landscape ``L = 1/2 theta^T A theta`` gives the drift ``-A theta``.

Sources
-------
* [PRL]  N. Yang, C. Tang, Y. Tu, Phys. Rev. Lett. 130, 237101 (2023), Eqs. (5)-(16) and the Appendix.
* [WME]  L. Wu, C. Ma, W. E, "How SGD selects the global minima in over-parameterized learning: a dynamical
  stability perspective", NeurIPS 31 (2018).
* [XSS]  Z. Xie, I. Sato, M. Sugiyama, "A diffusion theory for deep learning dynamics: SGD exponentially favors
  flat minima", ICLR 2021.
* Kramers (1940), Eyring; Gardiner, *Stochastic Methods*, sec. 5.2.7 (1D mean first-passage time).

Everything here is plain numpy/scipy: no solver is involved.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import integrate, linalg

from ..model.density import Density
from ..model.grid import Grid
from ..model.noise import tensor_divergence

__all__ = [
    "eq11_density",
    "eq11_marginal_x",
    "eq12_l_sgd",
    "eq12_l_eff",
    "eq13_delta_kappa",
    "eq13_l_sgd",
    "kappa_approx",
    "eq14_l_sgd",
    "eq15_l_sgd_f",
    "transition_noise",
    "valley_transition_noise",
    "sgd_converges",
    "mean_lambda_ss",
    "ou_stationary_cov",
    "ou_cov_at",
    "sgd_discrete_cov",
    "boltzmann",
    "sgd_linear_stability",
    "kramers_rate",
    "eyring_kramers_rate",
    "xie_escape_time",
    "mfpt_1d",
    "rotated_tensor",
    "invariant_measure_drift",
]


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def _lam_values(lam_fn, x):
    """``lambda(x)`` from a callable or from an object with a ``lam`` method (DegenerateValley)."""
    f = lam_fn.lam if hasattr(lam_fn, "lam") else lam_fn
    lam = np.asarray(f(np.asarray(x, dtype=float)), dtype=float)
    if np.any(lam <= 0):
        raise ValueError("lambda(x) must be positive where it is evaluated (the valley must be a minimum)")
    return lam


def _normalize_1d(x, p):
    """Normalise ``p`` on the points ``x`` (cell-centre sum when uniformly spaced, else trapezoid)."""
    x = np.asarray(x, dtype=float)
    if p.ndim != 1 or x.size < 2:
        return p
    dx = np.diff(x)
    if np.allclose(dx, dx[0]):
        return p / (p.sum() * dx[0])
    return p / np.trapezoid(p, x)


# ------------------------------------------------------------------------------------------------
# PRL Eqs. (11)-(12): constant anisotropic noise D = diag(Delta/kappa, Delta), eps = 0
# ------------------------------------------------------------------------------------------------
def eq11_density(grid_or_points, lam_fn, Delta: float, kappa: float):
    """PRL Eq. (11): ``P_ss(x, y) ∝ exp(-lambda(x) y^2 / (2 Delta)) lambda(x)^(-(kappa-1)/2)``.

    The adiabatic (fast-``y``) steady state of ``L = 1/2 lambda(x) y^2`` with ``D = diag(Delta/kappa, Delta)``.
    Given a 2D :class:`Grid` it returns the cell-centre values as a normalised :class:`Density`; given points
    ``(..., 2)`` it returns the unnormalised values ``(...)``. ``lam_fn`` is ``x -> lambda(x)`` (or a
    landscape with a ``lam`` method)."""
    Delta, kappa = float(Delta), float(kappa)
    if not Delta > 0:
        raise ValueError(f"eq11_density: Delta must be > 0, got {Delta}")
    if isinstance(grid_or_points, Grid):
        if grid_or_points.ndim != 2:
            raise ValueError("eq11_density: the grid must be two-dimensional (x, y)")
        pts = grid_or_points.mesh()
    else:
        pts = np.asarray(grid_or_points, dtype=float)
        if pts.shape[-1] != 2:
            raise ValueError(f"eq11_density: points must have shape (..., 2), got {pts.shape}")
    x, y = pts[..., 0], pts[..., 1]
    lam = _lam_values(lam_fn, x)
    vals = np.exp(-lam * y * y / (2 * Delta) - 0.5 * (kappa - 1.0) * np.log(lam))
    if isinstance(grid_or_points, Grid):
        return Density(grid_or_points, vals, normalize=True, info={"theory": "PRL Eq. (11)"})
    return vals


def eq11_marginal_x(x, lam_fn, kappa: float):
    """x-marginal of PRL Eq. (11): ``P(x) ∝ lambda(x)^(-kappa/2)`` (the ``y`` Gaussian contributes
    ``sqrt(2 pi Delta / lambda)``).

    ``x`` is a 1D :class:`Grid` (returns a normalised :class:`Density`) or an array of points (returns values
    normalised on those points: a cell-centre sum when uniform, the trapezoid rule otherwise)."""
    if isinstance(x, Grid):
        if x.ndim != 1:
            raise ValueError("eq11_marginal_x: the grid must be one-dimensional")
        vals = _lam_values(lam_fn, x.centers[0]) ** (-0.5 * float(kappa))
        return Density(x, vals, normalize=True, info={"theory": "PRL Eq. (11) x-marginal"})
    xx = np.asarray(x, dtype=float)
    return _normalize_1d(xx, _lam_values(lam_fn, xx) ** (-0.5 * float(kappa)))


def eq12_l_sgd(x, lam_fn, Delta: float, kappa: float):
    """PRL Eq. (12): ``L_SGD(x) = Delta (1 - kappa) ln F(x) = Delta (kappa - 1)/2 ln lambda(x)`` (``F =
    lambda^-1/2``)."""
    return 0.5 * float(Delta) * (float(kappa) - 1.0) * np.log(_lam_values(lam_fn, x))


def eq12_l_eff(x, y, lam_fn, Delta: float, kappa: float):
    """PRL Eq. (12): ``L_eff(x, y) = 1/2 lambda(x) y^2 + L_SGD(x)`` (defined up to the constant ``-Delta ln Z``)."""
    y = np.asarray(y, dtype=float)
    return 0.5 * _lam_values(lam_fn, x) * y * y + eq12_l_sgd(x, lam_fn, Delta, kappa)


# ------------------------------------------------------------------------------------------------
# PRL Eqs. (13)-(15): Hessian-aligned noise D = Delta_S H^2
# ------------------------------------------------------------------------------------------------
def _valley_parts(landscape):
    for a in ("lam", "eps", "lambda_bar0"):
        if not hasattr(landscape, a):
            raise TypeError("expected a DegenerateValley-like landscape with lam(x, derivative), eps, lambda_bar0")
    return landscape


def eq13_delta_kappa(x, landscape, delta_s: float):
    """The effective noise strength and anisotropy entering PRL Eq. (13), for ``D = Delta_S H^2`` on the 2D
    valley (PRL Eq. 8):

        Delta(x) = Delta_S lambda(x)^2 = D_22 at y = 0,
        kappa(x) = Delta(x) / <D_11>_y,   y | x ~ N(0, Delta(x)/lambda(x)) = N(0, Delta_S lambda(x)),

    with ``D_11 = Delta_S (H_xx^2 + H_xy^2)``, ``H_xx = eps lambda_bar0 + lambda''(x) y^2 / 2``,
    ``H_xy = lambda'(x) y``, and ``<y^4> = 3 <y^2>^2``:

        <D_11>_y = Delta_S [ (eps l0)^2 + eps l0 lambda'' s + 3/4 lambda''^2 s^2 + lambda'^2 s ],  s = Delta_S lambda.

    At ``x = 0`` this gives ``kappa = (eps^2 + 2 eps Delta_S lambda_1 + 3 Delta_S^2 lambda_1^2)^-1`` when
    ``lambda_bar0 = lambda_0`` (the approximation quoted before Eq. 14). Returns ``(Delta(x), kappa(x))``."""
    land = _valley_parts(landscape)
    x = np.asarray(x, dtype=float)
    ds = float(delta_s)
    lam, l1, l2 = land.lam(x), land.lam(x, 1), land.lam(x, 2)
    e = land.eps * land.lambda_bar0
    s = ds * lam
    Delta = ds * lam**2
    d11 = ds * (e**2 + e * l2 * s + 0.75 * l2**2 * s**2 + l1**2 * s)
    with np.errstate(divide="ignore"):
        kappa = Delta / d11
    return Delta, kappa


def eq13_l_sgd(x, landscape, delta_s: float):
    """PRL Eq. (13):

        L_SGD(x) = Delta(x) ∫_0^x [kappa(x') eps l0 x' / Delta(x') + kappa(x') lambda'(x') / (2 lambda(x'))] dx'
                   - Delta(x)/2 ln(lambda(x)/Delta(x)) - eps l0 x^2 / 2,

    with ``Delta(x)``, ``kappa(x)`` from :func:`eq13_delta_kappa` and ``l0 = lambda_bar0``. The paper leaves the
    lower limit of the integral open (an additive constant times ``Delta(x)``); it is taken at ``x = 0`` here
    and the integral is done numerically on a dense grid (the integrand is odd in ``x``, so the result is even).
    Returns values at ``x`` (any shape)."""
    land = _valley_parts(landscape)
    x = np.asarray(x, dtype=float)
    xmax = float(np.max(np.abs(x))) if x.size else 0.0
    e = land.eps * land.lambda_bar0
    s = np.linspace(0.0, max(xmax, 1e-12), 20001)
    Ds, ks = eq13_delta_kappa(s, land, delta_s)
    integrand = ks * e * s / Ds + ks * land.lam(s, 1) / (2 * land.lam(s))
    integrand[~np.isfinite(integrand)] = 0.0  # x = 0 with eps = 0: 0 * inf
    I = np.interp(np.abs(x), s, integrate.cumulative_trapezoid(integrand, s, initial=0.0))
    Dx, _ = eq13_delta_kappa(x, land, delta_s)
    return Dx * I - 0.5 * Dx * np.log(land.lam(x) / Dx) - 0.5 * e * x**2


def kappa_approx(eps: float, delta_s: float, lambda1: float) -> float:
    """The anisotropy near the global minimum quoted before PRL Eq. (14):
    ``kappa ≈ (eps^2 + 2 eps Delta_S lambda_1 + 3 Delta_S^2 lambda_1^2)^-1``."""
    eps, ds, l1 = float(eps), float(delta_s), float(lambda1)
    den = eps**2 + 2 * eps * ds * l1 + 3 * ds**2 * l1**2
    if not den > 0:
        raise ValueError(f"kappa_approx: eps^2 + 2 eps Delta_S lambda_1 + 3 Delta_S^2 lambda_1^2 = {den:g} <= 0")
    return 1.0 / den


def eq14_l_sgd(x, landscape, delta_s: float, Delta: float | None = None, kappa: float | None = None):
    """PRL Eq. (14): ``L_SGD(x) ≈ Delta (1 - kappa) ln F(x) + (kappa - 1) L(x, y=0)``, with by default
    ``Delta ≈ Delta_S lambda_0^2`` and ``kappa`` from :func:`kappa_approx` (both constants).
    ``L(x, 0) = eps lambda_bar0 x^2 / 2`` and ``ln F = -ln(lambda)/2``."""
    land = _valley_parts(landscape)
    x = np.asarray(x, dtype=float)
    l0 = float(land.lam(0.0))
    l1 = float(land.lam(0.0, 2)) / 2.0  # lambda''(0) = 2 lambda_1
    Delta = float(delta_s) * l0**2 if Delta is None else float(Delta)
    kappa = kappa_approx(land.eps, delta_s, l1) if kappa is None else float(kappa)
    lnF = -0.5 * np.log(_lam_values(land, x))
    return Delta * (1.0 - kappa) * lnF + (kappa - 1.0) * 0.5 * land.eps * land.lambda_bar0 * x**2


def eq15_l_sgd_f(x, landscape, delta_s: float, kappa: float):
    """PRL Eq. (15), the flatness part of the high-dimensional SGD loss:

        L_SGD,F(x) ≈ sum_i (Delta_bar - kappa Delta^(i)) ln F^(i)(x),
        Delta^(i) = Delta_S lambda^(i)(0)^2,  Delta_bar = mean_i Delta^(i),  F^(i) = lambda^(i)(x)^-1/2.

    ``landscape`` is a :class:`~fokkerplanck.model.landscapes.HighDimValley`; ``x`` flat points ``(..., n_flat)``."""
    lam0 = landscape.lambdas[:, 0]
    Di = float(delta_s) * lam0**2
    lnF = -0.5 * np.log(landscape.lam(x))
    return np.sum((Di.mean() - float(kappa) * Di) * lnF, axis=-1)


def transition_noise(eps: float, lambda1: float) -> float:
    """PRL Appendix: the SGD noise level at which the steady state leaves the global minimum,
    ``Delta_S* = -eps / lambda_1`` (needs ``lambda_1 < 0``). Fig. 5: ``eps = 1e-3, lambda_1 = -2 -> 5e-4``."""
    if not float(lambda1) < 0:
        raise ValueError(f"transition_noise: needs lambda_1 < 0 (a flatter point away from x=0), got {lambda1}")
    return -float(eps) / float(lambda1)


def valley_transition_noise(landscape, eta: float = 0.0) -> float:
    """The noise level ``Delta_S*`` at which the global minimum ``x = 0`` of a near-degenerate valley becomes
    unstable under SGD noise ``D = Delta_S H^2``, for the 2D valley (PRL Eq. 8) and the high-dimensional one
    (PRL Eq. 5 with ``lambda^(i)`` polynomials in ``r = |x|^2``, :class:`~fokkerplanck.model.landscapes.HighDimValley`).

    Averaging the fast sharp variables: near ``y = 0`` each ``y_i`` has conditional variance
    ``<y_i^2>_x = Delta_S lambda^(i)(x)`` (``D_ii / lambda^(i)`` with ``D_ii = Delta_S lambda^(i)2``), so the
    flat variables feel the drift ``-grad_x [eps lambda_bar0 |x|^2 / 2 + sum_i lambda^(i)(x) <y_i^2>_x / 2]``,
    which near ``x = 0`` (``lambda^(i) ≈ l0_i + l1_i |x|^2``) is ``-x (eps lambda_bar0 + Delta_S sum_i l0_i l1_i)``:
    ``x = 0`` loses its stability at

        Delta_S* = eps lambda_bar0 / (- sum_i l0_i l1_i),

    which is the PRL Appendix's ``-eps / lambda_1`` for one sharp direction with ``lambda_bar0 = lambda_0``. For
    the discrete random-shift SGD at learning rate ``eta`` the stationary variance of a sharp direction is
    ``2 sigma eta lambda / (2 - eta lambda) = Delta_S lambda / (1 - eta lambda / 2)``
    (:func:`sgd_discrete_cov`), so with ``eta > 0`` each term gets the factor ``1 / (1 - eta l0_i / 2)``
    and the transition moves to lower ``Delta_S``. Terms of order ``Delta_S^2`` (the noise on ``x`` itself)
    are left out, so this is the small-``eps`` leading order. Raises ``ValueError`` when there is no
    transition (``sum_i l0_i l1_i >= 0``) or when ``eta l0_i >= 2`` (``x = 0`` is already unstable)."""
    lam = np.atleast_2d(np.asarray(landscape.lambdas, dtype=float))
    if lam.shape[1] < 2:
        raise ValueError("valley_transition_noise: lambda(x) is constant; no transition")
    l0, l1 = lam[:, 0], lam[:, 1]
    g = 1.0 - float(eta) * l0 / 2.0
    if np.any(g <= 0):
        raise ValueError(
            f"valley_transition_noise: eta lambda_0 >= 2 at x = 0 (eta = {eta:g}); the discrete SGD diverges there"
        )
    s = float(np.sum(l0 * l1 / g))
    if not s < 0:
        raise ValueError(
            "valley_transition_noise: sum_i lambda_0^(i) lambda_1^(i) >= 0; the SGD noise does not push "
            "away from x = 0 (no transition)"
        )
    return float(landscape.eps) * float(landscape.lambda_bar0) / -s


def mean_lambda_ss(landscape, x_ss: float, x2_mean: float) -> float:
    """PRL Appendix: ``<lambda(x)>_ss ≈ lambda(x_ss) + 1/2 lambda''(x_ss) (<x^2>_ss - x_ss^2)``."""
    return float(landscape.lam(x_ss) + 0.5 * landscape.lam(x_ss, 2) * (float(x2_mean) - float(x_ss) ** 2))


def sgd_converges(eta: float, mean_lambda: float) -> bool:
    """PRL Appendix: the discrete SGD converges when ``eta <lambda(x)>_ss < 2``."""
    return bool(float(eta) * float(mean_lambda) < 2.0)


# ------------------------------------------------------------------------------------------------
# Ornstein-Uhlenbeck and the linear SGD recursion
# ------------------------------------------------------------------------------------------------
def _square(M, name):
    M = np.atleast_2d(np.asarray(M, dtype=float))
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {M.shape}")
    return M


def ou_stationary_cov(A, D):
    """Stationary covariance of ``d theta = -A theta dt + sqrt(2D) dW``: the solution of the Lyapunov equation
    ``A Sigma + Sigma A^T = 2 D`` (A must have eigenvalues with positive real parts)."""
    A, D = _square(A, "A"), _square(D, "D")
    if np.any(np.linalg.eigvals(A).real <= 0):
        raise ValueError("ou_stationary_cov: A must be stable (all eigenvalues with positive real part)")
    S = linalg.solve_continuous_lyapunov(A, 2.0 * D)
    return 0.5 * (S + S.T)


def ou_cov_at(t: float, A, D, Sigma0):
    """Covariance at time ``t`` of the OU process: the exact solution of ``dSigma/dt = -A Sigma - Sigma A^T + 2D``,

        Sigma(t) = Sigma_inf + e^{-A t} (Sigma0 - Sigma_inf) e^{-A^T t},   A Sigma_inf + Sigma_inf A^T = 2 D,

    for stable ``A``; otherwise through the Van Loan block exponential
    ``Sigma(t) = e^{-At} Sigma0 e^{-A^T t} + ∫_0^t e^{-As} 2D e^{-A^T s} ds``."""
    A, D, S0 = _square(A, "A"), _square(D, "D"), _square(Sigma0, "Sigma0")
    t = float(t)
    E = linalg.expm(-A * t)
    if np.all(np.linalg.eigvals(A).real > 0):
        Sinf = ou_stationary_cov(A, D)
        S = Sinf + E @ (S0 - Sinf) @ E.T
    else:
        n = A.shape[0]
        M = np.zeros((2 * n, 2 * n))
        M[:n, :n] = -A
        M[:n, n:] = 2.0 * D
        M[n:, n:] = A.T
        F = linalg.expm(M * t)
        G = F[:n, n:] @ F[:n, :n].T  # = ∫_0^t e^{-As} 2D e^{-A^T s} ds
        S = E @ S0 @ E.T + G
    return 0.5 * (S + S.T)


def rotated_tensor(angle, eigenvalues):
    """The 2D tensor ``R(phi) diag(l1, l2) R(phi)^T`` whose first principal axis makes the angle ``phi`` with
    the first grid axis, for an array of angles ``(...)``: returns ``(..., 2, 2)``. With ``phi`` a function of
    position this is a tensor field whose axes turn across the box."""
    phi = np.asarray(angle, dtype=float)
    l1, l2 = (float(v) for v in eigenvalues)
    c, s = np.cos(phi), np.sin(phi)
    D = np.empty(phi.shape + (2, 2))
    D[..., 0, 0] = l1 * c * c + l2 * s * s
    D[..., 1, 1] = l1 * s * s + l2 * c * c
    D[..., 0, 1] = D[..., 1, 0] = (l1 - l2) * c * s
    return D


def invariant_measure_drift(
    tensor: Callable, grad_psi: Callable, S=None, div_tensor: Callable | None = None, step: float = 1e-6
) -> Callable:
    """The Ito drift with a known stationary density for any diffusion field,

        v(theta) = -(D(theta) + S) grad psi(theta) + div D(theta),      P_ss = exp(-psi) / Z,

    ``S`` a constant antisymmetric matrix (zero: reversible, ``v - div D = -D grad psi``; otherwise the
    stationary current ``-S grad psi exp(-psi)`` is divergence-free). Substituting, ``J = v P - div(D P) =
    -S grad psi P``, and ``div J = 0`` because ``S`` is antisymmetric. (On a bounded box this holds where
    ``exp(-psi)`` is negligible at the walls.) ``tensor``: ``(..., d) -> (..., d, d)``; ``grad_psi``:
    ``(..., d) -> (..., d)``; ``div_tensor`` the row divergence ``sum_j d_j D_ij`` in closed form, or by
    central differences of ``tensor`` (:func:`tensor_divergence`). Returns ``v`` as a callable."""

    def div(t):
        return div_tensor(t) if div_tensor is not None else tensor_divergence(tensor, t, step)

    def velocity(theta):
        t = np.asarray(theta, dtype=float)
        D = tensor(t)
        if S is not None:
            D = D + np.asarray(S, dtype=float)
        return -np.einsum("...ij,...j->...i", D, grad_psi(t)) + div(t)

    return velocity


def sgd_discrete_cov(A, eta: float, sigma: float):
    """Stationary covariance of the linear random-shift SGD on ``L = 1/2 theta^T A theta`` (PRL Eq. 7, linear
    shift): ``theta' = M theta + eta A mu``, ``M = I - eta A``, ``mu ~ N(0, 2 sigma I)``, i.e. the discrete
    Lyapunov equation ``Sigma = M Sigma M^T + 2 sigma eta^2 A A^T``. As ``eta -> 0`` it tends to
    ``Delta_S A`` (``Delta_S = eta sigma``), the continuous answer for ``D = Delta_S A^2``; the exact value is
    ``2 sigma eta A (2I - eta A)^-1`` for symmetric ``A``. Raises when ``M`` has spectral radius >= 1."""
    A = _square(A, "A")
    M = np.eye(A.shape[0]) - float(eta) * A
    rho = np.max(np.abs(np.linalg.eigvals(M)))
    if rho >= 1:
        raise ValueError(f"sgd_discrete_cov: the recursion diverges (spectral radius of I - eta A is {rho:.4g} >= 1)")
    S = linalg.solve_discrete_lyapunov(M, 2.0 * float(sigma) * float(eta) ** 2 * A @ A.T)
    return 0.5 * (S + S.T)


def boltzmann(grid: Grid, landscape, T: float) -> Density:
    """Discrete Boltzmann weights ``exp(-L/T)`` at cell centres, normalised on ``grid`` — the stationary density of
    ``D = T I`` with gradient drift, which the solver's scheme reproduces to round-off where it is exact."""
    T = float(T)
    if not T > 0:
        raise ValueError(f"boltzmann: T must be > 0, got {T}")
    L = np.asarray(landscape.loss(grid.mesh()), dtype=float)
    return Density(grid, np.exp(-(L - L.min()) / T), normalize=True, info={"theory": "Boltzmann exp(-L/T)"})


# ------------------------------------------------------------------------------------------------
# Linear stability of SGD minima [WME]
# ------------------------------------------------------------------------------------------------
def sgd_linear_stability(hessians, eta: float, batch: int) -> dict:
    """Linear (mean-square) stability of a global minimum for SGD [WME, Sec. 3 / Theorem 1].

    Near a global minimum of an over-parameterised model, each sample loss is quadratic with its own Hessian:
    ``f_i(x) = 1/2 x^T H_i x``, ``i = 1..n``, ``H = mean_i H_i``. SGD with learning rate ``eta`` and batch size
    ``B`` (sampled without replacement) is ``x_{t+1} = (I - eta H_xi) x_t``, ``H_xi`` the batch-mean Hessian.
    Its second moment ``S_t = E[x_t x_t^T]`` obeys the exact linear recursion

        S_{t+1} = (I - eta H) S (I - eta H) + c (mean_i H_i S H_i - H S H),   c = eta^2 (n - B) / (B (n - 1)),

    and the minimum is linearly stable iff the spectral radius ``rho`` of that map is ``<= 1`` (computed here on
    the ``d^2 x d^2`` Kronecker form). In 1D this is the [WME] condition
    ``(1 - eta a)^2 + c s^2 <= 1``, ``a = H`` (sharpness), ``s^2 = mean_i H_i^2 - H^2`` (non-uniformity), whose
    necessary consequences are ``a <= 2/eta`` and ``s <= sqrt(B (n - 1)/(n - B)) / eta ≈ sqrt(B)/eta``.
    In d dimensions the necessary condition [WME] ``lambda_max((I - eta H)^2 + c Sigma) <= 1`` with
    ``Sigma = mean_i H_i^2 - H^2`` is also reported.

    ``hessians``: ``(n, d, d)`` (or ``(n,)`` scalars for 1D). Returns a dict with ``stable``, ``rho``,
    ``sharpness`` (lambda_max(H)), ``non_uniformity`` (lambda_max(Sigma)^1/2), ``necessary`` (the
    lambda_max expression) and ``c``."""
    Hs = np.asarray(hessians, dtype=float)
    if Hs.ndim == 1:
        Hs = Hs[:, None, None]
    if Hs.ndim != 3 or Hs.shape[1] != Hs.shape[2]:
        raise ValueError(f"sgd_linear_stability: hessians must be (n, d, d) or (n,), got {np.shape(hessians)}")
    n, d, _ = Hs.shape
    B = int(batch)
    if not 1 <= B <= n:
        raise ValueError(f"sgd_linear_stability: need 1 <= batch <= n = {n}, got {batch}")
    eta = float(eta)
    Hs = 0.5 * (Hs + np.swapaxes(Hs, 1, 2))
    H = Hs.mean(axis=0)
    c = 0.0 if n == 1 else eta**2 * (n - B) / (B * (n - 1))
    M = np.eye(d) - eta * H
    # vec(X S Y^T) = (Y kron X) vec(S) (column-major); all matrices here are symmetric
    T = np.kron(M, M) + c * (np.mean([np.kron(Hi, Hi) for Hi in Hs], axis=0) - np.kron(H, H))
    rho = float(np.max(np.abs(np.linalg.eigvals(T))))
    Sig = np.mean(Hs @ Hs, axis=0) - H @ H
    nec = float(np.max(np.linalg.eigvalsh(M @ M + c * Sig)))
    return {
        "stable": rho <= 1.0 + 1e-12,
        "rho": rho,
        "necessary": nec,
        "c": c,
        "sharpness": float(np.max(np.linalg.eigvalsh(H))),
        "non_uniformity": float(np.sqrt(max(np.max(np.linalg.eigvalsh(Sig)), 0.0))),
    }


# ------------------------------------------------------------------------------------------------
# Escape: Kramers, Eyring-Kramers, Xie-Sato-Sugiyama, exact 1D MFPT
# ------------------------------------------------------------------------------------------------
def kramers_rate(barrier: float, curvature_min: float, curvature_saddle: float, T: float) -> float:
    """Kramers' escape rate (overdamped, 1D, ``D = T``):
    ``k = sqrt(k_min |k_saddle|) / (2 pi) exp(-Delta L / T)``; ``1/k`` is the mean time to cross the barrier
    (to first order in ``T / Delta L``)."""
    return float(
        np.sqrt(float(curvature_min) * abs(float(curvature_saddle))) / (2 * np.pi) * np.exp(-float(barrier) / float(T))
    )


def eyring_kramers_rate(barrier: float, hessian_min, hessian_saddle, T: float) -> float:
    """Eyring-Kramers law for ``D = T I`` in d dimensions:
    ``k = |mu_-| / (2 pi) sqrt(det H_min / |det H_saddle|) exp(-Delta L / T)``, ``mu_-`` the single negative
    eigenvalue of the saddle Hessian. Reduces to :func:`kramers_rate` in 1D."""
    Hm, Hs = _square(hessian_min, "hessian_min"), _square(hessian_saddle, "hessian_saddle")
    ws = np.linalg.eigvalsh(0.5 * (Hs + Hs.T))
    wm = np.linalg.eigvalsh(0.5 * (Hm + Hm.T))
    if not (ws[0] < 0 < ws[1] if ws.size > 1 else ws[0] < 0) or np.any(wm <= 0):
        raise ValueError("eyring_kramers_rate: need a positive-definite minimum and an index-1 saddle")
    return float(
        abs(ws[0]) / (2 * np.pi) * np.sqrt(np.prod(wm) / abs(np.prod(ws))) * np.exp(-float(barrier) / float(T))
    )


def xie_escape_time(barrier: float, h_min, h_saddle, delta: float, s: float = 0.5) -> float:
    """Mean escape time for Hessian-proportional noise ``D = delta H`` [XSS, Theorems 3.2/3.3], with
    ``delta = eta / (2B)`` in their notation (their SDE is ``d theta = -grad L dt + sqrt(2D) dW``):

        tau = 2 pi prod_{i != e} sqrt(H_b,i / H_a,i) / |H_b,e|
              * exp[ (Delta L / delta) (s / H_a,e + (1 - s) / |H_b,e|) ],

    ``H_a`` the Hessian eigenvalues at the minimum ``a``, ``H_b`` those at the saddle ``b``, ``e`` the escape
    direction (the saddle's negative eigenvalue and, by [XSS]'s assumption, the same index at ``a``), and
    ``s in (0, 1)`` the path-dependent fraction of the barrier climbed in the minimum's quadratic region.
    The exponent (``2 B Delta L / eta`` times the bracket) is the content of the law: SGD escapes exponentially
    faster from sharp minima. ``h_min``/``h_saddle``: eigenvalues, the escape direction first (scalars in 1D).

    Implemented as stated in [XSS]; the prefactor is a Kramers-type estimate (for a piecewise quadratic 1D
    model the exact MFPT has the same exponent but prefactor ``2 pi / H_a,e``: see the tests)."""
    ha = np.atleast_1d(np.asarray(h_min, dtype=float))
    hb = np.atleast_1d(np.asarray(h_saddle, dtype=float))
    if ha.shape != hb.shape or ha[0] <= 0 or np.any(ha <= 0):
        raise ValueError("xie_escape_time: h_min must be positive and match h_saddle in length")
    if not 0 <= s <= 1:
        raise ValueError(f"xie_escape_time: s must be in [0, 1], got {s}")
    pref = 2 * np.pi / abs(hb[0]) * np.prod(np.sqrt(np.abs(hb[1:]) / ha[1:]))
    return float(pref * np.exp(float(barrier) / float(delta) * (s / ha[0] + (1 - s) / abs(hb[0]))))


def mfpt_1d(x0, v: Callable, D: Callable, a: float, b: float, n: int = 20001):
    """Exact mean first-passage time of the 1D Ito diffusion ``dx = v(x) dt + sqrt(2 D(x)) dW`` started at
    ``x0``, reflecting at ``a``, absorbing at ``b`` (``a < x0 <= b``; ``a > b`` mirrors the geometry).

    The generator is ``L f = v f' + D f''`` and ``T`` solves ``L T = -1``, ``T'(a) = 0``, ``T(b) = 0``. With the
    stationary density ``p_s(x) ∝ exp(Phi(x)) / D(x)``, ``Phi(x) = ∫_a^x v/D``, one has
    ``L f = (D p_s f')' / p_s``, hence

        T(x0) = ∫_{x0}^{b} dy / (D(y) p_s(y)) ∫_a^y p_s(z) dz
              = ∫_{x0}^{b} dy exp(-Phi(y)) ∫_a^y exp(Phi(z)) / D(z) dz.

    Evaluated with the trapezoid rule on ``n`` points (error ``O(h^2)``); ``v``, ``D`` are vectorised callables."""
    a, b = float(a), float(b)
    if a == b:
        raise ValueError("mfpt_1d: a and b must differ")
    sgn = 1.0 if b > a else -1.0
    # map to y = sgn * x so that the reflecting wall is on the left: drift flips sign, D stays
    z = np.linspace(sgn * a, sgn * b, int(n))
    xz = sgn * z
    vz = sgn * np.asarray(v(xz), dtype=float) * np.ones_like(z)
    Dz = np.asarray(D(xz), dtype=float) * np.ones_like(z)
    if np.any(Dz <= 0):
        raise ValueError("mfpt_1d: D must be > 0 on [a, b]")
    Phi = integrate.cumulative_trapezoid(vz / Dz, z, initial=0.0)
    # inner(y) exp(-Phi(y)) = ∫_a^y exp(Phi(z) - Phi(y)) / D(z) dz, accumulated in log space (no overflow)
    logf = Phi - np.log(Dz)
    h = np.diff(z)
    log_inc = np.log(0.5 * h) + np.logaddexp(logf[:-1], logf[1:])
    log_inner = np.concatenate([[-np.inf], np.logaddexp.accumulate(log_inc)])
    outer = np.exp(log_inner - Phi)
    tail = integrate.cumulative_trapezoid(outer[::-1], -z[::-1], initial=0.0)[::-1]  # ∫_y^b
    x0 = np.asarray(x0, dtype=float)
    y0 = sgn * x0
    if np.any((y0 < z[0] - 1e-12) | (y0 > z[-1] + 1e-12)):
        raise ValueError("mfpt_1d: x0 must lie between a and b")
    return np.interp(y0, z, tail)
