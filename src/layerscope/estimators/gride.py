"""GRIDE: TwoNN generalised to farther neighbours, for the ID across scales (Denti et al. 2022).

For each point, ``mu = r_{n2} / r_{n1}`` (distances to its n2-th and n1-th
neighbours) has, in d dimensions and a locally uniform density, the density

    f(mu) = d (mu^d - 1)^(n2 - n1 - 1) / (B(n2 - n1, n1) mu^((n2 - 1) d + 1)),

and d is found by maximum likelihood. Doubling n1 and n2 (1-2, 2-4, 4-8, ...)
probes larger neighbourhoods: the ID as a function of scale, with no need to
decimate the data as TwoNN's scale analysis does.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import brentq

from ._base import Estimate, NeighborEstimator
from ._validation import Array, as_tensor, check_int, check_points
from .neighbors import _neighbors_without_duplicates


def gride_from_ratios(mu: np.ndarray, n1: int, n2: int) -> tuple[float, float]:
    """Maximum-likelihood dimension and its standard error from ratios ``r_n2 / r_n1 > 1``.

    The log-likelihood is concave in d, so the root of its derivative is unique; it
    is found by bracketing. The error is ``1 / sqrt(-l''(d))`` (observed Fisher
    information), with ``l''`` in closed form.
    """
    log_mu = np.log(mu)
    n = len(log_mu)
    extra = n2 - n1 - 1
    sum_log = log_mu.sum()

    def score(d: float) -> float:
        # d/dd log f = 1/d + extra * log mu / (1 - mu^-d) - (n2 - 1) log mu
        return n / d + extra * np.sum(log_mu / -np.expm1(-d * log_mu)) - (n2 - 1) * sum_log

    low, high = 1e-6, 1.0
    while score(high) > 0:
        high *= 2
        if high > 1e6:
            raise ValueError("GRIDE likelihood has no maximum below d = 1e6: the ratios are too close to 1")
    d = brentq(score, low, high, xtol=1e-12, rtol=1e-12)
    q = np.exp(-d * log_mu)  # mu^-d
    info = n / d**2 + extra * np.sum(log_mu**2 * q / (1 - q) ** 2)
    return float(d), float(1 / np.sqrt(info))


def _ratios(distances: np.ndarray, n1: int, n2: int) -> np.ndarray:
    mu = distances[:, n2 - 1] / distances[:, n1 - 1]
    return mu[mu > 1]  # mu = 1 (tied distances) has zero likelihood when n2 > n1 + 1


class GRIDE(NeighborEstimator):
    """Intrinsic dimension by GRIDE at one scale.

    Parameters
    ----------
    n1, n2 : int, default 1, 2
        Neighbour ranks, ``1 <= n1 < n2``. (1, 2) is the TwoNN likelihood.
    error : {"halves", "fisher", "none"}, default "halves"
        ``"halves"``: the standard error from ``n_resamples`` random half-splits
        (:mod:`~layerscope.estimators.resampling`). ``"fisher"``: from the observed
        Fisher information, which treats the points' ratios as independent (they
        are not: neighbours share points) and understates the error by up to 18%
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
    scale_ : float
        Mean distance to the n2-th neighbour: the length scale probed.
    n_duplicates_ : int
    estimate_ : Estimate

    See Also
    --------
    gride_scale : the estimate at doubling ranks, from one neighbour search.
    """

    name = "gride"
    meaning = "GRIDE intrinsic dimension at neighbour ranks (n1, n2) (Denti et al.)"
    error_meaning = "standard error from 20 random half-splits of the points (NaN below 20 points)"
    error_methods = ("halves", "fisher", "none")

    def __init__(
        self,
        n1: int = 1,
        n2: int = 2,
        error: str = "halves",
        n_resamples: int = 20,
        duplicate_tol: float | None = None,
        device: str | None = None,
        random_state: int = 0,
    ) -> None:
        self.n1 = n1
        self.n2 = n2
        self.error = error
        self.n_resamples = n_resamples
        self.duplicate_tol = duplicate_tol
        self.device = device
        self.random_state = random_state

    def check_params(self) -> None:
        super().check_params()
        check_int(self.n2, "n2", minimum=check_int(self.n1, "n1", minimum=1) + 1)

    def fit(self, X: Array, y: None = None) -> GRIDE:
        """Estimate the intrinsic dimension of ``X``, shape (n_points, n_features)."""
        self.check_params()
        n1, n2 = self.n1, self.n2
        points, nb, kept = self._neighbors(X, n2, min_points=n2 + 1)
        self.dimension_, fisher = gride_from_ratios(_ratios(nb.distances, n1, n2), n1, n2)
        self.replicates_ = None
        if self.error == "halves":
            self.dimension_err_, self.replicates_ = self._half_split_error(
                points, nb, kept, n2, lambda d: gride_from_ratios(_ratios(d, n1, n2), n1, n2)[0]
            )
        else:
            self.dimension_err_ = fisher if self.error == "fisher" else None
        self.scale_ = float(nb.distances[:, n2 - 1].mean())
        self.estimate_ = Estimate(
            self.name, self.dimension_, self.dimension_err_, None, len(nb.distances), self.replicates_
        )
        return self


def gride(X: Array, **params: object) -> Estimate:
    """GRIDE in one call: ``GRIDE(**params).fit(X).estimate_``."""
    return GRIDE(**params).fit(X).estimate_


def gride_scale(
    X: Array, max_rank: int = 64, *, duplicate_tol: float | None = None, device: str | None = None
) -> pd.DataFrame:
    """GRIDE at ranks (1, 2), (2, 4), ... up to ``n2 = max_rank``: the ID across scales.

    One neighbour search of ``max_rank`` neighbours serves every scale.

    Returns
    -------
    pandas.DataFrame
        One row per scale, with columns ``n1``, ``n2``, ``scale`` (mean distance to
        the n2-th neighbour, in the data's units), ``dimension``, ``error``.
    """
    max_rank = check_int(max_rank, "max_rank", minimum=2)
    X = check_points(X, min_points=max_rank + 1)
    nb, _, _ = _neighbors_without_duplicates(as_tensor(X), max_rank, duplicate_tol=duplicate_tol, device=device)
    rows = []
    n1 = 1
    while 2 * n1 <= max_rank:
        dim, err = gride_from_ratios(_ratios(nb.distances, n1, 2 * n1), n1, 2 * n1)
        rows.append(
            {"n1": n1, "n2": 2 * n1, "scale": float(nb.distances[:, 2 * n1 - 1].mean()), "dimension": dim, "error": err}
        )
        n1 *= 2
    return pd.DataFrame(rows)
