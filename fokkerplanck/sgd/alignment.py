"""Alignment of SGD noise with sharp directions, and the linear stability of SGD minima.

Source: [WWS] L. Wu, M. Wang, W. J. Su, "The alignment property of SGD noise and how it helps select flat
minima: a stability analysis", NeurIPS 35 (2022). No full text was at hand; what is marked *paper* below is
taken from its abstract and the issue's summary of it, everything marked *ours* was derived (and checked by
quadrature, exact linear algebra and particles: ``tests/test_alignment.py``) for this package.

*Paper.* Near a global minimum of an over-parameterised model with square loss, the SGD noise covariance ``S``
is aligned with the Gauss-Newton matrix ``G`` (= the Hessian ``H`` at the minimum), with a strength

    mu = tr(S G) / (2 L ||G||_F^2),                                                     (alignment factor)

and a linearly stable minimum has ``||H||_F <= sqrt(B / mu) / eta`` (``B`` batch size, ``eta`` learning rate):
sharpness is bounded independently of model and sample size.

*Ours: the bound.* Linearise at the minimum, ``L(theta* + delta) = 1/2 delta^T H delta``, batch gradient
``H delta + xi`` with ``Cov xi = S(delta) / B`` (sampling with replacement or online). Then
``E L_{t+1} = E[1/2 delta^T (I - eta H) H (I - eta H) delta] + eta^2 E tr(S H) / (2B) >= (eta^2 mu ||H||_F^2 / B) E
L_t``
when ``tr(S(delta) H) >= mu 2 L(delta) ||H||_F^2`` for every ``delta`` (``mu`` the *smallest* alignment factor,
:func:`alignment_range`), so ``eta^2 mu ||H||_F^2 > B`` makes ``E L`` grow geometrically. Without replacement
from ``n`` samples the noise per step is ``S (n - B) / (B (n - 1))``, i.e. ``B`` becomes ``B (n - 1)/(n - B)``.

*Ours: the exact threshold.* With per-sample Hessians ``H_i`` (``H_i = x_i x_i^T`` for regression features),
``delta_{t+1} = (I - eta H_b) delta_t`` and ``M_t = E delta_t delta_t^T`` obeys the exact linear map

    T_eta(M) = M - eta (H M + M H) + eta^2 Q(M),    Q(M) = E[H_b M H_b] = H M H + c (mean_i H_i M H_i - H M H),

``c = 1/B`` with replacement, ``c = (n - B)/(B (n - 1))`` without (one uniform ``B``-subset per step; an
epoch-wise reshuffle correlates steps and is not this map). ``T_eta`` is self-adjoint for the Frobenius product
and maps the PSD cone into itself, so its spectral radius is its largest eigenvalue (Krein-Rutman), and
``<M, T M> - <M, M> = -eta <M, L M> + eta^2 <M, Q M>`` with ``L(M) = H M + M H`` positive definite on the
range of ``H``: the stable set is the interval ``eta <= eta*``, ``eta* = 1 / max eig(Q, L)`` (a symmetric
generalised eigenproblem; no bisection). Directions outside the joint range of the ``H_i`` do not move (the
manifold of minima) and are projected out. For online Gaussian inputs ``x ~ N(0, Sigma)`` (Isserlis)
``Q(M) = (1 + 1/B) Sigma M Sigma + tr(Sigma M) Sigma / B``; for ``Sigma = lambda I_d`` the top mode is
``M = I`` and ``eta* lambda (1 + (d + 1)/B) = 2`` (the issue's formula, confirmed).

*Ours: online Gaussian linear regression.* ``y = x^T w* + eps``, ``x ~ N(0, Sigma)``, ``eps ~ N(0, sigma^2)``,
``delta = w - w*``: per-sample gradient ``x (x^T delta - eps)``, ``L = (delta^T Sigma delta + sigma^2)/2``,
``G = Sigma`` and

    S(delta) = Sigma delta delta^T Sigma + (delta^T Sigma delta + sigma^2) Sigma,
    mu(delta) = 1 + delta^T Sigma^3 delta / ((delta^T Sigma delta + sigma^2) ||Sigma||_F^2)

(the issue's ``mu`` is the case ``sigma = 0``; with label noise ``sigma^2`` joins the denominator). In 1D
(``Sigma = lambda``) ``S(x) = 2 lambda^2 x^2 + lambda sigma^2`` and the Fokker-Planck equation of the package
(Ito, drift ``-lambda x``, ``D = (eta / 2B) S``; time ``t = step * eta``) has the zero-flux steady state

    p(x) ∝ (2 lambda x^2 + sigma^2)^(-(1 + B / (2 eta lambda))),

a Student-t with ``nu = 1 + B/(eta lambda)`` degrees of freedom and scale ``sigma / sqrt(2 lambda nu)``
(tails ``|x|^-(nu + 1)``), and ``E x^2 = (eta/B) sigma^2 / (2 (1 - eta lambda / B))`` (the issue's forms, Ito;
a Stratonovich reading would give the exponent ``-(1/2 + B/(2 eta lambda))``). The discrete online SGD it
stands for has instead ``E x^2 = (eta/B) sigma^2 / (2 - eta lambda (1 + 2/B))`` and diverges at
``eta lambda (1 + 2/B) = 2``, not at ``eta lambda / B = 1``: the two agree only to first order in
``eta lambda`` (at ``B = 1``, ``eta = 0.25``: 0.2 against 1/6).

Everything is plain numpy/scipy, but for the 1D Fokker-Planck problem, solved by the package's own grid solver.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import linalg, special

__all__ = [
    "alignment_factor",
    "alignment_range",
    "flatness_bound",
    "bound_learning_rate",
    "second_moment_operator",
    "gaussian_second_moment_operator",
    "spectral_radius",
    "mean_square_path",
    "linear_stability_threshold",
    "gaussian_threshold",
    "gaussian_noise_covariance",
    "gaussian_alignment_factor",
    "gaussian_threshold_isotropic",
    "online_sgd_second_moment",
    "fp1d_exponent",
    "fp1d_density",
    "fp1d_second_moment",
    "fp1d_prob_within",
    "sgd1d_second_moment",
    "fp1d_problem",
    "fp1d_solve",
    "overparameterised_regression",
    "simulate_online_regression",
    "simulate_finite_sgd",
    "simulate_fp1d_sde",
    "alignment_headline",
    "plot_alignment_headline",
]

#: largest reduced dimension r for which the r^2 x r^2 second-moment matrices are formed densely
MAX_REDUCED_DIM = 40


# ------------------------------------------------------------------------------------------------
# input checks
# ------------------------------------------------------------------------------------------------
def _pos(name, value, who):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{who}: {name} must be a number, got {value!r}") from None
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"{who}: {name} must be finite and > 0, got {value!r}")
    return v


def _nonneg(name, value, who):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{who}: {name} must be a number, got {value!r}") from None
    if not (np.isfinite(v) and v >= 0):
        raise ValueError(f"{who}: {name} must be finite and >= 0, got {value!r}")
    return v


def _count(name, value, who, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise ValueError(f"{who}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _matrix(name, M, who, d=None):
    A = np.asarray(M, dtype=float)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or (d is not None and A.shape[0] != d):
        want = f"({d}, {d})" if d is not None else "square"
        raise ValueError(f"{who}: {name} must be a {want} matrix, got shape {A.shape}")
    if not np.all(np.isfinite(A)):
        raise ValueError(f"{who}: {name} has non-finite entries")
    return 0.5 * (A + A.T)


def _spd(name, M, who):
    A = _matrix(name, M, who)
    if np.linalg.eigvalsh(A)[0] <= 0:
        raise ValueError(f"{who}: {name} must be symmetric positive definite")
    return A


def _rows(name, X, who):
    A = np.asarray(X, dtype=float)
    if A.ndim != 2 or A.shape[0] < 1 or A.shape[1] < 1:
        raise ValueError(f"{who}: {name} must be an (n, d) array, got shape {A.shape}")
    if not np.all(np.isfinite(A)):
        raise ValueError(f"{who}: {name} has non-finite entries")
    return A


# ------------------------------------------------------------------------------------------------
# alignment factor and the flatness bound  [WWS]
# ------------------------------------------------------------------------------------------------
def alignment_factor(S=None, G=None, L=None, *, features=None, residuals=None, grads=None) -> float:
    """Alignment factor ``mu = tr(S G) / (2 L ||G||_F^2)`` [WWS] (definition: paper).

    Three ways to call it:

    * model: ``alignment_factor(S, G, L)`` -- noise covariance ``S`` (d, d), Gauss-Newton matrix ``G`` (d, d)
      and loss ``L > 0``;
    * samples of a square loss ``l_i = r_i^2 / 2``: ``alignment_factor(features=J, residuals=r)`` with ``J``
      (n, d) the output gradients (features of a linear model) and ``r`` (n,) the residuals; then
      ``g_i = r_i J_i``, ``S`` their population covariance (``1/n``), ``G = J^T J / n``, ``L = mean r^2 / 2``;
    * per-sample gradients with a model's ``G`` and ``L``: ``alignment_factor(G=G, L=L, grads=g)``.

    ``tr(S G)`` is computed as ``mean_i (g_i - gbar)^T G (g_i - gbar)`` (no d x d covariance is formed)."""
    who = "alignment_factor"
    if features is not None or residuals is not None:
        if features is None or residuals is None:
            raise ValueError(f"{who}: features and residuals go together")
        if S is not None or G is not None or L is not None or grads is not None:
            raise ValueError(f"{who}: give either (S, G, L), (features, residuals) or (grads, G, L)")
        J = _rows("features", features, who)
        r = np.asarray(residuals, dtype=float)
        if r.shape != (J.shape[0],) or not np.all(np.isfinite(r)):
            raise ValueError(f"{who}: residuals must be finite with shape ({J.shape[0]},), got {r.shape}")
        g = r[:, None] * J
        Gm = J.T @ J / J.shape[0]
        Lv = 0.5 * float(np.mean(r**2))
    elif grads is not None:
        if S is not None or G is None or L is None:
            raise ValueError(f"{who}: grads needs G and L (and no S)")
        g = _rows("grads", grads, who)
        Gm = _matrix("G", G, who, g.shape[1])
        Lv = float(L)
    else:
        if S is None or G is None or L is None:
            raise ValueError(f"{who}: give (S, G, L), (features, residuals) or (grads, G, L)")
        Sm = _matrix("S", S, who)
        Gm = _matrix("G", G, who, Sm.shape[0])
        Lv = float(L)
        g = None
    if not (np.isfinite(Lv) and Lv > 0):
        raise ValueError(f"{who}: the loss L must be finite and > 0 (mu is undefined at a zero-loss point), got {Lv}")
    gg = float(np.sum(Gm * Gm))
    if gg <= 0:
        raise ValueError(f"{who}: G is zero")
    if g is not None:
        c = g - g.mean(axis=0)
        trSG = float(np.einsum("ni,ij,nj->", c, Gm, c) / g.shape[0])
    else:
        trSG = float(np.sum(Sm * Gm))
    return trSG / (2.0 * Lv * gg)


def alignment_range(features=None, *, hessians=None) -> dict:
    """Smallest and largest alignment factor ``mu(delta)`` over directions ``delta`` near an interpolating
    minimum of a linear model with ``features`` ``x_i`` (n, d) (ours).

    Linearised, ``r_i = x_i^T delta``, ``g_i = r_i x_i``, ``H = G = mean x_i x_i^T``, ``2 L = delta^T H delta``
    and ``tr(S H) = delta^T (K - H^3) delta`` with ``K = mean_i (x_i^T H x_i) x_i x_i^T``, so ``mu(delta)`` is a
    generalised Rayleigh quotient on the range of ``H``: its extremes are the extreme eigenvalues of
    ``(K - H^3, H ||H||_F^2)``. The ``min`` is the ``mu`` that makes :func:`flatness_bound` rigorous.
    Returns ``{"min", "max", "frobenius_H", "H"}``."""
    who = "alignment_range"
    if hessians is not None:
        raise ValueError(f"{who}: only rank-one (feature) Hessians are supported; pass features")
    X = _rows("features", features, who)
    n = X.shape[0]
    H = X.T @ X / n
    U = _range_basis(H)
    Xr = X @ U
    Hr = Xr.T @ Xr / n
    q = np.einsum("ni,ij,nj->n", Xr, Hr, Xr)
    K = (Xr * q[:, None]).T @ Xr / n
    A = K - Hr @ Hr @ Hr
    hf2 = float(np.sum(H * H))
    w = linalg.eigh(0.5 * (A + A.T), Hr * hf2, eigvals_only=True)
    return {"min": float(w[0]), "max": float(w[-1]), "frobenius_H": math.sqrt(hf2), "H": H}


def flatness_bound(eta, B, mu) -> float:
    """Largest ``||H||_F`` of a linearly stable minimum [WWS]: ``sqrt(B / mu) / eta`` (paper; derivation in the
    module docstring, ours). ``B`` may be fractional (``B (n-1)/(n-B)`` without replacement)."""
    who = "flatness_bound"
    return math.sqrt(_pos("B", B, who) / _pos("mu", mu, who)) / _pos("eta", eta, who)


def bound_learning_rate(frobenius_H, B, mu) -> float:
    """The same bound read as a learning rate: ``eta <= sqrt(B / mu) / ||H||_F``."""
    who = "bound_learning_rate"
    return math.sqrt(_pos("B", B, who) / _pos("mu", mu, who)) / _pos("frobenius_H", frobenius_H, who)


# ------------------------------------------------------------------------------------------------
# exact mean-square (linear) stability: the second-moment map  (ours)
# ------------------------------------------------------------------------------------------------
def _range_basis(H, rtol=1e-10):
    w, V = np.linalg.eigh(H)
    keep = w > rtol * max(w[-1], 0.0)
    if not np.any(keep):
        raise ValueError("the Hessian is zero: no direction to be stable in")
    return V[:, keep]


def second_moment_operator(hessians=None, *, features=None, batch, replacement: bool = True) -> dict:
    """``L`` and ``Q`` of the second-moment map ``T_eta = I - eta L + eta^2 Q`` of minibatch SGD at a minimum
    (module docstring), as ``r^2 x r^2`` matrices on ``vec(M)`` in the joint range of the per-sample Hessians
    (``r`` its dimension; the other directions are minima and do not move).

    ``hessians`` (n, d, d) per-sample Hessians, or ``features`` (n, d) with ``H_i = x_i x_i^T``; ``batch`` B in
    ``1..n``; ``replacement``: ``B`` i.i.d. uniform indices per step (``c = 1/B``) or one uniform ``B``-subset
    (``c = (n - B)/(B (n - 1))``). Returns ``{"L", "Q", "r", "c", "H"}`` (``H`` the mean Hessian, d x d)."""
    who = "second_moment_operator"
    if (hessians is None) == (features is None):
        raise ValueError(f"{who}: give exactly one of hessians (n, d, d) or features (n, d)")
    if features is not None:
        X = _rows("features", features, who)
        n = X.shape[0]
        H = X.T @ X / n
    else:
        Hs = np.asarray(hessians, dtype=float)
        if Hs.ndim != 3 or Hs.shape[1] != Hs.shape[2] or Hs.shape[0] < 1 or not np.all(np.isfinite(Hs)):
            raise ValueError(f"{who}: hessians must be a finite (n, d, d) array, got shape {Hs.shape}")
        Hs = 0.5 * (Hs + np.swapaxes(Hs, 1, 2))
        n = Hs.shape[0]
        H = Hs.mean(axis=0)
    B = _count("batch", batch, who)
    if B > n:
        raise ValueError(f"{who}: batch must be <= n = {n}, got {B}")
    if features is not None:
        U = _range_basis(H)
    else:
        U = _range_basis(np.einsum("nij,nkj->ik", Hs, Hs))
    r = U.shape[1]
    if r > MAX_REDUCED_DIM:
        raise ValueError(
            f"{who}: the Hessians span {r} > {MAX_REDUCED_DIM} directions; the dense {r * r} x {r * r} map is too large"
        )
    c = 1.0 / B if replacement else (0.0 if n == 1 else (n - B) / (B * (n - 1)))
    Hr = U.T @ H @ U
    if features is not None:
        Xr = X @ U
        Phi = np.einsum("ni,nj->nij", Xr, Xr).reshape(n, r * r)  # vec(x x^T) = x kron x
        mean_kk = Phi.T @ Phi / n
    else:
        Hsr = np.einsum("ia,nij,jb->nab", U, Hs, U)
        mean_kk = np.einsum("nab,ncd->acbd", Hsr, Hsr).reshape(r * r, r * r) / n
    I = np.eye(r)
    kHH = np.kron(Hr, Hr)
    Lop = np.kron(I, Hr) + np.kron(Hr, I)
    Q = kHH + c * (mean_kk - kHH)
    return {"L": 0.5 * (Lop + Lop.T), "Q": 0.5 * (Q + Q.T), "r": r, "c": c, "H": H}


def gaussian_second_moment_operator(Sigma, batch) -> dict:
    """``L`` and ``Q`` (as :func:`second_moment_operator`) for online SGD on Gaussian inputs ``x ~ N(0, Sigma)``
    with ``B`` fresh samples per step (ours, by Isserlis): ``Q(M) = (1 + 1/B) Sigma M Sigma + tr(Sigma M) Sigma/B``."""
    who = "gaussian_second_moment_operator"
    S = _spd("Sigma", Sigma, who)
    B = _pos("batch", batch, who)
    d = S.shape[0]
    if d > MAX_REDUCED_DIM:
        raise ValueError(
            f"{who}: d = {d} > {MAX_REDUCED_DIM}; the dense {d * d} x {d * d} map is too large "
            f"(for Sigma = lam I use gaussian_threshold_isotropic)"
        )
    v = S.reshape(-1)
    Q = (1 + 1 / B) * np.kron(S, S) + np.outer(v, v) / B
    I = np.eye(d)
    return {"L": np.kron(I, S) + np.kron(S, I), "Q": 0.5 * (Q + Q.T), "r": d, "c": 1 / B, "H": S}


def spectral_radius(op: dict, eta) -> float:
    """Spectral radius of ``T_eta = I - eta L + eta^2 Q`` (``op`` from :func:`second_moment_operator` or
    :func:`gaussian_second_moment_operator`): ``E ||delta_t||^2`` grows like ``rho^t``."""
    eta = _pos("eta", eta, "spectral_radius")
    T = np.eye(op["L"].shape[0]) - eta * op["L"] + eta**2 * op["Q"]
    w = np.linalg.eigvalsh(0.5 * (T + T.T))
    return float(max(abs(w[0]), abs(w[-1])))


def mean_square_path(op: dict, eta, n_steps: int, M0=None) -> np.ndarray:
    """Exact ``E ||delta_t||^2`` for ``t = 0..n_steps`` under ``T_eta`` (``op`` from
    :func:`second_moment_operator`), from ``M0`` given in the reduced ``r``-dimensional range coordinates
    (default ``I_r / r``: a uniformly random unit vector in the range, as :func:`simulate_finite_sgd` starts)."""
    who = "mean_square_path"
    eta = _pos("eta", eta, who)
    steps = _count("n_steps", n_steps, who, minimum=0)
    r = op["r"]
    m = (np.eye(r) / r if M0 is None else _matrix("M0", M0, who, r)).reshape(-1)
    T = np.eye(r * r) - eta * op["L"] + eta**2 * op["Q"]
    out = [float(np.trace(m.reshape(r, r)))]
    for _ in range(steps):
        m = T @ m
        out.append(float(np.trace(m.reshape(r, r))))
    return np.asarray(out)


def linear_stability_threshold(
    hessians=None, *, features=None, batch=None, replacement: bool = True, op: dict | None = None
) -> float:
    """Exact mean-square stability threshold ``eta*`` of minibatch SGD at a minimum (ours): ``rho(T_eta) <= 1``
    iff ``eta <= eta* = 1 / max eig(Q, L)``. Pass the data as :func:`second_moment_operator` takes it, or a
    ready ``op``."""
    if op is None:
        if batch is None:
            raise ValueError("linear_stability_threshold: batch is required")
        op = second_moment_operator(hessians, features=features, batch=batch, replacement=replacement)
    w = linalg.eigh(op["Q"], op["L"], eigvals_only=True)
    return float(1.0 / w[-1])


def gaussian_threshold(Sigma, batch) -> float:
    """``eta*`` of online SGD on Gaussian linear regression for any ``Sigma`` (ours, exact)."""
    return linear_stability_threshold(op=gaussian_second_moment_operator(Sigma, batch))


# ------------------------------------------------------------------------------------------------
# online Gaussian linear regression: closed forms (issue's, checked; see module docstring)
# ------------------------------------------------------------------------------------------------
def _delta(delta, d, who):
    v = np.asarray(delta, dtype=float)
    if v.shape != (d,) or not np.all(np.isfinite(v)):
        raise ValueError(f"{who}: delta must be a finite ({d},) vector, got shape {v.shape}")
    return v


def gaussian_noise_covariance(Sigma, delta, sigma2=0.0) -> np.ndarray:
    """Per-sample gradient covariance ``S(delta) = Sigma delta delta^T Sigma + (delta^T Sigma delta + sigma^2)
    Sigma`` of online linear regression, ``x ~ N(0, Sigma)``, label noise variance ``sigma2``."""
    who = "gaussian_noise_covariance"
    S = _spd("Sigma", Sigma, who)
    v = _delta(delta, S.shape[0], who)
    s2 = _nonneg("sigma2", sigma2, who)
    a = S @ v
    return np.outer(a, a) + (v @ a + s2) * S


def gaussian_alignment_factor(Sigma, delta, sigma2=0.0) -> float:
    """``mu(delta) = 1 + delta^T Sigma^3 delta / ((delta^T Sigma delta + sigma^2) ||Sigma||_F^2)`` (issue's form
    at ``sigma2 = 0``; the ``sigma^2`` term is ours). Always in ``[1, 2]``."""
    who = "gaussian_alignment_factor"
    S = _spd("Sigma", Sigma, who)
    v = _delta(delta, S.shape[0], who)
    s2 = _nonneg("sigma2", sigma2, who)
    a = S @ v
    den = (v @ a + s2) * float(np.sum(S * S))
    if den <= 0:
        raise ValueError(f"{who}: delta = 0 with sigma2 = 0 is a zero-loss point (mu undefined)")
    return float(1.0 + (a @ S @ a) / den)


def gaussian_threshold_isotropic(lam, d, batch) -> float:
    """``eta*`` for ``Sigma = lam I_d``: ``eta* lam (1 + (d + 1)/B) = 2`` (issue's formula; confirmed exactly)."""
    who = "gaussian_threshold_isotropic"
    return 2.0 / (_pos("lam", lam, who) * (1.0 + (_count("d", d, who) + 1) / _pos("batch", batch, who)))


def online_sgd_second_moment(Sigma, eta, batch, sigma2) -> np.ndarray:
    """Stationary ``E delta delta^T`` of discrete online SGD with label noise (ours): the fixed point of
    ``M = T_eta(M) + eta^2 sigma^2 Sigma / B``. ``ValueError`` if ``eta >= eta*`` (no stationary moment)."""
    who = "online_sgd_second_moment"
    op = gaussian_second_moment_operator(Sigma, batch)
    eta = _pos("eta", eta, who)
    s2 = _nonneg("sigma2", sigma2, who)
    if eta >= linear_stability_threshold(op=op):
        raise ValueError(f"{who}: eta = {eta} is at or above the threshold; the second moment diverges")
    S = op["H"]
    d = S.shape[0]
    A = eta * op["L"] - eta**2 * op["Q"]
    m = np.linalg.solve(A, eta**2 * s2 * S.reshape(-1) / float(batch))
    M = m.reshape(d, d)
    return 0.5 * (M + M.T)


def sgd1d_second_moment(lam, sigma2, eta, batch) -> float:
    """Discrete 1D online SGD: ``E x^2 = (eta/B) sigma^2 / (2 - eta lam (1 + 2/B))`` (ours; ``inf`` at or above
    ``eta lam (1 + 2/B) = 2``)."""
    who = "sgd1d_second_moment"
    lam, s2 = _pos("lam", lam, who), _nonneg("sigma2", sigma2, who)
    eta, B = _pos("eta", eta, who), _pos("batch", batch, who)
    den = 2.0 - eta * lam * (1 + 2 / B)
    return float(eta / B * s2 / den) if den > 0 else math.inf


# ------------------------------------------------------------------------------------------------
# 1D Fokker-Planck of online regression: D = (eta / 2B) (2 lam^2 x^2 + lam sigma^2), drift -lam x (Ito)
# ------------------------------------------------------------------------------------------------
def _fp1d_args(lam, sigma2, eta_over_B, who):
    return _pos("lam", lam, who), _pos("sigma2", sigma2, who), _pos("eta_over_B", eta_over_B, who)


def fp1d_exponent(lam, eta_over_B) -> float:
    """``p ∝ (2 lam x^2 + sigma^2)^(-k)``, ``k = 1 + B / (2 eta lam)`` (issue's exponent, Ito; checked)."""
    who = "fp1d_exponent"
    return 1.0 + 1.0 / (2.0 * _pos("eta_over_B", eta_over_B, who) * _pos("lam", lam, who))


def _student(lam, sigma2, r):
    nu = 1.0 + 1.0 / (r * lam)
    return nu, math.sqrt(sigma2 / (2.0 * lam * nu))


def fp1d_density(x, lam, sigma2, eta_over_B) -> np.ndarray:
    """Normalised steady state on the real line: a Student-t, ``nu = 1 + B/(eta lam)``, scale
    ``sigma / sqrt(2 lam nu)`` (ours: the issue's power law, normalised)."""
    lam, s2, r = _fp1d_args(lam, sigma2, eta_over_B, "fp1d_density")
    nu, sc = _student(lam, s2, r)
    from scipy import stats

    return stats.t.pdf(np.asarray(x, dtype=float) / sc, nu) / sc


def fp1d_second_moment(lam, sigma2, eta_over_B, box: float | None = None) -> float:
    """``E x^2 = (eta/B) sigma^2 / (2 (1 - eta lam / B))`` (issue's; ``inf`` for ``eta lam / B >= 1``). With
    ``box = X``: of the density restricted to ``|x| <= X`` (the reflecting-wall steady state on ``[-X, X]``)."""
    lam, s2, r = _fp1d_args(lam, sigma2, eta_over_B, "fp1d_second_moment")
    if r * lam >= 1:
        return math.inf if box is None else _truncated_second_moment(lam, s2, r, float(box))
    if box is None:
        return r * s2 / (2.0 * (1.0 - r * lam))
    return _truncated_second_moment(lam, s2, r, _pos("box", box, "fp1d_second_moment"))


def _truncated_second_moment(lam, s2, r, X):
    # int_0^X x^2 (1 + a x^2)^-k / int_0^X (1 + a x^2)^-k, a = 2 lam / sigma^2, by the incomplete beta:
    # with u = a x^2 / (1 + a x^2): int_0^X x^{2j} (1+a x^2)^-k dx = a^{-j-1/2}/2 B(u; j + 1/2, k - j - 1/2)
    k = 1.0 + 1.0 / (2.0 * r * lam)
    a = 2.0 * lam / s2
    u = a * X * X / (1.0 + a * X * X)

    def part(j):
        p, q = j + 0.5, k - j - 0.5
        if q > 0:
            return a ** (-j - 0.5) / 2 * special.beta(p, q) * special.betainc(p, q, u)
        from scipy import integrate

        return integrate.quad(lambda x: x ** (2 * j) * (1 + a * x * x) ** (-k), 0, X, limit=200)[0]

    return float(part(1) / part(0))


def fp1d_prob_within(a, lam, sigma2, eta_over_B) -> float:
    """``P(|x| < a)`` of the steady state (Student-t CDF; ours)."""
    lam, s2, r = _fp1d_args(lam, sigma2, eta_over_B, "fp1d_prob_within")
    a = _pos("a", a, "fp1d_prob_within")
    nu, sc = _student(lam, s2, r)
    from scipy import stats

    return float(2.0 * stats.t.cdf(a / sc, nu) - 1.0)


def fp1d_problem(lam=1.0, sigma2=1.0, eta_over_B=0.25, *, box=20.0, cells=1600):
    """The package's 1D problem on ``[-box, box]`` (reflecting walls): ``Custom`` landscape ``lam x^2 / 2``
    and ``Field`` noise ``D = (eta/2B)(2 lam^2 x^2 + lam sigma^2)``."""
    from ..model.grid import Grid
    from ..model.landscapes import Custom
    from ..model.noise import Field
    from ..model.problem import Problem

    who = "fp1d_problem"
    lam, s2, r = _fp1d_args(lam, sigma2, eta_over_B, who)
    box = _pos("box", box, who)
    cells = _count("cells", cells, who, minimum=8)
    land = Custom(
        lambda t: 0.5 * lam * t[..., 0] ** 2, lambda t: lam * t, lambda t: np.full(t.shape + (1,), lam), dim=1
    )
    noise = Field(lambda t: (0.5 * r * (2 * lam**2 * t[..., 0] ** 2 + lam * s2))[..., None, None])
    return Problem(Grid([(-box, box, cells)], bc="reflecting"), land, noise)


def fp1d_solve(lam=1.0, sigma2=1.0, eta_over_B=0.25, *, box=20.0, cells=1600, a=0.5) -> dict:
    """Solve the 1D problem with ``fp.steady_state`` and compare with the closed forms.

    Returns ``ex2``, ``p_within`` (``P(|x| < a)``) from the grid, the exact values on the real line
    (``ex2_exact``, ``p_within_exact``), ``ex2_box`` (exact on the box), ``truncation_error``
    (``ex2_box - ex2_exact``: what the walls alone cost), ``discretisation_error`` (``ex2 - ex2_box``),
    ``tail_mass`` (exact ``P(|x| > box)``) and the ``density`` (``fp.Density``). The truncation error of
    ``E x^2`` falls like ``box^(3 - 2k) `` (measured, lam = sigma2 = 1, eta/B = 0.25: -9.9e-5, -1.2e-5, -1.6e-6
    at box 10, 20, 40)."""
    from ..solvers.steady import steady_state

    prob = fp1d_problem(lam, sigma2, eta_over_B, box=box, cells=cells)
    ss = steady_state(prob)
    x = prob.grid.centers[0]
    h = prob.grid.spacing[0]
    p = ss.values
    ex2 = float(np.sum(x * x * p) * h)
    pw = float(np.sum(p[np.abs(x) < a]) * h)  # cell centres inside (cells straddling +-a not split)
    ex2_exact = fp1d_second_moment(lam, sigma2, eta_over_B)
    ex2_box = fp1d_second_moment(lam, sigma2, eta_over_B, box=box)
    tail = 1.0 - fp1d_prob_within(box, lam, sigma2, eta_over_B)
    return {
        "ex2": ex2,
        "p_within": pw,
        "ex2_exact": ex2_exact,
        "ex2_box": ex2_box,
        "p_within_exact": fp1d_prob_within(a, lam, sigma2, eta_over_B),
        "truncation_error": ex2_box - ex2_exact,
        "discretisation_error": ex2 - ex2_box,
        "tail_mass": tail,
        "residual": float(ss.info.get("residual", np.nan)),
        "density": ss,
    }


# ------------------------------------------------------------------------------------------------
# particles (vectorised numpy, seeded)
# ------------------------------------------------------------------------------------------------
def overparameterised_regression(n=20, d=100, seed=0, scale=None) -> np.ndarray:
    """Features ``x_i ~ N(0, I_d / d)`` (n, d) of an over-parameterised linear regression (``n < d``: a
    ``(d - n)``-dimensional manifold of interpolating minima). ``scale`` multiplies them."""
    who = "overparameterised_regression"
    n, d = _count("n", n, who), _count("d", d, who)
    X = np.random.default_rng(seed).standard_normal((n, d)) / math.sqrt(d)
    return X if scale is None else X * _pos("scale", scale, who)


def _renorm(delta, logs):
    nrm = np.sqrt(np.einsum("ij,ij->i", delta, delta))
    nrm = np.where(nrm > 0, nrm, 1.0)
    return delta / nrm[:, None], logs + np.log(nrm)


def _log_mean_sq(logs):
    m = logs.max()
    return float(2 * m + np.log(np.mean(np.exp(2 * (logs - m)))))


def simulate_finite_sgd(
    features, eta, batch, *, n_particles=1000, n_steps=1000, replacement=True, delta0=None, seed=0, record_every=None
) -> dict:
    """Minibatch SGD at an interpolating minimum of linear regression with ``features`` (n, d):
    ``delta <- delta - (eta/B) sum_{i in batch} x_i (x_i^T delta)`` (the linearised dynamics; exact for a linear
    model). ``replacement``: ``B`` i.i.d. indices per step, or a uniform ``B``-subset per step. Particles are
    renormalised every step and their log-norms carried, so growth and decay are followed over any range.

    ``delta0``: (d,) or (n_particles, d); default i.i.d. Gaussian directions in the range of ``H``. Returns
    ``log_norm`` (final
    ``ln ||delta||`` per particle), ``times`` and ``log_mean_sq`` (``ln mean ||delta||^2`` at the recorded
    steps), ``growth`` (fitted per-step factor of ``mean ||delta||^2`` over the second half of the records)."""
    who = "simulate_finite_sgd"
    X = _rows("features", features, who)
    n, d = X.shape
    eta = _pos("eta", eta, who)
    B = _count("batch", batch, who)
    if B > n:
        raise ValueError(f"{who}: batch must be <= n = {n}, got {B}")
    N = _count("n_particles", n_particles, who)
    steps = _count("n_steps", n_steps, who)
    every = max(1, steps // 50) if record_every is None else _count("record_every", record_every, who)
    rng = np.random.default_rng(seed)
    if delta0 is None:
        U = _range_basis(X.T @ X / n)
        delta = rng.standard_normal((N, U.shape[1])) @ U.T
    else:
        delta = np.broadcast_to(np.asarray(delta0, dtype=float), (N, d)).copy()
    delta, _ = _renorm(delta, np.zeros(N))  # unit vectors: E ||delta_0||^2 = 1
    logs = np.zeros(N)
    rows = np.arange(N)[:, None]
    times, rec = [0], [_log_mean_sq(logs)]
    for k in range(1, steps + 1):
        if replacement:
            idx = rng.integers(0, n, size=(N, B))
        else:
            idx = np.argpartition(rng.random((N, n)), B - 1, axis=1)[:, :B] if B < n else np.tile(np.arange(n), (N, 1))
        w = np.bincount((rows * n + idx).ravel(), minlength=N * n).reshape(N, n) / B
        res = delta @ X.T  # (N, n) residuals x_i^T delta
        delta = delta - eta * (w * res) @ X
        delta, logs = _renorm(delta, logs)
        if k % every == 0 or k == steps:
            times.append(k)
            rec.append(_log_mean_sq(logs))
    times, rec = np.asarray(times), np.asarray(rec)
    half = times >= times[-1] / 2
    slope = np.polyfit(times[half], rec[half], 1)[0] if half.sum() >= 2 else np.nan
    return {"log_norm": logs, "times": times, "log_mean_sq": rec, "growth": float(np.exp(slope))}


def simulate_online_regression(
    Sigma, eta, batch, *, sigma2=0.0, n_particles=1000, n_steps=1000, delta0=None, seed=0
) -> np.ndarray:
    """Discrete online SGD on Gaussian linear regression: each step draws ``B`` fresh ``x ~ N(0, Sigma)``,
    ``eps ~ N(0, sigma2)`` per particle and sets ``delta <- delta - (eta/B) sum_b x_b (x_b^T delta - eps_b)``.
    Returns the final ``delta`` (n_particles, d); non-finite values mark diverged particles."""
    who = "simulate_online_regression"
    S = _spd("Sigma", Sigma, who)
    d = S.shape[0]
    eta = _pos("eta", eta, who)
    B = _count("batch", batch, who)
    s = math.sqrt(_nonneg("sigma2", sigma2, who))
    N = _count("n_particles", n_particles, who)
    steps = _count("n_steps", n_steps, who, minimum=0)
    C = np.linalg.cholesky(S)
    rng = np.random.default_rng(seed)
    delta = np.zeros((N, d)) if delta0 is None else np.broadcast_to(np.asarray(delta0, dtype=float), (N, d)).copy()
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            x = rng.standard_normal((N, B, d)) @ C.T
            res = np.einsum("nbd,nd->nb", x, delta) - s * rng.standard_normal((N, B))
            delta = delta - (eta / B) * np.einsum("nb,nbd->nd", res, x)
    return delta


def simulate_fp1d_sde(
    lam=1.0, sigma2=1.0, eta_over_B=0.25, *, n_particles=20000, t_end=10.0, dt=1e-3, x0=0.0, seed=0, average_from=None
) -> dict:
    """Euler-Maruyama particles of the 1D SDE ``dx = -lam x dt + sqrt((eta/B)(2 lam^2 x^2 + lam sigma^2)) dW``
    (Ito; ``2D = (eta/B) S``). Returns the final ``x`` and, with ``average_from = t0``, the time-averaged
    ``p_within_05`` (``P(|x| < 0.5)``) and ``ex2`` over ``t >= t0``, sampled every step (correlated samples;
    use several seeds or batch means for error bars)."""
    who = "simulate_fp1d_sde"
    lam, s2, r = _fp1d_args(lam, sigma2, eta_over_B, who)
    N = _count("n_particles", n_particles, who)
    t_end, dt = _pos("t_end", t_end, who), _pos("dt", dt, who)
    steps = int(round(t_end / dt))
    if steps < 1 or abs(steps * dt - t_end) > 1e-9 * max(1.0, t_end):
        raise ValueError(f"{who}: t_end / dt must be a whole number, got {t_end} / {dt}")
    k0 = steps + 1 if average_from is None else int(math.ceil(_nonneg("average_from", average_from, who) / dt - 1e-9))
    rng = np.random.default_rng(seed)
    x = np.full(N, float(x0))
    inside = sq = 0.0
    m = 0
    sdt = math.sqrt(dt)
    for k in range(1, steps + 1):
        x = x - lam * x * dt + np.sqrt(r * (2 * lam**2 * x * x + lam * s2)) * sdt * rng.standard_normal(N)
        if k >= k0:
            inside += np.count_nonzero(np.abs(x) < 0.5) / N
            sq += float(np.mean(x * x))
            m += 1
    out = {"x": x}
    if m:
        out["p_within_05"] = float(inside / m)
        out["ex2"] = float(sq / m)
    return out


# ------------------------------------------------------------------------------------------------
# headline
# ------------------------------------------------------------------------------------------------
def alignment_headline(quick: bool = False, seed: int = 0) -> dict:
    """The numbers behind issue 14 item 2, as JSON-able floats.

    * online Gaussian regression ``Sigma = diag(1, .5, .25)``, ``delta = (1, 1, 1)``: ``mu``;
    * over-parameterised regression (n = 20, d = 100, ``x ~ N(0, I/d)``, B = 2): the exact threshold ``eta*``
      with and without replacement, the bound ``sqrt(B / mu_min) / ||H||_F``, and particles at
      ``0.8 eta*`` and ``1.25 eta*`` (growth factor per step of ``mean ||delta||^2``, against ``rho``);
    * the 1D Fokker-Planck (``lam = sigma^2 = 1``, ``eta/B = 0.25``): ``E x^2`` and ``P(|x| < 0.5)`` from the
      grid solver and SDE particles, against ``1/6`` and ``0.8253``."""
    out = {"quick": bool(quick), "seed": int(seed)}
    Sig = np.diag([1.0, 0.5, 0.25])
    out["mu_gaussian"] = gaussian_alignment_factor(Sig, np.ones(3))
    n, d, B = 20, 100, 2
    X = overparameterised_regression(n, d, seed=seed)
    op = second_moment_operator(features=X, batch=B, replacement=True)
    eta_star = linear_stability_threshold(op=op)
    eta_star_wo = linear_stability_threshold(features=X, batch=B, replacement=False)
    rng_mu = alignment_range(X)
    eta_bound = bound_learning_rate(rng_mu["frobenius_H"], B, rng_mu["min"])
    out.update(
        n=n,
        d=d,
        batch=B,
        eta_star=eta_star,
        eta_star_without_replacement=eta_star_wo,
        eta_bound=eta_bound,
        mu_min=rng_mu["min"],
        mu_max=rng_mu["max"],
        frobenius_H=rng_mu["frobenius_H"],
        sharpness=float(np.linalg.eigvalsh(op["H"])[-1]),
        eta_gd=2.0 / float(np.linalg.eigvalsh(op["H"])[-1]),
    )
    N, steps = (300, 150) if quick else (2000, 600)
    parts = {}
    for f in (0.8, 1.25):
        sim = simulate_finite_sgd(X, f * eta_star, B, n_particles=N, n_steps=steps, seed=seed + 1)
        parts[str(f)] = {
            "eta": f * eta_star,
            "growth": sim["growth"],
            "rho": spectral_radius(op, f * eta_star),
            "times": sim["times"].tolist(),
            "log_mean_sq": sim["log_mean_sq"].tolist(),
        }
    out["particles"] = parts
    one = fp1d_solve(cells=800 if quick else 1600)
    out["fp1d"] = {k: v for k, v in one.items() if k != "density"}
    sde = simulate_fp1d_sde(
        n_particles=4000 if quick else 20000, t_end=8.0, dt=2e-3 if quick else 1e-3, seed=seed, average_from=4.0
    )
    out["fp1d"]["p_within_sde"] = sde["p_within_05"]
    out["fp1d"]["sgd_ex2_B1"] = sgd1d_second_moment(1.0, 1.0, 0.25, 1)
    dens = one["density"]
    out["fp1d"]["x"] = dens.grid.centers[0].tolist()
    out["fp1d"]["p"] = dens.values.tolist()
    return out


def plot_alignment_headline(result: dict, path) -> None:
    """Two panels: ``ln mean ||delta||^2`` of the particles below/above ``eta*`` with the exact ``rho^t``; the
    1D steady state (grid) against the Student-t, log scale (power-law tails)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.6))  # no pyplot: the caller's backend is left alone
    FigureCanvasAgg(fig)
    ax = fig.subplots(1, 2)
    for key, rec in result["particles"].items():
        t = np.asarray(rec["times"])
        (line,) = ax[0].plot(t, rec["log_mean_sq"], label=f"{key} eta*  (particles)")
        ax[0].plot(
            t,
            rec["log_mean_sq"][0] + t * np.log(rec["rho"]),
            "--",
            color=line.get_color(),
            label=f"rho^t, rho = {rec['rho']:.4f}",
        )
    ax[0].set_xlabel("step")
    ax[0].set_ylabel("ln mean |delta|^2")
    ax[0].set_title(
        f"n={result['n']}, d={result['d']}, B={result['batch']}: eta* = {result['eta_star']:.3g}"
        f" <= bound {result['eta_bound']:.3g}",
        fontsize=8,
    )
    ax[0].legend(fontsize=7)
    f1 = result["fp1d"]
    x = np.asarray(f1["x"])
    ax[1].semilogy(x, f1["p"], label="fp.steady_state")
    ax[1].semilogy(x, fp1d_density(x, 1.0, 1.0, 0.25), "--", label="(2x^2+1)^-3 (Student-t, nu=5)")
    ax[1].set_xlabel("x")
    ax[1].set_title(f"E x^2 = {f1['ex2']:.5f} (1/6), P(|x|<.5) = {f1['p_within']:.4f}", fontsize=8)
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
