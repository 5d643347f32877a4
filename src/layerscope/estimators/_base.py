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

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator

from ._validation import Array, as_tensor, check_device, check_int, check_points
from .covariance import ResampledSpectra, covariance_spectrum, resampled_spectra
from .neighbors import Neighbors, _neighbors_without_duplicates
from .resampling import (
    bootstrap_replicates,
    exact_longer_lists,
    half_estimates,
    half_splits,
    neighbors_for_halves,
    replicate_error,
    split_replicates,
)

#: Fewest distinct points for a resampled error bar: with fewer, the halves (or
#: subsets) are too small for their spread to mean anything (the error is NaN, with
#: a :class:`TooFewPointsWarning`).
MIN_POINTS_FOR_ERROR = 20


class TooFewPointsWarning(UserWarning):
    """Too few points for a meaningful error bar; the error is NaN."""


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
    replicates : tuple of float, or None
        The resampling replicates the error came from, ``error**2 ==
        mean(replicates**2)`` (:mod:`layerscope.estimators.resampling`); paired
        across fits with the same ``random_state`` on the same number of points,
        so that their products estimate the covariance of two estimates. None
        when the error has no replicates.
    """

    estimator: str
    value: float
    error: float | None
    fit_quality: float | None
    n_points: int
    replicates: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.replicates is not None:  # a tuple, so that estimates compare and hash as values
            object.__setattr__(self, "replicates", tuple(float(r) for r in self.replicates))


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

    Subclasses hold ``duplicate_tol``, ``device``, ``error``, ``n_resamples`` and
    ``random_state`` parameters, open their fit with :meth:`_neighbors` and make
    the default error with :meth:`_half_split_error` from a function of the
    within-half neighbour distances.

    Class attributes
    ----------------
    error_methods : tuple of str
        The accepted values of ``error``: ``"halves"`` (the standard error from
        random half-splits, :mod:`~layerscope.estimators.resampling`; the default),
        ``"none"``, and the estimator's own.
    """

    error_methods: ClassVar[tuple[str, ...]] = ("halves", "none")
    duplicate_tol: float | None
    device: str | None
    error: str
    n_resamples: int
    random_state: int

    def check_params(self) -> None:
        if self.duplicate_tol is not None and not (
            isinstance(self.duplicate_tol, (int, float)) and self.duplicate_tol >= 0
        ):
            raise ValueError(f"duplicate_tol must be None or a number >= 0, got {self.duplicate_tol!r}")
        check_device(self.device)
        if self.error not in self.error_methods:
            raise ValueError(f"error must be one of {', '.join(map(repr, self.error_methods))}, got {self.error!r}")
        if check_int(self.n_resamples, "n_resamples", minimum=0) < 2 and self.error not in ("none", "closed-form"):
            raise ValueError(f"n_resamples must be at least 2 for error={self.error!r}, got {self.n_resamples}")
        check_int(self.random_state, "random_state", minimum=0)

    def _neighbors(
        self, X: Array, k: int, *, min_points: int, fit_k: int | None = None
    ) -> tuple[torch.Tensor, Neighbors, np.ndarray]:
        """Checked points, their nearest distinct neighbours and the kept rows; sets ``n_duplicates_``.

        ``k`` neighbours are listed, more when the error comes from half-splits: enough
        that a half keeps ``fit_k`` (default k) of them (:func:`neighbors_for_halves`).
        """
        points = as_tensor(check_points(X, min_points=min_points))
        self.n_features_in_ = int(points.shape[1])
        self._n_rows = int(points.shape[0])
        exact = k  # the estimate's own neighbours: exact; the longer list of the halves: see _search
        if getattr(self, "error", "none") == "halves" and self._n_rows >= MIN_POINTS_FOR_ERROR:
            k = max(k, neighbors_for_halves(fit_k or k, self._n_rows))
        nb, kept, self.n_duplicates_ = _neighbors_without_duplicates(
            points, k, duplicate_tol=self.duplicate_tol, device=self.device, exact=exact
        )
        return points, nb, kept

    def _too_few_for_error(self, n_points: int) -> bool:
        """Whether ``n_points`` distinct points are too few for a resampled error bar (then warn)."""
        if n_points >= MIN_POINTS_FOR_ERROR:
            return False
        warnings.warn(
            f"{type(self).__name__} on {n_points} points: too few for an error bar (need {MIN_POINTS_FOR_ERROR}); "
            "the error is NaN and the estimate itself is unreliable",
            TooFewPointsWarning,
            stacklevel=4,
        )
        return True

    def _half_split_error(
        self, points: torch.Tensor, nb: Neighbors, kept: np.ndarray, k: int, fit: Callable[[np.ndarray], float]
    ) -> tuple[float, np.ndarray | None]:
        """Standard error and replicates from ``n_resamples`` half-splits of the input rows.

        ``fit`` maps the ascending distances of a half's points to their first k
        neighbours within the half, shape (n_half, k), to the estimate. Fewer than
        :data:`MIN_POINTS_FOR_ERROR` distinct points: NaN, with a
        :class:`TooFewPointsWarning`.
        """
        if self._too_few_for_error(len(kept)):
            return float("nan"), None
        labels = half_splits(self._n_rows, int(self.n_resamples), int(self.random_state))[:, kept]

        def longer(rows: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
            # the rare point short of neighbours in its half: an exact search among the kept points
            source = points if len(kept) == len(points) else points[torch.from_numpy(kept).to(points.device)]
            return exact_longer_lists(source, self.device, nb.scale)(rows, m)

        replicates = split_replicates(half_estimates(labels, nb.indices, nb.distances, k, fit, longer))
        return replicate_error(replicates), replicates


class SpectralEstimator(Estimator):
    """An estimator read off the covariance spectrum (PC-ID, participation ratio, power law).

    Subclasses hold ``error``, ``n_resamples`` and ``random_state`` parameters;
    ``error_methods`` lists the accepted ``error`` values: ``"halves"`` (the
    standard error from random half-splits, each half's spectrum computed as a
    whole sample's; the default), ``"bootstrap"`` (the spread over bootstrap
    resamples, kept for comparison: docs/benchmarks.md), ``"none"``, and the
    estimator's own.
    """

    error_methods: ClassVar[tuple[str, ...]] = ("halves", "bootstrap", "none")
    error: str
    n_resamples: int
    random_state: int

    @property
    def standardized(self) -> bool:
        """Whether it reads the spectrum of the standardised features (a correlation spectrum)."""
        return False

    @property
    def resampling(self) -> tuple[str, int, int] | None:
        """``(method, resamples, seed)`` of the resampled spectra its error needs; None if it needs none."""
        method = getattr(self, "error", "none")  # a spectral estimator of a user's may have no error parameter
        if method in ("halves", "bootstrap"):
            return method, int(self.n_resamples), int(self.random_state)
        return None

    @property
    def min_ranks(self) -> int:
        """The fewest non-zero eigenvalues a fit can use: a layer with fewer features is outside its reach."""
        return 1

    def check_params(self) -> None:
        if self.error not in self.error_methods:
            raise ValueError(f"error must be one of {', '.join(map(repr, self.error_methods))}, got {self.error!r}")
        if check_int(self.n_resamples, "n_resamples", minimum=0) < 2 and self.error in ("halves", "bootstrap"):
            raise ValueError(f"n_resamples must be at least 2 for error={self.error!r}, got {self.n_resamples}")
        check_int(self.random_state, "random_state", minimum=0)

    def fit(self, X: Array, y: None = None) -> SpectralEstimator:
        """Fit the covariance spectrum of ``X``, shape (n_points, n_features), and its resamples' if the error needs
        them."""

        self.check_params()
        how = self.resampling
        X = check_points(X, min_points=4 if how and how[0] == "halves" else 2)
        self.n_features_in_ = int(X.shape[1])
        eig, self.n_constant_features_ = covariance_spectrum(X, standardize=self.standardized)
        resampled = resampled_spectra(X, *how, standardize=self.standardized) if how else None
        return self.fit_spectrum(eig, n_points=int(X.shape[0]), resampled=resampled)

    def fit_spectrum(
        self, eigenvalues: Array, n_points: int = 0, resampled: ResampledSpectra | None = None
    ) -> SpectralEstimator:  # pragma: no cover - abstract
        raise NotImplementedError

    def _resampled_value(self) -> float:
        """The number whose spread over resamples is the error (the estimate; PC-ID: its unrounded count)."""
        return self.estimate_.value

    def _resampled_error(self, resampled: ResampledSpectra | None) -> tuple[float | None, np.ndarray | None]:
        """Standard error and replicates from resampled spectra (None, None without them)."""
        if resampled is None or not resampled.spectra:
            return None, None
        plain = type(self)(**self.get_params()).set_params(error="none")

        def value(e: np.ndarray) -> float:
            return plain.fit_spectrum(e)._resampled_value()

        if resampled.method == "halves":
            replicates = split_replicates([[value(a), value(b)] for a, b in resampled.spectra])
        else:
            replicates = bootstrap_replicates([value(e) for e in resampled.spectra])
        return replicate_error(replicates), replicates
