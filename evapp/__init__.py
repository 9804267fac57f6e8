"""evapp: real-time event-camera gesture recognition with stateful spiking transformers."""

__version__ = "0.1.0"
