"""Local complexity (LC) of piecewise-linear networks, as in Humayun et al. 2024.

Around each point x: P orthonormal random directions v_p, the cross-polytope with
the 2P vertices x +- r v_p. All vertices go through the network; at each
nonlinearity a neuron (every channel x position for convolutional maps) counts
when it is not in the same linear piece at all vertices: for ReLU and LeakyReLU
its pre-activation sign differs, for max-pooling the position of its maximum
differs. LC is the number of such neurons, per layer and summed, averaged over the
points: the density of linear-region boundaries near the data.

Supported nonlinearities: ReLU, LeakyReLU and max-pooling, as modules or as
functions called inside ``forward`` (``torch.relu(x)``, ``F.max_pool2d``; see
:mod:`.nonlinearities`). A model running a smooth nonlinearity (GELU, Tanh,
Sigmoid, SiLU, ...) is refused: its LC is not defined.

Unlike the reference code, every point gets its own random frame, drawn from a
generator seeded from ``seed`` and the point's position (the global RNG is never
touched), and hooks are removed after each measurement.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from torch import nn

from .._plotting import step_axis, subplots
from ..analysis.phases import THRESHOLD
from ..estimators import MIN_POINTS_FOR_ERROR
from ..estimators.resampling import half_splits, split_replicates
from ..results import FigureSpec, Metric, Row
from ._model import check_at_least, check_finite_outputs, eval_mode, model_device, model_dtype
from .base import ProbeContext, ProbeSettings, ProbeSpec
from .nonlinearities import Call, labels, nonlinearity_calls, piecewise_calls, refuse_smooth_modules

#: Half-splits of the points for LC's replicates (as the estimators' default).
_REPLICATES = 20

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def nonlinear_layers(model: nn.Module, example: torch.Tensor) -> list[str]:
    """The layers LC counts: the piecewise-linear nonlinearities one forward pass of ``example`` runs, in order.

    Raises
    ------
    ValueError
        If the model runs a smooth nonlinearity (LC is undefined) or none at all.
    """
    return labels(nonlinearity_calls(model, example))


def random_frames(
    n_points: int, dim: int, n_directions: int, *, seed: int, offset: int = 0, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Orthonormal frames, one per point: (n_points, dim, n_directions), of ``dtype``.

    Point ``offset + i`` always gets the same frame for the same seed, however the
    points are batched; the global RNG is not used.
    """
    if n_directions > dim:
        raise ValueError(f"{n_directions} orthonormal directions need at least as many input dimensions, got {dim}")
    frames = torch.empty(n_points, dim, n_directions, dtype=dtype)
    for i in range(n_points):
        g = torch.Generator().manual_seed(seed * 1_000_003 + offset + i)
        frames[i] = torch.randn(dim, n_directions, generator=g, dtype=torch.float64).to(dtype)
    q, _ = torch.linalg.qr(frames)
    return q


@torch.no_grad()
def local_complexity(
    model: nn.Module,
    points: torch.Tensor,
    *,
    radius: float,
    n_directions: int = 20,
    seed: int = 0,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    return_counts: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """LC of ``model`` around each of ``points``.

    Parameters
    ----------
    model : nn.Module
        Evaluated in eval mode (restored afterwards).
    points : torch.Tensor of shape (n_points, ...)
        Inputs, in the model's input units.
    radius : float
        r, the cross-polytope's radius, in input units.
    n_directions : int
        P, directions per point (2P vertices).
    seed : int
    batch_size : int
        Points per forward pass (each brings 2P vertices).
    return_counts : bool
        Also return each point's counts (for their distribution).

    Returns
    -------
    pandas.DataFrame
        One row per nonlinearity layer, in model order, with ``layer``, ``neurons``
        (units of the layer), ``lc`` (mean number of neurons whose piece changes
        within the polytope), ``lc_err`` (its standard error over the points:
        their standard deviation / sqrt(n)), ``lc_norm`` (``lc / neurons``),
        ``lc_norm_err`` and ``lc_replicates`` (``lc``'s replicates over 20 random
        half-splits of the points drawn from ``seed``, the same at every call on as
        many points, whose mean square estimates ``lc_err**2``; None below 20
        points: see :mod:`layerscope.estimators.resampling`); a last row with layer
        ``""`` holds the sums.
    pandas.DataFrame, with ``return_counts``
        One row per point, one column per layer and ``""`` (the sum): the
        neurons whose piece changes around that point.

    Raises
    ------
    NonFiniteOutputError
        The model's outputs hold NaN or inf (its pieces would be meaningless).
    """
    check_at_least(radius, "radius", 0)
    check_at_least(n_directions, "n_directions", 1)
    refuse_smooth_modules(model)
    device, dtype = model_device(model, device), model_dtype(model)
    shape = points.shape[1:]
    dim = int(points[0].numel())
    names: list[str] = []
    counts: dict[str, list[torch.Tensor]] = {}
    neurons: dict[str, int] = {}
    with eval_mode(model):
        for a in range(0, len(points), batch_size):
            x = points[a : a + batch_size].flatten(1).to(dtype)
            b = len(x)
            frames = random_frames(b, dim, n_directions, seed=seed, offset=a, dtype=dtype) * radius  # (b, dim, P)
            offsets = torch.cat([frames, -frames], dim=2).transpose(1, 2)  # (b, 2P, dim)
            vertices = (x[:, None, :] + offsets).reshape(b * 2 * n_directions, *shape)
            calls: list[Call] = []
            with piecewise_calls(model, calls.append):
                outputs = model(vertices.to(device))
            check_finite_outputs(outputs, "local complexity")
            if not calls:
                raise ValueError(
                    "the model runs no ReLU, LeakyReLU or max-pooling (as modules or functions): nothing to count"
                )
            names = names or labels(calls)
            for name, call in zip(names, calls):
                pieces = call.pieces().view(b, 2 * n_directions, -1)
                counts.setdefault(name, []).append(
                    (pieces != pieces[:, :1]).any(dim=1).sum(dim=1).cpu()
                )  # (b,) neurons that change piece
                neurons[name] = pieces.shape[2]
    per_point = pd.DataFrame({name: torch.cat(counts[name]).numpy() for name in names})
    per_point[""] = per_point[names].sum(axis=1)
    width = {**neurons, "": sum(neurons.values())}
    n = len(per_point)
    halves = half_splits(n, _REPLICATES, seed) if n >= MIN_POINTS_FOR_ERROR else None
    rows = []
    for name in [*names, ""]:
        values = per_point[name].to_numpy(dtype=np.float64)
        mean = float(values.mean())
        err = float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
        replicates = None
        if halves is not None:
            replicates = split_replicates([[values[lab == h].mean() for h in (0, 1)] for lab in halves])
        rows.append(
            {
                "layer": name,
                "neurons": width[name],
                "lc": mean,
                "lc_err": err,
                "lc_norm": mean / width[name],
                "lc_norm_err": err / width[name],
                "lc_replicates": replicates,
            }
        )
    table = pd.DataFrame(rows)
    return (table, per_point) if return_counts else table


def bounding_box_points(data: torch.Tensor, n_points: int, *, seed: int = 0) -> torch.Tensor:
    """Points drawn uniformly from the coordinate-wise bounding box of ``data`` (Humayun et al.'s random points)."""
    lo = data.amin(0)
    hi = data.amax(0)
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand((n_points, *data.shape[1:]), generator=g)


@torch.no_grad()
def decision_boundary_points(
    model: nn.Module,
    x: torch.Tensor,
    n_points: int,
    *,
    seed: int = 0,
    steps: int = 30,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Points on the model's decision boundary, between inputs it assigns to different classes.

    Random pairs of ``x`` with different predicted classes; on each pair's segment
    a bisection of ``steps`` halvings finds where the prediction changes (to
    2^-steps of the segment). Humayun et al.'s "regions migrate to the decision
    boundary" is measured by the LC at these points against the LC at the data.

    Returns
    -------
    torch.Tensor of shape (m, ...), m <= n_points
        Empty if the model predicts one class for all of ``x``.
    """
    device, dtype = model_device(model, device), model_dtype(model)
    with eval_mode(model):
        predict = lambda t: model(t.to(device=device, dtype=dtype)).argmax(1).cpu()  # noqa: E731
        classes = predict(x)
        g = torch.Generator().manual_seed(seed)
        first = torch.randint(len(x), (4 * n_points,), generator=g)
        second = torch.randint(len(x), (4 * n_points,), generator=g)
        keep = classes[first] != classes[second]
        first, second = first[keep][:n_points], second[keep][:n_points]
        a, b = x[first].to(dtype), x[second].to(dtype)
        side = classes[first]
        for _ in range(steps):
            mid = (a + b) / 2
            same = (predict(mid) == side).view(-1, *([1] * (x.ndim - 1)))
            a, b = torch.where(same, mid, a), torch.where(same, b, mid)
    return (a + b) / 2


class LocalComplexityProbe:
    """LC at a checkpoint on fixed point sets, as rows (metrics ``lc``, ``lc_norm``; layer ``""`` is the sum).

    With ``boundary_from``, also on points of the current decision boundary between
    those inputs (split ``"boundary"``), found anew at each checkpoint.
    """

    def __init__(
        self,
        inputs: dict[str, torch.Tensor],
        *,
        radius: float,
        n_directions: int = 20,
        seed: int = 0,
        device: str | None = None,
        boundary_from: torch.Tensor | None = None,
    ) -> None:
        self.inputs, self.radius, self.n_directions, self.seed, self.device = inputs, radius, n_directions, seed, device
        self.boundary_from = boundary_from

    def __call__(self, model: nn.Module, step: int) -> list[Row]:
        sets = dict(self.inputs)
        if self.boundary_from is not None:
            boundary = decision_boundary_points(
                model, self.boundary_from, len(self.boundary_from), seed=self.seed, device=self.device
            )
            if len(boundary) >= 2:  # a model that predicts one class has no boundary among the inputs
                sets["boundary"] = boundary
        rows = []
        for split, points in sets.items():
            table = local_complexity(
                model, points, radius=self.radius, n_directions=self.n_directions, seed=self.seed, device=self.device
            )
            for r in table.itertuples():
                norm = None if r.lc_replicates is None else r.lc_replicates / r.neurons
                rows.append(Row(split, r.layer, "lc", r.lc, r.lc_err, r.lc_replicates))
                rows.append(Row(split, r.layer, "lc_norm", r.lc_norm, r.lc_norm_err, norm))
        return rows


class LCSettings(ProbeSettings):
    """Local complexity (Humayun et al.): cross-polytopes of ``n_directions`` random directions, radius in
    input units."""

    radius: float = Field(0.5, gt=0)
    n_directions: int = Field(20, ge=1)
    n_points: int = Field(
        256,
        ge=1,
        description=(
            "points per split: the first of the run's seeded probe inputs (those the geometry probes "
            "measure); random points from the data's bounding box"
        ),
    )
    splits: list[Literal["train", "test", "random", "boundary"]] = Field(
        ["train", "test", "random"],
        description="'boundary': points of the decision boundary between test inputs of different predicted classes",
    )


def _build(settings: LCSettings, run: ProbeContext) -> LocalComplexityProbe:
    inputs = {
        split: bounding_box_points(run.train_inputs, settings.n_points, seed=run.seed)
        if split == "random"
        else run.inputs(split, settings.n_points)[0]
        for split in settings.splits
        if split != "boundary"
    }
    boundary_from = run.inputs("test", settings.n_points)[0] if "boundary" in settings.splits else None
    return LocalComplexityProbe(
        inputs,
        radius=settings.radius,
        n_directions=settings.n_directions,
        seed=run.seed,
        device=run.device,
        boundary_from=boundary_from,
    )


def figure_local_complexity(results: pd.DataFrame, phases: pd.DataFrame | None = None) -> Figure:
    """LC summed over layers per split, and each layer's normalised LC, over training; phase changes dotted."""
    lc = results[results.metric == "lc"]
    fig, (ax_total, ax_layers) = subplots(1, 2, figsize=(11, 4))
    if phases is not None:
        changes = phases[
            (phases.curve == "lc") & (phases.layer == "") & (phases.split == "train") & (phases.position > 0)
        ]
        for row in changes[changes.confidence >= THRESHOLD].itertuples():
            ax_total.axvline(row.start_step, color="0.4", ls=":", lw=1)
            ax_total.axvspan(row.start_low, row.start_high, color="0.5", alpha=0.12, lw=0)
    for split in sorted(lc.split.unique()):
        rows = lc[(lc.split == split) & (lc.layer == "")].sort_values("step")
        ax_total.plot(rows.step, rows.value, marker="o", ms=3, label=f"{split} points")
    ax_total.set_ylabel("LC, summed over layers (neurons)")
    ax_total.set_title("local complexity over training")
    norm = results[(results.metric == "lc_norm") & (results.layer != "")]
    split = "test" if "test" in set(norm.split) else sorted(norm.split.unique())[0]
    for layer in list(dict.fromkeys(norm[norm.split == split].layer)):
        rows = norm[(norm.split == split) & (norm.layer == layer)].sort_values("step")
        ax_layers.plot(rows.step, rows.value, marker="o", ms=3, label=layer)
    ax_layers.set_ylabel("LC per neuron of the layer")
    ax_layers.set_title(f"per layer, {split} points")
    for ax in (ax_total, ax_layers):
        step_axis(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


SPEC = ProbeSpec(
    name="lc",
    settings=LCSettings,
    build=_build,
    metrics=(
        Metric(
            "lc",
            "local complexity: neurons whose linear piece changes within the cross-polytope, mean over points, per "
            'layer (layer "": summed)',
            "standard error over the points",
        ),
        Metric("lc_norm", "lc divided by the layer's neurons", "standard error over the points"),
    ),
    figures=(
        FigureSpec(
            "local_complexity.png",
            "Local complexity (density of linear-region boundaries near the points; dotted: detected phase changes)",
            ("lc",),
            draw=figure_local_complexity,
        ),
    ),
)
