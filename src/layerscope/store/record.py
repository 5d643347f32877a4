"""The run record: ``RUN/run.parquet``, one row that says what a run is and how it stands.

Every writer of run folders (``layerscope run``, the training-loop callbacks, a
sweep's trials) builds it with :meth:`RunRecord.begin` and ends it with
:meth:`RunRecord.ended`, through :class:`layerscope.store.RunStore`; every reader
gets it back typed with :meth:`RunRecord.from_table`. The columns are
:data:`RUN_SCHEMA`'s (dicts and lists as JSON text), so pandas, polars and DuckDB
read ``run.parquet`` as a plain table.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import platform
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from .. import __version__

#: ``run.parquet``'s columns. ``config``, ``versions`` and ``checkpoints`` hold JSON text.
RUN_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("config", pa.string()),
        ("seed", pa.int64()),
        ("versions", pa.string()),
        ("git_revision", pa.string()),
        ("start_time", pa.string()),
        ("end_time", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("resumes", pa.int64()),
        ("total_steps", pa.int64()),
        ("checkpoints", pa.string()),
    ]
)

#: How a run stands: ``running`` (or killed while running), then one of the others.
STATUSES = ("running", "finished", "failed", "interrupted")
_JSON = ("config", "versions", "checkpoints")


def ending(err: BaseException) -> tuple[str, str | None]:
    """How an exception ends a run: ``("interrupted", None)`` for Ctrl-C or SIGTERM, else ``("failed", "Type:
    message")``.
    """
    if isinstance(err, KeyboardInterrupt):
        return "interrupted", None
    return "failed", f"{type(err).__name__}: {err}"


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


def versions() -> dict[str, str]:
    """The versions a run was made with."""
    return {
        "layerscope": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


@dataclass(frozen=True)
class RunRecord:
    """One run's record (a row of :data:`RUN_SCHEMA`).

    Attributes
    ----------
    run_id : str
        The run's name (its folder's).
    config : dict
        What made the run: a :class:`layerscope.config.RunConfig` as JSON for
        ``layerscope run`` and sweeps; the trainer and its settings for a callback.
    seed : int or None
    versions : dict
        layerscope, torch, numpy and Python versions.
    git_revision : str or None
        layerscope's git revision, where it runs from a checkout.
    start_time, end_time : str
        ISO 8601 times in UTC; ``end_time`` None while running.
    status : str
        One of :data:`STATUSES`.
    error : str or None
        Why a run failed (``"TypeName: message"``).
    resumes : int
        How often the run was resumed.
    total_steps : int or None
        The training plan's length, once known.
    checkpoints : list of int or None
        The planned checkpoint steps, once known.
    """

    run_id: str
    config: dict[str, Any]
    seed: int | None = None
    versions: dict[str, str] = field(default_factory=dict)
    git_revision: str | None = None
    start_time: str = ""
    end_time: str | None = None
    status: str = "running"
    error: str | None = None
    resumes: int = 0
    total_steps: int | None = None
    checkpoints: list[int] | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {self.status!r}")

    @classmethod
    def begin(
        cls,
        run_id: str,
        config: dict[str, Any],
        *,
        seed: int | None,
        resumes: int = 0,
        start_time: str | None = None,
        git_revision: str | None = None,
        total_steps: int | None = None,
        checkpoints: list[int] | None = None,
    ) -> RunRecord:
        """The record of a run that starts (or resumes: give its first ``start_time`` and its ``resumes``) now."""
        return cls(
            run_id,
            config,
            seed,
            versions(),
            git_revision,
            start_time or now(),
            None,
            "running",
            None,
            resumes,
            total_steps,
            None if checkpoints is None else [int(c) for c in checkpoints],
        )

    def planned(self, total_steps: int, checkpoints: list[int]) -> RunRecord:
        """With the training plan: its length and its checkpoint steps."""
        return dataclasses.replace(self, total_steps=int(total_steps), checkpoints=[int(c) for c in checkpoints])

    def ended(self, status: str, error: str | None = None) -> RunRecord:
        """Ended now: ``finished``, ``failed`` (with the error) or ``interrupted``."""
        if status == "running":
            raise ValueError("a run ends finished, failed or interrupted, not running")
        return dataclasses.replace(self, status=status, error=error, end_time=now())

    def to_table(self) -> pa.Table:
        row = {
            k: (json.dumps(v, sort_keys=True, default=str) if k in _JSON and v is not None else v)
            for k, v in dataclasses.asdict(self).items()
        }
        return pa.Table.from_pylist([row], schema=RUN_SCHEMA)

    def to_dict(self) -> dict[str, Any]:
        """The record as a dict (for a table of runs)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_table(cls, table: pa.Table, where: str = "run.parquet") -> RunRecord:
        """The record in a ``run.parquet`` table (older ones, without ``resumes`` or the plan, included).

        Raises
        ------
        ValueError
            Not one row, no ``run_id`` or ``config``, a JSON column that is not JSON,
            an unknown status (the message names ``where``).
        """
        if table.num_rows != 1 or not {"run_id", "config"} <= set(table.column_names):
            raise ValueError(f"{where} is not a layerscope run record (expected one row with a run_id and a config)")
        row = table.to_pylist()[0]
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            value = row.get(f.name)
            if f.name in _JSON and isinstance(value, str):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    raise ValueError(f"{where}: its {f.name} is not valid JSON") from None
            if value is None or (isinstance(value, float) and value != value):  # pandas wrote NaN for a missing number
                continue
            values[f.name] = int(value) if f.name in ("seed", "resumes", "total_steps") else value
        try:
            return cls(**values)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: {err}") from None
