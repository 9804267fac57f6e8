"""evapp: real-time event-camera gesture recognition with stateful spiking transformers."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("evapp")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
