"""Closed forms of fokkerplanck.theory against independent computations."""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from fokkerplanck import theory
from fokkerplanck.grid import Grid
from fokkerplanck.landscapes import DegenerateValley, HighDimValley, Quadratic

LAM = lambda x: 1.0 + np.asarray(x) ** 2


def test_eq11_marginal_is_integral_of_density_over_y():
    grid = Grid([(-2.0, 2.0, 80), (-1.5, 1.5, 600)])
    Delta, kappa = 0.02, 3.0
    P = theory.eq11_density(grid, LAM, Delta, kappa)
    assert P.mass == pytest.approx(1.0)
    mx = P.marginal(0)
    ref = theory.eq11_marginal_x(grid.subgrid([0]), LAM, kappa)
    np.testing.assert_allclose(mx.values, ref.values, rtol=1e-8)
    # array form: normalised on the points, and the pointwise form of the density
    x = grid.centers[0]
    np.testing.assert_allclose(theory.eq11_marginal_x(x, LAM, kappa), ref.values, rtol=1e-12)
    pts = np.array([[0.5, 0.1]])
    expect = np.exp(-1.25 * 0.01 / (2 * Delta)) * 1.25 ** (-(kappa - 1) / 2)
    np.testing.assert_allclose(theory.eq11_density(pts, LAM, Delta, kappa), [expect])
    # a landscape with a lam method works as lam_fn
    dv = DegenerateValley((1.0, 1.0), eps=0.0)
    np.testing.assert_allclose(theory.eq11_marginal_x(x, dv, kappa), ref.values, rtol=1e-12)


def test_eq12_is_minus_delta_log_of_eq11():
    Delta, kappa = 0.05, 4.0
    x = np.linspace(-1, 1, 7)
    y = np.linspace(-0.3, 0.3, 7)
    Leff = theory.eq12_l_eff(x, y, LAM, Delta, kappa)
    P = theory.eq11_density(np.stack([x, y], -1), LAM, Delta, kappa)
    np.testing.assert_allclose(Leff, -Delta * np.log(P), rtol=1e-12, atol=1e-14)
    # L_SGD = Delta (1 - kappa) ln F with F = lambda^-1/2
    F = LAM(x) ** -0.5
    np.testing.assert_allclose(theory.eq12_l_sgd(x, LAM, Delta, kappa), Delta * (1 - kappa) * np.log(F))


def test_kappa_approx_values_and_eq13_at_origin():
    assert theory.kappa_approx(1e-3, 5e-4, -2.0) == pytest.approx(1 / (1e-6 - 2e-6 + 3e-6))
    assert theory.kappa_approx(0.0, 0.01, 1.0) == pytest.approx(1 / 3e-4)
    with pytest.raises(ValueError):
        theory.kappa_approx(0.0, 0.0, 1.0)
    land = DegenerateValley((8.0, -2.0, 1.0), eps=1e-3)
    for ds in (1e-4, 5e-4, 2e-3):
        Dx, kx = theory.eq13_delta_kappa(0.0, land, ds)
        assert Dx == pytest.approx(ds * 64)
        assert kx == pytest.approx(theory.kappa_approx(1e-3, ds, -2.0), rel=1e-12)


def test_eq13_reduces_to_eq14_for_constant_delta_kappa():
    """With Delta(x), kappa(x) frozen at their x=0 values Eq. (13) is Eq. (14) up to a constant."""
    land = DegenerateValley((8.0, -2.0, 1.0), eps=1e-3)
    ds = 1e-3
    D0, k0 = theory.eq13_delta_kappa(0.0, land, ds)
    x = np.linspace(-1.2, 1.2, 13)
    lam = land.lam(x)
    eps_l0 = land.eps * land.lambda_bar0
    # Eq. (13) with constants, integral done by hand: kappa eps l0 x^2 / 2 + Delta kappa ln(lambda) / 2 ...
    frozen = (
        D0 * (k0 * eps_l0 * x**2 / (2 * D0) + k0 * 0.5 * np.log(lam / land.lam(0.0)))
        - 0.5 * D0 * np.log(lam / D0)
        - 0.5 * eps_l0 * x**2
    )
    eq14 = theory.eq14_l_sgd(x, land, ds)
    d = frozen - eq14
    np.testing.assert_allclose(d - d[0], 0.0, atol=1e-9 * np.abs(eq14).max())
    # and the full Eq. (13) agrees with Eq. (14) near x = 0 where Delta, kappa are nearly constant (kappa(x)
    # falls fast: the lambda'(x)^2 term of <D_11> overtakes eps^2 + ... already at |x| ~ 0.05, where the two
    # differ by 20 %; measured 0.2 % at |x| = 0.005)
    xs = np.linspace(-0.005, 0.005, 5)
    e13 = theory.eq13_l_sgd(xs, land, ds)
    e14 = theory.eq14_l_sgd(xs, land, ds)
    assert np.all(np.isfinite(e13))
    np.testing.assert_allclose(e13 - e13[2], e14 - e14[2], rtol=0.01, atol=1e-9)


def test_eq15_reduces_to_eq12_form_in_one_sharp_direction():
    hd = HighDimValley(2, 1, (1.0, 1.0), eps=0.0)
    x = np.random.default_rng(0).normal(size=(6, 2))
    ds, kappa = 0.01, 5.0
    # N_S = 1: (Delta - kappa Delta) ln F = Delta (1 - kappa) ln F, Delta = Delta_S lambda(0)^2
    expect = ds * (1 - kappa) * np.log(hd.flatness(x))
    np.testing.assert_allclose(theory.eq15_l_sgd_f(x, hd, ds, kappa), expect)
    hd2 = HighDimValley(1, 2, [[8.0, -2.0, 1.0], [2.0, 1.0, 0.0]])
    xs = np.array([[0.0], [1.0]])
    D = ds * np.array([64.0, 4.0])
    lnF = -0.5 * np.log(hd2.lam(xs))
    np.testing.assert_allclose(theory.eq15_l_sgd_f(xs, hd2, ds, kappa), ((D.mean() - kappa * D) * lnF).sum(-1))


def test_transition_noise_and_divergence_bound():
    assert theory.transition_noise(1e-3, -2.0) == pytest.approx(5e-4)
    with pytest.raises(ValueError):
        theory.transition_noise(1e-3, 1.0)
    land = DegenerateValley((8.0, -2.0, 1.0), eps=1e-3)
    # lambda(0)=8, lambda''(0) = -4 -> <lambda> ≈ 8 - 2 <x^2>
    assert theory.mean_lambda_ss(land, 0.0, 0.1) == pytest.approx(8 - 0.2)
    # at x_F = 1: lambda = 7, lambda'' = -4 + 12 = 8
    assert theory.mean_lambda_ss(land, 1.0, 1.05) == pytest.approx(7 + 4 * 0.05)
    assert theory.sgd_converges(0.2, 7.0) and not theory.sgd_converges(0.3, 7.0)


@pytest.mark.parametrize("d", [2, 3])
def test_ou_stationary_and_transient_covariance_vs_ode(d):
    rng = np.random.default_rng(d)
    A = np.eye(d) * 1.5 + 0.4 * rng.normal(size=(d, d))  # non-symmetric, stable
    G = rng.normal(size=(d, d))
    D = 0.5 * G @ G.T + 0.1 * np.eye(d)
    S = theory.ou_stationary_cov(A, D)
    np.testing.assert_allclose(A @ S + S @ A.T, 2 * D, atol=1e-12)
    S0 = 0.3 * np.eye(d)
    rhs = lambda t, s: (-A @ s.reshape(d, d) - s.reshape(d, d) @ A.T + 2 * D).ravel()
    sol = solve_ivp(rhs, (0, 1.3), S0.ravel(), rtol=1e-11, atol=1e-13, t_eval=[0.4, 1.3])
    for k, t in enumerate(sol.t):
        np.testing.assert_allclose(theory.ou_cov_at(t, A, D, S0), sol.y[:, k].reshape(d, d), atol=1e-9)
    # unstable A: the Van Loan branch still solves the ODE
    Au = A - 3 * np.eye(d)
    rhs_u = lambda t, s: (-Au @ s.reshape(d, d) - s.reshape(d, d) @ Au.T + 2 * D).ravel()
    sol = solve_ivp(rhs_u, (0, 0.5), S0.ravel(), rtol=1e-11, atol=1e-13, t_eval=[0.5])
    np.testing.assert_allclose(theory.ou_cov_at(0.5, Au, D, S0), sol.y[:, 0].reshape(d, d), rtol=1e-8)
    with pytest.raises(ValueError):
        theory.ou_stationary_cov(-A, D)


def test_sgd_discrete_cov_vs_iterating_the_recursion():
    A = np.array([[3.0, 0.5], [0.5, 1.0]])
    eta, sigma = 0.1, 0.02
    S = theory.sgd_discrete_cov(A, eta, sigma)
    M = np.eye(2) - eta * A
    Q = 2 * sigma * eta**2 * A @ A.T
    X = np.zeros((2, 2))
    for _ in range(3000):
        X = M @ X @ M.T + Q
    np.testing.assert_allclose(S, X, rtol=1e-10)
    # closed form for symmetric A, and the eta -> 0 limit Delta_S A
    np.testing.assert_allclose(S, 2 * sigma * eta * A @ np.linalg.inv(2 * np.eye(2) - eta * A), rtol=1e-10)
    S_small = theory.sgd_discrete_cov(A, 1e-4, sigma)
    np.testing.assert_allclose(S_small, 1e-4 * sigma * A, rtol=1e-3)
    with pytest.raises(ValueError, match="diverges"):
        theory.sgd_discrete_cov(A, 1.0, sigma)


def test_boltzmann_weights():
    grid = Grid([(-3, 3, 60), (-3, 3, 50)])
    q = Quadratic([[2.0, 0.0], [0.0, 1.0]])
    P = theory.boltzmann(grid, q, 0.3)
    assert P.mass == pytest.approx(1.0)
    L = q.loss(grid.mesh())
    r = P.values / np.exp(-L / 0.3)
    np.testing.assert_allclose(r, r.flat[0], rtol=1e-12)
    np.testing.assert_allclose(P.cov(), np.diag([0.15, 0.3]), rtol=0.02, atol=1e-12)


def test_sgd_linear_stability_wu_ma_e():
    # 1D: (1 - eta a)^2 + c s^2 <= 1
    h = np.array([1.0, 3.0, 2.0, 6.0])  # a = 3, s^2 = mean h^2 - 9 = 12.5 - 9 = 3.5
    eta, B, n = 0.3, 1, 4
    r = theory.sgd_linear_stability(h, eta, B)
    c = eta**2 * (n - B) / (B * (n - 1))
    assert r["sharpness"] == pytest.approx(3.0) and r["non_uniformity"] == pytest.approx(np.sqrt(3.5))
    assert r["rho"] == pytest.approx((1 - eta * 3) ** 2 + c * 3.5)
    assert r["stable"] == (r["rho"] <= 1)
    # full batch: GD condition eta a <= 2
    assert theory.sgd_linear_stability(h, 0.66, 4)["stable"]
    assert not theory.sgd_linear_stability(h, 0.67, 4)["stable"]
    # small batch destabilises what GD keeps
    assert not theory.sgd_linear_stability(h, 0.5, 1)["stable"]
    # d-dimensional: rho agrees with a Monte Carlo of the second moment recursion
    rng = np.random.default_rng(0)
    Hs = np.array([(lambda G: G @ G.T)(rng.normal(size=(2, 2))) for _ in range(6)])
    eta, B = 0.15, 2
    r = theory.sgd_linear_stability(Hs, eta, B)
    S = np.eye(2)
    subsets = [np.array(s) for s in __import__("itertools").combinations(range(6), B)]
    for _ in range(200):  # exact expectation over all batches without replacement
        S_new = np.zeros((2, 2))
        for sub in subsets:
            M = np.eye(2) - eta * Hs[sub].mean(0)
            S_new += M @ S @ M.T
        S = S_new / len(subsets)
    growth = np.linalg.norm(S) ** (1 / 200)
    assert growth == pytest.approx(r["rho"], rel=2e-2)
    assert r["necessary"] <= r["rho"] + 1e-12 or r["necessary"] <= 1 + 1e-12


def test_mfpt_constant_coefficients_closed_form():
    a, b, D = 0.0, 2.0, 0.7
    x = np.array([0.0, 0.5, 1.5, 2.0])
    # pure diffusion: T = ((b-a)^2 - (x-a)^2) / (2 D)
    T = theory.mfpt_1d(x, lambda z: 0 * z, lambda z: D + 0 * z, a, b)
    np.testing.assert_allclose(T, ((b - a) ** 2 - (x - a) ** 2) / (2 * D), rtol=1e-7, atol=1e-9)
    # constant drift v: T = (b - x)/v - (exp(-r (x-a)) - exp(-r (b-a))) / (v r), r = v/D
    for v in (0.8, -0.5):
        r = v / D
        T = theory.mfpt_1d(x, lambda z: v + 0 * z, lambda z: D + 0 * z, a, b)
        ref = (b - x) / v - (np.exp(-r * (x - a)) - np.exp(-r * (b - a))) / (v * r)
        np.testing.assert_allclose(T, ref, rtol=1e-6, atol=1e-9)
    # mirrored geometry: reflecting on the right
    T1 = theory.mfpt_1d(0.5, lambda z: -0.8 + 0 * z, lambda z: D + 0 * z, 2.0, 0.0)
    T2 = theory.mfpt_1d(1.5, lambda z: 0.8 + 0 * z, lambda z: D + 0 * z, 0.0, 2.0)
    assert T1 == pytest.approx(T2, rel=1e-9)


def test_mfpt_state_dependent_diffusion_vs_ode():
    """T solves v T' + D T'' = -1, T'(a) = 0, T(b) = 0 (checked with a BVP solve)."""
    from scipy.integrate import solve_bvp

    v = lambda z: -(z**3) + 0.5 * z
    D = lambda z: 0.3 + 0.2 * z**2
    a, b = -1.0, 1.5
    xs = np.linspace(a, b, 200)
    sol = solve_bvp(
        lambda z, u: np.vstack([u[1], (-1 - v(z) * u[1]) / D(z)]),
        lambda ua, ub: np.array([ua[1], ub[0]]),
        xs,
        np.zeros((2, xs.size)),
        tol=1e-10,
        max_nodes=100000,
    )
    assert sol.success
    probe = np.array([-0.8, 0.0, 0.7, 1.4])
    np.testing.assert_allclose(theory.mfpt_1d(probe, v, D, a, b), sol.sol(probe)[0], rtol=1e-6)


def test_kramers_rate_vs_mfpt_double_well():
    """L = h (x^2 - 1)^2 at T = h/12: Kramers' 1/k vs the exact MFPT from -1 to +1 (the absorbing point at the
    bottom of the other well doubles nothing: the time past the saddle is not exponentially long). The
    asymptotic error is O(T / Delta L); measured 3.6 % here."""
    h, T = 1.0, 1.0 / 12
    v = lambda x: -4 * h * x * (x * x - 1)
    Tm = theory.mfpt_1d(-1.0, v, lambda x: T + 0 * x, -3.0, 1.0, n=40001)
    k = theory.kramers_rate(h, 8 * h, -4 * h, T)
    assert Tm * k == pytest.approx(1.0, abs=0.06)
    # ratio -> 1 as T -> 0
    T2 = 1.0 / 24
    Tm2 = theory.mfpt_1d(-1.0, v, lambda x: T2 + 0 * x, -3.0, 1.0, n=80001)
    assert abs(Tm2 * theory.kramers_rate(h, 8 * h, -4 * h, T2) - 1) < abs(Tm * k - 1)
    # Eyring-Kramers in 1D is Kramers
    assert theory.eyring_kramers_rate(h, [[8 * h]], [[-4 * h]], T) == pytest.approx(k)


def test_eyring_kramers_separable_2d():
    """A separable saddle: an extra stable direction with curvature c_a at the minimum and c_b at the saddle
    multiplies the 1D rate by sqrt(c_a / c_b)."""
    k1 = theory.kramers_rate(1.0, 8.0, -4.0, 0.1)
    k2 = theory.eyring_kramers_rate(1.0, np.diag([8.0, 3.0]), np.diag([-4.0, 1.5]), 0.1)
    assert k2 == pytest.approx(k1 * np.sqrt(3.0 / 1.5))


def test_xie_escape_exponent_matches_exact_mfpt():
    """Piecewise-quadratic 1D well with D = delta |L''|: curvature Ha up to x1, -Hb after (C^1 joined); the
    exact MFPT has the exponent (Delta L/delta)(s/Ha + (1-s)/Hb), s the fraction of the barrier climbed in the
    well's quadratic part: the [XSS] law."""
    Ha, Hb, x1 = 4.0, 2.0, 0.5
    xs = x1 + Ha * x1 / Hb  # saddle: slope matched at x1
    L1 = 0.5 * Ha * x1**2
    dL = L1 + 0.5 * Hb * (xs - x1) ** 2
    s = L1 / dL
    v = lambda x: np.where(x < x1, -Ha * x, Hb * (x - xs))
    logs = []
    for delta in (0.02, 0.01):
        D = lambda x, d=delta: np.where(x < x1, d * Ha, d * Hb)
        Tm = theory.mfpt_1d(0.0, v, D, -2.0, xs + 1.0, n=200001)
        Tx = theory.xie_escape_time(dL, Ha, -Hb, delta, s=s)
        logs.append(np.log(Tm) - np.log(Tx))
    # same exponent: the log-ratio does not grow like 1/delta (it would change by ~80 here otherwise)
    assert abs(logs[0] - logs[1]) < 0.1
    # the prefactor ratio: exact 2 pi / Ha (escape past the saddle) vs [XSS] 2 pi / Hb
    assert logs[1] == pytest.approx(np.log(Hb / Ha), abs=0.1)
    # isotropic-looking limit s = 1 with h_min = |h_saddle| reduces to a Kramers-like 2 pi/|Hb| exp(dL/(delta H))
    assert theory.xie_escape_time(1.0, 2.0, -2.0, 0.1, s=1.0) == pytest.approx(np.pi * np.exp(5.0))


def test_valley_transition_noise_generalises_the_2d_formula():
    from fokkerplanck.theory import transition_noise, valley_transition_noise

    # one sharp direction: PRL Appendix Delta_S* = -eps / lambda_1
    assert valley_transition_noise(DegenerateValley((8.0, -2.0, 1.0), eps=1e-3)) == pytest.approx(5e-4)
    assert valley_transition_noise(HighDimValley(3, 1, (8.0, -2.0, 1.0), eps=1e-3)) == pytest.approx(
        transition_noise(1e-3, -2.0)
    )
    # several: eps lambda_bar0 / (-sum_i l0_i l1_i)
    hd = HighDimValley(4, 2, [[8.0, -2.0, 1.0], [2.0, 1.0, 0.5]], eps=1e-2)
    assert valley_transition_noise(hd) == pytest.approx(1e-2 * 5.0 / (16.0 - 2.0))
    # the discrete SGD's larger sharp-direction variance moves the transition down
    assert valley_transition_noise(hd, eta=0.1) < valley_transition_noise(hd)
    with pytest.raises(ValueError, match="no transition"):
        valley_transition_noise(HighDimValley(2, 1, (1.0, 1.0)))
    with pytest.raises(ValueError, match="diverges"):
        valley_transition_noise(hd, eta=0.3)
