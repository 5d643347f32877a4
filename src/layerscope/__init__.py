"""layerscope: the geometry of a neural network's layer representations while it learns."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("layerscope")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"
