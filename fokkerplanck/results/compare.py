"""Distances between two densities on the same grid.

``compare(a, b)`` returns a dict of plain floats (and short lists), ready for ``result.json``:

==================  ===========================================================================
key                 meaning
==================  ===========================================================================
``l1``              ``∫ |a - b|`` (cell sum times cell volume), after normalising both to mass 1
``total_variation`` ``l1 / 2``
``max_abs``         ``max |a - b|`` over cells
``hellinger``       ``sqrt(1 - ∫ sqrt(a b))`` (0 identical, 1 disjoint)
``ks``              per axis: ``max |CDF_a - CDF_b|`` of the marginals (at cell faces)
``mean_diff``       ``<theta>_a - <theta>_b`` (list), ``mean_diff_norm`` its Euclidean norm
``cov_diff``        Frobenius norm of ``Cov_a - Cov_b``
``mass_a/mass_b``   the masses before normalisation
==================  ===========================================================================

When either density carries per-cell standard errors (``Density.stderr``, e.g. a particle histogram), the
combined error ``s = sqrt(se_a^2 + se_b^2)`` gives ``z = (a - b) / s`` on cells with ``s > 0`` and

* ``frac_within_3se``: fraction of those cells with ``|z| <= 3`` (≈ 0.997 for pure noise),
* ``chi2_per_cell``: mean of ``z^2`` (≈ 1 for pure noise; much larger means a real difference),
* ``expected_l1_noise``: ``sqrt(2/pi) ∫ s``, the L1 distance pure noise of that size would give,
* ``l1_over_noise``: ``l1 / expected_l1_noise`` (≈ 1 when the difference is statistical).
"""

from __future__ import annotations

import numpy as np

from ..model.density import Density


def _check_same_grid(a: Density, b: Density):
    for name, d in (("a", a), ("b", b)):
        if not isinstance(d, Density):
            raise TypeError(f"compare: {name} must be a fokkerplanck.Density, got {type(d).__name__}")
    ga, gb = a.grid, b.grid
    if ga == gb:
        return
    if ga.ndim != gb.ndim:
        raise ValueError(f"compare: grids differ in dimension ({ga.ndim} vs {gb.ndim})")
    for i, (ax, bx) in enumerate(zip(ga.axes, gb.axes)):
        if ax != bx:
            raise ValueError(f"compare: grids differ on axis {i}: (lower, upper, cells) = {ax} vs {bx}")
    raise ValueError(f"compare: grids differ in boundary conditions: {ga.bc} vs {gb.bc}")


def _ks(pa: np.ndarray, pb: np.ndarray, grid) -> list[float]:
    h = grid.spacing
    out = []
    for ax in range(grid.ndim):
        drop = tuple(i for i in range(grid.ndim) if i != ax)
        ma = pa.sum(axis=drop) * grid.cell_volume if drop else pa * h[0]
        mb = pb.sum(axis=drop) * grid.cell_volume if drop else pb * h[0]
        out.append(float(np.max(np.abs(np.cumsum(ma) - np.cumsum(mb)))))
    return out


def compare(a: Density, b: Density) -> dict:
    """Distances between densities ``a`` and ``b`` on the same grid (see the module docstring).

    Raises ``ValueError`` naming the mismatch (dimension, axis bounds/cells, or walls) when the grids differ."""
    _check_same_grid(a, b)
    grid = a.grid
    vol = grid.cell_volume
    ma, mb = a.values.sum() * vol, b.values.sum() * vol
    if not (ma > 0 and mb > 0):
        raise ValueError(f"compare: densities must have positive mass (got {ma:g} and {mb:g})")
    pa, pb = a.values / ma, b.values / mb
    diff = pa - pb
    l1 = float(np.abs(diff).sum() * vol)
    bc = float(np.sqrt(np.clip(pa, 0, None) * np.clip(pb, 0, None)).sum() * vol)
    out = {
        "l1": l1,
        "total_variation": 0.5 * l1,
        "max_abs": float(np.abs(diff).max()),
        "hellinger": float(np.sqrt(max(1.0 - bc, 0.0))),
        "ks": _ks(pa, pb, grid),
    }
    na, nb = Density(grid, pa), Density(grid, pb)
    md = na.mean() - nb.mean()
    out["mean_diff"] = md.tolist()
    out["mean_diff_norm"] = float(np.linalg.norm(md))
    out["cov_diff"] = float(np.linalg.norm(na.cov() - nb.cov()))
    out["mass_a"], out["mass_b"] = float(ma), float(mb)
    if a.stderr is not None or b.stderr is not None:
        var = np.zeros(grid.shape)
        if a.stderr is not None:
            var = var + (a.stderr / ma) ** 2
        if b.stderr is not None:
            var = var + (b.stderr / mb) ** 2
        s = np.sqrt(var)
        ok = s > 0
        if ok.any():
            z = diff[ok] / s[ok]
            out["frac_within_3se"] = float(np.mean(np.abs(z) <= 3.0))
            out["chi2_per_cell"] = float(np.mean(z * z))
            out["n_cells_with_se"] = int(ok.sum())
        expected = float(np.sqrt(2 / np.pi) * s.sum() * vol)
        out["expected_l1_noise"] = expected
        out["l1_over_noise"] = float(l1 / expected) if expected > 0 else float("inf")
    return out
