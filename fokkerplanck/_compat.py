"""Module paths of version 0.1, when every module sat side by side in ``fokkerplanck/``, keep working.

``import fokkerplanck.operator`` gives :mod:`fokkerplanck.numerics.operator`, and so on: each old name in
:data:`MOVED` is an alias, in ``sys.modules``, of the module at its new place. ``fokkerplanck.sweep`` held both
the generic sweep and the PRL phase diagrams; its alias looks a name up in both.
"""

from __future__ import annotations

import importlib
import sys
import types

#: old module name -> its place now (relative to the package)
MOVED = {
    "grid": "model.grid",
    "density": "model.density",
    "landscapes": "model.landscapes",
    "noise": "model.noise",
    "problem": "model.problem",
    "budget": "model.budget",
    "kernels": "numerics.kernels",
    "operator": "numerics.operator",
    "linalg": "solvers.linalg",
    "steady": "solvers.steady",
    "evolve": "solvers.evolve",
    "passage": "solvers.passage",
    "checkpoint": "solvers.checkpoint",
    "_particle_kernels": "particles.kernels",
    "io": "results.io",
    "compare": "results.compare",
    "theory": "sgd.theory",
    "adiabatic": "sgd.adiabatic",
    "flatness": "sgd.flatness",
    "config": "interface.config",
    "plot": "interface.plot",
}


class _SweepModule(types.ModuleType):
    """The 0.1 ``fokkerplanck.sweep``: the generic sweep and the PRL phase diagrams in one namespace."""

    def __init__(self, name, *parts):
        super().__init__(name, "Alias of fokkerplanck.scale.sweep and fokkerplanck.sgd.phase_diagrams.")
        self._parts = parts

    def __getattr__(self, name):
        for part in self._parts:
            if hasattr(part, name):
                return getattr(part, name)
        raise AttributeError(
            f"module 'fokkerplanck.sweep' has no attribute {name!r} (it now lives in "
            "fokkerplanck.scale.sweep and fokkerplanck.sgd.phase_diagrams)"
        )

    def __dir__(self):
        return sorted(set().union(*(dir(p) for p in self._parts)))


def install(package: str) -> types.ModuleType:
    """Register the old paths of ``package``; returns the merged ``sweep`` namespace."""
    for old, new in MOVED.items():
        sys.modules.setdefault(f"{package}.{old}", importlib.import_module(f"{package}.{new}"))
    merged = _SweepModule(
        f"{package}.sweep",
        importlib.import_module(f"{package}.scale.sweep"),
        importlib.import_module(f"{package}.sgd.phase_diagrams"),
    )
    sys.modules.setdefault(f"{package}.sweep", merged)
    return sys.modules[f"{package}.sweep"]


def old_module(package: str, name: str):
    """The module an old attribute path ``fokkerplanck.<name>`` names, or ``None``."""
    return sys.modules.get(f"{package}.{name}") if name in MOVED else None
