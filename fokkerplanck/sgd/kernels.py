"""Numba kernels of the SGD models in :mod:`fokkerplanck.sgd`: the label-noise model's exact minibatch SGD and
its SDE (used by :func:`fokkerplanck.sgd.label_noise.simulate`).

State ``theta = (w, u_1, ..., u_m)`` of the model ``f(x) = u w x``; ``delta = u w - v``.

* ``sgd_kernel``: minibatch SGD on the per-sample losses ``1/2 |u w x - y|^2``, ``y = v x + eps``. The
  minibatch-mean gradient depends on the batch only through ``m2 = mean(x_b^2)`` and ``c = mean(eps_b x_b)``:
  ``g = J^T (delta m2 - c)``, ``J = [u | w I]``. We draw them exactly: ``B m2 ~ chi^2_B`` and, given the
  ``x_b``, ``c ~ N(0, Sigma_eps m2 / B)`` -- the same law as drawing the B samples, at O(m) random numbers a
  step instead of O(B m).
* ``sde_kernel``: Euler-Maruyama of ``d theta = -J^T delta dt + sqrt(eta/B) J^T G dW`` with ``G G^T = S'
  = 2 delta delta^T + Sigma_eps`` realised as ``G xi = sqrt(2) delta xi_0 + L xi_{1..m}`` (``L L^T =
  Sigma_eps``), i.e. ``2 D = (eta/B) J^T S' J``.

Random numbers come from a ``numpy.random.Generator`` passed in (numba draws from its bit generator), so a
run is a pure function of the seed. Particles are processed one after another (particle-outer loop); a
particle whose state stops being finite or exceeds ``limit`` is frozen and flagged.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True)
def _snapshot(w, u, limit, snaps, k, p):
    """Store ``theta = (w, u)`` as snapshot ``k`` of particle ``p``; False (nothing stored) when a coordinate is
    beyond ``limit`` in size or NaN: the particle diverged."""
    big = abs(w)
    for i in range(u.shape[0]):
        big = max(big, abs(u[i]))
    if not (big < limit):  # also catches NaN
        return False
    snaps[k, p, 0] = w
    for i in range(u.shape[0]):
        snaps[k, p, 1 + i] = u[i]
    return True


@njit(cache=True)
def sgd_kernel(theta, v, L, eta, batch, n_steps, save_every, limit, rng):
    """Advance ``theta (N, 1+m)`` in place by ``n_steps`` SGD steps; return the snapshots
    ``(n_steps // save_every + 1, N, 1+m)`` (the first is the initial state) and the diverged flags."""
    N, d = theta.shape
    m = d - 1
    n_save = n_steps // save_every + 1
    snaps = np.full((n_save, N, d), np.nan)
    diverged = np.zeros(N, dtype=np.bool_)
    z = np.empty(m)
    r = np.empty(m)
    half_b = 0.5 * batch
    for p in range(N):
        w = theta[p, 0]
        u = theta[p, 1:].copy()
        for j in range(d):
            snaps[0, p, j] = theta[p, j]
        k = 1
        for s in range(1, n_steps + 1):
            m2 = 2.0 * rng.standard_gamma(half_b) / batch  # mean of x_b^2: chi^2_B / B
            sc = math.sqrt(m2 / batch)
            for i in range(m):
                z[i] = rng.standard_normal()
            gw = 0.0
            for i in range(m):
                ci = 0.0
                for j in range(i + 1):
                    ci += L[i, j] * z[j]
                r[i] = (u[i] * w - v[i]) * m2 - sc * ci  # mean of e_b x_b, e_b = delta x_b - eps_b
                gw += u[i] * r[i]
            for i in range(m):
                u[i] -= eta * w * r[i]
            w -= eta * gw
            if s % save_every == 0:
                if not _snapshot(w, u, limit, snaps, k, p):
                    diverged[p] = True
                    break
                k += 1
        theta[p, 0] = w
        for i in range(m):
            theta[p, 1 + i] = u[i]
    return snaps, diverged


@njit(cache=True)
def sde_kernel(theta, v, L, temp, dt, n_steps, save_every, limit, rng):
    """Euler-Maruyama of the label-noise SDE with ``temp = eta / B``; same returns as :func:`sgd_kernel`."""
    N, d = theta.shape
    m = d - 1
    n_save = n_steps // save_every + 1
    snaps = np.full((n_save, N, d), np.nan)
    diverged = np.zeros(N, dtype=np.bool_)
    z = np.empty(m)
    dl = np.empty(m)
    n = np.empty(m)
    amp = math.sqrt(temp * dt)
    sq2 = math.sqrt(2.0)
    for p in range(N):
        w = theta[p, 0]
        u = theta[p, 1:].copy()
        for j in range(d):
            snaps[0, p, j] = theta[p, j]
        k = 1
        for s in range(1, n_steps + 1):
            z0 = rng.standard_normal()
            for i in range(m):
                z[i] = rng.standard_normal()
            for i in range(m):
                dl[i] = u[i] * w - v[i]
            for i in range(m):
                ci = 0.0
                for j in range(i + 1):
                    ci += L[i, j] * z[j]
                n[i] = sq2 * dl[i] * z0 + ci  # G xi, G G^T = 2 delta delta^T + Sigma
            gw = 0.0
            nw = 0.0
            for i in range(m):
                gw += u[i] * dl[i]
                nw += u[i] * n[i]
            for i in range(m):
                u[i] += -dt * w * dl[i] + amp * w * n[i]
            w += -dt * gw + amp * nw
            if s % save_every == 0:
                if not _snapshot(w, u, limit, snaps, k, p):
                    diverged[p] = True
                    break
                k += 1
        theta[p, 0] = w
        for i in range(m):
            theta[p, 1 + i] = u[i]
    return snaps, diverged
