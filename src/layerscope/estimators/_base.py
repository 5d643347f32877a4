"""What every estimator shares: the result record, the fit contract, and the two families.

Estimators are scikit-learn estimators (:class:`sklearn.base.BaseEstimator`:
``get_params``, ``set_params``, ``clone``, ``repr``). Parameters are checked by
:meth:`Estimator.check_params` (at the start of ``fit``, and by layerscope's config
when it is loaded). Two families share their fit's opening:

- :class:`NeighborEstimator` (TwoNN, MLE, GRIDE): an exact neighbour search after
  dropping duplicates (``duplicate_tol``), on ``device``;
- :class:`SpectralEstimator` (PC-ID, participation ratio, power law): the
  covariance spectrum, then :meth:`~SpectralEstimator.fit_spectrum`, so that one
  eigendecomposition can serve all three.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator

from ._validation import Array, as_tensor, check_device, check_points
from .covariance import bootstrap_spectra, covariance_spectrum
from .neighbors import Neighbors, _neighbors_without_duplicates


@dataclass(frozen=True)
class Estimate:
    """One number that an estimator made of one point cloud.

    Attributes
    ----------
    estimator : str
        The estimator's name, as in :data:`layerscope.estimators.ESTIMATORS`; also
        the metric name in layerscope's results tables.
    value : float
        The estimate: an intrinsic dimension, or the power-law exponent for
        ``"alpha"``.
    error : float or None
        Its standard error, or None for estimators that give none (PC-ID and the
        participation ratio are deterministic functions of the sample spectrum).
    fit_quality : float or None
        Goodness of the underlying fit where there is one: Pearson r of the TwoNN
        regression, weighted R^2 of the power-law fit.
    n_points : int
        Points used, after duplicates were dropped.
    """

    estimator: str
    value: float
    error: float | None
    fit_quality: float | None
    n_points: int


class Estimator(BaseEstimator):
    """Base of layerscope's estimators (scikit-learn's contract).

    Configure in ``__init__``, call :meth:`fit` on an array of shape
    (n_points, n_features); results land in attributes ending in ``_`` and, as one
    record, in :attr:`estimate_`.

    Class attributes
    ----------------
    name : str
        The metric name.
    meaning, error_meaning : str
        What the number and its error are (for the results table's metric registry).
    is_dimension : bool
        Whether the number is an intrinsic dimension (all but the power-law exponent).
    """

    name: ClassVar[str]
    meaning: ClassVar[str]
    error_meaning: ClassVar[str] = "none"
    is_dimension: ClassVar[bool] = True
    estimate_: Estimate

    def check_params(self) -> None:
        """Raise a ValueError naming the first parameter out of its range (nothing to check here)."""

    def fit(self, X: Array, y: None = None) -> Estimator:  # pragma: no cover - abstract
        raise NotImplementedError


class NeighborEstimator(Estimator):
    """An estimator read off the nearest-neighbour distances (TwoNN, MLE, GRIDE).

    Subclasses hold ``duplicate_tol`` and ``device`` parameters and call
    :meth:`_neighbors` to open their fit.
    """

    duplicate_tol: float | None
    device: str | None

    def check_params(self) -> None:
        if self.duplicate_tol is not None and not (
            isinstance(self.duplicate_tol, (int, float)) and self.duplicate_tol >= 0
        ):
            raise ValueError(f"duplicate_tol must be None or a number >= 0, got {self.duplicate_tol!r}")
        check_device(self.device)

    def _neighbors(self, X: Array, k: int, *, min_points: int) -> tuple[torch.Tensor, Neighbors, np.ndarray]:
        """Checked points, their k nearest distinct neighbours and the kept rows; sets ``n_duplicates_``."""
        points = as_tensor(check_points(X, min_points=min_points))
        self.n_features_in_ = int(points.shape[1])
        nb, kept, self.n_duplicates_ = _neighbors_without_duplicates(
            points, k, duplicate_tol=self.duplicate_tol, device=self.device
        )
        return points, nb, kept


class SpectralEstimator(Estimator):
    """An estimator read off the covariance spectrum (PC-ID, participation ratio, power law)."""

    @property
    def standardized(self) -> bool:
        """Whether it reads the spectrum of the standardised features (a correlation spectrum)."""
        return False

    @property
    def resampling(self) -> tuple[int, int]:
        """``(resamples, seed)`` of the bootstrap that makes its error bar; 0 resamples: the error comes otherwise."""
        return 0, 0

    @property
    def min_ranks(self) -> int:
        """The fewest non-zero eigenvalues a fit can use: a layer with fewer features is outside its reach."""
        return 1

    def fit(self, X: Array, y: None = None) -> SpectralEstimator:
        """Fit the covariance spectrum of ``X``, shape (n_points, n_features), and its bootstrap resamples."""

        self.check_params()
        X = check_points(X, min_points=2)
        self.n_features_in_ = int(X.shape[1])
        eig, self.n_constant_features_ = covariance_spectrum(X, standardize=self.standardized)
        resamples, seed = self.resampling
        resampled = (
            bootstrap_spectra(X, standardize=self.standardized, n_resamples=resamples, seed=seed) if resamples else None
        )
        return self.fit_spectrum(eig, n_points=int(X.shape[0]), resampled=resampled)

    def fit_spectrum(
        self, eigenvalues: Array, n_points: int = 0, resampled: list[np.ndarray] | None = None
    ) -> SpectralEstimator:  # pragma: no cover - abstract
        raise NotImplementedError

    def _bootstrap_error(self, resampled: list[np.ndarray] | None) -> float | None:
        """The standard deviation of the estimate over resampled spectra (None without them)."""
        if not resampled:
            return None
        values = [
            type(self)(**self.get_params()).set_params(n_bootstrap=0).fit_spectrum(e).estimate_.value for e in resampled
        ]
        return float(np.std(values, ddof=1)) if len(values) > 1 else None
