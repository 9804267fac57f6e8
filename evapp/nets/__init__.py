"""Spiking transformers for gesture recognition and their registry (``create_model``, ``list_models``)."""

from . import saformer, sglformer, spikingresformer  # noqa: F401  (register the models)
from .base import (
    MeanHeadClassifier,
    ModelConfig,
    SpikingClassifier,
    calibrate_bn,
    count_params,
    create_model,
    get_config,
    list_models,
)

__all__ = [
    "MeanHeadClassifier",
    "ModelConfig",
    "SpikingClassifier",
    "calibrate_bn",
    "count_params",
    "create_model",
    "get_config",
    "list_models",
]
