"""Results on a grid: probability densities and trajectories of them.

A :class:`Density` holds the cell averages ``P_k`` of a probability density on a :class:`~fokkerplanck.model.grid.Grid`,
normalised so that ``sum_k P_k |cell| = 1`` (absorbing walls make the mass of an evolving density fall
below one; it is then left as it is).
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from .grid import Grid


class Density:
    """A probability density on a grid.

    Parameters
    ----------
    grid : Grid
    values : array of shape ``grid.shape``
        Cell averages of the density (not cell masses).
    normalize : bool
        Rescale so that the total mass ``values.sum() * grid.cell_volume`` is one.
    stderr : array, optional
        Per-cell standard errors (histograms of particles carry them).
    generator : Generator, optional
        The discrete operator the density came from; needed by :meth:`current`.
    info : dict, optional
        Diagnostics of the computation (residuals, timings, method).
    """

    def __init__(
        self, grid: Grid, values, *, normalize: bool = False, stderr=None, generator=None, info: dict | None = None
    ):
        values = np.asarray(values, dtype=float)
        if values.size == grid.size and values.shape != grid.shape:
            values = values.reshape(grid.shape)
        if values.shape != grid.shape:
            raise ValueError(f"Density: values have shape {values.shape}, the grid has shape {grid.shape}")
        if not np.all(np.isfinite(values)):
            raise ValueError("Density: values contain NaN or infinity")
        if normalize:
            m = values.sum() * grid.cell_volume
            if not m > 0:
                raise ValueError(f"Density: cannot normalise, total mass is {m:g}")
            values = values / m
            if stderr is not None:
                stderr = np.asarray(stderr, dtype=float) / m
        self.grid = grid
        self.values = values
        self.stderr = None if stderr is None else np.asarray(stderr, dtype=float).reshape(grid.shape)
        self.generator = generator
        self.info = dict(info or {})

    # --- constructors -------------------------------------------------------------------------------
    @classmethod
    def gaussian(cls, grid: Grid, mean, cov) -> "Density":
        """Cell averages of the normal density ``N(mean, cov)``, renormalised on the grid.

        The cell average is taken with a 3-point Gauss-Legendre rule per axis, so a narrow Gaussian
        (a few cells wide) keeps its mean and covariance to ``O(h^4)``."""
        d = grid.ndim
        mean = np.broadcast_to(np.asarray(mean, dtype=float), (d,))
        cov = np.asarray(cov, dtype=float)
        if cov.ndim == 0 or cov.ndim == 1:
            cov = np.diag(np.broadcast_to(cov, (d,)).astype(float))
        if cov.shape != (d, d):
            raise ValueError(f"Density.gaussian: cov must be ({d}, {d}), got {cov.shape}")
        if np.any(np.linalg.eigvalsh(0.5 * (cov + cov.T)) <= 0):
            raise ValueError("Density.gaussian: cov must be symmetric positive definite")
        prec = np.linalg.inv(cov)
        nodes = np.array([-np.sqrt(0.6), 0.0, np.sqrt(0.6)]) / 2
        wts = np.array([5, 8, 5]) / 18
        pts = grid.local_mesh()
        h = grid.spacing
        vals = np.zeros(grid.shape)
        for idx in np.ndindex(*(3,) * d):
            shift = np.array([nodes[i] for i in idx]) * h
            w = np.prod([wts[i] for i in idx])
            z = (pts + shift if grid.frame is None else grid.frame.to_theta(pts + shift)) - mean
            vals += w * np.exp(-0.5 * np.einsum("...i,ij,...j->...", z, prec, z))
        if not vals.sum() > 0:
            raise ValueError("Density.gaussian: the Gaussian has no mass on the grid")
        return cls(grid, vals, normalize=True)

    @classmethod
    def from_function(cls, grid: Grid, f) -> "Density":
        """Density proportional to ``f(theta)`` evaluated at cell centres (non-negative, normalisable)."""
        vals = np.asarray(f(grid.mesh()), dtype=float)
        if vals.shape != grid.shape:
            raise ValueError(f"Density.from_function: f returned shape {vals.shape}, expected {grid.shape}")
        if np.any(vals < 0):
            raise ValueError("Density.from_function: f is negative somewhere")
        return cls(grid, vals, normalize=True)

    # --- basic quantities ---------------------------------------------------------------------------
    @property
    def mass(self) -> float:
        return float(self.values.sum() * self.grid.cell_volume)

    def mean(self) -> np.ndarray:
        """``<theta>`` under the (normalised) density (in the problem's coordinates also on a framed grid)."""
        w = self.values / self.values.sum()
        m = np.array(
            [
                np.tensordot(
                    w.sum(axis=tuple(j for j in range(self.grid.ndim) if j != i)), self.grid.centers[i], axes=1
                )
                for i in range(self.grid.ndim)
            ]
        )
        return m if self.grid.frame is None else self.grid.frame.to_theta(m)

    def cov(self) -> np.ndarray:
        """Covariance of theta under the density (cell-centre quadrature: ``O(h^2)`` accurate; in the problem's
        coordinates also on a framed grid)."""
        pts = self.grid.points()
        w = (self.values / self.values.sum()).ravel()
        m = w @ pts
        z = pts - m
        return (z * w[:, None]).T @ z

    def expect(self, f) -> float:
        """``E[f(theta)]`` with ``f`` evaluated at cell centres."""
        vals = np.asarray(f(self.grid.mesh()), dtype=float)
        return float((vals * self.values).sum() / self.values.sum())

    def marginal(self, axis: int | Sequence[int]) -> "Density":
        """Marginal density over the kept ``axis`` (an int or a sequence of ints). On a framed grid, the
        marginal of the frame's coordinates ``xi`` (a density per unit ``xi``, on a grid without frame)."""
        keep = [axis] if np.isscalar(axis) else list(axis)
        keep = [int(a) % self.grid.ndim for a in keep]
        drop = tuple(i for i in range(self.grid.ndim) if i not in keep)
        h = self.grid.spacing
        jac = 1.0 if self.grid.frame is None else abs(self.grid.frame.det)  # P_xi = |det M| P_theta
        vals = self.values.sum(axis=drop) * np.prod(h[list(drop)]) * jac if drop else self.values * jac
        sub = self.grid.subgrid(sorted(keep))
        if keep != sorted(keep):
            vals = np.moveaxis(vals, list(range(len(keep))), list(np.argsort(np.argsort(keep))))
        se = None
        if self.stderr is not None:
            se = (np.sqrt((self.stderr**2).sum(axis=drop)) * np.prod(h[list(drop)]) if drop else self.stderr) * jac
        return Density(sub, vals, stderr=se, info={"marginal_of": keep})

    def entropy(self) -> float:
        """Differential entropy ``-int P ln P``."""
        p = self.values[self.values > 0]
        return float(-(p * np.log(p)).sum() * self.grid.cell_volume)

    def effective_potential(self, scale: float, normalize_min: bool = True) -> np.ndarray:
        """``L_eff(theta) = -scale * ln(Z P(theta))`` (PRL Eq. 12); ``Z`` is chosen so that the minimum is 0
        (``normalize_min=True``) or ``Z = 1``. Cells with ``P = 0`` get ``+inf``.

        Far from the minima ``P`` is many orders of magnitude below its peak; a steady state by sparse LU or
        Krylov carries round-off of ~1e-16 of the peak there (3% at 1e-20 of the peak on a 2D OU test), so
        ``L_eff`` is only as good as ``scale * ln`` of that. ``steady_state(..., method="gth")`` keeps every
        cell to ~1e-14 relative where its band fits (1D, moderate 2D grids)."""
        with np.errstate(divide="ignore"):
            L = -float(scale) * np.log(np.clip(self.values, 0.0, None))
        if normalize_min:
            L = L - np.min(L[np.isfinite(L)])
        return L

    def current(self) -> np.ndarray:
        """Probability current ``J`` at cell centres, shape ``grid.shape + (ndim,)``.

        Built from the discrete fluxes of the scheme (see :meth:`Generator.current`), so it is exactly zero
        for a discrete detailed-balance steady state, unlike ``v P - div(D P)`` computed by finite
        differences of ``P``."""
        if self.generator is None:
            raise ValueError(
                "Density.current needs the generator it was computed with (densities from steady_state/evolve carry it)"
            )
        return self.generator.current(self.values)

    def copy(self) -> "Density":
        return Density(
            self.grid,
            self.values.copy(),
            stderr=None if self.stderr is None else self.stderr.copy(),
            generator=self.generator,
            info=self.info,
        )

    def to_xarray(self):
        """The density as an ``xarray.DataArray`` with coordinates ``theta0, theta1, ...``; on a framed grid
        the dimensions are ``xi0, xi1, ...`` and ``theta0, ...`` are coordinates over them."""
        try:
            import xarray as xr
        except ImportError:  # pragma: no cover - optional
            raise ImportError("to_xarray needs xarray: pip install 'fokkerplanck[xarray]'") from None
        d = self.grid.ndim
        if self.grid.frame is None:
            dims = [f"theta{i}" for i in range(d)]
            return xr.DataArray(self.values, coords=dict(zip(dims, self.grid.centers)), dims=dims, name="P")
        dims = [f"xi{i}" for i in range(d)]
        coords = dict(zip(dims, self.grid.centers))
        mesh = self.grid.mesh()
        coords.update({f"theta{i}": (dims, mesh[..., i]) for i in range(d)})
        return xr.DataArray(self.values, coords=coords, dims=dims, name="P")

    def __repr__(self):
        return f"Density({self.grid!r}, mass={self.mass:.6g})"


class Trajectory:
    """Densities saved at ``times`` by :func:`~fokkerplanck.solvers.evolve.evolve`.

    ``traj[k]`` is a :class:`Density`, ``traj.final`` the last one; ``traj.mass``, ``traj.minimum`` and
    ``traj.entropy`` are diagnostics at the saved times."""

    def __init__(self, grid: Grid, times, values, *, generator=None, info: dict | None = None):
        self.grid = grid
        self.times = np.asarray(times, dtype=float)
        self.values = np.asarray(values, dtype=float)
        self.generator = generator
        self.info = dict(info or {})
        h = grid.cell_volume
        axes = tuple(range(1, self.values.ndim))
        self.mass = self.values.sum(axis=axes) * h
        self.minimum = self.values.min(axis=axes)
        with np.errstate(divide="ignore", invalid="ignore"):
            plogp = np.where(self.values > 0, self.values * np.log(np.where(self.values > 0, self.values, 1.0)), 0.0)
        self.entropy = -plogp.sum(axis=axes) * h

    def __len__(self):
        return len(self.times)

    def __getitem__(self, k) -> Density:
        return Density(self.grid, self.values[k], generator=self.generator, info={"time": float(self.times[k])})

    def __iter__(self):
        return (self[k] for k in range(len(self)))

    @property
    def final(self) -> Density:
        return self[len(self) - 1]

    def __repr__(self):
        return f"Trajectory({len(self)} densities, t in [{self.times[0]:g}, {self.times[-1]:g}])"


def warn_wall_mass(density: Density, threshold: float = 1e-3) -> float:
    """Warn when the density at a reflecting wall is not small compared with its peak (domain too small).

    Returns the largest ratio ``max P on a wall layer / max P``."""
    worst, where = wall_ratio(density)
    if worst > threshold:
        warnings.warn(
            f"the density at the {where[1]} wall of axis {where[0]} is {worst:.2g} of its peak: "
            "the domain is probably too small and the wall shapes the answer",
            RuntimeWarning,
            stacklevel=3,
        )
    return worst


def wall_ratio(density: Density) -> tuple[float, tuple | None]:
    """The largest ratio ``max P on the layer of cells at a non-periodic wall / max P``, and where:
    ``(axis, "lower" | "upper")`` (None without such walls)."""
    v = density.values
    peak = v.max()
    worst, where = 0.0, None
    for ax in range(v.ndim):
        lo, hi = density.grid.bc[ax]
        for side, kind in ((0, lo), (-1, hi)):
            if kind == "periodic":
                continue
            layer = np.take(v, side, axis=ax)
            r = layer.max() / peak if peak > 0 else 0.0
            if r > worst:
                worst, where = r, (ax, "lower" if side == 0 else "upper")
    return float(worst), where
