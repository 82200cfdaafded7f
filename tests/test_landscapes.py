"""Landscapes: exact gradients and Hessians against central differences, shapes, errors."""

import numpy as np
import pytest

from fokkerplanck.landscapes import Custom, DegenerateValley, HighDimValley, MultiValley, Quadratic


def fd_grad(land, pts, h=1e-6):
    g = np.empty_like(pts)
    for j in range(pts.shape[-1]):
        e = np.zeros(pts.shape[-1])
        e[j] = h
        g[..., j] = (land.loss(pts + e) - land.loss(pts - e)) / (2 * h)
    return g


def fd_hess(land, pts, h=1e-6):
    d = pts.shape[-1]
    H = np.empty(pts.shape + (d,))
    for j in range(d):
        e = np.zeros(d)
        e[j] = h
        H[..., :, j] = (land.grad(pts + e) - land.grad(pts - e)) / (2 * h)
    return H


def _custom():
    # L = x^4/4 + x y^2 + cos(y)   (no Hessian given: finite differences)
    loss = lambda t: t[..., 0] ** 4 / 4 + t[..., 0] * t[..., 1] ** 2 + np.cos(t[..., 1])
    grad = lambda t: np.stack([t[..., 0] ** 3 + t[..., 1] ** 2, 2 * t[..., 0] * t[..., 1] - np.sin(t[..., 1])], -1)
    return Custom(loss, grad, dim=2)


LANDSCAPES = {
    "quadratic2": lambda: Quadratic([[2.0, 0.5], [0.5, 1.0]], center=[0.1, -0.2]),
    "quadratic3": lambda: Quadratic(np.diag([1.0, 2.0, 3.0]) + 0.3, center=[0.0, 1.0, -1.0]),
    "degenerate": lambda: DegenerateValley((8.0, -2.0, 1.0), eps=1e-3),
    "highdim_1_1": lambda: HighDimValley(1, 1, (8.0, -2.0, 1.0), eps=1e-2),
    "highdim_2_3": lambda: HighDimValley(2, 3, [[8.0, -2.0, 1.0], [4.0, 1.0, 0.5], [1.0, 0.0, 2.0]], eps=0.1),
    "highdim_3_1": lambda: HighDimValley(3, 1, (2.0, 1.0, -0.3, 0.1), eps=0.05, lambda_bar0=3.0),
    "multivalley": lambda: MultiValley(
        [[-1.0, 0.0], [1.0, 0.5]], [[4.0, 1.0], [1.0, 2.0]], depths=[0.0, 0.1], beta=3.0
    ),
    "multivalley3d": lambda: MultiValley(
        [[0, 0, 0], [1, 1, 0], [0, -1, 1]], [np.eye(3) * 2, [[1, 0.2, 0], [0.2, 2, 0], [0, 0, 1]], np.eye(3)], beta=5.0
    ),
    "custom": _custom,
}


@pytest.mark.parametrize("name", sorted(LANDSCAPES))
def test_gradient_and_hessian_match_finite_differences(name):
    land = LANDSCAPES[name]()
    d = land.dim
    rng = np.random.default_rng(1)
    pts = rng.uniform(-1.2, 1.2, size=(7, d))
    g = land.grad(pts)
    np.testing.assert_allclose(g, fd_grad(land, pts), rtol=1e-6, atol=1e-6)
    H = land.hessian(pts)
    np.testing.assert_allclose(H, fd_hess(land, pts), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(H, np.swapaxes(H, -1, -2), atol=1e-10)


@pytest.mark.parametrize("name", sorted(LANDSCAPES))
def test_shapes_for_batched_points(name):
    land = LANDSCAPES[name]()
    d = land.dim
    pts = np.random.default_rng(2).normal(size=(4, 3, d)) * 0.5
    assert land.loss(pts).shape == (4, 3)
    assert land.grad(pts).shape == (4, 3, d)
    assert land.hessian(pts).shape == (4, 3, d, d)
    # a single point
    assert land.loss(pts[0, 0]).shape == ()
    assert land.grad(pts[0, 0]).shape == (d,)
    assert land.hessian(pts[0, 0]).shape == (d, d)
    # batched == pointwise
    np.testing.assert_allclose(land.grad(pts)[2, 1], land.grad(pts[2, 1]), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(land.drift(pts), -land.grad(pts))


@pytest.mark.parametrize("name", [n for n in sorted(LANDSCAPES) if n != "custom"])
def test_wrong_dimension_raises(name):
    land = LANDSCAPES[name]()
    bad = np.zeros((3, land.dim + 1))
    for f in (land.loss, land.grad, land.hessian):
        with pytest.raises(ValueError, match="dimensional|last axis"):
            f(bad)


def test_highdim_reduces_to_degenerate_valley():
    dv = DegenerateValley((8.0, -2.0, 1.0), eps=1e-3)
    hd = HighDimValley(1, 1, (8.0, -2.0, 1.0), eps=1e-3)
    pts = np.random.default_rng(3).uniform(-1.5, 1.5, size=(50, 2))
    np.testing.assert_allclose(hd.loss(pts), dv.loss(pts), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(hd.grad(pts), dv.grad(pts), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(hd.hessian(pts), dv.hessian(pts), rtol=1e-13, atol=1e-13)
    x = np.linspace(-1.5, 1.5, 11)
    np.testing.assert_allclose(hd.lam(x)[..., 0], dv.lam(x))
    np.testing.assert_allclose(hd.flatness(x), dv.flatness(x))
    assert hd.lambda_bar0 == dv.lambda_bar0 == 8.0
    assert hd.kind == "high-dim-valley" and hd.dim == 2


def test_highdim_attributes_flatness_and_noise_weighted_flatness():
    lam = [[8.0, -2.0, 1.0], [2.0, 0.0, 0.0]]
    hd = HighDimValley(2, 2, lam, eps=0.0)
    assert hd.lambdas.shape == (2, 3) and hd.dim == 4 and hd.n_flat == 2 and hd.n_sharp == 2
    assert hd.lambda_bar0 == pytest.approx(5.0)
    x = np.array([[0.0, 0.0], [0.6, 0.8]])  # |x|^2 = 0 and 1
    np.testing.assert_allclose(hd.lam(x), [[8.0, 2.0], [7.0, 2.0]])
    # Eq. (6): F = prod lambda_i^(-1/(2 N_S))
    np.testing.assert_allclose(hd.flatness(x), [(8 * 2) ** -0.25, (7 * 2) ** -0.25])
    # Eq. (16): gamma_i = lambda_i(0)^2 / sum -> (64, 4)/68
    g = np.array([64.0, 4.0]) / 68.0
    expect = 7.0 ** (-g[0] / 2) * 2.0 ** (-g[1] / 2)
    assert hd.noise_weighted_flatness(x[1], delta_s=1e-3) == pytest.approx(expect, rel=1e-12)
    # the 1D lambdas broadcast to every sharp variable
    hb = HighDimValley(3, 4, (1.0, 2.0))
    assert hb.lambdas.shape == (4, 2)
    with pytest.raises(ValueError):
        HighDimValley(2, 3, np.ones((2, 3)))
    with pytest.raises(ValueError):
        HighDimValley(0, 1, (1.0,))


def test_multivalley_structure_and_barrier():
    mv = MultiValley([[-1.0], [1.0]], [8.0, 1.0], beta=50.0)
    assert mv.curvatures.shape == (2, 1, 1) and mv.kind == "multi-valley"
    # minima at the centres (up to the exponentially small pull), zero loss there
    np.testing.assert_allclose(mv.minimum(0), [-1.0], atol=1e-6)
    np.testing.assert_allclose(mv.minimum(1), [1.0], atol=1e-6)
    b = mv.barrier(0, 1)
    # hard-min crossing of 4 (x+1)^2 = (x-1)^2 / 2 is at x = (1 - 2 sqrt 2)/(1 + 2 sqrt 2)
    xc = (1 - 2 * np.sqrt(2)) / (1 + 2 * np.sqrt(2))
    assert b["saddle"][0] == pytest.approx(xc, abs=0.02)
    assert b["hessian_eigenvalues"][0] < 0
    assert b["heights"][0] == pytest.approx(4 * (xc + 1) ** 2, rel=0.05)
    np.testing.assert_allclose(mv.grad(b["saddle"]), 0.0, atol=1e-9)
    # weights sum to one and pick the nearest well
    w = mv.weights(np.array([[-1.0], [1.0]]))
    np.testing.assert_allclose(w.sum(-1), 1.0)
    assert w[0, 0] > 0.99 and w[1, 1] > 0.99
    # the Hessian in the bottom of a well is its curvature
    np.testing.assert_allclose(mv.hessian(np.array([-1.0]))[0, 0], 8.0, rtol=1e-6)
    with pytest.raises(ValueError):
        MultiValley([[0.0, 0.0]], [[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError):
        MultiValley([[0.0]], [1.0], beta=-1)
    # large beta: no overflow far from the wells
    big = MultiValley([[-1.0], [1.0]], [8.0, 1.0], beta=1e4)
    assert np.all(np.isfinite(big.loss(np.array([[50.0], [-50.0]]))))


def test_custom_checks_shapes_and_callables():
    with pytest.raises(TypeError):
        Custom(1.0, lambda t: t)
    c = Custom(lambda t: np.zeros(3), lambda t: t, dim=2)
    with pytest.raises(ValueError, match="loss returned shape"):
        c.loss(np.zeros((2, 2)))


def test_quadratic_validation():
    with pytest.raises(ValueError):
        Quadratic(np.ones((2, 3)))
    with pytest.raises(ValueError):
        Quadratic([[np.nan, 0], [0, 1]])


def test_valley_lambda_and_its_derivatives_are_the_polynomial():
    """``lambda(x) = sum_n lambda_n x^(2n)`` and its derivatives, computed by repeated products, against the
    powers written out (negative x included), to 4e-16 of the largest value."""
    land = DegenerateValley(lambdas=(8.0, -2.0, 1.0, 0.3))
    x = np.linspace(-2.0, 2.0, 401)
    c = land.lambdas
    exact = [
        sum(cn * x ** (2 * n) for n, cn in enumerate(c)),
        sum(cn * 2 * n * x ** (2 * n - 1) for n, cn in enumerate(c) if n),
        sum(cn * 2 * n * (2 * n - 1) * x ** (2 * n - 2) for n, cn in enumerate(c) if n),
    ]
    for k, ref in enumerate(exact):
        np.testing.assert_allclose(land.lam(x, k), ref, rtol=0, atol=1e-15 * np.abs(ref).max())
    flat = DegenerateValley(lambdas=(3.0,))
    assert np.all(flat.lam(x) == 3.0) and np.all(flat.lam(x, 1) == 0) and np.all(flat.lam(x, 2) == 0)
    with pytest.raises(ValueError, match="derivative"):
        land.lam(x, 3)
