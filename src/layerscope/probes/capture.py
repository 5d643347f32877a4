"""Activations of chosen layers of any ``nn.Module``, in bounded memory.

Layers are addressed by module path as in ``model.named_modules()`` (``features.3``,
``layer2.1.relu``), by glob pattern (``layer*.relu``), or by module type name
(``ReLU``, ``Conv2d``). A module whose output is not one tensor is addressed with
keys after a colon: ``lstm:0`` (an element of a tuple), ``lstm:1:0`` (nested),
``encoder:last_hidden_state`` or ``output:logits`` (a field of a dict, a dataclass
or a Hugging Face ``ModelOutput``); without a key it is refused with the keys it
offers. Forward hooks record each chosen output for a fixed set of inputs, one
row per input. A module that runs several times in one forward pass
(torchvision's ResNet reuses one ``relu`` per block) is recorded per call, as
``name#0``, ``name#1``, ...; nothing is overwritten.

Inputs: a tensor (the model is called as ``model(x)``), or a dict of tensors of
equal length, such as a tokenizer's ``input_ids`` and ``attention_mask`` (called
as ``model(**batch)``), or anything with a ``forward(model, batch)`` function of
the user's. Batches are cut from every tensor alike and moved to the model's
device; floating-point inputs are converted to the model's floating-point type
(float32 probe inputs for a float64 model).

Sequences: an output of shape (inputs, tokens, features) is reduced per
``tokens``: ``"mean"`` (the default: the mean over tokens, over the unmasked ones
when the inputs carry an ``attention_mask``), ``"first"`` (a CLS token), ``"last"``
(the last unmasked token), ``"all"`` (every unmasked token a point, subsampled
to ``max_token_points`` with a seeded generator) or ``"flatten"`` (one vector of
tokens x features per input). A sequence whose ``attention_mask`` is all zeros
has no token to average or pick: under ``"mean"``, ``"last"`` and ``"all"`` it is
left out of the point cloud of every layer with a token axis, with a warning that
counts them (a zero vector in its place would be a fake point). A 1-D
convolution's output (inputs, channels, length) is 3-D too: use ``"flatten"`` for
those. An output of shape (inputs,) (a model ending in ``.squeeze(1)``) is one
feature per input; other shapes are flattened.

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
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ._model import hooked, model_device, model_dtype, split_selector

#: Selector for the model's own output (the logits of a classifier).
OUTPUT = "output"

#: How an output of shape (inputs, tokens, features) becomes points.
Tokens = Literal["mean", "first", "last", "all", "flatten"]
TOKENS = ("mean", "first", "last", "all", "flatten")

#: Inputs: one tensor, or a dict of tensors of equal length (passed as keyword arguments).
Inputs = torch.Tensor | Mapping[str, torch.Tensor]

#: ``forward(model, batch)``: how to call the model on a batch of inputs, when ``model(batch)`` is not it.
Forward = Callable[[nn.Module, Any], Any]


def resolve_layers(model: nn.Module, layers: Sequence[str]) -> list[str]:
    """Module paths selected by names, glob patterns or module type names, in model order.

    The selector ``"output"`` stands for the model's output; it comes last. A
    selector may end in keys (``lstm:0``, ``output:logits``) that pick a tensor from
    an output that is not one; they are kept in the returned names.

    Raises
    ------
    ValueError
        For a selector that matches nothing, with the closest module names.
    """
    if isinstance(layers, str):
        layers = [layers]
    modules = dict(model.named_modules())
    modules.pop("", None)  # the model itself
    chosen: dict[str, list[str]] = {}  # module -> selectors with their keys
    outputs: list[str] = []
    for selector in layers:
        pattern, keys = split_selector(selector)
        if any(not k for k in keys):
            raise ValueError(f"layer {selector!r}: an empty key after ':'")
        suffix = "".join(f":{k}" for k in keys)
        if pattern == OUTPUT and OUTPUT not in modules:
            outputs.append(OUTPUT + suffix)
            continue
        matched = [
            name
            for name, module in modules.items()
            if name == pattern or fnmatch.fnmatchcase(name, pattern) or type(module).__name__ == pattern
        ]
        if not matched:
            close = difflib.get_close_matches(pattern, list(modules), n=3)
            hint = (
                f"; did you mean {', '.join(close)}?"
                if close
                else f"; the model has {', '.join(list(modules)[:8])}, ..."
            )
            raise ValueError(f"unknown layer {selector!r}: no module name, pattern or type matches it{hint}")
        for name in matched:
            chosen.setdefault(name, []).append(name + suffix)
    ordered = [selector for name in modules for selector in dict.fromkeys(chosen.get(name, []))]
    return ordered + list(dict.fromkeys(outputs))


@dataclass(frozen=True)
class LayerShape:
    """One recorded output: its name (``module`` or ``module#call``), features per input and dtype."""

    name: str
    module: str
    call: int
    n_features: int
    dtype: torch.dtype = torch.float32
    rows: int = 1  # rows per input: tokens per input with tokens="all", else 1

    def nbytes(self, n_inputs: int) -> int:
        return n_inputs * self.n_features * self.dtype.itemsize


def _stored_dtype(output: torch.Tensor) -> torch.dtype:
    """Activations are kept in float32, or float64 for a float64 model (its precision is the point)."""
    return torch.float64 if output.dtype == torch.float64 else torch.float32


def n_inputs(inputs: Inputs) -> int:
    """How many inputs: the length of the tensor, or of every tensor of the dict (which must agree)."""
    if isinstance(inputs, torch.Tensor):
        return len(inputs)
    if isinstance(inputs, Mapping):
        lengths = {key: len(value) for key, value in inputs.items() if isinstance(value, torch.Tensor)}
        if not lengths:
            raise ValueError("the inputs are a dict without tensors")
        if len(set(lengths.values())) > 1:
            raise ValueError(f"the inputs' tensors differ in length: {lengths}")
        return next(iter(lengths.values()))
    raise TypeError(f"inputs must be a tensor or a dict of tensors, got {type(inputs).__name__}")


def take(inputs: Inputs, a: int, b: int) -> Inputs:
    """Inputs ``a`` to ``b`` (every tensor of a dict cut alike; other values kept)."""
    if isinstance(inputs, torch.Tensor):
        return inputs[a:b]
    return {key: value[a:b] if isinstance(value, torch.Tensor) else value for key, value in inputs.items()}


def _to(value: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """A tensor on ``device``, floating-point ones in ``dtype``; other values as they are."""
    if not isinstance(value, torch.Tensor):
        return value
    return value.to(device=device, dtype=dtype) if value.is_floating_point() else value.to(device)


def call_model(model: nn.Module, batch: Inputs, device: torch.device, forward: Forward | None = None) -> Any:
    """The model on one batch: ``forward(model, batch)`` if given, else ``model(**batch)`` for a dict, ``model(batch)``.

    The batch is moved to ``device`` and its floating-point tensors converted to the
    model's floating-point type (a float64 model gets float64 inputs).
    """
    dtype = model_dtype(model)
    batch = (
        _to(batch, device, dtype)
        if isinstance(batch, torch.Tensor)
        else {key: _to(value, device, dtype) for key, value in batch.items()}
    )
    if forward is not None:
        return forward(model, batch)
    return model(**batch) if isinstance(batch, Mapping) else model(batch)


def _mask(batch: Inputs) -> torch.Tensor | None:
    mask = batch.get("attention_mask") if isinstance(batch, Mapping) else None
    return mask if isinstance(mask, torch.Tensor) and mask.ndim == 2 else None


#: Reductions that read the attention mask; under them a sequence with no unmasked token has no point.
_MASKED = ("mean", "last", "all")


def empty_sequences(inputs: Inputs, tokens: str) -> int:
    """How many inputs have an ``attention_mask`` of all zeros, under a reduction that reads it (else 0)."""
    mask = _mask(inputs)
    return 0 if mask is None or tokens not in _MASKED else int((mask.sum(1) == 0).sum())


def reduce_tokens(output: torch.Tensor, tokens: str, mask: torch.Tensor | None) -> torch.Tensor:
    """One row per input (per unmasked token for ``"all"``) from a layer's output; see the module's notes.

    Under ``"mean"`` and ``"last"``, inputs whose mask is all zeros give no row.
    """
    output = output.detach()
    if output.ndim == 1:  # one number per input
        return output.unsqueeze(1)
    if output.ndim != 3 or tokens == "flatten":
        return output.flatten(1)
    if mask is not None and mask.shape != output.shape[:2]:
        mask = None  # a layer whose token axis is not the inputs' (a pooled or cropped sequence)
    keep = None if mask is None else mask.to(device=output.device, dtype=torch.bool)
    if tokens == "first":
        return output[:, 0]
    if keep is not None and tokens in ("mean", "last"):
        some = keep.any(1)
        if not some.all():  # sequences without a token: no point
            output, keep = output[some], keep[some]
    if tokens == "last":
        if keep is None:
            return output[:, -1]
        last = (keep.cumsum(1) * keep).argmax(1)  # the last unmasked position
        return output[torch.arange(len(output), device=output.device), last]
    if tokens == "mean":
        if keep is None:
            return output.mean(1)
        weights = keep.to(output.dtype).unsqueeze(2)
        return (output * weights).sum(1) / weights.sum(1)
    if tokens == "all":
        return output.reshape(-1, output.shape[2]) if keep is None else output[keep]
    raise ValueError(f"tokens must be one of {', '.join(TOKENS)}, got {tokens!r}")


def _check_batch(name: str, output: torch.Tensor, batch: int) -> None:
    if output.ndim == 0 or len(output) != batch:
        raise ValueError(
            f"layer {name!r} gives an output of shape {tuple(output.shape)} for a batch of {batch} inputs: its first "
            "axis is not "
            "the inputs' (nn.LSTM, nn.GRU and nn.MultiheadAttention need batch_first=True)"
        )


def layer_shapes(
    model: nn.Module,
    names: Sequence[str],
    example: Inputs,
    device: torch.device,
    *,
    tokens: str = "mean",
    forward: Forward | None = None,
) -> list[LayerShape]:
    """The outputs that ``names`` produce in one forward pass of ``example`` (a batch), with rows per input."""
    seen: dict[tuple[str, int], tuple[int, torch.dtype, int]] = {}
    batch, mask = n_inputs(example), _mask(example)

    def record(name: str, call: int, output: torch.Tensor) -> None:
        _check_batch(name, output, batch)
        rows = reduce_tokens(output, tokens, mask)
        per_input = (
            output.shape[1] if tokens == "all" and output.ndim == 3 else 1
        )  # every token, masked or not: an upper bound
        seen[(name, call)] = (rows.shape[1], _stored_dtype(output), per_input)

    with hooked(model, names, record), torch.no_grad():
        call_model(model, example, device, forward)
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
    inputs: Inputs,
    layers: Sequence[str],
    *,
    batch_size: int = 256,
    memory_budget: int = 2**30,
    device: str | torch.device | None = None,
    working_memory: Callable[[int, int, int], int] | None = None,
    tokens: str = "mean",
    max_token_points: int = 10_000,
    forward: Forward | None = None,
    seed: int = 0,
) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(layer name, activations)`` for every chosen layer, in model order.

    Parameters
    ----------
    model : nn.Module
        Run in its current mode (call ``model.eval()`` first for a measurement),
        without gradients.
    inputs : torch.Tensor of shape (n_inputs, ...), or dict of such tensors
        The probe set: the same inputs at every checkpoint. A dict (``input_ids``,
        ``attention_mask``) is passed as keyword arguments.
    layers : sequence of str
        Module names, glob patterns or module type names, with ``:key`` for
        outputs that are not one tensor (see :func:`resolve_layers`).
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
    tokens : str
        How (inputs, tokens, features) outputs become points: ``"mean"``,
        ``"first"``, ``"last"``, ``"all"`` or ``"flatten"`` (see the module's notes).
    max_token_points : int
        With ``tokens="all"``: at most this many token points per layer (a seeded subsample).
    forward : callable, optional
        ``forward(model, batch)`` when the model is not called as ``model(batch)``
        or ``model(**batch)``.
    seed : int
        For the subsample of ``tokens="all"``.

    Yields
    ------
    name : str
        Module path (with its keys), with ``#call`` appended for modules that run more than once.
    activations : torch.Tensor of shape (n_points, n_features), on the CPU
        One row per input (per token with ``tokens="all"``), float32 (float64 for a
        float64 model), copied as the module returned them (a later in-place
        operation, such as ``ReLU(inplace=True)``, does not change them). Drop each
        one before asking for the next to stay within the budget.

    Raises
    ------
    ValueError
        Unknown layers, an output whose first axis is not the inputs', or one
        layer whose activations alone exceed the budget.
    TypeError, KeyError
        An output that is not a tensor, without a key or with a wrong one (the
        message lists the keys it offers).
    """
    if tokens not in TOKENS:
        raise ValueError(f"tokens must be one of {', '.join(TOKENS)}, got {tokens!r}")
    names = resolve_layers(model, layers)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = model_device(model, device)
    n = n_inputs(inputs)
    empty = empty_sequences(inputs, tokens)
    if empty == n:
        raise ValueError(f"every one of the {n} inputs has an attention_mask of all zeros: no tokens to measure")
    if empty:
        warnings.warn(
            f"{empty} of {n} sequences have no unmasked token (attention_mask all 0): left out of the point clouds "
            f"of the layers with a token axis (tokens={tokens!r})",
            stacklevel=2,
        )
    shapes = layer_shapes(model, names, take(inputs, 0, min(2, n)), device, tokens=tokens, forward=forward)

    def rows(shape: LayerShape) -> int:
        return min(n * shape.rows, max_token_points) if tokens == "all" else n

    def need(shape: LayerShape) -> int:
        return working_memory(rows(shape), shape.n_features, shape.dtype.itemsize) if working_memory else 0

    groups: list[list[LayerShape]] = []
    used = reserve = 0
    for shape in shapes:
        size = shape.nbytes(n * shape.rows)  # "all" holds every token until it subsamples
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
        out = {(s.module, s.call): torch.empty((n * s.rows, s.n_features), dtype=s.dtype) for s in group}
        filled = dict.fromkeys(out, 0)
        mask: torch.Tensor | None = None
        current = 0

        def store(name: str, call: int, output: torch.Tensor) -> None:
            # runs only inside this group's passes below, so out, filled and mask are this iteration's
            buffer = out.get((name, call))  # noqa: B023
            if buffer is not None:  # copy_ converts and moves: nothing the model does later reaches it
                _check_batch(name, output, current)  # noqa: B023
                part = reduce_tokens(output, tokens, mask)  # noqa: B023
                start = filled[(name, call)]  # noqa: B023
                buffer[start : start + len(part)].copy_(part)
                filled[(name, call)] = start + len(part)  # noqa: B023

        with torch.no_grad():
            for a in range(0, n, batch_size):
                batch = take(inputs, a, a + batch_size)
                mask, current = _mask(batch), n_inputs(batch)
                with hooked(model, modules, store):  # one context per pass: calls counted from 0
                    call_model(model, batch, device, forward)
        for s in group:
            # yielded without a local name: the caller's drop of a layer must free it (the budget counts on it)
            yield (
                s.name,
                _subsample(
                    out.pop((s.module, s.call))[: filled[(s.module, s.call)]],
                    max_token_points if tokens == "all" else None,
                    seed,
                ),
            )


def _subsample(acts: torch.Tensor, cap: int | None, seed: int) -> torch.Tensor:
    """At most ``cap`` rows, a seeded subsample in the original order (all rows without a cap)."""
    if cap is None or len(acts) <= cap:
        return acts
    g = torch.Generator().manual_seed(seed)
    return acts[torch.randperm(len(acts), generator=g)[:cap].sort().values]
