"""Diffusion (noise) models ``D(theta)``.

Convention (Ito): the stochastic dynamics is ``d theta = v dt + sqrt(2 D) dW``, i.e. the noise covariance
per unit time is ``<xi_i(t) xi_j(t')> = 2 D_ij delta(t - t')``, and the Fokker-Planck equation reads

    dP/dt = sum_i d_i [ -v_i P + sum_j d_j (D_ij P) ].

Every model returns, for points of shape ``(..., d)``, a symmetric positive semi-definite tensor field of
shape ``(..., d, d)`` via :meth:`Noise.tensor`. Models that depend on the loss (the SGD-like ones) take
the landscape as a second argument.

=================  ===========================  =============================================
class              ``D(theta)``                  source
=================  ===========================  =============================================
``Constant``       any constant SPD tensor       PRL Eq. (11) setting, ``diag(Delta/kappa, Delta)``
``Isotropic``      ``T I``                       gradient Langevin dynamics
``HessianAligned`` ``Delta_S H(theta)^2``        random-shift minibatch SGD (PRL), ``Delta_S = eta sigma``
``HessianLinear``  ``Delta [H(theta)]_+``        Xie, Sato & Sugiyama (ICLR 2021), H clipped to PSD
``Field``          user callable                 --
=================  ===========================  =============================================
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def psd_violation(D: np.ndarray, rtol: float = 1e-10) -> np.ndarray:
    """Boolean mask over the leading axes of ``D`` (``(..., d, d)``): True where ``D`` is not symmetric PSD
    within relative tolerance ``rtol`` (or not finite)."""
    D = np.asarray(D, dtype=float)
    if D.ndim >= 2 and 1 <= D.shape[-1] <= 3 and D.shape[-1] == D.shape[-2]:  # one compiled pass
        from .kernels import psd_violation_field

        flat = np.ascontiguousarray(D.reshape(-1, D.shape[-1], D.shape[-1]))
        bad = psd_violation_field(flat, float(rtol)).reshape(D.shape[:-2])
        return bad[()] if bad.ndim == 0 else bad
    finite = np.all(np.isfinite(D), axis=(-1, -2))
    Dz = np.where(finite[..., None, None], D, 0.0)
    scale = np.maximum(np.max(np.abs(Dz), axis=(-1, -2)), np.finfo(float).tiny)
    asym = np.max(np.abs(Dz - np.swapaxes(Dz, -1, -2)), axis=(-1, -2)) > 1e-8 * scale
    lam_min = np.linalg.eigvalsh(0.5 * (Dz + np.swapaxes(Dz, -1, -2)))[..., 0]
    return ~finite | asym | (lam_min < -rtol * scale)


def check_tensor_field(D: np.ndarray, points: np.ndarray, who: str) -> np.ndarray:
    """Validate a diffusion field on ``points``; raise a ValueError naming the first bad point."""
    d = points.shape[-1]
    D = np.asarray(D, dtype=float)
    if D.shape != points.shape[:-1] + (d, d):
        raise ValueError(f"{who}: diffusion tensor has shape {D.shape}, expected {points.shape[:-1] + (d, d)}")
    flat = D.reshape(-1, d, d)
    if flat.shape[0] > 1 and np.array_equal(flat.min(axis=0), flat.max(axis=0)):
        bad = np.broadcast_to(psd_violation(flat[:1])[0], D.shape[:-2])  # a constant field: check once
    else:
        bad = psd_violation(D)
    if np.any(bad):
        k = np.argwhere(bad)[0]
        at = points[tuple(k)]
        Dk = D[tuple(k)]
        what = (
            "is not finite"
            if not np.all(np.isfinite(Dk))
            else (
                "is not symmetric"
                if not np.allclose(Dk, Dk.T)
                else f"is not positive semi-definite (smallest eigenvalue {np.linalg.eigvalsh(Dk)[0]:.3g})"
            )
        )
        raise ValueError(
            f"{who}: D at theta={np.array2string(at, precision=4)} {what}: "
            f"{np.array2string(Dk, precision=4)} ({int(bad.sum())} bad point(s) in all)"
        )
    return 0.5 * (D + np.swapaxes(D, -1, -2))


def symmetric_sqrt(M: np.ndarray) -> np.ndarray:
    """Symmetric PSD square root of a field of symmetric PSD matrices (negative round-off clipped)."""
    w, V = np.linalg.eigh(M)
    return np.einsum("...ik,...k,...jk->...ij", V, np.sqrt(np.clip(w, 0.0, None)), V)


class Noise:
    """Base class of diffusion models."""

    kind = "noise"
    #: True when ``tensor`` needs the landscape (Hessian-dependent noise)
    needs_landscape = False

    def tensor(self, theta, landscape=None) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def amplitude(self, theta, landscape=None) -> np.ndarray:
        """A noise amplitude ``g(theta)`` with ``g g^T = 2 D`` (default: the symmetric square root).

        Only the Stratonovich and Hanggi-Klimontovich interpretations depend on this choice."""
        return symmetric_sqrt(2.0 * self.tensor(theta, landscape))

    def params(self) -> dict:
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    def _need(self, landscape):
        if landscape is None:
            raise ValueError(f"{type(self).__name__} noise depends on the Hessian: it needs a landscape")
        return landscape


class Constant(Noise):
    """A constant symmetric positive semi-definite tensor ``D`` (a scalar means ``D I``)."""

    kind = "constant"

    def __init__(self, D):
        D = np.asarray(D, dtype=float)
        if D.ndim == 1:
            D = np.diag(D)
        if D.ndim != 2 or D.shape[0] != D.shape[1]:
            raise ValueError(f"Constant noise: D must be a square matrix (or a diagonal), got shape {D.shape}")
        check_tensor_field(D[None], np.zeros((1, D.shape[0])), "Constant noise")
        self.D = 0.5 * (D + D.T)

    def tensor(self, theta, landscape=None):
        theta = np.asarray(theta, dtype=float)
        if theta.shape[-1] != self.D.shape[0]:
            raise ValueError(
                f"Constant noise is {self.D.shape[0]}-dimensional, points are {theta.shape[-1]}-dimensional"
            )
        return np.broadcast_to(self.D, theta.shape[:-1] + self.D.shape).copy()

    def params(self):
        return {"D": self.D.tolist()}


class Isotropic(Noise):
    """``D = T I``: gradient Langevin dynamics at temperature ``T``; the stationary density of gradient
    drift is the Boltzmann weight ``exp(-L/T)``."""

    kind = "isotropic"

    def __init__(self, T: float):
        T = float(T)
        if not np.isfinite(T) or T < 0:
            raise ValueError(f"Isotropic noise: temperature T must be finite and >= 0, got {T}")
        self.T = T

    def tensor(self, theta, landscape=None):
        theta = np.asarray(theta, dtype=float)
        d = theta.shape[-1]
        return np.broadcast_to(self.T * np.eye(d), theta.shape[:-1] + (d, d)).copy()

    def params(self):
        return {"T": self.T}


class HessianAligned(Noise):
    """SGD noise of the random-shift minibatch model: ``D = Delta_S H(theta)^2`` with ``Delta_S = eta sigma``
    (PRL 130, 237101, text before Eq. 13). Always PSD; near-singular on degenerate valleys."""

    kind = "hessian-aligned"
    needs_landscape = True

    def __init__(self, delta_s: float):
        delta_s = float(delta_s)
        if not np.isfinite(delta_s) or delta_s < 0:
            raise ValueError(f"HessianAligned noise: delta_s must be finite and >= 0, got {delta_s}")
        self.delta_s = delta_s

    def tensor(self, theta, landscape=None):
        H = self._need(landscape).hessian(theta)
        return self.delta_s * (H @ H)

    def amplitude(self, theta, landscape=None):
        # g = sqrt(2 Delta_S) H is the amplitude of the random-shift model: eta H mu with mu ~ N(0, 2 sigma).
        return np.sqrt(2.0 * self.delta_s) * self._need(landscape).hessian(theta)

    def params(self):
        return {"delta_s": self.delta_s}


class HessianLinear(Noise):
    """``D = Delta [H(theta)]_+``: the Hessian with negative eigenvalues clipped to zero
    (Xie, Sato & Sugiyama, ICLR 2021: SGD noise covariance proportional to the Hessian near minima)."""

    kind = "hessian-linear"
    needs_landscape = True

    def __init__(self, delta: float):
        delta = float(delta)
        if not np.isfinite(delta) or delta < 0:
            raise ValueError(f"HessianLinear noise: delta must be finite and >= 0, got {delta}")
        self.delta = delta

    def tensor(self, theta, landscape=None):
        H = self._need(landscape).hessian(theta)
        w, V = np.linalg.eigh(0.5 * (H + np.swapaxes(H, -1, -2)))
        return self.delta * np.einsum("...ik,...k,...jk->...ij", V, np.clip(w, 0.0, None), V)

    def params(self):
        return {"delta": self.delta}


class Field(Noise):
    """A user diffusion field ``f(theta) -> (..., d, d)`` (symmetric PSD; checked where it is evaluated).

    ``amplitude``, optional, is a callable ``g(theta) -> (..., d, m)`` with ``g g^T = 2 D``; it matters only
    for the Stratonovich and Hanggi-Klimontovich interpretations (the noise-induced drift depends on ``g``,
    not on ``D`` alone). Given ``amplitude`` alone, ``D = g g^T / 2``.
    """

    kind = "field"

    def __init__(self, f: Callable | None = None, amplitude: Callable | None = None):
        if f is None and amplitude is None:
            raise ValueError("Field noise needs f (the tensor D) or amplitude (g with g g^T = 2D)")
        if (f is not None and not callable(f)) or (amplitude is not None and not callable(amplitude)):
            raise TypeError("Field noise: f and amplitude must be callables on (..., d) points")
        self.f, self._g = f, amplitude

    def tensor(self, theta, landscape=None):
        theta = np.asarray(theta, dtype=float)
        if self.f is None:
            g = self.amplitude(theta)
            return 0.5 * g @ np.swapaxes(g, -1, -2)
        D = np.asarray(self.f(theta), dtype=float)
        d = theta.shape[-1]
        if D.shape != theta.shape[:-1] + (d, d):
            raise ValueError(f"Field noise: f returned shape {D.shape}, expected {theta.shape[:-1] + (d, d)}")
        return D

    def amplitude(self, theta, landscape=None):
        if self._g is None:
            return super().amplitude(theta, landscape)
        theta = np.asarray(theta, dtype=float)
        g = np.asarray(self._g(theta), dtype=float)
        if g.ndim != theta.ndim + 1 or g.shape[:-1] != theta.shape:
            raise ValueError(f"Field noise: amplitude returned shape {g.shape}, expected {theta.shape + ('m',)}")
        return g


def tensor_divergence(tensor: Callable, theta, step: float = 1e-6) -> np.ndarray:
    """``(div D)_i = sum_j d_j D_ij`` at the points ``theta (..., d)``, by central differences of the field
    ``tensor: (..., d) -> (..., d, d)`` with the given ``step`` (error ``O(step^2)`` plus round-off
    ``~1e-16 |D| / step``)."""
    t = np.asarray(theta, dtype=float)
    out = np.zeros(t.shape)
    for j in range(t.shape[-1]):
        tp, tm = t.copy(), t.copy()
        tp[..., j] += step
        tm[..., j] -= step
        out += (tensor(tp)[..., :, j] - tensor(tm)[..., :, j]) / (2 * step)
    return out


class Scaled(Noise):
    """``c D(theta)`` for a noise model ``D`` and a constant ``c >= 0`` (amplitude ``sqrt(c) g``): the noise of a
    time-dependent schedule ``D(theta, t) = g(t) D(theta)`` frozen at one time (:func:`scaled`)."""

    def __init__(self, base: Noise, c: float):
        self.base, self.c = base, float(c)
        self.kind = base.kind
        self.needs_landscape = base.needs_landscape

    def tensor(self, theta, landscape=None):
        return self.c * self.base.tensor(theta, landscape)

    def amplitude(self, theta, landscape=None):
        return np.sqrt(self.c) * self.base.amplitude(theta, landscape)

    def params(self):
        return {"base": repr(self.base), "c": self.c}


def scaled(model: Noise, c: float) -> Noise:
    """The noise model ``c D`` (``c >= 0`` finite): the same class with its strength scaled where the class has
    one (``Constant``, ``Isotropic``, ``HessianAligned``, ``HessianLinear``: the compiled particle kernels and the
    generator's constant-tensor path still apply), else a :class:`Scaled` wrapper. ``c == 1`` returns ``model``."""
    c = float(c)
    if not (np.isfinite(c) and c >= 0):
        raise ValueError(f"scaled noise: the factor must be finite and >= 0, got {c}")
    if c == 1.0:
        return model
    t = type(model)
    if t is Constant:
        return Constant(c * model.D)
    if t is Isotropic:
        return Isotropic(c * model.T)
    if t is HessianAligned:
        return HessianAligned(c * model.delta_s)
    if t is HessianLinear:
        return HessianLinear(c * model.delta)
    if t is Scaled:
        return Scaled(model.base, c * model.c)
    return Scaled(model, c)
