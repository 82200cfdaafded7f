"""Parameter sweeps: a function of parameters over the Cartesian product of their values, cached and resumable.

    res = fp.sweep(f, {"eta": [0.01, 0.02, 0.04], "sigma": [0.0, 0.01, 0.02]}, cache_dir="cache/")
    res.rows                       # tidy table: one dict per point, parameters first, then f's outputs
    res.pivot("sigma", "eta", "mean_abs_x")   # 2D array over the sorted unique values
    res.to_csv("table.csv"); res.save("out/")   # out/result.json (+ rows.csv)

``f(**params)`` returns a dict of JSON scalars (or short lists), or a single number (stored as ``value``).
Points are evaluated

* in a plain serial loop when ``dask.distributed`` is not installed or ``scheduler="serial"``;
* on a fresh Dask ``LocalCluster`` (``n_workers`` processes, one thread each, numba limited to one thread per
  worker) by default when it is installed (``pip install "fokkerplanck[sweep]"``), or ``scheduler="local"``;
* on an existing cluster with ``scheduler="tcp://host:port"`` (or a ``distributed.Client``).

With ``cache_dir`` every finished point is written at once to ``cache_dir/<key>.json`` (temporary file, then
``os.replace``: a killed run never leaves a half-written point), the key hashing the parameters, the fixed
keyword arguments and the function's identity (module, qualified name, a hash of its source and an optional
``sweep_version`` attribute). A sweep that is interrupted (an exception in a point, Ctrl-C, a killed process)
and started again recomputes only the points that have no cache file. Closures are identified by their code,
not by the values they capture: give ``cache_key=`` (any JSON value) to tell such variants apart.

Named point functions (``func_or_spec`` may name them, as the CLI's ``sweep`` does) live in
:data:`POINT_FUNCTIONS`; a model module adds its own with :func:`register_point_function` (the PRL phase
diagrams of :mod:`fokkerplanck.sgd.phase_diagrams` register ``"prl_steady"``, ``"prl_sgd"``, ``"prl_sde"``,
``"prl_search"``, ``"prl_search_sgd"`` and ``"highdim_sgd"``). This module knows no model.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import inspect
import itertools
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..solvers.checkpoint import atomic_write, to_jsonable

__all__ = [
    "sweep",
    "SweepResult",
    "POINT_FUNCTIONS",
    "register_point_function",
    "function_identity",
    "point_key",
    "dask_available",
]

CACHE_FORMAT = "fokkerplanck-sweep-point/1"

#: Named point functions, ``name -> f(**params) -> dict``; filled by :func:`register_point_function`.
POINT_FUNCTIONS: dict[str, Callable] = {}


def register_point_function(name: str, func: Callable) -> Callable:
    """Make ``func`` callable by ``name`` in :func:`sweep` (and the CLI's ``sweep``); returns ``func``."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"register_point_function: name must be an identifier, got {name!r}")
    if not callable(func):
        raise TypeError(f"register_point_function: {name!r} is not callable")
    POINT_FUNCTIONS[name] = func
    return func


# ------------------------------------------------------------------------------------------------------------
# plain values, identities and keys
# ------------------------------------------------------------------------------------------------------------
def _unstorable(obj):
    raise TypeError(
        f"sweep: cannot store a value of type {type(obj).__name__} ({obj!r:.80}) in the table; "
        "return numbers, strings, booleans or lists of them"
    )


def _plain(obj):
    """JSON-ready copy of ``obj`` (numpy scalars/arrays to Python numbers/lists, tuples to lists); NaN and
    infinities are kept as floats (Python's json reads them back); other objects are refused."""
    return to_jsonable(obj, keep_nonfinite=True, on_unknown=_unstorable)


def _roundtrip(obj):
    """``_plain`` then a JSON round trip, so fresh and cached results compare equal."""
    return json.loads(json.dumps(_plain(obj)))


def _source_hash(f) -> str | None:
    try:
        src = inspect.getsource(f)
    except (OSError, TypeError):
        code = getattr(f, "__code__", None)
        if code is None:
            return None
        src = repr((code.co_code, code.co_consts, code.co_names))
    return hashlib.sha256(src.encode()).hexdigest()[:16]


def function_identity(f) -> dict:
    """What identifies ``f`` in the cache keys: module, qualified name, source hash, ``sweep_version``
    (``functools.partial`` objects add their bound arguments)."""
    if isinstance(f, functools.partial):
        return {
            "partial": function_identity(f.func),
            "args": _plain(list(f.args)),
            "keywords": _plain(dict(f.keywords)),
        }
    target = f if inspect.isfunction(f) or inspect.ismethod(f) else type(f)
    return {
        "name": f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}",
        "source": _source_hash(target),
        "version": _plain(getattr(f, "sweep_version", None)),
    }


def point_key(identity: dict, params: dict, fixed: dict, cache_key=None) -> str:
    """The cache key of one point: a SHA-256 of the function identity, parameters, fixed arguments and
    ``cache_key`` (sorted JSON)."""
    doc = {"function": identity, "params": _plain(params), "fixed": _plain(fixed), "cache_key": _plain(cache_key)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]


def _write_atomic(path: Path, doc: dict):
    atomic_write(path, lambda fh: json.dump(doc, fh), mode="w", prefix=".tmp-", suffix=".json")


def _read_cached(path: Path, key: str):
    """The cached result at ``path`` or ``None`` (missing, unreadable or foreign files are ignored)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != CACHE_FORMAT or doc.get("key") != key:
        return None
    return doc


def dask_available() -> bool:
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------------------------------------------------
# the result table
# ------------------------------------------------------------------------------------------------------------
class SweepResult:
    """A tidy table of a sweep: ``rows`` (one dict per point, in the order of the Cartesian product),
    ``params`` (the swept names), ``info`` (scheduler, counts of computed and cached points, timings)."""

    def __init__(self, rows: list[dict], params: list[str], info: dict):
        self.rows = rows
        self.params = list(params)
        self.info = info

    def __len__(self):
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    @property
    def columns(self) -> list[str]:
        cols = list(self.params)
        for r in self.rows:
            for k in r:
                if k not in cols:
                    cols.append(k)
        return cols

    def column(self, name: str) -> list:
        return [r.get(name) for r in self.rows]

    def values(self, name: str) -> list:
        """Sorted unique values of parameter or column ``name``."""
        return sorted({r[name] for r in self.rows if name in r}, key=_sort_key)

    def to_dataframe(self):
        """The table as a ``pandas.DataFrame`` (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover - optional
            raise ImportError(
                "SweepResult.to_dataframe needs pandas (pip install pandas); the plain table is SweepResult.rows"
            ) from None
        return pd.DataFrame(self.rows, columns=self.columns)

    @property
    def table(self):
        """A pandas DataFrame when pandas is installed, else the list of rows."""
        try:
            return self.to_dataframe()
        except ImportError:
            return self.rows

    def to_csv(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        cols = self.columns
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(cols)
            for r in self.rows:
                w.writerow(
                    [
                        "" if r.get(c) is None else (json.dumps(r[c]) if isinstance(r.get(c), (list, dict)) else r[c])
                        for c in cols
                    ]
                )
        return path

    def pivot(self, x: str, y: str, value: str, where: dict | None = None) -> np.ndarray:
        """``Z[i, j]`` = ``value`` at ``x = values(x)[i]``, ``y = values(y)[j]`` (NaN where missing), over the
        rows matching ``where`` (a dict of fixed values). Raises when two rows share a cell (filter with
        ``where``)."""
        rows = [r for r in self.rows if all(r.get(k) == v for k, v in (where or {}).items())]
        xs = sorted({r[x] for r in rows}, key=_sort_key)
        ys = sorted({r[y] for r in rows}, key=_sort_key)
        ix = {v: i for i, v in enumerate(xs)}
        iy = {v: j for j, v in enumerate(ys)}
        Z = np.full((len(xs), len(ys)), np.nan)
        seen = np.zeros(Z.shape, dtype=bool)
        for r in rows:
            i, j = ix[r[x]], iy[r[y]]
            if seen[i, j]:
                others = [p for p in self.params if p not in (x, y)]
                raise ValueError(
                    f"pivot: several rows at {x}={r[x]!r}, {y}={r[y]!r}; fix the other parameters "
                    f"with where={{...}} ({', '.join(others) or 'duplicates'})"
                )
            seen[i, j] = True
            val = r.get(value)
            Z[i, j] = np.nan if val is None else float(val)
        return Z

    def to_dict(self) -> dict:
        return {"params": self.params, "rows": self.rows, "info": self.info}

    def save(self, out_dir, *, extra_metrics: dict | None = None, notes=()) -> Path:
        """Write ``out_dir/result.json`` (parameters, the rows as metrics, timings, versions) and
        ``out_dir/rows.csv``; returns the path of ``result.json``."""
        from ..results import io

        out = Path(out_dir)
        self.to_csv(out / "rows.csv")
        info = dict(self.info)
        timings = {"sweep_s": info.pop("seconds", None)}
        metrics = {"rows": self.rows, "n_points": len(self.rows), **(extra_metrics or {})}
        return io.save(
            out,
            command="sweep",
            parameters={"params": self.params, **info},
            metrics=metrics,
            timings=timings,
            notes=notes,
        )

    def __repr__(self):
        return (
            f"SweepResult({len(self.rows)} rows, params={self.params}, computed={self.info.get('computed')}, "
            f"cached={self.info.get('cached')}, scheduler={self.info.get('scheduler')!r})"
        )


def _sort_key(v):
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, float(v), "")
    return (1, 0.0, json.dumps(v, sort_keys=True))


# ------------------------------------------------------------------------------------------------------------
# execution
# ------------------------------------------------------------------------------------------------------------
def _call_point(func, params: dict, fixed: dict):
    """Evaluate one point (runs on the workers too): the function's output as a plain dict plus its time."""
    t0 = time.perf_counter()
    out = func(**params, **fixed)
    seconds = time.perf_counter() - t0
    if not isinstance(out, dict):
        out = {"value": out}
    return _roundtrip(out), seconds


def _resolve(func_or_spec):
    """``(callable, fixed kwargs)`` from a callable, a built-in name, or a ``{"function": name, ...}`` dict."""
    if callable(func_or_spec):
        return func_or_spec, {}
    if isinstance(func_or_spec, str):
        name, fixed = func_or_spec, {}
    elif isinstance(func_or_spec, dict):
        spec = dict(func_or_spec)
        name = spec.pop("function", None)
        fixed = spec
        if not isinstance(name, str):
            raise ValueError('sweep: a spec dict needs "function": the name of a built-in point function')
    else:
        raise TypeError(
            f"sweep: expected a callable, a built-in name or a spec dict, got {type(func_or_spec).__name__}"
        )
    if name not in POINT_FUNCTIONS:
        raise ValueError(f"sweep: unknown point function {name!r}; built-ins: {', '.join(sorted(POINT_FUNCTIONS))}")
    return POINT_FUNCTIONS[name], fixed


def _accepts(func, name: str) -> bool:
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return False
    return name in sig.parameters or any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())


def _progress_bar(total, initial, enabled):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    disable = (not sys.stderr.isatty()) if enabled is None else (not enabled)
    return tqdm(total=total, initial=initial, disable=disable, desc="sweep", unit="pt")


def _open_client(scheduler, n_workers, n_todo):
    """``(client, cluster_or_None, description)``; the caller closes both."""
    from dask.distributed import Client, LocalCluster

    if not isinstance(scheduler, str):  # an existing Client
        return scheduler, None, f"client {getattr(scheduler, 'scheduler', None) and scheduler.scheduler.address}"
    if scheduler.startswith(("tcp://", "tls://", "inproc://", "ucx://", "ws://", "wss://")):
        return Client(scheduler), None, scheduler
    n = int(n_workers) if n_workers else max(1, min(os.cpu_count() or 1, n_todo))
    single = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None, env=single, silence_logs=40
        )
        client = Client(cluster)
    return client, cluster, f"dask LocalCluster({n} workers x 1 thread)"


def sweep(
    func_or_spec,
    grid_of_params: dict[str, list],
    *,
    cache_dir=None,
    scheduler=None,
    n_workers=None,
    progress=None,
    quick: bool = False,
    fixed: dict | None = None,
    cache_key=None,
    errors: str = "raise",
    out=None,
) -> SweepResult:
    """Evaluate a function over the Cartesian product of parameter values.

    Parameters
    ----------
    func_or_spec : callable, str or dict
        ``f(**params, **fixed) -> dict`` (or a number); or the name of a built-in point function
        (:data:`POINT_FUNCTIONS`, e.g. ``"prl_steady"``); or a dict
        ``{"function": name, **fixed_kwargs}``.
    grid_of_params : dict name -> list of values
        The product is taken in the dict's order, the first parameter varying slowest.
    cache_dir : path, optional
        One JSON file per finished point (see the module docstring); a rerun skips cached points.
    scheduler : None, "serial", "local", "tcp://host:port" or a ``distributed.Client``
        ``None``: a Dask LocalCluster when ``dask.distributed`` is installed and more than one point is left
        to compute, else serial.
    n_workers : int, optional
        Workers of the LocalCluster (default: ``min(cpu_count, points left)``).
    progress : bool or None
        tqdm bar over points; ``None`` shows it only when stderr is a terminal.
    quick : bool
        Passed on as ``quick=True`` to functions that accept it (the built-ins shrink their grids and
        particle counts); part of the cache key.
    fixed : dict, optional
        Keyword arguments passed to every call (part of the cache key).
    cache_key : JSON value, optional
        Extra value mixed into the cache keys (tell closures over different data apart).
    errors : {"raise", "record"}
        ``raise``: the first failing point stops the sweep (points already finished stay cached) and its
        exception propagates. ``record``: the row gets ``error`` (the message) and the sweep goes on; failed
        points are not cached.
    out : path, optional
        Also write ``out/result.json`` and ``out/rows.csv`` (:meth:`SweepResult.save`).

    Returns
    -------
    SweepResult
    """
    t_start = time.perf_counter()
    func, spec_fixed = _resolve(func_or_spec)
    names, points = _points(grid_of_params)
    if errors not in ("raise", "record"):
        raise ValueError(f"sweep: errors must be 'raise' or 'record', got {errors!r}")
    fixed_all = _plain({**spec_fixed, **(fixed or {})})
    clash = set(fixed_all) & set(names)
    if clash:
        raise ValueError(f"sweep: {sorted(clash)} are both swept and fixed")
    if quick and _accepts(func, "quick"):
        fixed_all["quick"] = True
    identity = function_identity(func)
    keys = [point_key(identity, p, fixed_all, cache_key) for p in points]
    if len(set(keys)) != len(keys):
        raise ValueError("sweep: duplicate parameter combinations (repeated values in grid_of_params)")

    store = _PointStore(cache_dir, identity, fixed_all, cache_key)
    results: list[Any] = [store.read(k) for k in keys]
    n_cached = sum(r is not None for r in results)
    todo = [i for i, r in enumerate(results) if r is None]

    def done(i, res, seconds):
        results[i] = (res, seconds, False)
        store.write(keys[i], points[i], res, seconds)

    def failed(i, exc):
        if errors == "raise":
            raise exc
        results[i] = ({"error": f"{type(exc).__name__}: {exc}"}, None, False)

    run = RUNNERS[_runner(scheduler, len(todo))]
    bar = _progress_bar(len(points), n_cached, progress)
    try:
        desc = run(
            func,
            [(i, points[i], keys[i]) for i in todo],
            fixed_all,
            done,
            failed,
            bar,
            scheduler=scheduler,
            n_workers=n_workers,
        )
    finally:
        if bar is not None:
            bar.close()

    rows = [_row(p, r[0]) for p, r in zip(points, results)]
    n_err = sum("error" in r[0] for r in results)
    info = {
        "function": identity,
        "fixed": fixed_all,
        "scheduler": desc,
        "n_points": len(points),
        "computed": len(todo) - n_err,
        "cached": n_cached,
        "failed": n_err,
        "point_seconds": float(sum(r[1] for r in results if r[1] is not None and not r[2])),
        "seconds": time.perf_counter() - t_start,
        "cache_dir": store.where,
    }
    result = SweepResult(rows, names, info)
    if out is not None:
        result.save(out)
    return result


# ------------------------------------------------------------------------------------------------------------
# the pieces of a sweep: its points, their cache, and the runners that evaluate them
# ------------------------------------------------------------------------------------------------------------
def _points(grid_of_params) -> tuple[list[str], list[dict]]:
    """Parameter names and the Cartesian product of their values (first name slowest), checked."""
    if not isinstance(grid_of_params, dict) or not grid_of_params:
        raise ValueError("sweep: grid_of_params must be a non-empty dict of name -> list of values")
    names = list(grid_of_params)
    values = []
    for k in names:
        v = grid_of_params[k]
        if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
            raise ValueError(f"sweep: values of {k!r} must be a list, got {v!r}")
        v = _plain(list(v))
        if not v:
            raise ValueError(f"sweep: parameter {k!r} has no values")
        values.append(v)
    return names, [dict(zip(names, combo)) for combo in itertools.product(*values)]


def _row(params: dict, result: dict) -> dict:
    """One table row: the parameters, then the outputs (an output named like a parameter gets ``result_``)."""
    row = dict(params)
    for k, v in result.items():
        row[k if k not in params else f"result_{k}"] = v
    return row


class _PointStore:
    """The cache folder of a sweep: one JSON file per finished point, written atomically; no folder, no cache."""

    def __init__(self, cache_dir, identity: dict, fixed: dict, cache_key):
        self.path = Path(cache_dir) if cache_dir is not None else None
        self.where = None if self.path is None else str(self.path)
        self.identity, self.fixed, self.cache_key = identity, fixed, _plain(cache_key)
        if self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)

    def read(self, key: str):
        """``(result, seconds, True)`` of a cached point, or None."""
        doc = None if self.path is None else _read_cached(self.path / f"{key}.json", key)
        return None if doc is None else (doc["result"], doc.get("seconds"), True)

    def write(self, key: str, params: dict, result: dict, seconds: float) -> None:
        if self.path is not None:
            _write_atomic(
                self.path / f"{key}.json",
                {
                    "format": CACHE_FORMAT,
                    "key": key,
                    "function": self.identity,
                    "params": params,
                    "fixed": self.fixed,
                    "cache_key": self.cache_key,
                    "result": result,
                    "seconds": seconds,
                },
            )


def _runner(scheduler, n_todo: int) -> str:
    """Which runner evaluates the points left: ``cached`` (none left), ``serial`` or ``dask``."""
    if n_todo == 0:
        if isinstance(scheduler, str) and scheduler not in ("serial", "local", "dask") and "://" not in scheduler:
            raise ValueError(
                f"sweep: scheduler must be None, 'serial', 'local', 'tcp://host:port' or a Client, got {scheduler!r}"
            )
        return "cached"
    if scheduler is None:
        return "dask" if (dask_available() and n_todo > 1) else "serial"
    if isinstance(scheduler, str) and scheduler == "serial":
        return "serial"
    if isinstance(scheduler, str) and scheduler not in ("local", "dask") and "://" not in scheduler:
        raise ValueError(
            f"sweep: scheduler must be None, 'serial', 'local', 'tcp://host:port' or a Client, got {scheduler!r}"
        )
    if not dask_available():
        raise ImportError(f"sweep: scheduler={scheduler!r} needs dask.distributed: pip install 'fokkerplanck[sweep]'")
    return "dask"


def _run_cached(func, todo, fixed, done, failed, bar, **_) -> str:
    return "cached"


def _run_serial(func, todo, fixed, done, failed, bar, **_) -> str:
    """Evaluate the points one after another in this process."""
    for i, params, _key in todo:
        try:
            res, secs = _call_point(func, params, fixed)
        except Exception as exc:
            failed(i, exc)
        else:
            done(i, res, secs)
        if bar is not None:
            bar.update(1)
    return "serial"


def _run_dask(func, todo, fixed, done, failed, bar, *, scheduler, n_workers) -> str:
    """Submit every point to a Dask cluster (a fresh LocalCluster, an address, or a Client) and collect them
    as they finish; the cluster is closed afterwards if this call started it."""
    from dask.distributed import as_completed

    client, cluster, desc = _open_client("local" if scheduler in (None, "dask") else scheduler, n_workers, len(todo))
    try:
        futs = {
            client.submit(_call_point, func, params, fixed, key=f"sweep-point-{key}", pure=False): i
            for i, params, key in todo
        }
        try:
            for f in as_completed(list(futs)):
                if f.status == "error":
                    failed(futs[f], f.exception())
                else:
                    done(futs[f], *f.result())
                if bar is not None:
                    bar.update(1)
        finally:
            client.cancel(list(futs))
    finally:
        _close_quietly(client, cluster, own_client=isinstance(scheduler, str) or scheduler is None)
    return desc


def _close_quietly(client, cluster, own_client: bool) -> None:
    """Close what this sweep opened; shutting a LocalCluster down makes distributed log benign 'stream closed'
    errors, silenced here."""
    quiet = [logging.getLogger(n) for n in ("distributed", "tornado")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.CRITICAL)
    try:
        if cluster is not None:
            client.close()
            cluster.close()
        elif own_client:
            client.close()
    finally:
        for lg, lv in zip(quiet, levels):
            lg.setLevel(lv)


#: runner name -> runner
RUNNERS = {"cached": _run_cached, "serial": _run_serial, "dask": _run_dask}
