"""The command line (fokkerplanck.cli) and saved results (fokkerplanck.io)."""

import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import fokkerplanck
from fokkerplanck import io as fio
from fokkerplanck.cli import COMMANDS, main
from fokkerplanck.theory import ou_stationary_cov

REPO = Path(__file__).resolve().parents[1]


def _finite_numbers(obj):
    """Every number in a JSON tree."""
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _finite_numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _finite_numbers(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield obj


def _run_module(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def test_help_for_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out
        assert main([name, "--help"]) == 0
        text = capsys.readouterr().out
        assert "--out" in text and "CONFIG" in text


def test_help_through_python_dash_m(tmp_path):
    r = _run_module("fokkerplanck", "--help", cwd=tmp_path)
    assert r.returncode == 0 and "demo" in r.stdout
    r = _run_module("fokkerplanck.cli", "steady", "--help", cwd=tmp_path)
    assert r.returncode == 0 and "--quick" in r.stdout


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    return out


def test_demo_quick_writes_result_and_figures(demo_dir):
    doc = json.loads((demo_dir / "result.json").read_text())
    for key in ("command", "parameters", "metrics", "timings", "versions", "seed", "densities", "figures"):
        assert key in doc
    assert doc["command"] == "demo"
    assert doc["versions"]["fokkerplanck"] == fokkerplanck.__version__
    assert doc["versions"]["numpy"] == np.__version__
    assert doc["parameters"]["landscape"]["kind"] == "degenerate-valley"
    m = doc["metrics"]
    for key in ("steady", "solver_vs_theory", "solver_vs_theory_x_marginal"):
        assert key in m
    nums = list(_finite_numbers(m))
    assert nums and all(math.isfinite(x) for x in nums)
    # even on the quick grid the solver is close to PRL Eq. (11) (an adiabatic result, Delta = 0.05)
    assert m["solver_vs_theory_x_marginal"]["l1"] < 0.03
    assert m["steady"]["residual"] < 1e-10
    pngs = sorted(p.name for p in demo_dir.glob("*.png"))
    assert {"heatmap.png", "marginal_x.png"} <= set(pngs)
    assert set(doc["figures"]) == set(pngs)
    if "particles" in doc["densities"]:
        assert m["solver_vs_particles"]["l1"] > 0
    else:  # only when the particle simulator is missing, and then it says so
        assert any("particles" in n for n in doc["notes"])


def test_load_round_trips(demo_dir):
    res = fio.load(demo_dir)
    assert res.command == "demo"
    ss = res.densities["steady"]
    assert ss.grid.shape == tuple(a[2] for a in res.parameters["grid"]["axes"])
    assert ss.mass == pytest.approx(1.0, rel=1e-12)
    np.testing.assert_allclose(ss.mean(), res.metrics["steady"]["mean"], atol=1e-14)
    if "particles" in res.densities:
        assert res.densities["particles"].stderr is not None
    assert fio.load(demo_dir / "result.json").metrics == res.metrics


def test_io_save_load_unit(tmp_path):
    g = fokkerplanck.Grid([(-1, 1, 6), (0, 2, 4)], bc=["periodic", ("reflecting", "absorbing")])
    d = fokkerplanck.Density(g, np.arange(24.0).reshape(6, 4) + 1, normalize=True, stderr=np.full((6, 4), 0.1))
    fio.save(
        tmp_path,
        command="test",
        parameters={"a": 1},
        metrics={"x": np.float64(2.0), "bad": float("nan")},
        densities={"p": d},
        arrays={"t": np.linspace(0, 1, 3)},
        seed=7,
    )
    r = fio.load(tmp_path)
    assert r.densities["p"].grid == g
    np.testing.assert_array_equal(r.densities["p"].values, d.values)
    np.testing.assert_array_equal(r.densities["p"].stderr, d.stderr)
    np.testing.assert_array_equal(r["t"], np.linspace(0, 1, 3))
    assert r.metrics == {"x": 2.0, "bad": None} and r.seed == 7 and r.parameters == {"a": 1}
    with pytest.raises(FileNotFoundError):
        fio.load(tmp_path / "nothing")


def _one_line_error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_user_mistakes_exit_2_with_one_line(tmp_path, capsys):
    bad_d = tmp_path / "bad_d.toml"
    bad_d.write_text(
        '[grid]\naxes = [[-1, 1, 8], [-1, 1, 8]]\n[landscape]\nkind = "quadratic"\nA = [1.0, 1.0]\n'
        '[noise]\nkind = "constant"\nD = [[1.0, 2.0], [2.0, 1.0]]\n'
    )
    line = _one_line_error(capsys, ["steady", str(bad_d), "--out", str(tmp_path / "o1")])
    assert "[noise] D" in line and "positive semi-definite" in line

    garbage = tmp_path / "garbage.toml"
    garbage.write_text("this is = = not toml [\n")
    assert "not valid TOML" in _one_line_error(capsys, ["steady", str(garbage), "--out", str(tmp_path / "o2")])

    unknown = tmp_path / "unknown.toml"
    unknown.write_text('[noise]\nkind = "hessian-aligned"\ndelt_s = 1e-3\n')
    line = _one_line_error(capsys, ["demo", str(unknown), "--out", str(tmp_path / "o3")])
    assert "'delt_s'" in line and "delta_s" in line

    assert "not found" in _one_line_error(capsys, ["steady", str(tmp_path / "missing.toml")])
    assert "error" in _one_line_error(capsys, ["steady", "--no-such-flag"])
    assert not (tmp_path / "o1" / "result.json").exists()


def test_user_mistake_in_a_subprocess_has_no_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid]\naxes = [[-1, 1, 2]]\n")
    r = _run_module("fokkerplanck", "steady", str(bad), cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "axes" in r.stderr and "Traceback" not in r.stderr


def test_steady_quadratic_matches_lyapunov(tmp_path):
    A = np.array([[2.0, 0.6], [0.6, 1.0]])
    D = np.array([[0.15, -0.03], [-0.03, 0.10]])  # correlated D, not proportional to A
    cfg = tmp_path / "ou.toml"
    cfg.write_text(
        "[grid]\naxes = [[-2.0, 2.0, 80], [-2.5, 2.5, 80]]\n"
        f'[landscape]\nkind = "quadratic"\nA = {A.tolist()}\n'
        f'[noise]\nkind = "constant"\nD = {D.tolist()}\n'
    )
    out = tmp_path / "out"
    assert main(["steady", str(cfg), "--out", str(out), "--no-figures"]) == 0
    doc = json.loads((out / "result.json").read_text())
    S = ou_stationary_cov(A, D)
    cov = np.array(doc["metrics"]["steady"]["cov"])
    assert abs(S[0, 1]) > 0.05  # the check sees the off-diagonal part
    np.testing.assert_allclose(cov, S, rtol=0, atol=0.01 * np.abs(S).max())
    assert doc["metrics"]["solver_vs_theory"]["cov_rel_error"] < 0.01
    np.testing.assert_allclose(np.array(doc["metrics"]["theory"]["theory_cov"]), S, rtol=1e-12)
    assert fio.load(out).densities["steady"].cov() == pytest.approx(cov, abs=1e-14)


def test_steady_reports_the_drift_split_and_a_suggested_frame(tmp_path):
    """result.json carries what the generator did (``drift_split``) and, where the grid cannot hold the tensor,
    the suggested aligned frame: the PRL valley rotated by 0.5 rad on a plain grid gets an angle near 0.5
    (measured 0.49 on 100^2)."""
    cfg = tmp_path / "valley.toml"
    cfg.write_text(
        "[grid]\naxes = [[-2.0, 2.0, 100], [-2.0, 2.0, 100]]\n"
        '[landscape]\nkind = "degenerate-valley"\nlambdas = [8.0, -2.0, 1.0]\neps = 1e-3\nrotation = 0.5\n'
        '[noise]\nkind = "hessian-aligned"\ndelta_s = 3e-3\n'
    )
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert main(["steady", str(cfg), "--out", str(out), "--no-figures"]) == 0
    steady = json.loads((out / "result.json").read_text())["metrics"]["steady"]
    assert steady["stencil"] == "scaled cross-diffusion" and steady["drift_split"] is False
    assert steady["scheme"] == "monotone" and steady["centred"] is None  # a scaled stencil: no centred opinion
    assert abs(steady["aligned_frame"]["angle"] - 0.5) < 0.03


@pytest.mark.parametrize("command", ["evolve", "simulate", "sweep"])
def test_other_commands_quick(tmp_path, command, capsys):
    out = tmp_path / command
    assert main([command, "--quick", "--out", str(out)]) == 0
    doc = json.loads((out / "result.json").read_text())
    assert doc["command"] == command and doc["figures"]
    assert all(math.isfinite(x) for x in _finite_numbers(doc["metrics"]))
    assert "wrote" in capsys.readouterr().out
    if command == "evolve":
        assert doc["metrics"]["evolve"]["mass"][-1] == pytest.approx(1.0, abs=1e-10)


def test_print_config_is_valid_toml(capsys):
    from fokkerplanck.config import load_config, parse_toml, validate

    assert main(["sweep", "--print-config"]) == 0
    assert validate(parse_toml(capsys.readouterr().out)) == load_config(None, "sweep")


def test_densities_also_written_as_netcdf_when_xarray_is_installed(tmp_path):
    xr = pytest.importorskip("xarray", reason="NetCDF output needs the optional xarray")
    import fokkerplanck as fp
    from fokkerplanck import io

    grid = fp.Grid([(-1, 1, 6), (-2, 2, 5)])
    d = fp.Density.gaussian(grid, [0.1, 0.2], [[0.3, 0.0], [0.0, 0.5]])
    io.save(tmp_path, command="test", densities={"p": d})
    ds = xr.open_dataset(tmp_path / io.NETCDF_FILE, engine="scipy")
    np.testing.assert_array_equal(ds["p"].values, d.values)
    np.testing.assert_allclose(ds["p_theta1"].values, grid.centers[1])


# ------------------------------------------------------------------------------------------------------------
# fokkerplanck phase-diagram {prl-fig5b, prl-fig5d, prl-fig3c}
# ------------------------------------------------------------------------------------------------------------
def _grey_fraction(png) -> float:
    """Fraction of the pixels of a PNG in the divergence grey (#9a9a9a) of plot.sgd_phase_diagram."""
    import matplotlib.image as mpimg

    img = mpimg.imread(png)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300
    return float(np.mean(np.all(np.abs(img[..., :3] - 0x9A / 255) < 0.01, axis=-1)))


def test_phase_diagram_fig3c_quick_writes_table_and_png(tmp_path, capsys):
    out, cache = tmp_path / "fig3c", tmp_path / "cache"
    args = ["phase-diagram", "prl-fig3c", "--quick", "--out", str(out), "--scheduler", "serial", "--cache", str(cache)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "PRL Fig. 3(c)" in text and "div" in text and "wrote" in text
    doc = json.loads((out / "result.json").read_text())
    assert doc["command"] == "phase-diagram" and doc["figures"] == ["phase_diagram.png"]
    assert doc["parameters"]["figure"] == "prl-fig3c" and doc["parameters"]["quick"] is True
    m = doc["metrics"]
    assert m["etas"] == [0.02, 0.08, 0.32] and m["sigmas"] == [0.001, 0.01, 0.1, 1.0]
    for name in ("Z_flatness", "Z_diverged", "Z_eta_lambda", "Z_mean_abs_x"):
        assert np.array(m[name], dtype=float).shape == (4, 3) and doc["arrays"][name] == [4, 3]
    D = np.array(m["Z_diverged"], dtype=float)
    assert D[0, 0] == 0 and np.all(D[:, 2] == 1)  # eta = 0.32 > 2 / lambda_max(0): all diverged
    assert len(m["particle_rows"]) == 12 and m["convergence"]["diverged_cells"] >= 4
    assert fio.load(out).arrays["Z_flatness"].shape == (4, 3)
    assert 0.05 < _grey_fraction(out / "phase_diagram.png") < 0.6  # the divergence region is drawn grey
    # a second run takes every point from the cache and gives the same table
    assert len(list(cache.glob("*.json"))) == 12
    assert main(args + ["--no-figures"]) == 0
    again = json.loads((out / "result.json").read_text())
    assert again["metrics"]["Z_flatness"] == m["Z_flatness"] and again["figures"] == []


def test_phase_diagram_fig5b_quick_small_grid(tmp_path, capsys):
    out = tmp_path / "fig5b"
    assert (
        main(
            [
                "phase-diagram",
                "prl-fig5b",
                "--quick",
                "--out",
                str(out),
                "--scheduler",
                "serial",
                "--etas",
                "0.04",
                "0.16",
                "--sigmas",
                "0.005",
                "0.32",
            ]
        )
        == 0
    )
    assert "transition Delta_S*: theory -eps/lambda_1 = 0.0005" in capsys.readouterr().out
    doc = json.loads((out / "result.json").read_text())
    m = doc["metrics"]
    assert m["etas"] == [0.04, 0.16] and m["sigmas"] == [0.005, 0.32]
    F, D = np.array(m["Z_flatness"], dtype=float), np.array(m["Z_diverged"], dtype=float)
    assert F.shape == D.shape == (2, 2) and m["transition_theory"] == pytest.approx(5e-4)
    assert D[0, 0] == 0 and D[1, 1] >= 0.5  # phase I corner converges, phase III diverges
    # F(<|x|>) between F(x* = 0) = 8^-1/2 and F(x_F = 1) = 7^-1/2, flatter above Delta_S* (sigma 0.005 -> eta 0.16)
    assert 8**-0.5 - 1e-9 <= F[0, 0] < F[0, 1] <= 7**-0.5 + 1e-9
    assert len(m["solver_rows"]) == 4 and (out / "phase_diagram.png").is_file()
    assert _grey_fraction(out / "phase_diagram.png") > 0.02


def test_phase_diagram_fig5d_search_time_speeds_up_beyond_the_transition(tmp_path, capsys):
    """PRL Fig. 5(d): above Delta_S* a larger sigma finds the flat solution faster (quick, eta = 0.04: tau_s 26.96
    at sigma 0.04 and 9.69 at 0.16, far below the ~290 of the runs that have not settled near Delta_S*)."""
    out = tmp_path / "fig5d"
    assert (
        main(
            [
                "phase-diagram",
                "prl-fig5d",
                "--quick",
                "--out",
                str(out),
                "--scheduler",
                "serial",
                "--etas",
                "0.04",
                "--sigmas",
                "0.04",
                "0.16",
            ]
        )
        == 0
    )
    assert "PRL Fig. 5(d)" in capsys.readouterr().out
    m = json.loads((out / "result.json").read_text())["metrics"]
    tau, reached = np.array(m["Z_search_time"], float)[:, 0], np.array(m["Z_reached"], float)[:, 0]
    se = np.array(m["Z_search_time_stderr"], float)[:, 0]
    assert np.all(reached > 0.9) and np.all(np.isfinite(tau))
    assert tau[1] + 3 * se[1] < tau[0] - 3 * se[0]
    assert m["transition_theory"] == pytest.approx(5e-4) and (out / "phase_diagram.png").is_file()


def test_phase_diagram_user_mistakes_exit_2(tmp_path, capsys):
    assert "'nope'" in _one_line_error(capsys, ["phase-diagram", "nope", "--out", str(tmp_path / "a")])
    assert "--etas" in _one_line_error(
        capsys, ["phase-diagram", "prl-fig3c", "--etas", "0.1", "-0.2", "--out", str(tmp_path / "b")]
    )
    assert "--workers" in _one_line_error(
        capsys, ["phase-diagram", "prl-fig5b", "--workers", "0", "--out", str(tmp_path / "c")]
    )
    assert not (tmp_path / "b" / "result.json").exists()
    assert main(["phase-diagram", "--help"]) == 0
    assert "prl-fig3c" in capsys.readouterr().out


def test_particle_run_that_would_end_elsewhere_is_a_config_error(tmp_path):
    cfg = tmp_path / "p.toml"
    cfg.write_text("[particles]\nt_end = 0.015\ndt = 0.01\n")
    r = subprocess.run(
        [sys.executable, "-m", "fokkerplanck", "simulate", str(cfg), "--out", str(tmp_path / "o"), "--no-figures"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "whole number of steps" in r.stderr


def test_a_swept_solver_key_reaches_the_solve(tmp_path):
    """Sweeping solver.stencil_radius used the base [solver] section for every point (issue 15, item 1). With a
    rotated constant D (anisotropy 10 at 0.5 rad; exact on radius 3, scaled on radius 1) the answers differ, and
    the point at radius 3 equals a plain steady state with that radius."""
    import warnings

    import fokkerplanck as fp

    cfg = tmp_path / "s.toml"
    cfg.write_text(
        "[grid]\naxes = [[-3.0, 3.0, 40], [-3.0, 3.0, 40]]\n"
        '[landscape]\nkind = "quadratic"\nA = [1.0, 1.0]\n'
        '[noise]\nkind = "constant"\nD = [[0.7929, 0.3837], [0.3837, 0.3071]]\n'
        "[solver]\nstencil_radius = 2\n"
        '[sweep]\nparameter = "solver.stencil_radius"\nvalues = [1, 3]\nobservable = "var_x"\n'
    )
    assert main(["sweep", str(cfg), "--out", str(tmp_path / "o"), "--no-figures"]) == 0
    rows = fio.load(tmp_path / "o").metrics["sweep"]["points"]
    assert abs(rows[0]["var_x"] - rows[1]["var_x"]) > 1e-4  # measured 5.7e-4; identical before
    prob = fp.Problem(
        fp.Grid([(-3.0, 3.0, 40), (-3.0, 3.0, 40)]),
        fp.landscapes.Quadratic(np.eye(2)),
        fp.noise.Constant([[0.7929, 0.3837], [0.3837, 0.3071]]),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = fp.steady_state(prob, stencil_radius=3)
    assert rows[1]["var_x"] == pytest.approx(ref.cov()[0, 0], rel=1e-12)


@pytest.mark.parametrize("command", [["sweep"], ["phase-diagram", "prl-fig5b", "--quick"]])
@pytest.mark.parametrize(
    "flag,match", [(["--workers", "-1"], "--workers must be >= 1"), (["--scheduler", "bogus"], "--scheduler must be")]
)
def test_runner_options_are_checked_before_any_work(command, flag, match, tmp_path, capsys):
    """``sweep --workers -1`` hung over 100 s and ``--scheduler bogus`` ended in a traceback (issue 15, item 10)."""
    assert main(command + flag + ["--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err
    assert not (tmp_path / "o").exists()


_SWEEP = '[sweep]\nparameter = "noise.delta_s"\nvalues = [1e-3, 2e-3]\n'


@pytest.mark.parametrize(
    "name,command,text,match",
    [
        ("parameter2", "sweep", _SWEEP + 'parameter2 = "noise.delta_s"\nvalues2 = [1e-3]\n', "same key as parameter"),
        ("duplicates", "sweep", '[sweep]\nparameter = "noise.delta_s"\nvalues = [1e-3, 1e-3]\n', "repeated values"),
        (
            "list-valued",
            "sweep",
            '[sweep]\nparameter = "landscape.lambdas"\nvalues = [[8.0, -2.0, 1.0], [8.0, -1.0, 1.0]]\n',
            "number or a string",
        ),
        ("cache at a file", "sweep", _SWEEP + 'cache_dir = "FILE"\n', "not a directory"),
        (
            "ragged centres",
            "steady",
            '[grid]\naxes = [[-2.0, 2.0, 20], [-2.0, 2.0, 20]]\n[landscape]\nkind = "multi-valley"\n'
            'centers = [[0.0, 0.0], [1.0]]\ncurvatures = [1.0, 1.0]\n[noise]\nkind = "isotropic"\nT = 0.1\n',
            "same number",
        ),
        ("deep nesting", "steady", "[grid]\na = " + "[" * 2000 + "]" * 2000 + "\n", "too deeply"),
        ("huge string", "steady", '[noise]\nkind = "' + "x" * 1_000_000 + '"\n', "[noise] kind"),
        (
            "theta0 outside",
            "simulate",
            "[particles]\ntheta0 = [50.0, 50.0]\ndt = 0.01\nt_end = 1.0\n",
            "outside the grid",
        ),
        (
            "particles in a frame",
            "simulate",
            "[grid]\naxes = [[-2.0, 2.0, 20], [-2.0, 2.0, 20]]\nrotation = 0.3\n",
            "rotation or frame",
        ),
    ],
)
def test_user_mistakes_are_one_short_line(name, command, text, match, tmp_path, capsys):
    """Each was a traceback (or a 5 MB line) before (issue 15's list): now exit 2 and one line of at most 300
    characters, before any work."""
    cfg = tmp_path / "c.toml"
    (tmp_path / "FILE").write_text("x")
    cfg.write_text(text.replace("FILE", str(tmp_path / "FILE")))
    assert main([command, str(cfg), "--out", str(tmp_path / "o"), "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) <= 301 and match in err, err[:400]


def test_bom_config_and_a_swept_solver_method(tmp_path, capsys, monkeypatch):
    """A UTF-8 byte-order mark is not a TOML error; sweeping solver.method (strings) ran into a format error;
    FOKKERPLANCK_LU=foo was a traceback."""
    cfg = tmp_path / "c.toml"
    cfg.write_bytes(
        "\ufeff".encode() + b'[sweep]\nparameter = "solver.method"\nvalues = ["direct", "gth"]\n'
        b'observable = "var_x"\n[grid]\naxes = [[-2.0, 2.0, 40], [-0.6, 0.6, 24]]\n'
    )
    assert main(["sweep", str(cfg), "--out", str(tmp_path / "o"), "--no-figures"]) == 0
    assert "solver.method = gth" in capsys.readouterr().out
    monkeypatch.setenv("FOKKERPLANCK_LU", "foo")
    assert main(["steady", "--out", str(tmp_path / "p"), "--no-figures"]) == 2
    assert "FOKKERPLANCK_LU='foo'" in capsys.readouterr().err


def test_ctrl_c_is_one_line_keeps_the_checkpoint_and_exits_130(tmp_path):
    """Ctrl-C printed a 36-line traceback (issue 15). SIGINT after the first checkpoint: one line, exit code 130,
    the checkpoint kept, and --resume finishes the run."""
    import signal
    import time as _time

    cfg = tmp_path / "e.toml"
    # no --quick: it would cut t_end to 5 (500 steps, under a second), and the run could end before the signal
    cfg.write_text(
        "[grid]\naxes = [[-2.0, 2.0, 48], [-1.0, 1.0, 48]]\n[solver]\nt_end = 200.0\nn_save = 3\ndt = 0.01\n"
    )
    out = tmp_path / "o"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fokkerplanck",
            "evolve",
            str(cfg),
            "--out",
            str(out),
            "--no-figures",
            "--checkpoint-every",
            "20",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a suite started in the background inherits SIGINT ignored, and Python then keeps ignoring it in the
        # child (exit 0 after the whole run): give the child the default disposition, as a terminal would
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = _time.time() + 120
    ckpt = tmp_path / "o.partial" / "checkpoint.npz"  # the run is written beside out, then moved into place
    while not ckpt.is_file() and proc.poll() is None and _time.time() < deadline:
        _time.sleep(0.05)
    assert proc.poll() is None, "the run ended before its first checkpoint"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.count("\n") == 1 and "interrupted" in err and "--resume" in err
    assert ckpt.is_file() and not (out / "result.json").exists()


@pytest.mark.parametrize(
    "command,text",
    [
        ("steady", "[grid]\naxes = [[-2.0, 2.0, 20000], [-1.0, 1.0, 20000]]\n"),
        (
            "steady",
            '[grid]\naxes = [[-1.0, 1.0, 2000], [-1.0, 1.0, 2000], [-1.0, 1.0, 2000]]\n[landscape]\nkind = "quadratic"\n'  # noqa: E501
            'A = [1.0, 1.0, 1.0]\n[noise]\nkind = "isotropic"\nT = 0.1\n',
        ),
        ("simulate", "[particles]\nn_particles = 100000000000\ndt = 0.01\nt_end = 1.0\n"),
        ("evolve", "[solver]\nn_save = 100000000\n"),
    ],
)
def test_runs_larger_than_the_machine_are_refused_before_any_work(command, text, tmp_path, capsys):
    """20000^2 cells ended in a MemoryError traceback or the OOM killer, 2000^3 asked for 60 GiB, 1e11 particles
    and 1e8 saved densities likewise (issue 15, item 8): now one line naming the estimate and the machine's memory."""
    from fokkerplanck.budget import physical_memory

    if physical_memory() is None:
        pytest.skip("the system does not report its memory")
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    assert main([command, str(cfg), "--out", str(tmp_path / "o"), "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "GiB" in err and "memory" in err


def test_budget_estimate_from_measured_bytes_per_cell():
    import fokkerplanck as fp
    from fokkerplanck import budget

    g = fp.Grid([(-1, 1, 512), (-1, 1, 512)])
    budget.check_grid(g)  # 512^2: 0.6 GB measured, allowed
    with pytest.raises(budget.TooLarge, match="cells"):
        budget.check(1e30, "a test of 1e30 bytes of cells")


def test_reproduce_writes_the_headline(tmp_path, capsys):
    """``fokkerplanck reproduce alignment --quick``: result.json with the exact threshold under the bound, and the
    figure; an unknown headline is one line and exit 2."""
    out = tmp_path / "align"
    assert main(["reproduce", "alignment", "--quick", "--out", str(out)]) == 0
    doc = json.loads((out / "result.json").read_text())
    assert doc["command"] == "reproduce" and doc["parameters"]["headline"] == "alignment"
    m = doc["metrics"]
    assert 0 < m["eta_star"] < m["eta_star_without_replacement"] < m["eta_bound"]
    assert (out / "headline.png").stat().st_size > 10_000
    assert "wrote" in capsys.readouterr().out
    assert main(["reproduce", "nonsense"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "invalid choice" in err[0]
