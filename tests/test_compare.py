"""compare(): exact values on simple cases."""

import numpy as np
import pytest

from fokkerplanck.compare import compare
from fokkerplanck.density import Density
from fokkerplanck.grid import Grid


def test_identical_densities_give_zeros():
    g = Grid([(-3, 3, 40), (-2, 2, 30)])
    p = Density.gaussian(g, [0.2, -0.1], [[0.5, 0.1], [0.1, 0.3]])
    r = compare(p, p.copy())
    for k in ("l1", "total_variation", "max_abs", "cov_diff", "mean_diff_norm"):
        assert r[k] == 0.0
    assert r["hellinger"] < 1e-7
    assert r["ks"] == [0.0, 0.0]
    assert "chi2_per_cell" not in r


def test_two_gaussians_hellinger_closed_form():
    g = Grid([(-12, 12, 4000)])
    m1, s1, m2, s2 = 0.0, 1.0, 1.0, 1.5
    a = Density.gaussian(g, m1, s1**2)
    b = Density.gaussian(g, m2, s2**2)
    H2 = 1 - np.sqrt(2 * s1 * s2 / (s1**2 + s2**2)) * np.exp(-((m1 - m2) ** 2) / (4 * (s1**2 + s2**2)))
    r = compare(a, b)
    assert r["hellinger"] == pytest.approx(np.sqrt(H2), rel=1e-4)
    assert r["mean_diff"][0] == pytest.approx(-1.0, abs=1e-4)
    assert r["cov_diff"] == pytest.approx(1.25, rel=1e-4)
    assert r["total_variation"] == pytest.approx(0.5 * r["l1"])


def test_shifted_uniform_ks_and_l1():
    g = Grid([(-1.0, 2.0, 300)])
    x = g.centers[0]
    a = Density(g, ((x > 0) & (x < 1)).astype(float), normalize=True)
    b = Density(g, ((x > 0.2) & (x < 1.2)).astype(float), normalize=True)
    r = compare(a, b)
    assert r["ks"][0] == pytest.approx(0.2, abs=1e-12)
    assert r["l1"] == pytest.approx(0.4, abs=1e-12)
    assert r["max_abs"] == pytest.approx(1.0)
    assert r["hellinger"] == pytest.approx(np.sqrt(0.2), abs=1e-12)


def test_grid_mismatch_raises_and_names_it():
    a = Density.gaussian(Grid([(-3, 3, 40)]), 0.0, 1.0)
    with pytest.raises(ValueError, match="axis 0"):
        compare(a, Density.gaussian(Grid([(-3, 3, 41)]), 0.0, 1.0))
    with pytest.raises(ValueError, match="dimension"):
        compare(a, Density.gaussian(Grid([(-3, 3, 40), (-1, 1, 5)]), 0.0, 1.0))
    with pytest.raises(ValueError, match="boundary"):
        compare(a, Density.gaussian(Grid([(-3, 3, 40)], bc="absorbing"), 0.0, 1.0))
    with pytest.raises(TypeError):
        compare(a, a.values)


def test_stderr_summary_for_pure_noise_and_real_difference():
    rng = np.random.default_rng(0)
    g = Grid([(-4, 4, 60), (-4, 4, 60)])
    p = Density.gaussian(g, [0, 0], 1.0)
    n = 10**6
    counts = rng.poisson(p.values * g.cell_volume * n)
    vals = counts / (n * g.cell_volume)
    se = np.sqrt(np.maximum(counts, 1)) / (n * g.cell_volume)
    h = Density(g, vals, stderr=se)
    r = compare(h, p)
    assert 0.98 < r["frac_within_3se"] <= 1.0
    assert 0.7 < r["chi2_per_cell"] < 1.3
    assert 0.8 < r["l1_over_noise"] < 1.2
    # a real shift stands out
    q = Density.gaussian(g, [0.1, 0], 1.0)
    r2 = compare(h, q)
    assert r2["chi2_per_cell"] > 3 and r2["l1_over_noise"] > 2
