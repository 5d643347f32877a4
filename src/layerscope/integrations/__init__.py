"""layerscope inside the training loops people use.

- :mod:`layerscope.integrations.lightning`: ``LayerscopeCallback``, a Lightning ``Callback``
  (``pip install 'layerscope[lightning]'``).
- :mod:`layerscope.integrations.transformers`: ``LayerscopeCallback``, a Hugging Face
  ``TrainerCallback`` (``pip install 'layerscope[transformers]'``).
- :mod:`layerscope.integrations.tensorboard`: every stored row mirrored to TensorBoard.

Both callbacks write the same store as ``layerscope run`` (a run folder with
``run.parquet``, ``results/step-*.parquet``; ``layerscope report`` draws it) through
:class:`TrackedRun`, which holds what they share.
"""

from ._run import TrackedRun, transformer_blocks

__all__ = ["TrackedRun", "transformer_blocks"]
