"""layerscope in a Lightning ``Trainer``: a ``Callback`` that measures at the checkpoint plan's steps.

::

    from layerscope.integrations.lightning import LayerscopeCallback

    callback = LayerscopeCallback("runs/mine", {"test": x_test[:1000]}, layers=["model.1", "model.3"])
    trainer = lightning.Trainer(max_epochs=5, callbacks=[callback])
    trainer.fit(module, loader)
    # layerscope report runs/mine

The run folder is the same as ``layerscope run`` writes; the run table holds the
trainer's settings, and every scalar the module logs (``self.log("val_acc", ...)``)
is stored at each checkpoint beside the geometry. Only the rank-zero process
measures and writes under distributed training. A fit resumed from a Lightning
checkpoint (``ckpt_path=``) goes on in the same folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

try:
    from lightning.pytorch import Callback, LightningModule, Trainer
except ImportError:  # pragma: no cover - depends on the environment
    try:
        from pytorch_lightning import Callback, LightningModule, Trainer
    except ImportError:
        raise ImportError("the Lightning callback needs Lightning: pip install 'layerscope[lightning]'") from None

from ..probes.capture import Inputs
from ..store import ending
from ._run import TrackedRun


class LayerscopeCallback(Callback):
    """Measure the layers' geometry at the planned steps of a Lightning fit and write a layerscope run.

    Parameters are those of :class:`layerscope.integrations.TrackedRun`: the run
    folder, the probe inputs per split, and the options (``layers``,
    ``estimators``, ``checkpoints``, ``every``, ``tokens``, ``tensorboard``, ...).
    Layer names are those of the ``LightningModule`` (``model.fc1`` for a module
    that holds its network as ``self.model``).
    """

    def __init__(self, folder: str | Path, inputs: Mapping[str, Inputs], **options: Any) -> None:
        super().__init__()
        self.run = TrackedRun(folder, inputs, **options)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        settings = {
            "max_epochs": trainer.max_epochs,
            "max_steps": trainer.max_steps,
            "accumulate_grad_batches": trainer.accumulate_grad_batches,
            "precision": str(trainer.precision),
            "world_size": trainer.world_size,
            "hparams": _plain(dict(pl_module.hparams)),
        }
        self.run.begin(
            pl_module,
            trainer.estimated_stepping_batches,
            resuming=trainer.global_step > 0,
            trainer="lightning",
            settings=settings,
        )
        if self.run.due(trainer.global_step):
            self.run.measure(pl_module, trainer.global_step, float(trainer.current_epoch), trainer.callback_metrics)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step  # optimizer steps so far: several batches per step when gradients accumulate
        if self.run.due(step):
            batches = trainer.num_training_batches
            epoch = trainer.current_epoch + (
                (batch_idx + 1) / batches if isinstance(batches, int) and batches > 0 else 0.0
            )
            self.run.measure(pl_module, step, epoch, trainer.callback_metrics)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.run.active:
            last = self.run.plan[-1]
            if trainer.global_step < last:  # stopped early (early stopping, max_time): measure where it stopped
                self.run.measure(pl_module, trainer.global_step, float(trainer.current_epoch), trainer.callback_metrics)
            self.run.end("finished")

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self.run.end(*ending(exception))


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, (int, float, str, bool, type(None))) else repr(v) for k, v in values.items()}
