"""A Fokker-Planck problem: a grid, a drift and a diffusion model.

    dP/dt = sum_i d_i [ -v_i P + sum_j d_j (D_ij P) ]        (Ito form)

with the drift ``v = -grad L`` of a landscape ``L`` or a user velocity field, and ``D(theta)`` from a noise
model. The SDE behind it is ``d theta = v dt + g(theta) dW`` with ``g g^T = 2 D``.

Interpretations of the noise
----------------------------
``convention`` says how the *user's* drift ``v`` is to be read when the noise is multiplicative. The SDE
``d theta = v dt + g (alpha-point) dW`` with evaluation point ``alpha`` (0 Ito, 1/2 Stratonovich,
1 Hanggi-Klimontovich) equals the Ito SDE with drift

    v^Ito_i = v_i + alpha * sum_{j,k} g_kj d_k g_ij ,

which depends on the amplitude ``g`` and not on ``D`` alone: two amplitudes ``g`` and ``g R(theta)``
(``R`` orthogonal) give the same ``D`` but, in general, different noise-induced drifts. In one
dimension it reduces to ``alpha D'(theta)``. The amplitude is the noise model's :meth:`~Noise.amplitude`
(the symmetric square root of ``2D`` unless the model says otherwise). The derivatives are taken by
central differences of ``g`` with a step of ``1e-4`` of the cell width.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .grid import Grid
from .landscapes import Landscape
from .noise import Noise, check_tensor_field, tensor_divergence

CONVENTIONS = {"ito": 0.0, "stratonovich": 0.5, "hanggi-klimontovich": 1.0}
_ALIASES = {
    "strat": "stratonovich",
    "hanggi": "hanggi-klimontovich",
    "klimontovich": "hanggi-klimontovich",
    "hk": "hanggi-klimontovich",
    "isothermal": "hanggi-klimontovich",
    "anti-ito": "hanggi-klimontovich",
}


class Problem:
    """A grid, a drift and a diffusion model.

    Parameters
    ----------
    grid : Grid
    landscape : Landscape, optional
        Drift ``v = -grad L``. With a landscape the scheme uses differences of ``L`` across faces, which
        makes the discrete Boltzmann weights ``exp(-L/T)`` exact for isotropic constant noise.
    drift : callable, optional
        A velocity field ``v(theta) -> (..., d)`` (instead of, or on top of, the landscape's drift).
    noise : Noise
        The diffusion model (:mod:`fokkerplanck.model.noise`).
    convention : {"ito", "stratonovich", "hanggi-klimontovich"}
        Interpretation of the multiplicative noise (see module docstring). Default Ito.
    potential : callable, optional
        ``psi(theta) -> (...)`` for a *reversible* problem: one whose Ito drift satisfies
        ``v - div D = -D grad psi``, so that ``P_ss = exp(-psi) / Z`` (e.g. ``v = -D grad psi + div D`` for any
        field ``D``). The scheme then balances every edge exactly against ``exp(-psi)``, and the discrete
        steady state is the sampled exact density whatever the tensor's orientation. Checked on the grid
        (:meth:`potential_on_grid`): a ``psi`` that does not fit the drift and noise is refused.
    """

    def __init__(
        self,
        grid: Grid,
        landscape: Landscape | None = None,
        noise: Noise | None = None,
        *,
        drift: Callable | None = None,
        convention: str = "ito",
        potential: Callable | None = None,
    ):
        if not isinstance(grid, Grid):
            raise TypeError(f"Problem: grid must be a fokkerplanck.Grid, got {type(grid).__name__}")
        if landscape is None and drift is None:
            raise ValueError("Problem: give a landscape (drift -grad L) or a drift field v(theta)")
        if landscape is not None and not isinstance(landscape, Landscape):
            raise TypeError(f"Problem: landscape must be a fokkerplanck Landscape, got {type(landscape).__name__}")
        if landscape is not None and landscape.dim is not None and landscape.dim != grid.ndim:
            raise ValueError(f"Problem: the landscape is {landscape.dim}-dimensional, the grid {grid.ndim}-dimensional")
        if drift is not None and not callable(drift):
            raise TypeError("Problem: drift must be a callable v(theta) -> (..., d)")
        if noise is None:
            raise ValueError("Problem: a noise model is required (e.g. fp.noise.Isotropic(T))")
        if not isinstance(noise, Noise):
            raise TypeError(f"Problem: noise must be a fokkerplanck noise model, got {type(noise).__name__}")
        if noise.needs_landscape and landscape is None:
            raise ValueError(f"Problem: {type(noise).__name__} noise depends on the Hessian and needs a landscape")
        key = str(convention).lower()
        key = _ALIASES.get(key, key)
        if key not in CONVENTIONS:
            raise ValueError(f"Problem: unknown convention {convention!r}; expected one of {', '.join(CONVENTIONS)}")
        self.grid = grid
        self.landscape = landscape
        self.drift_field = drift
        self.noise = noise
        if potential is not None and not callable(potential):
            raise TypeError("Problem: potential must be a callable psi(theta) -> (...)")
        self.convention = key
        self.potential = potential
        self._cache = {}

    @property
    def alpha(self) -> float:
        """Evaluation point of the stochastic integral: 0 Ito, 1/2 Stratonovich, 1 Hanggi-Klimontovich."""
        return CONVENTIONS[self.convention]

    # --- fields on points ----------------------------------------------------------------------------
    def loss(self, theta) -> np.ndarray | None:
        return None if self.landscape is None else self.landscape.loss(theta)

    def velocity(self, theta) -> np.ndarray:
        """The user's drift ``v(theta)`` (landscape's ``-grad L`` plus the drift field), before any
        noise-induced correction."""
        return self.velocity_and_gradient(theta)[0]

    def velocity_and_gradient(self, theta):
        """``(v, grad L)``: the user's drift (as :meth:`velocity`) and the landscape gradient it contains
        (``None`` without a landscape), with ``grad L`` evaluated once."""
        theta = np.asarray(theta, dtype=float)
        v = np.zeros(theta.shape)
        grad = None
        if self.landscape is not None:
            grad = self.landscape.grad(theta)
            v = v - grad
        if self.drift_field is not None:
            f = np.asarray(self.drift_field(theta), dtype=float)
            if f.shape != theta.shape:
                raise ValueError(f"Problem: drift returned shape {f.shape}, expected {theta.shape}")
            v = v + f
        return v, grad

    def diffusion(self, theta) -> np.ndarray:
        """``D(theta)``, validated (symmetric PSD, finite)."""
        theta = np.asarray(theta, dtype=float)
        D = self.noise.tensor(theta, self.landscape)
        return check_tensor_field(D, theta, f"{type(self.noise).__name__} noise")

    def noise_induced_drift(self, theta) -> np.ndarray:
        """``alpha * sum_{j,k} g_kj d_k g_ij`` (zero for Ito), by central differences of the amplitude."""
        theta = np.asarray(theta, dtype=float)
        if self.alpha == 0.0:
            return np.zeros(theta.shape)
        g = self.noise.amplitude(theta, self.landscape)
        d = theta.shape[-1]
        out = np.zeros(theta.shape)
        for k in range(d):
            step = 1e-4 * self.grid.spacing[k]
            tp, tm = theta.copy(), theta.copy()
            tp[..., k] += step
            tm[..., k] -= step
            dg = (self.noise.amplitude(tp, self.landscape) - self.noise.amplitude(tm, self.landscape)) / (2 * step)
            # sum_j g_kj d_k g_ij
            out += np.einsum("...j,...ij->...i", g[..., k, :], dg)
        return self.alpha * out

    def ito_velocity(self, theta) -> np.ndarray:
        """Drift of the equivalent Ito SDE: ``v + alpha sum_jk g_kj d_k g_ij``."""
        return self.velocity(theta) + self.noise_induced_drift(theta)

    def _difference_step(self) -> float:
        """Step of the central differences taken of the fields: ``1e-4`` of the smallest cell width (in theta)."""
        g = self.grid
        scale = 1.0 if g.frame is None else abs(g.frame.det) ** (1.0 / g.ndim)
        return 1e-4 * float(np.min(g.spacing)) * scale

    def diffusion_divergence(self, theta) -> np.ndarray:
        """``(div D)_i = sum_j d_j D_ij`` at points ``theta (..., d)``, by central differences of the noise model
        (:func:`fokkerplanck.model.noise.tensor_divergence`, steps of ``1e-4`` of the cells)."""
        return tensor_divergence(self.diffusion, theta, self._difference_step())

    def potential_on_grid(self, rtol: float = 1e-4) -> np.ndarray:
        """``psi`` at the cell centres (flat, C order), after checking that it is the potential of this
        problem: ``|D grad psi + v - div D| <= rtol (|v| + |div D| + |D grad psi|)`` at every cell where
        ``exp(-psi)`` is above ``1e-12`` of its peak, with ``grad psi`` and ``div D`` by central differences
        (steps of ``1e-4`` of the cells), ``v`` the Ito velocity. Periodic axes need ``psi`` equal on both
        walls. Raises ``ValueError`` naming the worst point otherwise."""
        cache = self.__dict__.setdefault("_cache", {})
        if "psi" in cache:
            return cache["psi"]
        grid = self.grid
        pts = grid.points()
        psi = np.asarray(self.potential(pts), dtype=float).reshape(-1)
        if psi.shape[0] != grid.size or not np.all(np.isfinite(psi)):
            raise ValueError("Problem: potential must return one finite value per point")
        d = grid.ndim
        grad_psi = np.empty(pts.shape)
        step = self._difference_step()
        for j in range(d):
            tp, tm = pts.copy(), pts.copy()
            tp[:, j] += step
            tm[:, j] -= step
            grad_psi[:, j] = (
                np.asarray(self.potential(tp), float).reshape(-1) - np.asarray(self.potential(tm), float).reshape(-1)
            ) / (2 * step)
        div_D = self.diffusion_divergence(pts)
        v = self.ito_velocity(pts)
        D_grad = np.einsum("nij,nj->ni", self.diffusion(pts), grad_psi)
        mismatch = np.linalg.norm(D_grad + v - div_D, axis=1)
        scale = np.linalg.norm(v, axis=1) + np.linalg.norm(div_D, axis=1) + np.linalg.norm(D_grad, axis=1)
        alive = psi - psi.min() < np.log(1e12)
        bad = alive & (mismatch > rtol * scale + 1e-300)
        if np.any(bad):
            worst = np.argmax(np.where(bad, mismatch / (scale + 1e-300), 0.0))
            raise ValueError(
                f"Problem: potential does not fit the drift and noise (D grad psi + v - div D = "
                f"{mismatch[worst]:.3g} against a scale {scale[worst]:.3g} at theta={pts[worst]}); "
                "it must satisfy v - div D = -D grad psi"
            )
        for ax, (lo, _hi) in enumerate(grid.bc):
            if lo == "periodic":
                low, high = grid.local_mesh().reshape(-1, d), grid.local_mesh().reshape(-1, d)
                low[:, ax], high[:, ax] = grid.axes[ax][0], grid.axes[ax][1]
                if grid.frame is not None:
                    low, high = grid.frame.to_theta(low), grid.frame.to_theta(high)
                gap = np.abs(np.asarray(self.potential(low), float) - np.asarray(self.potential(high), float))
                if np.max(np.where(alive, gap.reshape(-1), 0.0)) > 1e-8 * (1.0 + np.abs(psi).max()):
                    raise ValueError(f"Problem: potential is not periodic along the periodic axis {ax}")
        cache["psi"] = psi
        return psi

    def __repr__(self):
        parts = [repr(self.grid)]
        if self.landscape is not None:
            parts.append(f"landscape={self.landscape!r}")
        if self.drift_field is not None:
            parts.append("drift=<callable>")
        parts.append(f"noise={self.noise!r}")
        if self.convention != "ito":
            parts.append(f"convention={self.convention!r}")
        return f"Problem({', '.join(parts)})"
