"""Activations of chosen layers of any ``nn.Module``, in bounded memory.

Layers are addressed by module path as in ``model.named_modules()`` (``features.3``,
``layer2.1.relu``), by glob pattern (``layer*.relu``), or by module type name
(``ReLU``, ``Conv2d``). Forward hooks record each chosen module's output for a
fixed set of inputs, flattened to one row per input. A module that runs several
times in one forward pass (torchvision's ResNet reuses one ``relu`` per block) is
recorded per call, as ``name#0``, ``name#1``, ...; nothing is overwritten.

Memory: a first forward pass on one batch measures every output's size; the
layers are then split into groups whose activations for all inputs, plus the
working memory the caller reserves for processing one layer, fit in
``memory_budget`` bytes, and the inputs run once per group. Each layer's output is
preallocated and filled batch by batch (a copy: in-place operations later in the
model cannot change it). Hooks are removed when a pass ends, also when the model
raises.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ._model import hooked, model_device

#: Selector for the model's own output (the logits of a classifier).
OUTPUT = "output"


def resolve_layers(model: nn.Module, layers: Sequence[str]) -> list[str]:
    """Module paths selected by names, glob patterns or module type names, in model order.

    The selector ``"output"`` stands for the model's output; it comes last.

    Raises
    ------
    ValueError
        For a selector that matches nothing, with the closest module names.
    """
    if isinstance(layers, str):
        layers = [layers]
    modules = dict(model.named_modules())
    modules.pop("", None)  # the model itself
    chosen: set[str] = set()
    for selector in layers:
        if selector == OUTPUT and OUTPUT not in modules:
            continue
        matched = [
            name
            for name, module in modules.items()
            if name == selector or fnmatch.fnmatchcase(name, selector) or type(module).__name__ == selector
        ]
        if not matched:
            close = difflib.get_close_matches(selector, list(modules), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; the model has {', '.join(list(modules)[:8])}, ..."
            raise ValueError(f"unknown layer {selector!r}: no module name, pattern or type matches it{hint}")
        chosen.update(matched)
    ordered = [name for name in modules if name in chosen]
    return ordered + [OUTPUT] if OUTPUT in layers and OUTPUT not in modules else ordered


@dataclass(frozen=True)
class LayerShape:
    """One recorded output: its name (``module`` or ``module#call``), features per input and dtype."""

    name: str
    module: str
    call: int
    n_features: int
    dtype: torch.dtype = torch.float32

    def nbytes(self, n_inputs: int) -> int:
        return n_inputs * self.n_features * self.dtype.itemsize


def _stored_dtype(output: torch.Tensor) -> torch.dtype:
    """Activations are kept in float32, or float64 for a float64 model (its precision is the point)."""
    return torch.float64 if output.dtype == torch.float64 else torch.float32


def _batches(inputs: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    for a in range(0, len(inputs), batch_size):
        yield inputs[a : a + batch_size]


def _forward(model: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return model(x.to(device))


def layer_shapes(model: nn.Module, names: Sequence[str], example: torch.Tensor, device: torch.device) -> list[LayerShape]:
    """The outputs that ``names`` produce in one forward pass of ``example`` (a batch)."""
    seen: dict[tuple[str, int], tuple[int, torch.dtype]] = {}

    def record(name: str, call: int, output: torch.Tensor) -> None:
        seen[(name, call)] = (output[0].numel(), _stored_dtype(output))

    with hooked(model, names, record), torch.no_grad():
        _forward(model, example, device)
    shapes = []
    for name in names:
        n_calls = sum(1 for (n, _) in seen if n == name)
        if n_calls == 0:
            raise ValueError(f"layer {name!r} did not run in the forward pass; it cannot be captured")
        for call in range(n_calls):
            label = name if n_calls == 1 else f"{name}#{call}"
            shapes.append(LayerShape(label, name, call, *seen[(name, call)]))
    return shapes


def capture(
    model: nn.Module,
    inputs: torch.Tensor,
    layers: Sequence[str],
    *,
    batch_size: int = 256,
    memory_budget: int = 2**30,
    device: str | torch.device | None = None,
    working_memory: Callable[[int, int, int], int] | None = None,
) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(layer name, activations)`` for every chosen layer, in model order.

    Parameters
    ----------
    model : nn.Module
        Run in its current mode (call ``model.eval()`` first for a measurement),
        without gradients.
    inputs : torch.Tensor of shape (n_inputs, ...)
        The probe set: the same inputs at every checkpoint.
    layers : sequence of str
        Module names, glob patterns or module type names (see :func:`resolve_layers`).
    batch_size : int
    memory_budget : int
        Bytes for the activations held at once plus ``working_memory`` of the
        largest layer held. Each layer's output is preallocated once and filled
        batch by batch (no pieces, no concatenation), so the activations take
        exactly ``n_inputs x n_features x 4`` bytes (8 for a float64 model); layers
        are captured in as many passes over the inputs as the budget needs. Not
        counted: the model, its forward pass on one batch, and Python's overhead.
    device : str or torch.device, optional
        Where the model runs; default: where its parameters are.
    working_memory : callable, optional
        ``working_memory(n_inputs, n_features, itemsize)``: the bytes that the
        caller needs to process one layer's activations (an estimator's copies and
        buffers), reserved within the budget.

    Yields
    ------
    name : str
        Module path, with ``#call`` appended for modules that run more than once.
    activations : torch.Tensor of shape (n_inputs, n_features), on the CPU
        Flattened outputs, float32 (float64 for a float64 model), copied as the
        module returned them (a later in-place operation, such as
        ``ReLU(inplace=True)``, does not change them). Drop each one before asking
        for the next to stay within the budget.

    Raises
    ------
    ValueError
        Unknown layers, or one layer whose activations alone exceed the budget.
    """
    names = resolve_layers(model, layers)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = model_device(model, device)
    n = len(inputs)
    shapes = layer_shapes(model, names, inputs[: min(2, n)], device)

    def need(shape: LayerShape) -> int:
        return working_memory(n, shape.n_features, shape.dtype.itemsize) if working_memory else 0

    groups: list[list[LayerShape]] = []
    used = reserve = 0
    for shape in shapes:
        size = shape.nbytes(n)
        if size + need(shape) > memory_budget:
            raise ValueError(
                f"layer {shape.name!r} needs {(size + need(shape)) / 2**20:.0f} MiB for {n} inputs "
                f"({size / 2**20:.0f} MiB of activations, the rest for the estimators), over the memory budget of "
                f"{memory_budget / 2**20:.0f} MiB; raise memory_budget or use fewer inputs"
            )
        if not groups or used + size + max(reserve, need(shape)) > memory_budget:
            groups.append([])
            used = reserve = 0
        groups[-1].append(shape)
        used += size
        reserve = max(reserve, need(shape))
    for group in groups:
        modules = list(dict.fromkeys(s.module for s in group))
        out = {(s.module, s.call): torch.empty((n, s.n_features), dtype=s.dtype) for s in group}
        offset = 0

        def store(name: str, call: int, output: torch.Tensor) -> None:
            # runs only inside this group's passes below, so out and offset are this iteration's
            buffer = out.get((name, call))  # noqa: B023
            if buffer is not None:  # copy_ converts and moves: nothing the model does later reaches it
                buffer[offset : offset + len(output)].copy_(output.detach().flatten(1))  # noqa: B023

        with torch.no_grad():
            for batch in _batches(inputs, batch_size):
                with hooked(model, modules, store):  # one context per pass: calls counted from 0
                    _forward(model, batch, device)
                offset += len(batch)
        for s in group:
            yield s.name, out.pop((s.module, s.call))
