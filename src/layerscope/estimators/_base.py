"""What every estimator shares: the result record and the fit contract."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ._validation import Array


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


class Estimator:
    """Base of layerscope's estimators (scikit-learn's contract).

    Configure in ``__init__``, call :meth:`fit` on an array of shape
    (n_points, n_features); results land in attributes ending in ``_`` and, as one
    record, in :attr:`estimate_`.
    """

    name: ClassVar[str]
    estimate_: Estimate

    def fit(self, X: Array, y: None = None) -> Estimator:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.endswith("_"))
        return f"{type(self).__name__}({params})"
