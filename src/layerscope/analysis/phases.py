"""Phases of a training curve: where it turns, and how sure that is.

The papers describe curves over (log) training steps by the direction of their
phases: the ID first expands, then compresses (Tan et al.); the local complexity
descends, ascends, then descends again (Humayun et al.). Given such a pattern,
:func:`detect_phases` fits a continuous piecewise-linear curve in log(1 + step)
with one segment per phase and the slopes' signs as the pattern says, choosing
the breakpoints (at measured steps) that minimise the squared error. Each phase
gets the steps where it begins and ends, its slope, and a confidence: the
probability, under a normal approximation with the fit's residual noise, that its
slope has the stated sign (the smallest of these is the pattern's confidence).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

ID_PATTERN = ("expansion", "compression")
LC_PATTERN = ("descent", "ascent", "descent")
_SIGNS = {"expansion": 1, "ascent": 1, "rise": 1, "compression": -1, "descent": -1, "fall": -1}


@dataclass(frozen=True)
class Phase:
    """One phase: its name, first and last step, slope per unit of log(1 + step), confidence in [0, 1]."""

    name: str
    start_step: int
    end_step: int
    slope: float
    confidence: float


def _hinge_design(x: np.ndarray, knots: Sequence[float]) -> np.ndarray:
    """Columns 1, x, max(x - k, 0) for each knot: continuous piecewise-linear curves."""
    return np.column_stack([np.ones_like(x), x, *[np.maximum(x - k, 0) for k in knots]])


def detect_phases(steps: Sequence[int], values: Sequence[float], pattern: Sequence[str] = ID_PATTERN, *, min_points: int = 2) -> list[Phase]:
    """Fit the phases of ``pattern`` to a curve.

    Parameters
    ----------
    steps : sequence of int
        Training steps (0 allowed), ascending.
    values : sequence of float
    pattern : sequence of str
        Phase names in order; each name says the slope's sign ("expansion",
        "ascent", "rise": up; "compression", "descent", "fall": down).
    min_points : int
        Fewest measured points per phase.

    Returns
    -------
    list of Phase

    Raises
    ------
    ValueError
        Unknown phase names, or too few points for the pattern.
    """
    steps = np.asarray(steps, dtype=float)
    y = np.asarray(values, dtype=float)
    if steps.shape != y.shape or steps.ndim != 1:
        raise ValueError("steps and values must be 1-D sequences of the same length")
    if not np.all(np.isfinite(y)):
        raise ValueError("values contain NaN or inf")
    unknown = [p for p in pattern if p not in _SIGNS]
    if unknown:
        raise ValueError(f"unknown phase name {unknown[0]!r}; use one of {', '.join(_SIGNS)}")
    n, k = len(y), len(pattern)
    if n < k * min_points + 1:
        raise ValueError(f"{n} points are too few for {k} phases of at least {min_points} points")
    order = np.argsort(steps)
    steps, y = steps[order], y[order]
    x = np.log1p(steps)
    signs = np.array([_SIGNS[p] for p in pattern])
    best = None
    # breakpoints at measured points: indices b_1 < ... < b_{k-1}, each phase spanning >= min_points intervals
    for bps in itertools.combinations(range(min_points, n - min_points), k - 1):
        if any(b2 - b1 < min_points for b1, b2 in zip(bps, bps[1:])):
            continue
        design = _hinge_design(x, [x[b] for b in bps])
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        slopes = np.cumsum(coef[1:])
        if np.any(np.sign(slopes) != signs):
            continue
        sse = float(np.sum((design @ coef - y) ** 2))
        if best is None or sse < best[0]:
            best = (sse, bps, coef, design)
    if best is None:
        raise ValueError(f"no fit of the pattern {tuple(pattern)} to this curve has slopes of those signs")
    sse, bps, coef, design = best
    dof = max(n - design.shape[1], 1)
    sigma2 = max(sse / dof, 1e-12 * max(float(np.var(y)), 1e-300))
    cov = sigma2 * np.linalg.pinv(design.T @ design)
    bounds = [0, *bps, n - 1]
    phases = []
    for i, name in enumerate(pattern):
        weights = np.zeros(design.shape[1])
        weights[1 : 2 + i] = 1.0  # slope of phase i = sum of the first i + 1 slope coefficients
        slope = float(weights @ coef)
        se = math.sqrt(max(float(weights @ cov @ weights), 1e-300))
        confidence = 0.5 * (1 + math.erf(signs[i] * slope / se / math.sqrt(2)))
        phases.append(Phase(name, int(steps[bounds[i]]), int(steps[bounds[i + 1]]), slope, confidence))
    return phases


#: Columns of the detected-phases table (``RUN/derived/phases.parquet``): one row per
#: phase of one curve. ``curve`` is the source metric, ``position`` the phase's index
#: in its pattern (0, 1, 2), ``confidence`` that of the phase's slope sign.
PHASES_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("split", pa.string()),
        ("layer", pa.string()),
        ("curve", pa.string()),
        ("phase", pa.string()),
        ("position", pa.int64()),
        ("start_step", pa.int64()),
        ("end_step", pa.int64()),
        ("slope", pa.float64()),
        ("confidence", pa.float64()),
    ]
)


def phase_rows(results: pd.DataFrame) -> pd.DataFrame:
    """Detected phases of a run's curves, one row per phase (columns of :data:`PHASES_SCHEMA`).

    TwoNN of every (split, layer) is fitted with :data:`ID_PATTERN`; the summed local
    complexity (layer ``""``) of every split with :data:`LC_PATTERN`. Curves too short
    for their pattern, or with no fit of the right signs, give no rows.
    """
    rows = []
    run_id = str(results.run_id.iloc[0]) if len(results) else ""
    curves = [("twonn", ID_PATTERN, results[(results.metric == "twonn") & (results.layer != "")]),
              ("lc", LC_PATTERN, results[(results.metric == "lc") & (results.layer == "")])]
    for metric, pattern, frame in curves:
        for (split, layer), curve in frame.groupby(["split", "layer"], sort=False):
            curve = curve.sort_values("step")
            try:
                phases = detect_phases(curve.step.to_numpy(), curve.value.to_numpy(), pattern)
            except ValueError:
                continue
            for i, phase in enumerate(phases):
                rows.append({"run_id": run_id, "split": split, "layer": layer, "curve": metric, "phase": phase.name, "position": i,
                             "start_step": phase.start_step, "end_step": phase.end_step, "slope": phase.slope, "confidence": phase.confidence})
    table = pa.Table.from_pylist(rows, schema=PHASES_SCHEMA) if rows else PHASES_SCHEMA.empty_table()
    return table.to_pandas()
