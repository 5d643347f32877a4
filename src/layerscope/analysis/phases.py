"""Phases of a training curve: where it turns, and how sure that is.

The papers describe curves over (log) training steps by the direction of their
phases: the ID first expands, then compresses (Tan et al.); the local complexity
descends, ascends, then descends again (Humayun et al.). :func:`detect_phases`
says a pattern holds only if **every one of its phases** is there with its sign:

1. **Fits.** Each model is a continuous piecewise-linear curve in log(1 + step)
   with breakpoints at measured steps, fitted by least squares weighted by the
   measurement errors (``errors``: each value's standard error). The pattern's
   slopes must have its signs strictly.
2. **One null per phase.** Null ``j`` is every curve of as many phases whose
   phase ``j`` is flat or of the wrong sign, the other phases free (any sign,
   flat included; so a constant, every monotone curve and every curve of fewer
   phases lies in some null). It is fitted exactly: under one linear inequality
   the least-squares fit is the free fit when that satisfies it, else the fit
   with phase ``j`` held flat. The statistic ``T_j = SSE(null j) - SSE(pattern)``
   (in units of the measurement variance) says how much better the pattern
   explains the curve than any curve that lacks phase ``j``.
3. **Calibration: an intersection-union test.** Each ``T_j`` is calibrated by a
   parametric bootstrap (curves simulated from the fitted null ``j`` plus noise of
   the measured size, each fitted like the data): ``p_j = (1 + #{T*_j >= T_j}) /
   (1 + B)``. The pattern's null is the union of the phase nulls, and it is
   rejected only if every phase null is: ``p = max_j p_j``, the confidence
   ``1 - p`` is the weakest phase's. This test has level α whatever the
   curve, because a curve without the pattern lies in some null ``j``, whose own
   test has level α (Berger 1982); no correction is owed for the ``k`` tests.
   The findings call a pattern present at :data:`THRESHOLD` (0.96; the plug-in
   bootstrap runs about 1% over its nominal level). Rates on simulated curves:
   ``benchmarks/phases.py`` and docs/benchmarks.md.
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
        The pattern's calibrated confidence, 1 - p: its weakest phase's (the same for each of its phases).
    phase_confidence : float
        This phase's own: 1 - p of the test against every curve whose this phase is flat or of the wrong sign.
    """

    name: str
    start_step: int
    end_step: int
    start_interval: tuple[int, int]
    slope: float
    confidence: float
    phase_confidence: float


def _hinge_design(x: np.ndarray, knots: Sequence[float]) -> np.ndarray:
    """Columns 1, x, max(x - k, 0) for each knot: continuous piecewise-linear curves."""
    return np.column_stack([np.ones_like(x), x, *[np.maximum(x - k, 0) for k in knots]])


def _ramp_design(x: np.ndarray, knots: Sequence[float], free: Sequence[int]) -> np.ndarray:
    """Columns 1 and, for each piece in ``free``, its ramp ``clip(x, k_j, k_j+1) - k_j``: a continuous
    piecewise-linear curve whose coefficients are the free pieces' slopes (the others are flat)."""
    edges = [x[0], *knots, x[-1]]
    return np.column_stack([np.ones_like(x), *[np.clip(x, edges[j], edges[j + 1]) - edges[j] for j in free]])


def _breakpoint_sets(n: int, phases: int, min_points: int) -> list[tuple[int, ...]]:
    """Where ``phases`` phases of at least ``min_points`` measured intervals each can meet, as point indices."""
    return [
        bps
        for bps in itertools.combinations(range(min_points, n - min_points), phases - 1)
        if all(b2 - b1 >= min_points for b1, b2 in zip(bps, bps[1:]))
    ]


@dataclass(frozen=True)
class _Family:
    """Piecewise-linear curves with a fixed number of phases, over every allowed set of breakpoints."""

    breakpoints: list[tuple[int, ...]]
    projections: list[np.ndarray]  # per design: (p, n) least-squares solution operator on whitened data
    designs: list[np.ndarray]  # per design: (n, p) whitened design
    slope_ops: list[np.ndarray]  # per design: (m, p) map from coefficients to the slopes whose signs are required
    signs: list[np.ndarray] | None  # per design: required signs (m,), or None for any
    caps: list[np.ndarray | None] | None = None  # per design: (1, p) map whose value must be <= 0, or None

    @classmethod
    def without_phase(cls, x: np.ndarray, w: np.ndarray, phases: int, min_points: int, j: int, sign: int) -> _Family:
        """Curves of ``phases`` phases whose phase ``j`` is flat or of the sign opposite to ``sign``, the others
        free: per set of breakpoints, the free fit kept when ``sign * slope_j <= 0``, and the fit with phase ``j``
        flat (the fit under that one inequality is one of the two)."""
        breakpoints, designs, caps = [], [], []
        everything = list(range(phases))
        cap_j = sign * np.eye(phases + 1)[1 + j][None]  # sign * slope_j, which must be <= 0
        for bps in _breakpoint_sets(len(x), phases, min_points):
            knots = [x[b] for b in bps]
            for free, cap in ((everything, cap_j), ([i for i in everything if i != j], None)):
                designs.append(_ramp_design(x, knots, free) * w[:, None])
                caps.append(cap)
                breakpoints.append(bps)
        projections = [np.linalg.pinv(design) for design in designs]
        ops = [np.zeros((0, design.shape[1])) for design in designs]
        return cls(breakpoints, projections, designs, ops, None, caps)

    @classmethod
    def make(cls, x: np.ndarray, w: np.ndarray, phases: int, min_points: int, signs: np.ndarray) -> _Family:
        """The pattern's curves: ``phases`` phases whose slopes have ``signs`` strictly (each a true rise or fall)."""
        breakpoints, designs, ops, required = [], [], [], []
        for bps in _breakpoint_sets(len(x), phases, min_points):
            designs.append(_hinge_design(x, [x[b] for b in bps]) * w[:, None])
            ops.append(np.tril(np.ones((phases, phases))) @ np.eye(phases + 1)[1:])
            required.append(np.asarray(signs))
            breakpoints.append(bps)
        projections = [np.linalg.pinv(design) for design in designs]
        return cls(breakpoints, projections, designs, ops, required)

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
            if self.caps is not None and self.caps[i] is not None:
                sse[np.any(self.caps[i] @ coef > 0, axis=0)] = np.inf
            better = sse < best
            best[better], which[better] = sse[better], i
            for b in np.flatnonzero(better):
                coefs[b] = coef[:, b]
        return best, which, coefs


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
    Y = (y * w)[:, None]
    sse_pattern, which, coefs = pattern_family.fit(Y)
    if not np.isfinite(sse_pattern[0]):
        raise ValueError(f"no fit of the pattern {tuple(pattern)} to this curve has slopes of those signs")
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, n_boot))  # the same draws for every phase's test: whitened units
    dof = max(n - 2 * k, 1)  # residual degrees of freedom of a k-phase fit: the fallback noise estimate
    scale = None
    phase_confidences = []
    for j in range(k):  # the intersection-union test: one test per phase, the pattern's p the largest
        null = _Family.without_phase(x, w, k, min_points, j, int(signs[j]))
        sse_null, which_null, coefs_null = null.fit(Y)
        fitted_null = null.designs[which_null[0]] @ coefs_null[0]
        scale_j = 1.0 if known else max(sse_null[0] / dof, 1e-300)
        scale = scale_j if scale is None else min(scale, scale_j)
        observed = (sse_null[0] - sse_pattern[0]) / scale_j
        sims = fitted_null[:, None] + noise * np.sqrt(scale_j)
        sim_pattern, _, _ = pattern_family.fit(sims)
        sim_null, _, _ = null.fit(sims)
        sim_scale = 1.0 if known else np.maximum(sim_null / dof, 1e-300)
        t_sim = np.where(np.isfinite(sim_pattern), sim_null - sim_pattern, 0.0) / sim_scale
        p_value = (1 + np.sum(t_sim >= observed - 1e-12 * max(1.0, abs(observed)))) / (1 + n_boot)
        phase_confidences.append(float(1 - p_value))
    confidence = min(phase_confidences)

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
        phases.append(
            Phase(
                name,
                int(steps[bounds[i]]),
                int(steps[bounds[i + 1]]),
                interval,
                slope,
                confidence,
                phase_confidences[i],
            )
        )
    return phases


#: Columns of the detected-phases table (``RUN/derived/phases.parquet``): one row per
#: phase of one curve. ``curve`` is the source metric, ``position`` the phase's index
#: in its pattern (0, 1, 2), ``start_low``/``start_high`` the 90% interval of its start,
#: ``confidence`` the pattern's calibrated confidence (its weakest phase's), ``phase_confidence``
#: the phase's own (1 - p against the curves whose this phase is flat or of the wrong sign).
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
        ("phase_confidence", pa.float64()),
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
                        "phase_confidence": phase.phase_confidence,
                    }
                )
    table = pa.Table.from_pylist(rows, schema=PHASES_SCHEMA) if rows else PHASES_SCHEMA.empty_table()
    return table.to_pandas()
