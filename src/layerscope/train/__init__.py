"""A plain training loop, checkpoint schedules, and the callback interface probes run through."""

from .loop import Callback, TrainSettings, evaluate, scale_parameters, train
from .schedule import checkpoint_steps

__all__ = ["Callback", "TrainSettings", "checkpoint_steps", "evaluate", "scale_parameters", "train"]
