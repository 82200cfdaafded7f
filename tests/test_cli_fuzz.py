"""The command line against generated configurations (Hypothesis): never a traceback; exit code 0, or 2 with one
line of at most 300 characters on stderr.

Each example starts from a tiny valid configuration of a command and breaks it: a key set to a value of the wrong
type, a negative, NaN or infinity, a huge or tiny number, a long or unicode string, a list or a table; an unknown
key or section; an empty section; a section that is not a table; a missing section; or text that is not TOML at
all. The run is in-process (``main([...])``) on the quick grid without figures; the memory and time budgets are
lowered so that an example the mutation made expensive is refused (exit 2, one line) instead of run."""

import math
import shutil

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fokkerplanck.cli import main  # noqa: E402
from fokkerplanck.config import LANDSCAPES, MESSAGE_LIMIT, NOISES, SCHEMA  # noqa: E402
from fokkerplanck.model import budget  # noqa: E402

_GRID = {"axes": [[-1.0, 1.0, 8], [-1.0, 1.0, 6]], "bc": "reflecting"}
_LAND = {"kind": "quadratic", "A": [1.0, 2.0]}
_NOISE = {"kind": "isotropic", "T": 0.2}
BASES = {
    "steady": {"grid": _GRID, "landscape": _LAND, "noise": _NOISE},
    "evolve": {
        "grid": _GRID,
        "landscape": _LAND,
        "noise": _NOISE,
        "solver": {"t_end": 0.5, "n_save": 3},
        "initial": {"mean": [0.0, 0.0], "cov": [0.1, 0.1]},
    },
    "simulate": {
        "grid": _GRID,
        "landscape": _LAND,
        "noise": _NOISE,
        "particles": {"method": "sde", "n_particles": 50, "theta0": [0.0, 0.0], "dt": 0.01, "t_end": 0.1},
    },
    "compare": {
        "grid": _GRID,
        "landscape": _LAND,
        "noise": _NOISE,
        "particles": {"method": "sde", "n_particles": 50, "theta0": "uniform", "dt": 0.01, "t_end": 0.1},
    },
    "sweep": {
        "grid": _GRID,
        "landscape": _LAND,
        "noise": _NOISE,
        "sweep": {"parameter": "noise.T", "values": [0.1, 0.2], "observable": "var_x"},
    },
}
# keys a mutation may set; never a path (cache_dir): a generated string must not name a folder to create
KEYS = {sec: sorted(k for k in keys if k != "cache_dir") for sec, keys in SCHEMA.items()}
KEYS["landscape"] = sorted({"kind", "rotation", "frame", "origin"} | {k for f in LANDSCAPES.values() for k in f})
KEYS["noise"] = sorted({"kind"} | {k for f in NOISES.values() for k in f})


# ---- TOML text of a generated value ----------------------------------------------------------------------------
def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)  # beyond 64 bits: not TOML (a parse error to report)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
    if isinstance(v, str):
        out = []
        for ch in v:
            if ch in '"\\':
                out.append("\\" + ch)
            elif ord(ch) < 0x20 or ord(ch) == 0x7F:
                out.append(f"\\u{ord(ch):04x}")
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_toml(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def _key(k: str) -> str:
    return k if k and all(c.isascii() and (c.isalnum() or c in "_-") for c in k) else _toml(k)


def _document(cfg: dict) -> str:
    lines = []
    for sec, body in cfg.items():
        if isinstance(body, dict):
            lines.append(f"[{_key(sec)}]")
            lines += [f"{_key(k)} = {_toml(v)}" for k, v in body.items()]
        else:
            lines.append(f"{_key(sec)} = {_toml(body)}")
    return "\n".join(lines) + "\n"


# ---- strategies ------------------------------------------------------------------------------------------------
_ODD_NUMBERS = st.sampled_from(
    [
        0,
        -1,
        1,
        2,
        3,
        -3,
        0.0,
        -0.0,
        1e-300,
        5e-324,
        -1e-9,
        1e-9,
        1e12,
        10**15,
        2**63 - 1,
        -(2**63),
        10**30,
        1e300,
        -1e300,
        math.inf,
        -math.inf,
        math.nan,
        0.5,
        1e-6,
    ]
)
_scalars = st.one_of(
    _ODD_NUMBERS,
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=12),
    st.text(min_size=300, max_size=2000),  # long strings
    st.sampled_from(
        [
            "",
            "uniform",
            "quadratic",
            "isotropic",
            "noise.T",
            "grid.axes",
            "sde",
            "sgd",
            "explicit",
            "periodic",
            "hessian-aligned",
            "\u00e9\u00e8\u4e2d\u6587\U0001f600",
            "mean_abs_x",
        ]
    ),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=10,
)


# well-typed but odd values per key, so that many examples pass validation and reach the run
_num = st.one_of(_ODD_NUMBERS, st.floats(min_value=-5.0, max_value=5.0), st.integers(min_value=-3, max_value=5))
_count = st.one_of(st.integers(min_value=-2, max_value=60), st.sampled_from([10**6, 10**12, 2**63 - 1, 0.5, 3.0]))
_vec = st.lists(_num, min_size=1, max_size=4)
_mat = st.one_of(
    _num,
    st.lists(_num, min_size=1, max_size=3),
    st.lists(st.lists(_num, min_size=2, max_size=2), min_size=2, max_size=2),
)
_axis = st.tuples(_num, _num, _count).map(list) | st.tuples(st.just(-1.0), st.just(1.0), _count).map(list)
_bc1 = st.sampled_from(["reflecting", "absorbing", "periodic", "Periodic", "wall"])
_paths = st.sampled_from(
    [
        "noise.T",
        "noise.delta_s",
        "grid.bc",
        "landscape.A",
        "solver.method",
        "solver.tol",
        "solver.stencil_radius",
        "particles.dt",
        "sweep.values",
        "noise",
        "a.b.c",
        "grid.axes",
    ]
)
TYPED = {
    "axes": st.lists(_axis, min_size=1, max_size=3),
    "bc": st.one_of(_bc1, st.lists(_bc1 | st.lists(_bc1, min_size=2, max_size=2), min_size=1, max_size=3)),
    "A": _mat,
    "D": _mat,
    "frame": _mat,
    "cov": _mat,
    "T": _num,
    "delta_s": _num,
    "delta": _num,
    "eps": _num,
    "lambda_bar0": _num,
    "beta": _num,
    "rotation": _num,
    "tol": _num,
    "t_end": _num,
    "dt": _num,
    "eta": _num,
    "sigma": _num,
    "center": _vec,
    "origin": _vec,
    "mean": _vec,
    "lambdas": _vec,
    "depths": _vec,
    "theta0": st.one_of(_vec, st.just("uniform")),
    "centers": st.lists(st.lists(_num, min_size=1, max_size=3), min_size=1, max_size=3),
    "curvatures": st.one_of(_vec, st.lists(_vec, min_size=1, max_size=3)),
    "n_save": _count,
    "n_particles": _count,
    "stencil_radius": _count,
    "seed": _count,
    "n_steps": _count,
    "n_flat": _count,
    "n_sharp": _count,
    "kind": st.sampled_from(sorted(LANDSCAPES) + sorted(NOISES)),
    "method": st.sampled_from(["auto", "direct", "iterative", "gth", "sde", "sgd", "langevin"]),
    "scheme": st.sampled_from(["tr-bdf2", "implicit-euler", "explicit", "expm"]),
    "convention": st.sampled_from(["ito", "stratonovich", "hanggi-klimontovich"]),
    "shift": st.sampled_from(["linear", "exact"]),
    "observable": st.sampled_from(["mean_abs_x", "mean_x", "var_x", "var_y", "entropy", "peak_x"]),
    "parameter": _paths,
    "parameter2": _paths,
    "values": st.lists(_num | st.sampled_from(["direct", "gth"]), min_size=1, max_size=4),
    "values2": st.lists(_num, min_size=1, max_size=3),
}


def _value_for(key):
    return st.one_of(TYPED[key], TYPED[key], TYPED[key], _values) if key in TYPED else _values


VARIANTS = {
    "landscape": [
        _LAND,
        {"kind": "degenerate-valley", "lambdas": [1.0, 1.0], "eps": 0.0},
        {"kind": "high-dim-valley", "n_flat": 1, "n_sharp": 1},
        {"kind": "multi-valley", "centers": [[-0.5, 0.0], [0.5, 0.0]], "curvatures": [1.0, 1.0]},
    ],
    "noise": [
        _NOISE,
        {"kind": "constant", "D": [0.1, 0.2]},
        {"kind": "hessian-aligned", "delta_s": 0.01},
        {"kind": "hessian-linear", "delta": 0.05},
    ],
    "particles": [
        {"method": "sgd", "n_particles": 40, "theta0": [0.1, 0.1], "eta": 0.05, "sigma": 0.01, "n_steps": 20},
        {"method": "langevin", "n_particles": 40, "theta0": "uniform", "dt": 0.01, "t_end": 0.1, "T": 0.1},
    ],
    "solver": [
        {"t_end": 0.5, "n_save": 3, "scheme": "explicit"},
        {"t_end": 0.5, "n_save": 3, "scheme": "expm"},
        {"method": "gth"},
        {"method": "iterative", "tol": 1e-8},
    ],
}


def _keys(cfg, sec):
    """The keys of ``sec`` for its current kind (landscape, noise), else of its schema."""
    body = cfg.get(sec)
    kind = body.get("kind") if isinstance(body, dict) and isinstance(body.get("kind"), str) else None
    if sec == "landscape" and kind in LANDSCAPES:
        return sorted({"kind", "rotation", "frame", "origin"} | set(LANDSCAPES[kind]))
    if sec == "noise" and kind in NOISES:
        return sorted({"kind"} | set(NOISES[kind]))
    return KEYS[sec]


@st.composite
def configs(draw):
    command = draw(st.sampled_from(sorted(BASES)))
    cfg = {sec: dict(body) for sec, body in BASES[command].items()}
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        how = draw(
            st.sampled_from(
                ["set"] * 8 + ["variant"] * 3 + ["unknown-key", "unknown-section", "empty", "not-a-table", "drop"]
            )
        )
        own = sorted(BASES[command])  # mostly the sections the command reads
        sec = draw(st.sampled_from(own * 4 + sorted(SCHEMA)))
        if how == "variant":
            sec = draw(st.sampled_from(sorted(VARIANTS)))
            cfg[sec] = dict(draw(st.sampled_from(VARIANTS[sec])))
        elif how == "set":
            cfg.setdefault(sec, {}) if isinstance(cfg.get(sec), dict) else cfg.__setitem__(sec, {})
            key = draw(st.sampled_from(_keys(cfg, sec)))
            cfg[sec][key] = draw(_value_for(key))
        elif how == "unknown-key":
            cfg.setdefault(sec, {}) if isinstance(cfg.get(sec), dict) else cfg.__setitem__(sec, {})
            cfg[sec][draw(st.text(min_size=1, max_size=20))] = draw(_values)
        elif how == "unknown-section":
            cfg[draw(st.text(min_size=1, max_size=20))] = {"x": draw(_values)}
        elif how == "empty":
            cfg[sec] = {}
        elif how == "not-a-table":
            cfg[sec] = draw(_scalars)
        else:
            cfg.pop(sec, None)
    return command, _document(cfg)


_texts = st.one_of(
    st.text(max_size=200),
    st.sampled_from(["[grid", "[grid]\naxes = [[", "a = = b", "[[x]]\n", "\x00", "[grid]\naxes = 1\naxes = 2\n"]),
)


@pytest.fixture
def cheap_budgets(monkeypatch, tmp_path):
    """Memory 64 MiB, time 0.5 s: an example made expensive by its mutation is refused (exit 2) rather than run."""
    monkeypatch.setattr(budget, "physical_memory", lambda: 64 * 2**20)
    monkeypatch.setattr(budget, "WORK_LIMIT_S", 0.5)
    monkeypatch.delenv(budget.ALLOW_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _check(tmp_path, capsys, command, text):
    cfg = tmp_path / "fuzz.toml"
    cfg.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    try:
        code = main(
            [command, str(cfg), "--quick", "--no-figures", "--out", str(out)]
            + (["--scheduler", "serial"] if command == "sweep" else [])
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(tmp_path / "out.partial", ignore_errors=True)  # a checkpoint kept for --resume
    err = capsys.readouterr().err
    assert code in (0, 2), (code, text, err)
    if code == 2:
        lines = err.splitlines()
        assert len(lines) == 1 and err.endswith("\n"), (text, err)
        assert len(lines[0]) <= MESSAGE_LIMIT and "Traceback" not in err, (text, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fuzz.toml"], text  # nothing left beside the folder


_SETTINGS = dict(
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _found(command, **sections):
    """A case the fuzz found (a traceback before): the command's base configuration with ``sections`` merged in."""
    cfg = {sec: dict(body) for sec, body in BASES[command].items()}
    for sec, body in sections.items():
        cfg[sec] = dict(body) if "kind" in body else {**cfg.get(sec, {}), **body}
    return command, _document(cfg)


@settings(max_examples=300, **_SETTINGS)
@given(case=configs())
@example(case=_found("compare", landscape={"rotation": 0}))  # AttributeError: Transformed.A
@example(case=_found("evolve", landscape={"rotation": 0.3}))  # likewise, in the OU check
@example(
    case=_found(
        "steady",
        landscape={"kind": "degenerate-valley", "lambdas": [1.0, 1.0], "eps": 0.0, "rotation": 0.3},
        noise={"kind": "constant", "D": [0.1, 0.2]},
    )
)
@example(case=_found("steady", solver={"tol": 1}))  # ValueError in steady_state
@example(case=_found("compare", noise={"T": 10**15}))  # histogram: no live particles
@example(case=_found("simulate", noise={"T": 10**15}))
@example(case=_found("compare", noise={"T": 8.858241569560983e-102}, solver={"method": "iterative", "tol": 1e-8}))
@example(case=_found("steady", noise={"T": 0}, solver={"method": "gth"}))  # the chain is not irreducible
@example(case=_found("compare", grid={"frame": [[0, 0], [0, 1e300]]}))  # OverflowError in Frame
def test_generated_configs_exit_0_or_2_with_one_line(case, cheap_budgets, capsys):
    command, text = case
    _check(cheap_budgets, capsys, command, text)


@settings(max_examples=40, **_SETTINGS)
@given(command=st.sampled_from(sorted(BASES)), text=_texts)
def test_text_that_is_not_a_configuration_exits_2_with_one_line(command, text, cheap_budgets, capsys):
    _check(cheap_budgets, capsys, command, text)
