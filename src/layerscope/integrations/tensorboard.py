"""Every stored row mirrored to TensorBoard, so a run shows up beside the user's loss curves."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd


class TensorBoardMirror:
    """Writes each checkpoint's rows as TensorBoard scalars: one scalar per (metric, split, layer).

    Tags are ``layerscope/METRIC/SPLIT/LAYER`` (``model`` for model-level rows such as
    accuracy), the step is the training step, and a row's error goes beside it as
    ``.../error``. Needs ``tensorboard`` (``pip install 'layerscope[tensorboard]'``).
    """

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ImportError(
                "mirroring to TensorBoard needs tensorboard: pip install 'layerscope[tensorboard]'"
            ) from None
        self.writer = SummaryWriter(log_dir=str(log_dir))

    @staticmethod
    def tag(metric: str, split: str, layer: str) -> str:
        return f"layerscope/{metric}/{split or 'all'}/{layer or 'model'}"

    def __call__(self, frame: pd.DataFrame) -> None:
        for row in frame.itertuples(index=False):
            tag = self.tag(row.metric, row.split, row.layer)
            if math.isfinite(row.value):
                self.writer.add_scalar(tag, row.value, int(row.step))
            if math.isfinite(row.error):
                self.writer.add_scalar(f"{tag}/error", row.error, int(row.step))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
