"""Numba kernels of the finite-volume scheme (the only module of the solver that uses numba).

Three pieces:

1. **Selling's decomposition** of a symmetric positive semi-definite tensor ``M`` (2x2 or 3x3) on lattice
   directions with non-negative weights,

       M = sum_k rho_k e_k e_k^T,        rho_k >= 0,   e_k in Z^d,

   from an *obtuse superbase* ``(b_0, .., b_d)`` (a basis of Z^d completed by ``b_d = -sum b_i``, with
   ``<b_i, M b_j> <= 0`` for ``i != j``). Selling's formula then gives ``rho = -<b_i, M b_j>`` on the
   offsets ``e = b_k^perp`` (2D) or ``e = b_k x b_l`` (3D), where ``{k, l}`` complements ``{i, j}``
   (Fehrenbach & Mirebeau, J. Math. Imaging Vis. 49, 2014; Conway & Sloane, 1992). The superbase is
   found by Selling's reduction: while some ``<b_i, M b_j> > 0``, replace ``b_i -> -b_i`` and
   ``b_k -> b_k + 2 b_i`` (2D) or ``b_k -> b_k + b_i`` for both other indices (3D).

2. **The drift split**: the tensor the stencil represents, ``D_r = sum_k rho_k e_k e_k^T``, its
   pseudo-inverse (closed form in 2D, Jacobi's method in 3D) and ``g = D_r^+ v~``, the drift carried by the
   stencil directions; what lies outside the range of ``D_r`` goes to the axes.

3. **Assembly of the generator** ``A`` of ``dP/dt = A P`` as a list of jumps ``src -> dst`` with
   non-negative rates: every transfer of probability leaves one cell and enters another (or leaves the
   domain through an absorbing wall), so the columns of ``A`` sum to zero (mass conservation) and its
   off-diagonal entries are non-negative (a Metzler matrix: positivity of ``exp(tA)``). The jumps are
   gathered into ``A`` in CSR form directly (:func:`jumps_to_csr`), or made again a block of cells at a time
   for products and currents without ``A`` (:func:`walk_jumps`).

A constant tensor is decomposed once: the kernels accept ``offsets``, ``weights`` (and ``D_r``, ``D_r^+``)
with a leading dimension of 1, shared by every cell. Helpers called in the cell loops take no early
``return`` and use their array arguments unconditionally, which keeps numba from reference-counting the
arrays on every call (measured: that alone doubled the time of :func:`assemble_jumps`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..model.kernels import sym_eig as _sym_eig

_MAX_SELLING_ITERATIONS = 500


@njit(cache=True)
def _dot2(a0, a1, M, b0, b1):
    return a0 * (M[0, 0] * b0 + M[0, 1] * b1) + a1 * (M[1, 0] * b0 + M[1, 1] * b1)


@njit(cache=True)
def selling_2d(M, offsets, weights):
    """Selling decomposition of a 2x2 symmetric PSD ``M`` into 3 offsets (written to ``offsets[3, 2]``,
    ``weights[3]``). Returns the number of reduction steps (``-1`` if the cap was reached)."""
    return _selling_2d(M, np.empty((3, 2), dtype=np.int64), offsets, weights)


@njit(cache=True)
def _selling_2d(M, b, offsets, weights):
    """:func:`selling_2d` with the superbase ``b`` (3, 2) as scratch (no allocation per tensor)."""
    b[0, 0] = 1
    b[0, 1] = 0
    b[1, 0] = 0
    b[1, 1] = 1
    b[2, 0] = -1
    b[2, 1] = -1
    it = 0
    while it < _MAX_SELLING_ITERATIONS:
        done = True
        for i in range(3):
            for j in range(i + 1, 3):
                if _dot2(b[i, 0], b[i, 1], M, b[j, 0], b[j, 1]) > 0.0:
                    k = 3 - i - j
                    # (b_i, b_j, b_k) -> (-b_i, b_j, b_k + 2 b_i) = (-b_i, b_j, b_i - b_j)
                    b[k, 0] += 2 * b[i, 0]
                    b[k, 1] += 2 * b[i, 1]
                    b[i, 0] = -b[i, 0]
                    b[i, 1] = -b[i, 1]
                    done = False
                    break
            if not done:
                break
        if done:
            break
        it += 1
    for i in range(3):
        for j in range(i + 1, 3):
            k = 3 - i - j
            w = -_dot2(b[i, 0], b[i, 1], M, b[j, 0], b[j, 1])
            weights[k] = w if w > 0.0 else 0.0
            offsets[k, 0] = -b[k, 1]
            offsets[k, 1] = b[k, 0]
    return it if it < _MAX_SELLING_ITERATIONS else -1


@njit(cache=True)
def _dot3(a, M, c):
    s = 0.0
    for p in range(3):
        for q in range(3):
            s += a[p] * M[p, q] * c[q]
    return s


@njit(cache=True)
def selling_3d(M, offsets, weights):
    """Selling decomposition of a 3x3 symmetric PSD ``M`` into 6 offsets (``offsets[6, 3]``, ``weights[6]``)."""
    return _selling_3d(M, np.empty((4, 3), dtype=np.int64), offsets, weights)


@njit(cache=True)
def _selling_3d(M, b, offsets, weights):
    """:func:`selling_3d` with the superbase ``b`` (4, 3) as scratch (no allocation per tensor)."""
    for i in range(4):
        for p in range(3):
            b[i, p] = -1 if i == 3 else (1 if i == p else 0)
    it = 0
    while it < _MAX_SELLING_ITERATIONS:
        done = True
        for i in range(4):
            for j in range(i + 1, 4):
                if _dot3(b[i], M, b[j]) > 0.0:
                    for k in range(4):
                        if k != i and k != j:
                            for p in range(3):
                                b[k, p] += b[i, p]
                    for p in range(3):
                        b[i, p] = -b[i, p]
                    done = False
                    break
            if not done:
                break
        if done:
            break
        it += 1
    n = 0
    for i in range(4):
        for j in range(i + 1, 4):
            # complementary pair (k, l)
            k = -1
            l = -1
            for m in range(4):
                if m != i and m != j:
                    if k < 0:
                        k = m
                    else:
                        l = m
            w = -_dot3(b[i], M, b[j])
            weights[n] = w if w > 0.0 else 0.0
            offsets[n, 0] = b[k, 1] * b[l, 2] - b[k, 2] * b[l, 1]
            offsets[n, 1] = b[k, 2] * b[l, 0] - b[k, 0] * b[l, 2]
            offsets[n, 2] = b[k, 0] * b[l, 1] - b[k, 1] * b[l, 0]
            n += 1
    return it if it < _MAX_SELLING_ITERATIONS else -1


@njit(cache=True)
def _selling_into(M, b, offsets, weights):
    """Selling decomposition of one tensor (``b``: scratch superbase, ``(d + 1, d)``); returns its longest
    offset (sup norm), or a huge number when the reduction hit its cap."""
    d = M.shape[0]
    if d == 1:
        offsets[0, 0] = 1
        weights[0] = M[0, 0] if M[0, 0] > 0.0 else 0.0
        return 1
    it = _selling_2d(M, b, offsets, weights) if d == 2 else _selling_3d(M, b, offsets, weights)
    if it < 0:
        return 1 << 40
    longest = 0
    for k in range(weights.shape[0]):
        if weights[k] > 0.0:
            for p in range(d):
                a = abs(offsets[k, p])
                if a > longest:
                    longest = a
    return longest


@njit(cache=True)
def _beyond_radius(M, radius):
    """True when no decomposition ``M = sum_k rho_k e_k e_k^T`` with ``rho_k >= 0`` and ``|e_k|_inf <= R``
    exists, by the necessary condition ``|M_ij| <= R min(M_ii, M_jj)`` (``|e_i e_j| <= R e_i^2`` for integer
    ``e``), violated by more than a bound on the round-off of Selling's weights
    (``1e-10 R^6 max|M|``): Selling's reduction would then end on an offset longer than ``R`` (or hit its
    cap), so the exact decomposition need not be computed. Only a shortcut: False proves nothing."""
    d = M.shape[0]
    scale = 0.0
    for p in range(d):
        for q in range(d):
            scale = max(scale, abs(M[p, q]))
    R = float(radius)
    slack = 1e-10 * R**6 * scale
    for p in range(d):
        for q in range(p + 1, d):
            if abs(M[p, q]) > R * min(M[p, p], M[q, q]) + (R + 1.0) * slack:
                return True
    return False


@njit(cache=True)
def selling_field(M, radius, diagonal_beyond=False):
    """Selling decomposition of a field of ``(N, d, d)`` tensors (index units), ``d`` in {1, 2, 3}, with
    stencil offsets no longer than ``radius`` cells.

    A monotone stencil whose jumps span at most ``R`` cells can only represent cross-diffusion with
    ``|M_ij| <= R min(M_ii, M_jj)`` (for integer jumps ``|E[x y]| <= R E[x^2]``). Where the exact
    decomposition needs longer offsets, the off-diagonal part is scaled down,
    ``M' = diag(M) + t offdiag(M)``, to keep every axis at least half of its own diffusion
    (``t = min(1, (1/2) min_i M_ii / sum_{j != i} |M_ij|)``): ``M'`` is then diagonally dominant, PSD, fits
    the 3^d-point stencil, and keeps the diagonal -- hence the exact marginal equation along each axis.
    (Scaling only as far as the long stencil allows was tried first: it leaves tiny weights on long, skewed
    offsets that then carry large drifts, and the numerical diffusion of their upwinding swamps the small
    physical diffusion; on the PRL valley with ``Delta_S H^2`` its answers did not converge under
    refinement, while this rule does.)

    ``diagonal_beyond``: ``t = 0`` there instead (the cross-diffusion dropped, not scaled), the reference
    against which the solvers measure how much the answer depends on what the stencil cannot hold.

    Returns ``offsets (N, K, d)`` int64, ``weights (N, K)`` and the factor ``t (N,)`` (1 where exact)."""
    N = M.shape[0]
    d = M.shape[1]
    K = 1 if d == 1 else (3 if d == 2 else 6)
    offsets = np.zeros((N, K, d), dtype=np.int64)
    weights = np.zeros((N, K))
    factor = np.ones(N)
    Mt = np.empty((d, d))
    b = np.empty((d + 1, d), dtype=np.int64)
    for n in range(N):
        if not _beyond_radius(M[n], radius) and _selling_into(M[n], b, offsets[n], weights[n]) <= radius:
            continue
        t = 1.0
        for p in range(d):
            off = 0.0
            for q in range(d):
                if q != p:
                    off += abs(M[n, p, q])
            if off > 0.0:
                t = min(t, 0.5 * M[n, p, p] / off)
        if diagonal_beyond:
            t = 0.0
        for p in range(d):
            for q in range(d):
                Mt[p, q] = M[n, p, q] if p == q else t * M[n, p, q]
        _selling_into(Mt, b, offsets[n], weights[n])
        factor[n] = t
    return offsets, weights, factor


@njit(cache=True)
def longest_offset(offsets, weights):
    """Longest component ``max |e_p|`` over the offsets with positive weight (1 when there is none)."""
    longest = 0
    any_positive = False
    for c in range(offsets.shape[0]):
        for k in range(offsets.shape[1]):
            if weights[c, k] > 0.0:
                any_positive = True
                for p in range(offsets.shape[2]):
                    longest = max(longest, abs(offsets[c, k, p]))
    return longest if any_positive else 1


@njit(cache=True)
def bernoulli(z):
    """``B(z) = z / (exp(z) - 1)``, with ``B(0) = 1``; the Scharfetter-Gummel weight."""
    if z == 0.0:
        return 1.0
    if z > 700.0:
        return z * np.exp(-z)
    return z / np.expm1(z)


@njit(cache=True)
def sg_rate(a, rho):
    """Rate ``rho * B(a / rho)`` of the Scharfetter-Gummel flux, continuous as ``rho -> 0`` where it tends
    to the upwind rate ``max(-a, 0)``."""
    if rho <= 0.0:
        return -a if a < 0.0 else 0.0
    return rho * bernoulli(a / rho)


@njit(cache=True)
def sg_rate_pair(a, rho):
    """Both rates of one segment, ``(sg_rate(-a, rho), sg_rate(a, rho))``, from one exponential:
    with ``y = |a| / rho``, ``B(-y) = y + B(y)`` (the identity ``B(-y) - B(y) = y``), so the large rate is
    the small one plus ``|a|`` and no difference of nearly equal numbers is formed. Half the exponentials of
    two calls of :func:`sg_rate` (the assembly measured 0-15% faster at 512^2, within the noise); the rates
    agree with it to 4e-16."""
    if rho <= 0.0:
        return (a if a > 0.0 else 0.0), (-a if a < 0.0 else 0.0)
    y = abs(a) / rho
    b = bernoulli(y)
    small, large = rho * b, rho * (y + b)
    return (large, small) if a >= 0.0 else (small, large)


SPLIT_PECLET = 0.25  # diagonal edges whose rest has a Peclet number |c|/rho above this are split (fitted whole,
#                      the rest adds about rho (c/rho)^2 / 12 of numerical diffusion: 0.5% of the edge's own here)


@njit(cache=True)
def split_mode(a, rho, dphi):
    """How a diagonal edge (an offset with two or more non-zero components) with carried drift ``a``, diffusion
    ``rho`` and potential drop ``dphi = phi_n - phi_m`` is treated: 0, fitted whole (:func:`sg_rate_pair`);
    1, split (:func:`split_rate_pair`); 2, the potential part fitted and the rest carried along the axes (the
    caller adds it to the axis faces' drift: :func:`split_modes`). Axis faces are always fitted whole: there no
    anisotropy amplifies the drop, and exponential fitting is exact for a drift along the face (splitting them
    measured up to 10x worse on the PRL valley with a diagonal ``D``).

    Fitted whole where the rest ``c = a - rho dphi`` is small, ``|c| <= SPLIT_PECLET rho`` (fitting it then adds
    little numerical diffusion, and the whole fit measured as accurate or more there), and where ``dphi`` is NaN
    (a cell outside the split). Moved to the axes where the split rates would not both be non-negative."""
    a_pot = rho * dphi
    if not (abs(a - a_pot) > SPLIT_PECLET * rho):
        return 0
    k_out, k_in = split_rate_pair(a, rho, dphi)
    return 1 if (k_out >= 0.0 and k_in >= 0.0) else 2


@njit(cache=True)
def split_modes(a, rho, dphi):
    """:func:`split_mode` of each edge (the same test as in :func:`assemble_jumps`, so both agree bit for bit)."""
    out = np.empty(a.shape[0], dtype=np.int8)
    for j in range(a.shape[0]):
        out[j] = split_mode(a[j], rho[j], dphi[j])
    return out


@njit(cache=True)
def split_rate_pair(a, rho, dphi):
    """Both rates of a segment whose carried drift is split into a potential part and a rest,
    ``a = rho dphi + c`` (``dphi = phi_n - phi_m``, :func:`fokkerplanck.numerics.operator.drift_potential`): the
    potential part exponentially fitted (:func:`sg_rate_pair` of ``rho dphi``; its flux vanishes on
    ``exp(-phi)``), the rest centred (``+c/2`` out, ``-c/2`` in). The difference of the two rates is ``a``: the
    drift is carried whole. The rates can be negative; :func:`split_mode` checks. (Centring the rest in
    ``u = P exp(phi)`` instead, exact where ``P`` varies like ``exp(-phi)``, was measured unstable: ``phi`` is a
    least-squares compromise, and its exponential weights then blew the rest up, L1 1.8 on the PRL valley.)"""
    a_pot = rho * dphi
    k_out, k_in = sg_rate_pair(a_pot, rho)
    c = 0.5 * (a - a_pot)
    return k_out + c, k_in - c


@njit(cache=True)
def _neighbour(idx, e, shape, bc):
    """Flat index of cell ``idx + e`` and its status: 0 inside, 1 absorbed (left through an absorbing
    wall), 2 reflected (crosses a reflecting wall; the index is then that of the mirror image of
    ``idx + e`` in the wall(s), folded back as often as needed), 3 inside after wrapping around a periodic
    axis."""
    d = idx.shape[0]
    flat = 0
    status = 0
    wrapped = False
    for ax in range(d):
        t = idx[ax] + e[ax]
        n = shape[ax]
        if t < 0 or t >= n:
            side = 0 if t < 0 else 1
            if bc[ax, side] == 2:
                t = t % n
                wrapped = True
            elif bc[ax, side] == 1:
                status = 1
            else:
                if status == 0:
                    status = 2
                while t < 0 or t >= n:  # the mirror image of a cell centre in the wall at 0 or n
                    t = -1 - t if t < 0 else 2 * n - 1 - t
        flat = flat * n + t
    if status == 0 and wrapped:
        status = 3
    return flat, status


@njit(cache=True)
def _wall_fraction(idx, f, shape, bc):
    """Fraction ``s`` of the jump ``f`` from the centre of cell ``idx`` at which it crosses an absorbing wall
    first: ``s = min_p dist_p / |f_p|`` over the axes it leaves through an absorbing side, ``dist_p`` the
    distance (in cells) from the centre to that wall (``idx_p + 1/2`` or ``n_p - idx_p - 1/2``).
    ``s = 1/2`` for an axis jump out of a wall cell."""
    s = 1.0
    for p in range(idx.shape[0]):
        t = idx[p] + f[p]
        if t < 0 and bc[p, 0] == 1:
            s = min(s, (idx[p] + 0.5) / (-f[p]))
        elif t >= shape[p] and bc[p, 1] == 1:
            s = min(s, (shape[p] - idx[p] - 0.5) / f[p])
    return s


@njit(cache=True)
def offset_keys(offsets, weights):
    """Lookup tables for the decompositions ``offsets (M, K, d)``, ``weights (M, K)``: an integer key of
    every offset up to sign, ``keys (M, K)`` (the offset oriented with its first non-zero component
    positive, read as digits in base ``2 R + 1``, ``R`` the longest component), and the weight of each axis
    offset ``+-e_i``, ``axis_weights (M, d)`` (0 when absent). Returns ``keys, axis_weights, R``."""
    M = offsets.shape[0]
    K = offsets.shape[1]
    d = offsets.shape[2]
    R = 1
    for c in range(M):
        for k in range(K):
            for p in range(d):
                R = max(R, abs(offsets[c, k, p]))
    if R >= 1 << 20:  # keys must fit in int64: (2R + 1)^3 < 2^63
        raise ValueError("stencil offsets of a million cells or more are not supported")
    keys = np.empty((M, K), dtype=np.int64)
    axis_weights = np.zeros((M, d))
    found = np.zeros(d, dtype=np.bool_)
    for c in range(M):
        found[:] = False
        for k in range(K):
            sgn = 0
            nz = 0
            ax = -1
            for p in range(d):
                if offsets[c, k, p] != 0:
                    nz += 1
                    ax = p
                    if sgn == 0:
                        sgn = 1 if offsets[c, k, p] > 0 else -1
            key = 0
            for p in range(d - 1, -1, -1):
                key = key * (2 * R + 1) + (sgn * offsets[c, k, p] + R)
            keys[c, k] = key
            if nz == 1 and abs(offsets[c, k, ax]) == 1 and not found[ax]:  # the first match
                axis_weights[c, ax] = weights[c, k]
                found[ax] = True
    return keys, axis_weights, R


@njit(cache=True)
def _weight_of_key(keys, weights, m, key):
    """Weight of the offset with ``key`` (see :func:`offset_keys`) at cell ``m`` (0 when absent)."""
    w = 0.0
    for k in range(keys.shape[1] - 1, -1, -1):  # backwards: the first match wins
        if keys[m, k] == key:
            w = weights[m, k]
    return w


@njit(cache=True)
def _mirror_displacement(idx, f, shape, bc, out):
    """``out``: the displacement from cell ``idx`` to the mirror image of ``idx + f`` in the reflecting walls
    it crosses (as :func:`_neighbour` folds it; ``f`` itself along periodic axes)."""
    for ax in range(idx.shape[0]):
        t = idx[ax] + f[ax]
        n = shape[ax]
        while (t < 0 and bc[ax, 0] == 0) or (t >= n and bc[ax, 1] == 0):
            t = -1 - t if t < 0 else 2 * n - 1 - t
        out[ax] = t - idx[ax]


@njit(cache=True)
def _grow(src, dst, rate, disp, m):
    """The jump lists with twice the room, the first ``m`` jumps kept."""
    cap = 2 * src.shape[0]
    src2 = np.empty(cap, src.dtype)
    dst2 = np.empty(cap, dst.dtype)
    rate2 = np.empty(cap)
    disp2 = np.empty((cap, disp.shape[1]), dtype=disp.dtype)
    src2[:m] = src[:m]
    dst2[:m] = dst[:m]
    rate2[:m] = rate[:m]
    disp2[:m] = disp[:m]
    return src2, dst2, rate2, disp2


@njit(cache=True)
def _push(src, dst, rate, disp, m, s, t, k, e, sign):
    src[m] = s
    dst[m] = t
    rate[m] = k
    for p in range(e.shape[0]):
        disp[m, p] = sign * e[p]
    return m + 1


# --- drift in the range of the stencil -----------------------------------------------------------------
@njit(cache=True)
def stencil_tensor(offsets, weights):
    """The tensor a decomposition represents, ``D_r = sum_k rho_k e_k e_k^T``, for ``offsets (M, K, d)`` and
    ``weights (M, K)``; returns ``(M, d, d)``. It is ``D~`` itself where Selling's decomposition is exact,
    and the tensor with scaled-down cross-diffusion where :func:`selling_field` had to shrink it."""
    M = offsets.shape[0]
    K = offsets.shape[1]
    d = offsets.shape[2]
    out = np.zeros((M, d, d))
    for c in range(M):
        for k in range(K):
            w = weights[c, k]
            for i in range(d):
                for j in range(d):
                    out[c, i, j] += w * offsets[c, k, i] * offsets[c, k, j]
    return out


@njit(cache=True)
def _two_product(a, b):
    """``a b = p + e`` exactly (Dekker's splitting; no fused multiply-add needed): returns ``(p, e)``."""
    p = a * b
    s = 134217729.0 * a  # 2^27 + 1
    ah = s - (s - a)
    al = a - ah
    s = 134217729.0 * b
    bh = s - (s - b)
    bl = b - bh
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


@njit(cache=True)
def _pinv_2x2(a, b, c, rcond, out):
    """Pseudo-inverse of the symmetric PSD ``[[a, b], [b, c]]`` in closed form, written to ``out``; returns
    the rank kept (eigenvalues below ``rcond`` times the largest dropped).

    Eigenvalues ``l1 = (a + c)/2 + sqrt(((a - c)/2)^2 + b^2)`` and ``l2 = det / l1``, with the determinant
    ``ac - b^2`` from exact products (accurate where it cancels). Full rank: the inverse
    ``[[c, -b], [-b, a]] / det``. Rank one: ``v v^T / (l1 |v|^2)`` with the eigenvector
    ``v = (b, l1 - a)`` or ``(l1 - c, b)``, whichever is free of cancellation."""
    if b == 0.0:
        big = max(abs(a), abs(c))
        ia = 1.0 / a if a > rcond * big else 0.0
        ic = 1.0 / c if c > rcond * big else 0.0
        out[0, 0] = ia
        out[0, 1] = 0.0
        out[1, 0] = 0.0
        out[1, 1] = ic
        return (1 if ia != 0.0 else 0) + (1 if ic != 0.0 else 0)
    l1 = 0.5 * (a + c) + np.hypot(0.5 * (a - c), b)
    if max(abs(a), abs(b), abs(c)) < 1e150:
        p, ep = _two_product(a, c)
        q, eq = _two_product(b, b)
        det = (p - q) + (ep - eq)
    else:
        det = a * c - b * b
    l2 = det / l1
    if l2 > rcond * l1:
        out[0, 0] = c / det
        out[0, 1] = -b / det
        out[1, 0] = -b / det
        out[1, 1] = a / det
        return 2
    if c >= a:
        v0, v1 = b, l1 - a
    else:
        v0, v1 = l1 - c, b
    s = 1.0 / (l1 * (v0 * v0 + v1 * v1))
    out[0, 0] = v0 * v0 * s
    out[0, 1] = v0 * v1 * s
    out[1, 0] = v0 * v1 * s
    out[1, 1] = v1 * v1 * s
    return 1


@njit(cache=True)
def pinv_psd(M, rcond):
    """Pseudo-inverse of each symmetric PSD matrix of a field ``M (n, d, d)``,
    ``M^+ = sum_k [w_k > rcond max_l |w_l|] w_k^-1 v_k v_k^T`` over its eigenpairs ``(w_k, v_k)``:
    eigenvalues below ``rcond`` times the largest are round-off of a singular direction and dropped.
    2x2 in closed form (:func:`_pinv_2x2`), 3x3 by Jacobi's method (:func:`_sym_eig`).
    Returns ``M^+ (n, d, d)`` and the rank kept, ``(n,)`` int64."""
    n = M.shape[0]
    d = M.shape[1]
    out = np.empty((n, d, d))
    rank = np.zeros(n, dtype=np.int64)
    A = np.empty((d, d))
    V = np.empty((d, d))
    w = np.empty(d)
    inv = np.empty(d)
    for c in range(n):
        if d == 2:
            rank[c] = _pinv_2x2(M[c, 0, 0], M[c, 0, 1], M[c, 1, 1], rcond, out[c])
            continue
        for i in range(d):
            for j in range(d):
                A[i, j] = M[c, i, j]
        _sym_eig(A, w, V)
        big = 0.0
        for k in range(d):
            big = max(big, abs(w[k]))
        cut = rcond * big
        for k in range(d):
            inv[k] = 1.0 / w[k] if w[k] > cut else 0.0
            if w[k] > cut:
                rank[c] += 1
        for i in range(d):
            for j in range(d):
                s = 0.0
                for k in range(d):
                    s += V[i, k] * inv[k] * V[j, k]
                out[c, i, j] = s
    return out, rank


@njit(cache=True)
def split_drift(Dr, pinv, rank, v, grad, h):
    """Split the drift, in index units, between the stencil directions and the axes.

    ``v (N, d)`` is the (Ito) velocity, ``grad (N, d)`` the gradient of the landscape it contains (``(0, d)``
    without a landscape), ``h (d,)`` the cell widths; index units are ``v~_i = v_i / h_i``. With ``D_r`` the
    tensor of the stencil (:func:`stencil_tensor`), ``D_r^+`` its pseudo-inverse and its rank
    (:func:`pinv_psd`), all ``(N, ...)`` or ``(1, ...)`` (one tensor for every cell), returns

    * ``gx = D_r^+ v~_extra``, ``v~_extra = (v + grad L) / h`` the drift other than ``-grad L``
      (``v~`` itself without a landscape),
    * ``resid = v~ - D_r D_r^+ v~``, the part of ``v~`` outside the range of ``D_r``: exactly zero where
      ``D_r`` has full rank (the range is everything; computing it would only leave round-off, which the
      axis faces with no diffusion would turn into spurious round-off jumps), and
    * ``gradL = h_i dL/dtheta_i``, the index-space gradient of ``L`` (``(0, d)`` without a landscape).
    """
    N = v.shape[0]
    d = v.shape[1]
    landscape = grad.shape[0] > 0
    shared = pinv.shape[0] == 1
    gx = np.empty((N, d))
    resid = np.empty((N, d))
    gradL = np.empty((N if landscape else 0, d))
    vt = np.empty(d)
    vx = np.empty(d)
    g = np.empty(d)
    for n in range(N):
        c = 0 if shared else n
        for i in range(d):
            vt[i] = v[n, i] / h[i]
            vx[i] = vt[i]
        if landscape:
            for i in range(d):
                vx[i] = (v[n, i] + grad[n, i]) / h[i]
                gradL[n, i] = grad[n, i] * h[i]
        for i in range(d):
            sx = 0.0
            st = 0.0
            for j in range(d):
                sx += pinv[c, i, j] * vx[j]
                st += pinv[c, i, j] * vt[j]
            gx[n, i] = sx
            g[i] = st
        full = rank[c] == d
        for i in range(d):
            s = 0.0
            for j in range(d):
                s += Dr[c, i, j] * g[j]
            resid[n, i] = 0.0 if full else vt[i] - s
    return gx, resid, gradL


# --- the jumps and the matrix ----------------------------------------------------------------------------
@njit(cache=True)
def _face_potential_drop(n, t, e, gx, wn, wt):
    """``z = e . g`` on the face between cells ``n`` and ``t = n + e``: the drop of the effective
    potential along ``e`` (index units), with ``g = D~^+ v~``. Returns ``z`` without its gradient part
    (see :func:`_face_gradient_drop`) and the weight ``cn`` of cell ``n`` in the average (``1 - cn`` of t).

    What is averaged over the two cells is the drift the direction carries, ``a = rho (e . g)``, and
    ``z = (rho_n z_n + rho_t z_t) / (rho_n + rho_t)`` with ``wn, wt = rho_n, rho_t``: then ``rho_h z`` with
    ``rho_h = (rho_n + rho_t)/2`` is the mean carried drift. ``e . g`` alone scales like ``1/rho`` and can
    change several-fold between neighbours where ``D`` is near-singular (``D11 ~ y^2`` across the PRL
    valley); its plain average overstated the drift of diagonal jumps there (measured: ``<|x|>`` 0.59 instead
    of 0.65 at 200 x 48 cells on the PRL Fig. 5 landscape with ``Delta_S H^2``; the particles' 0.67).
    With equal weights (constant ``D``) this is the plain average. The drift other than ``-grad L``
    contributes the same average of ``e . gx``."""
    d = e.shape[0]
    cn = wn / (wn + wt) if wn + wt > 0.0 else 0.5
    ct = 1.0 - cn
    z = 0.0
    for p in range(d):
        z += e[p] * (cn * gx[n, p] + ct * gx[t, p])
    return z, cn


@njit(cache=True)
def _face_gradient_drop(z, n, t, qn, qt, e, status, Lval, gradL, Q, cn):
    """``z`` of :func:`_face_potential_drop` with the gradient part of a landscape added:
    ``-e^T Q w`` with ``Q = D~^+ S`` averaged as the carried drift (weights ``cn``, ``1 - cn``; ``qn, qt`` the
    rows of ``Q`` for the two cells) and ``w`` the average index-space gradient of ``L``, corrected along
    ``e`` so that ``e . w = L_t - L_n`` exactly (exact discrete Boltzmann weights when ``D`` is isotropic);
    no correction across a periodic seam (``status`` 3), where ``L_t - L_n`` is not a difference along
    ``e``."""
    d = e.shape[0]
    ct = 1.0 - cn
    ee = 0.0
    ew = 0.0
    for p in range(d):
        ee += e[p] * e[p]
        ew += e[p] * 0.5 * (gradL[n, p] + gradL[t, p])
    dL = Lval[t] - Lval[n]
    corr = (dL - ew) / ee if status == 0 else 0.0
    for p in range(d):
        qe = 0.0
        for q in range(d):
            qe += e[q] * (cn * Q[qn, q, p] + ct * Q[qt, q, p])
        z -= qe * (0.5 * (gradL[n, p] + gradL[t, p]) + corr * e[p])
    return z


@njit(cache=True)
def _cell_potential_drop(n, qn, e, landscape, gradL, Q, gx):
    """``e . g`` at the cell ``n`` itself (used for jumps out through absorbing walls)."""
    d = e.shape[0]
    z = 0.0
    for p in range(d):
        z += e[p] * gx[n, p]
        if landscape:
            qe = 0.0
            for q in range(d):
                qe += e[q] * Q[qn, q, p]
            z -= qe * gradL[n, p]
    return z


@njit(cache=True, nogil=True)
def assemble_jumps(
    shape,
    bc,
    offsets,
    weights,
    keys,
    axis_weights,
    Lval,
    gradL,
    Q,
    gx,
    resid,
    psi,
    ito,
    phi,
    drops,
    first,
    stop,
    index_like,
):
    """The jumps of the discrete process on the edges that the cells ``first <= n < stop`` own (each edge
    once; rates in the problem's time unit). Concatenated over consecutive ranges of cells, the lists are those
    of one call over all cells, in the same order. Runs without the GIL, so ranges can be assembled by threads.

    Parameters
    ----------
    shape : (d,) int64;  bc : (d, 2) int64 wall codes (0 reflecting, 1 absorbing, 2 periodic)
    offsets, weights : (N, K, d), (N, K) Selling decomposition of ``D~ = D / (h_i h_j)`` at each cell, or
        (1, K, d), (1, K): one decomposition for every cell (a constant tensor)
    keys, axis_weights : :func:`offset_keys` of ``offsets, weights``
    first, stop : the range of cells whose edges are assembled
    index_like : an array of the integer type of ``src, dst`` (int32 below 2^31 cells: 8 bytes a jump less)
    Lval, gradL, Q : loss ``L`` (N,), its index-space gradient ``h_i dL/dtheta_i`` (N, d) and
        ``D~^+ diag(1/h^2)`` (N or 1, d, d); for problems without a landscape, empty arrays (0,), (0, d),
        (0, d, d): the gradient part of the drift is then absent
    gx : (N, d) ``D~^+ v~_extra``, the drift other than ``-grad L`` in index units, ``v~_i = v_i / h_i``
    resid : (N, d) the part of ``v~`` outside the range of ``D~`` (upwinded along the axes)
    psi : (N,) the potential of a reversible problem, ``P_ss = exp(-psi)`` (see below), or (0,) for none
    ito : bool
        True: the drift given (``gx``, the landscape, ``resid``) is the Ito velocity ``v`` and each direction's
        flux is the Ito one below. False: it is the conservative drift ``b = v - div D`` and each flux is
        ``F = rho_h [B(-a/rho_h) P_n - B(a/rho_h) P_m]`` with ``a = rho_h (e . g)``, ``g = D~^+ b~`` -- the
        divergence form ``div(D grad P - b P)`` of the same equation (see
        :class:`fokkerplanck.numerics.operator.Generator`)
    phi : (N,) a potential for the split of the drift (:func:`split_rate_pair`; edges with a NaN end are not
        split), or (0,) for none
    drops : bool
        Instead of the jumps, the carried drift of every edge that has diffusion (interior, not mirrored): two
        entries per edge, ``n -> m`` with rate ``rho_h`` then ``m -> n`` with rate ``a`` (the input of
        :func:`fokkerplanck.numerics.operator.drift_potential`)

    Scheme
    ------
    The drift is spread over the stencil directions in proportion to their diffusion:
    ``v~ = D~ g = sum_e rho_e (e . g) e`` with ``g = D~^+ v~``. Along each direction the one-dimensional
    Ito flux ``F = a P - d(rho P)``, ``a = rho (e . g)``, with ``rho`` and ``a`` averaged over the two cells
    (see :func:`_face_potential_drop`), is integrated exactly for constant coefficients on the segment
    (exponential fitting: Scharfetter-Gummel / Chang-Cooper):

        F = rho_h [ B(-a~/rho_h) P_n - B(a~/rho_h) P_m ],   a~ = a - (rho_m - rho_n),   B(z) = z/(e^z - 1),

    i.e. jumps ``n -> m`` at rate ``rho_h B(-a~/rho_h)`` and ``m -> n`` at ``rho_h B(a~/rho_h)``, both
    >= 0, tending to upwinding where ``rho -> 0``. A jump that leaves through an absorbing wall
    sees ``P = 0`` where it crosses the wall, a fraction ``s`` of its length (:func:`_wall_fraction`; ``s = 1/2``
    for an axis face): rate ``sg_rate(-s a, rho) / s``, so exit times converge at second order.

    **Drift split** (``phi`` given: :func:`fokkerplanck.numerics.operator.drift_potential`): a diagonal edge whose
    drift ``a`` is far from the potential drop ``rho (phi_n - phi_m)`` carries that drop fitted and the rest
    centred, or the drop alone with the rest moved to the axes by the caller (:func:`split_mode`). Axis faces
    are always fitted whole.

    A jump that crosses a reflecting wall lands on the mirror image of its target (the method of images;
    the edge carries half of the offset's weight both ways, owned by the source cell): without it a long
    offset would leave wall cells -- corners above all -- with no jumps at all, closed classes of the chain.

    **Reversible problems** (``psi`` given, ``D (grad psi) = -(v - div D)``): every edge ``n <-> m`` of
    weight ``rho_h`` gets the rates ``rho_h B(psi_m - psi_n)`` and ``rho_h B(psi_n - psi_m)``, whose ratio is
    ``exp(psi_n - psi_m)``: detailed balance holds for ``exp(-psi)`` edge by edge, so the sampled exact
    density is the discrete steady state, whatever the tensor, its orientation and the stencil. Expanding
    ``B``, the flux is ``-rho_h (e . grad)(P) - rho_h P (e . grad psi)``, summed over ``e`` the Ito current
    ``-D grad P - P D grad psi = v P - div(D P)``.

    Returns ``src, dst, rate, disp`` (``dst = -1`` for a jump out of the domain; ``disp`` the offset,
    int16).
    """
    d = shape.shape[0]
    K = weights.shape[1]
    per_cell = offsets.shape[0] > 1
    q_per_cell = Q.shape[0] > 1
    landscape = Lval.shape[0] > 0
    reversible = psi.shape[0] > 0
    split = phi.shape[0] > 0 and not reversible
    drops = drops and not reversible
    per_cell_most = 4 * d + 4 * K  # jumps one cell can own at most
    cap = (stop - first) * (4 * d + 2 * K) + per_cell_most  # enough but at walls and stencil switches
    src = np.empty(cap, index_like.dtype)
    dst = np.empty(cap, index_like.dtype)
    rate = np.empty(cap)
    disp = np.empty((cap, d), dtype=np.int16)
    m = 0
    idx = np.zeros(d, dtype=np.int64)
    rest = first
    for ax in range(d - 1, -1, -1):  # the multi-index of cell ``first``
        idx[ax] = rest % shape[ax]
        rest //= shape[ax]
    e = np.zeros(d, dtype=np.int64)
    f = np.zeros(d, dtype=np.int64)
    r = np.zeros(d, dtype=np.int64)
    for n in range(first, stop):
        if m + per_cell_most > src.shape[0]:
            src, dst, rate, disp = _grow(src, dst, rate, disp, m)
        if n > first:  # the multi-index of cell n (C order)
            ax = d - 1
            idx[ax] += 1
            while idx[ax] == shape[ax]:
                idx[ax] = 0
                ax -= 1
                idx[ax] += 1
        c = n if per_cell else 0
        qn = n if q_per_cell else 0
        # --- axis faces (always present: they also carry the drift outside the range of D) ----------
        for ax in range(d):
            for p in range(d):
                e[p] = 0
            e[ax] = 1
            rho_n = axis_weights[c, ax]
            t, status = _neighbour(idx, e, shape, bc)
            if status == 0 or status == 3:
                rho_t = axis_weights[t if per_cell else 0, ax]
                rho_h = 0.5 * (rho_n + rho_t)
                if reversible:
                    at = rho_h * (psi[n] - psi[t])
                else:
                    z, cn = _face_potential_drop(n, t, e, gx, rho_n if ito else 1.0, rho_t if ito else 1.0)
                    if landscape:
                        z = _face_gradient_drop(z, n, t, qn, t if q_per_cell else 0, e, status, Lval, gradL, Q, cn)
                    at = rho_h * z + 0.5 * (resid[n, ax] + resid[t, ax])
                    if ito:
                        at -= rho_t - rho_n
                if drops:
                    if rho_h > 0.0:
                        m = _push(src, dst, rate, disp, m, n, t, rho_h, e, 1)
                        m = _push(src, dst, rate, disp, m, t, n, at, e, -1)
                    continue
                k_out, k_in = sg_rate_pair(at, rho_h)
                if k_out > 0.0:
                    m = _push(src, dst, rate, disp, m, n, t, k_out, e, 1)
                if k_in > 0.0:
                    m = _push(src, dst, rate, disp, m, t, n, k_in, e, -1)
            elif status == 1 and not drops:
                a_out = rho_n * _cell_potential_drop(n, qn, e, landscape, gradL, Q, gx) + resid[n, ax]
                k = 2.0 * sg_rate(-0.5 * a_out, rho_n)
                if k > 0.0:
                    m = _push(src, dst, rate, disp, m, n, -1, k, e, 1)
            if idx[ax] == 0 and bc[ax, 0] == 1 and not drops:
                a_out = -(rho_n * _cell_potential_drop(n, qn, e, landscape, gradL, Q, gx) + resid[n, ax])
                k = 2.0 * sg_rate(-0.5 * a_out, rho_n)
                if k > 0.0:
                    m = _push(src, dst, rate, disp, m, n, -1, k, e, -1)
        # --- other offsets: each undirected edge once ------------------------------------------------
        for kk in range(K):
            w = weights[c, kk]
            if w <= 0.0:
                continue
            nz = 0
            for p in range(d):
                if offsets[c, kk, p] != 0:
                    nz += 1
            if nz <= 1:
                continue  # an axis offset, handled above
            # canonical orientation: first non-zero component positive
            sgn = 1
            for p in range(d):
                if offsets[c, kk, p] != 0:
                    sgn = 1 if offsets[c, kk, p] > 0 else -1
                    break
            for direction in range(2):  # f = +e, then -e
                for p in range(d):
                    f[p] = sgn * offsets[c, kk, p] if direction == 0 else -sgn * offsets[c, kk, p]
                t, status = _neighbour(idx, f, shape, bc)
                if status == 2:
                    if t == n or drops:
                        continue  # reflected onto itself, or drift-free (no drop to record)
                    # a mirrored jump carries diffusion only (the cell's drift goes along the axes:
                    # see operator._reflected_cells), or the exact potential drop of a reversible problem
                    _mirror_displacement(idx, f, shape, bc, r)
                    rho_h = 0.5 * w
                    at = rho_h * (psi[n] - psi[t]) if reversible else 0.0
                    k_out, k_in = sg_rate_pair(at, rho_h)
                    if k_out > 0.0:
                        m = _push(src, dst, rate, disp, m, n, t, k_out, r, 1)
                    if k_in > 0.0:
                        m = _push(src, dst, rate, disp, m, t, n, k_in, r, -1)
                    continue
                if status == 1:
                    if drops:
                        continue
                    # P = 0 on the wall, a fraction s of the way along f: the exponentially fitted flux over
                    # that shorter segment (as for axis faces, s = 1/2 there); second order at the wall
                    s_w = _wall_fraction(idx, f, shape, bc)
                    a_out = w * _cell_potential_drop(n, qn, f, landscape, gradL, Q, gx)
                    k = sg_rate(-s_w * a_out, w) / s_w
                    if k > 0.0:
                        m = _push(src, dst, rate, disp, m, n, -1, k, f, 1)
                    continue
                rho_t = _weight_of_key(keys, weights, t if per_cell else 0, keys[c, kk])
                if direction == 1 and rho_t > 0.0:
                    continue  # the cell t = n - e has this offset too: it handles the edge as its +e
                rho_h = 0.5 * (w + rho_t)
                if reversible:
                    at = rho_h * (psi[n] - psi[t])
                else:  # as on the axis faces above, kept inline: a helper taking the arrays made the 512^2
                    #         assembly 0.118 -> 0.145 s (numba's reference counting of array arguments)
                    z, cn = _face_potential_drop(n, t, f, gx, w if ito else 1.0, rho_t if ito else 1.0)
                    if landscape:
                        z = _face_gradient_drop(z, n, t, qn, t if q_per_cell else 0, f, status, Lval, gradL, Q, cn)
                    at = rho_h * z
                    if ito:
                        at -= rho_t - w
                if drops:
                    m = _push(src, dst, rate, disp, m, n, t, rho_h, f, 1)
                    m = _push(src, dst, rate, disp, m, t, n, at, f, -1)
                    continue
                mode = split_mode(at, rho_h, phi[n] - phi[t]) if split else 0
                if mode == 1:
                    k_out, k_in = split_rate_pair(at, rho_h, phi[n] - phi[t])
                elif mode == 2:  # the rest goes along the axes (added to resid by the caller: split_modes)
                    k_out, k_in = sg_rate_pair(rho_h * (phi[n] - phi[t]), rho_h)
                else:
                    k_out, k_in = sg_rate_pair(at, rho_h)
                if k_out > 0.0:
                    m = _push(src, dst, rate, disp, m, n, t, k_out, f, 1)
                if k_in > 0.0:
                    m = _push(src, dst, rate, disp, m, t, n, k_in, f, -1)
    return src[:m], dst[:m], rate[:m], disp[:m]


def jumps_to_csr(N, chunks, index_dtype):
    """The generator ``A`` in CSR form, ``A[dst, src] += rate`` and ``A[src, src] -= rate`` for every
    jump of the lists ``chunks`` (``(src, dst, rate, disp)`` each, taken in order; a jump out of the domain,
    ``dst < 0``, only empties its source), duplicates summed, columns sorted in every row; the diagonal is
    always stored. Returns ``indptr, indices, data`` with indices of ``index_dtype``.

    Row ``r`` holds the jumps into ``r`` in their order, then the diagonal; a stable insertion sort by
    column (rows are short) and a sweep summing equal columns make the format canonical. The sums run in
    the order of the jumps, so the lists of one call of :func:`assemble_jumps` or of several over
    consecutive ranges of cells give the same matrix, bit for bit."""
    indptr = np.zeros(N + 1, dtype=index_dtype)
    for _, dst, _, _ in chunks:
        _count_rows(indptr, dst)
    _row_starts(indptr)
    indices = np.empty(indptr[N], dtype=index_dtype)
    data = np.empty(indptr[N])
    pos = indptr[:N].copy()
    diag = np.zeros(N)
    for src, dst, rate, _ in chunks:
        _scatter_jumps(pos, indices, data, diag, src, dst, rate)
    nnz = _sort_rows(indptr, pos, indices, data, diag)
    return indptr, indices[:nnz], data[:nnz]


@njit(cache=True)
def _count_rows(indptr, dst):
    """``indptr[r + 1] += `` the number of jumps into row ``r``."""
    for j in range(dst.shape[0]):
        if dst[j] >= 0:
            indptr[dst[j] + 1] += 1


@njit(cache=True)
def _row_starts(indptr):
    """Counts per row (plus one for the diagonal) to row starts, in place."""
    for r in range(indptr.shape[0] - 1):
        indptr[r + 1] += indptr[r] + 1


@njit(cache=True)
def _scatter_jumps(pos, indices, data, diag, src, dst, rate):
    """Each jump into its row at ``pos[dst]`` (advanced); its rate out of the diagonal of its source."""
    for j in range(src.shape[0]):
        s = src[j]
        diag[s] -= rate[j]
        r = dst[j]
        if r >= 0:
            q = pos[r]
            indices[q] = s
            data[q] = rate[j]
            pos[r] = q + 1


@njit(cache=True)
def _sort_rows(indptr, pos, indices, data, diag):
    """The diagonal appended to every row, the row sorted by column and its duplicates summed, compacting
    towards the front (``indptr`` updated); returns the number of entries."""
    N = indptr.shape[0] - 1
    out = 0
    start = 0
    for r in range(N):
        end = indptr[r + 1]
        q = pos[r]
        indices[q] = r
        data[q] = diag[r]
        for a in range(start + 1, end):  # stable insertion sort by column
            col = indices[a]
            val = data[a]
            b = a - 1
            while b >= start and indices[b] > col:
                indices[b + 1] = indices[b]
                data[b + 1] = data[b]
                b -= 1
            indices[b + 1] = col
            data[b + 1] = val
        a = start
        while a < end:  # sum duplicates, compacting towards the front
            col = indices[a]
            val = data[a]
            a += 1
            while a < end and indices[a] == col:
                val += data[a]
                a += 1
            indices[out] = col
            data[out] = val
            out += 1
        start = end
        indptr[r + 1] = out
    return out


def cell_index_like(N):
    """An empty array of the integer type that numbers ``N`` cells in the jump lists (int32 below 2^31: 8 bytes a
    jump less than int64), the ``index_like`` of :func:`assemble_jumps`."""
    return np.zeros(0, dtype=np.int32 if N < np.iinfo(np.int32).max else np.int64)


def walk_jumps(N, args, visit, block=16_384):
    """Make the jumps again, ``block`` cells at a time (:func:`assemble_jumps` with ``args``, the arguments
    before ``first, stop``), and hand each block's lists ``(src, dst, rate, disp)`` to ``visit``, in the order
    of one list over all cells: a matrix-free pass over the generator, whose memory is one block's lists."""
    index_like = cell_index_like(N)
    for first in range(0, N, block):
        visit(*assemble_jumps(*args, first, min(first + block, N), index_like))


@njit(cache=True)
def add_jump_flows(out, src, dst, rate, P):
    """``out += A P`` over the jumps of the lists: each moves ``rate * P[src]`` from ``src`` to ``dst`` (out of
    the domain where ``dst < 0``)."""
    for j in range(src.shape[0]):
        f = rate[j] * P[src[j]]
        out[src[j]] -= f
        if dst[j] >= 0:
            out[dst[j]] += f


@njit(cache=True)
def add_jump_current(J, src, dst, rate, disp, spacing, P):
    """Cell-centred current ``J (N, d)`` added to: each jump's flow ``rate * P[src]`` along its physical
    displacement (``disp * spacing``), shared half-and-half between the two cells it joins (all of it to
    ``src`` for a jump out of the domain)."""
    d = J.shape[1]
    for j in range(src.shape[0]):
        f = rate[j] * P[src[j]]
        if dst[j] >= 0:
            for p in range(d):
                J[src[j], p] += 0.5 * f * (disp[j, p] * spacing[p])
                J[dst[j], p] += 0.5 * f * (disp[j, p] * spacing[p])
        else:
            for p in range(d):
                J[src[j], p] += f * (disp[j, p] * spacing[p])
