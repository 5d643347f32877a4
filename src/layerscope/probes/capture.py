"""Activations of chosen layers of any ``nn.Module``, in bounded memory.

Layers are addressed by module path as in ``model.named_modules()`` (``features.3``,
``layer2.1.relu``), by glob pattern (``layer*.relu``), or by module type name
(``ReLU``, ``Conv2d``). Forward hooks record each chosen module's output for a
fixed set of inputs, flattened to one row per input. A module that runs several
times in one forward pass (torchvision's ResNet reuses one ``relu`` per block) is
recorded per call, as ``name#0``, ``name#1``, ...; nothing is overwritten.

Memory: a first forward pass on one batch measures every output's size; the
layers are then split into groups whose activations for all inputs fit in
``memory_budget`` bytes, and the inputs run once per group. Hooks are removed when
a pass ends, also when the model raises.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """The model in eval mode for a measurement, its own mode restored afterwards (also on error)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def model_device(model: nn.Module, device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else where the model's parameters are (the CPU for a model without any)."""
    if device is not None:
        return torch.device(device)
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


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


def _module(model: nn.Module, name: str) -> nn.Module:
    return model if name == OUTPUT else model.get_submodule(name)


@dataclass(frozen=True)
class LayerShape:
    """One recorded output: its name (``module`` or ``module#call``) and features per input."""

    name: str
    module: str
    call: int
    n_features: int


@contextlib.contextmanager
def _hooks(model: nn.Module, names: Sequence[str], sink: dict[tuple[str, int], list[torch.Tensor]]) -> Iterator[None]:
    """Forward hooks that append each call's flattened output to ``sink[(name, call)]``.

    Calls are counted from 0 within this context: use one context per forward pass.
    """
    calls: dict[str, int] = {}
    handles = []

    def make(name: str):  # noqa: ANN202
        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"layer {name!r} returns {type(output).__name__}, not a tensor; choose another layer")
            call = calls.get(name, 0)
            calls[name] = call + 1
            sink.setdefault((name, call), []).append(output.detach().flatten(1).float().cpu())

        return hook

    try:
        for name in names:
            handles.append(_module(model, name).register_forward_hook(make(name)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _batches(inputs: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    for a in range(0, len(inputs), batch_size):
        yield inputs[a : a + batch_size]


def _forward(model: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return model(x.to(device))


def layer_shapes(model: nn.Module, names: Sequence[str], example: torch.Tensor, device: torch.device) -> list[LayerShape]:
    """The outputs that ``names`` produce in one forward pass of ``example`` (a batch)."""
    sink: dict[tuple[str, int], list[torch.Tensor]] = {}
    with _hooks(model, names, sink), torch.no_grad():
        _forward(model, example, device)
    shapes = []
    for name in names:
        n_calls = sum(1 for (n, _) in sink if n == name)
        if n_calls == 0:
            raise ValueError(f"layer {name!r} did not run in the forward pass; it cannot be captured")
        for call in range(n_calls):
            label = name if n_calls == 1 else f"{name}#{call}"
            shapes.append(LayerShape(label, name, call, sink[(name, call)][0].shape[1]))
    return shapes


def capture(
    model: nn.Module,
    inputs: torch.Tensor,
    layers: Sequence[str],
    *,
    batch_size: int = 256,
    memory_budget: int = 2**30,
    device: str | torch.device | None = None,
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
        Bytes of activations held at once (float32, on the CPU). Layers are captured
        in as many passes over the inputs as this needs.
    device : str or torch.device, optional
        Where the model runs; default: where its parameters are.

    Yields
    ------
    name : str
        Module path, with ``#call`` appended for modules that run more than once.
    activations : torch.Tensor of shape (n_inputs, n_features), float32 on the CPU
        Flattened outputs. Drop each one before asking for the next to stay
        within the budget.

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
    groups: list[list[LayerShape]] = []
    used = 0
    for shape in shapes:
        size = 4 * n * shape.n_features
        if size > memory_budget:
            raise ValueError(
                f"layer {shape.name!r} alone needs {size / 2**20:.0f} MiB for {n} inputs, over the memory budget of "
                f"{memory_budget / 2**20:.0f} MiB; raise memory_budget or use fewer inputs"
            )
        if not groups or used + size > memory_budget:
            groups.append([])
            used = 0
        groups[-1].append(shape)
        used += size
    for group in groups:
        modules = list(dict.fromkeys(s.module for s in group))
        sink: dict[tuple[str, int], list[torch.Tensor]] = {}
        wanted = {(s.module, s.call) for s in group}
        with torch.no_grad():
            for batch in _batches(inputs, batch_size):
                batch_sink: dict[tuple[str, int], list[torch.Tensor]] = {}
                with _hooks(model, modules, batch_sink):
                    _forward(model, batch, device)
                for key, value in batch_sink.items():
                    if key in wanted:
                        sink.setdefault(key, []).extend(value)
        for s in group:
            yield s.name, torch.cat(sink.pop((s.module, s.call)))
