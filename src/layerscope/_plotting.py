"""Figures without pyplot: ``matplotlib.figure.Figure`` objects, saved to files; and the drawing
helpers that the report and the probes' own figures share.

Nothing here selects a backend or touches pyplot's global state, so importing
layerscope never changes a user's matplotlib set-up (a notebook's inline backend
stays as it is); ``Figure.savefig`` renders with Agg by itself. matplotlib is
imported when a figure is made, not when layerscope is: a sweep's driver or a
config check never loads it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Line styles of the probe splits.
SPLIT_STYLE = {"train": "-", "test": "--"}

#: How a probe's figure is drawn from a run's results table and its detected phases.
Draw = Callable[[pd.DataFrame, pd.DataFrame], "Figure"]


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float], **kwargs: Any) -> tuple[Figure, Any]:
    """A new figure and its axes, as ``pyplot.subplots`` gives them, without pyplot."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def step_axis(ax: Axes) -> None:
    """Training steps on a log scale that keeps step 0."""
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("training step (0 = initialisation; log scale)")


def layer_order(results: pd.DataFrame) -> list[str]:
    """Layers in model order (as first written), the input first."""
    geometry = results[results.layer != ""]
    return list(dict.fromkeys(geometry.sort_values("step", kind="stable").layer))


def model_metrics_figure(results: pd.DataFrame, metrics: list[str], labels: dict[str, str] | None = None) -> Figure:
    """Model-level metrics (CSR, robust accuracy, ...) over training, one panel each, a line per split."""
    labels = labels or {}
    fig, axes = subplots(1, len(metrics), figsize=(5.5 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        rows = results[(results.metric == metric) & (results.layer == "")]
        for split in sorted(rows.split.unique()):
            r = rows[rows.split == split].sort_values("step")
            ax.plot(r.step, r.value, ls=SPLIT_STYLE.get(split, "-"), marker="o", ms=3, label=f"{split} inputs")
        step_axis(ax)
        ax.set_ylabel(labels.get(metric, metric))
        ax.set_title(f"{labels.get(metric, metric)} over training")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def over_training(*metrics: str) -> Draw:
    """The draw function of a figure of model-level ``metrics`` over training (for a probe's FigureSpec)."""
    return lambda results, phases: model_metrics_figure(results, list(metrics))
