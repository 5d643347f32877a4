"""Every piecewise-linear nonlinearity a forward pass runs, as a module or as a function.

Local complexity and the exact 2-D partitions need the pre-activation of each
nonlinearity. Forward hooks only see modules, and many models call
``torch.relu(x)``, ``F.relu``, ``x.clamp(min=0)`` or ``F.max_pool2d`` inside their
``forward``. :func:`piecewise_calls` intercepts the calls themselves with a
``TorchFunctionMode`` (chosen over ``torch.fx``, which must trace the whole model
symbolically and fails on data-dependent control flow that an eager pass runs
without trouble). A module such as ``nn.ReLU`` calls ``F.relu`` itself, so the
modules and the functions are one mechanism and give the same numbers.

Names: a call made by a nonlinearity module (``nn.ReLU``, ``nn.LeakyReLU``,
``nn.MaxPool1d/2d``) carries the module's name (``features.1``); a function
called in some module's ``forward`` is named by that module and the function
(``block1.relu()``; at the top level ``relu()``). A name called several times in
one pass is several layers, ``name#0``, ``name#1``, ... in the order they run.

Supported: ReLU (``torch.relu``, ``F.relu``, ``Tensor.relu``, their in-place forms,
``clamp``/``clip``/``clamp_min`` with a lower bound of 0 and no upper bound),
LeakyReLU (``F.leaky_relu``), max-pooling (``F.max_pool1d``, ``F.max_pool2d``).
Smooth nonlinearities (GELU, tanh, sigmoid, SiLU, ELU, softplus, softmax, ...),
as modules or functions, are refused with their name: LC is undefined for them.
Other clamps (``clamp(min=1e-6)``, ``clamp(0, 6)``) are not counted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

PIECEWISE_LINEAR = (nn.ReLU, nn.LeakyReLU, nn.MaxPool1d, nn.MaxPool2d)
SMOOTH = (
    nn.GELU,
    nn.Tanh,
    nn.Sigmoid,
    nn.SiLU,
    nn.ELU,
    nn.Softplus,
    nn.Mish,
    nn.SELU,
    nn.CELU,
    nn.Hardswish,
    nn.Softmax,
    nn.LogSigmoid,
)


def _functions(*candidates: Any) -> frozenset:
    return frozenset(c for c in candidates if c is not None)


_RELU = _functions(torch.relu, torch.relu_, F.relu, F.relu_, torch.Tensor.relu, torch.Tensor.relu_)
_LEAKY = _functions(F.leaky_relu, F.leaky_relu_, torch._C._nn.leaky_relu, torch._C._nn.leaky_relu_)
_CLAMP = _functions(
    torch.clamp,
    torch.clip,
    torch.clamp_,
    torch.clip_,
    torch.Tensor.clamp,
    torch.Tensor.clip,
    torch.Tensor.clamp_,
    torch.Tensor.clip_,
)
_CLAMP_MIN = _functions(torch.clamp_min, torch.clamp_min_, torch.Tensor.clamp_min, torch.Tensor.clamp_min_)
_POOL = {F.max_pool1d: "max_pool1d", F.max_pool2d: "max_pool2d"}
_IN_PLACE = _functions(
    torch.relu_,
    F.relu_,
    torch.Tensor.relu_,
    F.leaky_relu_,
    torch._C._nn.leaky_relu_,
    torch.clamp_,
    torch.clip_,
    torch.Tensor.clamp_,
    torch.Tensor.clip_,
    torch.clamp_min_,
    torch.Tensor.clamp_min_,
)
_SMOOTH = _functions(
    F.gelu,
    torch.tanh,
    torch.Tensor.tanh,
    F.tanh,
    torch.sigmoid,
    torch.Tensor.sigmoid,
    F.sigmoid,
    F.silu,
    F.elu,
    F.softplus,
    F.mish,
    F.selu,
    torch.selu,
    F.celu,
    torch.celu,
    F.hardswish,
    F.softmax,
    torch.softmax,
    torch.Tensor.softmax,
    F.logsigmoid,
)
_POOL_ARGS = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
_MODULE_OF = {
    "relu": (nn.ReLU,),
    "leaky_relu": (nn.LeakyReLU,),
    "max_pool1d": (nn.MaxPool1d,),
    "max_pool2d": (nn.MaxPool2d,),
}


class SmoothNonlinearityError(ValueError):
    """The model runs a smooth nonlinearity: piecewise-linear measurements (LC, partitions) are undefined for it."""


@dataclass(frozen=True)
class Call:
    """One call of a nonlinearity: its layer name, call number within the pass, kind, and pre-activation (a copy)."""

    name: str
    call: int
    kind: str
    pre: torch.Tensor
    pool: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.name}#{self.call}"

    def pieces(self) -> torch.Tensor:
        """Which linear piece each neuron is in: (batch, neurons). ReLU and LeakyReLU: the sign of the
        pre-activation; max-pooling: the position of each window's maximum."""
        if self.kind in ("relu", "leaky_relu"):
            return (self.pre > 0).flatten(1).to(torch.int64)
        pool = F.max_pool2d if self.kind == "max_pool2d" else F.max_pool1d
        p = self.pool
        _, idx = pool(
            self.pre,
            p["kernel_size"],
            p.get("stride"),
            p.get("padding", 0),
            p.get("dilation", 1),
            p.get("ceil_mode", False),
            return_indices=True,
        )
        return idx.flatten(1)


def _kind(func: Any, args: tuple, kwargs: dict) -> tuple[str | None, dict[str, Any]]:
    """What ``func(*args, **kwargs)`` is: a piecewise-linear kind, "smooth", or None (anything else)."""
    if func in _RELU:
        return "relu", {}
    if func in _LEAKY:
        return "leaky_relu", {}
    if func in _CLAMP:
        low = args[1] if len(args) > 1 else kwargs.get("min")
        high = args[2] if len(args) > 2 else kwargs.get("max")
        return ("relu" if _is_zero(low) and high is None else None), {}
    if func in _CLAMP_MIN:
        low = args[1] if len(args) > 1 else kwargs.get("min")
        return ("relu" if _is_zero(low) else None), {}
    if func in _POOL:
        bound = dict(zip(_POOL_ARGS, args)) | kwargs
        bound.pop("input", None)
        bound.pop("return_indices", None)
        return _POOL[func], bound
    if func in _SMOOTH:
        return "smooth", {}
    return None, {}


def _is_zero(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() == 1 and float(value) == 0.0
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0


class _Intercept(TorchFunctionMode):
    def __init__(self, owner: Callable[[], tuple[str, nn.Module | None]], on_call: Callable[[Call], None]) -> None:
        super().__init__()
        self.owner, self.on_call = owner, on_call
        self.calls: dict[str, int] = {}

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        kind, pool = _kind(func, args, kwargs)
        if kind is not None:
            name, module = self.owner()
            function = getattr(func, "__name__", str(func))
            if kind == "smooth":
                where = (
                    f"module {name!r} ({type(module).__name__})"
                    if isinstance(module, SMOOTH)
                    else f"{function}() in {name or 'the model'}'s forward"
                )
                raise SmoothNonlinearityError(
                    f"this needs a piecewise-linear network, and {where} is a smooth nonlinearity; "
                    "supported: ReLU, LeakyReLU and max-pooling, as modules or functions"
                )
            if not isinstance(module, _MODULE_OF[kind]):  # a function called in some module's forward
                name = f"{name}.{function}()" if name else f"{function}()"
            call = self.calls.get(name, 0)
            self.calls[name] = call + 1
            pre = args[0].detach()
            if (
                func in _IN_PLACE
                or kwargs.get("inplace") is True
                or (func in (F.relu, F.leaky_relu) and any(a is True for a in args[1:]))
            ):
                pre = pre.clone()  # the call is about to overwrite its input
            self.on_call(Call(name, call, kind, pre, pool))
        return func(*args, **kwargs)


def refuse_smooth_modules(model: nn.Module) -> None:
    """Refuse a model holding a smooth nonlinearity module, before any work (functions show only in a forward pass)."""
    smooth = [f"{name} ({type(m).__name__})" for name, m in model.named_modules() if isinstance(m, SMOOTH)]
    if smooth:
        raise SmoothNonlinearityError(
            f"this needs a piecewise-linear network; these modules are not: {', '.join(smooth[:5])}. "
            f"Supported: ReLU, LeakyReLU and max-pooling, as modules or functions"
        )


@contextlib.contextmanager
def piecewise_calls(model: nn.Module, on_call: Callable[[Call], None]) -> Iterator[None]:
    """Report every piecewise-linear nonlinearity that runs inside this context to ``on_call(Call)``.

    Use one context per forward pass (calls are counted from 0). The module that
    is running is tracked with forward hooks on ``model``'s modules, removed on
    leaving, also when the model raises.

    Raises
    ------
    SmoothNonlinearityError
        A smooth nonlinearity runs (module or function), named.
    """
    refuse_smooth_modules(model)
    stack: list[tuple[str, nn.Module]] = []

    def enter(name: str, module: nn.Module) -> None:
        stack.append((name, module))

    def leave() -> None:  # returns None: a forward hook's return value would replace the module's output
        if stack:
            stack.pop()

    handles = []
    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(lambda m, args, name=name: enter(name, m)))
        handles.append(module.register_forward_hook(lambda m, args, out: leave()))

    def owner() -> tuple[str, nn.Module | None]:
        return stack[-1] if stack else ("", None)

    try:
        with _Intercept(owner, on_call):
            yield
    finally:
        for handle in handles:
            handle.remove()


def nonlinearity_calls(model: nn.Module, example: torch.Tensor) -> list[Call]:
    """The nonlinearity calls of one forward pass of ``example``, in the order they run.

    Raises
    ------
    ValueError
        None at all (nothing to count), or a smooth one (:class:`SmoothNonlinearityError`).
    """
    calls: list[Call] = []
    with torch.no_grad(), piecewise_calls(model, calls.append):
        model(example)
    if not calls:
        raise ValueError("the model runs no ReLU, LeakyReLU or max-pooling (as modules or functions): nothing to count")
    return calls


def labels(calls: list[Call]) -> list[str]:
    """Layer labels of calls: the name, or ``name#k`` for a name called more than once in the pass."""
    repeated = {c.name for c in calls if c.call > 0}
    return [c.label if c.name in repeated else c.name for c in calls]
