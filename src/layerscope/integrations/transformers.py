"""layerscope in a Hugging Face ``Trainer``: a ``TrainerCallback`` that measures at the checkpoint plan's steps.

::

    from layerscope.integrations.transformers import LayerscopeCallback

    probe = tokenizer(texts[:1000], padding=True, return_tensors="pt")   # input_ids, attention_mask
    callback = LayerscopeCallback("runs/bert", {"test": dict(probe)})
    Trainer(model=model, args=args, train_dataset=train, callbacks=[callback]).train()

By default the model's transformer blocks (``bert.encoder.layer.0``, ...) and its
logits (``output:logits``) are measured, each sequence reduced to one point by the
mean over its unmasked tokens (``tokens="mean"``; ``"first"`` for the CLS token).
The run table holds the training arguments; the losses the Trainer logs (``loss``
as ``train_loss``, ``eval_*``) are stored at each checkpoint. Only the main process
measures and writes.

Failures: a ``TrainerCallback`` has no hook for an exception, so the callback wraps
the ``train`` method of the Trainer that calls it (found once, on the call stack of
``on_init_end`` or ``on_train_begin``, as the Trainer whose callbacks hold it): when
training raises, ``run.parquet`` says ``failed`` with the error (``interrupted`` for
Ctrl-C) and the folder's lock is released, so the folder can be used again in the
same process (a notebook). A callback added with ``trainer.add_callback`` after the
Trainer was made is found only inside its first ``train``; should that first
training raise, its run is recorded as failed when the next run begins in its folder.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

try:
    from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError("the Hugging Face callback needs transformers: pip install 'layerscope[transformers]'") from None

from torch import nn

from ..probes.capture import Inputs
from ..store import ending
from ._run import TrackedRun

_SETTINGS = (
    "learning_rate",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_train_epochs",
    "max_steps",
    "weight_decay",
    "warmup_steps",
    "lr_scheduler_type",
    "optim",
    "seed",
)


class LayerscopeCallback(TrainerCallback):
    """Measure the layers' geometry at the planned steps of a Hugging Face ``Trainer`` and write a layerscope run.

    Parameters are those of :class:`layerscope.integrations.TrackedRun`: the run
    folder, the probe inputs per split (a dict of tensors per split for token
    models), and the options (``layers``, ``estimators``, ``checkpoints``,
    ``tokens``, ``tensorboard``, ...).
    """

    def __init__(self, folder: str | Path, inputs: Mapping[str, Inputs], **options: Any) -> None:
        self.run = TrackedRun(folder, inputs, **options)

    def _watch_calling_trainer(self) -> None:
        """Wrap ``train`` of the Trainer on the call stack whose callbacks hold this one (once per Trainer)."""
        frame = inspect.currentframe()
        while frame is not None:
            owner = frame.f_locals.get("self")
            if isinstance(owner, Trainer) and self in getattr(
                getattr(owner, "callback_handler", None), "callbacks", ()
            ):
                if not getattr(owner.train, "_layerscope_watched", False):
                    owner.train = self._recording_failures(owner.train)
                return
            frame = frame.f_back

    def _recording_failures(self, train: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(train)
        def watched(*args: Any, **kwargs: Any) -> Any:
            try:
                return train(*args, **kwargs)
            except BaseException as err:
                self.run.end(*ending(err))
                raise

        watched._layerscope_watched = True  # type: ignore[attr-defined]
        return watched

    def on_init_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self._watch_calling_trainer()

    @staticmethod
    def _metrics(state: TrainerState) -> dict[str, float]:
        """The latest logged losses: ``loss`` as ``train_loss``, and every ``eval_*``."""
        metrics: dict[str, float] = {}
        for entry in state.log_history:
            for key, value in entry.items():
                if key == "loss":
                    metrics["train_loss"] = value
                elif key.startswith("eval_") and key not in (
                    "eval_runtime",
                    "eval_samples_per_second",
                    "eval_steps_per_second",
                ):
                    metrics[key] = value
        return metrics

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero or model is None:
            return
        self._watch_calling_trainer()  # for a callback added after the Trainer was made: watches its next train()
        settings = {
            k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v))
            for k in _SETTINGS
            if (v := getattr(args, k, None)) is not None
        }
        self.run.begin(
            model, state.max_steps, resuming=state.global_step > 0, trainer="transformers", settings=settings
        )
        if self.run.due(state.global_step):
            self.run.measure(model, state.global_step, state.epoch or 0.0, self._metrics(state))

    def on_step_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        if model is not None and self.run.due(state.global_step):
            self.run.measure(model, state.global_step, state.epoch, self._metrics(state))

    def on_train_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        if self.run.active:
            if model is not None and state.global_step not in self.run.measured:  # stopped before the planned end
                self.run.measure(model, state.global_step, state.epoch, self._metrics(state))
            self.run.end("finished")
