"""The ``fokkerplanck`` command line.

    fokkerplanck demo     [CONFIG] [--out DIR] [--quick]   PRL Eq. (11) model: solver, particles, theory, figures
    fokkerplanck steady   [CONFIG] [--out DIR] [--quick]   stationary density (+ closed form where one exists)
    fokkerplanck evolve   [CONFIG] [--out DIR] [--quick]   time evolution from a Gaussian initial density
    fokkerplanck simulate [CONFIG] [--out DIR] [--quick]   Monte Carlo particles, histogrammed on the grid
    fokkerplanck compare  [CONFIG] [--out DIR] [--quick]   solver vs particles vs theory, with distances
    fokkerplanck sweep    [CONFIG] [--out DIR] [--quick]   steady states across one or two parameters
    fokkerplanck phase-diagram {prl-fig5b,prl-fig5d,prl-fig3c} [--out DIR] [--quick] [--scheduler ADDRESS]
    fokkerplanck reproduce {label-noise,alignment,freezing,freezing-2d} [--out DIR] [--quick] [--seed N]
                 [--workers N] [--cache DIR] [--etas ETA ...] [--sigmas SIGMA ...]
                                                           the PRL's (sigma, eta) phase diagrams

A run is written into ``DIR.partial`` beside ``DIR`` and moved into place whole when it is done, under a lock that
stops a second run into the same ``DIR`` with one line (:mod:`fokkerplanck.results.outdir`): rerunning a command
into its own earlier folder replaces that run; a folder holding anything else is refused unless ``--overwrite``.
``evolve`` and ``simulate`` checkpoint into ``DIR.partial/checkpoint.npz`` (atomically, every
``--checkpoint-every`` steps; default about 5% of the run) and ``--resume`` continues an interrupted run from it,
with the same result as an uninterrupted run; ``DIR`` keeps the previous complete run meanwhile, and the
checkpoint is removed once the run is saved. A run estimated beyond three days of work (steps x particles or
cells, :mod:`fokkerplanck.interface.workload`) is refused before it starts unless ``FOKKERPLANCK_ALLOW_LONG=1``.

Each command reads a TOML configuration (see :mod:`fokkerplanck.interface.config`; none = the command's built-in
default), writes ``DIR/result.json``, ``DIR/arrays.npz``, ``DIR/config.toml`` (the configuration actually run)
and PNG figures, and prints a short summary. A user mistake (bad configuration or value, missing file, an
unwritable output directory) ends with exit code 2 and one line on stderr; anything else is a bug and raises.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from ..model.budget import TooLarge
from ..model.density import wall_ratio
from ..numerics.operator import DEFAULT_STENCIL_RADIUS
from ..results.io import CheckpointMismatch
from ..results.outdir import OutputError, OutputFolder
from .config import MESSAGE_LIMIT, ConfigError, build_problem, load_config, set_path, to_toml

COMMANDS = {
    "demo": "PRL 2D model (Eq. 11 setting) end to end: solver steady state, Monte Carlo particles, "
    "closed-form theory, distances and figures",
    "steady": "stationary density of the configured problem (compared with a closed form where one exists)",
    "evolve": "time evolution of a Gaussian initial density ([initial] mean, cov) up to [solver] t_end",
    "simulate": "Monte Carlo particles ([particles] section), histogrammed on the grid",
    "compare": "solver steady state vs particles vs closed-form theory, with their distances",
    "sweep": "steady states across one or two parameters ([sweep] parameter, values[, parameter2, values2])",
}


#: ``fokkerplanck phase-diagram FIGURE``: the PRL's (sigma, eta) phase diagrams, from SGD particles
PHASE_DIAGRAMS = {
    "prl-fig5b": "PRL Fig. 5(b): 2D valley (Eq. 8, eps = 1e-3, lambdas 8, -2, 1): flatness F(<|x|>) of the SGD "
    "steady state, the transition line eta sigma = Delta_S* = -eps/lambda_1 and the Fokker-Planck "
    "solver's transition",
    "prl-fig5d": "PRL Fig. 5(d): 2D valley (as Fig. 5b): search time tau_s = eta <t_s> of the SGD to its steady "
    "state (log colour scale), the critical slowing down near Delta_S* and the divergence region",
    "prl-fig3c": "PRL Fig. 3(c): high-dimensional valley (Eq. 5, N_S = 5, N_F = 100): time-averaged steady-state "
    "flatness <F(x)>, the divergence region and the theory transition sigma*(eta)",
}


_OVERWRITE_HELP = (
    "write into an output folder that holds files of no fokkerplanck run (the run's files replace "
    "those of the same names; the others stay); a previous run's folder is replaced whole without it"
)


class UserError(Exception):
    """A mistake of the user outside the configuration (e.g. an unwritable output directory)."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit code 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .._version import __version__

    p = _Parser(
        prog="fokkerplanck",
        description="Finite-volume Fokker-Planck solver for SGD dynamics (Yang, Tang & Tu, PRL 130, "
        "237101 (2023)), with Monte Carlo particles and closed-form theory.",
        epilog="Each command takes an optional TOML config (none = built-in default) and --out DIR "
        "(phase-diagram takes a figure name instead of a config); "
        "run 'fokkerplanck COMMAND --help' for details.",
    )
    p.add_argument("--version", action="version", version=f"fokkerplanck {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, text in COMMANDS.items():
        s = sub.add_parser(name, help=text, description=text + ".")
        s.add_argument(
            "config",
            nargs="?",
            default=None,
            metavar="CONFIG.toml",
            help="TOML configuration (default: the built-in one for this command)",
        )
        s.add_argument(
            "--out", metavar="DIR", default=None, help=f"output directory (default: ./fokkerplanck-out/{name})"
        )
        s.add_argument(
            "--quick",
            action="store_true",
            help="cap the run for a smoke check: at most 48 cells an axis, 4000 particles, t_end 5 (solver) and 20 "
            "(particles), 3 saved densities, 3 sweep values -- also over values the config gives (seconds)",
        )
        s.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
        s.add_argument("--print-config", action="store_true", help="print the validated configuration as TOML and exit")
        s.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
        if name in ("evolve", "simulate"):
            s.add_argument(
                "--resume",
                action="store_true",
                help="continue an interrupted run from DIR.partial/checkpoint.npz (the same final "
                "result as an uninterrupted run; starts afresh when there is no checkpoint; refuses "
                "a checkpoint of a different configuration)",
            )
            s.add_argument(
                "--checkpoint-every",
                type=int,
                default=None,
                metavar="N",
                help="time steps between checkpoints in DIR.partial/checkpoint.npz (default: about "
                "5%% of the run); the checkpoint is removed after a successful run",
            )
        if name == "sweep":
            s.add_argument(
                "--scheduler",
                metavar="ADDRESS",
                default=None,
                help="'serial', 'local' (a Dask LocalCluster) or the address of a running Dask "
                "scheduler, tcp://host:port (default: a LocalCluster when dask.distributed "
                "is installed, else serial)",
            )
            s.add_argument(
                "--workers",
                type=int,
                default=None,
                metavar="N",
                help="workers of the LocalCluster (default: one per core)",
            )
    _add_reproduce_parser(sub)
    text = "the PRL's (sigma, eta) phase diagrams of the SGD steady state (table and heat map)"
    s = sub.add_parser(
        "phase-diagram",
        help=text,
        description=text + ": " + "; ".join(f"{k}: {v}" for k, v in PHASE_DIAGRAMS.items()) + ".",
    )
    s.add_argument("figure", choices=list(PHASE_DIAGRAMS), metavar="FIGURE", help=" | ".join(PHASE_DIAGRAMS))
    s.add_argument(
        "--out", metavar="DIR", default=None, help="output directory (default: ./fokkerplanck-out/phase-diagram-FIGURE)"
    )
    s.add_argument(
        "--quick", action="store_true", help="few particles and short runs (seconds; for tests and smoke checks)"
    )
    s.add_argument("--no-figures", action="store_true", help="skip the PNG heat map")
    s.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    s.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="'serial', 'local' (a Dask LocalCluster) or the address of a running Dask scheduler, "
        "tcp://host:port (default: a LocalCluster when dask.distributed is installed, else serial)",
    )
    s.add_argument(
        "--workers", type=int, default=None, metavar="N", help="workers of the LocalCluster (default: one per core)"
    )
    s.add_argument(
        "--cache",
        metavar="DIR",
        default=None,
        help="keep every finished point in DIR (one JSON file each); a rerun computes only the missing points",
    )
    s.add_argument(
        "--etas", type=float, nargs="+", default=None, metavar="ETA", help="learning rates (default: the figure's)"
    )
    s.add_argument(
        "--sigmas",
        type=float,
        nargs="+",
        default=None,
        metavar="SIGMA",
        help="shift variances sigma (default: the figure's)",
    )
    return p


# ------------------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------------------
def _theory_for(cfg, prob, grid):
    """A closed-form stationary density for the configured problem, when one applies.

    Returns ``(label, Density or None, metrics dict, note)``:

    * quadratic landscape + constant/isotropic noise: the Ornstein-Uhlenbeck Gaussian ``N(c, Sigma)``,
      ``A Sigma + Sigma A^T = 2 D`` (exact on the whole space; the box truncates its tails);
    * isotropic noise ``T > 0``, any landscape: the Boltzmann density ``exp(-L/T)`` (exact);
    * degenerate valley with ``eps = 0`` and diagonal constant ``D = diag(Delta/kappa, Delta)``: PRL Eq. (11)
      (adiabatic: accurate as ``Delta -> 0``)."""
    from ..model.density import Density
    from ..sgd import theory

    land, noise = cfg["landscape"], cfg["noise"]
    d = grid.ndim
    placed = _placed(cfg)  # a rotated or framed landscape: the closed forms below are of the unplaced one
    try:
        if land["kind"] == "quadratic" and noise["kind"] in ("constant", "isotropic") and not placed:
            A = prob.landscape.A
            D = prob.noise.tensor(np.zeros(d))
            S = theory.ou_stationary_cov(A, D)
            dens = Density.gaussian(grid, prob.landscape.center, S)
            return "Ornstein-Uhlenbeck N(c, Sigma)", dens, {"theory_cov": S.tolist()}, None
        if noise["kind"] == "isotropic" and noise["T"] > 0:
            return "Boltzmann exp(-L/T)", theory.boltzmann(grid, prob.landscape, noise["T"]), {}, None
        if land["kind"] == "degenerate-valley" and land["eps"] == 0 and noise["kind"] == "constant" and not placed:
            D = prob.noise.D
            if D[0, 1] == 0 and D[0, 0] > 0 and D[1, 1] > 0:
                Delta, kappa = float(D[1, 1]), float(D[1, 1] / D[0, 0])
                dens = theory.eq11_density(grid, prob.landscape, Delta, kappa)
                return "PRL Eq. (11)", dens, {"theory_Delta": Delta, "theory_kappa": kappa}, None
    except (ValueError, np.linalg.LinAlgError) as e:
        return None, None, {}, f"no closed form used: {str(e).splitlines()[0]}"
    return None, None, {}, None


def _placed(cfg) -> bool:
    """The landscape is placed by a frame (``rotation``, ``frame`` or ``origin`` in ``[landscape]``): it is a
    ``Transformed`` landscape, without the attributes (``A``, ``center``) of its base."""
    return any(k in cfg["landscape"] for k in ("rotation", "frame", "origin"))


def _sample_theta0(pcfg, grid, n):
    th = pcfg["theta0"]
    if th == "uniform":
        rng = np.random.default_rng([int(pcfg.get("seed", 0)), 12345])
        return grid.lower + (grid.upper - grid.lower) * rng.random((n, grid.ndim))
    th = np.asarray(th, dtype=float)
    if not np.all(grid.contains(th)):
        raise ConfigError(
            f"[particles] theta0 = {th.tolist()} lies outside the grid "
            f"(lower {grid.lower.tolist()}, upper {grid.upper.tolist()})"
        )
    return th


def _run_particles(cfg, prob, grid, **checkpointing):
    from ..particles import simulate

    if grid.frame is not None:
        raise ConfigError(
            "[particles] the particles' walls are a box in theta: they do not run on a [grid] with "
            "rotation or frame (simulate with a plain grid, then histogram onto the framed one)"
        )
    p = cfg["particles"]
    n = p["n_particles"]
    from ..model.budget import check

    check(80.0 * n * grid.ndim, f"simulate: {n:,} particles")  # before theta0 is drawn
    kw = {k: p[k] for k in ("t_end", "dt", "n_steps", "eta", "sigma", "shift", "T") if k in p}
    noise = prob.noise if p["method"] == "sde" else None
    ens = simulate(
        prob.landscape,
        noise,
        method=p["method"],
        n_particles=n,
        theta0=_sample_theta0(p, grid, n),
        grid=grid,
        seed=p["seed"],
        **kw,
        **checkpointing,
    )
    return ens


def _histogram(ens, grid):
    """``(Density, None)``: the particles' histogram on ``grid``; ``(None, reason)`` when no live particle is
    left in it (all diverged or were absorbed: ``histogram`` refuses, and that ended in a traceback)."""
    if ens.alive.any():
        try:
            return ens.histogram(grid), None
        except ValueError as e:
            if "live particle" not in str(e):
                raise
    return None, (
        f"no live particle inside the grid at t = {ens.time:g} ({ens.diverged.mean():.3g} diverged, "
        f"{ens.absorbed.mean():.3g} absorbed); a smaller time step or weaker noise keeps them"
    )


def _wall_ratio(d) -> float:
    """Largest density on a non-periodic wall layer over the peak density."""
    return wall_ratio(d)[0]


def _density_metrics(d) -> dict:
    out = {"mean": d.mean().tolist(), "cov": d.cov().tolist(), "mass": d.mass}
    return out


def _scale_of(cfg) -> float:
    """A natural noise scale for L_eff = -scale ln P: Delta = D_yy (constant), T, delta_s or delta."""
    nz = cfg["noise"]
    if nz["kind"] == "constant":
        D = np.asarray(nz["D"], dtype=float)
        return float(D.max() if D.ndim < 2 else np.max(np.diag(D)))
    return float(nz.get("T", nz.get("delta_s", nz.get("delta", 1.0)))) or 1.0


def _steady(cfg, prob, warn=True):
    from ..solvers.steady import steady_state

    grid = prob.grid
    if not grid.conserves_mass:
        raise ConfigError(
            "[grid] bc: a steady state needs reflecting or periodic walls (absorbing walls let all "
            "mass leave); use 'fokkerplanck evolve'"
        )
    s = cfg.get("solver", {})
    return _solve_steady(steady_state, prob, s, warn=warn)


def _solve_steady(steady_state, prob, s, **kw):
    """``steady_state`` with the ``[solver]`` section ``s``; a solver that cannot solve this problem -- noise so
    weak that the chain is degenerate (``T = 0`` with ``gth``, ``T = 1e-102`` singular in the AMG coarse solve),
    a method whose limits the grid exceeds -- is one line naming the method (these were tracebacks)."""
    method = s.get("method", "auto")
    try:
        return steady_state(
            prob,
            method=method,
            tol=s.get("tol", 1e-10),
            stencil_radius=s.get("stencil_radius", DEFAULT_STENCIL_RADIUS),
            **kw,
        )
    except TooLarge:
        raise
    except (ValueError, RuntimeError, np.linalg.LinAlgError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"steady state ([solver] method = {method!r}) failed: {first}") from None


class _Run:
    """Collects what a command produces, then saves it."""

    def __init__(self, command, cfg, out):
        self.command, self.cfg, self.out = command, cfg, out
        self.metrics, self.timings, self.densities, self.arrays = {}, {}, {}, {}
        self.figures, self.notes, self.summary = [], [], []
        self.seed = None
        self.options = {}
        self.checkpoint = None  # DIR.partial/checkpoint.npz of evolve / simulate, removed after saving
        self.t0 = time.perf_counter()

    def checkpointing(self) -> dict:
        """``checkpoint``, ``checkpoint_every``, ``resume`` for evolve / simulate, from the options."""
        from ..results import io

        every = self.options.get("checkpoint_every")
        if every is not None and every < 1:
            raise UserError(f"--checkpoint-every must be >= 1, got {every}")
        self.checkpoint = self.out / io.CHECKPOINT_FILE
        resume = bool(self.options.get("resume"))
        if resume and not self.checkpoint.is_file():
            self.notes.append(f"--resume: no checkpoint in '{self.out}'; started from the beginning")
        return {"checkpoint": self.checkpoint, "checkpoint_every": every, "resume": resume}

    def note_resumed(self, info: dict):
        if info.get("resumed_from_step") is not None:
            self.summary.append(f"resumed from the checkpoint at step {info['resumed_from_step']}")

    def timed(self, key, fn, *a, **kw):
        t = time.perf_counter()
        r = fn(*a, **kw)
        self.timings[key] = round(time.perf_counter() - t, 4)
        return r

    def figure(self, name, fig):
        from . import plot

        self.figures.append(plot.save(fig, self.out / name))

    def save(self):
        from ..results import io

        self.timings["total_s"] = round(time.perf_counter() - self.t0, 4)
        (self.out / "config.toml").write_text(to_toml(self.cfg), encoding="utf-8")
        return io.save(
            self.out,
            command=self.command,
            parameters=self.cfg,
            metrics=self.metrics,
            timings=self.timings,
            densities=self.densities,
            arrays=self.arrays,
            seed=self.seed,
            figures=self.figures,
            notes=self.notes,
        )


# ------------------------------------------------------------------------------------------------------------
# commands
# ------------------------------------------------------------------------------------------------------------
def cmd_steady(run: _Run, figures: bool):
    from ..results.compare import compare

    cfg = run.cfg
    prob = build_problem(cfg)
    grid = prob.grid
    ss = run.timed("steady_s", _steady, cfg, prob)
    run.densities["steady"] = ss
    info = ss.info
    run.metrics["steady"] = {
        **_density_metrics(ss),
        "residual": info.get("residual"),
        "wall_ratio": info.get("wall_ratio"),
        "method": info.get("method"),
        "cells": grid.size,
        "cross_diffusion_shrunk_cells": info.get("cross_diffusion_shrunk_cells"),
        "split_gap": info.get("split_gap"),
        "stencil": info.get("stencil"),
        "form": info.get("form"),
        "drift_split": info.get("drift_split"),
        "error_estimate": info.get("error_estimate"),
        "refinement_estimate": info.get("refinement_estimate"),
        "peclet_mass": info.get("peclet_mass"),
        "moment_mass": info.get("moment_mass"),
        "scheme": info.get("scheme", "monotone"),
        "centred": info.get("centred"),
        "aligned_frame": info.get("aligned_frame"),
    }
    label, th, tmetrics, note = run.timed("theory_s", _theory_for, cfg, prob, grid)
    if note:
        run.notes.append(note)
    run.summary.append(
        f"steady state on {grid.shape} cells in {run.timings['steady_s']:.2f} s "
        f"(residual {info.get('residual', float('nan')):.1e})"
    )
    run.summary.append(
        f"mean {np.array2string(ss.mean(), precision=4)}, "
        f"cov {np.array2string(ss.cov(), precision=4).replace(chr(10), '')}"
    )
    if th is not None:
        run.densities["theory"] = th
        dist = compare(ss, th)
        run.metrics["theory"] = {"label": label, **tmetrics}
        run.metrics["solver_vs_theory"] = dist
        if "theory_cov" in tmetrics:
            S = np.asarray(tmetrics["theory_cov"])
            rel = float(np.linalg.norm(ss.cov() - S) / np.linalg.norm(S))
            run.metrics["solver_vs_theory"]["cov_rel_error"] = rel
            run.summary.append(f"{label}: covariance relative error {rel:.2e}")
        run.summary.append(f"{label}: L1 distance solver-theory {dist['l1']:.3e}")
    if figures:
        t = time.perf_counter()
        curves = {"solver": ss, **({label: th} if th is not None else {})}
        _standard_figures(run, cfg, prob, ss, curves)
        run.timings["figures_s"] = round(time.perf_counter() - t, 4)


def _standard_figures(run, cfg, prob, main, curves, title=None):
    from . import plot

    grid = main.grid
    if grid.ndim == 2:
        run.figure("heatmap.png", plot.density_heatmap(main, prob.landscape, title=title or "steady state P(x, y)"))
    elif grid.ndim == 3:
        run.figure(
            "heatmap.png", plot.density_heatmap(main.marginal((0, 1)), None, title="steady state, marginal over axis 2")
        )
    run.figure("marginal_x.png", plot.marginals(curves, axis=0, title="x-marginal"))
    if grid.ndim > 1:
        run.figure("marginal_y.png", plot.marginals(curves, axis=1, title="y-marginal", xlabel="y"))
    scale = _scale_of(cfg)
    run.figure(
        "l_eff_x.png", plot.effective_potential(curves, scale, axis=0, title="effective potential of the x-marginal")
    )


def cmd_compare(run: _Run, figures: bool, demo: bool = False):
    from ..results.compare import compare
    from . import plot

    cfg = run.cfg
    if "particles" not in cfg:
        raise ConfigError("missing section [particles] (needed to compare with Monte Carlo particles)")
    prob = build_problem(cfg)
    grid = prob.grid
    ss = run.timed("steady_s", _steady, cfg, prob, warn=not demo)
    if demo:
        run.notes.append(
            "the reflecting walls are part of the demo model: solver, particles and the Eq. (11) "
            f"theory (normalised on the box) all live in it; P at the walls / peak = "
            f"{_wall_ratio(ss):.2g}"
        )
    run.densities["steady"] = ss
    run.metrics["steady"] = {
        **_density_metrics(ss),
        "residual": ss.info.get("residual"),
        "wall_ratio": _wall_ratio(ss),
        "cells": grid.size,
    }
    label, th, tmetrics, note = run.timed("theory_s", _theory_for, cfg, prob, grid)
    if note:
        run.notes.append(note)
    curves = {"solver (steady state)": ss}
    hist = None
    run.seed = cfg["particles"]["seed"]
    ens = run.timed("particles_s", _run_particles, cfg, prob, grid)
    hist, why = _histogram(ens, grid)
    if hist is None:
        raise UserError(f"[particles] nothing to compare with: {why}")
    run.densities["particles"] = hist
    run.metrics["particles"] = {
        "n_particles": int(ens.n_particles),
        "time": float(ens.time),
        "diverged_fraction": float(ens.diverged.mean()),
        "outside_fraction": hist.info.get("outside"),
        "mean": ens.mean().tolist(),
        "cov": ens.cov().tolist(),
        "particle_steps_per_s": ens.info.get("particle_steps_per_s"),
    }
    curves[f"particles (N={ens.n_particles:.0e}, t={ens.time:g})"] = hist
    if th is not None:
        run.densities["theory"] = th
        run.metrics["theory"] = {"label": label, **tmetrics}
        curves[label] = th
    pairs = [("solver", ss), ("particles", hist), ("theory", th)]
    pairs = [(n, d) for n, d in pairs if d is not None]
    for i in range(len(pairs)):
        for j in range(i + 1, len(pairs)):
            (na, a), (nb, b) = pairs[i], pairs[j]
            run.metrics[f"{na}_vs_{nb}"] = compare(a, b)
            run.metrics[f"{na}_vs_{nb}_x_marginal"] = compare(a.marginal(0), b.marginal(0))
    run.summary.append(
        f"solver: {grid.shape} cells, steady state in {run.timings['steady_s']:.2f} s "
        f"(residual {ss.info.get('residual', float('nan')):.1e})"
    )
    if hist is not None:
        pm = run.metrics["particles"]
        run.summary.append(
            f"particles: {pm['n_particles']} x {ens.n_steps} steps (t = {pm['time']:g}) in "
            f"{run.timings['particles_s']:.1f} s, diverged {pm['diverged_fraction']:.2g}"
        )
    if th is not None:
        run.summary.append(
            f"theory: {label}"
            + (
                f" (Delta = {tmetrics['theory_Delta']:g}, kappa = {tmetrics['theory_kappa']:g})"
                if "theory_kappa" in tmetrics
                else ""
            )
        )
    for key, m in run.metrics.items():
        if key.endswith("_x_marginal"):
            line = f"  {key:<32s} L1 {m['l1']:.3e}  KS {m['ks'][0]:.3e}"
            if "l1_over_noise" in m:
                line += f"  L1/noise {m['l1_over_noise']:.2f}"
            run.summary.append(line)
        elif "_vs_" in key:
            line = f"  {key:<32s} L1 {m['l1']:.3e}  Hellinger {m['hellinger']:.3e}"
            if "l1_over_noise" in m:
                line += f"  L1/noise {m['l1_over_noise']:.2f}"
            run.summary.append(line)
    if figures:
        t = time.perf_counter()
        title = "PRL Eq. (11) model: solver steady state" if demo else None
        _standard_figures(run, cfg, prob, ss, curves, title=title)
        if hist is not None and grid.ndim == 2:
            run.figure("heatmap_particles.png", plot.density_heatmap(hist, prob.landscape, title="particles"))
        if demo and grid.ndim == 2:
            setting = (
                f"  (\u0394 = {tmetrics['theory_Delta']:g}, \u03ba = {tmetrics['theory_kappa']:g})"
                if "theory_kappa" in tmetrics
                else ""
            )
            run.figure(
                "overview.png",
                plot.overview(
                    ss,
                    prob.landscape,
                    curves,
                    title="L = \u03bb(x) y\u00b2/2, \u03bb = 1 + x\u00b2,  D = diag(\u0394/\u03ba, \u0394)" + setting,
                ),
            )
        run.timings["figures_s"] = round(time.perf_counter() - t, 4)


def cmd_evolve(run: _Run, figures: bool):
    from ..model.density import Density
    from ..sgd import theory
    from ..solvers.evolve import evolve
    from . import plot

    cfg = run.cfg
    prob = build_problem(cfg)
    grid = prob.grid
    init = cfg.get("initial", {})
    mean = np.asarray(init.get("mean", 0.5 * (grid.lower + grid.upper)), dtype=float)
    cov = init.get("cov")
    cov = np.diag(((grid.upper - grid.lower) / 10) ** 2) if cov is None else np.asarray(cov, dtype=float)
    cov = np.diag(cov) if cov.ndim == 1 else (cov * np.eye(grid.ndim) if cov.ndim == 0 else cov)
    try:
        p0 = Density.gaussian(grid, mean, cov)
    except ValueError as e:
        raise ConfigError(f"[initial] {e}") from None
    s = cfg.get("solver", {})
    kw = {
        "n_save": s.get("n_save", 11),
        "scheme": s.get("scheme", "tr-bdf2"),
        "stencil_radius": s.get("stencil_radius", DEFAULT_STENCIL_RADIUS),
    }
    if "dt" in s:
        kw["dt"] = s["dt"]
    kw.update(run.checkpointing())
    traj = run.timed("evolve_s", evolve, prob, p0, s.get("t_end", 10.0), **kw)
    final = traj.final
    run.densities["initial"] = p0
    run.densities["final"] = final
    run.arrays["times"] = traj.times
    run.arrays["trajectory"] = traj.values
    run.metrics["evolve"] = {
        "t_end": float(traj.times[-1]),
        "n_save": len(traj),
        "mass": traj.mass.tolist(),
        "minimum": traj.minimum.tolist(),
        "entropy": traj.entropy.tolist(),
        "final": _density_metrics(final),
        **{k: v for k, v in traj.info.items() if isinstance(v, (int, float, str))},
    }
    run.summary.append(
        f"evolved {grid.shape} cells to t = {traj.times[-1]:g} in {run.timings['evolve_s']:.2f} s "
        f"({len(traj)} saved densities)"
    )
    run.summary.append(
        f"mass {traj.mass[0]:.6f} -> {traj.mass[-1]:.6f}, min P {traj.minimum.min():.2e}, "
        f"final mean {np.array2string(final.mean(), precision=4)}"
    )
    run.note_resumed(traj.info)
    if (
        cfg["landscape"]["kind"] == "quadratic"
        and cfg["noise"]["kind"] in ("constant", "isotropic")
        and not _placed(cfg)
    ):
        A, D = prob.landscape.A, prob.noise.tensor(np.zeros(grid.ndim))
        S = theory.ou_cov_at(traj.times[-1], A, D, cov)
        rel = float(np.linalg.norm(final.cov() - S) / np.linalg.norm(S))
        run.metrics["evolve"]["theory_cov_at_t_end"] = S.tolist()
        run.metrics["evolve"]["cov_rel_error"] = rel
        run.summary.append(f"Ornstein-Uhlenbeck covariance at t_end: relative error {rel:.2e}")
    if figures:
        t = time.perf_counter()
        run.figure("evolution_x.png", plot.evolution(traj, axis=0, title="x-marginal against time"))
        if grid.ndim == 2:
            run.figure(
                "heatmap_final.png", plot.density_heatmap(final, prob.landscape, title=f"P at t = {traj.times[-1]:g}")
            )
        run.timings["figures_s"] = round(time.perf_counter() - t, 4)


def cmd_simulate(run: _Run, figures: bool):
    from ..results.compare import compare
    from . import plot

    cfg = run.cfg
    if "particles" not in cfg:
        raise ConfigError("missing section [particles]")
    prob = build_problem(cfg)
    grid = prob.grid
    run.seed = cfg["particles"]["seed"]
    ens = run.timed("particles_s", _run_particles, cfg, prob, grid, **run.checkpointing())
    hist, why = _histogram(ens, grid)
    if hist is None:  # every particle diverged or left: a result (the SGD's divergence), not a mistake
        run.notes.append(f"no histogram: {why}")
    else:
        run.densities["particles"] = hist
    run.arrays["positions"] = ens.positions.astype(np.float32) if ens.n_particles > 200_000 else ens.positions
    run.arrays["diverged"] = ens.diverged
    pm = {
        "n_particles": int(ens.n_particles),
        "n_steps": int(ens.n_steps),
        "time": float(ens.time),
        "diverged_fraction": float(ens.diverged.mean()),
        "absorbed_fraction": float(ens.absorbed.mean()),
        "outside_fraction": hist.info.get("outside") if hist is not None else None,
        "particle_steps_per_s": ens.info.get("particle_steps_per_s"),
    }
    if ens.alive.any():
        pm["mean"], pm["cov"] = ens.mean().tolist(), ens.cov().tolist()
    run.metrics["particles"] = pm
    run.summary.append(
        f"{pm['n_particles']} particles ({cfg['particles']['method']}), {pm['n_steps']} steps to "
        f"t = {pm['time']:g} in {run.timings['particles_s']:.1f} s; diverged "
        f"{pm['diverged_fraction']:.3g}, absorbed {pm['absorbed_fraction']:.3g}"
    )
    if "mean" in pm:
        run.summary.append(f"mean {np.array2string(np.asarray(pm['mean']), precision=4)}")
    run.note_resumed(ens.info)
    label, th, tmetrics, note = (
        _theory_for(cfg, prob, grid) if grid.conserves_mass and hist is not None else (None, None, {}, None)
    )
    if note:
        run.notes.append(note)
    curves = {"particles": hist}
    if th is not None:
        run.densities["theory"] = th
        run.metrics["particles_vs_theory"] = compare(hist, th)
        curves[label] = th
        run.summary.append(f"{label}: L1 distance particles-theory {run.metrics['particles_vs_theory']['l1']:.3e}")
    if figures and hist is not None:
        t = time.perf_counter()
        if grid.ndim == 2:
            run.figure("heatmap_particles.png", plot.density_heatmap(hist, prob.landscape, title="particle histogram"))
        run.figure("marginal_x.png", plot.marginals(curves, axis=0, title="x-marginal"))
        run.timings["figures_s"] = round(time.perf_counter() - t, 4)


_OBSERVABLES = {
    "mean_abs_x": ("<|x|>", lambda d: d.expect(lambda p: np.abs(p[..., 0]))),
    "mean_x": ("<x>", lambda d: float(d.mean()[0])),
    "var_x": ("Var x", lambda d: float(d.cov()[0, 0])),
    "var_y": ("Var y", lambda d: float(d.cov()[1, 1]) if d.grid.ndim > 1 else float("nan")),
    "entropy": ("entropy", lambda d: d.entropy()),
    "peak_x": (
        "|x| at the peak of P(x)",
        lambda d: float(abs(d.marginal(0).grid.centers[0][np.argmax(d.marginal(0).values)])),
    ),
}


def cmd_sweep(run: _Run, figures: bool):
    from ..sgd import theory
    from ..solvers.steady import steady_state
    from . import plot

    cfg = run.cfg
    if "sweep" not in cfg:
        raise ConfigError("missing section [sweep] (parameter, values)")
    sw = cfg["sweep"]
    p1, v1 = sw["parameter"], sw["values"]
    p2, v2 = sw.get("parameter2"), sw.get("values2", [None])
    obs_label, obs = _OBSERVABLES[sw["observable"]]
    if sw.get("cache_dir") is not None and Path(sw["cache_dir"]).exists() and not Path(sw["cache_dir"]).is_dir():
        raise ConfigError(f"[sweep] cache_dir: '{sw['cache_dir']}' exists and is not a directory")
    # validate every point before any solve
    points = {}
    for a in v1:
        for b in v2:
            c = set_path(cfg, p1, a)
            if p2 is not None:
                c = set_path(c, p2, b)
            # each point keeps its own [solver] section: a swept solver key reaches its solve
            points[(a, b)] = (build_problem(c), c.get("solver", {}))
            if not points[(a, b)][0].grid.conserves_mass:
                raise ConfigError("[grid] bc: a sweep of steady states needs reflecting or periodic walls")

    def point(**params):
        prob, solver = points[(params[p1], params.get(p2) if p2 else None)]
        ss = _solve_steady(steady_state, prob, solver)
        return {
            sw["observable"]: float(obs(ss)),
            "mean": ss.mean().tolist(),
            "residual": ss.info.get("residual"),
            "wall_ratio": ss.info.get("wall_ratio"),
        }

    grid_of_params = {p1: list(v1), **({p2: list(v2)} if p2 else {})}
    t = time.perf_counter()
    from ..scale.sweep import sweep  # caching and resuming with [sweep] cache_dir

    res = sweep(
        point,
        grid_of_params,
        scheduler=run.options.get("scheduler"),
        n_workers=run.options.get("workers"),
        cache_dir=sw.get("cache_dir"),
        cache_key={k: v for k, v in cfg.items() if k != "sweep"},
    )
    rows = [
        {k: r[k] for k in r if k in grid_of_params or k in (sw["observable"], "mean", "residual", "wall_ratio")}
        for r in res.rows
    ]
    run.metrics["sweep_runner"] = "fokkerplanck.scale.sweep.sweep"
    Z = np.array([r[sw["observable"]] for r in rows], dtype=float).reshape(len(v1), len(v2))
    run.timings["sweep_s"] = round(time.perf_counter() - t, 4)
    run.metrics["sweep"] = {
        "parameter": p1,
        "values": v1,
        "parameter2": p2,
        "values2": v2 if p2 else None,
        "observable": sw["observable"],
        "points": rows,
    }
    run.arrays["observable"] = Z
    transition = None
    if (
        p1 == "noise.delta_s"
        and cfg["landscape"]["kind"] == "degenerate-valley"
        and len(cfg["landscape"]["lambdas"]) > 1
        and cfg["landscape"]["lambdas"][1] < 0
    ):
        transition = theory.transition_noise(cfg["landscape"]["eps"], cfg["landscape"]["lambdas"][1])
        run.metrics["sweep"]["theory_transition_delta_s"] = transition
    run.summary.append(
        f"{len(rows)} steady states in {run.timings['sweep_s']:.1f} s; {obs_label} against {p1}"
        + (f" and {p2}" if p2 else "")
    )
    for r in rows:
        run.summary.append(
            "  " + ", ".join(f"{k} = {_short(r[k])}" for k in ([p1] + ([p2] if p2 else []) + [sw["observable"]]))
        )
    if transition is not None:
        run.summary.append(f"PRL transition Delta_S* = -eps/lambda_1 = {transition:.3g}")
    if figures:
        t = time.perf_counter()
        numeric = all(isinstance(x, (int, float)) for x in v1)
        logx = numeric and min(v1) > 0 and max(v1) / min(v1) > 20
        if p2 is None and numeric:
            run.figure(
                "sweep.png",
                plot.sweep_curve(
                    v1,
                    Z[:, 0],
                    xlabel=p1,
                    ylabel=obs_label,
                    logx=logx,
                    vline=transition,
                    vline_label="Delta_S* = -eps/lambda_1" if transition else None,
                ),
            )
        elif p2 is not None and numeric and all(isinstance(x, (int, float)) for x in v2):
            logy = min(v2) > 0 and max(v2) / min(v2) > 20
            run.figure(
                "phase_diagram.png",
                plot.phase_diagram(v1, v2, Z, xlabel=p1, ylabel=p2, zlabel=obs_label, logx=logx, logy=logy),
            )
        run.timings["figures_s"] = round(time.perf_counter() - t, 4)


def cmd_demo(run: _Run, figures: bool):
    cmd_compare(run, figures, demo=True)


def _short(value) -> str:
    """A number with 4 significant digits, anything else (a swept solver method) as it is."""
    return f"{value:.4g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _environment_problem() -> str | None:
    """One line when an environment variable the run reads is invalid (``FOKKERPLANCK_LU``), else None. Only the
    name is checked: loading MKL here, earlier than the solve would, changed PARDISO's last bits between a run
    and its resumed twin (tests/test_checkpoint.py)."""
    import importlib.util

    from ..solvers.linalg import BACKENDS

    name = os.environ.get("FOKKERPLANCK_LU")
    if name is not None and name not in BACKENDS:
        return f"error: FOKKERPLANCK_LU={name!r}; expected one of {', '.join(BACKENDS)}"
    if name == "pardiso" and importlib.util.find_spec("pypardiso") is None:
        return "error: FOKKERPLANCK_LU=pardiso needs pypardiso (Intel MKL, x86-64): pip install 'fokkerplanck[pardiso]'"
    return None


def _preflight(cfg, command) -> None:
    """Refuse (:class:`~fokkerplanck.model.budget.TooLong`) a run estimated beyond the time limit, announce one
    beyond an hour on stderr (:mod:`fokkerplanck.interface.workload`)."""
    from .workload import preflight

    for note in preflight(cfg, command):
        print(f"note: {note}", file=sys.stderr)


def _runner_options_problem(args) -> str | None:
    """One line when ``--workers`` or ``--scheduler`` cannot work (checked before any work: ``--workers -1``
    used to hang the LocalCluster, an unknown scheduler to end in a traceback), else None."""
    workers = getattr(args, "workers", None)
    if workers is not None and workers < 1:
        return f"error: --workers must be >= 1, got {workers}"
    scheduler = getattr(args, "scheduler", None)
    if scheduler is not None and scheduler not in ("serial", "local", "dask") and "://" not in scheduler:
        shown = scheduler if len(scheduler) <= 60 else scheduler[:57] + "..."
        return f"error: --scheduler must be 'serial', 'local' or the address tcp://host:port, got {shown!r}"
    return None


def _table_lines(sigmas, etas, Z, D, threshold, fmt="{:.4f}") -> list[str]:
    """``Z[sigma, eta]`` as text, ``div`` where the diverged fraction ``D`` reaches ``threshold``."""
    lines = ["  sigma \\ eta " + "".join(f"{e:>9.3g}" for e in etas)]
    for i, sg in enumerate(sigmas):
        cells = []
        for j in range(len(etas)):
            z, d = Z[i, j], D[i, j]
            cells.append(f"{'div':>9s}" if not (d < threshold) or not np.isfinite(z) else f"{fmt.format(z):>9s}")
        lines.append(f"  {sg:>11.3g} " + "".join(cells))
    return lines


def _add_reproduce_parser(sub) -> None:
    from .reproduce import HEADLINES

    text = "the headline result of a paper beyond the PRL (numbers and a figure)"
    s = sub.add_parser(
        "reproduce",
        help=text,
        description=text + ": " + "; ".join(f"{k}: {h.what}" for k, h in HEADLINES.items()) + ".",
    )
    s.add_argument("headline", choices=list(HEADLINES), metavar="HEADLINE", help=" | ".join(HEADLINES))
    s.add_argument(
        "--out", metavar="DIR", default=None, help="output directory (default: ./fokkerplanck-out/reproduce-HEADLINE)"
    )
    s.add_argument("--quick", action="store_true", help="fewer particles and shorter runs (seconds to a minute)")
    s.add_argument("--no-figures", action="store_true", help="skip the PNG figure")
    s.add_argument("--seed", type=int, default=0, help="seed of the particles (default 0)")
    s.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)


def cmd_reproduce(args) -> int:
    """``fokkerplanck reproduce HEADLINE``: :func:`fokkerplanck.interface.reproduce.run` into a locked staging
    folder moved into place whole; one line on a mistake."""
    from . import reproduce

    out = Path(args.out) if args.out else Path("fokkerplanck-out") / f"reproduce-{args.headline}"
    folder = OutputFolder(out, overwrite=args.overwrite)
    try:
        with folder:
            path, summary, notes = reproduce.run(
                args.headline, folder.staging, quick=args.quick, seed=args.seed, figures=not args.no_figures
            )
            folder.publish()
    except OutputError as e:
        return _fail(f"error: {e}")
    except (ValueError, OSError, TooLarge) as e:
        return _fail(f"error: {e}")
    except KeyboardInterrupt:
        print("interrupted; nothing was saved", file=sys.stderr)
        return 130
    print(f"fokkerplanck reproduce: {summary[0]}")
    for line in summary[1:] + [f"note: {n}" for n in notes]:
        print(line)
    print(f"wrote {out / path.name}")
    return 0


def cmd_phase_diagram(args) -> int:
    """``fokkerplanck phase-diagram FIGURE``: run :func:`~fokkerplanck.sgd.phase_diagrams.prl_phase_diagram` (Fig. 5b),
    :func:`~fokkerplanck.sgd.phase_diagrams.prl_search_diagram` (Fig. 5d) or
    :func:`~fokkerplanck.sgd.phase_diagrams.highdim_phase_diagram`
    (Fig. 3c), write ``result.json`` (tables indexed
    ``[sigma, eta]``), ``arrays.npz`` and ``phase_diagram.png``, print the table."""
    t0 = time.perf_counter()
    which = args.figure
    for name in ("etas", "sigmas"):
        vals = getattr(args, name)
        if vals is not None and not all(np.isfinite(v) and v > 0 for v in vals):
            return _fail(f"error: --{name} must be positive numbers, got {' '.join(f'{v:g}' for v in vals)}")
        if vals is not None and len(set(vals)) != len(vals):
            return _fail(f"error: --{name} has repeated values")
    problem = _runner_options_problem(args)
    if problem:
        return _fail(problem)
    out = Path(args.out) if args.out else Path("fokkerplanck-out") / f"phase-diagram-{which}"
    folder = OutputFolder(out, overwrite=args.overwrite, outside={"--cache": args.cache})
    try:
        with folder:
            return _phase_diagram_into(folder, args, t0)
    except OutputError as e:
        return _fail(f"error: {e}")


def _phase_diagram_into(folder, args, t0) -> int:
    """The phase diagram of ``args.figure`` written into ``folder``'s staging folder, then moved into place."""
    from ..sgd.phase_diagrams import (
        PRL_FIG5B_ETAS,
        PRL_FIG5B_SIGMAS,
        highdim_phase_diagram,
        prl_phase_diagram,
        prl_search_diagram,
        save_phase_diagram,
    )
    from . import plot

    which, out = args.figure, folder.staging
    axes = {k: v for k, v in (("etas", args.etas), ("sigmas", args.sigmas)) if v is not None}
    common = dict(cache_dir=args.cache, scheduler=args.scheduler, n_workers=args.workers, quick=args.quick)
    notes, figures, timings = [], [], {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if which == "prl-fig5b":
                res = prl_phase_diagram(**{"etas": PRL_FIG5B_ETAS, "sigmas": PRL_FIG5B_SIGMAS, **axes}, **common)
            elif which == "prl-fig5d":
                res = prl_search_diagram(**{"etas": PRL_FIG5B_ETAS, "sigmas": PRL_FIG5B_SIGMAS, **axes}, **common)
            else:
                res = highdim_phase_diagram(**axes, **common)
        except OSError as e:  # an unwritable cache, an unreachable scheduler
            return _fail(f"error: {e}")
    timings["sweep_s"] = round(time.perf_counter() - t0, 4)
    for w in caught:
        if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning)):
            msg = f"{w.category.__name__}: {' '.join(str(w.message).split())}"
            if msg not in notes:
                notes.append(msg)
    sigmas, etas = res["sigmas"], res["etas"]
    threshold = float(res.get("diverged_threshold", 0.5))
    if which == "prl-fig5b":
        Z, zlabel = res["Z_flatness"], "flatness F(<|x|>) = lambda(<|x|>)^(-1/2)"
        title = "PRL Fig. 5(b): 2D valley, random-shift SGD"
        kw = {"transition": res["transition_theory"], "transition_curve": res["transition_theory_curve"]}
        summary = [
            f"PRL Fig. 5(b): {len(sigmas)} x {len(etas)} SGD points + {len(res['solver'].rows)} steady "
            f"states in {timings['sweep_s']:.1f} s",
            f"transition Delta_S*: theory -eps/lambda_1 = {res['transition_theory']:.3g}, solver "
            + (f"{res['transition_solver']:.3g}" if res["transition_solver"] is not None else "not crossed"),
        ]
    elif which == "prl-fig5d":
        Z, zlabel = res["Z_search_time"], "search time tau_s = eta <t_s>"
        title = "PRL Fig. 5(d): search time of random-shift SGD"
        kw = {
            "transition": res["transition_theory"],
            "transition_curve": res["transition_theory_curve"],
            "log_color": True,
        }
        slow = ", ".join(f"eta {e}: {d:.3g}" if d is not None else f"eta {e}: -" for e, d in res["slowest"].items())
        summary = [
            f"PRL Fig. 5(d): {len(sigmas)} x {len(etas)} SGD points in {timings['sweep_s']:.1f} s",
            f"slowest search (Delta_S) per eta -- {slow}; theory Delta_S* = -eps/lambda_1 = "
            f"{res['transition_theory']:.3g}",
        ]
    else:
        Z, zlabel = res["Z_flatness"], "steady-state flatness <F(x)>"
        title = "PRL Fig. 3(c): high-dimensional valley (N_S = 5, N_F = 100)"
        kw = {"transition_curve": res["transition_theory_curve"], "eta_max": res["eta_max_at_0"]}
        c = res["convergence"]
        summary = [
            f"PRL Fig. 3(c): {len(sigmas)} x {len(etas)} SGD points in {timings['sweep_s']:.1f} s; "
            f"F from {res['flatness_min']:.4f} (x = 0) to {res['flatness_max']:.4f} (|x_F| = "
            f"{res['x_flattest']:.3g})",
            f"convergence eta <lambda>_ss < 2: {c['converged_cells_with_eta_lambda_below_2']} of "
            f"{c['converged_cells']} converged cells satisfy it (max "
            + (f"{c['max_eta_lambda_converged']:.3g}" if c["max_eta_lambda_converged"] is not None else "-")
            + f"); {c['diverged_cells']} diverged, {c['diverged_cells_beyond_eta_max_at_0']} of them with "
            f"eta >= 2/lambda_max(0) = {res['eta_max_at_0']:.3g}",
            f"transition Delta_S* (theory, eta -> 0) = {res['transition_theory']:.3g}",
        ]
    summary.append(f"{zlabel} [rows sigma, columns eta; div: >= {threshold:.0%} of particles diverged]:")
    summary += _table_lines(
        sigmas, etas, Z, res["Z_diverged"], threshold, fmt="{:.4g}" if which == "prl-fig5d" else "{:.4f}"
    )
    if not args.no_figures:
        t = time.perf_counter()
        fig = plot.sgd_phase_diagram(
            sigmas, etas, Z, diverged=res["Z_diverged"], diverged_threshold=threshold, zlabel=zlabel, title=title, **kw
        )
        figures.append(plot.save(fig, out / "phase_diagram.png"))
        timings["figures_s"] = round(time.perf_counter() - t, 4)
    res["parameters"] = {
        **res["parameters"],
        "figure": which,
        "scheduler": args.scheduler,
        "workers": args.workers,
        "cache": args.cache,
    }
    timings["total_s"] = round(time.perf_counter() - t0, 4)
    path = save_phase_diagram(res, out, command="phase-diagram", figures=figures, notes=notes, timings=timings)
    folder.publish()
    path = Path(folder.shown) / path.name
    print(f"fokkerplanck phase-diagram: {summary[0]}")
    for line in summary[1:]:
        print(line)
    for n in notes:
        print(f"note: {n}")
    print(f"wrote {path} and {len(figures)} figure(s) in {timings['total_s']:.1f} s")
    return 0


_RUNNERS = {
    "demo": cmd_demo,
    "steady": cmd_steady,
    "evolve": cmd_evolve,
    "simulate": cmd_simulate,
    "compare": cmd_compare,
    "sweep": cmd_sweep,
}


# ------------------------------------------------------------------------------------------------------------
def _fail(message: str) -> int:
    """Print ``message`` as one line of at most ``MESSAGE_LIMIT`` characters; exit code 2 (a user mistake)."""
    line = " ".join(str(message).split())
    print(line if len(line) <= MESSAGE_LIMIT else line[: MESSAGE_LIMIT - 3] + "...", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    """Entry point of ``fokkerplanck``; returns the exit code (0 success, 2 user mistake)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, usage errors
        return int(e.code or 0)
    if args.command is None:
        parser.print_help()
        return 2
    command = args.command
    if command == "phase-diagram":
        return cmd_phase_diagram(args)
    if command == "reproduce":
        return cmd_reproduce(args)
    try:
        cfg = load_config(args.config, command, quick=args.quick)
    except ConfigError as e:
        return _fail(str(e))
    if args.print_config:
        print(to_toml(cfg), end="")
        return 0
    problem = _runner_options_problem(args) or _environment_problem()
    if problem:
        return _fail(problem)
    try:
        _preflight(cfg, command)
    except TooLarge as e:
        return _fail(f"error: {e}")
    out = Path(args.out) if args.out else Path("fokkerplanck-out") / command
    folder = OutputFolder(
        out,
        overwrite=args.overwrite,
        resume=bool(getattr(args, "resume", False)),
        outside={"[sweep] cache_dir": cfg.get("sweep", {}).get("cache_dir")},
    )
    try:
        with folder:
            return _run_into(folder, command, cfg, args)
    except OutputError as e:
        return _fail(f"error: {e}")


def _run_into(folder, command, cfg, args) -> int:
    """Run ``command`` into ``folder``'s staging folder, save, move it into place, print the summary."""
    run = _Run(command, cfg, folder.staging)
    run.options = {
        k: getattr(args, k) for k in ("scheduler", "workers", "resume", "checkpoint_every") if hasattr(args, k)
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            _RUNNERS[command](run, figures=not args.no_figures)
        except ConfigError as e:
            return _fail(str(e))
        except UserError as e:
            return _fail(f"error: {e}")
        except CheckpointMismatch as e:
            return _fail(f"error: {e}")
        except OSError as e:  # an unwritable cache directory, a full disk, an unreachable scheduler
            return _fail(f"error: {e}")
        except TooLarge as e:  # estimated before the work (fokkerplanck.model.budget)
            return _fail(f"error: {e}")
        except KeyboardInterrupt:  # Ctrl-C: one line, the checkpoint (written atomically) kept
            kept = run.checkpoint is not None and run.checkpoint.is_file()
            what = f"the checkpoint {run.checkpoint} is kept: rerun with --resume" if kept else "nothing was saved"
            print(f"interrupted; {what}", file=sys.stderr)
            return 130
    seen = set()
    for w in caught:
        if issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning)):
            continue
        msg = " ".join(str(w.message).split())
        if msg not in seen:
            seen.add(msg)
            run.notes.append(f"{w.category.__name__}: {msg}")
    path = run.save()
    if run.checkpoint is not None:  # the results are saved: the checkpoint has served its purpose
        from ..results.io import remove_checkpoint

        remove_checkpoint(run.checkpoint)
    folder.publish()
    path = Path(folder.shown) / path.name
    print(f"fokkerplanck {command}: " + (run.summary[0] if run.summary else "done"))
    for line in run.summary[1:]:
        print(line)
    for n in run.notes:
        print(f"note: {n}")
    print(f"wrote {path} and {len(run.figures)} figure(s) in {run.timings['total_s']:.1f} s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
