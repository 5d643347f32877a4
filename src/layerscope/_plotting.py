"""Figures without pyplot: ``matplotlib.figure.Figure`` objects, saved to files.

Nothing here selects a backend or touches pyplot's global state, so importing
layerscope never changes a user's matplotlib set-up (a notebook's inline backend
stays as it is); ``Figure.savefig`` renders with Agg by itself.
"""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float], **kwargs: Any) -> tuple[Figure, Any]:
    """A new figure and its axes, as ``pyplot.subplots`` gives them, without pyplot."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)
