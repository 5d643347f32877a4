"""Models for the papers' experiments, by name: ``build_model("ansuini_cnn", in_channels=1, num_classes=10)``.

Any other ``torch.nn.Module`` works with layerscope's probes as well; these are the
architectures of the three papers, with width and depth as parameters.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable

import pydantic
from torch import nn

from .nets import MLP, VGG, AnsuiniCNN, ResNet

#: Model constructors by name.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "ansuini_cnn": AnsuiniCNN,
    "vgg": VGG,
    "resnet": ResNet,
}


def build_model(name: str, **params: object) -> nn.Module:
    """Build a registered model.

    Raises
    ------
    ValueError
        For an unknown name (listing the known ones) or parameters the model does not take.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(sorted(MODELS))}")
    cls = MODELS[name]
    try:
        inspect.signature(cls).bind(**params)
    except TypeError as err:
        raise ValueError(f"bad parameters for model {name!r}: {err}") from None
    # Each value checked against the constructor's type hints (pydantic), so that
    # width = "abc" is an error naming the parameter, not a TypeError deep inside.
    hints = typing.get_type_hints(cls.__init__)
    for key, value in params.items():
        if key in hints:
            try:
                params[key] = pydantic.TypeAdapter(hints[key]).validate_python(value)
            except pydantic.ValidationError as err:
                raise ValueError(f"bad parameters for model {name!r}: {key}: {err.errors()[0]['msg']}, got {value!r}") from None
    return cls(**params)


__all__ = ["MLP", "MODELS", "VGG", "AnsuiniCNN", "ResNet", "build_model"]
