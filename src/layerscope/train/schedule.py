"""Which steps are checkpoints."""

from __future__ import annotations

import numpy as np


def checkpoint_steps(total_steps: int, kind: str = "log", *, num: int = 12, every: int | None = None, steps_per_epoch: int = 1) -> list[int]:
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
