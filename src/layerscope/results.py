"""The results table's schema: its columns and types, the row type, and what a metric and a figure are.

One row per (run, step, split, layer, metric), long format, so that a new metric
needs no new column::

    run_id  step  epoch  split  layer   metric  value  error
    quick   120   1.5    test   relu3   twonn   7.91   0.12
    quick   120   1.5    test   ""      test_acc 0.97  0.002

Model-level metrics (accuracy, local complexity summed over layers, CSR) have the
layer :data:`MODEL_LEVEL` (``""``). Every metric that can appear has a
:class:`Metric` with its meaning: the base ones here, the estimators' and the probes'
beside them, all gathered by :func:`layerscope.probes.registry.metrics`
(``layerscope metrics`` prints them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa

#: The columns and their types. Every checkpoint file is written with this schema
#: and read back to it, so no file (or pandas version) can change a column's type.
SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("step", pa.int64()),
        ("epoch", pa.float64()),
        ("split", pa.string()),
        ("layer", pa.string()),
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("error", pa.float64()),
    ]
)
COLUMNS = SCHEMA.names

#: Written beside :data:`SCHEMA`'s columns in every checkpoint file, not part of the
#: results table: each row's resampling replicates (``error**2 ==
#: mean(replicates**2)``; null where the error has none). The same seeded splits of
#: the probe points serve every checkpoint, so replicate b of every checkpoint is one
#: coherent resample of the curve (see :mod:`layerscope.estimators.resampling`);
#: :meth:`layerscope.store.RunStore.replicates` reads them.
REPLICATES = pa.field("replicates", pa.list_(pa.float64()))
STEP_SCHEMA = SCHEMA.append(REPLICATES)

#: The layer of a model-level row (accuracy, loss, a sum over layers).
MODEL_LEVEL = ""


@dataclass(frozen=True)
class Row:
    """One measured number: where it was measured (split, layer), what (metric), its standard error, and the
    resampling replicates the error came from (if any; see :data:`REPLICATES`)."""

    split: str
    layer: str
    metric: str
    value: float
    error: float | None = None
    replicates: Any = None


@dataclass(frozen=True)
class Metric:
    """A registered metric: its name in the table, what it means, and what its error is."""

    name: str
    meaning: str
    error: str = "none"


#: The model-level metrics every training run writes, and each layer's width; the registry
#: (:func:`layerscope.probes.registry.metrics`) adds the estimators' and the probes' metrics.
BASE_METRICS = (
    *(
        Metric(f"{split}_acc", f'accuracy on the {split} set (layer "")', "Agresti-Coull binomial standard error")
        for split in ("train", "test")
    ),
    *(
        Metric(f"{split}_loss", f'mean loss on the {split} set (layer "")', "standard error over the examples")
        for split in ("train", "test")
    ),
    Metric("n_features", "width of the layer (features per input)"),
)


@dataclass(frozen=True)
class FigureSpec:
    """A figure the report draws when the table holds all of ``metrics``, declared beside the probe that writes them.

    ``draw(results, phases)`` makes it from the run's results table and its detected
    phases (:mod:`layerscope.analysis.phases`); a figure without ``draw`` is a set of
    pictures (PNG files) that the probe wrote into ``RUN/<folder>`` itself.
    """

    filename: str
    title: str
    metrics: tuple[str, ...]
    draw: Callable[[pd.DataFrame, pd.DataFrame], Any] | None = None
    folder: str | None = None

    def __post_init__(self) -> None:
        if (self.draw is None) == (self.folder is None):
            raise ValueError(
                f"figure {self.title!r}: give a draw function, or the folder of the pictures the probe writes (one of "
                "the two)"
            )


def proportion_error(successes: int, n: int) -> float:
    """Standard error of a proportion ``successes / n``: the Agresti-Coull one.

    ``sqrt(p~ (1 - p~) / (n + 4))`` with ``p~ = (successes + 2) / (n + 4)``: the
    binomial standard error with the Wilson interval's centre, which stays
    positive at 0 and 1 (where the plain ``sqrt(p (1 - p) / n)`` would claim no
    uncertainty at all).
    """
    if n < 1:
        return math.nan
    centre = (successes + 2) / (n + 4)
    return math.sqrt(centre * (1 - centre) / (n + 4))


def empty() -> pd.DataFrame:
    """A results table with no rows and the right column types."""
    return SCHEMA.empty_table().to_pandas()


def to_frame(rows: Iterable[Row], *, run_id: str, step: int, epoch: float | None = None) -> pd.DataFrame:
    """The rows of one checkpoint as a table with :data:`STEP_SCHEMA`'s columns and types (the results table's
    and the replicates)."""
    records = [
        {
            "run_id": run_id,
            "step": int(step),
            "epoch": math.nan if epoch is None else float(epoch),
            "split": r.split,
            "layer": r.layer,
            "metric": r.metric,
            "value": float(r.value),
            "error": math.nan if r.error is None else float(r.error),
            "replicates": None if r.replicates is None else [float(x) for x in r.replicates],
        }
        for r in rows
    ]
    table = pa.Table.from_pylist(records, schema=STEP_SCHEMA) if records else STEP_SCHEMA.empty_table()
    return table.to_pandas()


def metric_table(metrics: Iterable[Metric]) -> str:
    """Metrics as a Markdown table (name, meaning, error)."""
    lines = ["| metric | meaning | error |", "|---|---|---|"]
    lines += [f"| `{m.name}` | {m.meaning} | {m.error} |" for m in metrics]
    return "\n".join(lines)
