"""A plain, readable training loop.

Determinism and resuming: the order of the training examples in epoch e is a
permutation drawn from a generator seeded with (seed, e), so a run resumed at any
step sees exactly the batches an uninterrupted run would have seen. At every
checkpoint the loop hands the model to the callbacks, then reports its full state
(model, optimizer, RNG, step) through ``on_state`` for saving; ``resume`` takes
such a state back.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ..probes import eval_mode
from ..results import proportion_error
from .schedule import TrainConfig, TrainingPlan


class Callback(Protocol):
    """What a training loop calls at each checkpoint (layerscope's Tracker is one).

    A user's own loop calls it the same way: ``callback.on_checkpoint(model, step=..., epoch=..., metrics={...})``.
    """

    def on_checkpoint(
        self, model: nn.Module, step: int, epoch: float, metrics: dict[str, float | tuple[float, float]]
    ) -> None: ...


def make_optimizer(model: nn.Module, s: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer that ``s`` names, over all of the model's parameters."""
    if s.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    if s.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    if s.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    raise ValueError(f"optimizer must be 'sgd', 'adam' or 'adamw', got {s.optimizer!r}")


def loss_fn(kind: str, logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy, or squared error on one-hot targets averaged over the classes (``kind="mse"``, as Humayun et al.);
    the mean over the examples, or each example's (``reduction="none"``)."""
    if kind == "cross_entropy":
        return F.cross_entropy(logits, y, reduction=reduction)
    if kind == "mse":
        per_example = F.mse_loss(logits, F.one_hot(y, logits.shape[1]).to(logits.dtype), reduction="none").mean(1)
        return per_example.mean() if reduction == "mean" else per_example
    raise ValueError(f"loss must be 'cross_entropy' or 'mse', got {kind!r}")


def scale_parameters(model: nn.Module, factor: float) -> None:
    """Multiply every parameter by ``factor`` (Humayun et al.'s initialisation scale)."""
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(factor)


@torch.no_grad()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str, device: torch.device, batch_size: int = 1000
) -> dict[str, tuple[float, float]]:
    """Accuracy and mean loss of ``model`` (in eval mode) on ``(x, y)``, each as (value, standard error).

    The accuracy's error is the Agresti-Coull binomial one
    (:func:`~layerscope.results.proportion_error`), the loss's the standard
    deviation of the examples' losses over sqrt(n).
    """
    correct, losses = 0, []
    with eval_mode(model):
        for a in range(0, len(x), batch_size):
            logits = model(x[a : a + batch_size].to(device))
            yb = y[a : a + batch_size].to(device)
            correct += int((logits.argmax(1) == yb).sum())
            losses.append(loss_fn(loss, logits, yb, reduction="none").double().cpu())
    per_example = torch.cat(losses)
    n = len(per_example)
    loss_err = float(per_example.std() / n**0.5) if n > 1 else float("nan")
    return {"acc": (correct / n, proportion_error(correct, n)), "loss": (float(per_example.mean()), loss_err)}


def augment(images: torch.Tensor, kinds: Sequence[str], generator: torch.Generator) -> torch.Tensor:
    """A batch of images (N, C, H, W) augmented as the standard CIFAR recipe does: ``crop`` pads 4 zero pixels on
    every side and crops a random H x W window per image; ``flip`` mirrors a random half horizontally. The
    random choices come from ``generator`` (on the CPU), so a run and its resumption augment alike."""
    if images.ndim != 4:
        raise ValueError(f"train.augment needs images (N, C, H, W), got inputs of shape {tuple(images.shape)}")
    n, _, h, w = images.shape
    if "crop" in kinds:
        pad = 4
        padded = nn.functional.pad(images, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(images.device)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(images.device)
        rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]
        batch = torch.arange(n, device=images.device)[:, None, None, None]
        channels = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
        images = padded[batch, channels, rows, cols]
    if "flip" in kinds:
        flip = (torch.rand(n, generator=generator) < 0.5).to(images.device)
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    return images


def train(
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    settings: TrainConfig,
    plan: TrainingPlan,
    *,
    seed: int = 0,
    callbacks: Sequence[Callback] = (),
    device: str | torch.device = "cpu",
    resume: dict[str, Any] | None = None,
    on_state: Callable[[dict[str, Any]], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    finite_check_every: int | None = None,
) -> nn.Module:
    """Train ``model`` and call the callbacks at every checkpoint of ``plan``.

    Parameters
    ----------
    model : nn.Module
        Already initialised (and scaled, if wanted).
    x_train, y_train, x_test, y_test : torch.Tensor
        Training data and the data for test metrics. Train and test accuracy and
        loss are measured at each checkpoint on the first ``eval_size`` examples of
        each (a fixed set).
    settings : TrainConfig
    plan : TrainingPlan
        From :func:`~layerscope.train.schedule.training_plan` for ``len(x_train)``.
    seed : int
        Seeds the order of the examples in each epoch.
    callbacks : sequence of Callback
    device : str or torch.device
    resume : dict, optional
        A state given earlier to ``on_state``: training goes on from its step.
    on_state : callable, optional
        Receives the full training state after each checkpoint's callbacks.
    progress : callable, optional
        ``progress(step, total_steps)`` after every step.
    finite_check_every : int, optional
        Steps between reads of the loss's finiteness (each read synchronises a GPU
        with the host); default 1 on the CPU, 50 elsewhere. The first non-finite
        step is recorded on the device in between and named in the error; no
        checkpoint is measured after it.

    Returns
    -------
    nn.Module
        The trained model.
    """
    device = torch.device(device)
    model.to(device)
    n = len(x_train)
    steps_per_epoch, total = plan.steps_per_epoch, plan.total_steps
    if steps_per_epoch != math.ceil(n / settings.batch_size):
        raise ValueError(
            f"the plan is for {steps_per_epoch} steps per epoch, but {n} examples in batches of {settings.batch_size} "
            f"make {math.ceil(n / settings.batch_size)}"
        )
    checkpoints = set(plan.checkpoints)
    optimizer = make_optimizer(model, settings)
    step = 0
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        torch.set_rng_state(resume["rng"])
        step = int(resume["step"])
    eval_train = (x_train[: settings.eval_size], y_train[: settings.eval_size])
    eval_test = (x_test[: settings.eval_size], y_test[: settings.eval_size])

    def checkpoint(at: int) -> None:
        metrics = {
            f"{split}_{name}": value
            for split, data in (("train", eval_train), ("test", eval_test))
            for name, value in evaluate(model, *data, settings.loss, device).items()
        }
        for cb in callbacks:
            cb.on_checkpoint(model, at, at / steps_per_epoch, metrics)
        if on_state is not None:
            on_state(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "rng": torch.get_rng_state(),
                    "step": at,
                }
            )

    # Finiteness of the loss without a host-device synchronisation per step: the first
    # non-finite step and its loss are kept on the device, and read (one sync) every
    # `check_every` steps and before each checkpoint, so a diverged model is never
    # measured or saved. On the CPU reading costs nothing and the check is every step.
    check_every = finite_check_every or (1 if torch.device(device or "cpu").type == "cpu" else 50)
    first_bad = torch.full((), -1, dtype=torch.int64, device=device)
    bad_loss = torch.zeros((), device=device)

    def check_finite() -> None:
        if int(first_bad) >= 0:
            raise FloatingPointError(
                f"training diverged at step {int(first_bad)}: loss is {float(bad_loss)}; lower the learning rate"
            )

    if step == 0 and resume is None:
        checkpoint(0)
    model.train()
    order = None
    while step < total:
        epoch, position = divmod(step, steps_per_epoch)
        if order is None or position == 0:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        idx = order[position * settings.batch_size : (position + 1) * settings.batch_size]
        xb, yb = x_train[idx].to(device), y_train[idx].to(device)
        if settings.augment:
            xb = augment(xb, settings.augment, torch.Generator().manual_seed(seed * 100_003 + 7_919 * step + 1))
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(settings.loss, model(xb), yb)
        new_bad = (first_bad < 0) & ~torch.isfinite(loss.detach())
        first_bad = torch.where(new_bad, step, first_bad)
        bad_loss = torch.where(new_bad, loss.detach().to(bad_loss.dtype), bad_loss)
        if step % check_every == 0:
            check_finite()
        loss.backward()
        optimizer.step()
        step += 1
        if progress is not None:
            progress(step, total)
        if step in checkpoints:
            check_finite()
            checkpoint(step)
            model.train()
    check_finite()
    return model
