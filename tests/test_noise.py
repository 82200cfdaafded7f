"""Noise models: tensor shapes, PSD-ness, clipping, clear errors."""

import numpy as np
import pytest

from fokkerplanck.landscapes import DegenerateValley, MultiValley, Quadratic
from fokkerplanck.noise import Constant, Field, HessianAligned, HessianLinear, Isotropic, psd_violation

PTS = np.random.default_rng(0).uniform(-1.5, 1.5, size=(5, 4, 2))
LAND = DegenerateValley((8.0, -2.0, 1.0), eps=1e-3)


@pytest.mark.parametrize(
    "noise",
    [
        Constant(np.diag([0.1, 0.3])),
        Constant([[1.0, 0.5], [0.5, 1.0]]),
        Isotropic(0.2),
        HessianAligned(1e-3),
        HessianLinear(0.05),
        Field(lambda t: np.broadcast_to(np.diag([1.0, 2.0]), t.shape + (2,)).copy()),
    ],
)
def test_shapes_symmetry_and_psd(noise):
    D = noise.tensor(PTS, LAND)
    assert D.shape == PTS.shape + (2,)
    np.testing.assert_allclose(D, np.swapaxes(D, -1, -2), atol=1e-12)
    assert not psd_violation(D).any()
    g = noise.amplitude(PTS, LAND)
    np.testing.assert_allclose(g @ np.swapaxes(g, -1, -2), 2 * D, rtol=1e-8, atol=1e-10)


def test_constant_values_and_diagonal_shortcut():
    n = Constant([0.01 / 3, 0.01])
    np.testing.assert_allclose(n.tensor(np.zeros(2)), np.diag([0.01 / 3, 0.01]))
    with pytest.raises(ValueError, match="dimensional"):
        n.tensor(np.zeros((3, 3)))


def test_hessian_aligned_is_delta_s_h_squared():
    q = Quadratic([[2.0, 0.5], [0.5, 1.0]])
    n = HessianAligned(0.01)
    np.testing.assert_allclose(n.tensor(np.zeros(2), q), 0.01 * q.A @ q.A)
    H = LAND.hessian(PTS)
    np.testing.assert_allclose(n.tensor(PTS, LAND), 0.01 * H @ H)
    # the random-shift amplitude sqrt(2 Delta_S) H
    np.testing.assert_allclose(n.amplitude(PTS, LAND), np.sqrt(0.02) * H)


def test_hessian_linear_clips_negative_curvature():
    saddle = Quadratic([[2.0, 0.0], [0.0, -3.0]])
    D = HessianLinear(0.1).tensor(np.zeros((3, 2)), saddle)
    np.testing.assert_allclose(D, np.broadcast_to(np.diag([0.2, 0.0]), (3, 2, 2)), atol=1e-14)
    # rotated saddle: eigenvalues clipped in the eigenbasis
    R = np.array([[np.cos(0.4), -np.sin(0.4)], [np.sin(0.4), np.cos(0.4)]])
    A = R @ np.diag([1.0, -2.0]) @ R.T
    D = HessianLinear(1.0).tensor(np.zeros(2), Quadratic(A))
    np.testing.assert_allclose(D, R @ np.diag([1.0, 0.0]) @ R.T, atol=1e-12)
    # on a positive-definite quadratic it is Delta A
    A = np.array([[2.0, 0.3], [0.3, 1.0]])
    np.testing.assert_allclose(HessianLinear(0.5).tensor(np.ones(2), Quadratic(A)), 0.5 * A, atol=1e-12)
    # multi-valley barrier region has negative curvature: still PSD
    mv = MultiValley([[-1.0, 0.0], [1.0, 0.0]], [4.0, 1.0], beta=5.0)
    assert not psd_violation(HessianLinear(1.0).tensor(PTS, mv)).any()


def test_errors_are_clear():
    with pytest.raises(ValueError, match="T must be"):
        Isotropic(-1.0)
    with pytest.raises(ValueError, match="delta_s"):
        HessianAligned(-1e-3)
    with pytest.raises(ValueError, match="delta"):
        HessianLinear(float("nan"))
    with pytest.raises(ValueError, match="positive semi-definite"):
        Constant([[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(ValueError, match="square"):
        Constant(np.ones((2, 3)))
    with pytest.raises(ValueError, match="needs a landscape"):
        HessianAligned(1e-3).tensor(np.zeros(2))
    with pytest.raises(ValueError, match="needs a landscape"):
        HessianLinear(1e-3).tensor(np.zeros(2))
    with pytest.raises(ValueError):
        Field()
    with pytest.raises(ValueError, match="shape"):
        Field(lambda t: np.zeros(3)).tensor(np.zeros((4, 2)))


def test_field_from_amplitude_gives_half_g_gT():
    def g(t):
        x, y = t[..., 0], t[..., 1]
        out = np.zeros(t.shape + (3,))
        out[..., 0, 0] = 1.0 + x**2
        out[..., 0, 2] = y
        out[..., 1, 1] = 0.5
        out[..., 1, 2] = x * y
        return out

    f = Field(amplitude=g)
    G = g(PTS)
    np.testing.assert_allclose(f.tensor(PTS), 0.5 * G @ np.swapaxes(G, -1, -2))
    np.testing.assert_allclose(f.amplitude(PTS), G)
    with pytest.raises(ValueError, match="amplitude returned shape"):
        Field(amplitude=lambda t: np.zeros(3)).amplitude(PTS)
