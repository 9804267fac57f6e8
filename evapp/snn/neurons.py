"""Spiking neurons with explicit, device-resident membrane state.

Settings follow the reference implementations (shared/reference/architectures.md section 0.1, SpikingJelly
defaults): tau 2, ``decay_input=True``, threshold 1.0 (0.5 for the attention LIFs), hard reset to 0 with the
reset path detached, Heaviside forward with H(0) = 1 (spike when v >= threshold).

Step modes, as in SpikingJelly: a neuron in ``"m"`` (multi-step) mode takes ``[T, B, ...]`` and loops over T
internally; in ``"s"`` (single-step) mode it takes ``[B, ...]``. Either way the membrane ``v`` (shape
``[B, ...]``) survives between calls until :meth:`BaseNode.reset`, so T single steps equal one T-step call.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .state import Stateful

__all__ = [
    "ATanSurrogate",
    "BaseNode",
    "LIF",
    "ParametricLIF",
    "SigmoidSurrogate",
    "atan_surrogate",
    "sigmoid_surrogate",
]


class _HeavisideSurrogate(torch.autograd.Function):
    """Heaviside forward (H(0) = 1); the subclass gives the backward's derivative ``surrogate_grad(x, alpha)``."""

    @staticmethod
    def forward(ctx, x: Tensor, alpha: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @classmethod
    def backward(cls, ctx, grad: Tensor):
        (x,) = ctx.saved_tensors
        return grad * cls.surrogate_grad(x, ctx.alpha), None


class SigmoidSurrogate(_HeavisideSurrogate):
    """Backward g'(x) = alpha * sigmoid(alpha x) * (1 - sigmoid(alpha x)).

    SpikingJelly ``surrogate.Sigmoid``, default alpha 4 (architectures.md 0.1, SGLFormer/Spikformer)."""

    @staticmethod
    def surrogate_grad(x: Tensor, alpha: float) -> Tensor:
        sg = torch.sigmoid(alpha * x)
        return alpha * sg * (1.0 - sg)


class ATanSurrogate(_HeavisideSurrogate):
    """Backward g'(x) = (alpha / 2) / (1 + (pi / 2 * alpha * x)^2).

    SpikingJelly ``surrogate.ATan``, default alpha 2 (architectures.md 0.1, SpikingResformer)."""

    @staticmethod
    def surrogate_grad(x: Tensor, alpha: float) -> Tensor:
        return (alpha / 2.0) / (1.0 + (math.pi / 2.0 * alpha * x) ** 2)


def sigmoid_surrogate(x: Tensor, alpha: float = 4.0) -> Tensor:
    return SigmoidSurrogate.apply(x, alpha)


def atan_surrogate(x: Tensor, alpha: float = 2.0) -> Tensor:
    return ATanSurrogate.apply(x, alpha)


_SURROGATES = {"sigmoid": (SigmoidSurrogate, 4.0), "atan": (ATanSurrogate, 2.0)}


class _ChargeFireSequence(torch.autograd.Function):
    """A neuron's multi-step charge, fire and detached hard reset over ``[T, ...]`` as one node, for a constant
    leak ``k`` (v <- v + (x - (v - v_reset)) k): the forward is the neuron's own per-step arithmetic, so the
    spikes are the same bits; the backward runs the membrane recursion in reverse on whole tensors,
    dL/dh_t = dL/ds_t g'(h_t - th) + dL/dv_t (1 - s_t), dL/dv_{t-1} = dL/dh_t (1 - k), dL/dx_t = dL/dh_t k,
    where h is the membrane before the reset (the only tensor kept) and g' the surrogate's derivative."""

    @staticmethod
    def forward(ctx, x_seq: Tensor, v: Tensor, node: BaseNode):
        h_seq = torch.empty_like(x_seq)
        for t in range(x_seq.shape[0]):
            h = node.charge(v, x_seq[t])
            h_seq[t] = h
            v = node._reset(h, (h >= node.v_threshold).to(h.dtype))
        ctx.save_for_backward(h_seq)
        ctx.node = node
        return (h_seq >= node.v_threshold).to(x_seq.dtype), v

    @staticmethod
    def backward(ctx, grad_s: Tensor, grad_v: Tensor):  # an unused output's gradient comes as zeros
        (h_seq,) = ctx.saved_tensors
        node = ctx.node
        k = node.constant_leak
        above = h_seq - node.v_threshold
        grad_h = grad_s * node._sg_fn.surrogate_grad(above, node.alpha)
        kept = (above < 0).to(h_seq.dtype)  # 1 - s
        for t in range(h_seq.shape[0] - 1, -1, -1):
            grad_h[t].addcmul_(grad_v, kept[t])
            grad_v = grad_h[t] * (1.0 - k)
        return grad_h * k, None, None


class BaseNode(Stateful, nn.Module):
    """Integrate-and-fire skeleton: charge (subclass), fire, detached hard reset.

    State: ``v`` is a non-persistent buffer (follows ``.to(device)``, never lands in a ``state_dict``),
    ``None`` until the first input fixes its shape. Spike counting for firing-rate diagnostics is off
    unless ``record_spikes`` is set; it costs one reduction per call and stays on the device.
    """

    def __init__(
        self,
        v_threshold: float = 1.0,
        v_reset: float = 0.0,
        surrogate: str = "sigmoid",
        alpha: float | None = None,
        detach_reset: bool = True,
        step_mode: str = "m",
    ) -> None:
        super().__init__()
        if surrogate not in _SURROGATES:
            raise ValueError(f"unknown surrogate {surrogate!r}; choose from {sorted(_SURROGATES)}")
        if step_mode not in ("s", "m"):
            raise ValueError("step_mode must be 's' or 'm'")
        self.v_threshold = float(v_threshold)
        self.v_reset = float(v_reset)
        self.surrogate = surrogate
        self._sg_fn, default_alpha = _SURROGATES[surrogate]
        self.alpha = float(default_alpha if alpha is None else alpha)
        self.detach_reset = detach_reset
        self.step_mode = step_mode
        self.record_spikes = False
        self.register_buffer("v", None, persistent=False)
        # Spike counters are device tensors (float64: exact counts far beyond 2^24), never Python numbers:
        # a Python int mutated in ``step`` is a guard for torch.compile and forced a recompile every step.
        self.register_buffer("spike_sum", torch.zeros((), dtype=torch.float64), persistent=False)
        self.register_buffer("spike_elems", torch.zeros((), dtype=torch.float64), persistent=False)

    # -- dynamics -------------------------------------------------------------------------------------
    def charge(self, v: Tensor, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fire(self, v: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            return self._sg_fn.apply(v - self.v_threshold, self.alpha)
        return (v >= self.v_threshold).to(v.dtype)  # no graph needed: skip the autograd Function

    def _reset(self, v: Tensor, s: Tensor) -> Tensor:
        s_r = s.detach() if self.detach_reset else s
        if self.v_reset == 0.0:
            return v * (1.0 - s_r)
        return v * (1.0 - s_r) + s_r * self.v_reset

    def _init_v(self, x: Tensor) -> Tensor:
        v = self.v
        if v is None:
            return torch.full_like(x, self.v_reset)
        if v.shape != x.shape:
            raise RuntimeError(
                f"{type(self).__name__}: input {tuple(x.shape)} does not match the membrane state "
                f"{tuple(v.shape)}; call reset() before changing batch size or resolution"
            )
        return v

    def single_step(self, x: Tensor) -> Tensor:
        v = self.charge(self._init_v(x), x)
        s = self._fire(v)
        self.v = self._reset(v, s)
        self._count(s)
        return s

    def multi_step(self, x_seq: Tensor) -> Tensor:
        v = self._init_v(x_seq[0])
        if self._fused(x_seq, v):
            s_seq, self.v = _ChargeFireSequence.apply(x_seq, v, self)
            self._count(s_seq)
            return s_seq
        out = []
        for t in range(x_seq.shape[0]):
            v = self.charge(v, x_seq[t])
            s = self._fire(v)
            v = self._reset(v, s)
            out.append(s)
        self.v = v
        s_seq = torch.stack(out)
        self._count(s_seq)
        return s_seq

    def forward(self, x: Tensor) -> Tensor:
        return self.multi_step(x) if self.step_mode == "m" else self.single_step(x)

    # A constant leak lets a training-time multi-step call run as one autograd node with a hand-written
    # backward (SpikingJelly's fused multi-step neurons, Fang et al. 2023, do the same on the GPU); the loop of
    # small autograd nodes it replaces cost a fifth to a third of a CPU training step (README, Fine-tuning).
    # Subclasses with one opt in.
    constant_leak: float | None = None

    def _fused(self, x_seq: Tensor, v: Tensor) -> bool:
        return (self.constant_leak is not None and self.detach_reset and torch.is_grad_enabled()
                and x_seq.requires_grad and not v.requires_grad and not torch.jit.is_tracing()
                and not torch.compiler.is_compiling())

    # -- state ----------------------------------------------------------------------------------------
    def reset(self) -> None:
        self.v = None

    def reset_rows(self, keep: Tensor) -> None:
        """Zero the state of the batch rows where ``keep`` (shape [B], float 0/1) is 0; others untouched."""
        if self.v is not None:
            k = keep.to(self.v.dtype).view(-1, *([1] * (self.v.dim() - 1)))
            self.v = self.v * k + (1.0 - k) * self.v_reset

    def state_tensors(self) -> list[Tensor | None]:
        return [self.v]

    def load_state_tensors(self, tensors: list[Tensor]) -> None:
        (self.v,) = tensors

    def state_fill_values(self) -> list[float]:
        return [self.v_reset]

    # -- diagnostics ----------------------------------------------------------------------------------
    def _count(self, s: Tensor) -> None:
        if self.record_spikes:
            self.spike_sum = self.spike_sum + s.detach().sum(dtype=torch.float64)
            self.spike_elems = self.spike_elems + s.numel()

    def reset_spike_count(self) -> None:
        self.spike_sum = torch.zeros_like(self.spike_sum)
        self.spike_elems = torch.zeros_like(self.spike_elems)

    def firing_rate(self) -> float | None:
        elems = float(self.spike_elems)
        if elems == 0:
            return None
        return float(self.spike_sum) / elems

    def extra_repr(self) -> str:
        return (
            f"v_threshold={self.v_threshold}, v_reset={self.v_reset}, surrogate={self.surrogate}"
            f"(alpha={self.alpha}), detach_reset={self.detach_reset}, step_mode={self.step_mode!r}"
        )


class LIF(BaseNode):
    """Leaky integrate-and-fire, ``decay_input=True``: v <- v + (x - (v - v_reset)) / tau."""

    def __init__(self, tau: float = 2.0, **kw) -> None:
        super().__init__(**kw)
        if tau <= 1.0:
            raise ValueError("tau must be > 1")
        self.tau = float(tau)

    def charge(self, v: Tensor, x: Tensor) -> Tensor:
        return v + (x - (v - self.v_reset)) / self.tau

    @property
    def constant_leak(self) -> float:
        return 1.0 / self.tau

    def extra_repr(self) -> str:
        return f"tau={self.tau}, " + super().extra_repr()


class ParametricLIF(BaseNode):
    """PLIF (Fang et al. 2021): one learnable scalar ``w`` per layer, 1/tau = sigmoid(w).

    ``w0 = -ln(init_tau - 1)`` so init_tau 2 gives w0 = 0 (architectures.md 0.1). ``decay_input=True``:
    v <- v + (x - (v - v_reset)) * sigmoid(w).
    """

    def __init__(self, init_tau: float = 2.0, surrogate: str = "atan", **kw) -> None:
        super().__init__(surrogate=surrogate, **kw)
        if init_tau <= 1.0:
            raise ValueError("init_tau must be > 1")
        self.w = nn.Parameter(torch.tensor(-math.log(init_tau - 1.0)))

    def charge(self, v: Tensor, x: Tensor) -> Tensor:
        return v + (x - (v - self.v_reset)) * torch.sigmoid(self.w)

    def extra_repr(self) -> str:
        return f"tau={1.0 / torch.sigmoid(self.w.detach()).item():.4f}, " + super().extra_repr()
