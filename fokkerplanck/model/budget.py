"""Memory budget: refuse, before any work, what cannot fit in this machine's memory.

The figures are measured peak memory per grid cell of a steady state (sparse LU in 1D/2D and small 3D, Krylov
above), rounded up: 1D ~0.7 kB, 2D 1.8-2.5 kB (512^2: 600 MB), 3D 1.5 kB iterative (80^3) to 7 kB direct (48^3).
A run estimated above the machine's physical memory is refused with one line naming both numbers; anything
below is left to run.

Time budget (:func:`check_work`): the work of a stepped run -- steps x particles, or steps x cells -- divided by
the throughput measured here (2 busy cores, 2D): particles 3.3e7 (sde) to 3.7e7 (sgd) particle-steps/s; evolve
on 160 x 100 cells 3.8e6 (tr-bdf2), 1.1e7 (implicit Euler) and 3.8e7 (explicit) cell-steps/s. A run estimated
above :data:`WORK_LIMIT_S` (three days) is refused with one line naming the estimate (``dt = 1e-300`` asked for
1e302 steps and ran until killed); ``FOKKERPLANCK_ALLOW_LONG=1`` lets it run. Above :data:`WARN_S` (an hour) the
command line says how long it expects before it starts.
"""

from __future__ import annotations

import math
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
        raise TooLarge(
            f"{what} needs about {nbytes / 2**30:.3g} GiB, more than this machine's "
            f"{mem / 2**30:.3g} GiB of memory; use fewer cells or particles"
        )


def check_grid(grid, what: str = "the grid") -> None:
    """A solve on ``grid``: its cells times the measured bytes per cell of its dimension."""
    check(grid.size * BYTES_PER_CELL.get(grid.ndim, 3_000), f"{what} of {grid.size:,} cells")


#: work per second measured here (see the module docstring), rounded
RATES = {"particle-steps": 3e7, "cell-steps": 4e6, "explicit cell-steps": 4e7}
#: a run estimated longer than this many seconds is refused (unless ``FOKKERPLANCK_ALLOW_LONG=1``)
WORK_LIMIT_S = 3 * 86400.0
#: the command line announces runs estimated longer than this many seconds
WARN_S = 3600.0
ALLOW_ENV = "FOKKERPLANCK_ALLOW_LONG"


class TooLong(TooLarge):
    """A run that would take longer than :data:`WORK_LIMIT_S` (one-line message)."""


def duration(seconds: float) -> str:
    """``seconds`` in words: "40 s", "2.5 min", "3.1 h", "12 days", "3.2e+05 years"."""
    if not math.isfinite(seconds):
        return "forever"
    for unit, size in (("years", 365.25 * 86400), ("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size if unit != "h" else seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def check_work(steps: float, size: float, unit: str, what: str) -> float:
    """Estimated seconds of ``steps`` steps of ``size`` particles or cells (``unit`` a key of :data:`RATES`);
    raises :class:`TooLong` above :data:`WORK_LIMIT_S` unless ``FOKKERPLANCK_ALLOW_LONG`` is set (a count of
    steps beyond any integer is refused regardless)."""
    steps, size = float(steps), float(size)
    work = steps * size
    rate = RATES[unit]
    seconds = work / rate
    allowed = os.environ.get(ALLOW_ENV, "").strip().lower() not in ("", "0", "false", "no")
    if not math.isfinite(work) or steps >= 2.0**62 or (seconds > WORK_LIMIT_S and not allowed):
        noun = unit.split()[-1].split("-")[0]
        raise TooLong(
            f"{what}: {steps:.3g} steps x {size:.3g} {noun}s = {work:.2g} {unit}, about {duration(seconds)} "
            f"at {rate:.0e}/s (measured here), over the limit of {duration(WORK_LIMIT_S)}; take fewer steps "
            f"(a larger time step, a shorter t_end) or {noun}s, or set {ALLOW_ENV}=1"
        )
    return seconds
