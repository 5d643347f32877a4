"""Estimators: a point cloud (an N x D array) in, geometry out.

They know nothing else of layerscope and work on any array or tensor. Each class
follows scikit-learn's contract (configure in ``__init__``, ``fit(X)`` returns self,
results in attributes ending in ``_``) and has a one-call function twin that
returns an :class:`Estimate`.

==========================  ==========================  ===========================
name                         class                       function
==========================  ==========================  ===========================
``twonn``                    :class:`TwoNN`              :func:`twonn`
``mle``                      :class:`MLE`                :func:`mle`
``gride``                    :class:`GRIDE`              :func:`gride`
``pc_id``                    :class:`PCAID`              :func:`pc_id`
``participation_ratio``      :class:`ParticipationRatio` :func:`participation_ratio`
``alpha``                    :class:`PowerLaw`           :func:`power_law`
==========================  ==========================  ===========================

Scale analyses: :func:`twonn_scale` (ID against sample size) and
:func:`gride_scale` (ID against neighbourhood size).

Every estimator's default error is a standard error from random half-splits of the
points (:mod:`layerscope.estimators.resampling` says why), with its replicates in
:attr:`Estimate.replicates`.
"""

from ._base import MIN_POINTS_FOR_ERROR, Estimate, Estimator, NeighborEstimator, SpectralEstimator, TooFewPointsWarning
from ._validation import check_device
from .covariance import ResampledSpectra, resampled_spectra
from .gride import GRIDE, gride, gride_scale
from .mle import MLE, mle
from .neighbors import DuplicatePointsWarning, Neighbors, nearest_neighbors
from .resampling import half_splits, replicate_error
from .spectrum import (
    PCAID,
    ParticipationRatio,
    PowerLaw,
    bootstrap_spectra,
    covariance_spectrum,
    half_spectra,
    participation_ratio,
    pc_id,
    power_law,
)
from .twonn import TwoNN, twonn, twonn_scale

#: Estimators by name (the metric names of layerscope's results tables).
ESTIMATORS: dict[str, type[Estimator]] = {
    cls.name: cls for cls in (TwoNN, MLE, GRIDE, PCAID, ParticipationRatio, PowerLaw)
}

__all__ = [
    "check_device",
    "MIN_POINTS_FOR_ERROR",
    "ESTIMATORS",
    "GRIDE",
    "MLE",
    "NeighborEstimator",
    "PCAID",
    "DuplicatePointsWarning",
    "Estimate",
    "Estimator",
    "Neighbors",
    "ParticipationRatio",
    "SpectralEstimator",
    "PowerLaw",
    "ResampledSpectra",
    "TooFewPointsWarning",
    "TwoNN",
    "bootstrap_spectra",
    "covariance_spectrum",
    "gride",
    "gride_scale",
    "half_spectra",
    "half_splits",
    "mle",
    "nearest_neighbors",
    "participation_ratio",
    "pc_id",
    "power_law",
    "replicate_error",
    "resampled_spectra",
    "twonn",
    "twonn_scale",
]
