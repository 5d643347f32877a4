"""A layerscope run written from someone else's training loop: the part the callbacks share."""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from torch import nn

from ..config import check_folder_name
from ..probes.capture import Forward, Inputs, n_inputs
from ..probes.geometry import GeometrySettings
from ..store import RunLock, RunLockedError, RunRecord, RunStore, ending
from ..tracker import Tracker
from ..train.schedule import checkpoint_steps


def transformer_blocks(model: nn.Module) -> list[str]:
    """The blocks of a transformer (or any stack): the children of the largest ``nn.ModuleList`` whose
    children are all of one type (``bert.encoder.layer.0``, ``...1``, ...). Empty if there is none."""
    best: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > len(best) and len({type(m) for m in module}) == 1:
            best = [f"{name}.{i}" for i in range(len(module))]
    return best


#: The runs open in this process, by folder: a run whose training raised past its callback (a
#: trainer without an exception hook) is closed as failed when a new run begins in its folder.
_OPEN: dict[Path, TrackedRun] = {}


def _scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite scalar numbers among a trainer's metrics (tensors with one element included)."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[str(key)] = float(value)
    return out


class TrackedRun:
    """A run folder that a training loop fills: the plan of checkpoints, the tracker, ``run.parquet``'s status.

    Parameters
    ----------
    folder : str or Path
        The run's folder (``runs/NAME``): the same layout as ``layerscope run``.
    inputs : mapping of split to inputs
        Probe inputs per split (``{"test": x}``; for token models a dict of tensors:
        ``{"test": {"input_ids": ..., "attention_mask": ...}}``), the same at every checkpoint.
    checkpoints : int
        Checkpoints on a log scale of steps (0 and the last step included), as
        ``schedule.kind = "log"`` of a config; ``every`` instead measures every that many steps.
    forward, device, seed
        As in :class:`layerscope.tracker.Tracker`.
    overwrite : bool
        Start afresh in a folder that holds a run (only ever a layerscope run is deleted).
    tensorboard : bool or str
        Mirror every stored row to TensorBoard: ``True`` writes to ``FOLDER/tensorboard``,
        a path writes there.
    **geometry
        The fields of :class:`~layerscope.probes.geometry.GeometrySettings`:
        ``layers`` (selectors; default: the model's transformer blocks
        (:func:`transformer_blocks`) and ``output:logits``, or layerscope's default
        layers for other models), ``estimators`` (default: ``["twonn"]``),
        ``estimator_params``, ``tokens``, ``max_token_points``, ``batch_size``,
        ``memory_budget_mb``. A bad one is a ValueError naming it.
    """

    def __init__(
        self,
        folder: str | Path,
        inputs: Mapping[str, Inputs],
        *,
        checkpoints: int = 12,
        every: int | None = None,
        forward: Forward | None = None,
        device: str | None = None,
        seed: int = 0,
        overwrite: bool = False,
        tensorboard: bool | str = False,
        **geometry: Any,
    ) -> None:
        self.folder = Path(folder)
        check_folder_name(self.folder.name)
        if not inputs:
            raise ValueError("give probe inputs for at least one split, e.g. inputs={'test': x}")
        for split, x in inputs.items():
            if n_inputs(x) < 3:
                raise ValueError(
                    f"probe inputs {split!r}: {n_inputs(x)} inputs; the estimators need many more (hundreds)"
                )
        try:
            self.geometry = GeometrySettings(**{"estimators": ["twonn"], **geometry})
        except ValidationError as err:
            raise ValueError(
                "; ".join(
                    f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}" for e in err.errors()
                )
            ) from None
        if every is None and checkpoints < 2:
            raise ValueError(f"checkpoints must be >= 2 (step 0 and the last), got {checkpoints}")
        if every is not None and every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.inputs = dict(inputs)
        self.checkpoints, self.every = checkpoints, every
        self.forward, self.device, self.seed = forward, device, seed
        self.overwrite, self.tensorboard = overwrite, tensorboard
        self.store = RunStore(self.folder)
        self.plan: list[int] = []
        self.measured: set[int] = set()
        self.tracker: Tracker | None = None
        self.record: RunRecord | None = None
        self._lock: RunLock | None = None
        self._thread: int | None = None

    @property
    def active(self) -> bool:
        return self.tracker is not None

    def begin(
        self, model: nn.Module, total_steps: int, *, resuming: bool, trainer: str, settings: Mapping[str, Any]
    ) -> None:
        """Open the run: lock the folder, write ``run.parquet`` (status running, the plan), build the tracker.

        Raises
        ------
        FileExistsError
            The folder holds a run and training starts from step 0 without ``overwrite``.
        """
        if total_steps is None or not math.isfinite(total_steps) or total_steps < 1:
            raise ValueError(
                f"the trainer does not know its number of steps ({total_steps}); give it max_steps or max_epochs"
            )
        total_steps = int(total_steps)
        self._close_abandoned()
        self._lock = self.store.lock()
        self._lock.acquire()
        _OPEN[self.folder.resolve()] = self
        self._thread = threading.get_ident()
        try:
            resumes = 0
            if self.store.is_run():
                if resuming:
                    resumes = self.store.read_run().resumes + 1
                    self.measured = set(self.store.completed_steps())
                elif self.overwrite:
                    self.store.clear()
                else:
                    raise FileExistsError(
                        f"{self.folder} holds a run already: pass overwrite=True to start it again, or choose another "
                        "folder"
                    )
            self.plan = checkpoint_steps(
                total_steps, "every" if self.every else "log", num=self.checkpoints, every=self.every
            )
            geometry = self.geometry
            if geometry.layers is None and transformer_blocks(model):
                geometry = geometry.model_copy(update={"layers": [*transformer_blocks(model), "output:logits"]})
            config = {
                "trainer": trainer,
                "settings": dict(settings),
                "layers": geometry.layers,
                "estimators": geometry.estimators,
                "tokens": geometry.tokens,
                "checkpoints": self.plan,
                "splits": list(self.inputs),
            }
            self.record = self.store.start_run(
                RunRecord.begin(
                    self.folder.name,
                    config,
                    seed=self.seed,
                    resumes=resumes,
                    total_steps=total_steps,
                    checkpoints=self.plan,
                )
            )
            on_frame = None
            if self.tensorboard:
                from .tensorboard import TensorBoardMirror

                target = self.folder / "tensorboard" if self.tensorboard is True else Path(self.tensorboard)
                on_frame = TensorBoardMirror(target)
            self.tracker = Tracker(
                self.store,
                self.inputs,
                run_id=self.folder.name,
                geometry=geometry,
                device=self.device,
                forward=self.forward,
                seed=self.seed,
                on_frame=on_frame,
            )
        except BaseException:
            self._release()
            raise

    def _close_abandoned(self) -> None:
        """An earlier run of this process in this folder that never ended: its training raised where no callback saw it.

        On the same thread its training cannot still be going (a thread runs one
        loop at a time, and this one is starting another), so it is closed as failed
        and its lock released; on another thread it may be training, so the folder is refused.
        """
        other = _OPEN.get(self.folder.resolve())
        if other is None or not other.active:  # (other may be this run itself: begun again after an unseen failure)
            return
        if other._thread != threading.get_ident():
            raise RunLockedError(
                f"{self.folder} is in use by another training in this process (thread {other._thread}); "
                "wait for it to end, or choose another folder"
            )
        other.end(
            "failed",
            "the training stopped before its end without telling the callback (it raised?); "
            "recorded when a new run began in this folder",
        )

    @contextlib.contextmanager
    def track(
        self,
        model: nn.Module,
        total_steps: int,
        *,
        resuming: bool = False,
        trainer: str = "custom",
        settings: Mapping[str, Any] | None = None,
    ) -> Iterator[TrackedRun]:
        """Open the run for a training loop of your own, and close it however the loop ends::

            run = TrackedRun("runs/mine", {"test": x_probe})
            with run.track(model, total_steps=n_steps):
                for step in range(n_steps + 1):
                    ...                                   # your training step
                    if run.due(step):
                        run.measure(model, step, metrics={"test_acc": acc})

        ``run.parquet`` says ``finished`` when the block ends, ``failed`` with the
        error when it raises, ``interrupted`` on Ctrl-C; the folder's lock is released.
        """
        self.begin(model, total_steps, resuming=resuming, trainer=trainer, settings=settings or {})
        try:
            yield self
        except BaseException as err:
            self.end(*ending(err))
            raise
        self.end("finished")

    def due(self, step: int) -> bool:
        """Whether ``step`` is a planned checkpoint not yet measured."""
        return self.active and step in self.plan and step not in self.measured

    def measure(
        self, model: nn.Module, step: int, epoch: float | None = None, metrics: Mapping[str, Any] | None = None
    ) -> None:
        """Measure the model at ``step`` (once per step) and store the trainer's scalar metrics beside it."""
        if not self.active or step in self.measured:
            return
        with torch.no_grad():
            self.tracker.measure(model, step, epoch, _scalars(metrics or {}))
        self.measured.add(step)

    def end(self, status: str = "finished", error: str | None = None) -> None:
        """Close the run: its status (finished, failed with the error, interrupted) and end time; release the lock."""
        if not self.active:
            return
        try:
            self.record = self.store.end_run(self.record, status, error)
        finally:
            if (
                self.tracker is not None
                and self.tracker.on_frame is not None
                and hasattr(self.tracker.on_frame, "close")
            ):
                self.tracker.on_frame.close()
            self.tracker = None
            self._release()

    def _release(self) -> None:
        if _OPEN.get(self.folder.resolve()) is self:
            del _OPEN[self.folder.resolve()]
        if self._lock is not None:
            self._lock.release()
            self._lock = None
