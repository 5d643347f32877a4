"""Small closed-form fits shared by the estimators."""

from __future__ import annotations

import numpy as np


def line_through_origin(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope of ``y = s x`` and the Pearson correlation of x and y (x not constant)."""
    slope = float(np.dot(x, y) / np.dot(x, x))
    r = float(np.corrcoef(x, y)[0, 1])
    return slope, r


def weighted_line(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float, float, float]:
    """Weighted least squares ``y = a + b x`` (needs at least 3 points).

    Returns
    -------
    slope, slope standard error, intercept, weighted R^2
    """
    w = w / w.sum()
    xm, ym = np.dot(w, x), np.dot(w, y)
    sxx = np.dot(w, (x - xm) ** 2)
    sxy = np.dot(w, (x - xm) * (y - ym))
    slope = sxy / sxx
    intercept = ym - slope * xm
    resid = y - intercept - slope * x
    ss_res = np.dot(w, resid**2)
    ss_tot = np.dot(w, (y - ym) ** 2)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    # weights as relative precisions, the residual variance estimated from the fit
    slope_err = np.sqrt(ss_res / (sxx * (len(x) - 2)))
    return float(slope), float(slope_err), float(intercept), float(r2)
