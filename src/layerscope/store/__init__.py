"""Results on disk: one long table of measurements and one row of run metadata per run.

Layout of a run folder::

    RUN/run.parquet                   the run record (RunRecord, RUN_SCHEMA): run_id, config (JSON), seed, versions,
                                      git revision, start/end, status, error, resumes, the plan
    RUN/results/step-000000120.parquet  the rows measured at step 120 (one file per checkpoint)
    RUN/state.pt                      model, optimizer and RNG state of the last checkpoint (for --resume)
    RUN/weights/step-000000120.pt     model weights at checkpoints (optional)
    RUN/derived/phases.parquet        tables computed from the results (detected phases), own columns
    RUN/.lock                         held by the process that writes the run (pid and host inside)

The results table has the columns of :data:`layerscope.results.SCHEMA`; one row
per (step, split, layer, metric). Model-level metrics (accuracy, loss) have layer
``""``. The metrics and their meaning are registered in
:func:`layerscope.probes.registry.metrics` (``layerscope metrics`` prints them).

Each checkpoint's rows are written to a temporary file, flushed to disk and
renamed into place (:func:`atomic_write`), so a killed run (or a power cut) keeps
every finished checkpoint and never a half-written one. One process at a time
writes a run: it holds the folder's lock (:class:`RunLock`) for the run's life. Read
the table with :func:`load` (pandas) or straight from DuckDB or polars:
``SELECT * FROM read_parquet('RUN/results/*.parquet')``.
"""

from __future__ import annotations

import errno
import io
import os
import re
import shutil
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ..results import COLUMNS, REPLICATES, SCHEMA, STEP_SCHEMA, empty
from .record import RUN_SCHEMA, STATUSES, RunRecord, ending
from .remote import Location, atomic_write, location

__all__ = [
    "COLUMNS",
    "DERIVED",
    "RUN_SCHEMA",
    "SCHEMA",
    "STATUSES",
    "STEP_FILE",
    "TRIALS",
    "CorruptRunError",
    "Peek",
    "RunLock",
    "RunLockedError",
    "RunRecord",
    "RunStore",
    "atomic_write",
    "checkpoint_value",
    "ending",
    "find_runs",
    "load",
    "load_runs",
    "load_weights",
    "location",
    "move_run",
    "peek",
    "sweep_members",
]

#: Derived tables (computed from the checkpoints, e.g. detected phases) live in
#: ``RUN/derived/NAME.parquet``, each with its own schema, never among the measurements.
DERIVED = "derived"

# : A checkpoint's results file, as layerscope names it (``step-`` and nine digits); other files in results/ are not
# checkpoints.
STEP_FILE = re.compile(r"step-(\d{9})\.parquet")
#: Saved weights at a checkpoint (``probes.save_weights``).
WEIGHTS_FILE = re.compile(r"step-(\d{9})\.pt")


class CorruptRunError(ValueError):
    """A file of a run folder that cannot be read (truncated, tampered with, not layerscope's)."""


class RunLockedError(RuntimeError):
    """Another live process holds the run folder."""


def _write_table(frame: pd.DataFrame, path: Path, schema: pa.Schema) -> None:
    table = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def _read_table(path: Path, schema: pa.Schema | None = None) -> pd.DataFrame:
    try:
        table = pq.read_table(path)
        if schema is not None:
            table = table.select(schema.names).cast(schema)
    except (OSError, pa.ArrowException, KeyError, ValueError) as err:
        raise CorruptRunError(
            f"{path} cannot be read ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from None
    return table.to_pandas()


class RunLock:
    """An exclusive lock on a run folder for one process's lifetime (``RUN/.lock``).

    ``fcntl.flock`` on a lock file that holds the holder's pid and host: the
    operating system drops the lock when its process dies however it dies, so a
    stale lock is taken over without any clean-up. (On network file systems
    without ``flock`` support the lock is advisory at best.)
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / ".lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(fd, 256, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise RunLockedError(
                    f"{self.path.parent} is in use by {holder}; wait for it to end, or choose another --out or name"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class RunStore:
    """Reads and writes one run's folder."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.results_dir = self.run_dir / "results"
        self.derived_dir = self.run_dir / DERIVED

    def is_run(self) -> bool:
        """Whether this folder holds a layerscope run (its ``run.parquet``)."""
        return (self.run_dir / "run.parquet").is_file()

    def lock(self) -> RunLock:
        """The folder's exclusive lock (a context manager); raises :class:`RunLockedError` if held."""
        return RunLock(self.run_dir)

    def create(self) -> None:
        """Make the run folder and its ``results/`` folder."""
        self.results_dir.mkdir(parents=True, exist_ok=True)

    def remove_temporaries(self) -> None:
        """Delete the temporary files of writes that a killed process left unfinished: call with the lock held."""
        for tmp in self.run_dir.rglob(".*.tmp-*"):
            tmp.unlink(missing_ok=True)

    def clear(self) -> None:
        """Delete everything in the run folder but its lock: call with the lock held.

        Refuses a folder that is not a layerscope run, so that no mistake in a path
        can delete a user's files.
        """
        if not self.is_run():
            raise ValueError(f"{self.run_dir} is not a layerscope run (no run.parquet): not deleting it")
        for entry in self.run_dir.iterdir():
            if entry.name == ".lock":
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    # results
    def write_checkpoint(self, step: int, rows: pd.DataFrame) -> None:
        """Write all rows of one checkpoint at once (replacing any earlier file of that step)."""
        missing = [c for c in COLUMNS if c not in rows.columns]
        if missing:
            raise ValueError(f"results rows lack columns {missing}")
        if REPLICATES.name not in rows.columns:
            rows = rows.assign(**{REPLICATES.name: None})
        self.results_dir.mkdir(parents=True, exist_ok=True)
        _write_table(rows, self.results_dir / f"step-{step:09d}.parquet", STEP_SCHEMA)

    def checkpoint_files(self) -> list[Path]:
        """The finished checkpoints' files, ``results/step-*.parquet``, in step order."""
        if not self.results_dir.exists():
            return []
        return sorted(p for p in self.results_dir.glob("step-*.parquet") if STEP_FILE.fullmatch(p.name))

    def completed_steps(self) -> list[int]:
        """The steps of the finished checkpoints, ascending."""
        return [int(STEP_FILE.fullmatch(p.name)[1]) for p in self.checkpoint_files()]

    def write_derived(self, name: str, rows: pd.DataFrame, schema: pa.Schema) -> None:
        """A table computed from the checkpoints, in ``RUN/derived/NAME.parquet`` with its own schema; replaced on each
        call.
        """
        self.derived_dir.mkdir(parents=True, exist_ok=True)
        _write_table(rows, self.derived_dir / f"{name}.parquet", schema)

    def read_derived(self, name: str, schema: pa.Schema) -> pd.DataFrame:
        """The derived table ``NAME`` with ``schema``'s columns (no rows if it was never written)."""
        path = self.derived_dir / f"{name}.parquet"
        return _read_table(path, schema) if path.exists() else schema.empty_table().to_pandas()

    def results(self) -> pd.DataFrame:
        """Every measured row, one checkpoint file after another, with the column types of :data:`SCHEMA`.

        A checkpoint file that cannot be read is left out with a warning naming it.
        """
        frames = []
        for path in self.checkpoint_files():
            try:
                frames.append(_read_table(path, SCHEMA))
            except CorruptRunError as err:
                warnings.warn(f"{err}; left out (delete it, or re-run the run with --overwrite)", stacklevel=2)
        if not frames:
            return empty()
        return pd.concat(frames, ignore_index=True).astype(empty().dtypes.to_dict())

    def replicates(self) -> pd.DataFrame:
        """Each row's resampling replicates: columns ``step, split, layer, metric, replicates`` (an array per row).

        Only rows that have replicates; a checkpoint written before layerscope kept
        them, or one that cannot be read, has none.
        """
        keys = ["step", "split", "layer", "metric"]
        frames = []
        for path in self.checkpoint_files():
            try:
                table = pq.read_table(path)
            except (OSError, pa.ArrowException):
                continue
            if REPLICATES.name in table.column_names:
                frame = table.select([*keys, REPLICATES.name]).to_pandas()
                frames.append(frame[frame[REPLICATES.name].notna()])
        if not frames:
            return pd.DataFrame({**{k: pd.Series(dtype=empty()[k].dtype) for k in keys}, REPLICATES.name: []})
        return pd.concat(frames, ignore_index=True)

    # the run record
    def start_run(self, record: RunRecord) -> RunRecord:
        """Make the folder and write the record of a run that starts (or resumes); returns it."""
        self.create()
        self.update_run(record)
        return record

    def update_run(self, record: RunRecord) -> None:
        """Replace ``run.parquet`` with ``record``, durably."""
        table = record.to_table()
        atomic_write(self.run_dir / "run.parquet", lambda tmp: pq.write_table(table, tmp))

    def end_run(self, record: RunRecord, status: str, error: str | None = None) -> RunRecord:
        """Write how the run ended (``finished``, ``failed`` with the error, ``interrupted``) and when; returns
        the record.

        A write that fails (a full disk) is let pass: it must not hide the error that ended the run.
        """
        ended = record.ended(status, error)
        try:
            self.update_run(ended)
        except OSError:
            pass
        return ended

    def read_run(self) -> RunRecord:
        """The run's record; :class:`CorruptRunError` if ``run.parquet`` cannot be read or is not a record."""
        path = self.run_dir / "run.parquet"
        if not path.exists():
            raise FileNotFoundError(f"{self.run_dir} is not a layerscope run (no run.parquet)")
        try:
            return RunRecord.from_table(pq.read_table(path), str(path))
        except (OSError, pa.ArrowException) as err:
            raise CorruptRunError(
                f"{path} cannot be read ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
            ) from None
        except ValueError as err:
            raise CorruptRunError(str(err)) from None

    # training state, for resuming
    def save_state(self, state: dict[str, Any]) -> None:
        """Write the training state of the last checkpoint (``state.pt``, for resuming), durably."""
        atomic_write(self.run_dir / "state.pt", lambda tmp: torch.save(state, tmp))

    def load_state(self) -> dict[str, Any] | None:
        """The saved training state (None if there is none), loaded with ``weights_only=True``."""
        path = self.run_dir / "state.pt"
        if not path.exists():
            return None
        try:
            return torch.load(path, weights_only=True)
        except Exception as err:  # noqa: BLE001 - torch raises many kinds for a bad file
            # Never follow torch's advice to retry with weights_only=False: a file that
            # fails the safe loader may have been tampered with.
            raise CorruptRunError(
                f"{path} cannot be read as a layerscope training state ({type(err).__name__}); "
                "it is truncated or not layerscope's. Start the run again with --overwrite"
            ) from None

    def save_weights(self, step: int, model: torch.nn.Module) -> None:
        """Write the model's ``state_dict`` at a checkpoint to ``weights/step-N.pt``, durably."""
        folder = self.run_dir / "weights"
        folder.mkdir(exist_ok=True)
        state = model.state_dict()
        atomic_write(folder / f"step-{step:09d}.pt", lambda tmp: torch.save(state, tmp))

    def saved_weights(self) -> dict[int, Path]:
        """The weights saved at checkpoints, by step (ascending): ``weights/step-N.pt``."""
        folder = self.run_dir / "weights"
        files = sorted(folder.glob("step-*.pt")) if folder.is_dir() else []
        return {int(m[1]): p for p in files if (m := WEIGHTS_FILE.fullmatch(p.name))}


@dataclass(frozen=True)
class Peek:
    """Where a run stands, from its folder alone: its record (None while there is none, or it is
    being replaced) and its last finished checkpoint (step, and file name below ``results/``)."""

    record: RunRecord | None
    last_step: int | None
    last_file: str | None

    @property
    def status(self) -> str | None:
        return None if self.record is None else self.record.status


def peek(run: Location) -> Peek:
    """A run's record and last checkpoint, read from its folder (local or remote) without taking its lock.

    Never raises for a folder that is not (or not yet) a run: its record is then None.
    """
    try:
        record = RunRecord.from_table(pq.read_table(io.BytesIO(run.read_bytes("run.parquet"))))
    except (OSError, ValueError, pa.ArrowException):  # not written yet, being replaced, or unreadable
        record = None
    files = sorted(f for f in run.join("results").files() if STEP_FILE.fullmatch(f))
    last = files[-1] if files else None
    return Peek(record, None if last is None else int(STEP_FILE.fullmatch(last)[1]), last)


def move_run(source: Location, target: Location) -> None:
    """Move a run folder to ``target`` (a new path); on a local filesystem, refused while a process holds its lock."""
    if source.is_local:
        destination = target.local()
        destination.parent.mkdir(parents=True, exist_ok=True)
        with RunStore(source.local()).lock():
            source.local().rename(destination)
        return
    for relative in source.files():  # object stores have no folders to rename: copy, then delete
        target.write_bytes(relative, source.read_bytes(relative))
    source.fs.delete_dir(source.path)


def checkpoint_value(run: Location, step_file: str, metric: str, layer: str = "") -> float | None:
    """One number of a checkpoint's file (``metric`` of ``layer``; model-level by default), or None."""
    try:
        rows = pq.read_table(
            io.BytesIO(run.join("results").read_bytes(step_file)), columns=["layer", "metric", "value"]
        ).to_pylist()
    except (OSError, ValueError, pa.ArrowException):
        return None
    return next((r["value"] for r in rows if r["metric"] == metric and r["layer"] == layer), None)


TRIALS = "trials.parquet"


def sweep_members(folder: str | Path) -> tuple[list[Path], list[Path]]:
    """A sweep's folder: the run folders of the trials its ``trials.parquet`` lists (the grid of
    its last invocation), and the run folders beside them that are not trials of that grid
    (dropped from the sweep file, or of another run)."""
    folder = Path(folder)
    listed = set(_read_table(folder / TRIALS).run_id.astype(str))
    runs = sorted(p for p in folder.iterdir() if p.is_dir() and RunStore(p).is_run())
    return [p for p in runs if p.name in listed], [p for p in runs if p.name not in listed]


def find_runs(folder: str | Path) -> list[Path]:
    """The run folders at ``folder`` (itself, if it is a run) or directly below it, sorted.

    For a sweep's folder (one with ``trials.parquet``), only its trials' folders: the
    others are left out with a warning that counts them (:func:`sweep_members`).
    """
    folder = Path(folder)
    if RunStore(folder).is_run():
        return [folder]
    if not folder.is_dir():
        return []
    if (folder / TRIALS).is_file():
        runs, others = sweep_members(folder)
        if others:
            names = ", ".join(p.name for p in others[:5]) + (", ..." if len(others) > 5 else "")
            warnings.warn(
                f"{len(others)} run folder(s) in {folder} are not trials of its sweep's current grid ({TRIALS}): "
                f"left out ({names})",
                stacklevel=2,
            )
        return runs
    return sorted(p for p in folder.iterdir() if p.is_dir() and RunStore(p).is_run())


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A saved state_dict, loaded without unpickling arbitrary objects (``weights_only=True``)."""
    try:
        return torch.load(path, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise CorruptRunError(
            f"{path} cannot be read as saved weights ({type(err).__name__}); it is truncated or not layerscope's"
        ) from None


def load(path: str | Path) -> pd.DataFrame:
    """The results table of a run folder, or of every run below a folder, as one DataFrame.

    For a sweep's folder (one with ``trials.parquet``), each row also carries its
    trial's axis values, a column per axis (as strings). ``path`` may be a URI that
    pyarrow understands (``s3://bucket/sweeps/NAME``): the tables are read from there.
    """
    from .remote import local_view

    where = location(path)
    if not where.is_local:
        with local_view(where, upload=False) as local:
            return load(local)
    path = where.local()
    runs = find_runs(path)
    if not runs:
        raise FileNotFoundError(f"no layerscope runs in {path} (no run.parquet there or in its subfolders)")
    table = pd.concat([RunStore(r).results() for r in runs], ignore_index=True)
    trials = Path(path) / TRIALS
    if trials.is_file():
        axes = _read_table(trials).drop(columns=["status"], errors="ignore")
        table = table.merge(axes, on="run_id", how="left", validate="many_to_one")
    return table


def load_runs(path: str | Path) -> pd.DataFrame:
    """The run table (one row per run) of a run folder or of every run below a folder.

    A run whose ``run.parquet`` cannot be read is listed with ``status = "unreadable"``
    and the reason in ``error``.
    """
    rows = []
    for run in find_runs(path):
        try:
            rows.append({**RunStore(run).read_run().to_dict(), "folder": str(run)})
        except CorruptRunError as err:
            rows.append({"run_id": run.name, "status": "unreadable", "error": str(err), "folder": str(run)})
    return pd.DataFrame(rows)
