"""Uniform cell-centred grids on boxes in 1, 2 or 3 dimensions.

A grid splits the box ``[a_1, b_1] x ... x [a_d, b_d]`` into ``n_1 x ... x n_d`` equal cells. The unknowns
of the finite-volume scheme are the cell averages of the density, located at the cell centres

    x_{i,k} = a_i + (k + 1/2) h_i,      h_i = (b_i - a_i) / n_i,      k = 0 .. n_i - 1.

Each of the 2d walls carries a boundary condition:

* ``"reflecting"`` -- zero normal probability current, ``J . n = 0`` (mass is conserved);
* ``"absorbing"``  -- ``P = 0`` on the wall (mass leaves through it);
* ``"periodic"``   -- the axis wraps around (both sides of that axis must say so).

Aligned frames
--------------
A grid may carry a :class:`Frame`, ``theta = origin + M xi``: its box, cells and walls are then in the
coordinates ``xi`` (``axes``, ``centers``, ``edges``, ``spacing``), while :meth:`Grid.mesh` and
:meth:`Grid.points` give the cell centres in the problem's own coordinates ``theta``, where every field is
evaluated. The Fokker-Planck equation transforms covariantly, ``D_xi = M^-1 D M^-T``, ``v_xi = M^-1 v``, and
densities stay densities in ``theta`` (``cell_volume = |det M| prod h_i``). Aligning the grid's axes with the
principal directions of a problem -- a rotated valley, a tilted anisotropic noise -- makes its tensors nearly
diagonal on the grid, which any stencil resolves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

BOUNDARY_KINDS = ("reflecting", "absorbing", "periodic")
BC_CODE = {"reflecting": 0, "absorbing": 1, "periodic": 2}


def _parse_bc(bc, ndim: int) -> tuple[tuple[str, str], ...]:
    """Normalise ``bc`` to one ``(low, high)`` pair of wall kinds per axis."""

    def one(kind, where):
        if not isinstance(kind, str) or kind.lower() not in BOUNDARY_KINDS:
            raise ValueError(
                f"bc{where}: unknown boundary condition {kind!r}; expected one of {', '.join(BOUNDARY_KINDS)}"
            )
        return kind.lower()

    if isinstance(bc, str):
        k = one(bc, "")
        pairs = [(k, k)] * ndim
    else:
        bc = list(bc)
        if len(bc) != ndim:
            raise ValueError(f"bc has {len(bc)} entries but the grid has {ndim} axes")
        pairs = []
        for i, entry in enumerate(bc):
            if isinstance(entry, str):
                k = one(entry, f"[{i}]")
                pairs.append((k, k))
            else:
                entry = tuple(entry)
                if len(entry) != 2:
                    raise ValueError(f"bc[{i}] must be a string or a (low, high) pair, got {entry!r}")
                pairs.append((one(entry[0], f"[{i}][0]"), one(entry[1], f"[{i}][1]")))
    for i, (lo, hi) in enumerate(pairs):
        if (lo == "periodic") != (hi == "periodic"):
            raise ValueError(f"bc[{i}]: a periodic axis must be periodic on both sides, got ({lo!r}, {hi!r})")
    return tuple(pairs)


class Frame:
    """An affine frame ``theta = origin + matrix @ xi`` (``matrix`` invertible, ``d x d``).

    ``Frame.rotation(angle)`` (2D) turns the grid's first axis by ``angle`` (radians, counter-clockwise);
    ``Frame.principal_axes(T)`` takes the orthonormal eigenvectors of a symmetric ``T`` (ascending
    eigenvalues) as the grid's axes."""

    def __init__(self, matrix, origin=None):
        M = np.atleast_2d(np.asarray(matrix, dtype=float))
        if M.ndim != 2 or M.shape[0] != M.shape[1] or not 1 <= M.shape[0] <= 3:
            raise ValueError(f"Frame: matrix must be square, 1x1 to 3x3, got shape {M.shape}")
        if not np.all(np.isfinite(M)):
            raise ValueError("Frame: matrix must be finite")
        with np.errstate(over="ignore"):
            det = float(np.linalg.det(M))
        if not math.isfinite(det):
            raise ValueError("Frame: matrix entries too large (the determinant overflows)")
        scale = float(np.abs(M).max())  # relative to the entries' size (1e300 overflowed the power)
        if not abs(float(np.linalg.det(M / scale)) if scale > 1.0 else det) > 1e-12:
            raise ValueError("Frame: matrix must be invertible")
        c = np.zeros(M.shape[0]) if origin is None else np.asarray(origin, dtype=float).reshape(-1)
        if c.shape != (M.shape[0],) or not np.all(np.isfinite(c)):
            raise ValueError(f"Frame: origin must be {M.shape[0]} finite numbers")
        self.matrix, self.origin, self.det = M, c, det
        self.inverse = np.linalg.inv(M)
        self.orthogonal = bool(np.allclose(M.T @ M, np.eye(M.shape[0]), rtol=0.0, atol=1e-13))

    @classmethod
    def rotation(cls, angle: float, origin=None) -> "Frame":
        c, s = np.cos(float(angle)), np.sin(float(angle))
        return cls([[c, -s], [s, c]], origin)

    @classmethod
    def principal_axes(cls, tensor, origin=None) -> "Frame":
        T = np.asarray(tensor, dtype=float)
        _, V = np.linalg.eigh(0.5 * (T + T.T))
        if np.linalg.det(V) < 0:
            V[:, 0] = -V[:, 0]  # a rotation, not a reflection
        return cls(V, origin)

    @property
    def ndim(self) -> int:
        return self.matrix.shape[0]

    def to_theta(self, xi) -> np.ndarray:
        """``origin + M xi`` for points ``(..., d)``."""
        return np.asarray(xi, dtype=float) @ self.matrix.T + self.origin

    def to_xi(self, theta) -> np.ndarray:
        """``M^-1 (theta - origin)`` for points ``(..., d)``."""
        return (np.asarray(theta, dtype=float) - self.origin) @ self.inverse.T

    def tensor_in_xi(self, D) -> np.ndarray:
        """A tensor field ``(..., d, d)`` in the frame's coordinates: ``D_xi = M^-1 D M^-T`` (the diffusion of
        ``xi = M^-1 (theta - origin)``)."""
        return np.einsum("ij,...jk,lk->...il", self.inverse, D, self.inverse)

    def vector_in_xi(self, v) -> np.ndarray:
        """A velocity field ``(..., d)`` in the frame's coordinates: ``v_xi = M^-1 v``."""
        return np.asarray(v, dtype=float) @ self.inverse.T

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, Frame)
            and np.array_equal(self.matrix, other.matrix)
            and np.array_equal(self.origin, other.origin)
        )

    def __hash__(self):
        return hash((self.matrix.tobytes(), self.origin.tobytes()))

    def __repr__(self) -> str:
        return f"Frame({self.matrix.tolist()}, origin={self.origin.tolist()})"

    def to_dict(self) -> dict:
        return {"matrix": self.matrix.tolist(), "origin": self.origin.tolist()}


@dataclass(frozen=True, eq=False)
class Grid:
    """A uniform cell-centred grid with per-wall boundary conditions.

    Parameters
    ----------
    axes : sequence of ``(lower, upper, cells)``
        One triple per axis, 1 to 3 axes. ``cells >= 3``.
    bc : str or sequence
        ``"reflecting"`` (default), ``"absorbing"`` or ``"periodic"`` for every wall, or one entry per axis,
        each a string or a ``(low, high)`` pair.
    frame : Frame, optional
        ``theta = origin + M xi``: the box, cells and walls are in ``xi`` (see the module docstring); a
        ``(matrix, origin)`` pair or a matrix is accepted too.

    Examples
    --------
    >>> g = Grid([(-2, 2, 256), (-1.5, 1.5, 192)], bc="reflecting")
    >>> g.shape, g.cell_volume
    ((256, 192), 0.000244140625)
    """

    axes: tuple
    bc: tuple
    frame: Frame | None

    def __init__(self, axes: Sequence[Sequence[float]], bc="reflecting", frame=None):
        try:
            axes = [tuple(a) for a in axes]
        except TypeError:
            raise ValueError("axes must be a sequence of (lower, upper, cells) triples") from None
        if not 1 <= len(axes) <= 3:
            raise ValueError(f"a grid has 1, 2 or 3 axes, got {len(axes)}")
        clean = []
        for i, a in enumerate(axes):
            if len(a) != 3:
                raise ValueError(f"axis {i}: expected (lower, upper, cells), got {a!r}")
            lo, hi, n = a
            lo, hi = float(lo), float(hi)
            if not (np.isfinite(lo) and np.isfinite(hi)) or not hi > lo:
                raise ValueError(f"axis {i}: need finite lower < upper, got ({lo}, {hi})")
            if int(n) != n or int(n) < 3:
                raise ValueError(f"axis {i}: need an integer number of cells >= 3, got {n!r}")
            clean.append((lo, hi, int(n)))
        object.__setattr__(self, "axes", tuple(clean))
        object.__setattr__(self, "bc", _parse_bc(bc, len(clean)))
        if frame is not None and not isinstance(frame, Frame):
            frame = Frame(*frame) if isinstance(frame, tuple) else Frame(frame)
        if frame is not None and frame.ndim != len(clean):
            raise ValueError(f"frame is {frame.ndim}-dimensional but the grid has {len(clean)} axes")
        object.__setattr__(self, "frame", frame)

    # --- geometry -------------------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        return len(self.axes)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(n for _, _, n in self.axes)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def lower(self) -> np.ndarray:
        return np.array([lo for lo, _, _ in self.axes])

    @property
    def upper(self) -> np.ndarray:
        return np.array([hi for _, hi, _ in self.axes])

    @property
    def spacing(self) -> np.ndarray:
        """Cell widths ``h_i``."""
        return np.array([(hi - lo) / n for lo, hi, n in self.axes])

    @property
    def cell_volume(self) -> float:
        """Volume of a cell in the problem's coordinates ``theta`` (``|det M| prod h_i`` in a frame)."""
        v = float(np.prod(self.spacing))
        return v if self.frame is None else v * abs(self.frame.det)

    @property
    def centers(self) -> list[np.ndarray]:
        """Cell centres, one 1D array per axis (of the frame's coordinates ``xi`` when there is a frame)."""
        return [lo + (np.arange(n) + 0.5) * (hi - lo) / n for lo, hi, n in self.axes]

    @property
    def edges(self) -> list[np.ndarray]:
        """Cell faces, one 1D array of ``n_i + 1`` values per axis."""
        return [np.linspace(lo, hi, n + 1) for lo, hi, n in self.axes]

    def local_mesh(self) -> np.ndarray:
        """All cell centres in the grid's own coordinates (``xi`` in a frame), shape ``shape + (ndim,)``."""
        return np.stack(np.meshgrid(*self.centers, indexing="ij"), axis=-1)

    def mesh(self) -> np.ndarray:
        """All cell centres in the problem's coordinates ``theta``, shape ``shape + (ndim,)``."""
        xi = self.local_mesh()
        return xi if self.frame is None else self.frame.to_theta(xi)

    def points(self) -> np.ndarray:
        """All cell centres (``theta``) as an ``(size, ndim)`` array in C order (the solver's unknown ordering)."""
        return self.mesh().reshape(-1, self.ndim)

    def to_local(self, theta) -> np.ndarray:
        """Points ``(..., d)`` in the grid's own coordinates (``xi = M^-1 (theta - origin)`` in a frame)."""
        theta = np.asarray(theta, dtype=float)
        return theta if self.frame is None else self.frame.to_xi(theta)

    # --- boundary conditions --------------------------------------------------------------------
    def bc_codes(self) -> np.ndarray:
        """Integer wall codes, shape ``(ndim, 2)``: 0 reflecting, 1 absorbing, 2 periodic."""
        return np.array([[BC_CODE[lo], BC_CODE[hi]] for lo, hi in self.bc], dtype=np.int64)

    @property
    def conserves_mass(self) -> bool:
        """True when no wall is absorbing."""
        return all(k != "absorbing" for pair in self.bc for k in pair)

    # --- helpers ----------------------------------------------------------------------------------
    def contains(self, theta) -> np.ndarray:
        """Whether points ``theta (..., d)`` lie in the box (in a frame: whether their ``xi`` does)."""
        xi = self.to_local(theta)
        return np.all((xi >= self.lower) & (xi <= self.upper), axis=-1)

    def subgrid(self, axes: Sequence[int]) -> "Grid":
        """The grid made of a subset of this grid's axes (for marginals; in a frame, axes of ``xi``, without
        the frame)."""
        return Grid([self.axes[i] for i in axes], bc=[self.bc[i] for i in axes])

    def refined(self, factor: int = 2) -> "Grid":
        return Grid([(lo, hi, n * factor) for lo, hi, n in self.axes], bc=self.bc, frame=self.frame)

    def __eq__(self, other) -> bool:
        return isinstance(other, Grid) and self.axes == other.axes and self.bc == other.bc and self.frame == other.frame

    def __hash__(self):
        return hash((self.axes, self.bc, self.frame))

    def __repr__(self) -> str:
        ax = ", ".join(f"({lo:g}, {hi:g}, {n})" for lo, hi, n in self.axes)
        bcs = {k for pair in self.bc for k in pair}
        bc = repr(next(iter(bcs))) if len(bcs) == 1 else repr(list(self.bc))
        frame = "" if self.frame is None else f", frame={self.frame!r}"
        return f"Grid([{ax}], bc={bc}{frame})"

    def to_dict(self) -> dict:
        out = {"axes": [list(a) for a in self.axes], "bc": [list(p) for p in self.bc]}
        if self.frame is not None:
            out["frame"] = self.frame.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Grid":
        """The inverse of :meth:`to_dict`."""
        f = d.get("frame")
        frame = None if f is None else Frame(f["matrix"], f["origin"])
        return cls([tuple(a) for a in d["axes"]], bc=[tuple(p) for p in d["bc"]], frame=frame)
