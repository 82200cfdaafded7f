"""Sweeps: Cartesian products, on-disk cache and resume, serial vs Dask, the PRL point functions."""

import json
import math

import numpy as np
import pytest

from fokkerplanck.sweep import (
    SweepResult,
    dask_available,
    function_identity,
    highdim_phase_diagram,
    highdim_sgd_point,
    point_key,
    prl_steady_point,
    sweep,
)

CALLS = []
FAIL_AFTER = [None]
INTERRUPT = [False]


def cheap(a, b):
    """A fast analytic point function that counts its calls and can be told to fail after N calls."""
    CALLS.append((a, b))
    if FAIL_AFTER[0] is not None and len(CALLS) > FAIL_AFTER[0]:
        if INTERRUPT[0]:
            raise KeyboardInterrupt
        raise RuntimeError("simulated crash")
    return {"s": a + b, "p": math.sin(a) * b, "v": [a, b]}


GRID = {"a": list(range(12)), "b": [round(0.1 * i, 3) for i in range(10)]}  # 120 points


@pytest.fixture(autouse=True)
def _reset():
    CALLS.clear()
    FAIL_AFTER[0] = None
    INTERRUPT[0] = False
    yield
    CALLS.clear()
    FAIL_AFTER[0] = None
    INTERRUPT[0] = False


def test_product_order_and_table(tmp_path):
    res = sweep(cheap, GRID, scheduler="serial")
    assert isinstance(res, SweepResult) and len(res) == 120 and len(CALLS) == 120
    assert [(r["a"], r["b"]) for r in res.rows[:3]] == [(0, 0.0), (0, 0.1), (0, 0.2)]  # first key slowest
    assert res.rows[37]["s"] == pytest.approx(3 + 0.7)
    Z = res.pivot("a", "b", "s")
    assert Z.shape == (12, 10)
    np.testing.assert_allclose(Z, np.add.outer(GRID["a"], GRID["b"]))
    path = res.to_csv(tmp_path / "t.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == "a,b,s,p,v" and len(lines) == 121
    rj = res.save(tmp_path / "out")
    doc = json.loads(rj.read_text())
    assert doc["command"] == "sweep" and doc["metrics"]["n_points"] == 120
    assert doc["metrics"]["rows"][5]["s"] == pytest.approx(0.5)


@pytest.mark.parametrize("interrupt", [False, True], ids=["exception", "keyboard-interrupt"])
def test_interrupted_sweep_resumes_without_recomputing(tmp_path, interrupt):
    cache = tmp_path / "cache"
    FAIL_AFTER[0], INTERRUPT[0] = 60, interrupt
    with pytest.raises(KeyboardInterrupt if interrupt else RuntimeError):
        sweep(cheap, GRID, cache_dir=cache, scheduler="serial")
    files = sorted(cache.glob("*.json"))
    assert len(files) == 60  # every finished point was written
    assert not list(cache.glob(".tmp-*"))  # no half-written temporaries
    CALLS.clear()
    FAIL_AFTER[0] = None
    res = sweep(cheap, GRID, cache_dir=cache, scheduler="serial")
    assert len(CALLS) == 60  # only the missing half is computed
    assert res.info["cached"] == 60 and res.info["computed"] == 60
    CALLS.clear()
    fresh = sweep(cheap, GRID, scheduler="serial")
    assert res.rows == fresh.rows  # cached rows are identical to fresh ones
    CALLS.clear()
    again = sweep(cheap, GRID, cache_dir=cache)  # all cached: no call, no cluster
    assert CALLS == [] and again.info["scheduler"] == "cached" and again.rows == fresh.rows


def test_cache_keys_and_corrupt_files(tmp_path):
    ident = function_identity(cheap)
    k = point_key(ident, {"a": 1, "b": 0.5}, {})
    assert k == point_key(function_identity(cheap), {"b": 0.5, "a": 1}, {})
    assert k != point_key(ident, {"a": 1, "b": 0.5}, {"x": 1})
    assert k != point_key(ident, {"a": 1, "b": 0.5}, {}, cache_key="v2")
    grid = {"a": [1, 2], "b": [0.5]}
    sweep(cheap, grid, cache_dir=tmp_path, scheduler="serial")
    assert len(CALLS) == 2
    victim = sorted(tmp_path.glob("*.json"))[0]
    victim.write_text("{ not json")  # a damaged file is recomputed, not trusted
    CALLS.clear()
    sweep(cheap, grid, cache_dir=tmp_path, scheduler="serial")
    assert len(CALLS) == 1
    CALLS.clear()
    sweep(cheap, grid, cache_dir=tmp_path, scheduler="serial", cache_key="other")
    assert len(CALLS) == 2


def test_errors_record_and_bad_input():
    def sometimes(a):
        if a == 2:
            raise ValueError("bad point")
        return a * a

    res = sweep(sometimes, {"a": [1, 2, 3]}, scheduler="serial", errors="record")
    assert [r.get("value") for r in res.rows] == [1, None, 9]
    assert "bad point" in res.rows[1]["error"] and res.info["failed"] == 1
    with pytest.raises(ValueError, match="non-empty"):
        sweep(sometimes, {}, scheduler="serial")
    with pytest.raises(ValueError, match="both swept and fixed"):
        sweep(cheap, {"a": [1]}, fixed={"a": 2, "b": 1}, scheduler="serial")
    with pytest.raises(ValueError, match="unknown point function"):
        sweep("nope", {"a": [1]}, scheduler="serial")


@pytest.mark.skipif(
    not dask_available(), reason="dask.distributed is not installed (pip install 'fokkerplanck[sweep]')"
)
def test_serial_and_dask_give_identical_tables(tmp_path):
    from dask.distributed import Client, LocalCluster

    serial = sweep(cheap, GRID, scheduler="serial")
    CALLS.clear()
    # an in-process cluster keeps the test fast; the default path (a process LocalCluster) is the same code
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        par = sweep(cheap, GRID, scheduler=client, cache_dir=tmp_path)
    assert par.rows == serial.rows
    assert par.info["computed"] == 120 and "client" in par.info["scheduler"]
    assert len(list(tmp_path.glob("*.json"))) == 120


def test_prl_steady_point_quick():
    r = prl_steady_point(1e-3, quick=True)
    assert r["cells"] == [60, 40]
    assert r["transition"] == pytest.approx(5e-4)
    assert 0.0 < r["mean_abs_x"] < 1.5
    assert r["flatness_min"] == pytest.approx(8**-0.5) and r["flatness_max"] == pytest.approx(7**-0.5, rel=1e-6)
    assert r["flatness_min"] <= r["flatness"] <= r["flatness_max"]
    # the known limitation is reported in the row: the cross-diffusion of D = Delta_S H^2 does not fit the stencil
    assert r["shrunk_cells"] > 0 and r["min_cross_factor"] < 1
    res = sweep("prl_steady", {"delta_s": [2e-4, 2e-3]}, scheduler="serial", quick=True)
    assert res.rows[0]["mean_abs_x"] < res.rows[1]["mean_abs_x"]  # flatter solutions at larger noise


# ------------------------------------------------------------------------------------------------------------
# PRL Fig. 3(c): the high-dimensional model (N_S = 5, N_F = 100)
# ------------------------------------------------------------------------------------------------------------
def test_highdim_point_tiny_noise_stays_sharp_and_unstable_points_diverge():
    tiny = highdim_sgd_point(0.01, 1e-4, quick=True, n_steps=8000)  # Delta_S = 1e-6 << Delta_S* ~ 1e-4
    assert tiny["diverged"] == 0.0 and tiny["n_flat"] == 100 and tiny["n_sharp"] == 5
    # stays at the sharp global minimum: F within a few stderr of F(0), far below F(x_F)
    assert abs(tiny["mean_flatness_final"] - tiny["flatness_min"]) < 1e-3
    assert tiny["flatness_max"] - tiny["mean_flatness"] > 0.03
    assert tiny["eta_lambda"] == pytest.approx(0.01 * 8.0, rel=0.01)  # <lambda_max> = lambda_max(0) = 8
    # eta lambda_max(0) = 0.32 * 8 > 2: the sharpest direction is linearly unstable at any sigma
    eta_big = highdim_sgd_point(0.32, 1e-4, quick=True)
    assert eta_big["diverged"] == 1.0 and eta_big["eta_lambda_0"] > 2 and math.isnan(eta_big["mean_flatness"])
    # excessive sigma at a stable eta
    sig_big = highdim_sgd_point(0.04, 3.0, quick=True)
    assert sig_big["diverged"] == 1.0 and sig_big["eta_lambda_0"] < 2
    by_name = sweep("highdim_sgd", {"eta": [0.32], "sigma": [1e-4]}, scheduler="serial", quick=True)
    assert by_name.rows[0]["diverged"] == 1.0 and by_name.rows[0]["eta_lambda_0"] == eta_big["eta_lambda_0"]


def test_highdim_quick_phase_diagram_flatness_grows_with_noise_and_diverges(tmp_path):
    res = highdim_phase_diagram(quick=True, scheduler="serial", out=tmp_path)
    etas, sigmas = res["etas"], res["sigmas"]
    assert etas == [0.02, 0.08, 0.32] and sigmas == [0.001, 0.01, 0.1, 1.0]
    F, se, D = res["Z_flatness"], res["Z_flatness_stderr"], res["Z_diverged"]
    assert F.shape == se.shape == D.shape == (4, 3)
    ok = D < res["diverged_threshold"]
    # divergence: none at the smallest (sigma, eta); all of eta = 0.32 (eta lambda_max(0) > 2) and sigma = 1
    assert D[0, 0] == 0.0 and np.all(D[:, 2] == 1.0) and np.all(D[3, :] == 1.0)
    assert np.all(np.isnan(F[~ok]) | (D[~ok] > 0))
    # flatness increases along sigma at fixed eta (and along eta at fixed sigma) wherever not diverged,
    # within 4 combined standard errors (plus 1e-6 for the time-average vs final snapshot)
    for Zline, sline, okline in [(F[:, j], se[:, j], ok[:, j]) for j in range(3)] + [
        (F[i, :], se[i, :], ok[i, :]) for i in range(4)
    ]:
        idx = np.flatnonzero(okline)
        for a, b in zip(idx[:-1], idx[1:]):
            assert Zline[b] >= Zline[a] - 4 * math.hypot(sline[a], sline[b]) - 1e-6, (Zline, sline)
    # and by much more than the noise from the sharpest to the flattest corner of the stable region
    assert F[2, 0] - F[0, 0] > 0.02 and F[2, 0] - F[0, 0] > 20 * math.hypot(se[2, 0], se[0, 0])
    assert res["flatness_min"] - 1e-6 <= np.nanmin(F) and np.nanmax(F) <= res["flatness_max"] + 1e-6
    # PRL convergence condition: every cell that converged has eta <lambda>_ss < 2
    conv = res["convergence"]
    assert conv["converged_cells"] == int(ok.sum()) == conv["converged_cells_with_eta_lambda_below_2"]
    assert conv["diverged_cells_beyond_eta_max_at_0"] == 4 and res["eta_max_at_0"] == pytest.approx(0.25)
    # the onset of flattening sits at the theory's Delta_S*(eta) ~ 1e-4: <|x|> small well below, O(1) well above
    assert res["transition_theory"] == pytest.approx(5.2e-3 / 49.1)
    A = res["Z_mean_abs_x"]
    assert A[0, 0] < 0.1 and A[2, 0] > 0.5  # eta = 0.02: Delta_S = 2e-5 and 2e-3
    doc = json.loads((tmp_path / "result.json").read_text())
    assert doc["arrays"]["Z_flatness"] == [4, 3] and len(doc["metrics"]["particle_rows"]) == 12
    assert doc["parameters"]["function"] == "highdim_phase_diagram"
