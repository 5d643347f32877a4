"""Estimators read off the covariance spectrum: PC-ID, participation ratio, power law."""

from __future__ import annotations

import numpy as np

from ._base import Estimate, SpectralEstimator
from ._fits import weighted_line
from ._validation import Array, check_fraction, check_int
from .covariance import bootstrap_spectra, check_spectrum, covariance_spectrum

__all__ = [
    "PCAID",
    "ParticipationRatio",
    "PowerLaw",
    "bootstrap_spectra",
    "covariance_spectrum",
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

    n_bootstrap : int, default 10
        Bootstrap resamples of the points for the error bar (0: none). Each
        resample's spectrum comes from the counts, without copying rows
        (:func:`bootstrap_spectra`).
    random_state : int, default 0
        Seed of the resamples.

    Attributes
    ----------
    dimension_ : int
    dimension_err_ : float or None
        Standard deviation of the count over the resamples.
    explained_variance_ratio_ : numpy.ndarray
    n_constant_features_ : int
    estimate_ : Estimate
    """

    name = "pc_id"
    meaning = "principal components for 90% of the variance (a count)"
    error_meaning = "std over 10 bootstrap resamples of the points (standardised with the whole sample's deviations)"

    def __init__(
        self, variance: float = 0.9, standardize: bool = True, n_bootstrap: int = 10, random_state: int = 0
    ) -> None:
        self.variance = variance
        self.standardize = standardize
        self.n_bootstrap = n_bootstrap
        self.random_state = random_state

    @property
    def resampling(self) -> tuple[int, int]:
        return self.n_bootstrap, self.random_state

    @property
    def standardized(self) -> bool:
        return bool(self.standardize)

    def check_params(self) -> None:
        check_fraction(self.variance, "variance")
        if not isinstance(self.standardize, bool):
            raise ValueError(f"standardize must be True or False, got {self.standardize!r}")
        _check_bootstrap(self)

    def fit_spectrum(self, eigenvalues: Array, n_points: int = 0, resampled: list[np.ndarray] | None = None) -> PCAID:
        """Count components from given covariance eigenvalues (of standardised data if
        ``standardize``), with the spread over ``resampled`` spectra as the error;
        ``n_points`` is recorded in ``estimate_``."""
        self.check_params()
        variance = float(self.variance)
        eig = check_spectrum(eigenvalues)
        self.explained_variance_ratio_ = eig / eig.sum()
        cumulative = np.cumsum(self.explained_variance_ratio_)
        # the tolerance keeps round-off from adding a component at an exact threshold
        self.dimension_ = int(np.searchsorted(cumulative, variance - 1e-12) + 1)
        self.dimension_err_ = self._bootstrap_error(resampled)
        self.estimate_ = Estimate(self.name, float(self.dimension_), self.dimension_err_, None, n_points)
        return self


class ParticipationRatio(SpectralEstimator):
    """Participation ratio ``(sum lambda)^2 / sum lambda^2`` of the covariance eigenvalues.

    Parameters
    ----------
    n_bootstrap : int, default 10
        Bootstrap resamples of the points for the error bar (0: none).
    random_state : int, default 0
        Seed of the resamples.

    Attributes
    ----------
    dimension_ : float
    dimension_err_ : float or None
        Standard deviation of the ratio over the resamples.
    estimate_ : Estimate
    """

    name = "participation_ratio"
    meaning = "participation ratio of the covariance spectrum, (sum lambda)^2 / sum lambda^2"
    error_meaning = "std over 10 bootstrap resamples of the points"

    def __init__(self, n_bootstrap: int = 10, random_state: int = 0) -> None:
        self.n_bootstrap = n_bootstrap
        self.random_state = random_state

    @property
    def resampling(self) -> tuple[int, int]:
        return self.n_bootstrap, self.random_state

    def check_params(self) -> None:
        _check_bootstrap(self)

    def fit_spectrum(
        self, eigenvalues: Array, n_points: int = 0, resampled: list[np.ndarray] | None = None
    ) -> ParticipationRatio:
        """The ratio of given covariance eigenvalues, with the spread over ``resampled``
        spectra as the error; ``n_points`` is recorded in ``estimate_``."""
        self.check_params()
        eig = check_spectrum(eigenvalues)
        self.dimension_ = float(eig.sum() ** 2 / np.dot(eig, eig))
        self.dimension_err_ = self._bootstrap_error(resampled)
        self.estimate_ = Estimate(self.name, self.dimension_, self.dimension_err_, None, n_points)
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

    Attributes
    ----------
    alpha_ : float
    alpha_err_ : float
        Standard error of the slope.
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
    error_meaning = "standard error of the weighted log-log slope"
    is_dimension = False

    def __init__(self, n_min: int = 10, n_max: int = 500) -> None:
        self.n_min = n_min
        self.n_max = n_max

    def check_params(self) -> None:
        check_int(self.n_max, "n_max", minimum=check_int(self.n_min, "n_min", minimum=1) + 2)

    @property
    def min_ranks(self) -> int:
        return int(self.n_min) + 2

    def fit_spectrum(
        self, eigenvalues: Array, n_points: int = 0, resampled: list[np.ndarray] | None = None
    ) -> PowerLaw:
        """Fit a given spectrum.

        Parameters
        ----------
        eigenvalues : array-like of shape (n,)
            Non-negative, sorted descending.
        n_points : int
            Recorded in ``estimate_`` (0 when unknown).
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
        self.alpha_, self.alpha_err_, self.intercept_, self.fit_quality_ = slope, err, intercept, r2
        self.fit_range_ = (n_min, top)
        self.estimate_ = Estimate(self.name, slope, err, r2, n_points)
        return self


def _check_bootstrap(est: PCAID | ParticipationRatio) -> None:
    n = check_int(est.n_bootstrap, "n_bootstrap", minimum=0)
    if n == 1:
        raise ValueError("n_bootstrap must be 0 (no error bar) or at least 2")
    check_int(est.random_state, "random_state", minimum=0)


def pc_id(X: Array, **params: object) -> Estimate:
    """PC-ID in one call: ``PCAID(**params).fit(X).estimate_``."""
    return PCAID(**params).fit(X).estimate_


def participation_ratio(X: Array, **params: object) -> Estimate:
    """Participation ratio in one call: ``ParticipationRatio(**params).fit(X).estimate_``."""
    return ParticipationRatio(**params).fit(X).estimate_


def power_law(X: Array, **params: object) -> Estimate:
    """Power-law exponent in one call: ``PowerLaw(**params).fit(X).estimate_``."""
    return PowerLaw(**params).fit(X).estimate_
