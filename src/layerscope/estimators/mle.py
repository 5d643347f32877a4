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
    duplicate_tol : float, optional
        See :class:`~layerscope.estimators.TwoNN`.
    device : str, optional
        Where the neighbour search runs.

    Attributes
    ----------
    dimension_, dimension_err_ : float
    n_duplicates_ : int
    estimate_ : Estimate
    """

    name = "mle"
    meaning = "Levina-Bickel maximum-likelihood intrinsic dimension (MacKay-Ghahramani average)"
    error_meaning = "delta-method standard error over points"

    def __init__(
        self, k1: int = 10, k2: int = 20, duplicate_tol: float | None = None, device: str | None = None
    ) -> None:
        self.k1 = k1
        self.k2 = k2
        self.duplicate_tol = duplicate_tol
        self.device = device

    def check_params(self) -> None:
        super().check_params()
        check_int(self.k2, "k2", minimum=check_int(self.k1, "k1", minimum=2))

    def fit(self, X: Array, y: None = None) -> MLE:
        """Estimate the intrinsic dimension of ``X``, shape (n_points, n_features)."""
        self.check_params()
        _, nb, _ = self._neighbors(X, self.k2, min_points=self.k2 + 1)
        self.dimension_, self.dimension_err_ = mle_from_distances(nb.distances, self.k1, self.k2)
        self.estimate_ = Estimate(self.name, self.dimension_, self.dimension_err_, None, len(nb.distances))
        return self


def mle(X: Array, **params: object) -> Estimate:
    """MLE on ``X`` in one call: ``MLE(**params).fit(X).estimate_``."""
    return MLE(**params).fit(X).estimate_
