"""Numba kernels of the particle simulators (private; the public API is :mod:`fokkerplanck.particles`).

Everything here is a small, pure ``@njit(cache=True)`` function of plain arrays. Landscapes and noise models
are passed as an integer *kind code* plus a flat ``float64`` parameter array (see :func:`pack_landscape`
and :func:`pack_noise` in :mod:`fokkerplanck.particles`), so a single compiled specialisation of each kernel
serves every model and the kernels can be ``parallel=True`` without passing functions around.

Random numbers
--------------
A counter-based generator: the ``k``-th 64-bit draw of particle ``p`` at step ``s`` is a pure function of
``(seed, p, s, k)`` built from the splitmix64 finaliser (Steele, Lea & Flood 2014)::

    key_p   = mix(mix(seed) ^ mix(p + golden))
    state_0 = mix(key_p + (s + 1) * C)
    u_k     = mix(state_0 + (k + 1) * golden)

so results do not depend on the number of threads or on how the particles are split among them. Normals
come from the 256-layer ziggurat of Marsaglia & Tsang (2000) in the 52-bit form used by NumPy's
``Generator.standard_normal`` (one 64-bit draw per normal 99% of the time); a Box-Muller variant is kept
for the throughput benchmark.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

# --- landscape and noise kind codes -------------------------------------------------------------------
LAND_QUADRATIC = 0  # params: A (d*d, row-major), c (d)
LAND_DEGENERATE = 1  # params: [1, 1, K, eps*lambda_bar0, lambda_0..lambda_{K-1}]   (same layout as 2)
LAND_HIGHDIM = 2  # params: [n_flat, n_sharp, K, eps*lambda_bar0, lambdas (n_sharp*K, row-major)]
LAND_MULTI = 3  # params: [K, d, beta, centers (K*d), C (K*d*d), depths (K)]

NOISE_CONSTANT = 0  # params: S (d*d) with S S^T = 2 D            increment sqrt(dt) S xi
NOISE_ISOTROPIC = 1  # params: [sqrt(2 T)]                          increment sqrt(dt) sqrt(2T) xi
NOISE_HESS_ALIGNED = 2  # params: [sqrt(2 Delta_S)]                    increment sqrt(dt) sqrt(2 Delta_S) H xi
NOISE_HESS_LINEAR = 3  # params: [sqrt(2 Delta)]                      increment sqrt(dt) sqrt(2 Delta) [H]_+^(1/2) xi
NOISE_SHIFT_EXACT = (
    4  # params: [sqrt(2 sigma)]                      theta' = theta - dt grad L(theta - sqrt(2 sigma) xi)
)

ALIVE, DIVERGED, ABSORBED = 0, 1, 2

# --- splitmix64 counter-based generator ------------------------------------------------------------------
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_STEPC = np.uint64(0xD1B54A32D192ED03)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_S8 = np.uint64(8)
_S9 = np.uint64(9)
_U1 = np.uint64(1)
_U255 = np.uint64(255)
_MASK52 = np.uint64(0x000FFFFFFFFFFFFF)
_INV53 = 1.0 / 9007199254740992.0  # 2**-53


@njit(cache=True)
def mix64(z):
    """splitmix64 finaliser: a bijective 64-bit hash."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(cache=True)
def seed_key(seed):
    """64-bit key of a seed. Numba returns it as a Python int: wrap it in ``np.uint64`` before passing it to
    a kernel (a Python int below 2**63 would be typed int64)."""
    return mix64(np.uint64(seed) + _STEPC)


@njit(cache=True)
def particle_key(key, p):
    return mix64(np.uint64(key) ^ mix64(np.uint64(p) + _GOLDEN))


@njit(cache=True)
def step_state(kp, s):
    return mix64(np.uint64(kp) + (np.uint64(s) + _U1) * _STEPC)


@njit(cache=True)
def next_u64(st):
    """Next draw of a stream: returns ``(u64, new_state)``."""
    st = st + _GOLDEN
    return mix64(st), st


@njit(cache=True)
def to_unit(u):
    """Uniform double in [0, 1) from the top 53 bits."""
    return np.float64(u >> _S11) * _INV53


def _ziggurat_tables():
    """Tables of the 256-layer ziggurat for the standard normal (Marsaglia & Tsang 2000; 52-bit variant)."""
    r = 3.6541528853610088
    v = 0.00492867323399
    m1 = 2.0**52
    ki = np.zeros(256, dtype=np.uint64)
    wi = np.zeros(256)
    fi = np.zeros(256)
    dn = tn = r
    q = v / math.exp(-0.5 * dn * dn)
    ki[0] = np.uint64(int((dn / q) * m1))
    ki[1] = np.uint64(0)
    wi[0] = q / m1
    wi[255] = dn / m1
    fi[0] = 1.0
    fi[255] = math.exp(-0.5 * dn * dn)
    for i in range(254, 0, -1):
        dn = math.sqrt(-2.0 * math.log(v / dn + math.exp(-0.5 * dn * dn)))
        ki[i + 1] = np.uint64(int((dn / tn) * m1))
        tn = dn
        fi[i] = math.exp(-0.5 * dn * dn)
        wi[i] = dn / m1
    return ki, wi, fi, r


_KI, _WI, _FI, _ZIG_R = _ziggurat_tables()
_ZIG_INV_R = 1.0 / _ZIG_R


@njit(cache=True)
def _normal_slow(r, st):
    """The rare branches of the ziggurat (about 1% of the draws): wedges and the tail beyond ``R``."""
    while True:
        idx = np.int64(r & _U255)
        r = r >> _S8
        neg = (r & _U1) == _U1
        rabs = (r >> _U1) & _MASK52
        x = np.float64(rabs) * _WI[idx]
        if neg:
            x = -x
        if rabs < _KI[idx]:
            return x, st
        if idx == 0:
            while True:
                u1, st = next_u64(st)
                u2, st = next_u64(st)
                xx = -_ZIG_INV_R * math.log1p(-to_unit(u1))
                yy = -math.log1p(-to_unit(u2))
                if yy + yy > xx * xx:
                    if ((rabs >> _S8) & _U1) == _U1:
                        return -(_ZIG_R + xx), st
                    return _ZIG_R + xx, st
        else:
            u, st = next_u64(st)
            if (_FI[idx - 1] - _FI[idx]) * to_unit(u) + _FI[idx] < math.exp(-0.5 * x * x):
                return x, st
        r, st = next_u64(st)


@njit(cache=True, inline="always")
def normal(st):
    """A standard normal from the stream ``st`` (ziggurat); returns ``(x, new_state)``.

    The 99% fast path (one 64-bit draw, one multiply, one comparison) is inlined into the caller; the rest
    is :func:`_normal_slow`, which continues the same stream."""
    r, st = next_u64(st)
    idx = np.int64(r & _U255)
    rabs = (r >> _S9) & _MASK52
    if rabs < _KI[idx]:
        x = np.float64(rabs) * _WI[idx]
        if ((r >> _S8) & _U1) == _U1:
            x = -x
        return x, st
    return _normal_slow(r, st)


@njit(cache=True)
def normal_pair_box_muller(st):
    """Two standard normals by Box-Muller (benchmark comparison only)."""
    u1, st = next_u64(st)
    u2, st = next_u64(st)
    rad = math.sqrt(-2.0 * math.log1p(-to_unit(u1)))
    ang = 2.0 * math.pi * to_unit(u2)
    return rad * math.cos(ang), rad * math.sin(ang), st


@njit(cache=True, parallel=True)
def fill_normals(out, key, step, p0):
    """``out[i, k]`` = k-th normal of particle ``p0 + i`` at ``step`` (the stream the simulators use)."""
    n, d = out.shape
    for i in prange(n):
        st = step_state(particle_key(key, p0 + i), step)
        for k in range(d):
            x, st = normal(st)
            out[i, k] = x


@njit(cache=True, parallel=True)
def bench_normals(n_per_particle, n_particles, key, method):
    """Throughput benchmark: sum of ``n_per_particle`` normals for each particle.

    method 0: hash + ziggurat, 1: hash + Box-Muller, 2: numba's ``np.random.standard_normal``."""
    out = np.empty(n_particles)
    for i in prange(n_particles):
        acc = 0.0
        if method == 2:
            for _k in range(n_per_particle):
                acc += np.random.standard_normal()  # noqa: NPY002 (numba's own generator, the baseline measured)
        else:
            kp = particle_key(key, i)
            st = step_state(kp, 0)
            if method == 0:
                for _k in range(n_per_particle):
                    x, st = normal(st)
                    acc += x
            else:
                for _k in range(n_per_particle // 2):
                    a, b, st = normal_pair_box_muller(st)
                    acc += a + b
        out[i] = acc
    return out


# --- landscapes: gradient and Hessian -----------------------------------------------------------------------
def scratch_size(kind, params, d):
    """Length of the work array :func:`grad_hess` needs."""
    if kind == LAND_MULTI:
        K = int(params[0])
        return K * (d + 1) + 1
    return 1


@njit(cache=True)
def _valley_polynomial(p, base, K, r):
    """``lambda(r) = sum_n p[base + n] r^n`` (``K`` coefficients), ``dlambda/dr`` and ``2 d^2lambda/dr^2`` by
    Horner's rule: with ``r = |x|^2`` these give ``lambda_i(x)`` and its derivatives in ``x`` on the
    high-dimensional valley."""
    lam = p[base + K - 1]
    dl = 0.0
    ddl = 0.0
    for n in range(K - 2, -1, -1):
        ddl = ddl * r + dl
        dl = dl * r + lam
        lam = lam * r + p[base + n]
    return lam, dl, 2.0 * ddl


@njit(cache=True)
def _grad_hess_valley(p, th, g, H, want_h):
    nf = np.int64(p[0])
    ns = np.int64(p[1])
    K = np.int64(p[2])
    ebar = p[3]
    r = 0.0
    for j in range(nf):
        r += th[j] * th[j]
    if want_h:
        for a in range(nf + ns):
            for b in range(nf + ns):
                H[a, b] = 0.0
    S1 = 0.0
    S2 = 0.0
    for i in range(ns):
        y = th[nf + i]
        lam, dl, ddl = _valley_polynomial(p, 4 + i * K, K, r)
        g[nf + i] = lam * y
        S1 += dl * y * y
        S2 += ddl * y * y
        if want_h:
            H[nf + i, nf + i] = lam
            c = 2.0 * dl * y
            for j in range(nf):
                H[j, nf + i] = c * th[j]
                H[nf + i, j] = c * th[j]
    for j in range(nf):
        g[j] = th[j] * (S1 + ebar)
    if want_h:
        for j in range(nf):
            for k in range(nf):
                H[j, k] = 2.0 * th[j] * th[k] * S2
            H[j, j] += S1 + ebar


@njit(cache=True)
def _highdim_hess_aligned_step(p, th, xi, new, dt, c, lamv, dlv):
    """One step ``new = th - dt grad L + c H xi`` on the high-dimensional valley (``LAND_HIGHDIM``) without
    forming the ``d x d`` Hessian: O(n_flat n_sharp) work instead of O(d^2). With ``r = |x|^2``,
    ``S1 = sum_i lambda_i'(r) y_i^2``, ``S2 = sum_i lambda_i''(r) y_i^2``::

        (H xi)_x = (S1 + eps lambda_bar0) xi_x + x [2 S2 (x . xi_x) + 2 sum_i lambda_i'(r) y_i xi_{y_i}]
        (H xi)_{y_i} = 2 lambda_i'(r) y_i (x . xi_x) + lambda_i(r) xi_{y_i}

    the same matrix as :func:`_grad_hess_valley` builds (equal up to rounding)."""
    nf = np.int64(p[0])
    ns = np.int64(p[1])
    K = np.int64(p[2])
    ebar = p[3]
    r = 0.0
    xdot = 0.0
    for j in range(nf):
        r += th[j] * th[j]
        xdot += th[j] * xi[j]
    S1 = 0.0
    S2 = 0.0
    cross = 0.0
    for i in range(ns):
        y = th[nf + i]
        lam, dl, ddl = _valley_polynomial(p, 4 + i * K, K, r)
        lamv[i] = lam
        dlv[i] = dl
        S1 += dl * y * y
        S2 += ddl * y * y
        cross += dl * y * xi[nf + i]
    a = S1 + ebar
    b = 2.0 * S2 * xdot + 2.0 * cross
    for j in range(nf):
        x = th[j]
        new[j] = x - dt * x * a + c * (a * xi[j] + x * b)
    for i in range(ns):
        y = th[nf + i]
        new[nf + i] = y - dt * lamv[i] * y + c * (2.0 * dlv[i] * y * xdot + lamv[i] * xi[nf + i])


@njit(cache=True)
def _grad_hess_multi(p, th, g, H, want_h, work):
    K = np.int64(p[0])
    d = np.int64(p[1])
    beta = p[2]
    oc = 3
    oC = 3 + K * d
    ob = 3 + K * d + K * d * d
    # work: q (K), then g_k (K*d)
    qmin = np.inf
    for k in range(K):
        q = 0.0
        for a in range(d):
            s = 0.0
            for b in range(d):
                s += p[oC + k * d * d + a * d + b] * (th[b] - p[oc + k * d + b])
            work[K + k * d + a] = s
            q += 0.5 * s * (th[a] - p[oc + k * d + a])
        q += p[ob + k]
        work[k] = q
        if q < qmin:
            qmin = q
    Z = 0.0
    for k in range(K):
        w = math.exp(-beta * (work[k] - qmin))
        work[k] = w
        Z += w
    for k in range(K):
        work[k] /= Z
    for a in range(d):
        s = 0.0
        for k in range(K):
            s += work[k] * work[K + k * d + a]
        g[a] = s
    if want_h:
        for a in range(d):
            for b in range(d):
                s = 0.0
                for k in range(K):
                    pk = work[k]
                    s += pk * (p[oC + k * d * d + a * d + b] - beta * work[K + k * d + a] * work[K + k * d + b])
                H[a, b] = s + beta * g[a] * g[b]


@njit(cache=True)
def grad_hess(kind, p, th, g, H, want_h, work):
    """Write ``grad L(th)`` into ``g`` and, when ``want_h``, the Hessian into ``H``."""
    d = th.shape[0]
    if kind == LAND_QUADRATIC:
        off = d * d
        for a in range(d):
            s = 0.0
            for b in range(d):
                s += p[a * d + b] * (th[b] - p[off + b])
            g[a] = s
        if want_h:
            for a in range(d):
                for b in range(d):
                    H[a, b] = p[a * d + b]
    elif kind == LAND_DEGENERATE or kind == LAND_HIGHDIM:
        _grad_hess_valley(p, th, g, H, want_h)
    else:
        _grad_hess_multi(p, th, g, H, want_h, work)


@njit(cache=True, parallel=True)
def eval_grad_hess(kind, p, pts, ws):
    """Gradients ``(n, d)`` and Hessians ``(n, d, d)`` at the rows of ``pts`` (tests, diagnostics)."""
    n, d = pts.shape
    G = np.empty((n, d))
    Hs = np.empty((n, d, d))
    for i in prange(n):
        work = np.empty(ws)
        grad_hess(kind, p, pts[i], G[i], Hs[i], True, work)
    return G, Hs


# --- small dense linear algebra --------------------------------------------------------------------------------
@njit(cache=True)
def jacobi_eigh(A, w, V, W):
    """Eigen-decomposition ``A = V diag(w) V^T`` of a small symmetric matrix by cyclic Jacobi rotations.

    ``W`` is a work matrix (overwritten); robust for singular and indefinite matrices."""
    d = A.shape[0]
    scale = 0.0
    for i in range(d):
        for j in range(d):
            W[i, j] = A[i, j]
            V[i, j] = 1.0 if i == j else 0.0
            scale = max(scale, abs(A[i, j]))
    for _sweep in range(50):
        off = 0.0
        for i in range(d):
            for j in range(i + 1, d):
                off += W[i, j] * W[i, j]
        if off <= (1e-32 * scale * scale) or not off > 0.0:
            break
        for p in range(d - 1):
            for q in range(p + 1, d):
                apq = W[p, q]
                if apq == 0.0:
                    continue
                theta = (W[q, q] - W[p, p]) / (2.0 * apq)
                if abs(theta) > 1e150:
                    t = 0.5 / theta
                else:
                    t = 1.0 / (abs(theta) + math.sqrt(theta * theta + 1.0))
                    if theta < 0.0:
                        t = -t
                c = 1.0 / math.sqrt(t * t + 1.0)
                s = t * c
                for k in range(d):
                    akp = W[k, p]
                    akq = W[k, q]
                    W[k, p] = c * akp - s * akq
                    W[k, q] = s * akp + c * akq
                for k in range(d):
                    apk = W[p, k]
                    aqk = W[q, k]
                    W[p, k] = c * apk - s * aqk
                    W[q, k] = s * apk + c * aqk
                for k in range(d):
                    vkp = V[k, p]
                    vkq = V[k, q]
                    V[k, p] = c * vkp - s * vkq
                    V[k, q] = s * vkp + c * vkq
    for i in range(d):
        w[i] = W[i, i]


@njit(cache=True)
def psd_cholesky(D, L):
    """Lower-triangular ``L`` with ``L L^T = D`` for symmetric PSD ``D``, singular allowed: a pivot that is
    zero to round-off gives a zero column. Returns False when a pivot is clearly negative (D not PSD)."""
    d = D.shape[0]
    scale = 0.0
    for i in range(d):
        scale = max(scale, abs(D[i, i]))
    tol = 1e-12 * scale
    ok = True
    for j in range(d):
        for i in range(d):
            L[i, j] = 0.0
    for j in range(d):
        s = D[j, j]
        for k in range(j):
            s -= L[j, k] * L[j, k]
        if s <= tol:
            if s < -1e-8 * scale:
                ok = False
            continue
        ljj = math.sqrt(s)
        L[j, j] = ljj
        for i in range(j + 1, d):
            s = D[i, j]
            for k in range(j):
                s -= L[i, k] * L[j, k]
            L[i, j] = s / ljj
    return ok


@njit(cache=True, parallel=True)
def batch_psd_cholesky(D):
    """:func:`psd_cholesky` on a stack ``(n, d, d)``; returns ``(L, n_not_psd)``."""
    n, d, _ = D.shape
    L = np.zeros((n, d, d))
    bad = np.zeros(n, dtype=np.int64)
    for i in prange(n):
        if not psd_cholesky(D[i], L[i]):
            bad[i] = 1
    return L, bad.sum()


# --- walls and bookkeeping -------------------------------------------------------------------------------------
@njit(cache=True)
def apply_walls(x, lower, upper, bc):
    """Map ``x`` back into the box in place: reflect (mirror), wrap (periodic); return True when it crossed an
    absorbing wall (``x`` is then clipped onto that wall)."""
    d = x.shape[0]
    for j in range(d):
        lo = lower[j]
        hi = upper[j]
        L = hi - lo
        inside = False
        for _it in range(64):
            v = x[j]
            if v < lo:
                code = bc[j, 0]
            elif v > hi:
                code = bc[j, 1]
            else:
                inside = True
                break
            if code == 2:
                v = v - L * math.floor((v - lo) / L)
                if v >= hi or v < lo:
                    v = lo
                x[j] = v
            elif code == 0:
                x[j] = 2.0 * lo - v if v < lo else 2.0 * hi - v
            else:
                x[j] = lo if v < lo else hi
                return True
        if not inside:
            x[j] = min(max(x[j], lo), hi)
    return False


@njit(cache=True)
def _check_step(th, new, thr2, lower, upper, bc, use_walls):
    """0: accepted (``th`` updated), 1: diverged (``th`` kept), 2: absorbed (``th`` = clipped exit point)."""
    d = th.shape[0]
    r2 = 0.0
    for a in range(d):
        r2 += new[a] * new[a]
    if not r2 <= thr2:
        return DIVERGED
    absorbed = False
    if use_walls:
        absorbed = apply_walls(new, lower, upper, bc)
    for a in range(d):
        th[a] = new[a]
    return ABSORBED if absorbed else ALIVE


# --- the simulators ------------------------------------------------------------------------------------------------
@njit(cache=True, parallel=True)
def run_chunk(
    pos,
    status,
    event_step,
    land_kind,
    land_p,
    ws,
    noise_kind,
    noise_p,
    dt,
    step0,
    n_steps,
    key,
    lower,
    upper,
    bc,
    use_walls,
    thr,
    n_blocks,
):
    """Advance every live particle by ``n_steps`` steps of size ``dt`` (steps ``step0 .. step0+n_steps-1``).

    Euler-Maruyama (Ito) ``theta' = theta - dt grad L(theta) + sqrt(dt) G(theta) xi`` with the noise
    amplitude ``G`` (``G G^T = 2 D``) of ``noise_kind``; the random-shift SGD of PRL Eq. (7) is the case
    ``dt = eta``, ``G = sqrt(2 eta sigma) H`` (linear shift) or ``NOISE_SHIFT_EXACT``.
    ``status``: 0 alive, 1 diverged (frozen at its last finite position), 2 absorbed; ``event_step`` is the
    step count at which the status changed.

    Performance note: numba does not inline calls between compiled functions and every array argument of a
    call costs atomic reference counting, so the common path (quadratic landscape, divergence check, walls
    not touched) is written out here; only the heavier landscapes, the eigen-decomposition and an actual
    wall crossing go through calls."""
    n, d = pos.shape
    sqdt = math.sqrt(dt)
    thr2 = thr * thr
    want_h = noise_kind == NOISE_HESS_ALIGNED or noise_kind == NOISE_HESS_LINEAR
    amp = noise_p[0]
    # the high-dimensional valley with Hessian-aligned noise (the PRL's SGD, N_F = 100): H xi in O(d)
    structured = land_kind == LAND_HIGHDIM and noise_kind == NOISE_HESS_ALIGNED
    n_sh = np.int64(land_p[1]) if land_kind == LAND_HIGHDIM else 1
    per = (n + n_blocks - 1) // n_blocks
    for blk in prange(n_blocks):
        i0 = blk * per
        i1 = min(n, i0 + per)
        th = np.empty(d)
        new = np.empty(d)
        g = np.empty(d)
        xi = np.empty(d)
        sh = np.empty(d)
        H = np.empty((d, d))
        V = np.empty((d, d))
        W = np.empty((d, d))
        w = np.empty(d)
        work = np.empty(ws)
        lamv = np.empty(n_sh)
        dlv = np.empty(n_sh)
        # block-local copies: reference counting on arrays shared between threads is slow (cache-line bouncing)
        lp = land_p.copy()
        npr = noise_p.copy()
        lo = lower.copy()
        hi = upper.copy()
        bcl = bc.copy()
        for i in range(i0, i1):
            if status[i] != ALIVE:
                continue
            for a in range(d):
                th[a] = pos[i, a]
            kp = particle_key(key, i)
            for s in range(step0, step0 + n_steps):
                st = step_state(kp, s)
                for a in range(d):
                    x, st = normal(st)
                    xi[a] = x
                # ---- gradient (and Hessian) at theta, or at the shifted point for the exact-shift SGD
                if structured:
                    _highdim_hess_aligned_step(lp, th, xi, new, dt, sqdt * amp, lamv, dlv)
                else:
                    src = th
                    if noise_kind == NOISE_SHIFT_EXACT:
                        for a in range(d):
                            sh[a] = th[a] - amp * xi[a]
                        src = sh
                    # written out, not grad_hess(...): one more call level per step measured 2.5x slower
                    # (3D constant-noise SDE, 26 -> 10 M particle-steps/s)
                    if land_kind == LAND_QUADRATIC:
                        off = d * d
                        for a in range(d):
                            acc = 0.0
                            for b in range(d):
                                acc += lp[a * d + b] * (src[b] - lp[off + b])
                            g[a] = acc
                        if want_h:
                            for a in range(d):
                                for b in range(d):
                                    H[a, b] = lp[a * d + b]
                    elif land_kind == LAND_MULTI:
                        _grad_hess_multi(lp, src, g, H, want_h, work)
                    else:
                        _grad_hess_valley(lp, src, g, H, want_h)
                    # ---- the step
                    if noise_kind == NOISE_SHIFT_EXACT:
                        for a in range(d):
                            new[a] = th[a] - dt * g[a]
                    elif noise_kind == NOISE_ISOTROPIC:
                        c = sqdt * amp
                        for a in range(d):
                            new[a] = th[a] - dt * g[a] + c * xi[a]
                    elif noise_kind == NOISE_CONSTANT:
                        for a in range(d):
                            acc = 0.0
                            for b in range(d):
                                acc += npr[a * d + b] * xi[b]
                            new[a] = th[a] - dt * g[a] + sqdt * acc
                    elif noise_kind == NOISE_HESS_ALIGNED:
                        c = sqdt * amp
                        for a in range(d):
                            acc = 0.0
                            for b in range(d):
                                acc += H[a, b] * xi[b]
                            new[a] = th[a] - dt * g[a] + c * acc
                    else:  # NOISE_HESS_LINEAR: G = sqrt(2 Delta) [H]_+^(1/2)
                        # symmetric root V diag(sqrt([w]_+)) V^T: unique, so independent of the eigenvector order/sign
                        jacobi_eigh(H, w, V, W)
                        for b in range(d):
                            acc = 0.0
                            for a in range(d):
                                acc += V[a, b] * xi[a]
                            sh[b] = acc * (math.sqrt(w[b]) if w[b] > 0.0 else 0.0)
                        for b in range(d):
                            xi[b] = sh[b]
                        c = sqdt * amp
                        for a in range(d):
                            acc = 0.0
                            for b in range(d):
                                acc += V[a, b] * xi[b]
                            new[a] = th[a] - dt * g[a] + c * acc
                # ---- divergence (NaN fails the comparison), walls, acceptance
                r2 = 0.0
                outside = False
                for a in range(d):
                    r2 += new[a] * new[a]
                    if use_walls and (new[a] < lo[a] or new[a] > hi[a]):
                        outside = True
                if not r2 <= thr2:
                    status[i] = DIVERGED
                    event_step[i] = s + 1
                    break
                if outside:
                    if apply_walls(new, lo, hi, bcl):
                        for a in range(d):
                            th[a] = new[a]
                        status[i] = ABSORBED
                        event_step[i] = s + 1
                        break
                for a in range(d):
                    th[a] = new[a]
            for a in range(d):
                pos[i, a] = th[a]


@njit(cache=True, parallel=True)
def finish_step(pos, new, status, event_step, step, lower, upper, bc, use_walls, thr):
    """Bookkeeping of one step computed outside numba (the numpy fallback): divergence, walls, freezing."""
    n, d = pos.shape
    thr2 = thr * thr
    for i in prange(n):
        if status[i] != ALIVE:
            continue
        code = _check_step(pos[i], new[i], thr2, lower, upper, bc, use_walls)
        if code != ALIVE:
            status[i] = code
            event_step[i] = step + 1


@njit(cache=True, parallel=True)
def run_chunk_2d(
    pos,
    status,
    event_step,
    land_kind,
    land_p,
    noise_kind,
    noise_p,
    dt,
    step0,
    n_steps,
    key,
    lower,
    upper,
    bc,
    use_walls,
    thr,
    n_blocks,
):
    """Two-dimensional specialisation of :func:`run_chunk` with the state in scalars (about 2-3x faster:
    small heap arrays keep LLVM from holding the state in registers). Landscapes: quadratic and the
    degenerate valley (``LAND_DEGENERATE`` or ``LAND_HIGHDIM`` with one flat and one sharp variable);
    all noise kinds. Same random stream and the same arithmetic as :func:`run_chunk`."""
    n = pos.shape[0]
    sqdt = math.sqrt(dt)
    thr2 = thr * thr
    want_h = noise_kind == NOISE_HESS_ALIGNED or noise_kind == NOISE_HESS_LINEAR
    amp = noise_p[0]
    c_amp = sqdt * amp
    quad = land_kind == LAND_QUADRATIC
    if quad:
        a00 = land_p[0]
        a01 = land_p[1]
        a10 = land_p[2]
        a11 = land_p[3]
        c0 = land_p[4]
        c1 = land_p[5]
        K = 0
        ebar = 0.0
    else:
        a00 = a01 = a10 = a11 = c0 = c1 = 0.0
        K = np.int64(land_p[2])
        ebar = land_p[3]
    if noise_kind == NOISE_CONSTANT:
        s00 = sqdt * noise_p[0]
        s01 = sqdt * noise_p[1]
        s10 = sqdt * noise_p[2]
        s11 = sqdt * noise_p[3]
    else:
        s00 = s01 = s10 = s11 = 0.0
    lo0 = lower[0]
    lo1 = lower[1]
    hi0 = upper[0]
    hi1 = upper[1]
    per = (n + n_blocks - 1) // n_blocks
    for blk in prange(n_blocks):
        i0 = blk * per
        i1 = min(n, i0 + per)
        lam_c = land_p[4 : 4 + K].copy()
        wbuf = np.empty(2)
        lo = lower.copy()
        hi = upper.copy()
        bcl = bc.copy()
        for i in range(i0, i1):
            if status[i] != ALIVE:
                continue
            x = pos[i, 0]
            y = pos[i, 1]
            kp = particle_key(key, i)
            for s in range(step0, step0 + n_steps):
                st = step_state(kp, s)
                z0, st = normal(st)
                z1, st = normal(st)
                px = x
                py = y
                if noise_kind == NOISE_SHIFT_EXACT:
                    px = x - amp * z0
                    py = y - amp * z1
                if quad:
                    gx = a00 * (px - c0) + a01 * (py - c1)
                    gy = a10 * (px - c0) + a11 * (py - c1)
                    hxx = a00
                    hxy = a01
                    hyy = a11
                else:
                    r = px * px
                    lam = lam_c[K - 1]
                    dl = 0.0
                    ddl = 0.0
                    for m in range(K - 2, -1, -1):
                        ddl = ddl * r + dl
                        dl = dl * r + lam
                        lam = lam * r + lam_c[m]
                    ddl *= 2.0
                    y2 = py * py
                    gx = px * (dl * y2 + ebar)
                    gy = lam * py
                    hxx = dl * y2 + ebar + 2.0 * r * ddl * y2
                    hxy = 2.0 * px * dl * py
                    hyy = lam
                nx = x - dt * gx
                ny = y - dt * gy
                if noise_kind == NOISE_ISOTROPIC:
                    nx += c_amp * z0
                    ny += c_amp * z1
                elif noise_kind == NOISE_CONSTANT:
                    nx += s00 * z0 + s01 * z1
                    ny += s10 * z0 + s11 * z1
                elif noise_kind == NOISE_HESS_ALIGNED:
                    nx += c_amp * (hxx * z0 + hxy * z1)
                    ny += c_amp * (hxy * z0 + hyy * z1)
                elif want_h:  # NOISE_HESS_LINEAR, closed-form 2x2 eigen-decomposition
                    mid = 0.5 * (hxx + hyy)
                    rad = math.sqrt(0.25 * (hxx - hyy) * (hxx - hyy) + hxy * hxy)
                    w1 = mid + rad
                    w2 = mid - rad
                    phi = 0.5 * math.atan2(2.0 * hxy, hxx - hyy)
                    cs = math.cos(phi)
                    sn = math.sin(phi)
                    e1 = (math.sqrt(w1) if w1 > 0.0 else 0.0) * (cs * z0 + sn * z1)
                    e2 = (math.sqrt(w2) if w2 > 0.0 else 0.0) * (cs * z1 - sn * z0)
                    nx += c_amp * (cs * e1 - sn * e2)
                    ny += c_amp * (sn * e1 + cs * e2)
                if not nx * nx + ny * ny <= thr2:
                    status[i] = DIVERGED
                    event_step[i] = s + 1
                    break
                if use_walls and (nx < lo0 or nx > hi0 or ny < lo1 or ny > hi1):
                    wbuf[0] = nx
                    wbuf[1] = ny
                    absorbed = apply_walls(wbuf, lo, hi, bcl)
                    nx = wbuf[0]
                    ny = wbuf[1]
                    if absorbed:
                        x = nx
                        y = ny
                        status[i] = ABSORBED
                        event_step[i] = s + 1
                        break
                x = nx
                y = ny
            pos[i, 0] = x
            pos[i, 1] = y
