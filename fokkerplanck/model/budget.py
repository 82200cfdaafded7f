"""Memory budget: refuse, before any work, what cannot fit in this machine's memory.

The figures are measured peak memory per grid cell of a steady state (sparse LU in 1D/2D and small 3D, Krylov
above), rounded up: 1D ~0.7 kB, 2D 1.8-2.5 kB (512^2: 600 MB), 3D 1.5 kB iterative (80^3) to 7 kB direct (48^3).
A run estimated above the machine's physical memory is refused with one line naming both numbers; anything
below is left to run.
"""
from __future__ import annotations

import os

BYTES_PER_CELL = {1: 1_000, 2: 2_500, 3: 3_000}


class TooLarge(ValueError):
    """A run that would need more memory than the machine has (one-line message)."""


def physical_memory() -> int | None:
    """Bytes of physical memory, or None where the system does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def check(nbytes: float, what: str) -> None:
    """Raise :class:`TooLarge` when ``nbytes`` exceeds the machine's physical memory."""
    mem = physical_memory()
    if mem is not None and nbytes > mem:
        raise TooLarge(f"{what} needs about {nbytes / 2**30:.3g} GiB, more than this machine's "
                       f"{mem / 2**30:.3g} GiB of memory; use fewer cells or particles")


def check_grid(grid, what: str = "the grid") -> None:
    """A solve on ``grid``: its cells times the measured bytes per cell of its dimension."""
    check(grid.size * BYTES_PER_CELL.get(grid.ndim, 3_000), f"{what} of {grid.size:,} cells")
