"""The Tracker: measures a model's geometry at a checkpoint and writes it to the store.

It is the one callback through which training runs probes, and it works the same
from any training loop. It writes the results table only; a run folder that
``load``, ``runs`` and ``report`` read also needs its run record (``run.parquet``),
which :class:`layerscope.integrations.TrackedRun` writes around a Tracker::

    run = TrackedRun("runs/mine", {"test": x_probe})
    with run.track(model, total_steps=n_steps):
        for step in range(n_steps + 1):
            ...  # your own training step
            if run.due(step):
                run.measure(model, step, metrics={"test_acc": acc})
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from .probes import eval_mode
from .probes.base import Probe
from .probes.capture import Forward, Inputs
from .probes.geometry import GeometryProbe, GeometrySettings, ProbeWarning
from .results import MODEL_LEVEL, Row, to_frame
from .store import RunStore


class Tracker:
    """Runs the probes at a checkpoint and writes their rows, one store row per number.

    Parameters
    ----------
    store : RunStore
    inputs : mapping of split name to tensor (or to a dict of tensors, such as token ids and attention masks)
        Fixed inputs per split (``{"train": ..., "test": ...}``), the same at every
        checkpoint: what the geometry probe measures.
    run_id : str
    geometry : GeometrySettings
        The layers, estimators and how the layers are read (:class:`~layerscope.probes.geometry.GeometrySettings`).
    device : str, optional
    forward : callable, optional
        ``forward(model, batch)`` when the model is not called as ``model(x)`` or ``model(**batch)``.
    seed : int
        For the token subsample of ``tokens="all"``.
    save_weights : bool
        Also save the model's weights at each checkpoint.
    model_probes : sequence of Probe
        Further probes, each called as ``probe(model, step)`` (in eval mode) and
        returning :class:`~layerscope.results.Row` s (local complexity, CSR,
        robustness, partitions: see :mod:`layerscope.probes.registry`).
    on_frame : callable, optional
        Called with each checkpoint's rows once they are stored (to mirror them
        elsewhere, e.g. :class:`layerscope.integrations.tensorboard.TensorBoardMirror`).

    Every probe, the geometry probe first, runs the same way. A probe that raises is
    skipped at that checkpoint with a :class:`ProbeWarning` (once per run), unless
    it says its failures end the run (``required = True``, as the geometry probe
    does: an unknown layer is an error, not a missing number); an estimator that
    refuses one layer is skipped there with a warning.
    """

    def __init__(
        self,
        store: RunStore,
        inputs: Mapping[str, Inputs],
        *,
        run_id: str,
        geometry: GeometrySettings | None = None,
        device: str | torch.device | None = None,
        forward: Forward | None = None,
        seed: int = 0,
        save_weights: bool = False,
        model_probes: Sequence[Probe] = (),
        on_frame: Callable[[pd.DataFrame], None] | None = None,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.save_weights = save_weights
        self.on_frame = on_frame
        self._skipped: set[tuple[str, str]] = set()
        self.geometry = GeometryProbe(
            inputs, geometry or GeometrySettings(), device=device, forward=forward, seed=seed, on_skip=self._skip
        )
        self.probes: list[Probe] = [self.geometry, *model_probes]

    def _skip(self, layer: str, metric: str, reason: str) -> None:
        """Warn once per (layer, metric) in a run, not at every checkpoint."""
        if (layer, metric) not in self._skipped:
            self._skipped.add((layer, metric))
            warnings.warn(f"{metric} skipped on layer {layer!r}: {reason}", ProbeWarning, stacklevel=2)

    def measure(
        self, model: nn.Module, step: int, epoch: float | None = None, metrics: Mapping[str, float] | None = None
    ) -> pd.DataFrame:
        """Run every probe and write the checkpoint's rows (all at once) to the store.

        ``metrics`` such as ``train_acc`` or ``test_loss`` are stored as model-level
        rows (layer ``""``) with the split taken from the name's prefix; a metric
        given as ``(value, error)`` keeps its error.
        """
        rows: list[Row] = []
        with eval_mode(model):
            for probe in self.probes:
                try:
                    rows += probe(model, int(step))
                except Exception as err:  # a probe that fails (a diverged model's NaN outputs) is skipped, not the run
                    if getattr(probe, "required", False):
                        raise
                    reason = str(err).splitlines()[0] if str(err) else type(err).__name__
                    self._skip(
                        MODEL_LEVEL,
                        type(probe).__name__,
                        reason if isinstance(err, ValueError) else f"{type(err).__name__}: {reason}",
                    )
        for name, v in (metrics or {}).items():
            value, error = v if isinstance(v, tuple) else (v, None)
            rows.append(Row(name.split("_")[0], MODEL_LEVEL, name, value, error))
        frame = to_frame(rows, run_id=self.run_id, step=int(step), epoch=epoch)
        self.store.write_checkpoint(int(step), frame)
        if self.save_weights:
            self.store.save_weights(int(step), model)
        if self.on_frame is not None:
            self.on_frame(frame)
        return frame

    def on_checkpoint(self, model: nn.Module, step: int, epoch: float, metrics: dict[str, float]) -> None:
        """The training-loop callback: same as :meth:`measure`."""
        self.measure(model, step, epoch, metrics)
