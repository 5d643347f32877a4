"""The papers' experiments, one module each."""

from . import ansuini2019, humayun2024, tan2024
from .base import Experiment, Finding

#: The papers' experiments, by name (``layerscope reproduce NAME``).
EXPERIMENTS: dict[str, Experiment] = {
    e.name: e for e in (ansuini2019.EXPERIMENT, tan2024.EXPERIMENT, humayun2024.EXPERIMENT)
}

__all__ = ["EXPERIMENTS", "Experiment", "Finding"]
