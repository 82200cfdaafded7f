"""Mean first-passage times against the exact 1D quadrature and Kramers' law."""

import numpy as np
import pytest

import fokkerplanck as fp
from fokkerplanck.landscapes import Custom, Quadratic
from fokkerplanck.noise import Field, Isotropic
from fokkerplanck.passage import escape_rate, mean_first_passage_time
from fokkerplanck.theory import kramers_rate, mfpt_1d

T = 0.25
double_well = Custom(
    lambda t: (t[..., 0] ** 2 - 1) ** 2, lambda t: (4 * t[..., 0] * (t[..., 0] ** 2 - 1))[..., None], dim=1
)
v = lambda x: -4 * x * (x**2 - 1)


def well_problem(n, noise=Isotropic(T)):  # noqa: B008 (an immutable noise model)
    grid = fp.Grid([(-2.0, 0.0, n)], bc=[("reflecting", "absorbing")])
    return fp.Problem(grid, double_well, noise)


def test_mfpt_1d_double_well_matches_quadrature_with_second_order():
    errs = []
    for n in (200, 400):
        prob = well_problem(n)
        mfpt = mean_first_passage_time(prob)
        x = prob.grid.centers[0]
        exact = mfpt_1d(x, v, lambda x: T + 0 * x, -2.0, 0.0, n=200001)
        errs.append(np.abs(mfpt.values - exact).max() / exact.max())
    assert errs[1] < 2e-4  # measured 2.5e-5 (target 2e-3)
    assert 1.8 < np.log2(errs[0] / errs[1]) < 2.2  # measured 1.98
    assert mfpt.values.min() >= 0


def test_mfpt_with_state_dependent_noise_matches_quadrature():
    D = lambda x: 0.2 + 0.1 * x**2
    prob = well_problem(400, Field(lambda t: D(t)[..., None]))
    mfpt = mean_first_passage_time(prob)
    exact = mfpt_1d(-1.0, v, D, -2.0, 0.0, n=200001)
    assert abs(float(mfpt.at(np.array([[-1.0]]))[0]) / exact - 1) < 2e-4


def test_target_region_equals_absorbing_wall_and_escape_rate_matches_mfpt():
    """Escape over the barrier of a symmetric double well: target x > 0 on the full box."""
    grid = fp.Grid([(-2.0, 2.0, 400)])
    prob = fp.Problem(grid, double_well, Isotropic(T))
    mfpt = mean_first_passage_time(prob, target=lambda t: t[..., 0] > 0)
    tau = float(mfpt.at(np.array([[-1.0]]))[0])
    # reaching the target means reaching the centre of its first cell, x = h/2
    exact = mfpt_1d(-1.0, v, lambda x: T + 0 * x, -2.0, grid.spacing[0] / 2, n=200001)
    assert abs(tau / exact - 1) < 2e-3
    rate = escape_rate(prob, target=lambda t: t[..., 0] > 0)
    assert abs(rate * tau - 1) < 0.03  # exp. small corrections, measured 1.1%
    kr = kramers_rate(barrier=1.0, curvature_min=8.0, curvature_saddle=-4.0, T=T)
    # Kramers to the saddle (half the flux returns): MFPT to the barrier top ~ 1 / (2 k_Kramers)
    assert 0.8 < 1 / (2 * kr * tau) < 1.25


def test_mfpt_2d_is_nonnegative_and_zero_on_target():
    grid = fp.Grid([(-2, 2, 40), (-2, 2, 40)])
    prob = fp.Problem(grid, Quadratic(np.diag([1.0, 2.0])), Isotropic(0.5))
    target = lambda t: np.hypot(t[..., 0] - 1.0, t[..., 1]) < 0.3
    mfpt = mean_first_passage_time(prob, target=target)
    assert np.all(mfpt.values >= 0)
    assert np.all(mfpt.values[target(grid.mesh())] == 0)
    assert mfpt.values.max() > 1.0


def test_no_target_and_reflecting_walls_is_an_error():
    grid = fp.Grid([(-1, 1, 10)])
    with pytest.raises(ValueError, match="target"):
        mean_first_passage_time(fp.Problem(grid, Quadratic([[1.0]]), Isotropic(1.0)))


def test_mfpt_2d_full_tensor_against_particles():
    """Exit time from the absorbing box [-1, 1]^2 (OU drift, correlated noise) from (0.3, 0.2).

    Solver: 4.1550, 4.1504, 4.1490, 4.1487 at 40^2 ... 320^2, second order (observed 1.81, 1.91): diagonal jumps
    out of the box see P = 0 where they cross the wall, not a full offset away (which gave 4.247, 4.197, 4.172
    at 60^2 ... 240^2, first order). Particles: Euler-Maruyama detects exits at the end of steps
    only, which overestimates exit times by O(sqrt(dt)); extrapolated linearly in sqrt(dt) to dt -> 0 they
    must agree within their statistical error (measured 4.15 +- 0.10)."""
    A = np.array([[2.0, 0.5], [0.5, 1.0]])
    D = np.array([[0.3, 0.1], [0.1, 0.2]])
    land, noise = Quadratic(A), fp.noise.Constant(D)
    x0 = np.array([0.3, 0.2])
    grid = fp.Grid([(-1, 1, 120), (-1, 1, 120)], bc="absorbing")
    tau_solver = float(mean_first_passage_time(fp.Problem(grid, land, noise)).at(x0[None])[0])
    means, errs = [], []
    for dt in (2e-3, 5e-4):
        ens = fp.simulate(land, noise, method="sde", n_particles=8000, theta0=x0, t_end=70.0, dt=dt, grid=grid, seed=3)
        assert ens.absorbed.all()
        t = ens.absorption_time
        means.append(t.mean())
        errs.append(t.std() / np.sqrt(t.size))
    # linear in sqrt(dt): sqrt(2e-3) = 2 sqrt(5e-4)  ->  tau(0) = 2 tau(5e-4) - tau(2e-3)
    tau_particles = 2 * means[1] - means[0]
    err = np.hypot(2 * errs[1], errs[0])
    assert abs(tau_particles - tau_solver) < 4 * err  # solver's own h-error ~1e-3 at 120^2


def test_escape_time_exponential_in_inverse_sharpness_for_sgd_noise_polynomial_for_isotropic():
    """Measured (barrier 1, delta 0.05, k = 2 .. 32): tau_sgd 5.1e4 -> 0.20 (ln tau vs 1/k slope 25.7, Xie's
    asymptotic barrier/delta = 20); tau_isotropic 30.8 -> 1.93, exactly ∝ 1/k (slope of ln-ln -1.000)."""
    rows = fp.flatness.escape_time_vs_sharpness([2, 4, 8, 16, 32], barrier=1.0, delta=0.05)
    k = np.array([r["k"] for r in rows])
    t_sgd = np.array([r["tau_sgd"] for r in rows])
    t_iso = np.array([r["tau_isotropic"] for r in rows])
    assert -1.01 < np.polyfit(np.log(k), np.log(t_iso), 1)[0] < -0.99
    assert 18 < np.polyfit(1 / k, np.log(t_sgd), 1)[0] < 30
    assert t_sgd[0] / t_sgd[-1] > 1e4 and t_iso[0] / t_iso[-1] < 20
    kr = np.array([r["kramers_sgd"] for r in rows])
    assert np.all(np.abs(t_sgd[:3] / kr[:3] - 1) < 0.2)  # low-noise rows: Kramers within 4-14 %


def test_mfpt_2d_full_tensor_converges_at_second_order():
    """Absorbing box with a full constant tensor: the Selling stencil has diagonal jumps, which leave through
    the walls; measured 4.15499, 4.15036, 4.14904 at 40^2, 80^2, 160^2 (order 1.81)."""
    A = np.array([[2.0, 0.5], [0.5, 1.0]])
    D = np.array([[0.3, 0.1], [0.1, 0.2]])
    prob = lambda n: fp.Problem(fp.Grid([(-1, 1, n), (-1, 1, n)], bc="absorbing"), Quadratic(A), fp.noise.Constant(D))
    x0 = np.array([[0.3, 0.2]])
    tau = np.array([float(mean_first_passage_time(prob(n)).at(x0)[0]) for n in (40, 80, 160)])
    order = np.log2(abs(tau[1] - tau[0]) / abs(tau[2] - tau[1]))
    assert order > 1.6, (tau, order)
    assert abs(tau[2] - 4.14858) < 1e-3  # Richardson limit of 160^2 / 320^2


def _chain_mfpt(A, m):
    """Exact mean times to reach cells >= m of a 1D nearest-neighbour chain (``A[j, i]`` the rate ``i -> j``),
    reflecting at 0, by the birth-death sums T_i = sum_{k=i}^{m-1} sum_{j<=k} w_j / (w_k up_k), every term
    positive (w the chain's stationary weights on 0..m-1, kept as logarithms)."""
    up = np.array([A[k + 1, k] for k in range(m)])
    down = np.array([A[k, k + 1] for k in range(m - 1)])
    logw = np.concatenate([[0.0], np.cumsum(np.log(up[:-1]) - np.log(down))])
    per_k = np.array([np.sum(np.exp(logw[: k + 1] - logw[k])) / up[k] for k in range(m)])
    return np.cumsum(per_k[::-1])[::-1]


def test_mfpt_of_deep_wells_keeps_its_digits(monkeypatch):
    """A tilted 1D double well, target x > 0.9. Its matrix has condition number max T times the largest rate:
    at T = 0.03 and 0.02 (times of 1e16 and 9e23) the LU's times were 99% off and 0.17 respectively. The
    subtraction-free elimination takes over past CONDITION_LIMIT (or on a large residual or negative times):
    every time to 2.5e-13 relative of the exact birth-death sums (measured 1.5e-13 to 2.5e-13); at T = 0.1 the
    LU is kept (condition 4e8, 1e-9). Without the elimination, a warning."""

    def problem(temperature):
        loss = Custom(
            lambda t: (t[..., 0] ** 2 - 1) ** 2 + 0.1 * t[..., 0],
            lambda t: (4 * t[..., 0] * (t[..., 0] ** 2 - 1) + 0.1)[..., None],
            dim=1,
        )
        return fp.Problem(fp.Grid([(-2.0, 2.0, 400)]), loss, Isotropic(temperature))

    target = lambda th: th[..., 0] > 0.9
    for temperature, uses_gth, tolerance in (
        (0.1, False, 1e-8),
        (0.05, True, 1e-12),
        (0.03, True, 1e-12),
        (0.02, True, 1e-12),
    ):
        prob = problem(temperature)
        m = int(np.argmax(prob.grid.centers[0] > 0.9))
        exact = _chain_mfpt(fp.generator(prob).A.toarray(), m)
        got = mean_first_passage_time(prob, target)
        assert got.info["gth"] == uses_gth
        assert np.max(np.abs(got.values[:m] - exact) / exact) < tolerance
        assert np.all(got.values[m:] == 0)
    monkeypatch.setattr(fp.linalg, "GTH_WORK_LIMIT", 0)
    with pytest.warns(RuntimeWarning, match="may have lost its digits"):
        mean_first_passage_time(problem(0.03), target)


def test_mfpt_by_elimination_agrees_with_the_lu_in_2d(monkeypatch):
    """2D double well with a full D, a target region and an absorbing wall (whose exits the elimination takes
    from the jumps themselves), where the LU is still accurate (condition 2e4): the elimination, forced by a
    zero CONDITION_LIMIT, gives the same times to 1e-11 of the largest (measured 1.1e-13)."""
    D = np.array([[0.3, 0.1], [0.1, 0.2]])
    loss = Custom(
        lambda t: (t[..., 0] ** 2 - 1) ** 2 + 0.5 * t[..., 1] ** 2,
        lambda t: np.stack([4 * t[..., 0] * (t[..., 0] ** 2 - 1), t[..., 1]], axis=-1),
    )
    grid = fp.Grid([(-2, 2, 60), (-1.5, 1.5, 30)], bc=[("reflecting", "reflecting"), ("absorbing", "reflecting")])
    prob = fp.Problem(grid, loss, fp.noise.Constant(D))
    target = lambda th: th[..., 0] > 0.8
    lu = mean_first_passage_time(prob, target)
    assert not lu.info["gth"]
    monkeypatch.setattr(fp.passage, "CONDITION_LIMIT", 0.0)
    gth = mean_first_passage_time(prob, target)
    assert gth.info["gth"]
    assert np.max(np.abs(gth.values - lu.values)) < 1e-11 * lu.values.max()


def test_escape_rate_of_deep_wells_equals_the_inverse_mfpt():
    """The same tilted well: the escape rate by inverse iteration with the subtraction-free factor equals
    1 / MFPT from the well's bottom up to the exponentially small corrections of metastability (measured ratio
    1.000019 at T = 0.1, 1 to 1e-9 at T = 0.05, 0.03, 0.02); an eigensolver gave 3.4e-13 and 8.4e-15 at T = 0.03
    on 300 and 600 cells, where the rate is 1.0e-16."""
    loss = Custom(
        lambda t: (t[..., 0] ** 2 - 1) ** 2 + 0.1 * t[..., 0],
        lambda t: (4 * t[..., 0] * (t[..., 0] ** 2 - 1) + 0.1)[..., None],
        dim=1,
    )
    target = lambda th: th[..., 0] > 0.9
    for temperature, tolerance in ((0.1, 1e-4), (0.05, 1e-9), (0.03, 1e-9), (0.02, 1e-9)):
        prob = fp.Problem(fp.Grid([(-2.0, 2.0, 300)]), loss, Isotropic(temperature))
        rate = escape_rate(prob, target)
        tau = mean_first_passage_time(prob, target).at(np.array([[-1.0]]))[0]
        assert abs(rate * tau - 1) < tolerance
    assert 0.9e-16 < escape_rate(fp.Problem(fp.Grid([(-2.0, 2.0, 600)]), loss, Isotropic(0.03)), target) < 1.1e-16


def test_escape_rate_warns_where_the_eigensolver_cannot_resolve_it(monkeypatch):
    """Without the elimination (band over the limit), a rate below 1e-10 of the largest comes with a warning."""
    loss = Custom(
        lambda t: (t[..., 0] ** 2 - 1) ** 2 + 0.1 * t[..., 0],
        lambda t: (4 * t[..., 0] * (t[..., 0] ** 2 - 1) + 0.1)[..., None],
        dim=1,
    )
    monkeypatch.setattr(fp.linalg, "GTH_WORK_LIMIT", 0)
    prob = fp.Problem(fp.Grid([(-2.0, 2.0, 300)]), loss, Isotropic(0.03))
    with pytest.warns(RuntimeWarning, match="below 1e-10 of the largest rate"):
        escape_rate(prob, lambda th: th[..., 0] > 0.9)


def test_target_covering_every_cell_is_one_clear_error():
    grid = fp.Grid([(-1, 1, 10), (-1, 1, 8)])
    prob = fp.Problem(grid, fp.landscapes.Quadratic(np.eye(2)), fp.noise.Isotropic(0.2))
    with pytest.raises(ValueError, match="covers every cell"):
        fp.mean_first_passage_time(prob, target=lambda t: np.ones(t.shape[:-1], bool))
