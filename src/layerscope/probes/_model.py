"""How the probes handle a model: hooks on named modules, eval mode, device, dtype, gradients, argument checks.

Private to :mod:`layerscope.probes` (and the training loop's evaluation): one place
for what every probe needs of a model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

#: ``on_call(module name, call number, tensor)``: what a hook reports.
OnCall = Callable[[str, int, torch.Tensor], None]


@contextlib.contextmanager
def hooked(model: nn.Module, names: Sequence[str], on_call: OnCall, *, inputs: bool = False) -> Iterator[None]:
    """Report each call of each named module to ``on_call(name, call, tensor)``, with calls counted from 0.

    The tensor is the module's output, or with ``inputs=True`` its first input (a
    forward pre-hook: the pre-activation of a nonlinearity). A module whose output
    is not a tensor is refused with its name. Calls are counted within this
    context: use one context per forward pass. Hooks are removed on leaving, also
    when the model raises. The name ``"output"`` of a model without such a module
    stands for the model itself.
    """
    calls: dict[str, int] = {}

    def report(name: str, tensor: object) -> None:
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"layer {name!r} returns {type(tensor).__name__}, not a tensor; choose another layer")
        call = calls.get(name, 0)
        calls[name] = call + 1
        on_call(name, call, tensor)

    modules = dict(model.named_modules())
    handles = []
    try:
        for name in names:
            module = modules.get(name, model if name == "output" else None)
            if module is None:
                raise ValueError(f"unknown layer {name!r}")
            if inputs:
                handles.append(module.register_forward_pre_hook(lambda _m, args, name=name: report(name, args[0])))
            else:
                handles.append(module.register_forward_hook(lambda _m, _args, out, name=name: report(name, out)))
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
    """The floating-point type of the model's parameters (float32 for a model without any): probes feed it inputs of this type."""
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
    """Refuse to measure a model whose outputs are not all finite (a diverged model): any number would be meaningless."""
    if not bool(torch.isfinite(outputs).all()):
        raise NonFiniteOutputError(f"the model's outputs hold NaN or inf (has it diverged?): {what} is undefined")


class NonFiniteOutputError(ValueError):
    """The model's outputs are NaN or inf, so a probe has nothing to measure."""


def check_at_least(value: float, name: str, minimum: float) -> float:
    """A probe parameter no smaller than ``minimum``, or a ValueError naming it."""
    if not value >= minimum:
        raise ValueError(f"{name} must be >= {minimum:g}, got {value!r}")
    return value
