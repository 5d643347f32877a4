"""What a model-level probe is: the :class:`Probe` protocol and its registry entry, :class:`ProbeSpec`.

See :mod:`layerscope.probes.registry` for how probes are registered.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from ..results import FigureSpec, Metric, Row


class Probe(Protocol):
    """What a run calls at each checkpoint (in eval mode): rows of numbers for that step."""

    def __call__(self, model: nn.Module, step: int) -> list[Row]: ...


class ProbeSettings(BaseModel):
    """Base of a probe's settings: unknown keys are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class ProbeContext:
    """What a probe is built from: the run's data and where its inputs come from.

    Attributes
    ----------
    inputs : callable
        ``inputs(split, n)``: ``n`` fixed inputs and their labels of a split
        (``"train"`` or ``"test"``), the same at every checkpoint: the run's seeded
        choice of probe inputs, so the model probes measure the inputs the
        geometry probes measure (all of them when ``n`` is ``data.probe_size``, a
        subset when smaller).
    bounds : tuple of tensors
        The valid input range per channel (``lower``, ``upper``) of the data.
    train_inputs : torch.Tensor
        All training inputs (for probes that sample around the data).
    test_examples : callable
        ``test_examples(indices)``: test inputs and labels by index.
    test_labels : torch.Tensor
        The labels of the test set (to choose examples by class).
    seed : int
    device : str
    run_dir : pathlib.Path
        The run's folder (for probes that write files, such as pictures).
    checkpoints : list of int
        The steps at which the run measures (from its training plan).
    """

    inputs: Callable[[str, int], tuple[torch.Tensor, torch.Tensor]]
    bounds: tuple[torch.Tensor | None, torch.Tensor | None]
    train_inputs: torch.Tensor
    test_examples: Callable[[Sequence[int]], tuple[torch.Tensor, torch.Tensor]]
    test_labels: torch.Tensor
    seed: int
    device: str
    run_dir: Path
    checkpoints: list[int]


@dataclass(frozen=True)
class ProbeSpec:
    """A registered probe.

    Attributes
    ----------
    name : str
        Its measure name (``probes.measures``) and the key of its settings (``[probes.NAME]``).
    settings : type of ProbeSettings
    build : callable
        ``build(settings, context) -> Probe``.
    metrics : sequence of Metric
        Every metric its rows can carry.
    figures : sequence of FigureSpec
        What the report draws of them.
    """

    name: str
    settings: type[ProbeSettings]
    build: Callable[[ProbeSettings, ProbeContext], Probe]
    metrics: Sequence[Metric]
    figures: Sequence[FigureSpec] = field(default_factory=tuple)
