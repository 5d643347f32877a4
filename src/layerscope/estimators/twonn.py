"""TwoNN intrinsic dimension (Facco et al. 2017), as used by Ansuini et al. 2019.

For each point, ``mu = r2 / r1`` (distances to its second and first nearest
neighbour) is Pareto distributed with exponent d, the intrinsic dimension.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import torch

from ._base import Estimate, NeighborEstimator
from ._fits import line_through_origin
from ._validation import Array, check_fraction, check_int, check_points
from .neighbors import DuplicatePointsWarning

# Neighbours kept per point when errors come from subsamples: a point keeps its own
# first two neighbours in a 90% subset unless fewer than 2 of these 8 survive, which
# happens with probability ~7e-7; such points are searched again (exactly).
_SUBSAMPLE_NEIGHBORS = 8


def dimension_from_ratios(mu: np.ndarray, *, discard_fraction: float, method: str) -> tuple[float, float | None]:
    """TwoNN dimension from the ratios ``mu = r2 / r1`` (all >= 1).

    Parameters
    ----------
    mu : numpy.ndarray of shape (n_points,)
    discard_fraction : float
        ``"regression"`` only: the fraction of largest ratios left out of the fit.
    method : {"regression", "mle"}
        ``"regression"``: with the ratios sorted, ``F_i = i / N``, the slope of
        ``-log(1 - F_i)`` against ``log mu_i`` through the origin, over the smallest
        ``int(N (1 - discard_fraction))`` ratios (as the reference code and dadapy).
        ``"mle"``: the unbiased maximum-likelihood ``(N - 1) / sum(log mu)`` over all
        ratios.

    Returns
    -------
    dimension, fit quality (Pearson r of the regression; None for "mle")
    """
    n = len(mu)
    log_mu = np.log(mu)
    if not np.any(log_mu > 0):
        raise ValueError("every point's two nearest neighbours are equally far (mu = 1): TwoNN is undefined")
    if method == "mle":
        return float((n - 1) / log_mu.sum()), None
    n_fit = int(n * (1 - discard_fraction))
    if n_fit < 2:
        raise ValueError(f"discard_fraction={discard_fraction} leaves {n_fit} of {n} ratios to fit; need 2")
    x = np.sort(log_mu)[:n_fit]
    y = -np.log1p(-np.arange(1, n_fit + 1) / n)
    if np.ptp(x) == 0:
        raise ValueError("all distance ratios that enter the fit are equal (a lattice?): TwoNN is undefined")
    return line_through_origin(x, y)


class TwoNN(NeighborEstimator):
    """Intrinsic dimension by the TwoNN estimator.

    Parameters
    ----------
    discard_fraction : float, default 0.1
        Fraction of the largest ratios ``r2/r1`` left out of the regression, in (0, 1).
    method : {"regression", "mle"}, default "regression"
        See :func:`dimension_from_ratios`.
    error : {"halves", "subsets", "closed-form", "none"}, default "halves"
        How ``dimension_err_`` is made. ``"halves"``: the standard error from
        ``n_resamples`` random half-splits of the points
        (:mod:`~layerscope.estimators.resampling`; checked against the spread over
        independent samples in docs/benchmarks.md). ``"subsets"``: Ansuini et al.'s
        error bar, the standard deviation over ``n_resamples`` random subsets of
        ``subsample_fraction`` of the points; it is not a standard error (about half
        of one: two subsets share most of their points). ``"closed-form"``: the
        maximum-likelihood estimate's ``d / sqrt(N - 2)``, which understates the
        regression's error. Every resampled error finds each half's or subset's
        neighbours exactly from one search of the whole set.
    n_resamples : int, default 20
        Half-splits, or subsets, for the error.
    subsample_fraction : float, default 0.9
        ``error="subsets"`` only.
    duplicate_tol : float, optional
        Points closer than this (relative to the data's scale) count as duplicates:
        they are dropped, counted in ``n_duplicates_`` and reported with a warning.
        Default: from the input's precision, 64 machine epsilons and at least 1e-9
        (7.6e-6 for float32, 1e-9 for float64): a format cannot tell points apart
        below a few units in the last place of the data's scale.
    device : str, optional
        Where the neighbour search runs ("cpu", "cuda").
    random_state : int, default 0
        Seed of the half-splits or subsets (drawn over the input's rows, so every
        fit on as many rows uses the same ones).

    Attributes
    ----------
    dimension_ : float
    dimension_err_ : float or None
        As ``error`` says; NaN (with a :class:`TooFewPointsWarning`) for a resampled
        error on fewer than :data:`MIN_POINTS_FOR_ERROR` distinct points; None for
        ``error="none"``.
    replicates_ : numpy.ndarray or None
        The half-splits' replicates (``error="halves"``), see :class:`Estimate`.
    fit_quality_ : float or None
        Pearson r of the regression (None for ``method="mle"``).
    n_duplicates_ : int
    mu_ : numpy.ndarray of shape (n_points - n_duplicates_,)
        The ratios ``r2 / r1``, in the order of the distinct input rows.
    estimate_ : Estimate

    Examples
    --------
    >>> from layerscope.data.manifolds import hypersphere
    >>> X = hypersphere(2000, dim=4, ambient_dim=20, seed=0)
    >>> round(TwoNN().fit(X).dimension_)
    4
    """

    name = "twonn"
    meaning = "TwoNN intrinsic dimension (Facco et al.)"
    error_meaning = "standard error from 20 random half-splits of the points (NaN below 20 points)"
    error_methods = ("halves", "subsets", "closed-form", "none")

    def __init__(
        self,
        discard_fraction: float = 0.1,
        method: str = "regression",
        error: str = "halves",
        n_resamples: int = 20,
        subsample_fraction: float = 0.9,
        duplicate_tol: float | None = None,
        device: str | None = None,
        random_state: int = 0,
    ) -> None:
        self.discard_fraction = discard_fraction
        self.method = method
        self.error = error
        self.n_resamples = n_resamples
        self.subsample_fraction = subsample_fraction
        self.duplicate_tol = duplicate_tol
        self.device = device
        self.random_state = random_state

    def check_params(self) -> None:
        super().check_params()
        check_fraction(self.discard_fraction, "discard_fraction")
        if self.method not in ("regression", "mle"):
            raise ValueError(f"method must be 'regression' or 'mle', got {self.method!r}")
        check_fraction(self.subsample_fraction, "subsample_fraction")

    def fit(self, X: Array, y: None = None) -> TwoNN:
        """Estimate the intrinsic dimension of ``X``, shape (n_points, n_features)."""
        self.check_params()
        discard, method = float(self.discard_fraction), self.method

        def dimension(mu: np.ndarray) -> float:
            return dimension_from_ratios(mu, discard_fraction=discard, method=method)[0]

        n = int(np.shape(X)[0]) if np.ndim(X) == 2 else 0
        k = max(2, min(_SUBSAMPLE_NEIGHBORS, n - 1)) if self.error == "subsets" else 2
        points, nb, kept = self._neighbors(X, k, min_points=3, fit_k=2)
        self.mu_ = nb.distances[:, 1] / nb.distances[:, 0]
        self.dimension_, self.fit_quality_ = dimension_from_ratios(self.mu_, discard_fraction=discard, method=method)
        _warn_near_copies(self.mu_, self.dimension_)
        self.replicates_ = None
        if self.error == "halves":
            self.dimension_err_, self.replicates_ = self._half_split_error(
                points, nb, kept, 2, lambda d: dimension(d[:, 1] / d[:, 0])
            )
        elif self.error == "subsets" and self._too_few_for_error(len(self.mu_)):
            self.dimension_err_ = float("nan")
        elif self.error == "subsets":
            rng = np.random.default_rng(self.random_state)
            fraction = float(self.subsample_fraction)
            dims = [
                dimension(_subset_ratios(points, kept, nb.indices, nb.distances, rng, fraction))
                for _ in range(int(self.n_resamples))
            ]
            self.dimension_err_ = float(np.std(dims, ddof=1))
        elif self.error == "closed-form":
            self.dimension_err_ = self.dimension_ / np.sqrt(max(len(self.mu_) - 2, 1))
        else:
            self.dimension_err_ = None
        self.estimate_ = Estimate(
            self.name, self.dimension_, self.dimension_err_, self.fit_quality_, len(self.mu_), self.replicates_
        )
        return self


def _warn_near_copies(mu: np.ndarray, dimension: float) -> None:
    """Warn when the largest ratios r2/r1 are far beyond what a Pareto law allows.

    Under TwoNN's model ``P(mu > t) = t^-d``: the threshold ``t`` with an expected
    0.01 exceedances among N points is ``(100 N)^(1/d)``. Near-copies that escaped
    the duplicate tolerance (r1 tiny, so mu huge, in pairs) give several; three or
    more happen by chance with probability below 2e-7.
    """
    if not dimension > 0:
        return
    threshold = (100 * len(mu)) ** (1 / dimension)
    tail = int(np.sum(mu > threshold))
    if tail >= 3:
        warnings.warn(
            f"{tail} of {len(mu)} points have r2/r1 above {threshold:.3g}, far more than TwoNN's Pareto law allows "
            f"(0.01 expected at d = {dimension:.3g}): near-copies of points, closer than their neighbours but above "
            "duplicate_tol, are likely; they bias the estimate down. Raise duplicate_tol or remove them",
            DuplicatePointsWarning,
            stacklevel=3,
        )


def _subset_ratios(
    points: torch.Tensor,
    kept: np.ndarray,
    indices: np.ndarray,
    distances: np.ndarray,
    rng: np.random.Generator,
    fraction: float,
) -> np.ndarray:
    """Ratios r2/r1 within a random subset, from the whole set's neighbour lists.

    ``indices`` and ``distances`` refer to the rows ``points[kept]``. A point's first
    two neighbours within the subset are the first two of its listed neighbours that
    are in the subset, unless fewer than two of the listed ones are; those few points
    get an exact search within the subset (the only use of the points themselves:
    their subset is gathered then, not before, since a copy of the data is as large
    as the data).
    """
    n = len(indices)
    members = np.sort(rng.choice(n, size=max(3, int(round(n * fraction))), replace=False))
    inside = np.zeros(n, dtype=bool)
    inside[members] = True
    lists = indices[members]
    ok = inside[lists]  # (m, k): which listed neighbours are in the subset
    first = np.argmax(ok, axis=1)
    ok_after = ok.copy()
    ok_after[np.arange(len(members)), first] = False
    second = np.argmax(ok_after, axis=1)
    enough = ok.sum(1) >= 2
    r1 = distances[members, first]
    r2 = distances[members, second]
    if not enough.all():
        sub = points[torch.from_numpy(kept[members]).to(points.device)]
        for i in np.flatnonzero(~enough):
            d = torch.linalg.vector_norm(sub - sub[i], dim=1, dtype=torch.float64).cpu().numpy()
            d[i] = np.inf
            r1[i], r2[i] = np.partition(d, 1)[:2]
    return r2 / r1


def twonn(X: Array, **params: object) -> Estimate:
    """TwoNN on ``X`` in one call: ``TwoNN(**params).fit(X).estimate_``."""
    return TwoNN(**params).fit(X).estimate_


def twonn_scale(X: Array, max_blocks: int = 20, *, seed: int = 0, **params: object) -> pd.DataFrame:
    """TwoNN against sample size: the block analysis of Ansuini et al.

    The points are shuffled and split into b = 1 .. ``max_blocks`` blocks of
    (nearly) equal size; TwoNN runs on each block on its own.

    Parameters
    ----------
    X : array-like of shape (n_points, n_features)
    max_blocks : int, default 20
        Each block must keep at least 10 points.
    seed : int
        Seed of the shuffles.
    **params
        Passed to :class:`TwoNN` (``error`` defaults to "none" for b > 1: the
        spread across blocks is the error; b = 1 has the single fit's standard error).

    Returns
    -------
    pandas.DataFrame
        One row per b, with columns ``n_blocks``, ``block_size`` (mean points per
        block), ``dimension`` (mean over blocks), ``error`` (standard deviation over
        blocks; for b = 1 the single fit's standard error).
    """
    X = check_points(X, min_points=3)
    n = X.shape[0]
    max_blocks = check_int(max_blocks, "max_blocks", minimum=1)
    if n // max_blocks < 10:
        raise ValueError(f"max_blocks={max_blocks} would leave blocks of {n // max_blocks} points; need at least 10")
    rng = np.random.default_rng(seed)
    rows = []
    for b in range(1, max_blocks + 1):
        order = rng.permutation(n)
        each = params if b == 1 else {"error": "none", **params}
        fits = [
            TwoNN(**each).fit(X[torch.from_numpy(part)] if isinstance(X, torch.Tensor) else X[part])
            for part in np.array_split(order, b)
        ]
        dims = np.array([f.dimension_ for f in fits])
        error = float(np.std(dims, ddof=1)) if b > 1 else fits[0].dimension_err_
        rows.append({"n_blocks": b, "block_size": n / b, "dimension": float(dims.mean()), "error": error})
    return pd.DataFrame(rows)
