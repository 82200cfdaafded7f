"""How long a configured run will take, before it starts (:func:`fokkerplanck.model.budget.check_work`).

The command line asks :func:`preflight` before it opens the output folder: a run estimated beyond
:data:`~fokkerplanck.model.budget.WORK_LIMIT_S` is refused there with one line (``[particles] dt = 1e-300`` or
``n_steps = 1e12``, ``[solver] dt = 1e-9``), and one beyond :data:`~fokkerplanck.model.budget.WARN_S` is announced.
The library checks the same budget again where it knows the exact count (``simulate``, ``evolve``; the explicit
scheme's step is known only once the generator is built).
"""

from __future__ import annotations

import math

from ..model import budget

__all__ = ["preflight"]

_PARTICLE_COMMANDS = ("simulate", "compare", "demo")


def _particle_steps(p: dict) -> float | None:
    step = p.get("eta") if p.get("method") == "sgd" else p.get("dt")
    if p.get("n_steps") is not None:
        return float(p["n_steps"])
    if step and p.get("t_end") is not None:
        return float(p["t_end"]) / float(step)
    return None


def _evolve_steps(s: dict) -> float | None:
    scheme = s.get("scheme", "tr-bdf2")
    if scheme not in ("tr-bdf2", "implicit-euler"):
        return None  # explicit: the step comes from the generator; expm: n_save solves
    t_end = float(s.get("t_end", 10.0))
    dt = s.get("dt") or t_end / 200.0
    return t_end / float(dt) + float(s.get("n_save", 11))


def preflight(cfg: dict, command: str) -> list[str]:
    """Notes announcing runs estimated beyond an hour; raises :class:`~fokkerplanck.model.budget.TooLong` for
    a run beyond the limit."""
    notes, jobs = [], []
    axes = (cfg.get("grid") or {}).get("axes") or []
    cells = math.prod(int(a[2]) for a in axes) if axes else 0
    if command in _PARTICLE_COMMANDS and isinstance(cfg.get("particles"), dict):
        p = cfg["particles"]
        steps = _particle_steps(p)
        n = p.get("n_particles", 1)
        budget.check(80.0 * n * max(len(axes), 1), f"simulate: {n:,} particles")  # memory first, as the run does
        if steps is not None:
            jobs.append((steps, n, "particle-steps", f"[particles] {p.get('method', 'sde')}"))
    if command == "evolve" and cells:
        n_save = int((cfg.get("solver") or {}).get("n_save", 11))
        budget.check(8.0 * n_save * cells, f"evolve: {n_save} saved densities of {cells:,} cells")  # memory first
        steps = _evolve_steps(cfg.get("solver") or {})
        if steps is not None:
            jobs.append((steps, cells, "cell-steps", f"evolve ({(cfg.get('solver') or {}).get('scheme', 'tr-bdf2')})"))
    for steps, size, unit, what in jobs:
        seconds = budget.check_work(steps, size, unit, what)
        if seconds > budget.WARN_S:
            notes.append(
                f"{what}: {steps:.3g} steps x {size:,} = {steps * size:.2g} {unit}, estimated at about "
                f"{budget.duration(seconds)} ({budget.RATES[unit]:.0e} per second measured here)"
            )
    return notes
