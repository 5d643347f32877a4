"""Covariance spectra of point clouds, and of their resamples (half-splits, bootstrap): what the spectral estimators
read.

Apart from the estimators (:mod:`.spectrum`) so that their base class
(:class:`._base.SpectralEstimator`) and they import it alike, without a circle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ._validation import Array, as_tensor, check_int, check_points, unit_factor
from .resampling import half_splits

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


@dataclass(frozen=True)
class ResampledSpectra:
    """Spectra of resamples of one point cloud, for an error bar.

    Attributes
    ----------
    method : {"halves", "bootstrap"}
    spectra : list
        ``"halves"``: one ``(spectrum of half A, spectrum of half B)`` pair per
        split (:func:`half_spectra`); ``"bootstrap"``: one spectrum per resample
        (:func:`bootstrap_spectra`).
    """

    method: str
    spectra: list


def resampled_spectra(
    X: Array, method: str, n_resamples: int, seed: int, *, standardize: bool = False
) -> ResampledSpectra:
    """The resampled spectra an error of ``method`` ("halves" or "bootstrap") needs."""
    if method == "halves":
        return ResampledSpectra(method, half_spectra(X, standardize=standardize, n_splits=n_resamples, seed=seed))
    if method == "bootstrap":
        return ResampledSpectra(
            method, bootstrap_spectra(X, standardize=standardize, n_resamples=n_resamples, seed=seed)
        )
    raise ValueError(f"no resampled spectra for error={method!r}")


def half_spectra(
    X: Array, *, standardize: bool = False, n_splits: int = 20, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Covariance spectra of both halves of ``n_splits`` random half-splits of the rows (for error bars).

    The splits are :func:`~layerscope.estimators.resampling.half_splits` of the rows
    (the same for every array of as many rows and the same seed). Each half is an
    independent sample of its own: it is centred, and with ``standardize``
    standardised, by its own statistics, exactly as the estimator treats a whole
    sample.

    Both halves' matrices come from one product, not two (written here because no
    library forms sub-covariances): with fewer points than features, each half's
    Gram matrix is a block of the whole cloud's ``t t^T``, double-centred; with more,
    half B's scatter is the whole cloud's minus half A's, and each is re-centred by
    ``n m m^T`` and, with ``standardize``, rescaled by its own diagonal (a correlation
    matrix is the covariance divided by the standard deviations). Standardised halves
    with fewer points than features are computed directly (their Gram matrix depends
    on the half's own standard deviations).
    """
    X = check_points(X, min_points=4)
    labels = half_splits(X.shape[0], n_splits, seed)
    t, factor, _ = _prepared(X, False)
    n, d = t.shape
    halves = [[torch.from_numpy(np.flatnonzero(lab == h)).to(t.device) for h in (0, 1)] for lab in labels]
    if standardize and n // 2 <= d:
        return [tuple(covariance_spectrum(t[idx], standardize=True)[0] for idx in pair) for pair in halves]
    pairs = []
    if n // 2 <= d:  # Gram matrices of points: blocks of one product
        gram = _gram(t, True)
        for pair in halves:
            spectra = []
            for idx in pair:
                block = gram[idx][:, idx]
                row = block.mean(1)
                spectra.append(_eigenvalues(block - row[:, None] - row[None, :] + row.mean(), len(idx), factor))
            pairs.append(tuple(spectra))
        return pairs
    scatter = _gram(t, False)  # about the whole cloud's mean
    for a, b in halves:
        part = t[a]
        scatter_a = _gram(part, False)
        mean_a = part.mean(0)
        mean_b = -mean_a * (len(a) / len(b))  # the halves' sums add to the whole's, 0 after centring
        spectra = []
        for idx, s, m in ((a, scatter_a, mean_a), (b, scatter - scatter_a, mean_b)):
            c = s - len(idx) * torch.outer(m, m)
            scale = factor
            if standardize:
                rows = part if idx is a else t[b]
                constant = rows.amax(0) == rows.amin(0)
                std = torch.where(constant, 1.0, c.diagonal().clamp_min(0).sqrt() / np.sqrt(len(idx) - 1))
                c = c / std[:, None] / std[None, :]
                c[constant] = 0
                c[:, constant] = 0
                scale = 1.0
            spectra.append(_eigenvalues(c, len(idx), scale))
        pairs.append(tuple(spectra))
    return pairs


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


def check_spectrum(eigenvalues: Array) -> np.ndarray:
    eig = np.asarray(eigenvalues, dtype=np.float64)
    if eig.ndim != 1 or eig.size == 0 or not np.all(np.isfinite(eig)) or np.any(eig < 0) or np.any(np.diff(eig) > 0):
        raise ValueError("eigenvalues must be a 1-D array of finite, non-negative values, sorted descending")
    if eig[0] == 0:
        raise ValueError("all eigenvalues are 0: the data have no variance")
    return eig
