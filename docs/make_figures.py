"""Make the documentation's figures: small PNGs under docs/img/, committed with the docs.

    PYTHONPATH=. MPLBACKEND=Agg python docs/make_figures.py [NAME ...]

NAME is one of fig4b, eq11, fig5b, fig3, benchmarks (default: all). The paper figures run the package at the
notebooks' quick settings (a few seconds each once numba's kernels are compiled): they show what the method
gives, not converged numbers -- those are in the notebooks and on the numerics page. The benchmark plots read
the measured tables of benchmarks/README.md (the benchmark scripts' JSON is not committed); no benchmark is run.
The site build does not run this script.
"""

from __future__ import annotations

import re
import sys
import time
import warnings
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "img"
DPI = 80


def _save(fig, name: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.png"
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    print(f"  wrote {path.relative_to(ROOT)} ({path.stat().st_size / 1024:.0f} KB)")


def fig4b() -> None:
    """PRL Fig. 4(b): L(x, 0) against L_eff(x, 0) from the steady state, and Eq. (12) (notebook 01, quick grid)."""
    import fokkerplanck as fp

    kappa, delta, x_max, nx, ny = 3.0, 0.05, 2.0, 80, 48
    land = fp.landscapes.DegenerateValley(lambdas=(1.0, 1.0), eps=0.0)

    def steady(k):
        y_max = 6.0 * np.sqrt(delta)
        grid = fp.Grid([(-x_max, x_max, nx), (-y_max, y_max, ny)], bc="reflecting")
        noise = fp.noise.Constant(np.diag([delta / k, delta]))
        return fp.steady_state(fp.Problem(grid, landscape=land, noise=noise), warn=False)

    (xc,), l_solver = fp.adiabatic.valley_effective_potential(steady(kappa), land, scale=delta)
    _, l_iso = fp.adiabatic.valley_effective_potential(steady(1.0), land, scale=delta)
    l_eq12 = fp.theory.eq12_l_sgd(xc, land, delta, kappa)
    l_eq12 = l_eq12 - l_eq12.min()
    floor = land.loss(np.stack([xc, np.zeros_like(xc)], axis=-1))
    C = fp.plot.OKABE_ITO
    fig, ax = plt.subplots(figsize=(6.4, 3.8), layout="constrained")
    ax.plot(xc, floor, "-", color=C[7], lw=1.8, label="L(x, 0)  (before)")
    ax.plot(xc, l_solver, "-.", color=C[0], lw=2.0, label=f"L_eff(x, 0), solver, κ = {kappa:g}  (after)")
    ax.plot(xc, l_eq12, ":", color=C[5], lw=2.0, label="Eq. (12): Δ(κ−1)/2 ln λ(x)")
    ax.plot(xc, l_iso, "--", color=C[2], lw=1.2, label="L_eff(x, 0), solver, κ = 1 (control)")
    ax.set(
        xlabel="x (along the valley)",
        ylabel="loss on the valley floor (min 0)",
        title=f"PRL Fig. 4(b): λ(x) = 1 + x², Δ = {delta:g}, κ = {kappa:g} ({nx}×{ny} cells)",
    )
    ax.title.set_fontsize(10)
    ax.legend(frameon=False, fontsize=8, loc="upper center")
    _save(fig, "fig4b")


def eq11() -> None:
    """PRL Eq. (11): L1 distance of the x-marginal to lambda^(-kappa/2) against Delta (notebook 02, quick)."""
    import fokkerplanck as fp

    kappa, deltas, nx, ny = 3.0, (0.2, 0.1, 0.05, 0.025), 160, 48
    study = fp.adiabatic.adiabatic_error_study(deltas, kappa=kappa, nx=nx, ny=ny)
    l1, slope = np.array(study["l1"]), study["slope"]
    land = fp.landscapes.DegenerateValley(lambdas=(1.0, 1.0), eps=0.0)
    marg = {}
    for d in (deltas[0], deltas[-1]):
        y_max = 6.0 * np.sqrt(d)
        grid = fp.Grid([(-2.5, 2.5, nx), (-y_max, y_max, ny)], bc="reflecting")
        prob = fp.Problem(grid, landscape=land, noise=fp.noise.Constant(np.diag([d / kappa, d])))
        marg[d] = fp.steady_state(prob, warn=False).marginal(0)
    ref = fp.theory.eq11_marginal_x(marg[deltas[0]].grid, land, kappa)
    C = fp.plot.OKABE_ITO
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9.0, 3.6), layout="constrained")
    dd = np.array(deltas)
    ax0.loglog(dd, l1, "o", color=C[0], label="solver vs Eq. (11)")
    ax0.loglog(dd, np.exp(study["intercept"]) * dd**slope, "-", color=C[0], lw=1, label=f"fit: slope {slope:.2f}")
    ax0.loglog(dd, l1[-1] * dd / dd[-1], ":", color=C[5], label="slope 1 (O(Δ))")
    ax0.set(xlabel="Δ", ylabel="L1 distance of the x-marginals", title="(a) adiabatic error of Eq. (11)")
    ax0.legend(frameon=False, fontsize=8)
    x = ref.grid.centers[0]
    ax1.plot(x, ref.values, "-", color=C[7], lw=1.5, label="Eq. (11): λ(x)^(−κ/2)")
    for k, d in enumerate((deltas[0], deltas[-1])):
        ax1.plot(x, marg[d].values, ("--", "-.")[k], color=C[k + 1], lw=1.8, label=f"solver, Δ = {d:g}")
    ax1.set(xlabel="x", ylabel="P(x)", title=f"(b) x-marginals, κ = {kappa:g}, {nx}×{ny} cells")
    ax1.legend(frameon=False, fontsize=8)
    for ax in (ax0, ax1):
        ax.title.set_fontsize(10)
    _save(fig, "eq11")


def fig5b() -> None:
    """PRL Fig. 5(b): the (sigma, eta) phase diagram of the 2D valley (`phase-diagram prl-fig5b --quick`)."""
    import fokkerplanck as fp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pd = fp.sweeps.prl_phase_diagram(quick=True, scheduler="serial", progress=False)
    fig = fp.plot.sgd_phase_diagram(
        pd["sigmas"],
        pd["etas"],
        pd["Z_flatness"],
        diverged=pd["Z_diverged"],
        zlabel="flatness F(<|x|>)",
        transition=pd["transition_theory"],
        transition_curve=pd["transition_theory_curve"],
        title="PRL Fig. 5(b): 2D valley, random-shift SGD (quick)",
    )
    fig.set_size_inches(6.0, 4.6)
    _save(fig, "fig5b")


def fig3() -> None:
    """PRL Fig. 3(a): flatness dynamics of the discrete SGD on the high-dimensional valley (notebook 05, quick)."""
    import fokkerplanck as fp
    from fokkerplanck import flatness as fl

    n_flat, n_sharp, n_particles, eta, sigmas, n_steps = 20, 2, 32, 0.01, (0.01, 0.03, 0.1), 100_000
    land = fp.landscapes.HighDimValley(
        n_flat=n_flat, n_sharp=n_sharp, lambdas=np.array(fp.sweeps.HIGHDIM_LAMBDAS[:n_sharp]), eps=0.0
    )
    rng = np.random.default_rng(0)
    u = rng.normal(size=(n_particles, n_flat))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    theta0 = np.concatenate([0.1 * u, np.full((n_particles, n_sharp), 0.1)], axis=1)
    dyn = fl.sgd_flatness_vs_noise(
        land, sigmas, eta=eta, theta0=theta0, n_particles=n_particles, n_steps=n_steps, n_records=40
    )
    fig = fp.plot.flatness_curves(
        {f"σ = {s:g}": dyn["curves"][s] for s in sigmas},
        flatness_max=dyn["flatness_max"],
        title=f"PRL Fig. 3(a), quick: N_F = {n_flat}, N_S = {n_sharp}, η = {eta}",
    )
    fig.set_size_inches(6.0, 3.8)
    _save(fig, "fig3a")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pd = fp.sweeps.highdim_phase_diagram(quick=True, scheduler="serial", progress=False)
    fig = fp.plot.sgd_phase_diagram(
        pd["sigmas"],
        pd["etas"],
        pd["Z_flatness"],
        diverged=pd["Z_diverged"],
        zlabel="steady-state flatness <F(x)>",
        transition_curve=pd["transition_theory_curve"],
        eta_max=pd["eta_max_at_0"],
        title="PRL Fig. 3(c): high-dimensional valley (quick)",
    )
    fig.set_size_inches(6.0, 4.6)
    _save(fig, "fig3c")


# ---------------------------------------------------------------- benchmarks (tables of benchmarks/README.md)


def _table_after(text: str, heading: str) -> list[dict]:
    """The first markdown table after the line starting with ``heading``, as a list of row dicts."""
    lines = text[text.index(heading) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| problem"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip("|").split("|")))))
    return rows


def _cells(grid: str) -> int:
    n, d = re.fullmatch(r"(\d+)\^(\d)", grid).groups()
    return int(n) ** int(d)


def benchmarks() -> None:
    """Seconds and covariance error against the number of cells, 2D, from the steady-state and evolve tables."""
    text = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    tables = {
        "steady state (steady_state.py)": _table_after(text, "### `steady_state.py`"),
        "evolution to t = 1 (evolve.py)": _table_after(text, "### `evolve.py`"),
    }
    styles = {
        "ours": ("o", "-", "#0072B2"),
        "ours-superlu": ("o", ":", "#56B4E9"),
        "scipy-fd": ("s", "--", "#E69F00"),
        "scipy-fd-cn": ("s", "--", "#E69F00"),
        "fplanck": ("^", "-.", "#009E73"),
        "fipy": ("D", ":", "#CC79A7"),
        "ours-ie": ("v", ":", "#56B4E9"),
    }
    fig, axes = plt.subplots(2, 2, figsize=(9.0, 6.4), layout="constrained")
    for row, (title, rows) in zip(axes, tables.items()):
        for ax, (metric, label) in zip(row, (("seconds", "seconds"), ("err_cov", "covariance error"))):
            for problem, fill in (("ou-full", "full"), ("ou-iso", "none")):
                for solver, (marker, ls, color) in styles.items():
                    pts = sorted(
                        (_cells(r["grid"]), float(r[metric]))
                        for r in rows
                        if r["problem"] == problem
                        and r["solver"] == solver
                        and r["grid"].endswith("^2")
                        and r[metric] not in ("-", "")
                    )
                    if len(pts) < 2:
                        continue
                    x, y = zip(*pts)
                    ax.loglog(
                        x,
                        y,
                        marker=marker,
                        ls=ls,
                        color=color,
                        ms=5,
                        lw=1.2,
                        mfc=color if fill == "full" else "white",
                        label=f"{solver}, {problem}",
                    )
            ax.set_xticks([128**2, 256**2, 512**2], labels=["128²", "256²", "512²"])
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set(xlabel="2D grid (cells)", ylabel=label, title=f"{title}: {label}")
            ax.title.set_fontsize(9)
            ax.grid(True, which="major", color="0.9", lw=0.6)
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=7, frameon=False)
    _save(fig, "benchmarks")


FIGURES = {"fig4b": fig4b, "eq11": eq11, "fig5b": fig5b, "fig3": fig3, "benchmarks": benchmarks}

if __name__ == "__main__":
    names = sys.argv[1:] or list(FIGURES)
    for name in names:
        t0 = time.perf_counter()
        print(f"{name}:")
        FIGURES[name]()
        print(f"  {time.perf_counter() - t0:.1f} s")
