"""Spiking building blocks: neurons with explicit state and model-level state helpers."""

from .neurons import (
    LIF,
    ATanSurrogate,
    BaseNode,
    ParametricLIF,
    SigmoidSurrogate,
    atan_surrogate,
    sigmoid_surrogate,
)
from .state import (
    Stateful,
    StateSpec,
    firing_rates,
    get_state,
    reset_spike_counts,
    reset_state,
    set_spike_recording,
    set_state,
    state_specs,
    stateful_modules,
    zero_state,
)

__all__ = [
    "ATanSurrogate",
    "BaseNode",
    "LIF",
    "ParametricLIF",
    "SigmoidSurrogate",
    "StateSpec",
    "Stateful",
    "atan_surrogate",
    "firing_rates",
    "get_state",
    "reset_spike_counts",
    "reset_state",
    "set_spike_recording",
    "set_state",
    "sigmoid_surrogate",
    "state_specs",
    "stateful_modules",
    "zero_state",
]
