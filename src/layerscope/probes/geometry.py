"""Geometry of every chosen layer: the estimators run on each layer's activations.

:class:`GeometrySettings` is the one description of what is measured and how the
layers are read (layers, estimators and their parameters, memory, batches, token
reduction): the config's ``[probes]`` table holds its fields, and the Tracker, the
training-loop callbacks and :class:`GeometryProbe` take it as it is.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from ..estimators import (
    ESTIMATORS,
    NeighborEstimator,
    ResampledSpectra,
    SpectralEstimator,
    covariance_spectrum,
    resampled_spectra,
)
from ..results import Row
from ._model import eval_mode, model_device
from .capture import OUTPUT, Forward, Inputs, capture

#: Estimators run by default on every layer.
DEFAULT_ESTIMATORS = ("twonn", "pc_id", "participation_ratio", "alpha")
#: Layers probed by default: every activation and pooling module, plus the output.
DEFAULT_LAYERS = ("ReLU", "LeakyReLU", "GELU", "Tanh", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", OUTPUT)
#: Name of the row for the inputs themselves.
INPUT = "input"
#: Suffix of a split read with BatchNorm statistics re-estimated on its probe inputs (``batchnorm = "both"``).
BN_PROBE = "@bn=probe"


class ProbeWarning(UserWarning):
    """An estimator could not run on one layer (the message says which and why)."""


def default_layers(model: nn.Module) -> list[str]:
    """The selectors of :data:`DEFAULT_LAYERS` that match a module of ``model``."""
    types = {type(m).__name__ for m in model.modules()}
    return [s for s in DEFAULT_LAYERS if s == OUTPUT or s in types]


def check_estimators(names: Sequence[str]) -> list[str]:
    unknown = [n for n in names if n not in ESTIMATORS]
    if unknown:
        raise ValueError(f"unknown estimator {unknown[0]!r}; choose from {', '.join(ESTIMATORS)}")
    return list(names)


class LayerReading(BaseModel):
    """How the layers are read: which, in what memory and batches, and how token axes become points.

    The fields of the config's ``[probes]`` table that :class:`GeometrySettings`
    shares (defined here once).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    layers: list[str] | None = Field(
        None, description="names, glob patterns or module types; default: activations, pooling, output"
    )
    estimator_params: dict[str, dict[str, Any]] = Field(
        {}, description='parameters per estimator name, e.g. {twonn = {error = "closed-form"}}'
    )
    memory_budget_mb: int = Field(
        1024,
        gt=0,
        description=(
            "MiB for the activations held at once plus the estimators' working memory on one layer (see "
            "probes.capture.capture)"
        ),
    )
    batch_size: int = Field(256, gt=0)
    tokens: Literal["mean", "first", "last", "all", "flatten"] = Field(
        "mean",
        description=(
            "how a layer output of shape (inputs, tokens, features) becomes points (see probes.capture); "
            "'flatten' for 1-D convolutions"
        ),
    )
    max_token_points: int = Field(
        10_000, gt=0, description="with tokens = 'all': at most this many token points per layer (seeded subsample)"
    )
    batchnorm: Literal["running", "probe", "both"] = Field(
        "running",
        description=(
            "BatchNorm statistics the layers are read with: the net's running ones (eval mode), ones re-estimated "
            "on each split's probe inputs at each checkpoint (a copy of the net; its weights untouched), or both "
            f"(the re-estimated ones as split 'SPLIT{BN_PROBE}')"
        ),
    )

    @field_validator("estimator_params")
    @classmethod
    def _estimator_params(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, params in v.items():
            if name not in ESTIMATORS:
                raise ValueError(f"unknown estimator {name!r}; choose from {', '.join(ESTIMATORS)}")
            try:
                ESTIMATORS[name](**params).check_params()
            except (TypeError, ValueError) as err:
                raise ValueError(f"{name}: {err}") from None
        return v

    @property
    def memory_budget(self) -> int:
        """In bytes."""
        return self.memory_budget_mb * 2**20


class GeometrySettings(LayerReading):
    """What the geometry probe measures (``estimators``) and how it reads the layers (:class:`LayerReading`)."""

    estimators: list[str] = Field(
        list(DEFAULT_ESTIMATORS), description="per-layer estimators (layerscope.estimators.ESTIMATORS)"
    )

    @field_validator("estimators")
    @classmethod
    def _estimators(cls, v: list[str]) -> list[str]:
        return check_estimators(v)


def _warn(layer: str, metric: str, reason: str) -> None:
    warnings.warn(f"{metric} skipped on layer {layer!r}: {reason}", ProbeWarning, stacklevel=3)


def estimate_layer(
    name: str,
    X: torch.Tensor,
    estimators: Sequence[str],
    params: dict[str, dict] | None = None,
    on_skip: Callable[[str, str, str], None] = _warn,
    *,
    split: str = "",
) -> list[Row]:
    """Rows for one layer's activations, shape (n_inputs, n_features): its width (``n_features``) and each estimate.

    An estimator that refuses the data (all activations identical, as for a dead
    layer; a spectrum too short for the power-law fit) or fails on it (a diverged
    model's activations) gives no row; ``on_skip(layer, metric, reason)`` is
    called instead (default: a :class:`ProbeWarning`). Activations that are not
    all finite are skipped for every estimator. A layer too narrow for a spectral
    fit's range of ranks whatever its data (alpha's ranks 10..500 on the 10
    logits of a classifier) gives no row of it and no warning: the measure does
    not apply there, as a warning on every default run would say each time.
    """
    rows = [Row(split, name, "n_features", float(X.shape[1]))]
    if estimators and not bool(torch.isfinite(X).all()):
        for metric in estimators:
            on_skip(name, metric, "its activations hold NaN or inf (has the model diverged?)")
        return rows
    spectra: dict[bool, np.ndarray] = {}  # one eigendecomposition per standardisation, shared
    resampled: dict[tuple, ResampledSpectra] = {}  # and one set of resampled spectra per scheme
    for metric in estimators:
        try:
            est = ESTIMATORS[metric](**(params or {}).get(metric, {}))
            if isinstance(est, SpectralEstimator):
                est.check_params()
                if min(X.shape[1], len(X) - 1) < est.min_ranks:  # at most that many non-zero eigenvalues
                    continue
                if est.standardized not in spectra:
                    spectra[est.standardized] = covariance_spectrum(X, standardize=est.standardized)[0]
                how = est.resampling
                key = (est.standardized, how)
                if how and key not in resampled:
                    resampled[key] = resampled_spectra(X, *how, standardize=est.standardized)
                result = est.fit_spectrum(
                    spectra[est.standardized], n_points=len(X), resampled=resampled.get(key)
                ).estimate_
            else:
                result = est.fit(X).estimate_
        except Exception as err:  # noqa: BLE001 - one layer's failure must not end a run (the reason is reported)
            reason = str(err).splitlines()[0] if str(err) else ""
            on_skip(name, metric, reason if isinstance(err, ValueError) else f"{type(err).__name__}: {reason}")
            continue
        rows.append(Row(split, name, metric, result.value, result.error, result.replicates))
    return rows


def working_memory(estimators: Sequence[str], n: int, d: int, itemsize: int) -> int:
    """Bytes the estimators need beyond one layer's (n, d) activations, at most.

    Spectrum estimators: a centred copy (standardised in place), a weighted copy
    (bootstrap resamples with more points than features), and four matrices the
    size of the smaller Gram matrix (the Gram matrix, a resample's re-centred and
    weighted ones, the eigensolver's workspace). Neighbour-based ones: a float32 centred copy, the
    distance blocks of the candidate search (up to 1024 rows x n, twice for the
    top-k temporaries) and the candidate lists.
    """
    spectral = any(issubclass(ESTIMATORS[e], SpectralEstimator) for e in estimators)
    neighbours = any(issubclass(ESTIMATORS[e], NeighborEstimator) for e in estimators)
    need = 0
    if spectral:
        need = max(need, 2 * n * d * itemsize + 4 * min(n, d) ** 2 * itemsize)
    if neighbours:
        need = max(need, n * d * 4 + 2 * min(n, 1024) * n * 4 + n * 64 * 12)
    return need


def geometry_rows(
    model: nn.Module,
    inputs: Inputs,
    settings: GeometrySettings,
    *,
    split: str = "",
    include_input: bool = True,
    on_skip: Callable[[str, str, str], None] = _warn,
    device: str | torch.device | None = None,
    forward: Forward | None = None,
    seed: int = 0,
) -> list[Row]:
    """The estimates of :func:`measure_geometry`, as results rows of ``split``.

    ``settings.memory_budget_mb`` covers the activations held at once and the
    estimators' working memory on one layer (:func:`working_memory`);
    ``on_skip(layer, metric, reason)`` is called when an estimator refuses or fails
    on a layer. ``forward`` and ``seed`` are those of
    :func:`~layerscope.probes.capture.capture`. Inputs that are a dict (token ids)
    have no ``input`` row: their geometry is not a representation's.
    """
    estimators, params = settings.estimators, settings.estimator_params
    layers = default_layers(model) if settings.layers is None else settings.layers
    rows: list[Row] = []
    if include_input and isinstance(inputs, torch.Tensor):
        rows += estimate_layer(INPUT, inputs.flatten(1), estimators, params, on_skip, split=split)
    with eval_mode(model):
        reserve = lambda n, d, itemsize: working_memory(estimators, n, d, itemsize)  # noqa: E731
        for name, acts in capture(
            model,
            inputs,
            layers,
            batch_size=settings.batch_size,
            memory_budget=settings.memory_budget,
            device=device,
            working_memory=reserve,
            tokens=settings.tokens,
            max_token_points=settings.max_token_points,
            forward=forward,
            seed=seed,
        ):
            rows += estimate_layer(name, acts, estimators, params, on_skip, split=split)
    return rows


class GeometryProbe:
    """The geometry of every chosen layer on fixed probe sets, as a probe (``probe(model, step)``) like the others.

    Parameters
    ----------
    inputs : mapping of split to inputs
        Fixed inputs per split, the same at every checkpoint (a tensor, or a dict
        of tensors such as token ids and masks).
    settings : GeometrySettings
    device, forward, seed
        Those of :func:`geometry_rows`.
    on_skip : callable
        ``on_skip(layer, metric, reason)`` when an estimator refuses a layer.

    The inputs' own geometry (layer ``input``) does not change over training: it is
    measured at the first call and the same rows are given at every later one.
    Its failures end the run (``required``): an unknown layer is a mistake to fix,
    not a number to miss (an estimator that refuses one layer is skipped there).
    """

    required = True

    def __init__(
        self,
        inputs: Mapping[str, Inputs],
        settings: GeometrySettings,
        *,
        device: str | torch.device | None = None,
        forward: Forward | None = None,
        seed: int = 0,
        on_skip: Callable[[str, str, str], None] = _warn,
    ) -> None:
        self.inputs, self.settings = dict(inputs), settings
        self.device, self.forward, self.seed, self.on_skip = device, forward, seed, on_skip
        self._input_rows: dict[str, list[Row]] = {}

    def __call__(self, model: nn.Module, step: int) -> list[Row]:
        rows: list[Row] = []
        if not self.settings.estimators:
            return rows
        for split, x in self.inputs.items():
            if split not in self._input_rows:  # token ids have no geometry of their own
                is_tensor = isinstance(x, torch.Tensor)
                self._input_rows[split] = (
                    estimate_layer(
                        INPUT,
                        x.flatten(1),
                        self.settings.estimators,
                        self.settings.estimator_params,
                        self.on_skip,
                        split=split,
                    )
                    if is_tensor
                    else []
                )
            rows += self._input_rows[split]
            mode = self.settings.batchnorm if has_batchnorm(model) else "running"
            readings = {"running": [(split, model)], "probe": [], "both": [(split, model)]}[mode]
            if mode != "running":
                probed = with_probe_statistics(
                    model, x, batch_size=self.settings.batch_size, device=self.device, forward=self.forward
                )
                readings.append((split if mode == "probe" else f"{split}{BN_PROBE}", probed))
                if mode == "both":
                    rows += [replace(r, split=f"{split}{BN_PROBE}") for r in self._input_rows[split]]
            for name, net in readings:
                rows += geometry_rows(
                    net,
                    x,
                    self.settings,
                    split=name,
                    include_input=False,
                    on_skip=self.on_skip,
                    device=self.device,
                    forward=self.forward,
                    seed=self.seed,
                )
        return rows


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def with_probe_statistics(
    model: nn.Module,
    inputs: Inputs,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    forward: Forward | None = None,
) -> nn.Module:
    """A copy of ``model`` whose BatchNorm running statistics are re-estimated on ``inputs``.

    The statistics are reset, then the inputs passed in batches of nearly equal size with only the BatchNorm layers
    in train mode and a cumulative average (momentum None), so every input counts (nearly) equally. The model itself
    is not changed. In eval mode BatchNorm normalises with its running statistics, which at initialisation are 0 and
    1 (the identity) and warm up over the first steps of training: what a layer's geometry then shows may be the
    statistics, not the representation.
    """
    import copy

    from .capture import call_model, n_inputs, take

    net = copy.deepcopy(model).eval()
    dev = model_device(net, device)
    net.to(dev)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
            m.train()
    n = n_inputs(inputs)
    bounds = np.linspace(0, n, -(-n // batch_size) + 1).round().astype(int)  # batches of (nearly) equal size
    for a, b in zip(bounds[:-1], bounds[1:]):
        call_model(net, take(inputs, int(a), int(b)), dev, forward)
    return net.eval()


def measure_geometry(
    model: nn.Module,
    inputs: torch.Tensor,
    layers: Sequence[str] | None = None,
    estimators: Sequence[str] = DEFAULT_ESTIMATORS,
    **options: Any,
) -> pd.DataFrame:
    """Run the estimators on the input and on every chosen layer of ``model`` (a one-off :class:`GeometryProbe`).

    Parameters
    ----------
    model : nn.Module
        Measured in eval mode (restored afterwards), without gradients.
    inputs : torch.Tensor of shape (n_inputs, ...), or dict of such tensors (passed as keyword arguments)
    layers : sequence of str, optional
        Names, patterns or module types (see :func:`~layerscope.probes.capture.resolve_layers`);
        ``"output"`` is the model's output. Default: those of :data:`DEFAULT_LAYERS` that
        the model has.
    estimators : sequence of str
        Names in :data:`layerscope.estimators.ESTIMATORS`.
    **options
        Fields of :class:`LayerReading` (``estimator_params``, e.g.
        ``{"twonn": {"error": "closed-form"}}``, ``batch_size``, ``memory_budget_mb``,
        ``tokens``, ``max_token_points``) and the keywords of :func:`geometry_rows`
        (``include_input``, ``on_skip``, ``device``, ``forward``, ``seed``).

    Returns
    -------
    pandas.DataFrame
        Columns ``layer, metric, value, error``; layers in model order, ``"input"`` first.
    """
    reading = {k: options.pop(k) for k in list(options) if k in LayerReading.model_fields}
    settings = GeometrySettings(layers=None if layers is None else list(layers), estimators=list(estimators), **reading)
    rows = geometry_rows(model, inputs, settings, **options)
    return pd.DataFrame(
        [(r.layer, r.metric, r.value, r.error) for r in rows], columns=["layer", "metric", "value", "error"]
    )
