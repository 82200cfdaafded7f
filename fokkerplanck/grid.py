"""Uniform cell-centred grids on boxes in 1, 2 or 3 dimensions.

A grid splits the box ``[a_1, b_1] x ... x [a_d, b_d]`` into ``n_1 x ... x n_d`` equal cells. The unknowns
of the finite-volume scheme are the cell averages of the density, located at the cell centres

    x_{i,k} = a_i + (k + 1/2) h_i,      h_i = (b_i - a_i) / n_i,      k = 0 .. n_i - 1.

Each of the 2d walls carries a boundary condition:

* ``"reflecting"`` -- zero normal probability current, ``J . n = 0`` (mass is conserved);
* ``"absorbing"``  -- ``P = 0`` on the wall (mass leaves through it);
* ``"periodic"``   -- the axis wraps around (both sides of that axis must say so).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

BOUNDARY_KINDS = ("reflecting", "absorbing", "periodic")
BC_CODE = {"reflecting": 0, "absorbing": 1, "periodic": 2}


def _parse_bc(bc, ndim: int) -> tuple[tuple[str, str], ...]:
    """Normalise ``bc`` to one ``(low, high)`` pair of wall kinds per axis."""

    def one(kind, where):
        if not isinstance(kind, str) or kind.lower() not in BOUNDARY_KINDS:
            raise ValueError(f"bc{where}: unknown boundary condition {kind!r}; "
                             f"expected one of {', '.join(BOUNDARY_KINDS)}")
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

    Examples
    --------
    >>> g = Grid([(-2, 2, 256), (-1.5, 1.5, 192)], bc="reflecting")
    >>> g.shape, g.cell_volume
    ((256, 192), 0.000244140625)
    """

    axes: tuple
    bc: tuple

    def __init__(self, axes: Sequence[Sequence[float]], bc="reflecting"):
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
        return float(np.prod(self.spacing))

    @property
    def centers(self) -> list[np.ndarray]:
        """Cell centres, one 1D array per axis."""
        return [lo + (np.arange(n) + 0.5) * (hi - lo) / n for lo, hi, n in self.axes]

    @property
    def edges(self) -> list[np.ndarray]:
        """Cell faces, one 1D array of ``n_i + 1`` values per axis."""
        return [np.linspace(lo, hi, n + 1) for lo, hi, n in self.axes]

    def mesh(self) -> np.ndarray:
        """All cell centres as an array of shape ``shape + (ndim,)``."""
        return np.stack(np.meshgrid(*self.centers, indexing="ij"), axis=-1)

    def points(self) -> np.ndarray:
        """All cell centres as an ``(size, ndim)`` array in C order (the solver's unknown ordering)."""
        return self.mesh().reshape(-1, self.ndim)

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
        theta = np.asarray(theta, dtype=float)
        return np.all((theta >= self.lower) & (theta <= self.upper), axis=-1)

    def subgrid(self, axes: Sequence[int]) -> "Grid":
        """The grid made of a subset of this grid's axes (for marginals)."""
        return Grid([self.axes[i] for i in axes], bc=[self.bc[i] for i in axes])

    def refined(self, factor: int = 2) -> "Grid":
        return Grid([(lo, hi, n * factor) for lo, hi, n in self.axes], bc=self.bc)

    def __eq__(self, other) -> bool:
        return isinstance(other, Grid) and self.axes == other.axes and self.bc == other.bc

    def __hash__(self):
        return hash((self.axes, self.bc))

    def __repr__(self) -> str:
        ax = ", ".join(f"({lo:g}, {hi:g}, {n})" for lo, hi, n in self.axes)
        bcs = {k for pair in self.bc for k in pair}
        bc = repr(next(iter(bcs))) if len(bcs) == 1 else repr(list(self.bc))
        return f"Grid([{ax}], bc={bc})"

    def to_dict(self) -> dict:
        return {"axes": [list(a) for a in self.axes], "bc": [list(p) for p in self.bc]}
