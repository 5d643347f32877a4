"""How the probes handle a model: hooks on named modules, eval mode, device, dtype, gradients, argument checks.

Private to :mod:`layerscope.probes` (and the training loop's evaluation): one place
for what every probe needs of a model.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

#: ``on_call(module name, call number, tensor)``: what a hook reports.
OnCall = Callable[[str, int, torch.Tensor], None]


def split_selector(name: str) -> tuple[str, list[str]]:
    """``"lstm:1:0"`` -> ``("lstm", ["1", "0"])``: a module and the keys that pick from its output."""
    module, *keys = name.split(":")
    return module, keys


def offered_keys(value: object) -> list[str]:
    """The keys that pick something from a non-tensor output: indices of a tuple or list, keys of a
    dict (or a Hugging Face ``ModelOutput``), fields of a dataclass."""
    if isinstance(value, (tuple, list)):
        return [str(i) for i in range(len(value))]
    if isinstance(value, Mapping):
        return [str(k) for k in value]
    if dataclasses.is_dataclass(value):
        return [f.name for f in dataclasses.fields(value) if getattr(value, f.name) is not None]
    return []


def select(value: object, keys: Sequence[str], name: str) -> torch.Tensor:
    """The tensor that ``keys`` pick from a layer's output (``name`` for messages).

    Raises
    ------
    TypeError
        The output (or what a key picked) is not a tensor and no further key says
        which element to take; the message lists the keys it offers.
    KeyError
        A key the output does not have, with those it has.
    """
    for i, key in enumerate(keys):
        offered = offered_keys(value)
        if isinstance(value, (tuple, list)):
            if not key.lstrip("-").isdigit() or not -len(value) <= int(key) < len(value):
                raise KeyError(
                    f"layer {name!r}: {type(value).__name__} of {len(value)} has no element {key!r}; choose from "
                    f"{', '.join(offered)}"
                )
            value = value[int(key)]
        elif isinstance(value, Mapping) and key in value:
            value = value[key]
        elif dataclasses.is_dataclass(value) and key in offered:
            value = getattr(value, key)
        else:
            where = ":".join([name.split(":")[0], *keys[:i]])
            raise KeyError(
                f"layer {name!r}: {where} returns {type(value).__name__} without {key!r}; "
                + (f"choose from {', '.join(offered)}" if offered else "it has no elements to choose from")
            )
    if not isinstance(value, torch.Tensor):
        offered = offered_keys(value)
        hint = (
            f"; pick an element: {', '.join(f'{name}:{k}' for k in offered)}" if offered else "; choose another layer"
        )
        raise TypeError(f"layer {name!r} returns {type(value).__name__}, not a tensor{hint}")
    return value


def logits_of(outputs: object, key: str | None = None) -> torch.Tensor:
    """The logits in a model's output: the output itself, or the element ``key`` picks (``"logits"``, ``"0"``)."""
    return select(outputs, split_selector(f"output:{key}")[1] if key else [], f"output:{key}" if key else "output")


class Logits(nn.Module):
    """A model whose output is the logits that ``key`` picks from the wrapped model's output (``"logits"``, ``"0"``)."""

    def __init__(self, model: nn.Module, key: str) -> None:
        super().__init__()
        self.model, self.key = model, key

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        return logits_of(self.model(*args, **kwargs), self.key)


def with_logits(model: nn.Module, key: str | None) -> nn.Module:
    """``model`` itself, or with ``key`` a wrapper returning the logits in its output (for classification probes)."""
    return model if key is None else Logits(model, key)


@contextlib.contextmanager
def hooked(model: nn.Module, names: Sequence[str], on_call: OnCall, *, inputs: bool = False) -> Iterator[None]:
    """Report each call of each named module to ``on_call(name, call, tensor)``, with calls counted from 0.

    A name is a module path, optionally with keys that pick the tensor from an
    output that is not one (``lstm:0``, ``encoder:last_hidden_state``; see
    :func:`select`). The tensor is the module's output, or with ``inputs=True`` its
    first input (a forward pre-hook: the pre-activation of a nonlinearity). An output
    that is not a tensor, without a key, is refused with the keys it offers. Calls
    are counted within this context: use one context per forward pass. Hooks are
    removed on leaving, also when the model raises. The module name ``"output"`` of
    a model without such a module stands for the model itself.
    """
    calls: dict[str, int] = {}

    def report(name: str, keys: list[str], tensor: object) -> None:
        tensor = select(tensor, keys, name)
        call = calls.get(name, 0)
        calls[name] = call + 1
        on_call(name, call, tensor)

    modules = dict(model.named_modules())
    handles = []
    try:
        for name in names:
            path, keys = split_selector(name)
            module = modules.get(path, model if path == "output" else None)
            if module is None:
                raise ValueError(f"unknown layer {name!r}")
            if inputs:
                handles.append(
                    module.register_forward_pre_hook(lambda _m, args, name=name, keys=keys: report(name, keys, args[0]))
                )
            else:
                handles.append(
                    module.register_forward_hook(lambda _m, _args, out, name=name, keys=keys: report(name, keys, out))
                )
        yield
    finally:
        for handle in handles:
            handle.remove()


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


def model_dtype(model: nn.Module) -> torch.dtype:
    """The floating-point type of the model's parameters (float32 for a model without any): probes feed it inputs of
    this type.
    """
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


@contextlib.contextmanager
def gradients_on() -> Iterator[None]:
    """Autograd on for a probe that needs input gradients (CSR, PGD), also when the caller is inside
    ``torch.no_grad()`` or ``torch.inference_mode()``."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def check_finite_outputs(outputs: torch.Tensor, what: str) -> None:
    """Refuse to measure a model whose outputs are not all finite (a diverged model): any number would be
    meaningless."""
    if not bool(torch.isfinite(outputs).all()):
        raise NonFiniteOutputError(f"the model's outputs hold NaN or inf (has it diverged?): {what} is undefined")


class NonFiniteOutputError(ValueError):
    """The model's outputs are NaN or inf, so a probe has nothing to measure."""


def check_at_least(value: float, name: str, minimum: float) -> float:
    """A probe parameter no smaller than ``minimum``, or a ValueError naming it."""
    if not value >= minimum:
        raise ValueError(f"{name} must be >= {minimum:g}, got {value!r}")
    return value
