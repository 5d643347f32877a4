"""Models for the papers' experiments, by name: ``build_model("ansuini_cnn", in_channels=1, num_classes=10)``.

Any other ``torch.nn.Module`` works with layerscope's probes as well; these are the
architectures of the three papers, with width and depth as parameters.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

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
    try:
        inspect.signature(MODELS[name]).bind(**params)
    except TypeError as err:
        raise ValueError(f"bad parameters for model {name!r}: {err}") from None
    return MODELS[name](**params)


__all__ = ["MLP", "MODELS", "VGG", "AnsuiniCNN", "ResNet", "build_model"]
