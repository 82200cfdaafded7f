"""Loss landscapes ``L(theta)`` with exact, vectorised gradients and Hessians.

Every landscape takes points of shape ``(..., d)`` and returns

* ``loss(theta)``    -> ``(...)``
* ``grad(theta)``    -> ``(..., d)``      the gradient ``dL/dtheta_i``
* ``hessian(theta)`` -> ``(..., d, d)``   ``H_ij = d^2 L / dtheta_i dtheta_j``

The drift velocity of gradient dynamics is ``v = -grad L`` (see :mod:`fokkerplanck.model.problem`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .grid import Frame


def _as_points(theta, dim: int | None, who: str) -> np.ndarray:
    theta = np.asarray(theta, dtype=float)
    if theta.ndim == 0:
        theta = theta[None]
    if dim is not None and theta.shape[-1] != dim:
        raise ValueError(f"{who} is {dim}-dimensional but got points with last axis {theta.shape[-1]}")
    return theta


class Landscape:
    """Base class: subclasses implement ``loss``, ``grad`` and ``hessian`` on ``(..., d)`` points."""

    #: dimension of the parameter space, or ``None`` when any dimension is accepted
    dim: int | None = None
    #: a short name used in configs and saved results
    kind: str = "landscape"

    def loss(self, theta) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def grad(self, theta) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def hessian(self, theta) -> np.ndarray:
        """Hessian by central differences of :meth:`grad` (subclasses override with the exact one)."""
        theta = _as_points(theta, self.dim, type(self).__name__)
        d = theta.shape[-1]
        out = np.empty(theta.shape + (d,))
        for j in range(d):
            step = 1e-5 * np.maximum(1.0, np.abs(theta[..., j]))
            tp = theta.copy()
            tm = theta.copy()
            tp[..., j] += step
            tm[..., j] -= step
            out[..., :, j] = (self.grad(tp) - self.grad(tm)) / (2 * step[..., None])
        return 0.5 * (out + np.swapaxes(out, -1, -2))

    def drift(self, theta) -> np.ndarray:
        """Gradient-descent velocity ``v = -grad L``."""
        return -self.grad(theta)

    def params(self) -> dict:
        """Parameters that reconstruct this landscape (for saved results)."""
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


class Quadratic(Landscape):
    """``L(theta) = 1/2 (theta - c)^T A (theta - c)`` -- the Ornstein-Uhlenbeck landscape.

    ``A`` is symmetrised; it need not be positive definite (saddles are allowed), but the
    stationary density only exists for positive-definite ``A`` on an unbounded domain.
    """

    kind = "quadratic"

    def __init__(self, A, center=None):
        A = np.atleast_2d(np.asarray(A, dtype=float))
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"Quadratic: A must be a square matrix, got shape {A.shape}")
        if not np.all(np.isfinite(A)):
            raise ValueError("Quadratic: A has non-finite entries")
        self.A = 0.5 * (A + A.T)
        self.dim = A.shape[0]
        self.center = np.zeros(self.dim) if center is None else np.asarray(center, dtype=float).reshape(self.dim)

    def loss(self, theta):
        z = _as_points(theta, self.dim, "Quadratic") - self.center
        return 0.5 * np.sum((z @ self.A) * z, axis=-1)

    def grad(self, theta):
        z = _as_points(theta, self.dim, "Quadratic") - self.center
        return z @ self.A.T

    def hessian(self, theta):
        theta = _as_points(theta, self.dim, "Quadratic")
        return np.broadcast_to(self.A, theta.shape[:-1] + self.A.shape).copy()

    def params(self):
        return {"A": self.A.tolist(), "center": self.center.tolist()}


class DegenerateValley(Landscape):
    """The two-dimensional near-degenerate valley of Yang, Tang & Tu, PRL 130, 237101 (2023), Eq. (8):

        L(x, y) = 1/2 eps lambda_bar0 x^2 + 1/2 lambda(x) y^2,     lambda(x) = sum_n lambda_n x^(2n).

    ``theta = (x, y)``: ``x`` is the flat (degenerate) variable, ``y`` the sharp one. ``lambda_bar0``
    defaults to ``lambda_0`` as in the paper. The flatness of the solution ``(x, 0)`` is
    ``F(x) = lambda(x)^(-1/2)`` (PRL Eq. 6 with one sharp direction).

    The paper's Fig. 5 landscape is ``DegenerateValley(lambdas=(8, -2, 1), eps=1e-3)``: global minimum
    ``x* = 0`` (``lambda = 8``) and flattest solutions ``x_F = +-1`` (``lambda = 7``).
    """

    kind = "degenerate-valley"
    dim = 2

    def __init__(self, lambdas=(8.0, -2.0, 1.0), eps=1e-3, lambda_bar0=None):
        lam = np.atleast_1d(np.asarray(lambdas, dtype=float))
        if lam.ndim != 1 or lam.size == 0 or not np.all(np.isfinite(lam)):
            raise ValueError("DegenerateValley: lambdas must be a non-empty list of finite numbers")
        if not np.isfinite(eps):
            raise ValueError("DegenerateValley: eps must be finite")
        self.lambdas = lam
        self.eps = float(eps)
        self.lambda_bar0 = float(lam[0] if lambda_bar0 is None else lambda_bar0)

    # lambda(x) and its derivatives, as polynomials in x
    def lam(self, x, derivative: int = 0):
        """``lambda(x) = sum_n lambda_n x^(2n)`` or its first/second derivative, the powers ``x^(2n) = r^n``
        (``r = x^2``) by repeated products (numpy's ``x**4`` calls ``pow`` element by element: 3x slower)."""
        x = np.asarray(x, dtype=float)
        if derivative not in (0, 1, 2):
            raise ValueError(f"DegenerateValley.lam: derivative must be 0, 1 or 2, got {derivative}")
        r = x * x
        out = np.zeros_like(x)
        below = np.ones_like(x)  # r^(n-1) at the term n >= 1
        for n, c in enumerate(self.lambdas):
            if n == 0:
                if derivative == 0:
                    out += c
                continue
            if derivative == 0:
                out += c * (below * r)
            elif derivative == 1:
                out += (2 * n * c) * (x * below)
            else:
                out += (2 * n * (2 * n - 1) * c) * below
            below = below * r
        return out

    def flatness(self, x):
        """``F(x) = lambda(x)^(-1/2)`` (PRL Eq. 6, N_S = 1)."""
        return self.lam(x) ** -0.5

    def loss(self, theta):
        t = _as_points(theta, 2, "DegenerateValley")
        x, y = t[..., 0], t[..., 1]
        return 0.5 * self.eps * self.lambda_bar0 * x**2 + 0.5 * self.lam(x) * y**2

    def grad(self, theta):
        t = _as_points(theta, 2, "DegenerateValley")
        x, y = t[..., 0], t[..., 1]
        gx = self.eps * self.lambda_bar0 * x + 0.5 * self.lam(x, 1) * y**2
        gy = self.lam(x) * y
        return np.stack([gx, gy], axis=-1)

    def hessian(self, theta):
        t = _as_points(theta, 2, "DegenerateValley")
        x, y = t[..., 0], t[..., 1]
        hxx = self.eps * self.lambda_bar0 + 0.5 * self.lam(x, 2) * y**2
        hxy = self.lam(x, 1) * y
        hyy = self.lam(x)
        return np.stack([np.stack([hxx, hxy], -1), np.stack([hxy, hyy], -1)], -2)

    def params(self):
        return {"lambdas": self.lambdas.tolist(), "eps": self.eps, "lambda_bar0": self.lambda_bar0}


class Custom(Landscape):
    """A user landscape from callables on ``(..., d)`` points.

    ``loss(theta) -> (...)``, ``grad(theta) -> (..., d)``, optional ``hessian(theta) -> (..., d, d)``;
    without ``hessian`` it is computed by central differences of ``grad``.
    """

    kind = "custom"

    def __init__(self, loss: Callable, grad: Callable, hessian: Callable | None = None, dim: int | None = None):
        if not callable(loss) or not callable(grad) or (hessian is not None and not callable(hessian)):
            raise TypeError("Custom: loss, grad (and hessian when given) must be callables")
        self._loss, self._grad, self._hessian = loss, grad, hessian
        self.dim = dim

    def _check(self, out, shape, what):
        out = np.asarray(out, dtype=float)
        if out.shape != shape:
            raise ValueError(f"Custom landscape: {what} returned shape {out.shape}, expected {shape}")
        return out

    def loss(self, theta):
        t = _as_points(theta, self.dim, "Custom")
        return self._check(self._loss(t), t.shape[:-1], "loss")

    def grad(self, theta):
        t = _as_points(theta, self.dim, "Custom")
        return self._check(self._grad(t), t.shape, "grad")

    def hessian(self, theta):
        if self._hessian is None:
            return super().hessian(theta)
        t = _as_points(theta, self.dim, "Custom")
        return self._check(self._hessian(t), t.shape + (t.shape[-1],), "hessian")


class Transformed(Landscape):
    """A landscape placed in the problem's coordinates by an affine frame ``theta = origin + M xi``:

        L(theta) = L0(xi),  xi = M^-1 (theta - origin),   grad L = M^-T grad L0,   H = M^-T H0 M^-1.

    With ``Frame.rotation(angle)`` this is ``base`` rotated by ``angle`` (a rotated valley); the same frame on
    the grid (``Grid(..., frame=...)``) then solves the rotated problem on the unrotated problem's cells."""

    kind = "transformed"

    def __init__(self, base: Landscape, frame):
        if not isinstance(base, Landscape):
            raise TypeError(f"Transformed: base must be a Landscape, got {type(base).__name__}")
        self.base = base
        self.frame = frame if isinstance(frame, Frame) else Frame(frame)
        if base.dim is not None and base.dim != self.frame.ndim:
            raise ValueError(f"Transformed: the landscape is {base.dim}-dimensional, the frame {self.frame.ndim}")
        self.dim = self.frame.ndim

    def loss(self, theta):
        return self.base.loss(self.frame.to_xi(_as_points(theta, self.dim, "Transformed")))

    def grad(self, theta):
        xi = self.frame.to_xi(_as_points(theta, self.dim, "Transformed"))
        return self.base.grad(xi) @ self.frame.inverse

    def hessian(self, theta):
        xi = self.frame.to_xi(_as_points(theta, self.dim, "Transformed"))
        Minv = self.frame.inverse
        return np.einsum("ji,...jk,kl->...il", Minv, self.base.hessian(xi), Minv)

    def params(self):
        return {"base": repr(self.base), **self.frame.to_dict()}


class HighDimValley(Landscape):
    """The high-dimensional degenerate valley of Yang, Tang & Tu, PRL 130, 237101 (2023), Eq. (5) plus the
    degeneracy-breaking term of the text after Eq. (7):

        L(x, y) = 1/2 sum_i lambda^(i)(x) y_i^2 + (eps/2) lambda_bar0 |x|^2,
        lambda^(i)(x) = sum_{n=0}^{K-1} lambdas[i, n] (|x|^2)^n.

    ``theta = (x_1 .. x_{n_flat}, y_1 .. y_{n_sharp})`` (flat variables first). ``lambdas`` has shape
    ``(n_sharp, K)``; a 1D ``(K,)`` array is used for every sharp variable. ``lambda_bar0`` defaults to the
    mean of ``lambdas[:, 0]``. With ``n_flat = n_sharp = 1`` this is :class:`DegenerateValley`.
    """

    kind = "high-dim-valley"

    def __init__(
        self, n_flat: int = 1, n_sharp: int = 1, lambdas=(8.0, -2.0, 1.0), eps: float = 1e-3, lambda_bar0=None
    ):
        if int(n_flat) != n_flat or int(n_sharp) != n_sharp or n_flat < 1 or n_sharp < 1:
            raise ValueError(f"HighDimValley: n_flat and n_sharp must be integers >= 1, got {n_flat}, {n_sharp}")
        self.n_flat, self.n_sharp = int(n_flat), int(n_sharp)
        lam = np.asarray(lambdas, dtype=float)
        if lam.ndim == 0:
            lam = lam[None]
        if lam.ndim == 1:
            lam = np.broadcast_to(lam, (self.n_sharp, lam.size)).copy()
        if lam.ndim != 2 or lam.shape[0] != self.n_sharp or lam.shape[1] == 0:
            raise ValueError(
                f"HighDimValley: lambdas must have shape (K,) or (n_sharp={self.n_sharp}, K), got {np.shape(lambdas)}"
            )
        if not np.all(np.isfinite(lam)):
            raise ValueError("HighDimValley: lambdas must be finite")
        if not np.isfinite(eps):
            raise ValueError("HighDimValley: eps must be finite")
        self.lambdas = lam
        self.eps = float(eps)
        self.lambda_bar0 = float(np.mean(lam[:, 0]) if lambda_bar0 is None else lambda_bar0)
        self.dim = self.n_flat + self.n_sharp

    # --- lambda^(i) as polynomials in r = |x|^2 ----------------------------------------------------
    def _flat_points(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if self.n_flat == 1 and (x.ndim == 0 or x.shape[-1] != 1):
            x = x[..., None]
        if x.shape[-1] != self.n_flat:
            raise ValueError(f"HighDimValley: flat points need a last axis of {self.n_flat}, got {x.shape}")
        return x

    def _lam_r(self, r, derivative: int = 0):
        """``lambda^(i)(r)`` or its ``derivative``-th derivative in ``r = |x|^2``; shape ``r.shape + (n_sharp,)``."""
        r = np.asarray(r, dtype=float)[..., None]
        out = np.zeros(r.shape[:-1] + (self.n_sharp,))
        for n in range(derivative, self.lambdas.shape[1]):
            fac = 1.0
            for k in range(derivative):
                fac *= n - k
            out = out + fac * self.lambdas[:, n] * r ** (n - derivative)
        return out

    def lam(self, x):
        """``lambda^(i)(x)`` for flat points ``x`` of shape ``(..., n_flat)``; returns ``(..., n_sharp)``."""
        x = self._flat_points(x)
        return self._lam_r(np.sum(x * x, axis=-1))

    def flatness(self, x):
        """``F(x) = prod_i lambda^(i)(x)^(-1/(2 N_S))`` (PRL Eq. 6)."""
        lam = self.lam(x)
        return np.exp(-np.sum(np.log(lam), axis=-1) / (2 * self.n_sharp))

    def noise_weighted_flatness(self, x, delta_s: float = 1.0):
        """``F_hat(x) = prod_i F^(i)(x)^gamma_i`` (PRL Eq. 16), ``gamma_i = Delta^(i) / sum_j Delta^(j)`` with
        ``Delta^(i) = Delta_S lambda^(i)(0)^2`` (``Delta_S`` cancels in ``gamma``; kept for clarity)."""
        d = float(delta_s) * self.lambdas[:, 0] ** 2
        if not d.sum() > 0:
            raise ValueError("noise_weighted_flatness: all Delta^(i) vanish")
        gamma = d / d.sum()
        return np.exp(-0.5 * np.sum(gamma * np.log(self.lam(x)), axis=-1))

    # --- loss and derivatives --------------------------------------------------------------------
    def _split(self, theta):
        t = _as_points(theta, self.dim, "HighDimValley")
        return t, t[..., : self.n_flat], t[..., self.n_flat :]

    def loss(self, theta):
        _, x, y = self._split(theta)
        r = np.sum(x * x, axis=-1)
        return 0.5 * np.sum(self._lam_r(r) * y * y, axis=-1) + 0.5 * self.eps * self.lambda_bar0 * r

    def grad(self, theta):
        _, x, y = self._split(theta)
        r = np.sum(x * x, axis=-1)
        S = np.sum(self._lam_r(r, 1) * y * y, axis=-1)  # sum_i lambda_i'(r) y_i^2
        gx = (S + self.eps * self.lambda_bar0)[..., None] * x
        gy = self._lam_r(r) * y
        return np.concatenate([gx, gy], axis=-1)

    def hessian(self, theta):
        t, x, y = self._split(theta)
        nf = self.n_flat
        r = np.sum(x * x, axis=-1)
        l0, l1, l2 = self._lam_r(r), self._lam_r(r, 1), self._lam_r(r, 2)
        S1 = np.sum(l1 * y * y, axis=-1)
        S2 = np.sum(l2 * y * y, axis=-1)
        H = np.zeros(t.shape + (self.dim,))
        eye = np.eye(nf)
        H[..., :nf, :nf] = (S1 + self.eps * self.lambda_bar0)[..., None, None] * eye + 2.0 * S2[..., None, None] * x[
            ..., :, None
        ] * x[..., None, :]
        hxy = 2.0 * x[..., :, None] * (l1 * y)[..., None, :]  # d^2 L / dx_k dy_i = 2 lambda_i' y_i x_k
        H[..., :nf, nf:] = hxy
        H[..., nf:, :nf] = np.swapaxes(hxy, -1, -2)
        idx = np.arange(nf, self.dim)
        H[..., idx, idx] = l0
        return H

    def params(self):
        return {
            "n_flat": self.n_flat,
            "n_sharp": self.n_sharp,
            "lambdas": self.lambdas.tolist(),
            "eps": self.eps,
            "lambda_bar0": self.lambda_bar0,
        }


class MultiValley(Landscape):
    """Soft minimum of quadratic wells: sharp and flat minima separated by barriers.

        q_k(theta) = 1/2 (theta - c_k)^T C_k (theta - c_k) + b_k,
        L(theta)   = -(1/beta) log sum_k exp(-beta q_k(theta)).

    ``centers`` ``(K, d)``; ``curvatures`` ``(K,)`` scalars, ``(K, d)`` diagonals or ``(K, d, d)`` matrices
    (stored as ``(K, d, d)``); ``depths`` ``b_k`` (default 0). ``beta`` sets how sharp the soft-min is: the
    barrier between two wells is close to where ``q_i = q_j`` for large ``beta``.

    With ``pi = softmax(-beta q)`` and ``g_k = C_k (theta - c_k)``:
    ``grad L = sum_k pi_k g_k`` and ``H = sum_k pi_k C_k - beta (sum_k pi_k g_k g_k^T - g_bar g_bar^T)``.
    """

    kind = "multi-valley"

    def __init__(self, centers, curvatures, depths=None, beta: float = 20.0):
        c = np.asarray(centers, dtype=float)
        if c.ndim == 1:
            c = c[:, None]
        if c.ndim != 2 or c.shape[0] < 1:
            raise ValueError(f"MultiValley: centers must have shape (K, d), got {np.shape(centers)}")
        K, d = c.shape
        C = np.asarray(curvatures, dtype=float)
        if C.ndim == 1 and C.shape[0] == K:
            C = C[:, None, None] * np.eye(d)
        elif C.ndim == 2 and C.shape == (K, d):
            C = C[:, :, None] * np.eye(d)
        elif not (C.ndim == 3 and C.shape == (K, d, d)):
            raise ValueError(
                f"MultiValley: curvatures must have shape ({K},), ({K}, {d}) or ({K}, {d}, {d}), "
                f"got {np.shape(curvatures)}"
            )
        C = 0.5 * (C + np.swapaxes(C, -1, -2))
        b = np.zeros(K) if depths is None else np.asarray(depths, dtype=float).reshape(-1)
        if b.shape != (K,):
            raise ValueError(f"MultiValley: depths must have shape ({K},), got {np.shape(depths)}")
        beta = float(beta)
        if not np.isfinite(beta) or beta <= 0:
            raise ValueError(f"MultiValley: beta must be finite and > 0, got {beta}")
        if not (np.all(np.isfinite(c)) and np.all(np.isfinite(C)) and np.all(np.isfinite(b))):
            raise ValueError("MultiValley: centers, curvatures and depths must be finite")
        self.centers, self.curvatures, self.depths, self.beta = c, C, b, beta
        self.dim = d

    def _parts(self, theta):
        t = _as_points(theta, self.dim, "MultiValley")
        z = t[..., None, :] - self.centers  # (..., K, d)
        g = np.einsum("kij,...kj->...ki", self.curvatures, z)  # (..., K, d)
        q = 0.5 * np.sum(z * g, axis=-1) + self.depths  # (..., K)
        a = -self.beta * q
        amax = np.max(a, axis=-1, keepdims=True)
        w = np.exp(a - amax)
        s = np.sum(w, axis=-1, keepdims=True)
        pi = w / s
        lse = amax[..., 0] + np.log(s[..., 0])
        return t, g, pi, lse

    def loss(self, theta):
        _, _, _, lse = self._parts(theta)
        return -lse / self.beta

    def weights(self, theta):
        """Soft-min weights ``pi_k(theta)``, shape ``(..., K)``."""
        return self._parts(theta)[2]

    def grad(self, theta):
        _, g, pi, _ = self._parts(theta)
        return np.einsum("...k,...ki->...i", pi, g)

    def hessian(self, theta):
        _, g, pi, _ = self._parts(theta)
        gbar = np.einsum("...k,...ki->...i", pi, g)
        H = np.einsum("...k,kij->...ij", pi, self.curvatures)
        H = H - self.beta * (np.einsum("...k,...ki,...kj->...ij", pi, g, g) - gbar[..., :, None] * gbar[..., None, :])
        return 0.5 * (H + np.swapaxes(H, -1, -2))

    # --- critical points ------------------------------------------------------------------------------
    def minimum(self, k: int) -> np.ndarray:
        """The local minimum of ``L`` near centre ``k`` (Newton from ``c_k``; it moves off ``c_k`` only by the
        exponentially small pull of the other wells)."""
        from scipy.optimize import minimize

        res = minimize(
            self.loss, self.centers[k], jac=self.grad, hess=self.hessian, method="trust-exact", options={"gtol": 1e-12}
        )
        return np.asarray(res.x)

    def barrier(self, i: int, j: int, n: int = 2001) -> dict:
        """The saddle between wells ``i`` and ``j``: the maximum of ``L`` on the segment between the two minima,
        refined by a Newton solve of ``grad L = 0`` (index-1 saddle).

        Returns ``{"saddle", "loss", "hessian_eigenvalues", "minima", "heights"}``, ``heights[m]`` being the
        barrier ``L(saddle) - L(minimum m)`` seen from well ``i`` (m=0) and ``j`` (m=1)."""
        from scipy.optimize import root

        mi, mj = self.minimum(i), self.minimum(j)
        s = np.linspace(0.0, 1.0, n)[:, None]
        path = mi + s * (mj - mi)
        guess = path[int(np.argmax(self.loss(path)))]
        sol = root(self.grad, guess, jac=self.hessian, method="hybr", options={"xtol": 1e-13})
        x = np.asarray(sol.x) if sol.success else guess
        if not sol.success or np.linalg.norm(x - guess) > np.linalg.norm(mj - mi):
            x = guess
        Ls = float(self.loss(x))
        return {
            "saddle": x,
            "loss": Ls,
            "hessian_eigenvalues": np.linalg.eigvalsh(self.hessian(x)),
            "minima": (mi, mj),
            "heights": (Ls - float(self.loss(mi)), Ls - float(self.loss(mj))),
        }

    def params(self):
        return {
            "centers": self.centers.tolist(),
            "curvatures": self.curvatures.tolist(),
            "depths": self.depths.tolist(),
            "beta": self.beta,
        }
