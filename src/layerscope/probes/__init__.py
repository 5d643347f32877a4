"""Probes: a model and inputs in, measurements out. They know models and estimators, not training."""

from ._model import eval_mode
from .capture import OUTPUT, capture, resolve_layers
from .geometry import DEFAULT_ESTIMATORS, DEFAULT_LAYERS, INPUT, ProbeWarning, measure_geometry

__all__ = [
    "DEFAULT_ESTIMATORS",
    "DEFAULT_LAYERS",
    "INPUT",
    "OUTPUT",
    "ProbeWarning",
    "capture",
    "eval_mode",
    "measure_geometry",
    "resolve_layers",
]
