"""Phases of a training curve: where it turns, and how sure that is.

The papers describe curves over (log) training steps by the direction of their
phases: the ID first expands, then compresses (Tan et al.); the local complexity
descends, ascends, then descends again (Humayun et al.). :func:`detect_phases`
tests such a pattern against the simpler curves that have fewer phases:

1. **Fits.** Each model is a continuous piecewise-linear curve in log(1 + step)
   with breakpoints at measured steps, fitted by least squares weighted by the
   measurement errors (``errors``: each value's standard error). The pattern's
   slopes must have its signs strictly; the null models are a constant, the
   monotone curves (a line, and as many phases as the pattern each rising or
   flat, or each falling or flat: a plateau and then a drop is no turn; fitted
   exactly under these constraints) and, for patterns of three or more phases,
   every curve of one phase fewer (any signs).
2. **Statistic.** ``T = SSE(best null) - SSE(pattern)``, in units of the
   measurement variance: how much better the pattern explains the curve.
3. **Calibration.** A parametric bootstrap: curves simulated from the fitted null
   plus noise of the measured size, each fitted like the data. The confidence is
   ``1 - p``, with ``p = (1 + #{T* >= T}) / (1 + B)``. The findings call a
   pattern present at :data:`THRESHOLD` (0.96): on simulated curves without
   it (flat, monotone, a plateau then a fall; 10 and 30 checkpoints) that
   happens 0-6% of the time, and a rise and fall of 3 error bars over 12
   checkpoints is found 63% of the time (86% at 4 error bars, 100% at 6)
   (``benchmarks/phases.py``; the plug-in bootstrap runs about 1% over its
   nominal level, hence 0.96 rather than 0.95).
4. **Turns.** The steps where phases meet get 90% intervals from a second
   bootstrap, of curves simulated from the fitted pattern.

Without ``errors`` the noise is the residual scatter of the best null model (and
of each simulated curve's own null fit). A curve that does not vary has no phases.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

ID_PATTERN = ("expansion", "compression")
LC_PATTERN = ("descent", "ascent", "descent")
_SIGNS = {"expansion": 1, "ascent": 1, "rise": 1, "compression": -1, "descent": -1, "fall": -1}
#: The confidence at which the findings say a pattern holds.
THRESHOLD = 0.96


@dataclass(frozen=True)
class Phase:
    """One phase of a curve.

    Attributes
    ----------
    name : str
    start_step, end_step : int
        Where it begins and ends (measured steps).
    start_interval : tuple of int
        90% interval of ``start_step`` (bootstrap); the first phase's is its start.
    slope : float
        Per unit of log(1 + step).
    confidence : float
        The pattern's calibrated confidence, 1 - p (the same for each of its phases).
    """

    name: str
    start_step: int
    end_step: int
    start_interval: tuple[int, int]
    slope: float
    confidence: float


def _hinge_design(x: np.ndarray, knots: Sequence[float]) -> np.ndarray:
    """Columns 1, x, max(x - k, 0) for each knot: continuous piecewise-linear curves."""
    return np.column_stack([np.ones_like(x), x, *[np.maximum(x - k, 0) for k in knots]])


def _ramp_design(x: np.ndarray, knots: Sequence[float], free: Sequence[int]) -> np.ndarray:
    """Columns 1 and, for each piece in ``free``, its ramp ``clip(x, k_j, k_j+1) - k_j``: a continuous
    piecewise-linear curve whose coefficients are the free pieces' slopes (the others are flat)."""
    edges = [x[0], *knots, x[-1]]
    return np.column_stack([np.ones_like(x), *[np.clip(x, edges[j], edges[j + 1]) - edges[j] for j in free]])


@dataclass(frozen=True)
class _Family:
    """Piecewise-linear curves with a fixed number of phases, over every allowed set of breakpoints."""

    breakpoints: list[tuple[int, ...]]
    projections: list[np.ndarray]  # per design: (p, n) least-squares solution operator on whitened data
    designs: list[np.ndarray]  # per design: (n, p) whitened design
    slope_ops: list[np.ndarray]  # per design: (m, p) map from coefficients to the slopes whose signs are required
    signs: list[np.ndarray] | None  # per design: required signs (m,), or None for any

    @classmethod
    def make(
        cls,
        x: np.ndarray,
        w: np.ndarray,
        phases: int,
        min_points: int,
        signs: np.ndarray | None,
        allow_flat: bool = False,
    ) -> _Family:
        """With ``signs``, the slopes must have them strictly (each phase a true rise or fall); with
        ``allow_flat`` too, any phase may instead be flat: the curves whose slopes have those signs or
        are 0, fitted exactly (the least-squares fit under the sign constraints is the best of the fits
        with each subset of phases held flat whose free slopes have the signs)."""
        n = len(x)
        if phases == 0:  # a constant
            sets: list[tuple[int, ...]] = [()]
        else:
            sets = [
                bps
                for bps in itertools.combinations(range(min_points, n - min_points), phases - 1)
                if all(b2 - b1 >= min_points for b1, b2 in zip(bps, bps[1:]))
            ]
        breakpoints, designs, projections, ops, required = [], [], [], [], []
        for bps in sets:
            knots = [x[b] for b in bps]
            if allow_flat and signs is not None:
                variants = [
                    free for size in range(1, phases + 1) for free in itertools.combinations(range(phases), size)
                ]
                for free in variants:
                    design = _ramp_design(x, knots, free)
                    ops.append(np.eye(len(free) + 1)[1:])
                    required.append(np.asarray(signs)[list(free)])
                    breakpoints.append(bps)
                    designs.append(design * w[:, None])
            else:
                design = np.ones((n, 1)) if phases == 0 else _hinge_design(x, knots)
                ops.append(np.tril(np.ones((phases, phases))) @ np.eye(phases + 1)[1:] if phases else np.zeros((0, 1)))
                required.append(None if signs is None else np.asarray(signs))
                breakpoints.append(bps)
                designs.append(design * w[:, None])
        projections = [np.linalg.pinv(design) for design in designs]
        return cls(breakpoints, projections, designs, ops, None if signs is None else required)

    def fit(self, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Best fit of each column of whitened curves ``Y`` (n, B): SSE (B,), index of the design (B,),
        coefficients (p, B).

        A column with no fit of the required signs gets SSE inf.
        """
        best = np.full(Y.shape[1], np.inf)
        which = np.full(Y.shape[1], -1)
        coefs: list[np.ndarray | None] = [None] * Y.shape[1]
        for i, (design, proj) in enumerate(zip(self.designs, self.projections)):
            coef = proj @ Y
            sse = ((Y - design @ coef) ** 2).sum(0)
            if self.signs is not None:
                slopes = self.slope_ops[i] @ coef
                sse[np.any(np.sign(slopes) != self.signs[i][:, None], axis=0)] = np.inf
            better = sse < best
            best[better], which[better] = sse[better], i
            for b in np.flatnonzero(better):
                coefs[b] = coef[:, b]
        return best, which, coefs


def _null_families(x: np.ndarray, w: np.ndarray, k: int, min_points: int) -> list[_Family]:
    """The curves without the pattern: a constant, monotone curves (a line, and k phases each
    rising or flat, or each falling or flat: a plateau then a drop is not a turn), and every
    curve of k - 1 phases with any signs (for k >= 3).

    The monotone curves are fitted under their sign constraints exactly, flat phases
    included: a curve that is flat, then drops, must not count as a rise then a drop
    because its first phase's unconstrained fit happens to tilt up by a hair."""
    families = [_Family.make(x, w, 0, min_points, None), _Family.make(x, w, 1, min_points, None)]
    for sign in (1, -1):
        families.append(_Family.make(x, w, k, min_points, np.full(k, sign), allow_flat=True))
    for phases in range(2, k):
        families.append(_Family.make(x, w, phases, min_points, None))
    return families


def _null_sse(families: list[_Family], Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The smallest SSE over the null families for each column, and the fitted null curves."""
    best = np.full(Y.shape[1], np.inf)
    fitted = np.zeros_like(Y)
    for family in families:
        sse, which, coefs = family.fit(Y)
        for b in np.flatnonzero(sse < best):
            fitted[:, b] = family.designs[which[b]] @ coefs[b]
        best = np.minimum(best, sse)
    return best, fitted


def detect_phases(
    steps: Sequence[int],
    values: Sequence[float],
    pattern: Sequence[str] = ID_PATTERN,
    *,
    errors: Sequence[float] | None = None,
    min_points: int = 2,
    n_boot: int = 200,
    seed: int = 0,
) -> list[Phase]:
    """Fit the phases of ``pattern`` to a curve, with a calibrated confidence and intervals for its turns.

    Parameters
    ----------
    steps : sequence of int
        Training steps (0 allowed).
    values : sequence of float
    pattern : sequence of str
        Phase names in order; each name says the slope's sign ("expansion",
        "ascent", "rise": up; "compression", "descent", "fall": down).
    errors : sequence of float, optional
        Standard error of each value (the results table's ``error``). Missing,
        NaN or non-positive errors: the residual scatter of the best null model.
    min_points : int
        Fewest measured intervals per phase.
    n_boot : int
        Simulated curves for the calibration and for the intervals.
    seed : int
        Seed of the simulations (the same inputs give the same answer).

    Returns
    -------
    list of Phase

    Raises
    ------
    ValueError
        Unknown phase names, too few points for the pattern, a curve that does
        not vary, or no fit of the pattern with its slopes' signs.
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
    if np.ptp(y) <= 1e-12 * max(1.0, float(np.abs(y).max())):
        raise ValueError("the curve does not vary: it has no phases")
    order = np.argsort(steps)
    steps, y = steps[order], y[order]
    x = np.log1p(steps)
    signs = np.array([_SIGNS[p] for p in pattern])
    sigma = None
    if errors is not None:
        e = np.asarray(errors, dtype=float)[order]
        if e.shape == y.shape and np.all(np.isfinite(e)) and np.all(e > 0):
            sigma = e
    known = sigma is not None
    w = 1 / sigma if known else np.ones(n)
    pattern_family = _Family.make(x, w, k, min_points, signs)
    nulls = _null_families(x, w, k, min_points)
    Y = (y * w)[:, None]
    sse_pattern, which, coefs = pattern_family.fit(Y)
    if not np.isfinite(sse_pattern[0]):
        raise ValueError(f"no fit of the pattern {tuple(pattern)} to this curve has slopes of those signs")
    sse_null, fitted_null = _null_sse(nulls, Y)
    dof_null = n - 2  # the line's residual degrees of freedom: the fallback noise estimate
    scale = 1.0 if known else max(sse_null[0] / dof_null, 1e-300)
    observed = (sse_null[0] - sse_pattern[0]) / scale
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, n_boot)) * np.sqrt(scale)  # whitened units
    sims = fitted_null[:, :1] + noise
    sim_pattern, _, _ = pattern_family.fit(sims)
    sim_null, _ = _null_sse(nulls, sims)
    sim_scale = 1.0 if known else np.maximum(sim_null / dof_null, 1e-300)
    t_sim = np.where(np.isfinite(sim_pattern), sim_null - sim_pattern, 0.0) / sim_scale
    p_value = (1 + np.sum(t_sim >= observed - 1e-12 * max(1.0, abs(observed)))) / (1 + n_boot)
    confidence = float(1 - p_value)

    bps = pattern_family.breakpoints[which[0]]
    coef = coefs[0]
    # turn intervals: curves simulated from the fitted pattern, refitted
    fitted = pattern_family.designs[which[0]] @ coef
    turn_sims = fitted[:, None] + rng.standard_normal((n, n_boot)) * np.sqrt(scale)
    t_sse, t_which, _ = pattern_family.fit(turn_sims)
    found = t_which[np.isfinite(t_sse)]
    bounds = [0, *bps, n - 1]
    phases = []
    for i, name in enumerate(pattern):
        slope = float(np.sum(coef[1 : 2 + i]))
        if i == 0 or len(found) == 0:
            interval = (int(steps[bounds[i]]), int(steps[bounds[i]]))
        else:
            at = steps[[pattern_family.breakpoints[j][i - 1] for j in found]]
            interval = (int(np.percentile(at, 5, method="lower")), int(np.percentile(at, 95, method="higher")))
        phases.append(Phase(name, int(steps[bounds[i]]), int(steps[bounds[i + 1]]), interval, slope, confidence))
    return phases


#: Columns of the detected-phases table (``RUN/derived/phases.parquet``): one row per
#: phase of one curve. ``curve`` is the source metric, ``position`` the phase's index
#: in its pattern (0, 1, 2), ``start_low``/``start_high`` the 90% interval of its start,
#: ``confidence`` the pattern's calibrated confidence (1 - p against the simpler curves).
PHASES_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("split", pa.string()),
        ("layer", pa.string()),
        ("curve", pa.string()),
        ("phase", pa.string()),
        ("position", pa.int64()),
        ("start_step", pa.int64()),
        ("start_low", pa.int64()),
        ("start_high", pa.int64()),
        ("end_step", pa.int64()),
        ("slope", pa.float64()),
        ("confidence", pa.float64()),
    ]
)


def phase_rows(results: pd.DataFrame) -> pd.DataFrame:
    """Detected phases of a run's curves, one row per phase (columns of :data:`PHASES_SCHEMA`).

    TwoNN of every (split, layer) is fitted with :data:`ID_PATTERN`; the summed local
    complexity (layer ``""``) of every split with :data:`LC_PATTERN`, each weighted by
    its stored errors. Curves too short for their pattern, without variation, or with
    no fit of the right signs give no rows.
    """
    rows = []
    run_id = str(results.run_id.iloc[0]) if len(results) else ""
    curves = [
        ("twonn", ID_PATTERN, results[(results.metric == "twonn") & (results.layer != "")]),
        ("lc", LC_PATTERN, results[(results.metric == "lc") & (results.layer == "")]),
    ]
    for metric, pattern, frame in curves:
        for (split, layer), curve in frame.groupby(["split", "layer"], sort=False):
            curve = curve.sort_values("step")
            try:
                phases = detect_phases(
                    curve.step.to_numpy(), curve.value.to_numpy(), pattern, errors=curve.error.to_numpy()
                )
            except ValueError:
                continue
            for i, phase in enumerate(phases):
                rows.append(
                    {
                        "run_id": run_id,
                        "split": split,
                        "layer": layer,
                        "curve": metric,
                        "phase": phase.name,
                        "position": i,
                        "start_step": phase.start_step,
                        "start_low": phase.start_interval[0],
                        "start_high": phase.start_interval[1],
                        "end_step": phase.end_step,
                        "slope": phase.slope,
                        "confidence": phase.confidence,
                    }
                )
    table = pa.Table.from_pylist(rows, schema=PHASES_SCHEMA) if rows else PHASES_SCHEMA.empty_table()
    return table.to_pandas()
