"""Levina-Bickel maximum-likelihood intrinsic dimension, MacKay-Ghahramani average."""

from __future__ import annotations

import numpy as np

from ._base import Estimate, NeighborEstimator
from ._validation import Array, check_int


def mle_from_distances(distances: np.ndarray, k1: int, k2: int) -> tuple[float, float]:
    """MLE dimension from sorted neighbour distances.

    For each point x and each k in [k1, k2] the local inverse estimate is
    ``1/m_k(x) = 1/(k-1) * sum_{j<k} log(T_k(x) / T_j(x))`` (``T_j``: distance to the
    j-th neighbour). Following MacKay and Ghahramani these inverses are averaged over
    the points (not the estimates themselves, which is biased), giving ``m_k``; the
    result is the mean of ``m_k`` over k.

    Parameters
    ----------
    distances : numpy.ndarray of shape (n_points, >= k2)
        Ascending distances to the nearest neighbours, all > 0.
    k1, k2 : int
        Neighbourhood range, ``2 <= k1 <= k2``.

    Returns
    -------
    dimension, standard error
        The error is the delta-method standard error over points, treating the
        points' local estimates as independent (they are not quite: neighbourhoods
        overlap).
    """
    log_t = np.log(distances[:, :k2])
    ks = np.arange(k1, k2 + 1)
    csum = np.cumsum(log_t, axis=1)  # csum[:, k-1] = sum_{j<=k} log T_j
    # inv[:, i] = 1/(k-1) * sum_{j<k} (log T_k - log T_j) for k = ks[i]
    inv = (log_t[:, ks - 1] * (ks - 1) - csum[:, ks - 2]) / (ks - 1)
    m_k = 1.0 / inv.mean(axis=0)
    dimension = float(m_k.mean())
    per_point = inv.mean(axis=1)  # average inverse over k for each point
    err = dimension**2 * per_point.std(ddof=1) / np.sqrt(len(per_point))
    return dimension, float(err)


class MLE(NeighborEstimator):
    """Intrinsic dimension by Levina and Bickel's maximum likelihood.

    Parameters
    ----------
    k1, k2 : int, default 10, 20
        Range of neighbourhood sizes averaged over (Levina and Bickel's choice; Tan
        et al. use 20..55).
    error : {"halves", "delta", "none"}, default "halves"
        ``"halves"``: the standard error from ``n_resamples`` random half-splits
        (:mod:`~layerscope.estimators.resampling`). ``"delta"``: the delta-method
        error over points, which treats the points' local estimates as independent
        (neighbourhoods of 20 points overlap) and understates the error by 15-25%
        (docs/benchmarks.md).
    n_resamples : int, default 20
    duplicate_tol : float, optional
        See :class:`~layerscope.estimators.TwoNN`.
    device : str, optional
        Where the neighbour search runs.
    random_state : int, default 0
        Seed of the half-splits.

    Attributes
    ----------
    dimension_, dimension_err_ : float
        Estimate and standard error (None for ``error="none"``).
    replicates_ : numpy.ndarray or None
        The half-splits' replicates (see :class:`~layerscope.estimators.Estimate`).
    n_duplicates_ : int
    estimate_ : Estimate
    """

    name = "mle"
    meaning = "Levina-Bickel maximum-likelihood intrinsic dimension (MacKay-Ghahramani average)"
    error_meaning = "standard error from 20 random half-splits of the points (NaN below 20 points)"
    error_methods = ("halves", "delta", "none")

    def __init__(
        self,
        k1: int = 10,
        k2: int = 20,
        error: str = "halves",
        n_resamples: int = 20,
        duplicate_tol: float | None = None,
        device: str | None = None,
        random_state: int = 0,
    ) -> None:
        self.k1 = k1
        self.k2 = k2
        self.error = error
        self.n_resamples = n_resamples
        self.duplicate_tol = duplicate_tol
        self.device = device
        self.random_state = random_state

    def check_params(self) -> None:
        super().check_params()
        check_int(self.k2, "k2", minimum=check_int(self.k1, "k1", minimum=2))

    def fit(self, X: Array, y: None = None) -> MLE:
        """Estimate the intrinsic dimension of ``X``, shape (n_points, n_features)."""
        self.check_params()
        k1, k2 = int(self.k1), int(self.k2)
        points, nb, kept = self._neighbors(X, k2, min_points=k2 + 1)
        self.dimension_, delta = mle_from_distances(nb.distances, k1, k2)
        self.replicates_ = None
        if self.error == "halves":
            self.dimension_err_, self.replicates_ = self._half_split_error(
                points, nb, kept, k2, lambda d: mle_from_distances(d, k1, k2)[0]
            )
        else:
            self.dimension_err_ = delta if self.error == "delta" else None
        self.estimate_ = Estimate(
            self.name, self.dimension_, self.dimension_err_, None, len(nb.distances), self.replicates_
        )
        return self


def mle(X: Array, **params: object) -> Estimate:
    """MLE on ``X`` in one call: ``MLE(**params).fit(X).estimate_``."""
    return MLE(**params).fit(X).estimate_
