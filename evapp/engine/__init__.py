"""Inference engines: stateful per-frame stepping under a streaming policy (torch, ONNX Runtime)."""

from .base import EngineAnswer, StreamingEngine, parse_policy
from .torch_engine import TorchEngine, resolve_device

__all__ = ["EngineAnswer", "StreamingEngine", "TorchEngine", "parse_policy", "resolve_device"]
