"""TOML run configurations: schema, validation and construction of the solver objects.

A configuration is a TOML file with the sections below (every section is optional; a missing one comes
from the command's built-in default, see :data:`DEFAULTS`). Everything is validated *before* any work
starts; a mistake raises :class:`ConfigError`, a ``ValueError`` whose message is one line naming the
section and the key, e.g.

    config error: [noise] unknown key 'delt_s' (did you mean 'delta_s'?)

Schema (``type``, default; "required" where there is none)::

    [grid]        axes = [[lo, hi, n], ...]    (1 to 3 axes; n >= 3 cells)           required
                  bc   = "reflecting" | "absorbing" | "periodic", or one entry per axis
                         (a string or a [low, high] pair)                           "reflecting"
    [landscape]   kind = "quadratic"          A (matrix or diagonal list), center
                         "degenerate-valley"  lambdas, eps, lambda_bar0            (PRL Eq. 8)
                         "high-dim-valley"    n_flat, n_sharp, lambdas, eps, lambda_bar0 (PRL Eq. 5)
                         "multi-valley"       centers, curvatures, depths, beta
    [noise]       kind = "constant"           D (matrix, diagonal list or scalar)
                         "isotropic"          T
                         "hessian-aligned"    delta_s        (D = delta_s H^2)
                         "hessian-linear"     delta          (D = delta [H]_+)
    [solver]      method ("auto" | "direct" | "iterative" | "gth"), tol, stencil_radius, convention
                  ("ito" | "stratonovich" | "hanggi-klimontovich"), t_end, n_save, dt, scheme
    [initial]     mean, cov                   Gaussian initial density of ``evolve``
    [particles]   method ("sde" | "sgd" | "langevin"), n_particles, theta0 (a point, or "uniform":
                  uniform in the grid box), t_end, dt, eta, sigma, n_steps, shift, T, seed
    [sweep]       parameter ("section.key"), values, parameter2, values2, observable, cache_dir

The builders :func:`build_grid`, :func:`build_landscape`, :func:`build_noise` and :func:`build_problem`
turn a validated configuration into ``fokkerplanck`` objects; errors raised by the constructors are
re-raised as :class:`ConfigError` naming the section.
"""

from __future__ import annotations

import copy
import difflib
import math
from pathlib import Path

import numpy as np

from ..numerics.operator import DEFAULT_STENCIL_RADIUS

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "ConfigError",
    "DEFAULTS",
    "SCHEMA",
    "load_config",
    "validate",
    "parse_toml",
    "build_grid",
    "build_landscape",
    "build_noise",
    "build_problem",
    "get_path",
    "set_path",
    "to_toml",
]


MESSAGE_LIMIT = 300  # characters of a one-line error


class ConfigError(ValueError):
    """A user mistake in a configuration; the message is one line starting with ``config error:``."""

    def __init__(self, message: str):
        message = " ".join(str(message).split())  # always one line
        if not message.startswith("config error:"):
            message = "config error: " + message
        if len(message) > MESSAGE_LIMIT:  # a huge value is not echoed whole
            message = message[: MESSAGE_LIMIT - 3] + "..."
        super().__init__(message)


# ------------------------------------------------------------------------------------------------------
# value types: each checker returns the normalised value or raises _Bad(reason)
# ------------------------------------------------------------------------------------------------------
class _Bad(Exception):
    pass


def _show(v) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _number(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _Bad(f"expected a number, got {_show(v)}")
    if not math.isfinite(v):
        raise _Bad(f"expected a finite number, got {v}")
    return float(v)


def _positive(v):
    v = _number(v)
    if not v > 0:
        raise _Bad(f"expected a number > 0, got {v:g}")
    return v


def _unit_interval(v):
    v = _number(v)
    if not 0 < v < 1:
        raise _Bad(f"expected a number in (0, 1), got {v:g}")
    return v


def _nonneg(v):
    v = _number(v)
    if v < 0:
        raise _Bad(f"expected a number >= 0, got {v:g}")
    return v


def _integer(minimum):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int):
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            else:
                raise _Bad(f"expected an integer, got {_show(v)}")
        if v < minimum:
            raise _Bad(f"expected an integer >= {minimum}, got {v}")
        return int(v)

    check.__name__ = f"integer>={minimum}"
    return check


def _string(choices=None):
    def check(v):
        if not isinstance(v, str):
            raise _Bad(f"expected a string, got {_show(v)}")
        if choices is not None and v.lower() not in choices:
            hint = difflib.get_close_matches(v.lower(), choices, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise _Bad(f"{v!r} is not one of {', '.join(map(repr, choices))}{extra}")
        return v.lower() if choices is not None else v

    return check


def _vector(v):
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return [_number(v)]
    if not isinstance(v, list) or not v:
        raise _Bad(f"expected a non-empty list of numbers, got {_show(v)}")
    try:
        return [_number(x) for x in v]
    except _Bad as e:
        raise _Bad(f"expected a list of numbers: {e}") from None


def _matrix(v):
    """A scalar, a list (diagonal) or a square list of lists."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return _number(v)
    if not isinstance(v, list) or not v:
        raise _Bad(f"expected a number, a list (diagonal) or a list of rows, got {_show(v)}")
    if all(isinstance(r, list) for r in v):
        rows = [_vector(r) for r in v]
        if any(len(r) != len(rows) for r in rows):
            raise _Bad(f"expected a square matrix, got rows of lengths {[len(r) for r in rows]}")
        return rows
    return _vector(v)


def _nested(v):
    """A list of numbers, or a list of lists of numbers (e.g. per-sharp-variable lambdas)."""
    if isinstance(v, list) and v and all(isinstance(r, list) for r in v):
        return [_vector(r) for r in v]
    return _vector(v)


def _axes(v):
    if not isinstance(v, list) or not v:
        raise _Bad(f"expected a list of [lower, upper, cells] triples, got {_show(v)}")
    if not 1 <= len(v) <= 3:
        raise _Bad(f"a grid has 1, 2 or 3 axes, got {len(v)}")
    out = []
    for i, a in enumerate(v):
        if not isinstance(a, list) or len(a) != 3:
            raise _Bad(f"axis {i}: expected [lower, upper, cells], got {_show(a)}")
        try:
            lo, hi = _number(a[0]), _number(a[1])
            n = _integer(3)(a[2])
        except _Bad as e:
            raise _Bad(f"axis {i}: {e}") from None
        if not hi > lo:
            raise _Bad(f"axis {i}: need lower < upper, got [{lo:g}, {hi:g}]")
        out.append([lo, hi, n])
    return out


_BC = ("reflecting", "absorbing", "periodic")


def _bc(v):
    one = _string(_BC)
    if isinstance(v, str):
        return one(v)
    if not isinstance(v, list) or not v:
        raise _Bad(f"expected a string or a list with one entry per axis, got {_show(v)}")
    out = []
    for e in v:
        if isinstance(e, list):
            if len(e) != 2:
                raise _Bad(f"expected a [low, high] pair, got {_show(e)}")
            out.append([one(e[0]), one(e[1])])
        else:
            out.append(one(e))
    return out


def _theta0(v):
    if isinstance(v, str):
        if v.lower() != "uniform":
            raise _Bad(f'expected a point (list of numbers) or "uniform", got {v!r}')
        return "uniform"
    return _vector(v)


def _values(v):
    """Sweep values: numbers or strings (a point is named by its value), each once."""
    if not isinstance(v, list) or not v:
        raise _Bad(f"expected a non-empty list of values, got {_show(v)}")
    for x in v:
        if isinstance(x, bool) or not isinstance(x, (int, float, str)):
            raise _Bad(
                f"each value must be a number or a string, got {_show(x)} (a list-valued key such as "
                "landscape.lambdas cannot be swept; sweep one of its numbers with a config per value)"
            )
    if len(set(v)) != len(v):
        raise _Bad(f"repeated values in {_show(v)}")
    return list(v)


class Key:
    """Schema entry: a checker, a default (``REQUIRED`` when there is none) and a one-line description."""

    def __init__(self, check, default=None, doc: str = "", required: bool = False):
        self.check, self.default, self.doc, self.required = check, default, doc, required


# ------------------------------------------------------------------------------------------------------
# the schema
# ------------------------------------------------------------------------------------------------------
LANDSCAPES = {
    "quadratic": {
        "A": Key(_matrix, required=True, doc="curvature matrix (a list = its diagonal, a number = a 1D A)"),
        "center": Key(_vector, doc="minimum c (default 0)"),
    },
    "degenerate-valley": {
        "lambdas": Key(_vector, [8.0, -2.0, 1.0], "lambda(x) = sum_n lambdas[n] x^(2n)"),
        "eps": Key(_number, 1e-3, "degeneracy-breaking eps"),
        "lambda_bar0": Key(_number, doc="defaults to lambdas[0]"),
    },
    "high-dim-valley": {
        "n_flat": Key(_integer(1), 1, "number of flat variables x"),
        "n_sharp": Key(_integer(1), 1, "number of sharp variables y"),
        "lambdas": Key(_nested, [8.0, -2.0, 1.0], "(K,) or (n_sharp, K) coefficients in |x|^2"),
        "eps": Key(_number, 1e-3, "degeneracy-breaking eps"),
        "lambda_bar0": Key(_number, doc="defaults to mean(lambdas[:, 0])"),
    },
    "multi-valley": {
        "centers": Key(_nested, required=True, doc="(K, d) well centres"),
        "curvatures": Key(
            lambda v: v if isinstance(v, list) else _vector(v),
            required=True,
            doc="(K,), (K, d) or (K, d, d) curvatures",
        ),
        "depths": Key(_vector, doc="(K,) well offsets b_k"),
        "beta": Key(_positive, 20.0, "soft-min sharpness"),
    },
}

# any landscape can be placed by a frame, theta = origin + M xi (landscapes.Transformed): a rotated valley
PLACEMENT = {
    "rotation": Key(_number, doc="2D: the landscape turned by this angle (radians) about origin"),
    "frame": Key(_matrix, doc="the landscape placed by theta = origin + M xi (instead of rotation)"),
    "origin": Key(_vector, doc="the placement's origin (default 0)"),
}

NOISES = {
    "constant": {"D": Key(_matrix, required=True, doc="constant SPD tensor (a list = its diagonal)")},
    "isotropic": {"T": Key(_nonneg, required=True, doc="temperature, D = T I")},
    "hessian-aligned": {"delta_s": Key(_nonneg, required=True, doc="D = delta_s H^2, delta_s = eta sigma")},
    "hessian-linear": {"delta": Key(_nonneg, required=True, doc="D = delta [H]_+")},
}

SCHEMA = {
    "grid": {
        "axes": Key(_axes, required=True, doc="[[lower, upper, cells], ...]"),
        "bc": Key(_bc, "reflecting", "wall kind(s)"),
        "rotation": Key(_number, doc="2D: an aligned frame turned by this angle (radians): theta = origin + R xi"),
        "frame": Key(_matrix, doc="an aligned frame's matrix M, theta = origin + M xi (instead of rotation)"),
        "origin": Key(_vector, doc="the aligned frame's origin (default 0)"),
    },
    "landscape": {"kind": Key(_string(tuple(LANDSCAPES)), required=True, doc="landscape family")},
    "noise": {"kind": Key(_string(tuple(NOISES)), required=True, doc="noise model")},
    "solver": {
        "method": Key(_string(("auto", "direct", "iterative", "gth")), "auto", "steady-state linear solver"),
        "tol": Key(_unit_interval, 1e-10, "relative residual of the iterative solver, in (0, 1)"),
        "stencil_radius": Key(_integer(1), DEFAULT_STENCIL_RADIUS, "longest diffusion-stencil jump, in cells"),
        "convention": Key(
            _string(("ito", "stratonovich", "hanggi-klimontovich")), "ito", "interpretation of multiplicative noise"
        ),
        "t_end": Key(_positive, 10.0, "evolve: final time"),
        "n_save": Key(_integer(2), 11, "evolve: number of saved densities (>= 2)"),
        "dt": Key(_positive, doc="evolve: time step (default t_end / 200)"),
        "scheme": Key(
            _string(("tr-bdf2", "implicit-euler", "explicit", "expm")), "tr-bdf2", "evolve: time-stepping scheme"
        ),
    },
    "initial": {
        "mean": Key(_vector, doc="mean of the Gaussian initial density (default: the grid centre)"),
        "cov": Key(_matrix, doc="its covariance (a list = diagonal; default: (box width / 10)^2)"),
    },
    "particles": {
        "method": Key(_string(("sde", "sgd", "langevin")), "sde", "particle dynamics"),
        "n_particles": Key(_integer(1), 10_000, "number of particles"),
        "theta0": Key(_theta0, "uniform", 'start point, or "uniform" in the grid box'),
        "t_end": Key(_positive, doc="final time (sde/langevin; sgd: t = steps * eta)"),
        "dt": Key(_positive, doc="time step (sde/langevin)"),
        "n_steps": Key(_integer(1), doc="number of steps (instead of t_end)"),
        "eta": Key(_positive, doc="learning rate (sgd)"),
        "sigma": Key(_nonneg, doc="shift variance parameter (sgd)"),
        "shift": Key(_string(("linear", "exact")), doc="sgd update (default linear)"),
        "T": Key(_nonneg, doc="temperature (langevin)"),
        "seed": Key(_integer(0), 0, "random seed"),
    },
    "sweep": {
        "parameter": Key(_string(), required=True, doc='"section.key" to vary, e.g. "noise.delta_s"'),
        "values": Key(_values, required=True, doc="its values"),
        "parameter2": Key(_string(), doc='a second "section.key" (2D phase diagram)'),
        "values2": Key(_values, doc="its values"),
        "observable": Key(
            _string(("mean_abs_x", "mean_x", "var_x", "var_y", "entropy", "peak_x")),
            "mean_abs_x",
            "scalar recorded at each point (x = axis 0, y = axis 1)",
        ),
        "cache_dir": Key(_string(), doc="directory caching finished points (a rerun skips them)"),
    },
}

# ------------------------------------------------------------------------------------------------------
# built-in defaults (one per command)
# ------------------------------------------------------------------------------------------------------
#: The PRL Eq. (11) setting: L = 1/2 (1 + x^2) y^2 (lambdas = (1, 1), eps = 0), D = diag(Delta/kappa, Delta) with
#: Delta = 0.05, kappa = 3, reflecting walls at x = +-2, y = +-1. The x-motion relaxes on a time ~ 38 here
#: (spectral gap of the adiabatic x-process); the particles start uniform in the box and run to t = 125.
PRL_EQ11 = {
    "grid": {"axes": [[-2.0, 2.0, 160], [-1.0, 1.0, 100]], "bc": "reflecting"},
    "landscape": {"kind": "degenerate-valley", "lambdas": [1.0, 1.0], "eps": 0.0},
    "noise": {"kind": "constant", "D": [0.05 / 3.0, 0.05]},
    "particles": {"method": "sde", "n_particles": 100_000, "theta0": "uniform", "t_end": 125.0, "dt": 0.025, "seed": 0},
}

DEFAULTS = {
    "demo": PRL_EQ11,
    "compare": PRL_EQ11,
    "steady": {k: v for k, v in PRL_EQ11.items() if k != "particles"},
    "simulate": PRL_EQ11,
    "evolve": {
        **{k: v for k, v in PRL_EQ11.items() if k != "particles"},
        "solver": {"t_end": 50.0, "n_save": 11},
        "initial": {"mean": [2.0, 0.0], "cov": [0.04, 0.01]},
    },
    # PRL Fig. 5 landscape, SGD noise D = delta_s H^2 across the transition delta_s* = -eps/lambda_1 = 5e-4
    "sweep": {
        "grid": {"axes": [[-2.0, 2.0, 120], [-0.6, 0.6, 80]], "bc": "reflecting"},
        "landscape": {"kind": "degenerate-valley", "lambdas": [8.0, -2.0, 1.0], "eps": 1e-3},
        "noise": {"kind": "hessian-aligned", "delta_s": 5e-4},
        "sweep": {
            "parameter": "noise.delta_s",
            "values": [1e-4, 2e-4, 3e-4, 4e-4, 5e-4, 6e-4, 8e-4, 1e-3],
            "observable": "mean_abs_x",
        },
    },
}

#: the reduced settings of ``--quick`` (merged over the chosen configuration)
QUICK = {
    "grid_cells": 48,
    "particles": {"n_particles": 4000, "t_end": 20.0},
    "solver": {"t_end": 5.0, "n_save": 3},
}


# ------------------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------------------
def _suggest(word: str, choices) -> str:
    hint = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def _check_section(name: str, given: dict, spec: dict, context: str = "") -> dict:
    if not isinstance(given, dict):
        raise ConfigError(f"[{name}] must be a table (a [{name}] section), got {_show(given)}")
    out = {}
    for key, value in given.items():
        if key not in spec:
            raise ConfigError(f"[{name}] unknown key {key!r}{context}{_suggest(key, spec)}; allowed: {', '.join(spec)}")
        try:
            out[key] = spec[key].check(value)
        except _Bad as e:
            raise ConfigError(f"[{name}] {key}: {e}") from None
    for key, k in spec.items():
        if key in out:
            continue
        if k.required:
            raise ConfigError(f"[{name}] missing required key {key!r}{context} ({k.doc})")
        if k.default is not None:
            out[key] = copy.deepcopy(k.default)
    return out


def validate(raw: dict) -> dict:
    """Validate a configuration dictionary (as parsed from TOML). Returns a normalised copy with the schema
    defaults filled in; raises :class:`ConfigError` on the first mistake."""
    if not isinstance(raw, dict):
        raise ConfigError(f"a configuration is a table of sections, got {_show(raw)}")
    out = {}
    for name, section in raw.items():
        if name not in SCHEMA:
            hint = difflib.get_close_matches(name, list(SCHEMA), n=1, cutoff=0.6)
            extra = f" (did you mean [{hint[0]}]?)" if hint else ""
            raise ConfigError(f"unknown section [{name}]{extra}; allowed: {', '.join('[' + s + ']' for s in SCHEMA)}")
        if not isinstance(section, dict):
            raise ConfigError(f"{name!r} must be a section ([{name}] table), got {_show(section)}")
        if name in ("landscape", "noise"):
            family = LANDSCAPES if name == "landscape" else NOISES
            if "kind" not in section:
                raise ConfigError(f"[{name}] missing required key 'kind' (one of {', '.join(family)})")
            try:
                kind = SCHEMA[name]["kind"].check(section["kind"])
            except _Bad as e:
                raise ConfigError(f"[{name}] kind: {e}") from None
            spec = {"kind": SCHEMA[name]["kind"], **family[kind], **(PLACEMENT if name == "landscape" else {})}
            out[name] = _check_section(name, section, spec, context=f" for kind {kind!r}")
        else:
            out[name] = _check_section(name, section, SCHEMA[name])
    _cross_checks(out)
    return out


def _cross_checks(cfg: dict) -> None:
    """Consistency between keys (dimensions, per-method particle parameters)."""
    grid = cfg.get("grid")
    d = len(grid["axes"]) if grid else None
    if grid and isinstance(grid["bc"], list) and len(grid["bc"]) != d:
        raise ConfigError(f"[grid] bc: {len(grid['bc'])} entries for {d} axes")
    if grid:
        for i, entry in enumerate(grid["bc"] if isinstance(grid["bc"], list) else [grid["bc"]] * d):
            if isinstance(entry, list) and (entry[0] == "periodic") != (entry[1] == "periodic"):
                raise ConfigError(f"[grid] bc: axis {i} is periodic on one side only ({entry})")
    noise = cfg.get("noise")
    if noise and noise["kind"] == "constant":
        D = np.asarray(noise["D"], dtype=float)
        M = np.diag(D) if D.ndim == 1 else (D * np.eye(d or 1) if D.ndim == 0 else D)
        if d is not None and M.shape != (d, d):
            raise ConfigError(f"[noise] D: a {M.shape[0]}x{M.shape[1]} tensor for a {d}-dimensional grid")
        if not np.allclose(M, M.T, rtol=1e-12, atol=0.0):
            raise ConfigError(f"[noise] D: the diffusion tensor is not symmetric: {M.tolist()}")
        lam = np.linalg.eigvalsh(M)
        if lam[0] < -1e-12 * max(abs(lam).max(), 1e-300):
            raise ConfigError(
                f"[noise] D: the diffusion tensor is not positive semi-definite "
                f"(smallest eigenvalue {lam[0]:.4g}): {M.tolist()}"
            )
        if not lam[-1] > 0:
            raise ConfigError("[noise] D: the diffusion tensor is zero")
    land = cfg.get("landscape")
    if land and d is not None:
        ld = _landscape_dim(land)
        if ld is not None and ld != d:
            raise ConfigError(f"[landscape] a {ld}-dimensional {land['kind']} landscape on a {d}-dimensional [grid]")
    part = cfg.get("particles")
    if part:
        m = part["method"]
        if m == "sgd":
            for k in ("eta", "sigma"):
                if k not in part:
                    raise ConfigError(f"[particles] method 'sgd' needs {k!r}")
            if "dt" in part:
                raise ConfigError("[particles] dt: method 'sgd' steps by eta; remove dt")
        else:
            if "dt" not in part:
                raise ConfigError(f"[particles] method {m!r} needs a time step 'dt'")
            for k in ("eta", "sigma", "shift"):
                if k in part:
                    raise ConfigError(f"[particles] {k}: a parameter of method 'sgd', not of {m!r}")
        if m == "langevin" and "T" not in part:
            raise ConfigError("[particles] method 'langevin' needs a temperature 'T'")
        if m != "langevin" and "T" in part:
            raise ConfigError(
                f"[particles] T: a parameter of method 'langevin', not of {m!r} (use [noise] kind = \"isotropic\")"
            )
        if "t_end" not in part and "n_steps" not in part:
            raise ConfigError("[particles] give 't_end' or 'n_steps'")
        step = part.get("eta") if m == "sgd" else part.get("dt")
        if "t_end" in part and step and "n_steps" not in part:
            from ..particles import step_count  # the rule the run itself applies: whole steps only

            try:
                step_count(part["t_end"], None, float(step), "[particles]")
            except ValueError as e:
                raise ConfigError(str(e)) from None
        if isinstance(part["theta0"], list) and d is not None and len(part["theta0"]) != d:
            raise ConfigError(f"[particles] theta0: {len(part['theta0'])} coordinates for a {d}-dimensional grid")
    init = cfg.get("initial")
    if init and d is not None:
        if "mean" in init and len(init["mean"]) != d:
            raise ConfigError(f"[initial] mean: {len(init['mean'])} coordinates for a {d}-dimensional grid")
        if "cov" in init:
            C = np.asarray(init["cov"], dtype=float)
            C = np.diag(C) if C.ndim == 1 else (C * np.eye(d) if C.ndim == 0 else C)
            if C.shape != (d, d):
                raise ConfigError(f"[initial] cov: a {C.shape[0]}x{C.shape[1]} matrix for a {d}-dimensional grid")
            if np.linalg.eigvalsh(0.5 * (C + C.T))[0] <= 0:
                raise ConfigError("[initial] cov: must be symmetric positive definite")
    sweep = cfg.get("sweep")
    if sweep:
        for p, vals in (("parameter", "values"), ("parameter2", "values2")):
            if (p in sweep) != (vals in sweep):
                raise ConfigError(f"[sweep] {p!r} and {vals!r} go together")
            if p in sweep:
                path = sweep[p]
                if path.count(".") != 1:
                    raise ConfigError(f'[sweep] {p}: expected "section.key", got {path!r}')
                sec, key = path.split(".")
                if sec not in ("grid", "landscape", "noise", "solver"):
                    raise ConfigError(
                        f"[sweep] {p}: can vary [grid], [landscape], [noise] or [solver] keys, got [{sec}]"
                    )
        if sweep.get("parameter2") is not None and sweep.get("parameter2") == sweep.get("parameter"):
            raise ConfigError(f"[sweep] parameter2: the same key as parameter ({sweep['parameter']!r})")


def _landscape_dim(land: dict):
    k = land["kind"]
    if k == "quadratic":
        A = np.asarray(land["A"], dtype=float)
        return 1 if A.ndim == 0 else A.shape[0]
    if k == "degenerate-valley":
        return 2
    if k == "high-dim-valley":
        return land["n_flat"] + land["n_sharp"]
    if k == "multi-valley":
        rows = land["centers"]
        if isinstance(rows[0], list) and len({len(r) if isinstance(r, list) else 1 for r in rows}) != 1:
            raise ConfigError(
                f"[landscape] centers: every centre needs the same number of coordinates, got "
                f"{[len(r) if isinstance(r, list) else 1 for r in rows]}"
            )
        c = np.asarray(rows, dtype=float)
        return 1 if c.ndim == 1 else c.shape[1]
    return None  # pragma: no cover


# ------------------------------------------------------------------------------------------------------
# loading
# ------------------------------------------------------------------------------------------------------
def parse_toml(text: str, source: str = "<string>") -> dict:
    """Parse TOML text; a syntax error becomes a one-line :class:`ConfigError` with the position."""
    if text.startswith("\ufeff"):
        text = text[1:]  # a UTF-8 byte-order mark (editors on Windows write one): not TOML, ignored
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source} is not valid TOML: {e}") from None
    except RecursionError:
        raise ConfigError(f"{source} nests arrays or tables too deeply to be a configuration") from None


def load_config(path=None, command: str = "steady", quick: bool = False) -> dict:
    """Read, merge and validate a configuration.

    ``path`` None: the built-in default of ``command``. Otherwise the file's sections replace the default's
    sections of the same name (a section is taken whole, so a ``[landscape]`` of another kind does not inherit
    the default's parameters), and sections the file does not give come from the default. ``quick`` shrinks the
    grid and the particle count (for tests)."""
    if command not in DEFAULTS:
        raise ValueError(f"unknown command {command!r}")
    base = copy.deepcopy(DEFAULTS[command])
    user = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file '{path}' not found")
        if not p.is_file():
            raise ConfigError(f"config path '{path}' is not a file")
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read config file '{path}': {e}") from None
        user = parse_toml(text, source=f"'{path}'")
        validate(user)  # report mistakes against what the user wrote
    merged = validate({**base, **user})
    if quick:
        _apply_quick(merged)
        merged = validate(merged)
    return merged


def _apply_quick(cfg: dict) -> None:
    g = cfg.get("grid")
    if g and isinstance(g.get("axes"), list):
        g["axes"] = [
            [a[0], a[1], min(int(a[2]), QUICK["grid_cells"])]
            if isinstance(a, list) and len(a) == 3 and isinstance(a[2], int)
            else a
            for a in g["axes"]
        ]
    if "particles" in cfg and isinstance(cfg["particles"], dict):
        p = cfg["particles"]
        p["n_particles"] = min(p.get("n_particles", 10**9), QUICK["particles"]["n_particles"])
        if "t_end" in p and isinstance(p["t_end"], (int, float)):
            p["t_end"] = min(p["t_end"], QUICK["particles"]["t_end"])
        if "t_end" in p:
            p.pop("n_steps", None)
    s = cfg.setdefault("solver", {})
    if isinstance(s, dict):
        s["t_end"] = min(s.get("t_end", QUICK["solver"]["t_end"]), QUICK["solver"]["t_end"])
        s["n_save"] = min(s.get("n_save", QUICK["solver"]["n_save"]), QUICK["solver"]["n_save"])
    sw = cfg.get("sweep")
    if isinstance(sw, dict):
        for k in ("values", "values2"):
            if isinstance(sw.get(k), list) and len(sw[k]) > 3:
                v = sw[k]
                sw[k] = [v[0], v[len(v) // 2], v[-1]]


def get_path(cfg: dict, path: str):
    sec, key = path.split(".")
    return cfg.get(sec, {}).get(key)


def set_path(cfg: dict, path: str, value) -> dict:
    """A re-validated copy of ``cfg`` with ``section.key`` set to ``value``."""
    new = copy.deepcopy(cfg)
    sec, key = path.split(".")
    new.setdefault(sec, {})[key] = value
    return validate(new)


# ------------------------------------------------------------------------------------------------------
# builders
# ------------------------------------------------------------------------------------------------------
def _wrap(section: str, fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except (ValueError, TypeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"[{section}] {msg}") from None


def build_grid(cfg: dict):
    from ..model.grid import Grid

    g = cfg["grid"]
    frame = _wrap("grid", _frame, g, len(g["axes"]))
    return _wrap("grid", Grid, [tuple(a) for a in g["axes"]], bc=g["bc"], frame=frame)


def _frame(section: dict, d: int):
    """The Frame of a ``[grid]`` or ``[landscape]`` section (``rotation`` or ``frame``, and ``origin``), or None."""
    from ..model.grid import Frame

    if "rotation" in section and "frame" in section:
        raise ValueError("give rotation or frame, not both")
    if "rotation" in section:
        if d != 2:
            raise ValueError(f"rotation is for 2D; use frame = [[...]] (a {d}x{d} matrix) instead")
        return Frame.rotation(section["rotation"], section.get("origin"))
    if "frame" in section:
        M = np.asarray(section["frame"], dtype=float)
        M = np.diag(M) if M.ndim == 1 else np.atleast_2d(M)
        if M.shape != (d, d):
            raise ValueError(f"frame must be a {d}x{d} matrix, got {M.shape[0]}x{M.shape[1]}")
        return Frame(M, section.get("origin"))
    if "origin" in section:
        raise ValueError("origin needs rotation or frame")
    return None


def build_landscape(cfg: dict):
    from ..model import landscapes as L

    land = dict(cfg["landscape"])
    placement = {k: land.pop(k) for k in ("rotation", "frame", "origin") if k in land}
    base = _base_landscape(land)
    if not placement:
        return base
    d = len(cfg["grid"]["axes"]) if "grid" in cfg else (base.dim or 2)
    return _wrap("landscape", L.Transformed, base, _wrap("landscape", _frame, placement, d))


def _base_landscape(land: dict):
    from ..model import landscapes as L

    kind = land.pop("kind")
    if kind == "quadratic":
        A = np.asarray(land["A"], dtype=float)
        A = np.diag(A) if A.ndim == 1 else np.atleast_2d(A)
        return _wrap("landscape", L.Quadratic, A, center=land.get("center"))
    if kind == "degenerate-valley":
        return _wrap("landscape", L.DegenerateValley, **land)
    if kind == "high-dim-valley":
        cls = getattr(L, "HighDimValley", None)
    else:
        cls = getattr(L, "MultiValley", None)
    if cls is None:
        raise ConfigError(f"[landscape] kind {kind!r} is not available in this version of fokkerplanck")
    return _wrap("landscape", cls, **land)


def build_noise(cfg: dict):
    from ..model import noise as N

    nz = dict(cfg["noise"])
    kind = nz.pop("kind")
    if kind == "constant":
        D = np.asarray(nz["D"], dtype=float)
        d = len(cfg["grid"]["axes"]) if "grid" in cfg else 1
        D = D * np.eye(d) if D.ndim == 0 else D
        return _wrap("noise", N.Constant, D)
    if kind == "isotropic":
        return _wrap("noise", N.Isotropic, nz["T"])
    if kind == "hessian-aligned":
        return _wrap("noise", N.HessianAligned, nz["delta_s"])
    return _wrap("noise", N.HessianLinear, nz["delta"])


def build_problem(cfg: dict, check: bool = True):
    """Grid, landscape, noise -> :class:`~fokkerplanck.model.problem.Problem`. With ``check`` the diffusion tensor
    and the drift are evaluated on every cell centre, so that a non-PSD or non-finite field is reported here,
    as a :class:`ConfigError`, before any solve."""
    from ..model.problem import Problem

    grid = build_grid(cfg)
    from ..model.budget import TooLarge, check_grid

    try:
        check_grid(grid)  # before the fields are evaluated on every cell
    except TooLarge as e:
        raise ConfigError(f"[grid] axes: {e}") from None
    land = build_landscape(cfg)
    noise = build_noise(cfg)
    conv = cfg.get("solver", {}).get("convention", "ito")
    prob = _wrap("landscape", Problem, grid, landscape=land, noise=noise, convention=conv)
    if check:
        pts = grid.points()
        _wrap("noise", prob.diffusion, pts)
        v = _wrap("landscape", prob.velocity, pts)
        if not np.all(np.isfinite(v)):
            bad = pts[~np.all(np.isfinite(v), axis=1)][0]
            raise ConfigError(f"[landscape] the drift -grad L is not finite at theta={bad.tolist()}")
    return prob


# ------------------------------------------------------------------------------------------------------
def to_toml(cfg: dict) -> str:
    """Write a (validated) configuration back as TOML text (sections of scalars, strings and lists)."""

    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (int, np.integer)):
            return str(int(v))
        if isinstance(v, (float, np.floating)):
            return repr(float(v))
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(val(x) for x in v) + "]"
        raise TypeError(f"cannot write {type(v).__name__} to TOML")

    lines = []
    for sec, body in cfg.items():
        lines.append(f"[{sec}]")
        lines += [f"{k} = {val(v)}" for k, v in body.items() if v is not None]
        lines.append("")
    return "\n".join(lines)
