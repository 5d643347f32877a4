"""Critical sample ratio (Arpit et al. 2017), parameterised as in Tan et al. 2024.

For each input x with predicted class c, a Langevin search inside the L-infinity
box of radius r around x looks for a point whose prediction differs:
``x' <- x' - (a sign(g) + b N(0, 1))`` with g the gradient at x' of the score
(logit) of class c, then x' is projected back into the box; at most ``steps``
steps, stopping for an input once its prediction has flipped. CSR is the fraction
of inputs that flip. Unlike the reference code, the model is in eval mode
(BatchNorm statistics stay fixed), and the noise comes from a seeded generator.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from .._plotting import over_training
from ..results import MODEL_LEVEL, FigureSpec, Metric, Row, proportion_error
from ._model import (
    check_at_least,
    check_finite_outputs,
    eval_mode,
    gradients_on,
    model_device,
    model_dtype,
    with_logits,
)
from .base import ProbeContext, ProbeSettings, ProbeSpec


def critical_sample_ratio(
    model: nn.Module,
    x: torch.Tensor,
    *,
    radius: float,
    step: float = 0.25 / 255,
    noise: float = 0.2 / 255,
    steps: int = 10,
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    logits_key: str | None = None,
) -> float:
    """The fraction of ``x`` whose predicted class can be changed within the box of ``radius``.

    ``logits_key`` picks the logits from a model whose output is not one tensor
    (``"logits"`` for a Hugging Face ``ModelOutput``, ``"0"`` for a tuple).

    Parameters
    ----------
    model : nn.Module
    x : torch.Tensor of shape (n, ...)
    radius : float
        r, the box's L-infinity radius, in input units (Tan et al.: 0.3/255 of normalised input).
    step, noise : float
        a and b of the Langevin update (Tan et al.: 0.25/255 and 0.2/255).
    steps : int
        At most this many updates per input.

    Returns
    -------
    float in [0, 1]

    Raises
    ------
    NonFiniteOutputError
        The model's outputs on ``x`` hold NaN or inf.

    Notes
    -----
    Works inside ``torch.no_grad()`` and ``torch.inference_mode()``: gradients are
    turned on where the search needs them. Inputs are cast to the model's dtype.
    """
    check_at_least(radius, "radius", 0)
    check_at_least(steps, "steps", 1)
    model = with_logits(model, logits_key)
    device, dtype = model_device(model, device), model_dtype(model)
    flipped_total = 0
    with eval_mode(model), gradients_on():
        for a in range(0, len(x), batch_size):
            x0 = (
                x[a : a + batch_size].to(device=device, dtype=dtype).clone()
            )  # a clone: inputs made in inference mode cannot enter autograd
            g = torch.Generator(device="cpu").manual_seed(seed * 1_000_003 + a)
            with torch.no_grad():
                logits = model(x0)
            check_finite_outputs(logits, "the critical sample ratio")
            cls = logits.argmax(1)
            x_adv = x0.clone()
            flipped = torch.zeros(len(x0), dtype=torch.bool, device=device)
            rows = torch.arange(len(x0), device=device)
            for _ in range(steps):
                x_adv.requires_grad_(True)
                score = model(x_adv)[rows, cls].sum()
                (grad,) = torch.autograd.grad(score, x_adv)
                with torch.no_grad():
                    update = step * grad.sign() + noise * torch.randn(x0.shape, generator=g).to(
                        device=device, dtype=dtype
                    )
                    active = (~flipped).view(-1, *([1] * (x0.ndim - 1)))
                    x_adv = torch.where(active, x_adv - update, x_adv)
                    x_adv = torch.minimum(torch.maximum(x_adv, x0 - radius), x0 + radius)
                    flipped |= model(x_adv).argmax(1) != cls
                if bool(flipped.all()):
                    break
            flipped_total += int(flipped.sum())
    return flipped_total / len(x)


class CSRProbe:
    """CSR at a checkpoint on fixed inputs, as rows (metric ``csr``, layer ``""``)."""

    def __init__(
        self,
        inputs: dict[str, torch.Tensor],
        *,
        radius: float,
        step_size: float,
        noise: float,
        steps: int = 10,
        seed: int = 0,
        device: str | None = None,
        logits_key: str | None = None,
    ) -> None:
        self.inputs = inputs
        self.params = {
            "radius": radius,
            "step": step_size,
            "noise": noise,
            "steps": steps,
            "seed": seed,
            "device": device,
            "logits_key": logits_key,
        }

    def __call__(self, model: nn.Module, step: int) -> list[Row]:
        rows = []
        for split, x in self.inputs.items():
            value = critical_sample_ratio(model, x, **self.params)
            rows.append(Row(split, MODEL_LEVEL, "csr", value, proportion_error(round(value * len(x)), len(x))))
        return rows


class CSRSettings(ProbeSettings):
    """Critical sample ratio (Arpit et al., parameters of Tan et al.), in input units."""

    radius: float = Field(0.3 / 255, ge=0)
    step: float = Field(0.25 / 255, ge=0, description="step size a of the Langevin search")
    noise: float = Field(0.2 / 255, ge=0)
    steps: int = Field(10, ge=1)
    n_points: int = Field(
        500,
        ge=1,
        description="inputs per split: the first of the run's seeded probe inputs, those the geometry probes measure",
    )
    splits: list[Literal["train", "test"]] = ["test"]


def _build(settings: CSRSettings, run: ProbeContext) -> CSRProbe:
    inputs = {split: run.inputs(split, settings.n_points)[0] for split in settings.splits}
    return CSRProbe(
        inputs,
        radius=settings.radius,
        step_size=settings.step,
        noise=settings.noise,
        steps=settings.steps,
        seed=run.seed,
        device=run.device,
    )


SPEC = ProbeSpec(
    name="csr",
    settings=CSRSettings,
    build=_build,
    metrics=(
        Metric(
            "csr",
            'critical sample ratio: fraction of inputs whose prediction flips within the box (layer "")',
            "Agresti-Coull binomial standard error",
        ),
    ),
    figures=(FigureSpec("csr.png", "Critical sample ratio over training", ("csr",), draw=over_training("csr")),),
)
