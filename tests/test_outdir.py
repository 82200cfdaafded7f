"""Output folders of the command line (issue 15, item 7) and the time budget of a run (item 9).

Before: two runs into one --out could leave one run's result.json beside the other's arrays.npz, a rerun left the
first run's figures beside the second's result, a folder of other files was written into silently, and an
interrupted rerun left the old result.json beside the new checkpoint. A run is now written into DIR.partial under
a lock on .DIR.lock and moved into place whole (fokkerplanck.results.outdir)."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import fokkerplanck as fp
from fokkerplanck.cli import main
from fokkerplanck.model import budget
from fokkerplanck.results import io as fio

REPO = Path(__file__).resolve().parents[1]
# evolve on the quick grid (48 x 48), 10000 tr-bdf2 steps: several seconds, long enough to overlap another run
_SLOW_EVOLVE = "[solver]\nt_end = 5.0\nn_save = 3\ndt = 0.0005\n"


def _popen(args, cwd, **env):
    env = {**os.environ, **env, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, "-m", "fokkerplanck", *args],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _one_line(err: str) -> str:
    assert err.count("\n") == 1 and len(err) <= 301 and "Traceback" not in err, err[:500]
    return err


def _run_id(folder) -> str:
    return json.loads((Path(folder) / "result.json").read_text())["run_id"]


def _leftovers(tmp_path, name="o"):
    """What a run leaves beside its folder: the staging folder, the lock file, an old folder being deleted."""
    return sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((f"{name}.", f".{name}.")))


def test_a_busy_folder_stops_a_second_run_and_a_killed_rerun_leaves_the_old_run_whole(tmp_path, capsys):
    out = tmp_path / "o"
    cfg = tmp_path / "slow.toml"
    cfg.write_text(_SLOW_EVOLVE)
    assert main(["steady", "--quick", "--no-figures", "--out", str(out)]) == 0
    before = _run_id(out)
    capsys.readouterr()
    proc = _popen(
        ["evolve", str(cfg), "--quick", "--no-figures", "--out", str(out), "--checkpoint-every", "200"], tmp_path
    )
    ckpt = tmp_path / "o.partial" / "checkpoint.npz"
    deadline = time.time() + 120
    while not ckpt.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1]
    # a second run into the same folder stops at once with one line naming the first one's pid (it does not wait)
    assert main(["steady", "--quick", "--no-figures", "--out", str(out)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "is being written by another run" in line and f"pid {proc.pid}" in line
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    # the killed rerun left the folder as it was: the previous run, whole, and no checkpoint beside it; load says so
    assert _run_id(out) == before and not (out / "checkpoint.npz").exists() and ckpt.is_file()
    with pytest.warns(RuntimeWarning, match="later run .* was interrupted"):
        assert fp.load(out).command == "steady"
    # --resume finds the checkpoint, finishes the run and replaces the folder whole
    assert main(["evolve", str(cfg), "--quick", "--no-figures", "--out", str(out), "--resume"]) == 0
    assert "resumed from the checkpoint at step" in capsys.readouterr().out
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = fp.load(out)
    assert res.command == "evolve" and "steady" not in res.densities
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["arrays.npz", "config.toml", "result.json"] + (["densities.nc"] if res.json["netcdf"] else [])
    )
    assert _leftovers(tmp_path) == []


def test_runs_started_together_never_mix(tmp_path):
    """Two runs of different grids started together into one folder: each either finishes or stops with the one
    line; the folder holds one of them whole (its result.json and arrays.npz of one run, shapes agreeing)."""
    out = tmp_path / "o"
    for n in (20, 30):
        (tmp_path / f"g{n}.toml").write_text(f"[grid]\naxes = [[-2.0, 2.0, {n}], [-1.0, 1.0, {n}]]\n")
    procs = [
        _popen(["steady", str(tmp_path / f"g{n}.toml"), "--no-figures", "--out", str(out)], tmp_path) for n in (20, 30)
    ]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    codes = sorted(c for c, _ in results)
    assert codes in ([0, 0], [0, 2]), results
    for code, err in results:
        if code == 2:
            assert "is being written by another run" in _one_line(err)
    res = fp.load(out)  # checks that result.json and arrays.npz are one run's
    n = res.parameters["grid"]["axes"][0][2]
    assert res.densities["steady"].values.shape == (n, n) and res.arrays["steady"].shape == (n, n)
    assert _leftovers(tmp_path) == []


def test_a_rerun_replaces_its_own_folder_whole(tmp_path, capsys, monkeypatch):
    """The default folder ./fokkerplanck-out/COMMAND: the second run makes no figures, and none of the first's
    stay (before, four stale PNGs stayed beside a result.json that listed none)."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "fokkerplanck-out" / "steady"
    assert main(["steady", "--quick"]) == 0
    assert len(list(out.glob("*.png"))) >= 3
    first = _run_id(out)
    assert main(["steady", "--quick", "--no-figures"]) == 0
    assert list(out.glob("*.png")) == [] and fp.load(out).figures == [] and _run_id(out) != first
    assert _leftovers(tmp_path / "fokkerplanck-out", "steady") == []
    assert "wrote fokkerplanck-out/steady/result.json" in capsys.readouterr().out


def test_a_foreign_folder_is_refused_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    args = ["steady", "--quick", "--no-figures", "--out", str(out)]
    assert main(args) == 2
    line = _one_line(capsys.readouterr().err)
    assert "'notes.txt'" in line and "--overwrite" in line
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"] and _leftovers(tmp_path, "mine") == []
    assert main(args + ["--overwrite"]) == 0  # written into, the other files kept
    assert (out / "notes.txt").read_text() == "my notes" and fp.load(out).command == "steady"
    assert main(args + ["--overwrite"]) == 0  # and again
    # a result.json of another program is not a previous run
    other = tmp_path / "other"
    other.mkdir()
    (other / "result.json").write_text('{"format": "something-else"}')
    assert main(["steady", "--quick", "--no-figures", "--out", str(other)]) == 2
    assert "'result.json'" in _one_line(capsys.readouterr().err)
    # a file where the folder should be, and a cache that the replacement would delete
    (tmp_path / "afile").write_text("x")
    assert main(["steady", "--quick", "--out", str(tmp_path / "afile")]) == 2
    assert "not a folder" in _one_line(capsys.readouterr().err)
    cfg = tmp_path / "s.toml"
    cache = tmp_path / "s" / "c"
    cfg.write_text(f'[sweep]\nparameter = "noise.delta_s"\nvalues = [1e-3, 2e-3]\ncache_dir = "{cache}"\n')
    assert main(["sweep", str(cfg), "--quick", "--out", str(tmp_path / "s")]) == 2
    assert "cache_dir" in _one_line(capsys.readouterr().err)


def test_a_publish_that_died_between_its_renames_is_repaired(tmp_path, capsys):
    """Killed after renaming DIR to .DIR.old-PID and before moving DIR.partial into place: the next run puts
    the old run back first (and then replaces it whole); a link as --out is written where it points."""
    from fokkerplanck.results.outdir import OutputFolder

    out = tmp_path / "o"
    assert main(["steady", "--quick", "--no-figures", "--out", str(out)]) == 0
    before = _run_id(out)
    out.rename(tmp_path / ".o.old-99999")
    with OutputFolder(out) as staging:
        assert _run_id(out) == before and staging == tmp_path / "o.partial"
    assert _leftovers(tmp_path) == []
    link = tmp_path / "link"
    link.symlink_to(out)
    assert main(["steady", "--quick", "--no-figures", "--out", str(link)]) == 0
    assert link.is_symlink() and _run_id(link) == _run_id(out) != before


def test_load_refuses_files_of_two_runs_and_warns_of_a_newer_checkpoint(tmp_path):
    g = fp.Grid([(-1, 1, 6)])
    d = fp.Density.gaussian(g, [0.0], [[0.1]])
    fio.save(tmp_path / "a", command="test", densities={"p": d})
    fio.save(tmp_path / "b", command="test", densities={"p": d})
    assert "__run_id__" not in fp.load(tmp_path / "a").arrays
    (tmp_path / "a" / "arrays.npz").write_bytes((tmp_path / "b" / "arrays.npz").read_bytes())
    with pytest.raises(ValueError, match="different runs"):
        fp.load(tmp_path / "a")
    ck = tmp_path / "b" / "checkpoint.npz"  # the layout before DIR.partial: an interrupted rerun
    ck.write_bytes(b"PK")
    t = (tmp_path / "b" / "result.json").stat().st_mtime
    os.utime(ck, (t + 10, t + 10))
    with pytest.warns(RuntimeWarning, match="interrupted"):
        fp.load(tmp_path / "b")


# ---- item 9: the time budget ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "command,text,match",
    [
        ("simulate", "[particles]\ndt = 1e-300\nt_end = 1.0\n", "1e+300 steps"),
        ("simulate", "[particles]\nn_steps = 1000000000000\ndt = 0.01\n", "1e+12 steps"),
        ("simulate", '[particles]\nmethod = "sgd"\neta = 1e-9\nsigma = 0.01\nt_end = 100.0\n', "particle-steps"),
        ("evolve", "[solver]\ndt = 1e-9\n", "cell-steps"),
        ("evolve", "[solver]\ndt = 1e-320\n", "inf steps"),
        ("compare", "[particles]\ndt = 1e-300\nt_end = 1.0\n", "particle-steps"),
    ],
)
def test_absurd_runs_are_refused_with_the_estimate(command, text, match, tmp_path, capsys):
    """They ran until killed (issue 15, item 9); now one line naming the work and about how long it would take."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    t = time.perf_counter()
    assert main([command, str(cfg), "--quick", "--no-figures", "--out", str(tmp_path / "o")]) == 2
    assert time.perf_counter() - t < 30
    line = _one_line(capsys.readouterr().err)
    assert match in line and "limit" in line and budget.ALLOW_ENV in line
    assert not (tmp_path / "o").exists() and _leftovers(tmp_path) == []


def test_the_library_checks_the_budget_too(monkeypatch):
    land = fp.landscapes.Quadratic([[1.0]])
    with pytest.raises(budget.TooLong, match="particle-steps"):
        fp.simulate(
            land, fp.noise.Isotropic(0.1), method="sde", n_particles=1000, theta0=[0.0], dt=0.01, n_steps=10**12
        )
    grid = fp.Grid([(-1, 1, 16)])
    prob = fp.Problem(grid, landscape=land, noise=fp.noise.Isotropic(0.1))
    monkeypatch.setattr(budget, "WORK_LIMIT_S", 1e-6)  # the explicit step is known only inside evolve
    with pytest.raises(budget.TooLong, match="explicit cell-steps"):
        fp.evolve(prob, fp.Density.gaussian(grid, [0.0], [[0.1]]), t_end=1.0, scheme="explicit")
    monkeypatch.setenv(budget.ALLOW_ENV, "1")
    assert budget.check_work(1e12, 1e6, "particle-steps", "x") > budget.WORK_LIMIT_S
    with pytest.raises(budget.TooLong):  # beyond any integer count even when allowed
        budget.check_work(float("inf"), 10, "cell-steps", "x")


def test_a_long_run_is_announced_before_it_starts():
    from fokkerplanck.config import load_config, validate
    from fokkerplanck.interface.workload import preflight

    cfg = load_config(None, "simulate")
    cfg["particles"].update(n_particles=1_000_000, t_end=5000.0)
    notes = preflight(validate(cfg), "simulate")
    assert len(notes) == 1 and "2e+11 particle-steps" in notes[0] and " h " in notes[0] + " "
    assert preflight(load_config(None, "demo"), "demo") == []  # the demo: seconds
    assert np.isclose(budget.check_work(3e7, 1, "particle-steps", "x"), 1.0)
