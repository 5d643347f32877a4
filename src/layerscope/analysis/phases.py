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

import functools
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
#: The reported p is ``min(1, factor * p)`` of the parametric bootstrap's nominal p, by what the fits were weighted
#: by: the largest ratio of false-positive rate to nominal level at the threshold over every simulated null of that
#: kind of noise (``benchmarks/phases.py``, docs/benchmarks.md). The bootstrap is anti-conservative because the
#: nuisance breakpoints are fitted to the data, and, with joint replicates, because 20 replicates estimate the
#: covariance of up to 30 checkpoints only roughly; errors estimated from replicates count as "independent".
LEVEL_INFLATION = {"independent": 2.5, "joint": 2.0, "residuals": 2.5}


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
    chi2_dof : float
        Chi-square per degree of freedom of the curve's best fit with the given errors (None without errors).
        Above 1, the residuals exceed the errors: the tests were widened by it.
    errors : str
        What the fits were weighted by: "joint" (the replicates' covariance), "independent" (the errors),
        "residuals" (no errors: the residual scatter).
    """

    name: str
    start_step: int
    end_step: int
    start_interval: tuple[int, int]
    slope: float
    confidence: float
    phase_confidence: float
    chi2_dof: float | None = None
    errors: str = "independent"


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
class _Group:
    """Designs of one width, stacked: their orthonormal bases and the constraints on their coefficients."""

    members: np.ndarray  # (G,) indices into the family's designs
    designs: np.ndarray  # (G, n, p) whitened designs
    bases: np.ndarray  # (G, n, p): Q of each whitened design's QR factorisation
    inverses: np.ndarray  # (G, p, p): R^-1, so that the coefficients are R^-1 Q^T y
    slope_op: np.ndarray | None  # (m, p): the slopes whose signs are required, or None
    signs: np.ndarray | None  # (m,): their required signs
    cap: np.ndarray | None  # (1, p): a combination of the coefficients that must be <= 0, or None

    @classmethod
    def of(cls, members: np.ndarray, raw: np.ndarray, W: np.ndarray, slope_op=None, signs=None, cap=None) -> _Group:  # noqa: ANN001
        designs = W @ raw
        q, r = np.linalg.qr(designs)
        return cls(members, designs, q, np.linalg.inv(r), slope_op, signs, cap)


@functools.lru_cache(maxsize=32)
def _raw_designs(
    x: tuple[float, ...], phases: int, min_points: int, flat: int | None
) -> tuple[list[tuple[int, ...]], list[tuple[np.ndarray, np.ndarray]]]:
    """The unwhitened designs of a family (cached: the same steps give the same designs for every curve).

    ``flat=None``: the pattern's hinge designs. ``flat=j``: per set of breakpoints, the
    design with every phase free, then the one with phase ``j`` flat. Returns the
    breakpoints of each design, and (indices, stacked designs) per width.
    """
    xs = np.asarray(x)
    breakpoints, free_fits, flat_fits = [], [], []
    for bps in _breakpoint_sets(len(xs), phases, min_points):
        knots = [xs[b] for b in bps]
        if flat is None:
            free_fits.append((len(breakpoints), _hinge_design(xs, knots)))
            breakpoints.append(bps)
            continue
        everything = list(range(phases))
        for free, members in ((everything, free_fits), ([i for i in everything if i != flat], flat_fits)):
            members.append((len(breakpoints), _ramp_design(xs, knots, free)))
            breakpoints.append(bps)
    groups = [
        (np.array([i for i, _ in fits]), np.stack([d for _, d in fits])) for fits in (free_fits, flat_fits) if fits
    ]
    for _, stack in groups:
        stack.setflags(write=False)
    return breakpoints, groups


@dataclass(frozen=True)
class _Family:
    """Piecewise-linear curves with a fixed number of phases, over every allowed set of breakpoints."""

    breakpoints: list[tuple[int, ...]]
    groups: list[_Group]

    @classmethod
    def without_phase(cls, x: np.ndarray, W: np.ndarray, phases: int, min_points: int, j: int, sign: int) -> _Family:
        """Curves of ``phases`` phases whose phase ``j`` is flat or of the sign opposite to ``sign``, the others
        free: per set of breakpoints, the free fit kept when ``sign * slope_j <= 0``, and the fit with phase ``j``
        flat (the fit under that one inequality is one of the two)."""
        breakpoints, ((free, free_raw), (flat, flat_raw)) = _raw_designs(tuple(x), phases, min_points, j)
        cap = sign * np.eye(phases + 1)[1 + j][None]  # sign * slope_j, which must be <= 0
        return cls(breakpoints, [_Group.of(free, free_raw, W, cap=cap), _Group.of(flat, flat_raw, W)])

    @classmethod
    def make(cls, x: np.ndarray, W: np.ndarray, phases: int, min_points: int, signs: np.ndarray) -> _Family:
        """The pattern's curves: ``phases`` phases whose slopes have ``signs`` strictly (each a true rise or fall)."""
        breakpoints, ((members, raw),) = _raw_designs(tuple(x), phases, min_points, None)
        slope_op = np.tril(np.ones((phases, phases))) @ np.eye(phases + 1)[1:]
        return cls(breakpoints, [_Group.of(members, raw, W, slope_op, np.asarray(signs))])

    def fitted(self, index: int, coef: np.ndarray) -> np.ndarray:
        """The whitened curve of design ``index`` with coefficients ``coef``."""
        for group in self.groups:
            at = np.searchsorted(group.members, index)
            if at < len(group.members) and group.members[at] == index:
                return group.designs[at] @ coef
        raise IndexError(index)

    def fit(self, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray | None]]:
        """Best fit of each column of whitened curves ``Y`` (n, B): SSE (B,), index of the design (B,),
        coefficients (one (p,) array per column).

        A column with no fit of the required signs gets SSE inf. The designs of one
        width are fitted together (batched products on their orthonormal bases, ``SSE
        = |y|^2 - |Q^T y|^2``), not in a Python loop over hundreds of designs.
        """
        best = np.full(Y.shape[1], np.inf)
        which = np.full(Y.shape[1], -1)
        coefs: list[np.ndarray | None] = [None] * Y.shape[1]
        total = (Y**2).sum(0)
        for group in self.groups:
            projected = np.swapaxes(group.bases, 1, 2) @ Y  # (G, p, B)
            sse = np.maximum(total - (projected**2).sum(1), 0.0)  # (G, B)
            coef = group.inverses @ projected
            if group.signs is not None:
                sse[np.any(np.sign(group.slope_op @ coef) != group.signs[:, None], axis=1)] = np.inf
            if group.cap is not None:
                sse[np.any(group.cap @ coef > 0, axis=1)] = np.inf
            g_best = np.argmin(sse, axis=0)  # the first of the lowest, as in a loop over the designs in order
            group_best = sse[g_best, np.arange(Y.shape[1])]
            better = group_best < best
            for b in np.flatnonzero(better):
                best[b], which[b] = group_best[b], group.members[g_best[b]]
                coefs[b] = coef[g_best[b], :, b]
        return best, which, coefs


def joint_covariance(replicates: np.ndarray, errors: np.ndarray | None = None) -> np.ndarray:
    """Covariance of a curve's errors from its joint resamples: one row of ``replicates`` per checkpoint.

    Replicate ``b`` of every checkpoint comes from the same split of the probe points
    (:func:`layerscope.estimators.resampling.half_splits`), so the replicates of two
    checkpoints covary as their errors do. With 20 replicates and up to 30
    checkpoints the sample covariance is singular, and shrinking it toward the
    identity (Ledoit-Wolf) understates the slow, smooth part of the noise that can
    pass for a phase: on simulated curves the phase test then ran at 15% instead of
    4%. The correlation is instead modelled as a first-order chain: the errors of
    one probe set change gradually as the network trains, so each checkpoint's
    correlates with its neighbour's by ``rho_k`` (estimated from the 20 pairs of
    replicates) and two checkpoints by the product of the ``rho`` between them. That
    is ``n - 1`` numbers instead of ``n (n - 1) / 2``, positive definite by
    construction (``|rho| <= 0.99``), and it kept the test near its level on noise
    that is not a chain (benchmarks/phases.py). Scaled by ``errors`` (default: the
    replicates' root mean square, which is the stored error).
    """
    r = np.asarray(replicates, dtype=float)
    if r.ndim != 2 or r.shape[1] < 2 or not np.all(np.isfinite(r)):
        raise ValueError("replicates must be a finite (checkpoints, resamples) array, each row not all 0")
    rms = np.sqrt(np.mean(r**2, axis=1))
    if np.any(rms <= 0):
        raise ValueError("replicates must be a finite (checkpoints, resamples) array, each row not all 0")
    z = r / rms[:, None]
    rho = np.clip(np.mean(z[:-1] * z[1:], axis=1), -0.99, 0.99)  # replicates are centred at 0
    n = len(z)
    correlation = np.eye(n)
    for i in range(n - 1):  # corr(i, j) = rho_i rho_i+1 ... rho_j-1
        correlation[i, i + 1 :] = np.cumprod(rho[i:])
    correlation = np.triu(correlation) + np.triu(correlation, 1).T
    e = rms if errors is None else np.asarray(errors, dtype=float)
    return correlation * e[:, None] * e[None, :]


def _whitening(sigma: np.ndarray | None, covariance: np.ndarray | None, n: int) -> np.ndarray:
    """A matrix ``W`` with ``W C W^T = I`` for the errors' covariance ``C`` (identity when they are unknown)."""
    if covariance is not None:
        lower = np.linalg.cholesky(covariance)
        return np.linalg.solve(lower, np.eye(n))
    if sigma is not None:
        return np.diag(1 / sigma)
    return np.eye(n)


def detect_phases(
    steps: Sequence[int],
    values: Sequence[float],
    pattern: Sequence[str] = ID_PATTERN,
    *,
    errors: Sequence[float] | None = None,
    replicates: np.ndarray | None = None,
    min_points: int = 2,
    n_boot: int = 400,
    seed: int = 0,
    calibration: float | None = None,
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
    replicates : array of shape (len(values), R), optional
        The values' joint resampling replicates (``RunStore.replicates()``: row ``i``
        the replicates of value ``i``, column ``b`` the same resample of the points at
        every step). Their covariance (:func:`joint_covariance`) replaces independent
        errors: the fits are generalised least squares, the simulated curves have
        correlated noise. Ignored (independent errors used) when not finite or a row is 0.
    min_points : int
        Fewest measured intervals per phase.
    n_boot : int
        Simulated curves for the calibration and for the intervals.
    seed : int
        Seed of the simulations (the same inputs give the same answer).
    calibration : float, optional
        The reported p is ``min(1, calibration * p)`` of the bootstrap's nominal ``p``
        (default: :data:`LEVEL_INFLATION` of the noise's kind, measured; 1 gives the nominal p).

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
    covariance = None
    if replicates is not None:
        r = np.asarray(replicates, dtype=float)
        if r.ndim == 2 and r.shape[0] == n and r.shape[1] >= 2:
            try:
                covariance = joint_covariance(r[order], sigma)
            except (ValueError, np.linalg.LinAlgError):
                covariance = None
    known = sigma is not None or covariance is not None
    noise_kind = "joint" if covariance is not None else "independent" if sigma is not None else "residuals"
    if calibration is None:
        calibration = LEVEL_INFLATION[noise_kind]
    W = _whitening(sigma, covariance, n)
    pattern_family = _Family.make(x, W, k, min_points, signs)
    Y = (W @ y)[:, None]
    sse_pattern, which, coefs = pattern_family.fit(Y)
    if not np.isfinite(sse_pattern[0]):
        raise ValueError(f"no fit of the pattern {tuple(pattern)} to this curve has slopes of those signs")
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, n_boot))  # the same draws for every phase's test: whitened units
    dof = max(n - 2 * k, 1)  # residual degrees of freedom of a k-phase fit (k + 1 coefficients, k - 1 breaks)
    nulls = [_Family.without_phase(x, W, k, min_points, j, int(signs[j])) for j in range(k)]
    null_fits = [null.fit(Y) for null in nulls]
    # goodness of fit with the given errors: chi-square per degree of freedom of the best k-phase fit
    chi2_dof = float(min(sse_pattern[0], *(f[0][0] for f in null_fits)) / dof) if known else None
    phase_confidences, widths = [], []
    for null, (sse_null, which_null, coefs_null) in zip(nulls, null_fits):
        # the intersection-union test: one test per phase, the pattern's p the largest
        fitted_null = null.fitted(which_null[0], coefs_null[0])
        # The noise scale the statistic is divided by: the given errors, widened when the residuals of the
        # better of the two fits exceed them (chi2/dof > 1); without errors, the null fit's residual scatter.
        # Simulated curves are scaled and divided the same way, so the test's level holds either way.
        if known:
            scale_j = max(1.0, min(sse_null[0], sse_pattern[0]) / dof)
        else:
            scale_j = max(sse_null[0] / dof, 1e-300)
        widths.append(scale_j)
        observed = (sse_null[0] - sse_pattern[0]) / scale_j
        sims = fitted_null[:, None] + noise * np.sqrt(scale_j)
        sim_pattern, _, _ = pattern_family.fit(sims)
        sim_null, _, _ = null.fit(sims)
        if known:
            sim_scale = np.maximum(1.0, np.minimum(sim_null, sim_pattern) / dof)
        else:
            sim_scale = np.maximum(sim_null / dof, 1e-300)
        t_sim = np.where(np.isfinite(sim_pattern), sim_null - sim_pattern, 0.0) / sim_scale
        p_value = (1 + np.sum(t_sim >= observed - 1e-12 * max(1.0, abs(observed)))) / (1 + n_boot)
        phase_confidences.append(float(1 - min(1.0, calibration * p_value)))
    confidence = min(phase_confidences)
    scale = min(widths)

    bps = pattern_family.breakpoints[which[0]]
    coef = coefs[0]
    # turn intervals: curves simulated from the fitted pattern, refitted
    fitted = pattern_family.fitted(which[0], coef)
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
                chi2_dof,
                noise_kind,
            )
        )
    return phases


#: Columns of the detected-phases table (``RUN/derived/phases.parquet``): one row per
#: phase of one curve. ``curve`` is the source metric, ``position`` the phase's index
#: in its pattern (0, 1, 2), ``start_low``/``start_high`` the 90% interval of its start,
#: ``confidence`` the pattern's calibrated confidence (its weakest phase's), ``phase_confidence``
#: the phase's own (1 - p against the curves whose this phase is flat or of the wrong sign), ``chi2_dof``
#: the best fit's chi-square per degree of freedom (above 1 the tests were widened by it), ``errors`` what
#: the fits were weighted by ("joint", "independent" or "residuals").
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
        ("chi2_dof", pa.float64()),
        ("errors", pa.string()),
    ]
)


def curve_replicates(curve: pd.DataFrame) -> np.ndarray | None:
    """A curve's joint replicates as a (checkpoints, resamples) array, from a ``replicates`` column of its rows
    (``RunStore.replicates()``), or None when any row has none or their counts differ."""
    if "replicates" not in curve:
        return None
    rows = list(curve.replicates)
    if not rows or any(r is None or (isinstance(r, float) and np.isnan(r)) for r in rows):
        return None
    rows = [np.asarray(r, dtype=float) for r in rows]
    if len({len(r) for r in rows}) != 1 or len(rows[0]) < 2:
        return None
    return np.stack(rows)


def with_replicates(results: pd.DataFrame, replicates: pd.DataFrame | None) -> pd.DataFrame:
    """``results`` with a ``replicates`` column from ``RunStore.replicates()`` (None where a row has none)."""
    keys = ["step", "split", "layer", "metric"]
    if replicates is None or replicates.empty:
        return results.assign(replicates=None)
    merged = results.drop(columns=["replicates"], errors="ignore").merge(
        replicates[[*keys, "replicates"]].drop_duplicates(keys), on=keys, how="left"
    )
    return merged


def phase_rows(results: pd.DataFrame, replicates: pd.DataFrame | None = None) -> pd.DataFrame:
    """Detected phases of a run's curves, one row per phase (columns of :data:`PHASES_SCHEMA`).

    TwoNN of every (split, layer) is fitted with :data:`ID_PATTERN`; the summed local
    complexity (layer ``""``) of every split with :data:`LC_PATTERN`, each weighted by
    its stored errors, or, given the run's ``replicates`` (``RunStore.replicates()``),
    by their joint covariance across checkpoints. Curves too short for their pattern,
    without variation, or with no fit of the right signs give no rows.
    """
    rows = []
    run_id = str(results.run_id.iloc[0]) if len(results) else ""
    if replicates is not None:
        results = with_replicates(results, replicates)
    curves = [
        ("twonn", ID_PATTERN, results[(results.metric == "twonn") & (results.layer != "")]),
        ("lc", LC_PATTERN, results[(results.metric == "lc") & (results.layer == "")]),
    ]
    for metric, pattern, frame in curves:
        for (split, layer), curve in frame.groupby(["split", "layer"], sort=False):
            curve = curve.sort_values("step")
            try:
                phases = detect_phases(
                    curve.step.to_numpy(),
                    curve.value.to_numpy(),
                    pattern,
                    errors=curve.error.to_numpy(),
                    replicates=curve_replicates(curve),
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
                        "chi2_dof": phase.chi2_dof,
                        "errors": phase.errors,
                    }
                )
    table = pa.Table.from_pylist(rows, schema=PHASES_SCHEMA) if rows else PHASES_SCHEMA.empty_table()
    return table.to_pandas()
