"""Model-level handling of spiking state: reset, flat get/set, per-row reset, shapes, firing rates.

Every module that holds state between time steps derives from :class:`Stateful`. The model's state is the
concatenation of their ``state_tensors()`` in ``model.modules()`` order (registration order, depth first),
which is deterministic for a given architecture: this flat list is what the ONNX export passes in and out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = [
    "StateSpec",
    "Stateful",
    "firing_rates",
    "get_state",
    "reset_spike_counts",
    "reset_state",
    "set_spike_recording",
    "set_state",
    "state_specs",
    "stateful_modules",
    "zero_state",
]


class Stateful:
    """Mixin for modules carrying state across time steps (neurons, readout accumulators).

    Subclasses implement ``reset()``, ``reset_rows(keep)`` (keep: float ``[B]``, 0 = clear that row),
    ``state_tensors()`` and ``load_state_tensors(list)``. All state tensors have the batch as dim 0.
    """

    def reset(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def reset_rows(self, keep: Tensor) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def state_tensors(self) -> list[Tensor | None]:  # pragma: no cover - interface
        raise NotImplementedError

    def load_state_tensors(self, tensors: list[Tensor]) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def state_fill_values(self) -> list[float]:
        """Value each state tensor holds right after reset (0 for everything here)."""
        return [0.0] * len(self.state_tensors())


@dataclass(frozen=True)
class StateSpec:
    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    fill: float = 0.0


def stateful_modules(model: nn.Module) -> list[tuple[str, Stateful]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, Stateful)]


def reset_state(model: nn.Module, rows: Tensor | None = None) -> None:
    """Clear all state (``rows=None``), or only the batch rows where the bool/0-1 mask ``rows`` is set."""
    if rows is None:
        for _, m in stateful_modules(model):
            m.reset()
        return
    keep = 1.0 - rows.to(torch.float32)
    for _, m in stateful_modules(model):
        m.reset_rows(keep)


def get_state(model: nn.Module) -> list[Tensor]:
    """Flat, ordered state. Raises if some state has not been shaped yet (no step since reset)."""
    out: list[Tensor] = []
    for name, m in stateful_modules(model):
        for i, t in enumerate(m.state_tensors()):
            if t is None:
                raise RuntimeError(
                    f"state of {name or type(m).__name__}[{i}] is not materialised yet; run a step "
                    "first or call set_state(model, zero_state(model, batch_size))"
                )
            out.append(t)
    return out


def set_state(model: nn.Module, state: list[Tensor]) -> None:
    mods = stateful_modules(model)
    need = sum(len(m.state_tensors()) for _, m in mods)
    if len(state) != need:
        raise ValueError(f"expected {need} state tensors, got {len(state)}")
    i = 0
    for _, m in mods:
        n = len(m.state_tensors())
        m.load_state_tensors(list(state[i : i + n]))
        i += n


def state_specs(
    model: nn.Module, batch_size: int, input_shape: tuple[int, ...] | None = None
) -> list[StateSpec]:
    """Names, shapes and dtypes of the flat state for ``batch_size``, found by one probe step.

    The probe runs in eval mode under ``no_grad`` on a zero frame and the model's previous state, mode and
    spike counters are restored afterwards. ``input_shape`` defaults to ``model.input_shape`` (C, H, W).
    """
    if input_shape is None:
        input_shape = tuple(model.input_shape)
    mods = stateful_modules(model)
    saved = [list(m.state_tensors()) for _, m in mods]
    recording = [
        (m, m.record_spikes, m.spike_sum, m.spike_elems)
        for m in model.modules()
        if hasattr(m, "record_spikes")
    ]
    was_training = model.training
    try:
        model.eval()
        set_spike_recording(model, False)
        reset_state(model)
        p = next(model.parameters())
        with torch.no_grad():
            model.step(torch.zeros(batch_size, *input_shape, device=p.device, dtype=p.dtype))
        specs = []
        for name, m in mods:
            for i, (t, fill) in enumerate(zip(m.state_tensors(), m.state_fill_values(), strict=True)):
                specs.append(StateSpec(f"{name}.{i}" if name else str(i), tuple(t.shape), t.dtype, fill))
    finally:
        for (_, m), ts in zip(mods, saved, strict=True):
            m.load_state_tensors(ts)
        for m, rec, ssum, selem in recording:
            m.record_spikes, m.spike_sum, m.spike_elems = rec, ssum, selem
        model.train(was_training)
    return specs


def zero_state(model: nn.Module, batch_size: int, device: torch.device | str | None = None) -> list[Tensor]:
    """Fresh state tensors equivalent to a reset (what a stream starts from)."""
    if device is None:
        device = next(model.parameters()).device
    return [torch.full(s.shape, s.fill, dtype=s.dtype, device=device) for s in state_specs(model, batch_size)]


# -- firing-rate diagnostics ---------------------------------------------------------------------------
def _spiking(model: nn.Module):
    return [(n, m) for n, m in model.named_modules() if hasattr(m, "record_spikes")]


def set_spike_recording(model: nn.Module, on: bool = True) -> None:
    for _, m in _spiking(model):
        m.record_spikes = on


def reset_spike_counts(model: nn.Module) -> None:
    for _, m in _spiking(model):
        m.reset_spike_count()


def firing_rates(model: nn.Module) -> dict[str, float]:
    """Mean spikes per neuron per step since the last ``reset_spike_counts``, per neuron layer."""
    out = {}
    for n, m in _spiking(model):
        r = m.firing_rate()
        if r is not None:
            out[n] = r
    return out
