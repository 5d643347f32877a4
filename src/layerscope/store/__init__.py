"""Results on disk: one long table of measurements and one row of run metadata per run.

Layout of a run folder::

    RUN/run.parquet                   run_id, config (JSON), seed, versions, git revision, start/end, status
    RUN/results/step-000000120.parquet  the rows measured at step 120 (one file per checkpoint)
    RUN/state.pt                      model, optimizer and RNG state of the last checkpoint (for --resume)
    RUN/weights/step-000000120.pt     model weights at checkpoints (optional)

The results table has the columns :data:`COLUMNS`; one row per (step, split,
layer, metric). Model-level metrics (accuracy, loss) have ``layer == ""``. Metric
names are stable:

==========================  =====================================================
metric                      meaning
==========================  =====================================================
``twonn``                   TwoNN intrinsic dimension (error: subsample std)
``mle``, ``gride``          other ID estimators
``pc_id``                   PCs for 90% of the variance (a count)
``participation_ratio``     participation ratio of the covariance spectrum
``alpha``                   power-law exponent of the covariance spectrum
``n_features``              width of the layer (features per input)
``train_acc``, ``test_acc``  accuracy on the training / test set
``train_loss``, ``test_loss``  loss on the training / test set
``lc``, ``lc_norm``         local complexity per layer (layer ``""``: summed)
``csr``                     critical sample ratio
``robust_acc``              accuracy under the PGD or FGSM attack
``linear_regions``          regions of the exact partition of the probe plane
``phase_<name>``            a detected phase (``results/phases.parquet``): step = its
                            first step, value = confidence, epoch = its index
==========================  =====================================================

Each checkpoint's rows are written to a temporary file and renamed into place, so
a killed run keeps every finished checkpoint and never a half-written one. Read
the table with :func:`load` (pandas) or straight from DuckDB or polars:
``SELECT * FROM read_parquet('RUN/results/*.parquet')``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import torch

COLUMNS = ["run_id", "step", "epoch", "split", "layer", "metric", "value", "error"]


def _atomic_parquet(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)


class RunStore:
    """Reads and writes one run's folder."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.results_dir = self.run_dir / "results"

    def create(self) -> None:
        self.results_dir.mkdir(parents=True, exist_ok=True)

    # results
    def write_checkpoint(self, step: int, rows: pd.DataFrame) -> None:
        """Write all rows of one checkpoint at once (replacing any earlier file of that step)."""
        missing = [c for c in COLUMNS if c not in rows.columns]
        if missing:
            raise ValueError(f"results rows lack columns {missing}")
        self.results_dir.mkdir(parents=True, exist_ok=True)
        _atomic_parquet(rows[COLUMNS], self.results_dir / f"step-{step:09d}.parquet")

    def completed_steps(self) -> list[int]:
        if not self.results_dir.exists():
            return []
        return sorted(int(p.stem.split("-")[1]) for p in self.results_dir.glob("step-*.parquet"))

    def write_derived(self, name: str, rows: pd.DataFrame) -> None:
        """Rows computed from the checkpoints (e.g. detected phases), in ``results/NAME.parquet``; replaced on each call."""
        self.results_dir.mkdir(parents=True, exist_ok=True)
        _atomic_parquet(rows[COLUMNS], self.results_dir / f"{name}.parquet")

    def results(self) -> pd.DataFrame:
        files = sorted(self.results_dir.glob("*.parquet"))
        if not files:
            return pd.DataFrame(columns=COLUMNS)
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)

    # run metadata
    def write_run(self, info: dict[str, Any]) -> None:
        row = {k: (json.dumps(v, sort_keys=True, default=str) if isinstance(v, (dict, list)) else v) for k, v in info.items()}
        self.run_dir.mkdir(parents=True, exist_ok=True)
        _atomic_parquet(pd.DataFrame([row]), self.run_dir / "run.parquet")

    def read_run(self) -> dict[str, Any]:
        path = self.run_dir / "run.parquet"
        if not path.exists():
            raise FileNotFoundError(f"{self.run_dir} is not a layerscope run (no run.parquet)")
        row = pd.read_parquet(path).iloc[0].to_dict()
        for key in ("config", "versions"):
            if isinstance(row.get(key), str):
                row[key] = json.loads(row[key])
        return row

    # training state, for resuming
    def save_state(self, state: dict[str, Any]) -> None:
        tmp = self.run_dir / "state.pt.tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.run_dir / "state.pt")

    def load_state(self) -> dict[str, Any] | None:
        path = self.run_dir / "state.pt"
        return torch.load(path, weights_only=True) if path.exists() else None

    def save_weights(self, step: int, model: torch.nn.Module) -> None:
        folder = self.run_dir / "weights"
        folder.mkdir(exist_ok=True)
        tmp = folder / f"step-{step:09d}.pt.tmp"
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, folder / f"step-{step:09d}.pt")


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A saved state_dict, loaded without unpickling arbitrary objects (``weights_only=True``)."""
    return torch.load(path, weights_only=True)


def load(path: str | Path) -> pd.DataFrame:
    """The results table of a run folder, or of every run below a folder, as one DataFrame."""
    path = Path(path)
    runs = [path] if (path / "run.parquet").exists() else sorted(p.parent for p in path.glob("*/run.parquet"))
    if not runs:
        raise FileNotFoundError(f"no layerscope runs in {path} (no run.parquet there or in its subfolders)")
    frames = [RunStore(r).results() for r in runs]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def load_runs(path: str | Path) -> pd.DataFrame:
    """The run table (one row per run) of a run folder or of every run below a folder."""
    path = Path(path)
    runs = [path] if (path / "run.parquet").exists() else sorted(p.parent for p in path.glob("*/run.parquet"))
    return pd.DataFrame([RunStore(r).read_run() for r in runs])
