"""The papers' experiments as presets."""

from .presets import PRESETS, preset

__all__ = ["PRESETS", "preset"]
