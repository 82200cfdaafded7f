"""Numba kernels of the model layer: the eigenvalues of small symmetric tensors and the PSD check of a tensor
field ``D(theta)`` (used when a :class:`~fokkerplanck.model.problem.Problem` is built, and by the discretisation)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def sym_eig(A, w, V):
    """Eigenvalues ``w`` and orthonormal eigenvectors ``V`` (columns) of a small symmetric matrix ``A``
    (overwritten), ``A = V diag(w) V^T``, by cyclic Jacobi rotations (Golub & Van Loan, Matrix
    Computations, sec. 8.5): each rotation in the plane ``(p, q)`` zeroes ``A_pq``, with ``t = tan(phi)`` the
    smaller root of ``t^2 + 2 theta t - 1 = 0``, ``theta = (A_qq - A_pp) / (2 A_pq)``; in 2D a single
    rotation, the closed form. An off-diagonal entry is set to zero once it no longer changes either
    diagonal entry it couples (``|A_pp| + 100 |A_pq| == |A_pp|``), a criterion stricter than that of
    Demmel & Veselic (SIAM J. Matrix Anal. Appl. 13, 1992) under which small eigenvalues of graded matrices
    keep their relative accuracy. Quadratic convergence: a few sweeps for ``d <= 3``."""
    d = A.shape[0]
    for i in range(d):
        for j in range(d):
            V[i, j] = 1.0 if i == j else 0.0
    for _sweep in range(100):
        rotated = False
        for p in range(d - 1):
            for q in range(p + 1, d):
                apq = A[p, q]
                if apq == 0.0:
                    continue
                app = A[p, p]
                aqq = A[q, q]
                g = 100.0 * abs(apq)
                if abs(app) + g == abs(app) and abs(aqq) + g == abs(aqq):
                    A[p, q] = 0.0
                    A[q, p] = 0.0
                    continue
                theta = 0.5 * (aqq - app) / apq
                if abs(theta) > 1e150:
                    t = 0.5 / theta
                else:
                    t = 1.0 / (abs(theta) + np.sqrt(theta * theta + 1.0))
                    if theta < 0.0:
                        t = -t
                c = 1.0 / np.sqrt(t * t + 1.0)
                s = t * c
                tau = s / (1.0 + c)
                A[p, p] = app - t * apq
                A[q, q] = aqq + t * apq
                A[p, q] = 0.0
                A[q, p] = 0.0
                for r in range(d):
                    if r != p and r != q:
                        arp = A[r, p]
                        arq = A[r, q]
                        A[r, p] = arp - s * (arq + tau * arp)
                        A[p, r] = A[r, p]
                        A[r, q] = arq + s * (arp - tau * arq)
                        A[q, r] = A[r, q]
                for r in range(d):
                    vrp = V[r, p]
                    vrq = V[r, q]
                    V[r, p] = vrp - s * (vrq + tau * vrp)
                    V[r, q] = vrq + s * (vrp - tau * vrq)
                rotated = True
        if not rotated:
            break
    for i in range(d):
        w[i] = A[i, i]


@njit(cache=True)
def psd_violation_field(D, rtol):
    """True where a tensor of the field ``D (n, d, d)``, ``d <= 3``, is not symmetric positive semi-definite
    within relative tolerance ``rtol``: not finite, or ``max|D - D^T| > 1e-8 s``, or the smallest
    eigenvalue of ``(D + D^T)/2`` below ``-rtol s``, with the scale ``s = max|D_ij|`` (non-finite tensors
    count as zero for the other two tests). The eigenvalues: closed form in 2D,
    ``(a + c)/2 -+ sqrt(((a - c)/2)^2 + b^2)``, Jacobi's method (:func:`sym_eig`) in 3D; both accurate to
    round-off of ``s``, far below the tolerance."""
    n = D.shape[0]
    d = D.shape[1]
    bad = np.zeros(n, dtype=np.bool_)
    A = np.empty((d, d))
    V = np.empty((d, d))
    w = np.empty(d)
    for c in range(n):
        finite = True
        for i in range(d):
            for j in range(d):
                if not np.isfinite(D[c, i, j]):
                    finite = False
        if not finite:
            bad[c] = True
            continue
        scale = 0.0
        asym = 0.0
        for i in range(d):
            for j in range(d):
                scale = max(scale, abs(D[c, i, j]))
                asym = max(asym, abs(D[c, i, j] - D[c, j, i]))
                A[i, j] = 0.5 * (D[c, i, j] + D[c, j, i])
        scale = max(scale, 2.2250738585072014e-308)  # the smallest normal number
        if asym > 1e-8 * scale:
            bad[c] = True
            continue
        if d == 1:
            lam = A[0, 0]
        elif d == 2:
            lam = 0.5 * (A[0, 0] + A[1, 1]) - np.hypot(0.5 * (A[0, 0] - A[1, 1]), A[0, 1])
        else:
            sym_eig(A, w, V)
            lam = min(w[0], min(w[1], w[2]))
        bad[c] = lam < -rtol * scale
    return bad
