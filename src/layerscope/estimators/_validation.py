"""Input checks shared by every estimator: done once, at the boundary."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import scipy.sparse
import torch

Array = Any  # numpy array, torch tensor, or anything np.asarray takes


def check_points(X: Array, *, min_points: int, what: str = "X") -> np.ndarray | torch.Tensor:
    """Validate a point cloud and return it as a 2-D float array or tensor.

    Parameters
    ----------
    X : array-like or torch.Tensor of shape (n_points, n_features)
        One row per point. Torch tensors stay tensors (and on their device), so that
        the neighbour search can run where the data already lives.
    min_points : int
        The fewest points the calling method can work with.
    what : str
        Name of the argument, used in error messages.

    Returns
    -------
    numpy.ndarray or torch.Tensor of shape (n_points, n_features)
        Floating point; integer and boolean inputs are converted to float64, half
        precision (float16, bfloat16) to float32.

    Raises
    ------
    ValueError
        If the array is not 2-D, is empty, is complex, holds NaN or inf, has fewer
        than `min_points` rows, or all its rows are identical.
    """
    if scipy.sparse.issparse(X):
        raise TypeError(
            f"{what} is a sparse matrix; sparse input is not supported (distances and spectra need dense rows): pass "
            f"{what}.toarray()"
        )
    if isinstance(X, torch.Tensor):
        X = X.detach()
        if X.is_complex():
            raise ValueError(
                f"{what} is complex ({X.dtype}): Complex data not supported; pass X.real, X.abs() or both as features"
            )
        if not X.is_floating_point():
            X = X.to(torch.float64)
        elif X.dtype in (torch.float16, torch.bfloat16):
            X = X.to(torch.float32)  # half precision has too few digits (and kernels) for distances and spectra
    else:
        try:
            X = np.asarray(X)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{what} could not be read as a numeric array: {err}") from None
        if X.dtype == object:  # numbers held as objects convert; anything else is an error
            try:
                X = X.astype(np.float64)
            except (TypeError, ValueError) as err:
                raise TypeError(f"{what} must be numeric: {err}") from None
        if np.issubdtype(X.dtype, np.complexfloating):
            raise ValueError(
                f"{what} is complex ({X.dtype}): Complex data not supported; pass X.real, np.abs(X) or both as features"
            )
        if not np.issubdtype(X.dtype, np.number) and X.dtype != bool:
            raise ValueError(f"{what} must be numeric, got dtype {X.dtype}")
        if not np.issubdtype(X.dtype, np.floating):
            X = X.astype(np.float64)
        elif X.dtype == np.float16:
            X = X.astype(np.float32)  # half precision has too few digits (and kernels) for distances and spectra
    if X.ndim != 2:
        raise ValueError(
            f"{what} must be a 2-D array of shape (n_points, n_features), got shape "
            f"{tuple(X.shape)}" + (" (reshape a single feature with X.reshape(-1, 1))" if X.ndim == 1 else "")
        )
    n, d = X.shape
    if n == 0 or d == 0:
        raise ValueError(f"{what} is empty: {d} feature(s) (shape={tuple(X.shape)}) while a minimum of 1 is required.")
    # Row sums are finite unless a row holds NaN or inf (or overflows): an O(n) test
    # first, the element-wise one only for the rows it flags.
    # (numpy's row sums take twice torch's time on the same memory: 37 ms against 18 ms at 10,000 x 10,000)
    row_sums = X.sum(1) if isinstance(X, torch.Tensor) or not X.dtype.isnative else as_tensor(X).sum(1).numpy()
    suspect = ~(torch.isfinite(row_sums) if isinstance(X, torch.Tensor) else np.isfinite(row_sums))
    if bool(suspect.any()):
        rows = suspect.nonzero().flatten() if isinstance(X, torch.Tensor) else np.flatnonzero(suspect)
        sub = X[rows]
        finite = torch.isfinite(sub) if isinstance(X, torch.Tensor) else np.isfinite(sub)
        bad = ~finite.all(1)
        if bool(bad.any()):
            bad_rows = rows[bad]
            kind = "NaN" if bool((sub != sub).any()) else "inf"
            raise ValueError(
                f"{what} contains {kind} values in {len(bad_rows)} of {n} rows "
                f"(first at row {int(bad_rows[0])}); remove or impute them first"
            )
    if n < min_points:
        raise ValueError(f"{what} has {n} points (n_samples = {n}); this method needs at least {min_points}")
    # Identical rows have bit-identical sums (same values, same order): only when every row sum is
    # the same are the columns compared (two more passes over the data, skipped in any real case).
    if bool((row_sums == row_sums[0]).all()) and bool(
        (X.max(0)[0] == X.min(0)[0]).all() if isinstance(X, torch.Tensor) else (X.max(0) == X.min(0)).all()
    ):
        raise ValueError(f"all {n} points of {what} are identical: the dimension is undefined")
    return X


def check_fraction(value: float, name: str, *, closed_low: bool = False) -> float:
    """Check that ``value`` lies in (0, 1) (or [0, 1) with ``closed_low``)."""
    low_ok = value >= 0 if closed_low else value > 0
    if not (isinstance(value, (int, float)) and low_ok and value < 1):
        interval = "[0, 1)" if closed_low else "(0, 1)"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    return float(value)


def check_int(value: int, name: str, *, minimum: int) -> int:
    """Check that ``value`` is an integer no smaller than ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def as_tensor(X: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A tensor view of a checked array, without a copy.

    Read-only numpy arrays (memory-mapped files, pandas' values) are fine here:
    layerscope never writes to its input, so torch's warning about them is muted.
    """
    if isinstance(X, torch.Tensor):
        return X
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.as_tensor(X)


def unit_factor(t: torch.Tensor) -> float:
    """A power of two ``f`` with ``max|f t|`` in [0.5, 1).

    The estimators are scale-invariant, but float32 arithmetic is not: squared
    norms overflow above about 1e19 and underflow below about 1e-19. Multiplying
    by a power of two is exact (no digit is lost), so data can be brought to unit
    scale before any float32 arithmetic and the results scaled back.
    """
    low, high = torch.aminmax(t)  # one pass, no |t| temporary
    peak = max(float(high), -float(low))
    if peak == 0:
        return 1.0
    return math.ldexp(1.0, -math.frexp(peak)[1])


def default_duplicate_tol(dtype: torch.dtype | np.dtype) -> float:
    """Distance (relative to the data's scale) below which two points of this precision count as copies.

    A float32 activation carries about 7 digits: points that differ by a few units
    in the last place of the data's scale are the same point measured twice, not a
    neighbour. 64 machine epsilons, and at least 1e-9 (no measurement resolves
    finer): 7.6e-6 for float32, 1e-9 for float64.
    """
    eps = torch.finfo(dtype).eps if isinstance(dtype, torch.dtype) else float(np.finfo(dtype).eps)
    return max(64 * eps, 1e-9)


def check_device(device: str | torch.device | None) -> torch.device | None:
    """``device`` as a torch.device, if this machine has it; a clear error if not."""
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device {device!r} is not a device torch knows ({err})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {str(device)!r} asked for, but this torch has no usable CUDA (torch.cuda.is_available() is "
                "False); use 'cpu'"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {str(device)!r} asked for, but this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(device)!r} asked for, but MPS is not available here; use 'cpu'")
    return dev
