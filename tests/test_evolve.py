"""Time evolution against the exact Ornstein-Uhlenbeck moments."""

import numpy as np
import pytest
import scipy.linalg as sl

import fokkerplanck as fp
from fokkerplanck.landscapes import Quadratic
from fokkerplanck.noise import Constant

A = np.array([[2.0, 0.5], [0.5, 1.0]])
D = np.array([[0.5, 0.2], [0.2, 0.3]])
M0 = np.array([0.8, -0.5])
S0 = np.array([[0.05, 0.01], [0.01, 0.04]])


def exact_moments(t):
    """Mean e^{-At} m0 and covariance solving dS/dt = -AS - SA^T + 2D."""
    Sinf = sl.solve_continuous_lyapunov(A, 2 * D)
    E = sl.expm(-A * t)
    return E @ M0, Sinf + E @ (S0 - Sinf) @ E.T


@pytest.fixture(scope="module")
def problem():
    grid = fp.Grid([(-3.5, 3.5, 96), (-4.5, 4.5, 96)])
    return fp.Problem(grid, Quadratic(A), Constant(D))


@pytest.mark.parametrize(
    "scheme,tol", [("tr-bdf2", 2.5e-3), ("explicit", 2.5e-3), ("expm", 2.5e-3), ("implicit-euler", 1e-2)]
)  # implicit Euler: first order in time, measured 6e-3
def test_ou_moments_follow_the_covariance_ode(problem, scheme, tol):
    p0 = fp.Density.gaussian(problem.grid, M0, S0)
    traj = fp.evolve(problem, p0, t_end=1.0, n_save=3, dt=0.01, scheme=scheme)
    assert np.allclose(traj.times, [0, 0.5, 1.0])
    for k in (1, 2):
        m, S = exact_moments(traj.times[k])
        rho = traj[k]
        assert np.abs(rho.mean() - m).max() < tol  # measured 1.1e-3 (space error, 96^2)
        assert np.abs(rho.cov() - S).max() / np.abs(S).max() < tol
    assert np.abs(traj.mass - 1).max() < 1e-12
    assert traj.minimum.min() >= 0.0


def test_tr_bdf2_is_second_order_in_time(problem):
    """Errors against a fine-step reference fall by ~4x when dt halves."""
    p0 = fp.Density.gaussian(problem.grid, M0, S0)
    ref = fp.evolve(problem, p0, 0.5, n_save=2, scheme="expm").final.values
    errs = [np.abs(fp.evolve(problem, p0, 0.5, n_save=2, dt=dt).final.values - ref).max() for dt in (0.05, 0.025)]
    order = np.log2(errs[0] / errs[1])
    assert 1.8 < order < 2.3  # measured 2.0


def test_long_evolution_reaches_the_steady_state(problem):
    p0 = fp.Density.gaussian(problem.grid, M0, S0)
    final = fp.evolve(problem, p0, t_end=20.0, n_save=2, dt=0.2).final
    ss = fp.steady_state(problem)
    assert np.abs(final.values - ss.values).max() / ss.values.max() < 1e-6
    # relative entropy decreases monotonically (H-theorem), entropy of the density saturates
    traj = fp.evolve(problem, p0, t_end=5.0, n_save=11, dt=0.05)
    kl = [np.sum(r.values * np.log(np.maximum(r.values, 1e-300) / ss.values)) * problem.grid.cell_volume for r in traj]
    assert np.all(np.diff(kl) < 0)


def test_save_times_are_hit_exactly(problem):
    p0 = fp.Density.gaussian(problem.grid, M0, S0)
    traj = fp.evolve(problem, p0, 0.3, save_times=[0.0, 0.07, 0.2], dt=0.05)
    np.testing.assert_allclose(traj.times, [0.0, 0.07, 0.2, 0.3])
    m, _ = exact_moments(0.07)
    assert np.abs(traj[1].mean() - m).max() < 3e-3
