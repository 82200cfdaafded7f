"""Numba kernels of the sparse linear algebra (:mod:`fokkerplanck.solvers.linalg`): in-place edits of CSR
matrices, the red-black Schur complement, the diagonal-band reordering, and the Grassmann-Taksar-Heyman (GTH)
elimination on a band (no subtractions, so accurate to round-off in every entry)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def add_to_diagonal(indptr, indices, data, shift):
    """``data[(r, r)] += shift`` for every row ``r``; False (and nothing changed) if some row lacks its
    diagonal entry."""
    N = indptr.shape[0] - 1
    where = np.empty(N, dtype=np.int64)
    for r in range(N):
        where[r] = -1
        for a in range(indptr[r], indptr[r + 1]):
            if indices[a] == r:
                where[r] = a
                break
        if where[r] < 0:
            return False
    for r in range(N):
        data[where[r]] += shift
    return True


@njit(cache=True)
def off_diagonal_rows(indptr, indices, data, rows, position):
    n = rows.shape[0]
    new_ptr = np.zeros(n + 1, dtype=np.int64)
    for q in range(n):
        count = 0
        for a in range(indptr[rows[q]], indptr[rows[q] + 1]):
            if indices[a] != rows[q]:
                count += 1
        new_ptr[q + 1] = new_ptr[q] + count
    new_idx = np.empty(new_ptr[n], dtype=np.int64)
    new_val = np.empty(new_ptr[n])
    for q in range(n):
        r = rows[q]
        k = new_ptr[q]
        for a in range(indptr[r], indptr[r + 1]):
            if indices[a] != r:
                new_idx[k] = position[indices[a]]
                new_val[k] = data[a]
                k += 1
    return new_ptr, new_idx, new_val


@njit(cache=True)
def schur_complement(indptr, indices, data, colour, position, black):
    """CSR arrays (``data, indices, indptr``) of ``S = D_b - M_br D_r^{-1} M_rb`` (see
    :class:`_RedBlackReduction`), columns sorted; None if ``M`` is not red-black bipartite or a red diagonal
    entry is not positive."""
    N = indptr.shape[0] - 1
    diag = np.zeros(N)
    for r in range(N):
        for a in range(indptr[r], indptr[r + 1]):
            c = indices[a]
            if c == r:
                diag[r] = data[a]
            elif colour[c] == colour[r]:
                return None
        if colour[r] == 0 and not diag[r] > 0.0:
            return None
    nb = black.shape[0]
    marker = np.full(nb, -1, dtype=np.int64)
    value = np.zeros(nb)
    cols = np.empty(nb, dtype=np.int64)
    s_ptr = np.zeros(nb + 1, dtype=np.int64)
    s_idx = np.empty(0, dtype=np.int64)
    s_val = np.empty(0)
    for fill in (False, True):
        if fill:
            s_idx = np.empty(s_ptr[nb], dtype=np.int64)
            s_val = np.empty(s_ptr[nb])
        for q in range(nb):
            b = black[q]
            count = 1
            cols[0] = q
            marker[q] = q
            value[q] = diag[b]
            for a in range(indptr[b], indptr[b + 1]):
                k = indices[a]
                if k == b:
                    continue
                f = data[a] / diag[k]  # M_bk / M_kk, k red
                for e in range(indptr[k], indptr[k + 1]):
                    c = indices[e]
                    if c == k:
                        continue
                    p = position[c]  # c black
                    if marker[p] != q:
                        marker[p] = q
                        value[p] = 0.0
                        cols[count] = p
                        count += 1
                    value[p] -= f * data[e]
            if not fill:
                s_ptr[q + 1] = s_ptr[q] + count
                continue
            for i in range(1, count):  # insertion sort of the row's columns
                c = cols[i]
                j = i - 1
                while j >= 0 and cols[j] > c:
                    cols[j + 1] = cols[j]
                    j -= 1
                cols[j + 1] = c
            for i in range(count):
                s_idx[s_ptr[q] + i] = cols[i]
                s_val[s_ptr[q] + i] = value[cols[i]]
    return s_val, s_idx, s_ptr


@njit(cache=True)
def diagonal_links(indptr, indices, rows, n0, n1):
    """Rows whose cell is inside the box (not on its edge), how many of them have a stored entry at a
    diagonal neighbour (cells ``(i +- 1, j +- 1)``), and the entries along ``(1, 1)`` and along ``(1, -1)``."""
    interior, linked, diagonal, anti = 0, 0, 0, 0
    for r in range(indptr.shape[0] - 1):
        i, j = rows[r] // n1, rows[r] % n1
        found = False
        for a in range(indptr[r], indptr[r + 1]):
            c = rows[indices[a]]
            di, dj = c // n1 - i, c % n1 - j
            if (di == 1 or di == -1) and (dj == 1 or dj == -1):
                found = True
                if di == dj:
                    diagonal += 1
                else:
                    anti += 1
        if 0 < i < n0 - 1 and 0 < j < n1 - 1:
            interior += 1
            if found:
                linked += 1
    return interior, linked, diagonal, anti


@njit(cache=True)
def permuted(indptr, indices, data, order, inverse):
    """CSR arrays of ``P M P^T`` (row and column ``k`` = row and column ``order[k]`` of ``M``), columns
    sorted."""
    N = indptr.shape[0] - 1
    new_ptr = np.zeros(N + 1, dtype=np.int64)
    for k in range(N):
        new_ptr[k + 1] = new_ptr[k] + indptr[order[k] + 1] - indptr[order[k]]
    new_idx = np.empty(new_ptr[N], dtype=indices.dtype)
    new_val = np.empty(new_ptr[N])
    for k in range(N):
        q0 = new_ptr[k]
        q = q0
        for a in range(indptr[order[k]], indptr[order[k] + 1]):
            col = inverse[indices[a]]
            val = data[a]
            b = q
            while b > q0 and new_idx[b - 1] > col:  # insertion sort: rows are short
                new_idx[b] = new_idx[b - 1]
                new_val[b] = new_val[b - 1]
                b -= 1
            new_idx[b] = col
            new_val[b] = val
            q += 1
    return new_ptr, new_idx, new_val


@njit(cache=True)
def diagonal_neighbours(c, pos, n1, extra):
    """The rows (in ``M``'s numbering, ascending) of the diagonal neighbours of flat cell ``c``; their count."""
    full = pos.shape[0]
    k = 0
    for off in (-(n1 + 1), -(n1 - 1), n1 - 1, n1 + 1):
        t = c + off
        if 0 <= t < full and pos[t] >= 0:
            col = pos[t]
            j = k
            while j > 0 and extra[j - 1] > col:  # insertion sort (cells need not be ascending)
                extra[j] = extra[j - 1]
                j -= 1
            extra[j] = col
            k += 1
    return k


@njit(cache=True)
def pad_rows(indptr, indices, data, rows, pos, n1):
    """CSR arrays of ``M`` merged, row by row, with zeros at the diagonal neighbours (sorted columns kept
    sorted, no duplicates): one pass counts, a second fills."""
    N = indptr.shape[0] - 1
    extra = np.empty(4, dtype=np.int64)
    new_ptr = np.zeros(N + 1, dtype=np.int64)
    new_idx = np.empty(0, dtype=indices.dtype)
    new_val = np.empty(0)
    for fill in (False, True):
        if fill:
            new_idx = np.empty(new_ptr[N], dtype=indices.dtype)
            new_val = np.empty(new_ptr[N])
        for r in range(N):
            k = diagonal_neighbours(rows[r], pos, n1, extra)
            a, b, q = indptr[r], 0, new_ptr[r]
            while a < indptr[r + 1] or b < k:
                if b == k or (a < indptr[r + 1] and indices[a] <= extra[b]):
                    if b < k and indices[a] == extra[b]:
                        b += 1
                    if fill:
                        new_idx[q] = indices[a]
                        new_val[q] = data[a]
                    a += 1
                else:
                    if fill:
                        new_idx[q] = extra[b]
                        new_val[q] = 0.0
                    b += 1
                q += 1
            if not fill:
                new_ptr[r + 1] = q
    return new_ptr, new_idx, new_val


@njit(cache=True)
def gth_band(band, b):
    """GTH elimination on the band ``band[i, j - i + b] = r_ij`` (overwritten; :func:`gth_eliminate` down to
    state 1, no exits); the stationary vector in the band's numbering, up to a factor, or an empty array if some
    ``s_k`` is zero (not irreducible). Partial results are rescaled when they grow past 1e200 (the recursion is
    linear), so wells far above the first state do not overflow; states below 1e-200 of them may underflow
    to 0."""
    N = band.shape[0]
    s = gth_eliminate(band, b, np.zeros(N), 1)
    if s.size == 0:
        return s
    p = np.zeros(N)
    p[0] = 1.0
    for k in range(1, N):
        acc = 0.0
        for i in range(max(0, k - b), k):
            acc += p[i] * band[i, k - i + b]
        p[k] = acc / s[k]
        if p[k] > 1e200:
            for i in range(k + 1):
                p[i] *= 1e-200
    return p


@njit(cache=True, fastmath={"contract"})  # fused multiply-adds: 1.4x, and no less accurate
def gth_eliminate(band, b, exit_rate, stop):
    """Eliminate the states ``N - 1, ..., stop`` of the chain in the band (``band[i, j - i + b] = r_ij``) with
    exit rates ``exit_rate`` (both overwritten): ``r_ij += r_ik r_kj / d_k``, ``e_i += r_ik e_k / d_k`` with the
    pivot ``d_k = sum_{j < k} r_kj + e_k``, a sum. Returns the pivots, or an empty array if one is zero (a state
    that reaches neither a lower state nor the exit). Afterwards ``band[i, k - i + b]`` (``i < k``) holds the
    multipliers' numerators and ``band[k, j - k + b]`` (``j < k``) the rates row ``k`` was left with."""
    N = band.shape[0]
    d = np.zeros(N)
    r_k = np.empty(b)
    for k in range(N - 1, stop - 1, -1):
        lo = max(0, k - b)
        n = k - lo
        dk = exit_rate[k]
        for t in range(n):
            r_k[t] = band[k, lo - k + b + t]
            dk += r_k[t]
        if not dk > 0.0:
            return np.zeros(0)
        d[k] = dk
        for i in range(lo, k):
            f = band[i, k - i + b]
            if f == 0.0:
                continue
            f /= dk
            exit_rate[i] += f * exit_rate[k]
            row = band[i]
            base = lo - i + b
            for t in range(n):  # lo + t == i lands on the unused diagonal slot
                row[base + t] += f * r_k[t]
    return d


@njit(cache=True, fastmath={"contract"})
def gth_absorbing_solve(band, b, d, rhs):
    """``(diag(sum_j r_kj + e_k) - R) x = rhs`` with the factor of :func:`gth_eliminate`, for a
    non-negative ``rhs`` (copied): forward elimination of ``rhs``, then back substitution, all sums of
    non-negative terms."""
    N = band.shape[0]
    y = rhs.copy()
    for k in range(N - 1, 0, -1):
        if y[k] == 0.0:
            continue
        g = y[k] / d[k]
        for i in range(max(0, k - b), k):
            y[i] += band[i, k - i + b] * g
    x = np.zeros(N)
    for k in range(N):
        acc = y[k]
        for j in range(max(0, k - b), k):
            acc += band[k, j - k + b] * x[j]
        x[k] = acc / d[k]
    return x
