"""The package's layout: subpackages in the order of the data flow, imports pointing only down it, no cycles,
numba only in kernel modules, and the 0.1 module paths still importable.

The imports are read from the source with :mod:`ast` (module-level and function-level ``import`` statements
alike, so a lazy import counts), resolved to module names, and checked against :data:`LAYERS`.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fokkerplanck"

#: subpackages from the bottom of the data flow to the top; a module may import from its own layer and below
LAYERS = ["model", "numerics", "solvers", "particles", "results", "scale", "sgd", "interface"]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Package modules that ``path`` imports (absolute names; ``from . import x`` resolves to the submodule)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("fokkerplanck"):
                continue
            for alias in node.names:  # "from .x import y": y may be a submodule
                sub = f"{mod}.{alias.name}"
                out.add(
                    sub
                    if (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists()
                    or (PACKAGE.parent / sub.replace(".", "/")).is_dir()
                    else mod
                )
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("fokkerplanck")}
    return out


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def test_every_module_sits_in_a_layer():
    loose = sorted(
        m
        for m in _graph()
        if _layer(m) is None
        and m.count(".") > 0
        and m not in ("fokkerplanck.__main__", "fokkerplanck._compat", "fokkerplanck._version", "fokkerplanck.cli")
    )
    assert not loose, f"modules outside the layers {LAYERS}: {loose}"
    assert sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()) == sorted(LAYERS)


def test_imports_point_down_the_data_flow():
    upward = []
    for module, targets in _graph().items():
        here = _layer(module)
        if here is None:
            continue
        for target in targets:
            there = _layer(target)
            if target == "fokkerplanck" or (there is not None and there > here):
                upward.append(f"{module} -> {target}")
    assert not upward, "imports pointing up the data flow:\n" + "\n".join(sorted(upward))


def test_no_import_cycle():
    graph = {m: {t for t in ts if t != m} for m, ts in _graph().items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node, path):
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    # a subpackage's __init__ importing its own modules is not a cycle of the code
    cycles = [
        c
        for c in cycles
        if not any(x.count(".") == 1 and x.split(".")[1] in LAYERS and all(y.startswith(x) for y in c) for x in c)
    ]
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_numba_only_in_kernel_modules():
    users = sorted(
        _module_name(p)
        for p in PACKAGE.rglob("*.py")
        if any(
            (isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "numba")
            or (isinstance(n, ast.Import) and any(a.name.split(".")[0] == "numba" for a in n.names))
            for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        )
        and "@njit" in p.read_text(encoding="utf-8")
    )
    assert all(m.endswith(".kernels") for m in users), f"numba kernels outside a kernels module: {users}"


def test_the_layer_check_can_fail():
    """The checker sees an upward import (a lazy one inside a function) when there is one."""
    fake = PACKAGE / "model" / "_layout_probe.py"
    fake.write_text("def f():\n    from ..interface import cli\n", encoding="utf-8")
    try:
        with pytest.raises(AssertionError, match="model._layout_probe -> fokkerplanck.interface.cli"):
            test_imports_point_down_the_data_flow()
    finally:
        fake.unlink()


@pytest.mark.parametrize(
    "old, new",
    [
        ("operator", "numerics.operator"),
        ("linalg", "solvers.linalg"),
        ("theory", "sgd.theory"),
        ("_particle_kernels", "particles.kernels"),
        ("config", "interface.config"),
        ("density", "model.density"),
    ],
)
def test_old_module_paths_still_import(old, new):
    assert importlib.import_module(f"fokkerplanck.{old}") is importlib.import_module(f"fokkerplanck.{new}")


def test_old_command_line_path_still_runs(tmp_path):
    import subprocess
    import sys

    from fokkerplanck.cli import COMMANDS, main  # noqa: F401 (the 0.1 import works)

    r = subprocess.run(
        [sys.executable, "-m", "fokkerplanck.cli", "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert r.returncode == 0 and "steady" in r.stdout and not r.stderr


def test_old_sweep_module_holds_both_halves():
    import fokkerplanck as fp
    from fokkerplanck.sweep import dask_available, prl_steady_point  # noqa: F401 (the 0.1 import works)

    assert fp.sweeps.sweep is fp.sweep and fp.sweeps.prl_phase_diagram is fp.phase_diagrams.prl_phase_diagram
    assert fp.operator is fp.numerics.operator
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        fp.nonsense
    with pytest.raises(AttributeError, match="moved to fokkerplanck.sgd.phase_diagrams"):
        fp.flatness.prl_search_point
