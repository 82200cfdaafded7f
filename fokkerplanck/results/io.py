"""Saving and loading results: ``DIR/result.json`` + ``DIR/arrays.npz`` (+ the PNG figures).

``result.json`` holds plain JSON (non-finite floats are written as ``null``)::

    {
      "format": "fokkerplanck-result/1",
      "command": "demo",                     # what produced it
      "created": "2025-01-01T12:00:00+00:00",
      "seed": 0,                             # particle seed, or null
      "parameters": {...},                   # the validated configuration
      "metrics": {...},                      # distances, moments, diagnostics
      "timings": {"steady_s": 0.6, ...},     # wall-clock seconds
      "versions": {"fokkerplanck": "0.1.0", "python": "3.11.7", "numpy": ..., "scipy": ..., ...},
      "densities": {"steady": {"grid": {"axes": [...], "bc": [...]}}, ...},
      "arrays": {"steady": [200, 100], ...}, # every array in arrays.npz and its shape
      "figures": ["heatmap.png", ...],
      "notes": [...],                        # warnings and remarks of the run
      "run_id": "3f2a...",                   # also in arrays.npz (as __run_id__): the two files belong together
    }

Densities are stored as arrays (their values, and ``<name>__stderr`` when they carry standard errors) plus
their grid in ``result.json``; :func:`load` rebuilds them as :class:`~fokkerplanck.model.density.Density`.
:func:`load` refuses a ``result.json`` beside the ``arrays.npz`` of another run (their ``run_id`` differ), and
warns when a later run into the folder was interrupted: its checkpoint is in ``DIR.partial`` (the command line
writes a run there and moves it into place whole, :mod:`fokkerplanck.results.outdir`), or, in the package's
earlier layout, a ``checkpoint.npz`` newer than ``result.json`` lies beside it. The result is then the earlier,
complete run's.

Checkpoints (``checkpoint=`` of :func:`~fokkerplanck.solvers.evolve.evolve` and
:func:`~fokkerplanck.particles.simulate`,
``DIR.partial/checkpoint.npz`` of the command line) are one ``.npz`` file: the state arrays plus ``__meta__``, a JSON
string with ``format`` (``fokkerplanck-checkpoint/1``), ``kind`` (``evolve`` | ``simulate``), ``complete``
(the run finished) and the parameters that identify the problem. :func:`write_checkpoint` is atomic: it
writes a temporary file ``.NAME.XXXX.tmp`` in the same directory, flushes it to disk and ``os.replace``-s it
over ``NAME``, so a reader (or a resumed run) sees the previous checkpoint or the new one, never a partial
file; a failed write removes its temporary file (a process killed in the middle of a write cannot: its
``.NAME.XXXX.tmp`` is harmless, ignored, and removed by :func:`remove_checkpoint`). :func:`read_checkpoint` refuses,
with a
:class:`CheckpointMismatch` naming the differing parameters, a checkpoint written for another problem.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import sys
import uuid
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np

# checkpoints live in a low-level module (evolve and simulate write them); re-exported here
from ..solvers.checkpoint import (
    CheckpointMismatch,
    array_hash,
    read_checkpoint,  # noqa: F401
    remove_checkpoint,
    to_jsonable,
    write_checkpoint,
)

FORMAT = "fokkerplanck-result/1"
RESULT_FILE = "result.json"
ARRAYS_FILE = "arrays.npz"
NETCDF_FILE = "densities.nc"
_DEPENDENCIES = ("numpy", "scipy", "numba", "matplotlib", "tqdm", "pyamg", "xarray", "pypardiso", "mkl")

CHECKPOINT_FILE = "checkpoint.npz"
STAGING_SUFFIX = ".partial"  # the command line writes DIR.partial, then moves it to DIR (results.outdir)
_RUN_ID = "__run_id__"  # the key of the run id in arrays.npz (names with '__' are reserved)

__all__ = [
    "save",
    "load",
    "Result",
    "versions",
    "to_jsonable",
    "write_checkpoint",
    "read_checkpoint",
    "remove_checkpoint",
    "array_hash",
    "CheckpointMismatch",
    "CHECKPOINT_FILE",
]


def versions() -> dict:
    """Versions of fokkerplanck, Python and the (installed) dependencies, plus the platform and the sparse LU
    backend the direct solves use (``lu``)."""
    from .._version import __version__

    out = {
        "fokkerplanck": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
    for name in _DEPENDENCIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            mod = sys.modules.get(name)
            out[name] = getattr(mod, "__version__", None) if mod else None
    from ..solvers.linalg import lu_backend

    try:
        out["lu"] = lu_backend()
    except (ValueError, ImportError) as exc:  # a bad FOKKERPLANCK_LU: say so rather than fail the save
        out["lu"] = f"invalid: {exc}"
    return out


def _check_name(name: str):
    if not name or not all(c.isalnum() or c in "_-." for c in name) or "__" in name:
        raise ValueError(f"io.save: array name {name!r} must be non-empty, alphanumeric/_/-/. and without '__'")


def save(
    out_dir,
    *,
    command: str,
    parameters: dict | None = None,
    metrics: dict | None = None,
    timings: dict | None = None,
    densities: dict | None = None,
    arrays: dict | None = None,
    seed=None,
    figures=(),
    notes=(),
    extra: dict | None = None,
) -> Path:
    """Write ``out_dir/result.json`` and ``out_dir/arrays.npz``; returns the path of ``result.json``.

    ``densities`` maps names to :class:`~fokkerplanck.model.density.Density` objects (values, standard errors and
    grid are saved); ``arrays`` maps names to plain arrays."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    store, shapes, dens_meta = {}, {}, {}
    for name, d in (densities or {}).items():
        _check_name(name)
        store[name] = np.asarray(d.values, dtype=float)
        if getattr(d, "stderr", None) is not None:
            store[name + "__stderr"] = np.asarray(d.stderr, dtype=float)
        dens_meta[name] = {"grid": d.grid.to_dict(), "info": to_jsonable(_small(d.info))}
    for name, a in (arrays or {}).items():
        _check_name(name)
        if name in store:
            raise ValueError(f"io.save: {name!r} is both a density and an array")
        store[name] = np.asarray(a)
    for k, a in store.items():
        shapes[k] = list(a.shape)
    run_id = uuid.uuid4().hex
    np.savez_compressed(out / ARRAYS_FILE, **store, **{_RUN_ID: np.array(run_id)})
    netcdf = _write_netcdf(out / NETCDF_FILE, densities or {})
    doc = {
        "format": FORMAT,
        "command": command,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seed": seed,
        "parameters": parameters or {},
        "metrics": metrics or {},
        "timings": timings or {},
        "versions": versions(),
        "densities": dens_meta,
        "arrays": shapes,
        "figures": [str(Path(f).name) for f in figures],
        "netcdf": netcdf,
        "notes": list(notes),
        "run_id": run_id,
    }
    if extra:
        doc.update(extra)
    path = out / RESULT_FILE
    path.write_text(json.dumps(to_jsonable(doc), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def _write_netcdf(path: Path, densities: dict):
    """The densities as NetCDF (one variable per density, coordinates per grid) when xarray is installed;
    returns the file name, or ``None`` when xarray is missing or cannot write (the .npz always holds them)."""
    if not densities:
        return None
    try:
        import xarray as xr
    except ImportError:
        return None
    try:
        variables = {}
        for name, d in densities.items():
            axis = "theta" if d.grid.frame is None else "xi"  # a framed grid's cells are in xi
            dims = [f"{name}_{axis}{i}" for i in range(d.grid.ndim)]
            variables[name] = xr.DataArray(
                np.asarray(d.values, dtype=float), coords=dict(zip(dims, d.grid.centers)), dims=dims
            )
        xr.Dataset(variables).to_netcdf(path, engine="scipy")
    except Exception as exc:  # noqa: BLE001 - an optional extra output must not sink the run
        import warnings

        warnings.warn(f"could not write {path.name}: {exc}", RuntimeWarning, stacklevel=3)
        return None
    return path.name


def _small(info: dict) -> dict:
    """The scalar entries of a diagnostics dict (drops large or unserialisable values)."""
    out = {}
    for k, v in (info or {}).items():
        if isinstance(v, (bool, int, float, str, np.integer, np.floating)) or v is None:
            out[k] = v
        elif isinstance(v, (list, tuple)) and len(v) <= 16:
            out[k] = v
        elif isinstance(v, dict) and len(v) <= 16:
            out[k] = _small(v)
    return out


class Result:
    """A saved result (see :func:`load`).

    Attributes: ``path``, ``command``, ``parameters``, ``metrics``, ``timings``, ``versions``, ``seed``,
    ``notes``, ``figures``, ``json`` (the whole document), ``arrays`` (dict of numpy arrays, densities' values
    included) and ``densities`` (dict of :class:`~fokkerplanck.model.density.Density`)."""

    def __init__(self, path: Path, doc: dict, arrays: dict):
        from ..model.density import Density
        from ..model.grid import Grid

        self.path = path
        self.json = doc
        self.command = doc.get("command")
        self.parameters = doc.get("parameters", {})
        self.metrics = doc.get("metrics", {})
        self.timings = doc.get("timings", {})
        self.versions = doc.get("versions", {})
        self.seed = doc.get("seed")
        self.notes = doc.get("notes", [])
        self.figures = [path / f for f in doc.get("figures", [])]
        self.arrays = arrays
        self.densities = {}
        for name, meta in doc.get("densities", {}).items():
            g = meta["grid"]
            grid = Grid.from_dict(g)
            if name not in arrays:
                raise ValueError(f"io.load: density {name!r} is listed in {RESULT_FILE} but missing from {ARRAYS_FILE}")
            self.densities[name] = Density(
                grid, arrays[name], stderr=arrays.get(name + "__stderr"), info=meta.get("info", {})
            )

    def __getitem__(self, name):
        return self.densities[name] if name in self.densities else self.arrays[name]

    def __repr__(self):
        return (
            f"Result({str(self.path)!r}, command={self.command!r}, densities={list(self.densities)}, "
            f"arrays={[k for k in self.arrays if k not in self.densities and '__' not in k]})"
        )


def load(path) -> Result:
    """Load a result directory written by :func:`save` (or the ``fokkerplanck`` command line); ``path`` may
    also be the ``result.json`` file itself."""
    p = Path(path)
    if p.is_file() and p.name == RESULT_FILE:
        p = p.parent
    rj = p / RESULT_FILE
    if not rj.is_file():
        raise FileNotFoundError(f"io.load: no {RESULT_FILE} in {str(p)!r}")
    doc = json.loads(rj.read_text(encoding="utf-8"))
    if doc.get("format") != FORMAT:
        raise ValueError(f"io.load: {rj} has format {doc.get('format')!r}, expected {FORMAT!r}")
    arrays = {}
    npz = p / ARRAYS_FILE
    if npz.is_file():
        with np.load(npz, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    stamp = arrays.pop(_RUN_ID, None)
    if doc.get("run_id") is not None and (stamp is None or str(stamp) != doc["run_id"]):
        raise ValueError(
            f"io.load: {rj} and {npz} were written by different runs (run_id {doc['run_id']!r} vs "
            f"{None if stamp is None else str(stamp)!r}); rerun the command"
        )
    ck = p / CHECKPOINT_FILE
    if ck.is_file() and ck.stat().st_mtime > rj.stat().st_mtime:
        warnings.warn(
            f"io.load: {ck} is newer than {rj}: a rerun into {str(p)!r} was interrupted; this result "
            "is the earlier run's",
            RuntimeWarning,
            stacklevel=2,
        )
    staged = p.with_name(p.name + STAGING_SUFFIX) / CHECKPOINT_FILE
    if p.name and staged.is_file():
        warnings.warn(
            f"io.load: a later run into {str(p)!r} was interrupted (its checkpoint is {staged}; rerun it "
            "with --resume); this result is the earlier, complete run's",
            RuntimeWarning,
            stacklevel=2,
        )
    return Result(p, doc, arrays)
