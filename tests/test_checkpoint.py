"""Checkpoints of evolve and simulate: interrupted + resumed runs equal uninterrupted ones, bit for bit."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fokkerplanck as fp
from fokkerplanck import checkpoint as fio
from fokkerplanck.cli import main

REPO = Path(__file__).resolve().parents[1]


class Interrupted(Exception):
    pass


@pytest.fixture
def interrupt_after(monkeypatch):
    """``interrupt_after(n)``: raise :class:`Interrupted` right after the n-th checkpoint is written."""

    def arm(n):
        calls = []

        def hook(path, count):
            calls.append(path)
            if len(calls) == n:
                raise Interrupted

        monkeypatch.setattr(fio, "_checkpoint_hook", hook)
        return calls

    return arm


def _no_tmp(directory):
    return [p.name for p in Path(directory).iterdir() if p.name.endswith(".tmp")] == []


# ---- evolve --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def valley():
    grid = fp.Grid([(-2, 2, 28), (-1, 1, 18)])
    prob = fp.Problem(
        grid,
        landscape=fp.landscapes.DegenerateValley(lambdas=(1, 1), eps=0.0),
        noise=fp.noise.Constant([0.05 / 3, 0.05]),
    )
    return fp.generator(prob), fp.Density.gaussian(grid, mean=[1.5, 0.0], cov=[0.04, 0.01])


@pytest.mark.parametrize("scheme", ["tr-bdf2", "implicit-euler", "explicit", "expm"])
def test_evolve_interrupted_and_resumed_equals_uninterrupted(valley, scheme, tmp_path, interrupt_after):
    gen, p0 = valley
    kw = dict(t_end=2.0, n_save=5, scheme=scheme)
    ref = fp.evolve(gen, p0, **kw)
    ck = tmp_path / "ck.npz"
    interrupt_after(3)
    every = 1 if scheme == "expm" else 7
    with pytest.raises(Interrupted):
        fp.evolve(gen, p0, checkpoint=ck, checkpoint_every=every, **kw)
    with np.load(ck) as z:
        stopped_at = int(z["done"])
    assert 0 < stopped_at < ref.info["steps"]
    res = fp.evolve(gen, p0, checkpoint=ck, checkpoint_every=every, resume=True, **kw)
    assert res.info["resumed_from_step"] == stopped_at
    assert np.array_equal(res.times, ref.times)
    assert np.array_equal(res.values, ref.values)  # identical, not merely close
    assert _no_tmp(tmp_path)
    # the finished run is kept as a complete checkpoint: resuming it returns the same trajectory
    again = fp.evolve(gen, p0, checkpoint=ck, resume=True, **kw)
    assert np.array_equal(again.values, ref.values)


def test_evolve_refuses_a_checkpoint_of_another_problem(valley, tmp_path):
    gen, p0 = valley
    ck = tmp_path / "ck.npz"
    fp.evolve(gen, p0, t_end=1.0, n_save=3, checkpoint=ck)
    with pytest.raises(ValueError, match="t_end"):
        fp.evolve(gen, p0, t_end=2.0, n_save=3, checkpoint=ck, resume=True)
    with pytest.raises(ValueError, match="scheme"):
        fp.evolve(gen, p0, t_end=1.0, n_save=3, scheme="implicit-euler", checkpoint=ck, resume=True)
    other = fp.Problem(
        gen.grid,
        landscape=fp.landscapes.DegenerateValley(lambdas=(1, 1), eps=0.0),
        noise=fp.noise.Constant([0.05 / 3, 0.06]),
    )
    with pytest.raises(fio.CheckpointMismatch, match="A_hash"):
        fp.evolve(other, p0, t_end=1.0, n_save=3, checkpoint=ck, resume=True)
    # PARDISO and SuperLU agree to round-off, not bit for bit: a run is resumed only under its own LU back end
    if fp.linalg.pardiso_available():
        with pytest.MonkeyPatch.context() as m:
            m.setattr(fp.linalg, "_backend", "superlu" if fp.linalg.lu_backend() == "pardiso" else "pardiso")
            with pytest.raises(fio.CheckpointMismatch, match="lu_backend"):
                fp.evolve(gen, p0, t_end=1.0, n_save=3, checkpoint=ck, resume=True)
    p1 = fp.Density.gaussian(gen.grid, mean=[1.0, 0.0], cov=[0.04, 0.01])
    with pytest.raises(ValueError, match="p0_hash"):
        fp.evolve(gen, p1, t_end=1.0, n_save=3, checkpoint=ck, resume=True)
    (tmp_path / "junk.npz").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        fp.evolve(gen, p0, t_end=1.0, n_save=3, checkpoint=tmp_path / "junk.npz", resume=True)
    # resume=True without a checkpoint file starts from p0
    fresh = fp.evolve(gen, p0, t_end=1.0, n_save=3, checkpoint=tmp_path / "new.npz", resume=True)
    assert "resumed_from_step" not in fresh.info


def test_an_edited_checkpoint_is_refused(valley, tmp_path, interrupt_after):
    """A checkpoint whose density was negated after writing (issue 15, item 6) was resumed to mass -1: the arrays
    now carry a checksum. A checkpoint of the previous format is refused by its format, not misread."""
    gen, p0 = valley
    ck = tmp_path / "ck.npz"
    interrupt_after(2)
    with pytest.raises(Interrupted):
        fp.evolve(gen, p0, t_end=1.0, n_save=3, checkpoint=ck, checkpoint_every=5)
    with np.load(ck, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["p"] = -arrays["p"]
    np.savez(ck, **arrays)
    with pytest.raises(fio.CheckpointMismatch, match="changed after it was written"):
        fp.evolve(gen, p0, t_end=1.0, n_save=3, checkpoint=ck, checkpoint_every=5, resume=True)
    import json

    doc = json.loads(str(arrays["__meta__"]))
    doc["format"] = "fokkerplanck-checkpoint/1"
    arrays["__meta__"] = np.array(json.dumps(doc))
    np.savez(ck, **arrays)
    with pytest.raises(fio.CheckpointMismatch, match="format"):
        fp.evolve(gen, p0, t_end=1.0, n_save=3, checkpoint=ck, checkpoint_every=5, resume=True)


def test_checkpoint_write_is_atomic(valley, tmp_path, monkeypatch):
    """A write that fails half-way leaves the previous checkpoint intact and no temporary file."""
    gen, p0 = valley
    kw = dict(t_end=2.0, n_save=5)
    ref = fp.evolve(gen, p0, **kw)
    ck = tmp_path / "ck.npz"
    real = fio._write_npz
    calls = []

    def flaky(f, arrays):
        calls.append(1)
        if len(calls) == 4:
            f.write(b"PK\x03\x04 half a zip file")
            raise OSError("disk full (simulated)")
        real(f, arrays)

    monkeypatch.setattr(fio, "_write_npz", flaky)
    with pytest.raises(OSError, match="disk full"):
        fp.evolve(gen, p0, checkpoint=ck, checkpoint_every=10, **kw)
    assert _no_tmp(tmp_path) and sorted(p.name for p in tmp_path.iterdir()) == ["ck.npz"]
    with np.load(ck) as z:
        assert int(z["done"]) == 30  # the third checkpoint, complete and readable
    monkeypatch.setattr(fio, "_write_npz", real)
    res = fp.evolve(gen, p0, checkpoint=ck, checkpoint_every=10, resume=True, **kw)
    assert res.info["resumed_from_step"] == 30 and np.array_equal(res.values, ref.values)


# ---- simulate ------------------------------------------------------------------------------------------------
_GRID = fp.Grid([(-2, 2, 20), (-1, 1, 10)])
SIM_CASES = {
    "sde-2d-walls": dict(
        landscape=fp.landscapes.DegenerateValley(lambdas=(1, 1), eps=0.0),
        noise=fp.noise.Constant([0.05 / 3, 0.05]),
        method="sde",
        n_particles=400,
        theta0=[1.0, 0.0],
        dt=0.01,
        n_steps=300,
        grid=_GRID,
        seed=1,
        record_every=40,
    ),
    "sgd": dict(
        landscape=fp.landscapes.DegenerateValley(lambdas=(8, -2, 1), eps=1e-3),
        method="sgd",
        n_particles=300,
        theta0=[1.0, 0.0],
        eta=0.22,
        sigma=0.05,
        n_steps=250,
        seed=2,
    ),  # some diverge
    "numpy-path": dict(
        landscape=fp.landscapes.Custom(lambda x: 0.5 * (x**2).sum(-1), lambda x: x),
        noise=fp.noise.Isotropic(0.1),
        method="sde",
        n_particles=200,
        theta0=[0.5, 0.0, 0.0],
        dt=0.01,
        n_steps=120,
        seed=3,
        record_every=25,
    ),
}


@pytest.mark.parametrize("case", list(SIM_CASES))
def test_simulate_interrupted_and_resumed_equals_uninterrupted(case, tmp_path, interrupt_after):
    kw = SIM_CASES[case]
    ref = fp.simulate(**kw)
    ck = tmp_path / "ck.npz"
    interrupt_after(2)
    with pytest.raises(Interrupted):
        fp.simulate(**kw, checkpoint=ck, checkpoint_every=37)
    res = fp.simulate(**kw, checkpoint=ck, checkpoint_every=37, resume=True)
    assert res.info["resumed_from_step"] == 74
    assert np.array_equal(res.positions, ref.positions)
    assert np.array_equal(res.diverged, ref.diverged) and np.array_equal(res.absorbed, ref.absorbed)
    assert np.array_equal(res.divergence_time, ref.divergence_time, equal_nan=True)
    assert np.array_equal(res.absorption_time, ref.absorption_time, equal_nan=True)
    assert np.array_equal(res.times, ref.times)
    for k in ref.stats:
        assert np.array_equal(res.stats[k], ref.stats[k], equal_nan=True), k
    assert _no_tmp(tmp_path)
    if case == "sgd":  # flags and event times set before the interruption and after it
        t = ref.divergence_time[ref.diverged] / kw["eta"]
        assert 0 < ref.diverged.sum() < ref.n_particles and t.min() < 74 < t.max()


def test_simulate_refuses_a_checkpoint_of_another_run(tmp_path):
    kw = SIM_CASES["sde-2d-walls"]
    ck = tmp_path / "ck.npz"
    fp.simulate(**kw, checkpoint=ck)
    with pytest.raises(ValueError, match="seed"):
        fp.simulate(**{**kw, "seed": 7}, checkpoint=ck, resume=True)
    with pytest.raises(ValueError, match="n_steps"):
        fp.simulate(**{**kw, "n_steps": 400}, checkpoint=ck, resume=True)
    with pytest.raises(ValueError, match="noise"):
        fp.simulate(**{**kw, "noise": fp.noise.Constant([0.05 / 3, 0.06])}, checkpoint=ck, resume=True)
    with pytest.raises(ValueError, match="not a .simulate. checkpoint"):  # an evolve checkpoint is not a simulate one
        grid = fp.Grid([(-1, 1, 8)])
        prob = fp.Problem(grid, landscape=fp.landscapes.Quadratic([[1.0]]), noise=fp.noise.Isotropic(0.1))
        fp.evolve(prob, fp.Density.gaussian(grid, [0.0], [[0.05]]), t_end=0.1, checkpoint=tmp_path / "e.npz")
        fp.simulate(**kw, checkpoint=tmp_path / "e.npz", resume=True)


# ---- command line --------------------------------------------------------------------------------------------
def _killed_run(args, cwd, kill_after):
    """Run ``python -m fokkerplanck ARGS`` that SIGKILLs itself right after its ``kill_after``-th checkpoint."""
    env = {
        **os.environ,
        fio.KILL_ENV: str(kill_after),
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    return subprocess.run(
        [sys.executable, "-m", "fokkerplanck", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


@pytest.mark.parametrize("command,every,array", [("evolve", "10", "final"), ("simulate", "50", "positions")])
def test_cli_killed_mid_run_then_resumed(command, every, array, tmp_path, capsys):
    ref_dir, dir_ = tmp_path / "ref", tmp_path / "killed"
    assert main([command, "--quick", "--no-figures", "--out", str(ref_dir)]) == 0
    r = _killed_run(
        [command, "--quick", "--no-figures", "--out", str(dir_), "--checkpoint-every", every], tmp_path, kill_after=3
    )
    assert r.returncode == -9, r.stderr  # killed, no clean-up ran
    staging = tmp_path / "killed.partial"  # the run is written there, then moved into place
    assert not dir_.exists() and (staging / "checkpoint.npz").is_file() and _no_tmp(staging)
    (staging / ".checkpoint.npz.x1y2z3.tmp").write_bytes(b"PK\x03\x04")  # as left by a kill during a write
    capsys.readouterr()
    assert main([command, "--quick", "--no-figures", "--out", str(dir_), "--resume"]) == 0
    assert f"resumed from the checkpoint at step {3 * int(every)}" in capsys.readouterr().out
    a, b = fp.load(ref_dir), fp.load(dir_)
    assert np.array_equal(
        a[array].values if array == "final" else a[array], b[array].values if array == "final" else b[array]
    )
    assert [p.name for p in dir_.iterdir() if "checkpoint" in p.name] == []  # removed after result.json
    assert not staging.exists()
    if command == "evolve":
        assert np.array_equal(a.arrays["trajectory"], b.arrays["trajectory"])
        # a checkpoint of another configuration: exit code 2 and one line
        _killed_run(
            [command, "--quick", "--no-figures", "--out", str(dir_), "--checkpoint-every", every],
            tmp_path,
            kill_after=1,
        )
        cfg = tmp_path / "other.toml"
        cfg.write_text("[solver]\nt_end = 4.0\nn_save = 3\n")
        capsys.readouterr()
        assert main([command, str(cfg), "--quick", "--no-figures", "--out", str(dir_), "--resume"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "t_end" in err and "different evolve run" in err
