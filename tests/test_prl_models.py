"""PRL models with the grid solver (Yang, Tang & Tu, PRL 130, 237101): Eqs. (11)-(12), Hessian noise on
quadratics, and the Fig. 5 transition. Tolerances are set from measured values (quoted in each test)."""

import warnings

import numpy as np
import pytest

from fokkerplanck import theory
from fokkerplanck.adiabatic import adiabatic_error_study, valley_effective_potential
from fokkerplanck.grid import Grid
from fokkerplanck.landscapes import DegenerateValley, Quadratic
from fokkerplanck.noise import Constant, HessianAligned, HessianLinear
from fokkerplanck.problem import Problem
from fokkerplanck.steady import steady_state


def test_eq11_adiabatic_error_shrinks_linearly_in_delta():
    """lambda = 1 + x^2, kappa = 3, D = diag(Delta/3, Delta), eps = 0, 160 x 120 cells.
    Measured: L1 = 1.88e-3 (Delta=0.01), 3.43e-3 (0.02), 6.36e-3 (0.04); slope 0.88 (0.91 on 240 x 160 over
    Delta = 0.005..0.08, where the fixed discretisation error weighs less)."""
    r = adiabatic_error_study([0.01, 0.02, 0.04], kappa=3.0)
    l1 = r["l1"]
    assert 1.2e-3 < l1[0] < 2.6e-3
    assert 4.5e-3 < l1[2] < 8.5e-3
    assert l1[0] < l1[1] < l1[2]
    assert 0.75 < r["slope"] < 1.1
    assert max(r["residuals"]) < 1e-10


def test_hessian_aligned_and_linear_noise_on_a_quadratic():
    """Drift -A theta: D = Delta_S A^2 gives Sigma = Delta_S A, D = Delta A gives Sigma = Delta I (Lyapunov).
    Measured: the cell-centre covariance matches to round-off (1e-14 relative) on 120 x 120 cells."""
    A = np.array([[2.0, 0.6], [0.6, 1.0]])
    q = Quadratic(A)
    g = Grid([(-1.2, 1.2, 120), (-1.2, 1.2, 120)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ss = steady_state(Problem(g, landscape=q, noise=HessianAligned(0.01)))
    np.testing.assert_allclose(ss.cov(), theory.ou_stationary_cov(A, 0.01 * A @ A), rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(ss.cov(), 0.01 * A, rtol=1e-6, atol=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ss = steady_state(Problem(g, landscape=q, noise=HessianLinear(0.02)))
    np.testing.assert_allclose(ss.cov(), 0.02 * np.eye(2), rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("Delta,tol", [(0.01, 0.02), (0.04, 0.06)])
def test_effective_potential_along_the_valley_follows_eq12(Delta, tol):
    """L_eff(x, 0) - L(x, 0) vs Delta (kappa - 1)/2 ln lambda(x), up to a constant, on x in [-2, 2].
    Measured max error relative to the range of L_SGD: 1.1 % (Delta = 0.01), 3.6 % (0.04): the adiabatic error."""
    land = DegenerateValley((1.0, 1.0), eps=0.0)
    kappa = 3.0
    ymax = 6 * np.sqrt(Delta)
    g = Grid([(-2.0, 2.0, 160), (-ymax, ymax, 80)])
    ss = steady_state(Problem(g, landscape=land, noise=Constant(np.diag([Delta / kappa, Delta]))), warn=False)
    xs, Ls = valley_effective_potential(ss, land, Delta)
    ref = theory.eq12_l_sgd(xs[0], land, Delta, kappa)
    ref = ref - ref.min()
    err = np.abs(Ls - ref).max() / ref.max()
    assert err < tol


def test_fig5_transition_at_delta_s_star():
    """PRL Fig. 5 landscape (eps = 1e-3, lambdas = (8, -2, 1)), D = Delta_S H^2, Delta_S* = -eps/lambda_1 = 5e-4.
    Measured <|x|> on 200 x 80 cells (x in [-1.6, 1.6], y in +-6 sqrt(8 Delta_S)): 0.0080 (1e-4),
    0.0094 (3e-4), 0.717 (2e-3), 0.899 (5e-3). Below Delta_S* the density sits in the central cells
    (<|x|> ~ h/2 = 0.008)."""
    land = DegenerateValley((8.0, -2.0, 1.0), eps=1e-3)
    assert theory.transition_noise(land.eps, land.lambdas[1]) == pytest.approx(5e-4)
    out = {}
    for ds in (1e-4, 3e-4, 2e-3, 5e-3):
        ymax = 6 * np.sqrt(ds * 8)
        g = Grid([(-1.6, 1.6, 200), (-ymax, ymax, 80)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # cross-diffusion limiter warning (see report)
            ss = steady_state(Problem(g, landscape=land, noise=HessianAligned(ds)), warn=False)
        out[ds] = ss.expect(lambda p: np.abs(p[..., 0]))
    assert out[1e-4] < 0.03 and out[3e-4] < 0.03
    assert out[2e-3] > 0.5
    assert out[5e-3] > 0.8
    assert out[5e-3] > out[2e-3]
