"""Inference engines: stateful per-frame stepping under a streaming policy."""

from .torch_engine import EngineAnswer, TorchEngine, parse_policy, resolve_device

__all__ = ["EngineAnswer", "TorchEngine", "parse_policy", "resolve_device"]
