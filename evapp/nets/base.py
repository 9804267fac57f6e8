"""Model configs as data, a timm-style registry, and the streaming classifier base class."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import InputError
from ..events import GESTURE_CLASSES
from ..snn.state import reset_state

__all__ = [
    "ModelConfig",
    "SpikingClassifier",
    "calibrate_bn",
    "count_params",
    "create_model",
    "get_config",
    "list_models",
    "register_model",
]


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model and to feed it frames made like its training frames.

    ``input_size`` is (H, W) of the 2-polarity count frame ``[2, H, W]`` the model takes; ``in_channels`` is
    always 2 (SpikingResformer appends its third, summed channel itself). ``events_per_frame`` (N) is a
    provisional default: a trained artifact records the N it was trained with and overrides it.
    ``extra`` holds architecture-specific knobs (documented in each architecture module).
    """

    name: str
    arch: str
    embed_dims: tuple[int, ...]
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    T: int = 16
    input_size: tuple[int, int] = (128, 128)
    in_channels: int = 2
    events_per_frame: int = 20_000
    num_classes: int = 11
    class_names: tuple[str, ...] = GESTURE_CLASSES
    mlp_ratio: int = 4
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown model config fields: {sorted(unknown)}")
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        if "extra" in d:  # JSON turns tuples into lists; restore them so configs compare equal
            d["extra"] = {k: tuple(v) if isinstance(v, list) else v for k, v in d["extra"].items()}
        return cls(**d)


_REGISTRY: dict[str, tuple[ModelConfig, Callable[[ModelConfig], nn.Module]]] = {}


def register_model(cfg: ModelConfig):
    """Decorator: register ``builder(cfg) -> model`` under ``cfg.name`` with ``cfg`` as the default."""

    def deco(builder: Callable[[ModelConfig], nn.Module]):
        if cfg.name in _REGISTRY:
            raise ValueError(f"model {cfg.name!r} registered twice")
        _REGISTRY[cfg.name] = (cfg, builder)
        return builder

    return deco


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_config(name: str, **overrides) -> ModelConfig:
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    cfg = _REGISTRY[name][0]
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    bad = set(overrides) - names
    if bad:
        raise TypeError(f"unknown config override(s) for {name}: {sorted(bad)}")
    if "extra" in overrides:  # merge, so one knob can be overridden alone
        overrides["extra"] = {**cfg.extra, **overrides["extra"]}
    for k, v in overrides.items():
        if isinstance(v, list):
            overrides[k] = tuple(v)
    return dataclasses.replace(cfg, **overrides)


def create_model(name: str | ModelConfig, **overrides) -> SpikingClassifier:
    """Build a registered model; ``overrides`` replace config fields (e.g. ``T=4``, ``num_classes=10``).

    A full :class:`ModelConfig` (e.g. read from an artifact) is accepted in place of the name."""
    if isinstance(name, ModelConfig):
        cfg = dataclasses.replace(name, **overrides) if overrides else name
        if cfg.name not in _REGISTRY:
            raise KeyError(f"unknown model {cfg.name!r}; available: {', '.join(list_models())}")
    else:
        cfg = get_config(name, **overrides)
    return _REGISTRY[cfg.name][1](cfg)


class SpikingClassifier(nn.Module):
    """Common streaming interface.

    - ``forward(x)``: ``x`` is ``[T, B, 2, H, W]``; resets, runs multi-step, returns clip logits ``[B, K]``.
    - ``step(frame)``: ``frame`` is ``[B, 2, H, W]``; advances every neuron one step and returns the current
      answer ``[B, K]`` (running mean of per-step logits, or the ring-buffer STB head for SGLFormer).
    - ``reset()``: clears every neuron membrane and readout accumulator.

    Subclasses implement ``forward_steps(x) -> [T, B, ...]`` (continuing from the current state) and the
    readout. The streaming path is the multi-step path with T=1, so both share one graph.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.cfg.in_channels, *self.cfg.input_size)

    @property
    def num_classes(self) -> int:
        return self.cfg.num_classes

    def reset(self) -> None:
        reset_state(self)

    def _check(self, x: Tensor, dims: int) -> None:
        if x.dim() != dims or tuple(x.shape[-3:]) != self.input_shape:
            want = ("[T, B, " if dims == 5 else "[B, ") + ", ".join(map(str, self.input_shape)) + "]"
            raise ValueError(f"{self.cfg.name} expects input {want}, got {tuple(x.shape)}")

    def forward_steps(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def no_weight_decay(self) -> set[str]:
        """Parameter names to keep out of weight decay (PLIF ``w``, as SpikingResformer's code does)."""
        return {n for n, _ in self.named_parameters() if n.endswith(".w")}


class MeanHeadClassifier(SpikingClassifier):
    """Heads that average per-step logits over T (Spikformer/SAFormer, SpikingResformer): the streaming
    answer is the mean of the last T per-step logits (``layers.SlidingMean``), which within a window from reset
    is exact (architectures.md 2.6, 3.4, 4.2) and beyond it is what ``sliding_logits`` trains."""

    def forward_per_step(self, x: Tensor) -> Tensor:
        """Reset, run ``[T, B, 2, H, W]``, return per-step logits ``[T, B, K]``."""
        self._check(x, 5)
        self.reset()
        out = self.forward_steps(x)
        self.readout.update(out)
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_per_step(x).mean(0)

    def step(self, frame: Tensor) -> Tensor:
        self._check(frame, 4)
        return self.readout.update(self.forward_steps(frame.unsqueeze(0)))

    def sliding_logits(self, x: Tensor) -> Tensor:
        """Continuous-stream training: ``[L, B, 2, H, W]`` from the current state (no reset) -> ``[L, B, K]``,
        at each step the mean of the per-step logits of the last T steps (differentiable)."""
        per_step = self.forward_steps(x)
        total = per_step.cumsum(0)
        T = self.cfg.T
        if per_step.shape[0] > T:
            total = torch.cat([total[:T], total[T:] - total[:-T]])
        count = torch.arange(1, per_step.shape[0] + 1, device=x.device).clamp(max=T).view(-1, 1, 1)
        return total / count


def trunc_normal_init(module: nn.Module, std: float = 0.02, convs: bool = False) -> None:
    """timm-style init: trunc_normal(std) weights and zero bias for Linear (and Conv if ``convs``)."""
    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d) if convs else (nn.Linear,)
    for m in module.modules():
        if isinstance(m, kinds):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d) and convs:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@torch.no_grad()
def calibrate_bn(model: nn.Module, x: Tensor) -> None:
    """Set every BN's running statistics (and SpikingResformer's firing-rate buffers) from one multi-step
    batch ``x`` [T, B, 2, H, W], then leave the model in eval mode, reset.

    For untrained weights this gives realistic activity (unit-variance pre-activations, neurons that fire),
    which tests and benchmarks need; a trained model never needs it."""
    saved = {}
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            saved[m] = m.momentum
            m.reset_running_stats()
            m.momentum = None  # cumulative average: exactly this batch's statistics
    model.train()
    model(x)
    for m, mom in saved.items():
        m.momentum = mom
    model.eval()
    reset_state(model)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def classifier(model) -> nn.Linear:
    """The model's classifier: its last Linear layer with one output per class (fine-tuning maps its rows by name)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == model.cfg.num_classes]
    if not linears:
        raise InputError(f"{model.cfg.name} has no classifier layer with {model.cfg.num_classes} outputs.")
    return linears[-1]


def classifier_keys(model) -> set[str]:
    """The names, in ``model.named_parameters()`` and its state dict, of the classifier's weight and bias."""
    head = {id(p) for p in classifier(model).parameters()}
    return {name for name, p in model.named_parameters() if id(p) in head}
