"""Output folders of the command line: one writer at a time, a run written aside and moved into place whole.

A run of ``fokkerplanck COMMAND --out DIR`` goes through :class:`OutputFolder`:

1. **lock**: an exclusive, non-blocking ``fcntl.flock`` on the sibling file ``.DIR.lock`` (it holds the
   writer's pid, and is removed when the run ends). A second run into the same ``DIR`` stops at once with one
   line, ``'DIR' is being written by another run (pid N)``; it does not wait. The kernel drops the lock of a
   killed process, so a crashed run never leaves ``DIR`` locked.
2. **check**: ``DIR`` may be absent, empty, or a previous fokkerplanck run: a ``result.json`` of the
   package's format (:data:`fokkerplanck.results.io.FORMAT`) beside only the files such a run writes (those
   it lists, ``arrays.npz``, ``config.toml``, ``densities.nc``, a checkpoint), or only a checkpoint of ours
   (a run interrupted before this layout). Anything else is refused with one line unless ``overwrite``.
3. **stage**: the run writes into the sibling folder ``DIR.partial``; the checkpoint of ``evolve`` and
   ``simulate`` lives there too, so an interrupted run leaves ``DIR`` exactly as it was (the previous complete
   result, consistent) and its checkpoint in ``DIR.partial``, where ``--resume`` finds it. A run without
   ``resume`` empties ``DIR.partial`` first; one with it keeps only the checkpoint.
4. **publish**: ``DIR`` is renamed to ``.DIR.old-PID``, ``DIR.partial`` to ``DIR``, and the old folder is
   deleted: a reader sees the previous run or the new one, whole, never a mix (between the two renames
   ``DIR`` is briefly absent; a crash exactly there is repaired by the next run, which renames the old folder
   back). A foreign folder written with ``overwrite`` is not deleted: the run's files replace the files of the
   same names in it, ``result.json`` last, and the rest stays.
5. **close**: the lock is released; a run that did not publish removes ``DIR.partial`` unless it holds a
   checkpoint.

Without ``fcntl`` (Windows) there is no lock; the rest works alike.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

from .io import ARRAYS_FILE, CHECKPOINT_FILE, FORMAT, NETCDF_FILE, RESULT_FILE, STAGING_SUFFIX

__all__ = ["OutputError", "OutputFolder", "foreign_entries", "STAGING_SUFFIX"]

_FIXED = {RESULT_FILE, ARRAYS_FILE, NETCDF_FILE, "config.toml", CHECKPOINT_FILE, ".write-test"}


class OutputError(Exception):
    """The output folder cannot be used: written by another run, foreign, or not writable (one line)."""


def _is_checkpoint_tmp(name: str) -> bool:
    return name.startswith(f".{CHECKPOINT_FILE}.") and name.endswith(".tmp")


def _own_names(folder: Path) -> set | None:
    """The names a previous fokkerplanck run in ``folder`` wrote (from its ``result.json``), or None when its
    ``result.json`` is not one of ours."""
    rj = folder / RESULT_FILE
    if not rj.exists():
        return set(_FIXED - {RESULT_FILE, ARRAYS_FILE, NETCDF_FILE})  # an interrupted run of the old layout
    try:
        doc = json.loads(rj.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        return None
    listed = [f for f in doc.get("figures") or [] if isinstance(f, str)]
    if isinstance(doc.get("netcdf"), str):
        listed.append(doc["netcdf"])
    return _FIXED | {Path(f).name for f in listed}


def foreign_entries(folder) -> list[str]:
    """Names in ``folder`` that no fokkerplanck run wrote (empty: absent, empty, or a previous run)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    names = sorted(p.name for p in folder.iterdir())
    own = _own_names(folder)
    if own is None:
        return [RESULT_FILE] + [n for n in names if n != RESULT_FILE]
    return [n for n in names if n not in own and not _is_checkpoint_tmp(n)]


def _staging_foreign(staging: Path) -> list[str]:
    """Entries of ``DIR.partial`` that a staged run could not have written (plain files of ours only)."""
    bad = []
    for p in staging.iterdir():
        ours = p.name in _FIXED or p.name.endswith(".png") or _is_checkpoint_tmp(p.name)
        if not ours or p.is_dir() or p.is_symlink():
            bad.append(p.name)
    return sorted(bad)


def _listing(names, limit=3) -> str:
    shown = ", ".join(repr(n if len(n) <= 40 else n[:37] + "...") for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


class OutputFolder:
    """The output folder ``DIR`` of one run (see the module docstring): ``with OutputFolder(DIR) as staging:``
    write into ``staging``, then call :meth:`publish`.

    ``overwrite``: a folder holding files of no fokkerplanck run is written into (the run's files replace the
    same names) instead of refused. ``resume``: keep the checkpoint in ``DIR.partial`` (and adopt
    ``DIR/checkpoint.npz`` of the previous layout). ``outside``: ``{label: path}`` of folders the run writes
    that must not lie inside ``DIR`` (they would be replaced with it)."""

    def __init__(self, out, *, overwrite: bool = False, resume: bool = False, outside: dict | None = None):
        self.shown = str(out)
        path = Path(out)
        if path.is_symlink():  # write where the link points; the link stays
            path = Path(os.path.realpath(path))
        self.final = Path(os.path.abspath(path))
        self.overwrite, self.resume = bool(overwrite), bool(resume)
        self.outside = {k: v for k, v in (outside or {}).items() if v is not None}
        self.staging = self.final.with_name(self.final.name + STAGING_SUFFIX) if self.final.name else None
        self.merge = False
        self.published = False
        self._lock_fd = None
        self._lock_path = None

    # ---- the steps ------------------------------------------------------------------------------------------
    def __enter__(self) -> Path:
        return self.open()

    def __exit__(self, *exc):
        self.close()
        return False

    def open(self) -> Path:
        final = self.final
        if not final.name or final.parent == final:
            raise OutputError(f"cannot use '{self.shown}' as an output folder; name a folder below it")
        if final.exists() and not final.is_dir():
            raise OutputError(f"output folder '{self.shown}' exists and is not a folder")
        for label, p in self.outside.items():
            p = Path(os.path.abspath(p))
            if p == final or final in p.parents:
                raise OutputError(
                    f"{label} '{p}' lies inside the output folder '{self.shown}', which a run "
                    "replaces whole; put it elsewhere"
                )
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot write to output directory '{self.shown}': {e.strerror or e}") from None
        self._lock()
        try:
            self._repair()
            foreign = foreign_entries(final)
            cwd = Path(os.path.abspath(os.getcwd()))
            if foreign and not self.overwrite:
                raise OutputError(
                    f"output folder '{self.shown}' holds files that no fokkerplanck run wrote "
                    f"({_listing(foreign)}); choose another --out, or pass --overwrite to write "
                    "into it anyway"
                )
            self.merge = bool(foreign) or cwd == final or final in cwd.parents
            if self.merge and not os.access(final, os.W_OK):
                raise OutputError(f"cannot write to output directory '{self.shown}': Permission denied")
            self._stage()
        except BaseException:
            self._unlock()
            raise
        return self.staging

    def publish(self) -> Path:
        """Move the staged run into place (see the module docstring); returns ``DIR``."""
        staging, final = self.staging, self.final
        for stale in staging.glob(f".{CHECKPOINT_FILE}.*.tmp"):
            stale.unlink(missing_ok=True)
        if self.merge:
            old = _own_names(final) if (final / RESULT_FILE).is_file() else None
            new = {p.name for p in staging.iterdir()}
            for name in sorted(new - {RESULT_FILE}) + ([RESULT_FILE] if RESULT_FILE in new else []):
                os.replace(staging / name, final / name)
            for name in (old or set()) - new - {".write-test"}:
                if (final / name).is_file():
                    (final / name).unlink()
            shutil.rmtree(staging, ignore_errors=True)
        elif final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.rename(final, old)
            os.rename(staging, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(staging, final)
        _fsync_dir(final.parent)
        self.published = True
        return final

    def close(self) -> None:
        try:
            if not self.published and self._lock_fd is not None and self.staging.is_dir():
                if not (self.staging / CHECKPOINT_FILE).is_file():
                    shutil.rmtree(self.staging, ignore_errors=True)
        finally:
            self._unlock()

    # ---- helpers --------------------------------------------------------------------------------------------
    def _lock(self) -> None:
        path = self.final.with_name(f".{self.final.name}.lock")
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise OutputError(f"cannot write to output directory '{self.shown}': {e.strerror or e}") from None
            if fcntl is None:  # pragma: no cover
                break
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                try:
                    pid = os.read(fd, 32).decode("ascii", "replace").strip()
                finally:
                    os.close(fd)
                who = f" (pid {pid})" if pid.isdigit() else ""
                raise OutputError(
                    f"output folder '{self.shown}' is being written by another run{who}; wait for "
                    "it to finish or choose another --out"
                ) from None
            try:  # the file may have been removed by the previous holder: lock it anew
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd, self._lock_path = fd, path

    def _unlock(self) -> None:
        if self._lock_fd is None:
            return
        try:
            self._lock_path.unlink(missing_ok=True)  # while still holding it (see _lock)
        except OSError:
            pass
        os.close(self._lock_fd)
        self._lock_fd = None

    def _repair(self) -> None:
        """Folders ``.DIR.old-PID`` of a publish that died between its two renames: put the old run back when
        ``DIR`` is missing, else remove them (this run holds the lock, so their writer is gone)."""
        olds = sorted(self.final.parent.glob(f".{self.final.name}.old-*"))
        for i, old in enumerate(olds):
            if not old.is_dir():
                continue
            if i == len(olds) - 1 and not self.final.exists():
                os.rename(old, self.final)
            else:
                shutil.rmtree(old, ignore_errors=True)

    def _stage(self) -> None:
        staging = self.staging
        try:
            if staging.is_symlink() or (staging.exists() and not staging.is_dir()):
                raise OutputError(
                    f"'{staging}' (where a run is written before it is moved into place) exists "
                    "and is not a folder of fokkerplanck's; move it away"
                )
            if staging.is_dir():
                bad = _staging_foreign(staging)
                if bad:
                    raise OutputError(
                        f"'{staging}' (where a run is written before it is moved into place) holds "
                        f"files that no fokkerplanck run wrote ({_listing(bad)}); move it away"
                    )
                for p in staging.iterdir():
                    if not (self.resume and p.name == CHECKPOINT_FILE):
                        p.unlink()
            staging.mkdir(exist_ok=True)
            legacy = self.final / CHECKPOINT_FILE  # a checkpoint of the previous layout, DIR/checkpoint.npz
            if self.resume and legacy.is_file() and not (staging / CHECKPOINT_FILE).exists():
                shutil.copy2(legacy, staging / CHECKPOINT_FILE)
            probe = staging / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OutputError:
            raise
        except OSError as e:
            raise OutputError(
                f"cannot write to output directory '{self.shown}' (a run is written into "
                f"'{staging.name}' beside it first): {e.strerror or e}"
            ) from None
