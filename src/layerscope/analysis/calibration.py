"""The phase detector on simulated curves: how often it finds a pattern that is not there, and one that is.

What :func:`layerscope.analysis.phases.detect_phases` is calibrated on
(``benchmarks/phases.py`` prints the tables in docs/benchmarks.md; ``tests/test_phases.py``
repeats parts of them). A curve is a shape in ``x`` (log training step scaled to 0..1)
whose size is counted in error bars, measured at log-spaced checkpoints, plus noise
of one of four kinds:

- ``"given"``: independent, unit standard deviation, the errors given exactly;
- ``"estimated"``: independent, the errors given as the root mean square of 20
  replicates (as the estimators' half-split errors are: themselves noisy);
- ``"joint"``: correlated across checkpoints, with 20 joint replicates of the same
  covariance given to the detector. The same probe points are measured at every
  checkpoint; on a quick run the replicates of neighbouring checkpoints correlated
  0.5 to 0.99, and distant ones kept some correlation. Here: a common part (30% of
  the variance, correlation 1 across checkpoints) plus a chain whose neighbours
  correlate by a coefficient drawn per pair uniformly from 0.5 to 0.95 (a new draw
  per curve); neither stationary nor a chain as a whole;
- ``"none"``: independent, no errors given (estimated from the residuals).

Every shape of :data:`NULLS` lacks at least one phase of the patterns it is listed
for: a constant, monotone curves (straight, with a plateau, sigmoid steps), and
every pattern with one phase flat or missing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .phases import ID_PATTERN, LC_PATTERN, detect_phases

NOISE_KINDS = ("given", "estimated", "joint", "none")
#: The ``"joint"`` noise: the share of its variance common to every checkpoint, and the range of the correlation
#: between neighbouring checkpoints of the rest.
JOINT_COMMON = 0.3
JOINT_NEIGHBOURS = (0.5, 0.95)
#: Replicates behind an estimated error (the estimators' default ``n_resamples``).
REPLICATES = 20


def _knots(points: Sequence[float], values: Sequence[float]) -> Callable[[np.ndarray], np.ndarray]:
    return lambda x: np.interp(x, points, values)


def _sigmoid(sign: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda x: sign / (1 + np.exp(-(x - 0.5) / 0.08))


@dataclass(frozen=True)
class Shape:
    """A curve's shape on 0..1 with a range of 1 (``size`` scales it), and the patterns it lacks."""

    name: str
    curve: Callable[[np.ndarray], np.ndarray]
    lacks: tuple[tuple[str, ...], ...]


_BOTH = (ID_PATTERN, LC_PATTERN)
_THIRDS = (0, 1 / 3, 2 / 3, 1)
#: Curves without the pattern (each lacks a phase of every pattern it lists).
NULLS = (
    Shape("flat", lambda x: 0 * x, _BOTH),
    Shape("monotone rise", lambda x: x, _BOTH),
    Shape("monotone fall", lambda x: -x, _BOTH),
    Shape("plateau, then a fall", _knots((0, 0.5, 1), (0, 0, -1)), _BOTH),
    Shape("rise, then a plateau", _knots((0, 0.5, 1), (0, 1, 1)), _BOTH),
    Shape("sigmoid rise", _sigmoid(1), _BOTH),
    Shape("sigmoid fall", _sigmoid(-1), _BOTH),
    Shape("fall, plateau, fall", _knots(_THIRDS, (1, 0.5, 0.5, 0)), _BOTH),
    Shape("fall, then a rise", _knots((0, 0.5, 1), (1, 0, 1)), _BOTH),
    Shape("flat, rise, fall", _knots(_THIRDS, (0, 0, 1, 0)), (LC_PATTERN,)),
    Shape("fall, rise, flat", _knots(_THIRDS, (1, 0, 1, 1)), (LC_PATTERN,)),
    Shape("rise, then a fall", _knots((0, 0.5, 1), (0, 1, 0)), (LC_PATTERN,)),
)
#: Curves with each pattern (for the power tables).
PATTERNS = {
    ID_PATTERN: Shape("rise, then a fall", _knots((0, 0.5, 1), (0, 1, 0)), ()),
    LC_PATTERN: Shape("fall, rise, fall", _knots(_THIRDS, (1, 0, 1, 0)), ()),
}


def log_steps(n: int, last: int = 1000) -> np.ndarray:
    """``n`` checkpoints: step 0 and ``n - 1`` log-spaced steps from 1 to ``last`` (distinct integers)."""
    steps = np.unique(np.round(np.concatenate([[0], np.logspace(0, np.log10(last), n - 1)])).astype(int))
    extra = last
    while len(steps) < n:  # rounding merged some: add steps at the end of the range
        extra += 1
        steps = np.append(steps, extra)
    return steps


def _joint_factor(n: int, rng: np.random.Generator) -> np.ndarray:
    """A Cholesky factor of one draw of the ``"joint"`` noise's correlation (see the module's docstring)."""
    rho = rng.uniform(*JOINT_NEIGHBOURS, size=n - 1)
    logs = np.concatenate([[0.0], np.cumsum(np.log(rho))])
    chain = np.exp(-np.abs(np.subtract.outer(logs, logs)))
    return np.linalg.cholesky(JOINT_COMMON + (1 - JOINT_COMMON) * chain)


def simulate(
    shape: Shape, size: float, steps: np.ndarray, noise: str, rng: np.random.Generator
) -> tuple[np.ndarray, dict]:
    """One noisy curve of ``shape`` (``size`` error bars) at ``steps``, and the detector's keyword arguments
    for the ``noise`` kind (errors, replicates)."""
    if noise not in NOISE_KINDS:
        raise ValueError(f"unknown noise {noise!r}; use one of {', '.join(NOISE_KINDS)}")
    n = len(steps)
    x = np.log1p(steps) / np.log1p(steps[-1])
    clean = size * shape.curve(x)
    if noise == "joint":
        factor = _joint_factor(n, rng)
        draws = factor @ rng.standard_normal((n, REPLICATES + 1))
        return clean + draws[:, 0], {"replicates": draws[:, 1:]}
    values = clean + rng.standard_normal(n)
    if noise == "given":
        return values, {"errors": np.ones(n)}
    if noise == "estimated":
        return values, {"errors": np.sqrt(np.mean(rng.standard_normal((n, REPLICATES)) ** 2, axis=1))}
    return values, {}


def confidences(
    shape: Shape,
    size: float,
    pattern: Sequence[str],
    steps: np.ndarray,
    noise: str,
    curves: int,
    seed: int = 0,
    n_boot: int = 400,
    calibration: float | None = None,
) -> np.ndarray:
    """The detector's confidence in ``pattern`` on ``curves`` simulated curves (0 where no fit has its signs)."""
    rng = np.random.default_rng(seed)
    extra = {} if calibration is None else {"calibration": calibration}
    out = np.zeros(curves)
    for i in range(curves):
        values, kwargs = simulate(shape, size, steps, noise, rng)
        try:
            out[i] = detect_phases(steps, values, pattern, seed=seed * 100_003 + i, n_boot=n_boot, **extra, **kwargs)[
                0
            ].confidence
        except ValueError:
            out[i] = 0.0
    return out
