"""Standard errors from random half-splits of the points, and their replicates.

Why half-splits
---------------
An estimate's standard error is the spread it would have over independent samples
of the same size. Resampling the one sample we have imitates that, but the usual
schemes fail for nearest-neighbour estimators:

- the bootstrap (drawing with replacement) makes exact copies of points, which
  have distance 0 to each other; the estimators drop them as duplicates, so every
  resample is a smaller, differently spaced sample;
- random 90% subsets (Ansuini et al.'s recipe) spread less than independent
  samples: two subsets share 80% of their points. The delete-d jackknife's factor
  ``sqrt(m / d)`` corrects that only for smooth statistics; TwoNN, whose ratios
  change whenever a point's neighbour leaves, is not one (measured: the corrected
  spread over-states the error by 1.4-2x; the raw spread under-states it by
  0.46-0.68x, docs/benchmarks.md).

A random half-split avoids both: its two halves A and B are disjoint, so each is an
independent sample of ``N/2`` points from the same distribution, whatever the
estimator. Then ``E[(theta_A - theta_B)^2] = 2 Var(theta_{N/2})``, and with the
variance of a root-N consistent estimator scaling as 1/N, ``Var(theta_N) =
Var(theta_{N/2}) / 2``: the replicate ``r = (theta_A - theta_B) / 2`` has
``E[r^2] = Var(theta_N)``. Over ``n_resamples`` random splits, the standard error
is ``sqrt(mean(r^2))``. The only assumption is the 1/N scaling; the check against
independent samples is in tests/test_error_bars.py and benchmarks/error_bars.py.

Replicates
----------
An estimator keeps its replicates (``Estimate.replicates``): ``error**2 ==
mean(replicates**2)``. The splits are drawn over the rows of the input from
``random_state`` alone, so two fits on the same number of rows (the same probe
points at two checkpoints of a training run) use the same splits, and
``mean(r_t * r_s)`` estimates the covariance of the two estimates: resample b of a
curve is one coherent curve.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from scipy.stats import binom

from ._validation import check_int

#: The chance that a point of a half-split has fewer of its listed neighbours in its
#: half than the fit needs; such points get a longer list from an exact search.
_SHORT_LIST = 1e-4


def half_splits(n_rows: int, n_splits: int, seed: int) -> np.ndarray:
    """Random half-splits of ``n_rows`` rows, drawn from ``seed`` alone.

    Returns
    -------
    numpy.ndarray of int8, shape (n_splits, n_rows)
        0 or 1: the half each row falls in; -1 for the one row left out of each
        split when ``n_rows`` is odd (so that both halves have ``n_rows // 2`` rows).
    """
    check_int(n_splits, "n_resamples", minimum=2)
    rng = np.random.default_rng(seed)
    half = n_rows // 2
    labels = np.full((n_splits, n_rows), -1, dtype=np.int8)
    for s in range(n_splits):
        order = rng.permutation(n_rows)
        labels[s, order[:half]] = 0
        labels[s, order[half : 2 * half]] = 1
    return labels


def split_replicates(values: np.ndarray) -> np.ndarray:
    """Replicates ``(theta_A - theta_B) / 2`` from the estimates on each split's halves, shape (n_splits, 2)."""
    values = np.asarray(values, dtype=np.float64)
    return (values[:, 0] - values[:, 1]) / 2


def bootstrap_replicates(values: np.ndarray) -> np.ndarray:
    """Replicates from bootstrap estimates: centred and scaled so that ``mean(r**2)`` is their variance (ddof=1)."""
    values = np.asarray(values, dtype=np.float64)
    return (values - values.mean()) * np.sqrt(len(values) / (len(values) - 1))


def replicate_error(replicates: np.ndarray) -> float:
    """The standard error the replicates make: ``sqrt(mean(r**2))``."""
    return float(np.sqrt(np.mean(np.square(replicates))))


def neighbors_for_halves(k: int, n_points: int) -> int:
    """How many neighbours to list per point so that its half keeps ``k`` of them but for a 1e-4 chance.

    A listed neighbour is in the point's half with probability about 1/2, so the
    count kept of ``m`` listed is Binomial(m, 1/2); the smallest m with
    ``P(count < k) <= 1e-4`` (18 for k = 2, 61 for k = 20), at most ``n_points - 1``.
    """
    m = k
    while m < n_points - 1 and binom.cdf(k - 1, m, 0.5) > _SHORT_LIST:
        m += 1
    return min(m, n_points - 1)


def half_estimates(
    labels: np.ndarray,
    indices: np.ndarray,
    distances: np.ndarray,
    k: int,
    fit: Callable[[np.ndarray], float],
    longer: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]],
) -> np.ndarray:
    """The estimate on each half of each split, from one neighbour search of the whole set.

    A point's first k neighbours within its half are the first k of its listed
    neighbours that lie in that half. The few points with fewer than k of them in
    their half in some split (:func:`neighbors_for_halves` keeps that rare) get a
    longer list from ``longer(rows, m)`` (an exact search of m neighbours), doubled
    until every half is served.

    Parameters
    ----------
    labels : (n_splits, n) int8, from :func:`half_splits` (restricted to the searched rows)
    indices, distances : (n, m) the listed neighbours of every point, ascending
    k : int
        Neighbours the fit needs within a half.
    fit : callable
        Ascending within-half distances, shape (n_half, k), to the estimate.
    longer : callable
        ``(rows, m) -> (indices, distances)`` of the m nearest neighbours of ``rows``.

    Returns
    -------
    numpy.ndarray of shape (n_splits, 2)
    """
    n, m = indices.shape
    short = np.zeros(n, dtype=bool)
    for lab in labels:
        same = lab[indices] == lab[:, None]
        short |= (lab >= 0) & (same.sum(1) < k)
    extra_idx: np.ndarray | None = None
    extra_dist: np.ndarray | None = None
    rows = np.flatnonzero(short)
    width = m
    while len(rows):
        width = min(2 * width, n - 1)
        extra_idx, extra_dist = longer(rows, width)
        ok = all(((lab[extra_idx] == lab[rows, None]).sum(1) >= k)[lab[rows] >= 0].all() for lab in labels)
        if ok or width == n - 1:
            break
    out = np.empty((len(labels), 2))
    for s, lab in enumerate(labels):
        for h in (0, 1):
            members = np.flatnonzero(lab == h)
            d = _first_in_half(lab, h, indices[members], distances[members], k)
            if extra_idx is not None:
                mine = lab[rows] == h
                where = np.searchsorted(members, rows[mine])
                d[where] = _first_in_half(lab, h, extra_idx[mine], extra_dist[mine], k)
            out[s, h] = fit(d)
    return out


def _first_in_half(lab: np.ndarray, h: int, idx: np.ndarray, dist: np.ndarray, k: int) -> np.ndarray:
    """Distances to the first k listed neighbours in half h (rows must have k of them)."""
    inside = lab[idx] == h
    order = np.argsort(~inside, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(dist, order, axis=1)


def exact_longer_lists(points: torch.Tensor, device: torch.device | str | None, scale: float | None = None) -> Callable:
    """A ``longer`` for :func:`half_estimates`: exact neighbour lists of some rows of ``points``.

    The search's float32 squares overflow past about 1e19 and float64's past 1e154, so the points
    are first brought near unit scale by a power of two (exact), as the main search does, and the
    distances scaled back. ``scale`` (the points' root mean square distance to their centroid, as the
    main search reports it) bounds every point's distance to the centroid by ``scale * sqrt(n)``,
    which spares a pass over the data; without it the largest entry is read.
    """
    from ._validation import unit_factor
    from .neighbors import _exhaustive, _unit_scaled

    dev = torch.device(device) if device is not None else points.device
    if scale is not None and 0 < scale < math.inf:
        bound = math.ldexp(1.0, -math.frexp(scale * math.sqrt(points.shape[0]))[1])
    else:
        bound = unit_factor(points)
    scaled, factor = _unit_scaled(points, bound)

    def longer(rows: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        d, i = _exhaustive(scaled, torch.from_numpy(rows), m, dev)
        return i.numpy(), d.numpy() / factor

    return longer
