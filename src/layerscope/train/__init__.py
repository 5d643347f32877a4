"""A plain training loop, its settings and plan, and the callback interface probes run through."""

from .loop import Callback, evaluate, loss_fn, make_optimizer, scale_parameters, train
from .schedule import ScheduleConfig, TrainConfig, TrainingPlan, checkpoint_steps, training_plan

__all__ = [
    "Callback",
    "ScheduleConfig",
    "TrainConfig",
    "TrainingPlan",
    "checkpoint_steps",
    "evaluate",
    "loss_fn",
    "make_optimizer",
    "scale_parameters",
    "train",
    "training_plan",
]
