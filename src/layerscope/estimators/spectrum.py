"""Estimators read off the covariance spectrum: PC-ID, participation ratio, power law."""

from __future__ import annotations

import math

import numpy as np
import torch

from ._base import Estimate, SpectralEstimator
from ._fits import weighted_line
from ._validation import Array, as_tensor, check_fraction, check_int, check_points, unit_factor

_ROUNDOFF = 16  # machine epsilons (of the largest eigenvalue) below which an eigenvalue is noise


def covariance_spectrum(X: Array, *, standardize: bool = False) -> tuple[np.ndarray, int]:
    """Eigenvalues of the sample covariance of ``X``, descending.

    Parameters
    ----------
    X : array-like of shape (n_points, n_features)
    standardize : bool
        Divide each feature by its standard deviation first (a correlation
        spectrum). Constant features carry no variance: they add only zero
        eigenvalues.

    Returns
    -------
    eigenvalues : numpy.ndarray of shape (min(n_points, n_features),), float64
        Eigenvalues below the arithmetic's round-off (16 machine epsilons of the
        largest: 1.9e-6 of it for float32 input, 3.6e-15 for float64) are set to
        0: they are noise (or slightly negative).
    n_constant : int
        Features with zero variance.

    Notes
    -----
    The spectrum is that of the smaller of the two Gram matrices, computed at the
    input's precision (float32 activations: float32, with full-precision products,
    about twice as fast; float64 input: float64). The data are brought to unit
    scale by a power of two first (exact), so the spectrum is the same at any
    scale float64 can represent.
    """
    t, factor, n_constant = _prepared(X, standardize)
    gram = _gram(t, t.shape[0] <= t.shape[1])
    return _eigenvalues(gram, t.shape[0], factor), n_constant


def bootstrap_spectra(X: Array, *, standardize: bool = False, n_resamples: int = 20, seed: int = 0) -> list[np.ndarray]:
    """Covariance spectra of ``n_resamples`` bootstrap resamples of the rows of ``X`` (for error bars).

    Each resample draws n rows with replacement; its covariance is computed from
    the row counts without copying rows: from the Gram matrix of the points when
    there are fewer points than features (``t t^T``, re-centred for the resample's
    mean), else from the count-weighted scatter matrix. With ``standardize``, the
    features keep the whole sample's standard deviations (the resamples vary the
    points, not the standardisation).
    """
    check_int(n_resamples, "n_resamples", minimum=1)
    t, factor, _ = _prepared(X, standardize)
    n, d = t.shape
    rng = np.random.default_rng(seed)
    by_points = n <= d
    base = _gram(t, by_points)  # n x n (points) or d x d (features)
    spectra = []
    for _ in range(n_resamples):
        c = torch.from_numpy(rng.multinomial(n, np.full(n, 1 / n)).astype(np.float64)).to(t.device, t.dtype)
        if by_points:
            u = base @ c / n
            g = base - u[:, None] - u[None, :] + (c @ u) / n
            root = c.sqrt()
            m = root[:, None] * g * root[None, :]
        else:
            mean = t.T @ c / n
            m = _gram(t * c.sqrt()[:, None], False) - n * torch.outer(mean, mean)
        spectra.append(_eigenvalues(m, n, factor))
    return spectra


def _prepared(X: Array, standardize: bool) -> tuple[torch.Tensor, float, int]:
    """The centred points at unit scale (standardised if asked), the scale factor applied, and the constant features."""
    X = check_points(X, min_points=2)
    t = as_tensor(X)
    n = t.shape[0]
    t = t - t.mean(0)
    # Unit scale by a power of two (exact, in place on the centred copy), so that no
    # float32 square over- or underflows; the eigenvalues are scaled back in float64.
    factor = unit_factor(t)
    t *= factor
    std = torch.linalg.vector_norm(t, dim=0) / np.sqrt(n - 1)
    constant = std == 0
    if standardize:
        # in place, no second copy: constant features are all 0 after centring and stay
        # 0, adding only zero eigenvalues
        t /= torch.where(constant, 1.0, std)
        factor = 1.0  # a correlation spectrum does not depend on the scale
    return t, factor, int(constant.sum())


def _gram(t: torch.Tensor, by_points: bool) -> torch.Tensor:
    """``t t^T`` (by points) or ``t^T t``, in full float32 precision."""
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        return t @ t.T if by_points else t.T @ t
    finally:
        torch.set_float32_matmul_precision(old)


def _eigenvalues(gram: torch.Tensor, n: int, factor: float) -> np.ndarray:
    """Covariance eigenvalues, descending, from a scatter or Gram matrix of n points scaled by ``factor``."""
    gram = (gram + gram.T) / 2  # exactly symmetric: round-off in the product leaves it slightly not
    eig = torch.linalg.eigvalsh(gram)
    if not bool(torch.isfinite(eig).all()):
        # LAPACK's multi-threaded float32 solver was seen to return NaN on a finite,
        # symmetric 1000 x 1000 Gram matrix (torch 2.13, 2 threads); float64 does not
        eig = torch.linalg.eigvalsh(gram.double())
    eig = eig.to(torch.float64).flip(0) / (n - 1)
    # Eigenvalues below the round-off of the arithmetic (about 1e-6 of the largest
    # in float32) are noise, whose value depends on the data's scale: they are 0.
    eig[eig < _ROUNDOFF * torch.finfo(gram.dtype).eps * eig[0]] = 0
    with np.errstate(over="ignore"):  # an overflow is reported below
        eig = np.ldexp(eig.cpu().numpy(), -2 * (math.frexp(factor)[1] - 1))  # / factor**2, exactly
    if not np.all(np.isfinite(eig)):
        raise ValueError("the data's variance exceeds float64's range (about 1e308); rescale the data")
    return eig


def _check_spectrum(eigenvalues: Array) -> np.ndarray:
    eig = np.asarray(eigenvalues, dtype=np.float64)
    if eig.ndim != 1 or eig.size == 0 or not np.all(np.isfinite(eig)) or np.any(eig < 0) or np.any(np.diff(eig) > 0):
        raise ValueError("eigenvalues must be a 1-D array of finite, non-negative values, sorted descending")
    if eig[0] == 0:
        raise ValueError("all eigenvalues are 0: the data have no variance")
    return eig


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

    def __init__(self, variance: float = 0.9, standardize: bool = True, n_bootstrap: int = 10, random_state: int = 0) -> None:
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
        eig = _check_spectrum(eigenvalues)
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

    def fit_spectrum(self, eigenvalues: Array, n_points: int = 0, resampled: list[np.ndarray] | None = None) -> ParticipationRatio:
        """The ratio of given covariance eigenvalues, with the spread over ``resampled``
        spectra as the error; ``n_points`` is recorded in ``estimate_``."""
        self.check_params()
        eig = _check_spectrum(eigenvalues)
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

    def fit_spectrum(self, eigenvalues: Array, n_points: int = 0, resampled: list[np.ndarray] | None = None) -> PowerLaw:
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
        eig = _check_spectrum(eigenvalues)
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
