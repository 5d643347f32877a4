"""How long to train and when to measure: the settings, and the one training plan made of them.

:class:`TrainConfig` and :class:`ScheduleConfig` are the ``[train]`` and
``[schedule]`` sections of a run config; :func:`training_plan` turns them and the
size of the training set into a :class:`TrainingPlan` (steps per epoch, total
steps, checkpoint steps), computed once per run and used by the training loop and
by every probe that needs the checkpoints (partition pictures).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class TrainConfig(BaseModel):
    """How to train. ``steps`` sets the length when given, else ``epochs``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(64, gt=0)
    epochs: int | None = Field(1, gt=0)
    steps: int | None = Field(None, gt=0, description="train this many steps (overrides epochs)")
    loss: Literal["cross_entropy", "mse"] = "cross_entropy"
    eval_size: int = Field(5000, gt=0, description="examples per split for accuracy and loss")
    augment: list[Literal["crop", "flip"]] = Field(
        [],
        description=(
            "image augmentation of each training batch: 'crop' (zero-pad 4 pixels, random crop back to size), "
            "'flip' (horizontal, half the images); seeded by the run's seed and the step"
        ),
    )


class ScheduleConfig(BaseModel):
    """When to measure: ``log``-spaced steps, the end of every ``epoch``, or ``every`` K steps."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["log", "epoch", "every"] = "log"
    num: int = Field(12, ge=2, description="checkpoints for kind='log'")
    every: int | None = Field(None, gt=0, description="steps between checkpoints for kind='every'")

    @model_validator(mode="after")
    def _every_given(self) -> ScheduleConfig:
        if self.kind == "every" and self.every is None:
            raise ValueError("schedule.every is required when schedule.kind is 'every'")
        return self


@dataclass(frozen=True)
class TrainingPlan:
    """Steps per epoch, total steps, and the checkpoint steps (0 and the last always among them)."""

    steps_per_epoch: int
    total_steps: int
    checkpoints: list[int]


def training_plan(train: TrainConfig, schedule: ScheduleConfig, n_train: int) -> TrainingPlan:
    """The plan of a run on ``n_train`` training examples."""
    if n_train < 1:
        raise ValueError(f"the training set is empty (n_train={n_train})")
    per_epoch = math.ceil(n_train / train.batch_size)
    total = train.steps or (train.epochs or 1) * per_epoch
    steps = checkpoint_steps(total, schedule.kind, num=schedule.num, every=schedule.every, steps_per_epoch=per_epoch)
    return TrainingPlan(per_epoch, total, steps)


def checkpoint_steps(
    total_steps: int, kind: str = "log", *, num: int = 12, every: int | None = None, steps_per_epoch: int = 1
) -> list[int]:
    """Checkpoint steps in ``0 .. total_steps``, always with 0 (initialisation) and the last step.

    Parameters
    ----------
    total_steps : int
    kind : {"log", "epoch", "every"}
        ``"log"``: ``num`` checkpoints (fewer if steps coincide), step 0 and then steps
        spaced evenly in log(step) from 1 to the end (early training is where
        representations change fastest); ``"epoch"``: the
        end of every epoch; ``"every"``: every ``every`` steps.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if kind == "log":
        if num < 2:
            raise ValueError(f"schedule.num must be >= 2, got {num}")
        steps = np.unique(np.round(np.logspace(0, np.log10(total_steps), num - 1)).astype(int))
    elif kind == "epoch":
        steps = np.arange(steps_per_epoch, total_steps + 1, steps_per_epoch)
    elif kind == "every":
        if not every or every < 1:
            raise ValueError(f"schedule.every must be >= 1 for kind='every', got {every}")
        steps = np.arange(every, total_steps + 1, every)
    else:
        raise ValueError(f"schedule kind must be 'log', 'epoch' or 'every', got {kind!r}")
    return sorted({0, total_steps, *(int(s) for s in steps)})
