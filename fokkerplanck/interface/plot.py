"""Matplotlib figures of densities, marginals, effective potentials and parameter sweeps.

The functions build :class:`matplotlib.figure.Figure` objects directly (no ``pyplot``, no global backend
switch): saving them renders with the Agg backend, so they work on machines without a display, and importing
this module does not change the backend of an interactive session. Colours are colour-blind safe: the
``cividis`` / ``viridis`` colormaps and the Okabe-Ito palette for lines, with distinct line styles as well.

Each function takes an optional ``ax`` to draw into; without it a new figure is made. Every function returns
the figure; :func:`save` writes it to a PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # matplotlib is imported when a figure is made: it is half of ``import fokkerplanck``'s time
    from matplotlib.figure import Figure

#: Okabe & Ito (2008) colour-blind-safe palette
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
_STYLES = ("-", "--", ":", "-.")

__all__ = [
    "density_heatmap",
    "marginals",
    "effective_potential",
    "phase_diagram",
    "sgd_phase_diagram",
    "sweep_curve",
    "flatness_curves",
    "evolution",
    "overview",
    "save",
    "OKABE_ITO",
]


def _axes(ax, figsize=(6.0, 4.0)):
    if ax is not None:
        return ax.figure, ax
    fig = _figure(figsize)
    return fig, fig.add_subplot()


def _figure(figsize) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def save(fig: Figure, path, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG (Agg backend) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def _axis_label(i: int, names=None) -> str:
    if names is not None:
        return names[i]
    return ("x", "y", "z")[i] if i < 3 else f"theta{i}"


def density_heatmap(
    density,
    landscape=None,
    *,
    ax=None,
    cmap: str = "cividis",
    n_contours: int = 8,
    log: bool = False,
    title: str | None = None,
    axis_names=None,
) -> Figure:
    """Heat map of a 2D density with contour lines of the loss landscape ``L`` (when given).

    ``log=True`` shows ``log10 P`` (values below ``1e-12`` of the peak are clipped). Contour levels of ``L``
    are spaced quadratically from its minimum on the grid, so that they resolve the valley floor."""
    grid = density.grid
    if grid.ndim != 2:
        raise ValueError(f"density_heatmap needs a 2D density, got {grid.ndim}D (take .marginal((i, j)) first)")
    fig, ax = _axes(ax, (6.4, 4.2))
    x, y = grid.edges
    v = np.asarray(density.values, dtype=float)
    label = "P"
    if log:
        v = np.log10(np.clip(v, v.max() * 1e-12, None))
        label = "log10 P"
    mesh = ax.pcolormesh(x, y, v.T, cmap=cmap, shading="flat", rasterized=True)
    fig.colorbar(mesh, ax=ax, label=label)
    if landscape is not None and n_contours > 0:
        cx, cy = grid.centers
        L = np.asarray(landscape.loss(grid.mesh()), dtype=float)
        lo, hi = float(L.min()), float(np.quantile(L, 0.9))
        if hi > lo:
            levels = lo + (hi - lo) * np.linspace(0.0, 1.0, n_contours + 1)[1:] ** 2
            cs = ax.contour(cx, cy, L.T, levels=levels, colors="white", linewidths=0.6, alpha=0.7)
            ax.clabel(cs, fontsize=6, fmt="%.2g")
    if axis_names is None and grid.frame is not None:
        axis_names = ("xi0 (frame)", "xi1 (frame)")  # the cells, and so the picture, are in the frame's xi
    ax.set_xlabel(_axis_label(0, axis_names))
    ax.set_ylabel(_axis_label(1, axis_names))
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def _curve(obj, axis: int):
    """``(x, p, stderr)`` of a Density (marginalised on ``axis``) or an ``(x, p)`` pair."""
    if hasattr(obj, "grid") and hasattr(obj, "values"):
        m = obj.marginal(axis) if obj.grid.ndim > 1 else obj
        return m.grid.centers[0], np.asarray(m.values, dtype=float), m.stderr, m.grid.edges[0]
    x, p = obj[0], obj[1]
    return np.asarray(x, dtype=float), np.asarray(p, dtype=float), None, None


def marginals(
    curves: dict, axis: int = 0, *, ax=None, title: str | None = None, xlabel: str | None = None, log: bool = False
) -> Figure:
    """The marginal densities along ``axis`` of several results on one axis.

    ``curves`` maps labels to :class:`~fokkerplanck.model.density.Density` objects (marginalised here) or to
    ``(x, p)`` pairs. Densities that carry standard errors (particle histograms) are drawn as steps with a
    shaded band of two standard errors; the others as lines, in the Okabe-Ito colours and distinct styles."""
    fig, ax = _axes(ax)
    for k, (label, obj) in enumerate(curves.items()):
        x, p, se, edges = _curve(obj, axis)
        color = OKABE_ITO[k % len(OKABE_ITO)]
        if se is not None and edges is not None:
            ax.stairs(p, edges, color=color, lw=1.0, label=label)
            ax.fill_between(x, np.clip(p - 2 * se, 0, None), p + 2 * se, color=color, alpha=0.25, lw=0, step="mid")
        else:
            ax.plot(
                x,
                p,
                _STYLES[k % len(_STYLES)],
                color=color,
                lw=1.5 if k == 0 else 2.0,
                label=label,
                zorder=2 if k == 0 else 3,
            )
    ax.set_xlabel(xlabel or _axis_label(axis))
    ax.set_ylabel(f"P({xlabel or _axis_label(axis)})")
    if log:
        ax.set_yscale("log")
    ax.legend(frameon=False, fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def effective_potential(
    curves: dict, scale: float, axis: int = 0, *, ax=None, title: str | None = None, xlabel: str | None = None
) -> Figure:
    """``L_eff(x) = -scale ln P(x)`` (PRL Eq. 12, applied to the marginal along ``axis``), each curve shifted
    to minimum 0. ``curves`` as in :func:`marginals`; ``(x, L)`` pairs whose label starts with ``"L:"`` are
    drawn as given (e.g. a closed-form ``L_SGD``)."""
    fig, ax = _axes(ax)
    for k, (label, obj) in enumerate(curves.items()):
        color = OKABE_ITO[k % len(OKABE_ITO)]
        if isinstance(label, str) and label.startswith("L:"):
            x, L = np.asarray(obj[0], dtype=float), np.asarray(obj[1], dtype=float)
            label = label[2:].strip()
        else:
            x, p, _, _ = _curve(obj, axis)
            with np.errstate(divide="ignore"):
                L = -float(scale) * np.log(p)
        ok = np.isfinite(L)
        if not ok.any():
            continue
        ax.plot(x[ok], L[ok] - L[ok].min(), _STYLES[k % len(_STYLES)], color=color, lw=1.4, label=label)
    ax.set_xlabel(xlabel or _axis_label(axis))
    ax.set_ylabel(f"L_eff = -{scale:g} ln P  (min 0)")
    ax.legend(frameon=False, fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def _cell_edges(v, log: bool) -> np.ndarray:
    """Cell edges around sample points ``v`` (midpoints, in log space when ``log``; the end cells mirrored)."""
    v = np.asarray(v, dtype=float)
    if v.size == 1:
        return np.array([v[0] * 0.9, v[0] * 1.1]) if log else np.array([v[0] - 0.5, v[0] + 0.5])
    w = np.log(v) if log else v
    mid = 0.5 * (w[1:] + w[:-1])
    e = np.concatenate([[w[0] - (mid[0] - w[0])], mid, [w[-1] + (w[-1] - mid[-1])]])
    return np.exp(e) if log else e


def phase_diagram(
    x,
    y,
    Z,
    *,
    ax=None,
    xlabel: str = "",
    ylabel: str = "",
    zlabel: str = "",
    logx: bool = False,
    logy: bool = False,
    cmap: str = "viridis",
    title: str | None = None,
    marks=None,
) -> Figure:
    """A two-parameter sweep: ``Z[i, j]`` at ``(x[i], y[j])`` as a colour map (cell per sweep point).

    ``marks`` is an optional ``(n, 2)`` array of points to overlay (e.g. a theoretical transition line); NaN
    entries of ``Z`` (diverged or failed points) are left blank."""
    x, y, Z = np.asarray(x, dtype=float), np.asarray(y, dtype=float), np.asarray(Z, dtype=float)
    if Z.shape != (x.size, y.size):
        raise ValueError(f"phase_diagram: Z has shape {Z.shape}, expected ({x.size}, {y.size})")
    fig, ax = _axes(ax, (5.6, 4.2))
    mesh = ax.pcolormesh(
        _cell_edges(x, logx), _cell_edges(y, logy), np.ma.masked_invalid(Z).T, cmap=cmap, shading="flat"
    )
    fig.colorbar(mesh, ax=ax, label=zlabel)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if marks is not None:
        m = np.asarray(marks, dtype=float)
        ax.plot(m[:, 0], m[:, 1], "w--", lw=1.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def sgd_phase_diagram(
    sigmas,
    etas,
    Z,
    *,
    diverged=None,
    diverged_threshold: float = 0.5,
    transition=None,
    transition_curve=None,
    eta_max=None,
    ax=None,
    zlabel: str = "flatness F",
    cmap: str = "viridis",
    log_color: bool = False,
    title: str | None = None,
) -> Figure:
    """The (sigma, eta) phase diagram of SGD hyperparameters (PRL Figs. 3c and 5b): ``Z[i, j]`` at
    ``sigma = sigmas[i]``, ``eta = etas[j]`` (the ``[sigma, eta]`` tables of
    :func:`~fokkerplanck.sgd.phase_diagrams.prl_phase_diagram` /
    :func:`~fokkerplanck.sgd.phase_diagrams.highdim_phase_diagram`) as a
    colour map on log axes, sigma across and eta up.

    * ``diverged``: the diverged fraction per cell; cells with at least ``diverged_threshold`` (and cells
      whose ``Z`` is NaN) are drawn grey -- the PRL's divergence region.
    * ``transition``: a noise level ``Delta_S*``; drawn as the line ``eta sigma = Delta_S*`` (PRL Appendix:
      ``Delta_S* = -eps / lambda_1``).
    * ``transition_curve``: ``(sigma*, eta)`` pairs of an eta-dependent transition, drawn as a line.
    * ``eta_max``: a learning rate drawn as a horizontal line (e.g. ``2 / lambda_max(0)``, where
      ``eta <lambda> < 2`` fails at the global minimum).
    * ``log_color``: a logarithmic colour scale (search times span decades: PRL Fig. 5d)."""
    import matplotlib.colors as mcolors
    from matplotlib.patches import Patch
    from matplotlib.ticker import NullFormatter

    s, e, Z = np.asarray(sigmas, dtype=float), np.asarray(etas, dtype=float), np.asarray(Z, dtype=float)
    if Z.shape != (s.size, e.size):
        raise ValueError(
            f"sgd_phase_diagram: Z has shape {Z.shape}, expected (len(sigmas), len(etas)) = ({s.size}, {e.size})"
        )
    if np.any(s <= 0) or np.any(e <= 0):
        raise ValueError("sgd_phase_diagram: sigmas and etas must be positive (log axes)")
    grey = ~np.isfinite(Z)
    if diverged is not None:
        d = np.asarray(diverged, dtype=float)
        if d.shape != Z.shape:
            raise ValueError(f"sgd_phase_diagram: diverged has shape {d.shape}, expected {Z.shape}")
        grey |= np.nan_to_num(d, nan=1.0) >= float(diverged_threshold)
    fig, ax = _axes(ax, (6.0, 4.4))
    xe, ye = _cell_edges(s, True), _cell_edges(e, True)
    shown = np.ma.masked_array(Z, mask=grey)
    norm = None
    if log_color:
        pos = Z[~grey & np.isfinite(Z) & (Z > 0)]
        if pos.size:
            norm = mcolors.LogNorm(vmin=float(pos.min()), vmax=float(max(pos.max(), pos.min() * 1.0001)))
        shown = np.ma.masked_array(Z, mask=grey | ~(Z > 0))
    mesh = ax.pcolormesh(xe, ye, shown.T, cmap=cmap, shading="flat", norm=norm)
    fig.colorbar(mesh, ax=ax, label=zlabel)
    handles = []
    if grey.any():
        ax.pcolormesh(
            xe,
            ye,
            np.ma.masked_array(np.ones_like(Z), mask=~grey).T,
            cmap=mcolors.ListedColormap(["#9a9a9a"]),
            shading="flat",
            vmin=0,
            vmax=1,
        )
        handles.append(
            Patch(
                color="#9a9a9a",
                label=f"diverged (\u2265 {diverged_threshold:.0%} of particles)"
                if diverged is not None
                else "diverged",
            )
        )
    lo, hi = xe[0], xe[-1]
    if transition is not None and transition > 0:
        sg = np.geomspace(lo, hi, 200)
        (ln,) = ax.plot(
            sg,
            float(transition) / sg,
            ls=":",
            color=OKABE_ITO[5],
            lw=2.0,
            label=f"\u03b7\u03c3 = \u0394S* = {transition:.3g}",
        )
        handles.append(ln)
    if transition_curve is not None:
        c = np.asarray([p for p in transition_curve if p[0] is not None and p[0] > 0], dtype=float).reshape(-1, 2)
        if c.size:
            (ln,) = ax.plot(
                c[:, 0],
                c[:, 1],
                "--",
                color=OKABE_ITO[1],
                lw=1.6,
                label="\u03c3*(\u03b7) = \u0394S*(\u03b7)/\u03b7 (discrete SGD)",
            )
            handles.append(ln)
    if eta_max is not None and ye[0] <= float(eta_max) <= ye[-1]:
        ln = ax.axhline(
            float(eta_max), color=OKABE_ITO[3], ls="--", lw=1.4, label=f"\u03b7 = 2/\u03bb_max(0) = {eta_max:.3g}"
        )
        handles.append(ln)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # decades only: short axes would crowd minor labels
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(xe[0], xe[-1])
    ax.set_ylim(ye[0], ye[-1])
    ax.set_xlabel("noise strength \u03c3")
    ax.set_ylabel("learning rate \u03b7")
    if handles:  # below the axes: the cells stay visible
        ax.legend(handles=handles, frameon=False, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def sweep_curve(
    x,
    values,
    *,
    ax=None,
    xlabel: str = "",
    ylabel: str = "",
    logx: bool = False,
    vline: float | None = None,
    vline_label: str | None = None,
    title: str | None = None,
) -> Figure:
    """A one-parameter sweep: ``values`` against ``x``, with an optional vertical marker (e.g. a
    theoretical transition point)."""
    fig, ax = _axes(ax)
    ax.plot(np.asarray(x, dtype=float), np.asarray(values, dtype=float), "o-", color=OKABE_ITO[0], lw=1.4, ms=4)
    if vline is not None:
        ax.axvline(vline, color=OKABE_ITO[5], ls="--", lw=1.0, label=vline_label)
        if vline_label:
            ax.legend(frameon=False, fontsize=8)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def flatness_curves(
    curves: dict, *, ax=None, logx: bool = True, flatness_max: float | None = None, title: str | None = None
) -> Figure:
    """Flatness dynamics ``<F>(t)`` (PRL Figs. 2a, 3a): one line per entry of ``curves`` (label -> a
    :class:`~fokkerplanck.sgd.flatness.FlatnessCurve`), with a band of one standard error where the curve has one
    (particles), and an optional dotted line at the flattest value of the valley. The first record (t = 0) is
    dropped on a logarithmic time axis."""
    fig, ax = _axes(ax)
    for k, (label, c) in enumerate(curves.items()):
        t, v = np.asarray(c.times, float), np.asarray(c.values, float)
        keep = t > 0 if logx else np.ones(t.size, bool)
        color, style = OKABE_ITO[k % len(OKABE_ITO)], _STYLES[k % len(_STYLES)]
        ax.plot(t[keep], v[keep], style, color=color, lw=1.5, label=str(label))
        if c.stderr is not None:
            se = np.asarray(c.stderr, float)[keep]
            ax.fill_between(t[keep], v[keep] - se, v[keep] + se, color=color, alpha=0.2, lw=0)
    if flatness_max is not None:
        ax.axhline(flatness_max, color="0.4", ls=":", lw=1.0, label="flattest F(x_F)")
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel("time t (= steps x eta)")
    ax.set_ylabel("flatness <F>")
    ax.legend(frameon=False, fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def evolution(traj, axis: int = 0, *, n_curves: int = 6, cmap: str = "cividis", title: str | None = None) -> Figure:
    """Marginals along ``axis`` at up to ``n_curves`` saved times of a
    :class:`~fokkerplanck.model.density.Trajectory` (colour = time), next to its mass and entropy against time."""
    import matplotlib

    fig = _figure((9.0, 3.6))
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[1.6, 1.0])
    idx = np.unique(np.linspace(0, len(traj) - 1, min(n_curves, len(traj))).round().astype(int))
    colors = matplotlib.colormaps[cmap](np.linspace(0.0, 0.9, len(idx)))
    for c, k in zip(colors, idx):
        d = traj[int(k)]
        m = d.marginal(axis) if d.grid.ndim > 1 else d
        ax1.plot(m.grid.centers[0], m.values, color=c, lw=1.3, label=f"t = {traj.times[k]:.3g}")
    ax1.set_xlabel(_axis_label(axis))
    ax1.set_ylabel(f"P({_axis_label(axis)}, t)")
    ax1.legend(frameon=False, fontsize=7)
    ax2.plot(traj.times, traj.entropy, "-", color=OKABE_ITO[0], label="entropy")
    ax2.set_xlabel("t")
    ax2.set_ylabel("entropy  -∫ P ln P", color=OKABE_ITO[0])
    ax3 = ax2.twinx()
    ax3.plot(traj.times, traj.mass, "--", color=OKABE_ITO[5], label="mass")
    ax3.set_ylabel("mass", color=OKABE_ITO[5])
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def overview(density, landscape, curves: dict, *, axis: int = 0, title: str | None = None) -> Figure:
    """Two panels: the heat map of a 2D ``density`` with the landscape's contours, and the marginals of
    ``curves`` along ``axis`` (as :func:`marginals`)."""
    fig = _figure((10.0, 3.6))
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[1.25, 1.0])
    density_heatmap(density, landscape, ax=ax1, title="solver steady state P(x, y)")
    marginals(curves, axis=axis, ax=ax2, title="x-marginal")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
