"""``fokkerplanck reproduce HEADLINE``: the headline result of a paper beyond the PRL, computed, saved and drawn.

Each headline is a function of :mod:`fokkerplanck.sgd` returning plain numbers (``*_headline(quick, seed)``)
and a figure writer (``plot_*_headline(result, path)``); this command runs one, writes ``DIR/result.json``
(parameters, the numbers as metrics, timings) and ``DIR/headline.png``, and prints a short summary.
"""

from __future__ import annotations

import importlib
import time
import warnings
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Headline:
    """A reproducible headline: where its functions live and what it shows."""

    module: str  # under fokkerplanck.sgd
    compute: str  # name of f(quick: bool, seed: int) -> dict
    draw: str  # name of g(result: dict, path) -> None
    what: str  # one line for the help text


#: headline name -> how to compute and draw it
HEADLINES = {
    "label-noise": Headline(
        "label_noise",
        "label_noise_headline",
        "plot_label_noise_headline",
        "Xu et al. 2026: sharpness of the minimum SGD reaches against the anisotropy of the label noise "
        "(closed form against particles)",
    ),
    "alignment": Headline(
        "alignment",
        "alignment_headline",
        "plot_alignment_headline",
        "Wu, Wang & Su 2022: the exact linear-stability threshold of minibatch SGD against the alignment bound "
        "sqrt(B/mu)/eta, particles across it, and the power-law Fokker-Planck steady state",
    ),
    "freezing": Headline(
        "freezing",
        "freezing_headline",
        "plot_freezing_headline",
        "Yang et al. 2026: transient escape from the sharp valley and freezing under a decaying learning rate "
        "(1D two-valley model of ours; final flat fraction against eta_0, exact MFPTs)",
    ),
    "freezing-2d": Headline(
        "freezing",
        "freezing_2d_headline",
        "plot_freezing_2d_headline",
        "Yang et al. 2026, 2D two-valley model of ours: final flat-valley fraction and freezing time over "
        "(eta_0, B), with where the continuous limit fails for discrete SGD",
    ),
}


def _summary(name: str, res: dict) -> list[str]:
    """A few lines of numbers for the terminal (the full result is in result.json)."""
    lines = []
    for key in ("summary", "checks"):
        value = res.get(key)
        if isinstance(value, dict):
            lines += [f"  {k}: {v}" for k, v in value.items()][:12]
        elif isinstance(value, list):
            lines += [f"  {v}" for v in value][:12]
    if not lines:
        scalars = {k: v for k, v in res.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
        lines = [f"  {k}: {v}" for k, v in list(scalars.items())[:12]]
    return lines


def run(name: str, out: Path, *, quick: bool, seed: int, figures: bool) -> tuple[Path, list[str], list[str]]:
    """Compute headline ``name``, save it under ``out``; returns ``(result.json path, summary lines, notes)``."""
    from ..results import io

    h = HEADLINES[name]
    module = importlib.import_module(f"fokkerplanck.sgd.{h.module}")
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = getattr(module, h.compute)(quick=quick, seed=seed)
    timings = {"compute_s": round(time.perf_counter() - t0, 4)}
    notes = []
    for w in caught:
        if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning)):
            msg = f"{w.category.__name__}: {' '.join(str(w.message).split())}"
            if msg not in notes:
                notes.append(msg)
    written = []
    if figures:
        t = time.perf_counter()
        path = out / "headline.png"
        getattr(module, h.draw)(res, path)
        written.append(path)
        timings["figures_s"] = round(time.perf_counter() - t, 4)
    timings["total_s"] = round(time.perf_counter() - t0, 4)
    path = io.save(
        out,
        command="reproduce",
        parameters={"headline": name, "quick": quick, "seed": seed},
        metrics=res,
        timings=timings,
        figures=written,
        notes=notes,
    )
    summary = [f"{name}: {h.what}", *_summary(name, res)]
    return path, summary, notes
