"""Models by name: ``build_model("ansuini_cnn", in_channels=1, num_classes=10)``.

Any other ``torch.nn.Module`` works with layerscope's probes as well; the registered
ones are the architectures of the three papers, with width and depth as
parameters. Models of the libraries users have are named ``"torchvision:resnet18"``
(``torchvision.models.get_model``) or ``"timm:resnet18"`` (``timm.create_model``),
with the library's own constructor arguments (``num_classes``, ``in_chans``,
``weights="DEFAULT"`` or ``pretrained=True`` to download weights where the
network allows it; random initialisation otherwise).
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


#: Libraries whose models are named ``LIBRARY:NAME``.
LIBRARIES = ("torchvision", "timm")


def _library(library: str) -> object:
    """The library's module, or a ValueError saying why it cannot be used here."""
    try:
        if library == "torchvision":
            import torchvision.models as module
        else:
            import timm as module
    except ImportError:
        raise ValueError(f"models named {library}:NAME need {library}: pip install {library}") from None
    except Exception as err:  # noqa: BLE001 - a broken install (a CUDA build of torchvision beside a CPU torch) raises anything
        raise ValueError(
            f"{library} is installed but cannot be imported ({type(err).__name__}: {err}); reinstall it to match torch"
        ) from None
    return module


def check_model_name(name: str) -> str:
    """A registered model's name, or ``LIBRARY:NAME`` of a model the library has; a ValueError naming the choices
    otherwise.
    """
    library, _, model = name.partition(":")
    if not model:
        if name not in MODELS:
            raise ValueError(
                f"unknown model {name!r}; choose from {', '.join(sorted(MODELS))}, or LIBRARY:NAME with LIBRARY one "
                f"of {', '.join(LIBRARIES)}"
            )
        return name
    if library not in LIBRARIES:
        raise ValueError(f"unknown model library {library!r} in {name!r}; choose from {', '.join(LIBRARIES)}")
    module = _library(library)
    known = module.list_models()
    if model not in known:
        import difflib

        close = difflib.get_close_matches(model, known, n=3)
        raise ValueError(f"{library} has no model {model!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
    return name


def build_model(name: str, **params: object) -> nn.Module:
    """Build a registered model, or a library's (``"torchvision:resnet18"``, ``"timm:vit_tiny_patch16_224"``).

    Raises
    ------
    ValueError
        For an unknown name (listing the known ones) or parameters the model does not take.
    """
    library, _, model = name.partition(":")
    if model:
        check_model_name(name)
        module = _library(library)
        try:
            if library == "torchvision":
                return module.get_model(model, **params)
            return module.create_model(model, **params)
        except (TypeError, ValueError) as err:
            raise ValueError(f"bad parameters for model {name!r}: {err}") from None
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
                raise ValueError(
                    f"bad parameters for model {name!r}: {key}: {err.errors()[0]['msg']}, got {value!r}"
                ) from None
    return cls(**params)


__all__ = ["LIBRARIES", "MLP", "MODELS", "VGG", "AnsuiniCNN", "ResNet", "build_model", "check_model_name"]
