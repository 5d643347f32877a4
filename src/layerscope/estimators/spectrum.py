"""Estimators read off the covariance spectrum: PC-ID, participation ratio, power law."""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from ._base import Estimate, SpectralEstimator
from ._fits import weighted_line
from ._validation import Array, check_fraction, check_int
from .covariance import ResampledSpectra, bootstrap_spectra, check_spectrum, covariance_spectrum, half_spectra

__all__ = [
    "PCAID",
    "ParticipationRatio",
    "PowerLaw",
    "bootstrap_spectra",
    "covariance_spectrum",
    "half_spectra",
    "participation_ratio",
    "pc_id",
    "power_law",
]


class PCAID(SpectralEstimator):
    """PC-ID: the number of principal components that explain a fraction of the variance.

    Ansuini et al.'s code returns the 0-based index of that component (one less than
    the count); this returns the count.

    Parameters
    ----------
    variance : float, default 0.9
        Fraction of the total variance to explain, in (0, 1).
    standardize : bool, default True
        Standardise each feature first, as Ansuini et al. do; constant features are
        dropped (counted in ``n_constant_features_``).
    error : {"halves", "bootstrap", "none"}, default "halves"
        ``"halves"``: the standard error from ``n_resamples`` random half-splits of
        the points, each half's spectrum computed as a whole sample's
        (:mod:`~layerscope.estimators.resampling`). ``"bootstrap"``: the spread over
        ``n_resamples`` bootstrap resamples (each spectrum from the row counts;
        standardised, if at all, with the whole sample's deviations), kept for
        comparison: docs/benchmarks.md has both against independent samples (for
        PC-ID the bootstrap over-states the error 3.6-5x).
    n_resamples : int, default 20
    random_state : int, default 0
        Seed of the resamples (drawn over the rows, so every fit on as many rows
        uses the same ones).

    Attributes
    ----------
    dimension_ : int
    crossing_ : float
        The unrounded count: where the cumulative share of variance, taken as
        linear between components, reaches ``variance`` (``dimension_ - 1 <
        crossing_ <= dimension_``).
    dimension_err_ : float or None
        Standard error of the count: the standard deviation of ``ceil(c)`` for
        ``c`` normal about ``crossing_`` with the resamples' standard error of the
        unrounded count. (An integer's own spread over resamples at another sample
        size depends on where its threshold falls between integers there, and so
        does not carry over; the unrounded count's does.) None for ``error="none"``.
    replicates_ : numpy.ndarray or None
    explained_variance_ratio_ : numpy.ndarray
    n_constant_features_ : int
    estimate_ : Estimate
    """

    name = "pc_id"
    meaning = "principal components for 90% of the variance (a count)"
    error_meaning = "standard error from 20 random half-splits of the points"

    def __init__(
        self,
        variance: float = 0.9,
        standardize: bool = True,
        error: str = "halves",
        n_resamples: int = 20,
        random_state: int = 0,
    ) -> None:
        self.variance = variance
        self.standardize = standardize
        self.error = error
        self.n_resamples = n_resamples
        self.random_state = random_state

    @property
    def standardized(self) -> bool:
        return bool(self.standardize)

    def check_params(self) -> None:
        super().check_params()
        check_fraction(self.variance, "variance")
        if not isinstance(self.standardize, bool):
            raise ValueError(f"standardize must be True or False, got {self.standardize!r}")

    def fit_spectrum(self, eigenvalues: Array, n_points: int = 0, resampled: ResampledSpectra | None = None) -> PCAID:
        """Count components from given covariance eigenvalues (of standardised data if
        ``standardize``), the error from ``resampled`` spectra; ``n_points`` is recorded
        in ``estimate_``."""
        self.check_params()
        variance = float(self.variance)
        eig = check_spectrum(eigenvalues)
        self.explained_variance_ratio_ = eig / eig.sum()
        cumulative = np.cumsum(self.explained_variance_ratio_)
        # the tolerance keeps round-off from adding a component at an exact threshold
        self.dimension_ = int(np.searchsorted(cumulative, variance - 1e-12) + 1)
        # the unrounded count: where the cumulative share, linear between components, reaches the threshold
        below = cumulative[self.dimension_ - 2] if self.dimension_ > 1 else 0.0
        step = cumulative[self.dimension_ - 1] - below
        self.crossing_ = float(
            self.dimension_ - 1 + (min(max((variance - below) / step, 0.0), 1.0) if step > 0 else 1.0)
        )
        crossing_err, replicates = self._resampled_error(resampled)
        self.dimension_err_, self.replicates_ = crossing_err, replicates
        if crossing_err is not None and crossing_err > 0:
            self.dimension_err_ = _rounded_spread(self.crossing_, crossing_err)
            self.replicates_ = replicates * (self.dimension_err_ / crossing_err)
        self.estimate_ = Estimate(
            self.name, float(self.dimension_), self.dimension_err_, None, n_points, self.replicates_
        )
        return self

    def _resampled_value(self) -> float:
        return self.crossing_


class ParticipationRatio(SpectralEstimator):
    """Participation ratio ``(sum lambda)^2 / sum lambda^2`` of the covariance eigenvalues.

    Parameters
    ----------
    error : {"halves", "bootstrap", "none"}, default "halves"
        ``"halves"``: the standard error from ``n_resamples`` random half-splits of
        the points, each half's spectrum computed as a whole sample's
        (:mod:`~layerscope.estimators.resampling`). ``"bootstrap"``: the spread over
        ``n_resamples`` bootstrap resamples (each spectrum from the row counts;
        standardised, if at all, with the whole sample's deviations), kept for
        comparison: docs/benchmarks.md has both against independent samples (for
        PC-ID the bootstrap over-states the error 3.6-5x).
    n_resamples : int, default 20
    random_state : int, default 0
        Seed of the resamples (drawn over the rows, so every fit on as many rows
        uses the same ones).

    Attributes
    ----------
    dimension_ : float
    dimension_err_ : float or None
        Standard error of the ratio (None for ``error="none"``).
    replicates_ : numpy.ndarray or None
    estimate_ : Estimate
    """

    name = "participation_ratio"
    meaning = "participation ratio of the covariance spectrum, (sum lambda)^2 / sum lambda^2"
    error_meaning = "standard error from 20 random half-splits of the points"

    def __init__(self, error: str = "halves", n_resamples: int = 20, random_state: int = 0) -> None:
        self.error = error
        self.n_resamples = n_resamples
        self.random_state = random_state

    def fit_spectrum(
        self, eigenvalues: Array, n_points: int = 0, resampled: ResampledSpectra | None = None
    ) -> ParticipationRatio:
        """The ratio of given covariance eigenvalues, the error from ``resampled`` spectra;
        ``n_points`` is recorded in ``estimate_``."""
        self.check_params()
        eig = check_spectrum(eigenvalues)
        self.dimension_ = float(eig.sum() ** 2 / np.dot(eig, eig))
        self.dimension_err_, self.replicates_ = self._resampled_error(resampled)
        self.estimate_ = Estimate(self.name, self.dimension_, self.dimension_err_, None, n_points, self.replicates_)
        return self


class PowerLaw(SpectralEstimator):
    """Exponent alpha of a power-law covariance spectrum, ``lambda_n ~ n^-alpha``.

    The slope of ``log lambda_n`` against ``-log n`` for n in ``[n_min, n_max]``, by
    least squares with weights ``1/n`` (Stringer et al. 2019 fit n = 10..500).

    Parameters
    ----------
    n_min, n_max : int, default 10, 500
        Range of eigenvalue ranks (1-based) in the fit. ``n_max`` is lowered to the
        number of non-zero eigenvalues when there are fewer; ``fit_range_`` says
        which range was used. At least 3 ranks must remain (the geometry probe
        does not fit layers of fewer than ``n_min + 2`` features, such as the 10
        logits of a classifier).
    error : {"halves", "bootstrap", "slope", "none"}, default "halves"
        As for :class:`ParticipationRatio`; ``"slope"``: the least-squares standard
        error of the slope, which treats the eigenvalues as independent (they are
        not): 0.78-1.61 of the spread over independent samples (docs/benchmarks.md).
    n_resamples : int, default 20
    random_state : int, default 0

    Attributes
    ----------
    alpha_ : float
    alpha_err_ : float or None
        Its standard error (None for ``error="none"``).
    replicates_ : numpy.ndarray or None
    fit_quality_ : float
        Weighted R^2 of the fit in log-log.
    intercept_ : float
        ``log lambda`` at n = 1 on the fitted line.
    spectrum_ : numpy.ndarray
        All eigenvalues, descending (for plotting).
    fit_range_ : tuple of int
        ``(n_min, n_max)`` actually used.
    estimate_ : Estimate
    """

    name = "alpha"
    meaning = "power-law exponent of the covariance spectrum, lambda_n ~ n^-alpha"
    error_meaning = "standard error from 20 random half-splits of the points"
    error_methods = ("halves", "bootstrap", "slope", "none")
    is_dimension = False

    def __init__(
        self, n_min: int = 10, n_max: int = 500, error: str = "halves", n_resamples: int = 20, random_state: int = 0
    ) -> None:
        self.n_min = n_min
        self.n_max = n_max
        self.error = error
        self.n_resamples = n_resamples
        self.random_state = random_state

    def check_params(self) -> None:
        super().check_params()
        check_int(self.n_max, "n_max", minimum=check_int(self.n_min, "n_min", minimum=1) + 2)

    @property
    def min_ranks(self) -> int:
        return int(self.n_min) + 2

    def fit_spectrum(
        self, eigenvalues: Array, n_points: int = 0, resampled: ResampledSpectra | None = None
    ) -> PowerLaw:
        """Fit a given spectrum.

        Parameters
        ----------
        eigenvalues : array-like of shape (n,)
            Non-negative, sorted descending.
        n_points : int
            Recorded in ``estimate_`` (0 when unknown).
        resampled : ResampledSpectra, optional
            The resamples' spectra, for ``error="halves"`` or ``"bootstrap"``.
        """
        self.check_params()
        n_min, n_max = int(self.n_min), int(self.n_max)
        eig = check_spectrum(eigenvalues)
        self.spectrum_ = eig
        positive = int(np.sum(eig > eig[0] * len(eig) * np.finfo(np.float64).eps))
        top = min(n_max, positive)
        if top - n_min + 1 < 3:
            raise ValueError(
                f"the spectrum has {positive} non-zero eigenvalues, too few for a fit over ranks "
                f"{n_min}..{n_max} (need 3); lower n_min or use more points and features"
            )
        ranks = np.arange(n_min, top + 1)
        slope, err, intercept, r2 = weighted_line(-np.log(ranks), np.log(eig[ranks - 1]), 1.0 / ranks)
        self.alpha_, self.intercept_, self.fit_quality_ = slope, intercept, r2
        self.fit_range_ = (n_min, top)
        if self.error == "slope":
            self.alpha_err_, self.replicates_ = err, None
        else:
            self.alpha_err_, self.replicates_ = self._resampled_error(resampled)
        self.estimate_ = Estimate(self.name, slope, self.alpha_err_, r2, n_points, self.replicates_)
        return self


def _rounded_spread(centre: float, sd: float) -> float:
    """Standard deviation of ``ceil(c)`` for ``c ~ Normal(centre, sd)``, summed over the integers within 8 sd."""
    ks = np.arange(np.floor(centre - 8 * sd) - 1, np.ceil(centre + 8 * sd) + 2)
    p = norm.cdf((ks - centre) / sd) - norm.cdf((ks - 1 - centre) / sd)  # P(ceil c = k)
    mean = float(p @ ks)
    return float(np.sqrt(max(float(p @ (ks - mean) ** 2), 0.0)))


def pc_id(X: Array, **params: object) -> Estimate:
    """PC-ID in one call: ``PCAID(**params).fit(X).estimate_``."""
    return PCAID(**params).fit(X).estimate_


def participation_ratio(X: Array, **params: object) -> Estimate:
    """Participation ratio in one call: ``ParticipationRatio(**params).fit(X).estimate_``."""
    return ParticipationRatio(**params).fit(X).estimate_


def power_law(X: Array, **params: object) -> Estimate:
    """Power-law exponent in one call: ``PowerLaw(**params).fit(X).estimate_``."""
    return PowerLaw(**params).fit(X).estimate_
