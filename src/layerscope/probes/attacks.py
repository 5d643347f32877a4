"""Adversarial robustness: untargeted L-infinity PGD (with random start) and FGSM.

The adversarial input is clipped to the valid input range of each channel (for
standardised images, the images of pixel values 0 and 1 under the
standardisation: :attr:`layerscope.data.datasets.Dataset.lower` and ``upper``),
not to one scalar range as the reference code does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from .._plotting import layer_order, over_training, subplots
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

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


def _bounds(
    x: torch.Tensor, lower: torch.Tensor | float | None, upper: torch.Tensor | float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel bounds broadcast to ``x`` (channels on dimension 1)."""

    def expand(v: torch.Tensor | float | None, fill: float) -> torch.Tensor:
        t = torch.as_tensor(fill if v is None else v, dtype=x.dtype, device=x.device)
        if t.ndim == 1:
            t = t.view(1, -1, *([1] * (x.ndim - 2)))
        return t

    return expand(lower, -torch.inf), expand(upper, torch.inf)


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
    lower: torch.Tensor | float | None = None,
    upper: torch.Tensor | float | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Untargeted L-infinity PGD on the cross-entropy loss.

    Parameters
    ----------
    model : nn.Module
        Attacked as it is (put it in eval mode first).
    x : torch.Tensor of shape (n, channels, ...)
    y : torch.Tensor of shape (n,)
    eps : float or tensor of shape (channels,)
        Radius of the L-infinity ball, in input units (per channel if a tensor).
    steps : int
    step_size : float, optional
        Default ``2.5 * eps / steps``.
    random_start : bool
        Start from a uniform point of the ball (drawn from a generator seeded with
        ``seed``; the global RNG is not used).
    lower, upper : tensor of shape (channels,) or float, optional
        Valid input range per channel.

    Returns
    -------
    torch.Tensor
        Adversarial inputs, within ``eps`` of ``x`` and within the valid range.
    """
    if isinstance(eps, torch.Tensor):
        if not bool((eps >= 0).all()):
            raise ValueError(f"eps must be >= 0, got {eps.tolist()}")
    else:
        check_at_least(eps, "eps", 0)
    check_at_least(steps, "steps", 1)
    with gradients_on():
        x, y = (
            x.to(model_dtype(model)).clone(),
            y.clone(),
        )  # clones: tensors made in inference mode cannot enter autograd
        lo, hi = _bounds(x, lower, upper)
        if isinstance(eps, torch.Tensor):  # per channel, broadcast as the bounds are
            eps = _bounds(x, eps, None)[0]
        step_size = 2.5 * eps / steps if step_size is None else step_size
        x_adv = x.clone()
        if random_start and bool(torch.as_tensor(eps).gt(0).any()):
            g = torch.Generator(device="cpu").manual_seed(seed)
            x_adv = x_adv + (torch.rand(x.shape, generator=g) * 2 - 1).to(x.device, x.dtype) * eps
        x_adv = torch.maximum(torch.minimum(x_adv, hi), lo)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            loss = F.cross_entropy(model(x_adv), y)
            (grad,) = torch.autograd.grad(loss, x_adv)
            with torch.no_grad():
                x_adv = x_adv + step_size * grad.sign()
                x_adv = torch.minimum(torch.maximum(x_adv, x - eps), x + eps)
                x_adv = torch.maximum(torch.minimum(x_adv, hi), lo)
        return x_adv.detach()


def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    lower: torch.Tensor | float | None = None,
    upper: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Fast gradient sign method: one step of size ``eps``, clipped to the valid range."""
    return pgd(model, x, y, eps=eps, steps=1, step_size=eps, random_start=False, lower=lower, upper=upper)


def robust_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    attack: str = "pgd",
    steps: int = 10,
    step_size: float | None = None,
    lower: torch.Tensor | float | None = None,
    upper: torch.Tensor | float | None = None,
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    logits_key: str | None = None,
) -> float:
    """Accuracy of ``model`` (in eval mode, restored afterwards) on adversarial versions of ``(x, y)``.

    ``logits_key`` picks the logits from a model whose output is not one tensor
    (``"logits"`` for a Hugging Face ``ModelOutput``, ``"0"`` for a tuple).

    ``attack`` is ``"pgd"`` (random start, ``steps`` steps) or ``"fgsm"``; the other
    parameters are those of :func:`pgd`. Works inside ``torch.no_grad()`` and
    ``torch.inference_mode()``; inputs are cast to the model's dtype. Raises
    :class:`~layerscope.probes.capture.NonFiniteOutputError` for a model whose
    outputs hold NaN or inf.
    """
    if attack not in ("pgd", "fgsm"):
        raise ValueError(f"attack must be 'pgd' or 'fgsm', got {attack!r}")
    model = with_logits(model, logits_key)
    device = model_device(model, device)
    correct = 0
    with eval_mode(model):
        for a in range(0, len(x), batch_size):
            xb, yb = x[a : a + batch_size].to(device=device, dtype=model_dtype(model)), y[a : a + batch_size].to(device)
            with torch.no_grad():
                check_finite_outputs(model(xb), "robust accuracy")
            if attack == "pgd":
                adv = pgd(
                    model, xb, yb, eps=eps, steps=steps, step_size=step_size, lower=lower, upper=upper, seed=seed + a
                )
            else:
                adv = fgsm(model, xb, yb, eps=eps, lower=lower, upper=upper)
            with torch.no_grad():
                correct += int((model(adv).argmax(1) == yb).sum())
    return correct / len(x)


class RobustnessProbe:
    """Robust accuracy at a checkpoint on fixed labelled inputs, as rows (metric ``robust_acc``, layer ``""``)."""

    def __init__(
        self,
        inputs: dict[str, tuple[torch.Tensor, torch.Tensor]],
        *,
        eps: float,
        attack: str = "pgd",
        steps: int = 10,
        lower: torch.Tensor | None = None,
        upper: torch.Tensor | None = None,
        seed: int = 0,
        device: str | None = None,
        logits_key: str | None = None,
        grid: Sequence[tuple[float, float]] = (),
        unit: float | None = None,
    ) -> None:
        self.inputs = inputs
        self.grid = list(grid)  # (label, eps in input units) of further radii
        self.unit = unit  # the data scale, with eps_unit = "data" (stored as rows)
        self.params = {
            "eps": eps,
            "attack": attack,
            "steps": steps,
            "lower": lower,
            "upper": upper,
            "seed": seed,
            "device": device,
            "logits_key": logits_key,
        }

    def __call__(self, model: nn.Module, step: int) -> list[Row]:
        rows = []
        for split, (x, y) in self.inputs.items():
            value = robust_accuracy(model, x, y, **self.params)
            rows.append(Row(split, MODEL_LEVEL, "robust_acc", value, proportion_error(round(value * len(x)), len(x))))
            for label, eps in self.grid:  # robust accuracy against eps: split "test@eps=E"
                value = robust_accuracy(model, x, y, **{**self.params, "eps": eps})
                rows.append(
                    Row(
                        f"{split}@eps={label:g}",
                        MODEL_LEVEL,
                        "robust_acc",
                        value,
                        proportion_error(round(value * len(x)), len(x)),
                    )
                )
        if self.unit is not None:
            # exact: a function of the fixed probe inputs, so its error is 0
            rows.append(Row(next(iter(self.inputs)), MODEL_LEVEL, "pgd_data_scale", self.unit, 0.0))
        return rows


class PGDSettings(ProbeSettings):
    """Robust accuracy under an L-infinity attack of radius eps (input units)."""

    eps: float = Field(0.1, ge=0)
    eps_grid: list[float] = Field(
        [],
        description=(
            "further radii: robust accuracy at each, in rows of split 'SPLIT@eps=E' (robust accuracy against eps)"
        ),
    )
    eps_unit: Literal["input", "data", "pixel"] = Field(
        "input",
        description=(
            "'data': eps and eps_grid are multiples of the data's scale (see data_scale); 'pixel': fractions of each "
            "channel's valid range (images read in [0, 1] then standardised: eps = 8/255 is 8 grey levels, as "
            "papers on images state it); 'input': input units"
        ),
    )
    steps: int = Field(10, ge=1)
    attack: Literal["pgd", "fgsm"] = "pgd"
    n_points: int = Field(
        500,
        ge=1,
        description="inputs per split: the first of the run's seeded probe inputs, those the geometry probes measure",
    )
    splits: list[Literal["train", "test"]] = ["test"]

    @field_validator("eps_grid")
    @classmethod
    def _grid(cls, v: list[float]) -> list[float]:
        if any(not e >= 0 for e in v):
            raise ValueError(f"eps_grid values must be >= 0, got {v}")
        return v


def data_scale(x: torch.Tensor, y: torch.Tensor) -> float:
    """The scale of L-infinity attacks on these labelled inputs: the median over inputs of half the
    L-infinity distance to the nearest input of another class. A perturbation that large can carry an
    input half way to a differently labelled one, so robust accuracy at eps = 1 x this scale tests
    what separates the classes, whatever the data's units."""
    flat = x.reshape(len(x), -1).double()
    half = torch.empty(len(x), dtype=torch.float64)
    for a in range(0, len(x), 256):  # (256, n) L-infinity distances at a time
        d = (flat[a : a + 256, None, :] - flat[None, :, :]).abs().amax(-1)
        d[y[a : a + 256, None] == y[None, :]] = torch.inf
        half[a : a + 256] = d.min(1).values / 2
    if not torch.isfinite(half).any():
        raise ValueError("the data scale needs inputs of at least two classes")
    return float(half[torch.isfinite(half)].median())


def _build(settings: PGDSettings, run: ProbeContext) -> RobustnessProbe:
    inputs = {split: run.inputs(split, settings.n_points) for split in settings.splits}
    lower, upper = run.bounds
    unit: float | torch.Tensor = 1.0
    if settings.eps_unit == "data":
        x, y = inputs[settings.splits[0]]
        unit = data_scale(x.cpu(), y.cpu())
    elif settings.eps_unit == "pixel":
        if lower is None or upper is None:
            raise ValueError("pgd.eps_unit = 'pixel' needs image data with a valid range per channel")
        unit = torch.as_tensor(upper, dtype=torch.float64) - torch.as_tensor(lower, dtype=torch.float64)
    return RobustnessProbe(
        inputs,
        eps=settings.eps * unit,
        attack=settings.attack,
        steps=settings.steps,
        lower=lower,
        upper=upper,
        seed=run.seed,
        device=run.device,
        grid=[(e, e * unit) for e in settings.eps_grid],
        unit=float(unit) if settings.eps_unit == "data" else None,
    )


def figure_alpha_vs_robustness(results: pd.DataFrame, phases: pd.DataFrame | None = None) -> Figure:
    """alpha of the last hidden layer against robust accuracy, one point per checkpoint."""
    layers = [layer for layer in layer_order(results) if layer not in ("input", "output")]
    alpha = results[(results.metric == "alpha") & results.layer.isin(layers)]
    layer = [layer for layer in layers if layer in set(alpha.layer)][-1]
    split = "test" if "test" in set(alpha.split) else sorted(alpha.split.unique())[0]
    a = alpha[(alpha.layer == layer) & (alpha.split == split)].set_index("step").value
    robust = results[(results.metric == "robust_acc") & (results.layer == "")]
    r = robust[robust.split == (split if split in set(robust.split) else robust.split.iloc[0])].set_index("step").value
    steps = a.index.intersection(r.index)
    fig, ax = subplots(figsize=(5.5, 4.2))
    points = ax.scatter(a[steps], r[steps], c=np.log10(np.asarray(steps) + 1), cmap="viridis", s=40)
    ax.annotate("end", (a[steps[-1]], r[steps[-1]]), textcoords="offset points", xytext=(5, 5))
    fig.colorbar(points, ax=ax, label="log10(step + 1)")
    ax.set_xlabel(f"alpha of {layer} ({split} inputs)")
    ax.set_ylabel("robust accuracy")
    ax.set_title("spectrum exponent against robustness")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


SPEC = ProbeSpec(
    name="pgd",
    settings=PGDSettings,
    build=_build,
    metrics=(
        Metric(
            "robust_acc",
            "accuracy under the PGD or FGSM attack of radius eps (layer \"\"; split 'test@eps=E' for the radii of "
            "eps_grid)",
            "Agresti-Coull binomial standard error",
        ),
        Metric(
            "pgd_data_scale",
            "with eps_unit = 'data': the data scale eps is a multiple of (median half L-infinity distance to the "
            "nearest input of another class)",
        ),
    ),
    figures=(
        FigureSpec(
            "robust_acc.png", "Robust accuracy over training", ("robust_acc",), draw=over_training("robust_acc")
        ),
        FigureSpec(
            "alpha_vs_robustness.png",
            "Spectrum exponent against robust accuracy",
            ("alpha", "robust_acc"),
            draw=figure_alpha_vs_robustness,
        ),
    ),
)
