"""Numba kernels of the finite-volume scheme (the only module of the solver that uses numba).

Two pieces:

1. **Selling's decomposition** of a symmetric positive semi-definite tensor ``M`` (2x2 or 3x3) on lattice
   directions with non-negative weights,

       M = sum_k rho_k e_k e_k^T,        rho_k >= 0,   e_k in Z^d,

   from an *obtuse superbase* ``(b_0, .., b_d)`` (a basis of Z^d completed by ``b_d = -sum b_i``, with
   ``<b_i, M b_j> <= 0`` for ``i != j``). Selling's formula then gives ``rho = -<b_i, M b_j>`` on the
   offsets ``e = b_k^perp`` (2D) or ``e = b_k x b_l`` (3D), where ``{k, l}`` complements ``{i, j}``
   (Fehrenbach & Mirebeau, J. Math. Imaging Vis. 49, 2014; Conway & Sloane, 1992). The superbase is
   found by Selling's reduction: while some ``<b_i, M b_j> > 0``, replace ``b_i -> -b_i`` and
   ``b_k -> b_k + 2 b_i`` (2D) or ``b_k -> b_k + b_i`` for both other indices (3D).

2. **Assembly of the generator** ``A`` of ``dP/dt = A P`` as a list of jumps ``src -> dst`` with
   non-negative rates: every transfer of probability leaves one cell and enters another (or leaves the
   domain through an absorbing wall), so the columns of ``A`` sum to zero (mass conservation) and its
   off-diagonal entries are non-negative (a Metzler matrix: positivity of ``exp(tA)``).
"""
from __future__ import annotations

import numpy as np
from numba import njit

_MAX_SELLING_ITERATIONS = 500


@njit(cache=True)
def _dot2(a0, a1, M, b0, b1):
    return a0 * (M[0, 0] * b0 + M[0, 1] * b1) + a1 * (M[1, 0] * b0 + M[1, 1] * b1)


@njit(cache=True)
def selling_2d(M, offsets, weights):
    """Selling decomposition of a 2x2 symmetric PSD ``M`` into 3 offsets (written to ``offsets[3, 2]``,
    ``weights[3]``). Returns the number of reduction steps (``-1`` if the cap was reached)."""
    b = np.array([[1, 0], [0, 1], [-1, -1]], dtype=np.int64)
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
    b = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [-1, -1, -1]], dtype=np.int64)
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
def _selling_into(M, offsets, weights):
    """Selling decomposition of one tensor; returns its longest offset (sup norm), or a huge number when
    the reduction hit its cap."""
    d = M.shape[0]
    if d == 1:
        offsets[0, 0] = 1
        weights[0] = M[0, 0] if M[0, 0] > 0.0 else 0.0
        return 1
    it = selling_2d(M, offsets, weights) if d == 2 else selling_3d(M, offsets, weights)
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
def selling_field(M, radius):
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

    Returns ``offsets (N, K, d)`` int64, ``weights (N, K)`` and the factor ``t (N,)`` (1 where exact)."""
    N = M.shape[0]
    d = M.shape[1]
    K = 1 if d == 1 else (3 if d == 2 else 6)
    offsets = np.zeros((N, K, d), dtype=np.int64)
    weights = np.zeros((N, K))
    factor = np.ones(N)
    Mt = np.empty((d, d))
    for n in range(N):
        if _selling_into(M[n], offsets[n], weights[n]) <= radius:
            continue
        t = 1.0
        for p in range(d):
            off = 0.0
            for q in range(d):
                if q != p:
                    off += abs(M[n, p, q])
            if off > 0.0:
                t = min(t, 0.5 * M[n, p, p] / off)
        for p in range(d):
            for q in range(d):
                Mt[p, q] = M[n, p, q] if p == q else t * M[n, p, q]
        _selling_into(Mt, offsets[n], weights[n])
        factor[n] = t
    return offsets, weights, factor


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
def _neighbour(idx, e, shape, bc):
    """Flat index of cell ``idx + e`` and its status: 0 inside, 1 absorbed (left through an absorbing
    wall), 2 blocked (crosses a reflecting wall), 3 inside after wrapping around a periodic axis."""
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
            elif status == 0:
                status = 2
        flat = flat * n + t
    if status == 0 and wrapped:
        status = 3
    return flat, status


@njit(cache=True)
def _weight_of(offsets, weights, m, e):
    """Weight of the offset ``+-e`` in the decomposition at cell ``m`` (0 when absent)."""
    d = e.shape[0]
    for k in range(weights.shape[1]):
        same = True
        opp = True
        for p in range(d):
            if offsets[m, k, p] != e[p]:
                same = False
            if offsets[m, k, p] != -e[p]:
                opp = False
        if same or opp:
            return weights[m, k]
    return 0.0


@njit(cache=True)
def _push(src, dst, rate, disp, m, s, t, k, e, sign):
    src[m] = s
    dst[m] = t
    rate[m] = k
    for p in range(e.shape[0]):
        disp[m, p] = sign * e[p]
    return m + 1


@njit(cache=True)
def _face_potential_drop(n, t, e, status, Lval, gradL, Q, gx, wn, wt):
    """``z = e . g`` on the face between cells ``n`` and ``t = n + e``: the drop of the effective
    potential along ``e`` (index units), with ``g = D~^+ v~``.

    What is averaged over the two cells is the drift the direction carries, ``a = rho (e . g)``, and
    ``z = (rho_n z_n + rho_t z_t) / (rho_n + rho_t)`` with ``wn, wt = rho_n, rho_t``: then ``rho_h z`` with
    ``rho_h = (rho_n + rho_t)/2`` is the mean carried drift. ``e . g`` alone scales like ``1/rho`` and can
    change several-fold between neighbours where ``D`` is near-singular (``D11 ~ y^2`` across the PRL
    valley); its plain average overstated the drift of diagonal jumps there (measured: ``<|x|>`` 0.59 instead
    of 0.65 at 200 x 48 cells on the PRL Fig. 5 landscape with ``Delta_S H^2``; the particles' 0.67).
    With equal weights (constant ``D``) this is the plain average.

    Gradient part (landscapes): ``-e^T Q w`` with ``Q = D~^+ S`` so averaged and ``w`` the average
    index-space gradient of ``L``, corrected along ``e`` so that ``e . w = L_t - L_n`` exactly (exact
    discrete Boltzmann weights when ``D`` is isotropic). Other drift: the same average of ``e . gx``."""
    d = e.shape[0]
    if wn + wt > 0.0:
        cn = wn / (wn + wt)
    else:
        cn = 0.5
    ct = 1.0 - cn
    z = 0.0
    ee = 0.0
    ew = 0.0
    for p in range(d):
        ee += e[p] * e[p]
        ew += e[p] * 0.5 * (gradL[n, p] + gradL[t, p])
        z += e[p] * (cn * gx[n, p] + ct * gx[t, p])
    corr = 0.0
    if status == 0:
        corr = ((Lval[t] - Lval[n]) - ew) / ee
    for p in range(d):
        qe = 0.0
        for q in range(d):
            qe += e[q] * (cn * Q[n, q, p] + ct * Q[t, q, p])
        z -= qe * (0.5 * (gradL[n, p] + gradL[t, p]) + corr * e[p])
    return z


@njit(cache=True)
def _cell_potential_drop(n, e, gradL, Q, gx):
    """``e . g`` at the cell ``n`` itself (used for jumps out through absorbing walls)."""
    d = e.shape[0]
    z = 0.0
    for p in range(d):
        z += e[p] * gx[n, p]
        qe = 0.0
        for q in range(d):
            qe += e[q] * Q[n, q, p]
        z -= qe * gradL[n, p]
    return z


@njit(cache=True)
def assemble_jumps(shape, bc, offsets, weights, Lval, gradL, Q, gx, resid):
    """All jumps of the discrete process (rates in the problem's time unit).

    Parameters
    ----------
    shape : (d,) int64;  bc : (d, 2) int64 wall codes (0 reflecting, 1 absorbing, 2 periodic)
    offsets, weights : (N, K, d), (N, K) Selling decomposition of ``D~ = D / (h_i h_j)`` at each cell
    Lval, gradL, Q : loss ``L``, its index-space gradient ``h_i dL/dtheta_i`` and ``D~^+ diag(1/h^2)``
        (zeros for problems without a landscape)
    gx : (N, d) ``D~^+ v~_extra``, the drift other than ``-grad L`` in index units, ``v~_i = v_i / h_i``
    resid : (N, d) the part of ``v~`` outside the range of ``D~`` (upwinded along the axes)

    Scheme
    ------
    The drift is spread over the stencil directions in proportion to their diffusion:
    ``v~ = D~ g = sum_e rho_e (e . g) e`` with ``g = D~^+ v~``. Along each direction the one-dimensional
    Ito flux ``F = a P - d(rho P)``, ``a = rho (e . g)``, with ``rho`` and ``a`` averaged over the two cells
    (see :func:`_face_potential_drop`), is integrated exactly for constant coefficients on the segment
    (exponential fitting: Scharfetter-Gummel / Chang-Cooper):

        F = rho_h [ B(-a~/rho_h) P_n - B(a~/rho_h) P_m ],   a~ = a - (rho_m - rho_n),   B(z) = z/(e^z - 1),

    i.e. jumps ``n -> m`` at rate ``rho_h B(-a~/rho_h)`` and ``m -> n`` at ``rho_h B(a~/rho_h)``, both
    >= 0, tending to upwinding where ``rho -> 0``. At an absorbing wall the axis face is half a cell away
    with ``P = 0`` there.

    Returns ``src, dst, rate, disp`` (``dst = -1`` for a jump out of the domain; ``disp`` the offset).
    """
    d = shape.shape[0]
    N = weights.shape[0]
    K = weights.shape[1]
    cap = N * (2 * d + 2 * K + 2 * d)
    src = np.empty(cap, dtype=np.int64)
    dst = np.empty(cap, dtype=np.int64)
    rate = np.empty(cap)
    disp = np.empty((cap, d), dtype=np.int64)
    m = 0
    idx = np.zeros(d, dtype=np.int64)
    e = np.zeros(d, dtype=np.int64)
    me = np.zeros(d, dtype=np.int64)
    for n in range(N):
        r = n
        for ax in range(d - 1, -1, -1):
            idx[ax] = r % shape[ax]
            r //= shape[ax]
        # --- axis faces (always present: they also carry the drift outside the range of D) ----------
        for ax in range(d):
            for p in range(d):
                e[p] = 0
            e[ax] = 1
            rho_n = _weight_of(offsets, weights, n, e)
            t, status = _neighbour(idx, e, shape, bc)
            if status == 0 or status == 3:
                rho_t = _weight_of(offsets, weights, t, e)
                rho_h = 0.5 * (rho_n + rho_t)
                z = _face_potential_drop(n, t, e, status, Lval, gradL, Q, gx, rho_n, rho_t)
                at = rho_h * z + 0.5 * (resid[n, ax] + resid[t, ax]) - (rho_t - rho_n)
                k = sg_rate(-at, rho_h)
                if k > 0.0:
                    m = _push(src, dst, rate, disp, m, n, t, k, e, 1)
                k = sg_rate(at, rho_h)
                if k > 0.0:
                    m = _push(src, dst, rate, disp, m, t, n, k, e, -1)
            elif status == 1:
                a_out = rho_n * _cell_potential_drop(n, e, gradL, Q, gx) + resid[n, ax]
                k = 2.0 * sg_rate(-0.5 * a_out, rho_n)
                if k > 0.0:
                    m = _push(src, dst, rate, disp, m, n, -1, k, e, 1)
            if idx[ax] == 0 and bc[ax, 0] == 1:
                a_out = -(rho_n * _cell_potential_drop(n, e, gradL, Q, gx) + resid[n, ax])
                k = 2.0 * sg_rate(-0.5 * a_out, rho_n)
                if k > 0.0:
                    m = _push(src, dst, rate, disp, m, n, -1, k, e, -1)
        # --- other offsets: each undirected edge once ------------------------------------------------
        for kk in range(K):
            w = weights[n, kk]
            if w <= 0.0:
                continue
            nz = 0
            for p in range(d):
                if offsets[n, kk, p] != 0:
                    nz += 1
            if nz <= 1:
                continue  # an axis offset, handled above
            # canonical orientation: first non-zero component positive
            sgn = 1
            for p in range(d):
                if offsets[n, kk, p] != 0:
                    sgn = 1 if offsets[n, kk, p] > 0 else -1
                    break
            for p in range(d):
                e[p] = sgn * offsets[n, kk, p]
                me[p] = -e[p]
            for direction in range(2):
                f = e if direction == 0 else me
                t, status = _neighbour(idx, f, shape, bc)
                if status == 2:
                    continue
                if status == 1:
                    a_out = w * _cell_potential_drop(n, f, gradL, Q, gx)
                    k = sg_rate(-a_out, w)
                    if k > 0.0:
                        m = _push(src, dst, rate, disp, m, n, -1, k, f, 1)
                    continue
                rho_t = _weight_of(offsets, weights, t, f)
                if direction == 1 and rho_t > 0.0:
                    continue  # the cell t = n - e has this offset too: it handles the edge as its +e
                rho_h = 0.5 * (w + rho_t)
                z = _face_potential_drop(n, t, f, status, Lval, gradL, Q, gx, w, rho_t)
                at = rho_h * z - (rho_t - w)
                k = sg_rate(-at, rho_h)
                if k > 0.0:
                    m = _push(src, dst, rate, disp, m, n, t, k, f, 1)
                k = sg_rate(at, rho_h)
                if k > 0.0:
                    m = _push(src, dst, rate, disp, m, t, n, k, f, -1)
    return src[:m], dst[:m], rate[:m], disp[:m]


@njit(cache=True)
def jumps_to_coo(N, src, dst, rate):
    """COO triplets of the generator ``A``: ``A[dst, src] += rate`` and ``A[src, src] -= rate``."""
    M = src.shape[0]
    nout = 0
    for j in range(M):
        if dst[j] >= 0:
            nout += 1
    rows = np.empty(nout + N, dtype=np.int64)
    cols = np.empty(nout + N, dtype=np.int64)
    vals = np.empty(nout + N)
    diag = np.zeros(N)
    q = 0
    for j in range(M):
        diag[src[j]] -= rate[j]
        if dst[j] >= 0:
            rows[q] = dst[j]
            cols[q] = src[j]
            vals[q] = rate[j]
            q += 1
    for n in range(N):
        rows[q] = n
        cols[q] = n
        vals[q] = diag[n]
        q += 1
    return rows, cols, vals


@njit(cache=True)
def jump_current(N, src, dst, rate, disp_phys, P):
    """Cell-centred current: each jump's flow ``rate * P[src]`` along its physical displacement, shared
    half-and-half between the two cells it joins (all of it to ``src`` for a jump out of the domain)."""
    d = disp_phys.shape[1]
    J = np.zeros((N, d))
    for j in range(src.shape[0]):
        f = rate[j] * P[src[j]]
        if dst[j] >= 0:
            for p in range(d):
                J[src[j], p] += 0.5 * f * disp_phys[j, p]
                J[dst[j], p] += 0.5 * f * disp_phys[j, p]
        else:
            for p in range(d):
                J[src[j], p] += f * disp_phys[j, p]
    return J
