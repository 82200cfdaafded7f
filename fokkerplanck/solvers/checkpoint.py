"""Checkpoints of long runs (``evolve``, ``simulate``): atomic writes and checked resumes.

A checkpoint is an ``.npz`` file with the run's arrays and a JSON record of the parameters that identify
the run. It is written to a temporary file in the same directory, flushed, then moved into place with
``os.replace``, so an interruption leaves either the previous checkpoint or the new one, never half a file.
Reading it back compares the parameters with those of the current run and raises
:class:`CheckpointMismatch` naming what differs.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import signal
import tempfile
from pathlib import Path

import numpy as np

CHECKPOINT_FORMAT = "fokkerplanck-checkpoint/2"  # 2: the arrays carry a checksum


def to_jsonable(obj, *, keep_nonfinite: bool = False, on_unknown=repr):
    """Plain-JSON copy of ``obj``: numpy scalars and arrays become numbers and lists, tuples lists, paths
    strings; non-finite floats become ``None`` (or stay floats with ``keep_nonfinite``, which Python's json
    reads back); any other object goes through ``on_unknown`` (default ``repr``; a function that raises makes
    the conversion strict)."""

    def conv(o):
        if isinstance(o, dict):
            return {str(k): conv(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [conv(v) for v in o]
        if isinstance(o, np.ndarray):
            return conv(o.tolist())
        if isinstance(o, (bool, np.bool_)):
            return bool(o)
        if isinstance(o, (int, np.integer)):
            return int(o)
        if isinstance(o, (float, np.floating)):
            f = float(o)
            return f if (keep_nonfinite or math.isfinite(f)) else None
        if o is None or isinstance(o, str):
            return o
        if isinstance(o, Path):
            return str(o)
        return on_unknown(o)

    return conv(obj)


class CheckpointMismatch(ValueError):
    """A checkpoint that cannot be resumed: unreadable, of another kind, or written for a different problem."""


#: called as ``hook(path, count)`` after every checkpoint written by this process (tests inject interruptions)
_checkpoint_hook = None
#: testing hook: with this environment variable set to N, the process kills itself (SIGKILL, no clean-up)
#: right after writing its N-th checkpoint -- an interruption at a random moment, made reproducible
KILL_ENV = "FOKKERPLANCK_KILL_AFTER_CHECKPOINTS"
_written = 0


def array_hash(*arrays) -> str:
    """SHA-256 (hex, first 32 digits) of the dtypes, shapes and bytes of ``arrays``."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:32]


def _write_npz(f, arrays: dict) -> None:
    np.savez(f, **arrays)


def atomic_write(path, write, *, mode: str = "wb", prefix: str | None = None, suffix: str = ".tmp") -> Path:
    """Write ``path`` atomically: ``write(f)`` fills a temporary file in the same directory (``prefix``
    default ``.NAME.``), which is flushed, ``fsync``-ed and ``os.replace``-d over ``path``; on any error the
    temporary file is removed. A kill at any moment leaves the old file or the new one, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}." if prefix is None else prefix, suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable (POSIX; best effort elsewhere)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return path


def write_checkpoint(path, kind: str, meta: dict, arrays: dict, complete: bool = False) -> Path:
    """Write ``arrays`` and ``meta`` to the checkpoint ``path`` atomically (temporary file in the same
    directory, ``fsync``, ``os.replace``); returns the path."""
    global _written
    path = Path(path)
    if "__meta__" in arrays:
        raise ValueError("io.write_checkpoint: '__meta__' is reserved")
    arrays = {k: np.asarray(a) for k, a in arrays.items()}
    doc = {
        "format": CHECKPOINT_FORMAT,
        "kind": kind,
        "complete": bool(complete),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "parameters": to_jsonable(meta),
        "arrays_hash": _arrays_hash(arrays),
    }
    store = {"__meta__": np.array(json.dumps(doc, allow_nan=False)), **arrays}
    atomic_write(path, lambda f: _write_npz(f, store))
    _written += 1
    if _checkpoint_hook is not None:
        _checkpoint_hook(path, _written)
    kill_after = os.environ.get(KILL_ENV)
    if kill_after and _written >= int(kill_after):
        os.kill(os.getpid(), signal.SIGKILL)
    return path


def _arrays_hash(arrays: dict) -> str:
    """:func:`array_hash` of the arrays in the order of their names (and the names themselves)."""
    names = sorted(arrays)
    return array_hash(np.array(names), *(arrays[k] for k in names))


def remove_checkpoint(path) -> None:
    """Remove the checkpoint ``path`` and the temporary files ``.NAME.*.tmp`` that killed writers left."""
    path = Path(path)
    path.unlink(missing_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)


def _differences(saved: dict, expected: dict) -> list:
    out = []
    for k in sorted(set(saved) | set(expected)):
        a, b = saved.get(k, "<missing>"), expected.get(k, "<missing>")
        if a != b:
            sa, sb = json.dumps(a), json.dumps(b)
            if len(sa) > 60 or len(sb) > 60:
                out.append(k)
            else:
                out.append(f"{k} {sa} (checkpoint) != {sb} (this run)")
    return out


def read_checkpoint(path, kind: str, meta: dict):
    """The arrays of the checkpoint ``path`` and its ``complete`` flag, ``(arrays, complete)``, or ``None``
    when there is no file. Raises :class:`CheckpointMismatch` when the file is unreadable, of another kind,
    its arrays do not match the checksum written with them (an edited or damaged file), or its parameters
    differ from ``meta`` (the problem of this run)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        doc = json.loads(str(arrays.pop("__meta__")))
    except Exception as e:  # noqa: BLE001 - any failure to read is one clear error
        raise CheckpointMismatch(f"cannot read checkpoint '{path}': {e}") from None
    if doc.get("format") != CHECKPOINT_FORMAT or doc.get("kind") != kind:
        raise CheckpointMismatch(
            f"checkpoint '{path}' is a {doc.get('kind')!r} checkpoint of format "
            f"{doc.get('format')!r}, not a {kind!r} checkpoint of {CHECKPOINT_FORMAT!r}"
        )
    if doc.get("arrays_hash") != _arrays_hash(arrays):
        raise CheckpointMismatch(
            f"checkpoint '{path}' was changed after it was written (its arrays no longer "
            "match their checksum). Remove it, or run without resume"
        )
    diff = _differences(doc.get("parameters", {}), to_jsonable(meta))
    if diff:
        raise CheckpointMismatch(
            f"checkpoint '{path}' belongs to a different {kind} run; differs in: "
            + "; ".join(diff)
            + ". Remove it, or run without resume"
        )
    return arrays, bool(doc.get("complete"))
