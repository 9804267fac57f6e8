"""Stateful PyTorch inference engine: one frame in, zero or one answer out, state kept on the device.

Policies (DESIGN.md section 3):

- ``window``: reset every T frames, answer at the end of each window (the training condition).
- ``staggered:K``: K windows offset by T/K frames run as ONE batch of K rows; the row whose window starts
  at a frame is reset alone (per-row reset), and every T/K frames the row whose window just completed
  answers. The first answer comes after T frames; every answer is a training-condition answer.
- ``persistent``: never reset (except ``reset()``); answer every frame from the running readout. Only
  meaningful for a model trained on continuous streams.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..snn.neurons import BaseNode
from ..snn.state import reset_spike_counts, reset_state, set_spike_recording

__all__ = ["EngineAnswer", "TorchEngine", "parse_policy", "resolve_device"]


@dataclass
class EngineAnswer:
    logits: np.ndarray  # [K classes] float32
    probs: np.ndarray  # softmax of logits
    class_id: int
    confidence: float  # probs[class_id]
    step_ms: float  # wall time of the answering step, frame upload to logits on the host
    spike_rate: float | None  # mean over neuron layers of spikes/neuron/step since the previous answer
    frames_in_window: int  # frames since this answer's state was reset (T for window/staggered)
    frame_index: int  # index of the frame (0-based, since the engine's last reset) that completed it


def parse_policy(policy: str) -> tuple[str, int]:
    """``"window"`` -> ("window", 1); ``"staggered:K"`` -> ("staggered", K); ``"persistent"`` -> (.., 1)."""
    name, _, arg = policy.partition(":")
    name = name.strip().lower()
    if name in ("window", "persistent") and not arg:
        return name, 1
    if name == "staggered":
        try:
            k = int(arg) if arg else 4
        except ValueError:
            raise ValueError(f"bad policy {policy!r}: K in 'staggered:K' must be an integer") from None
        if k < 1:
            raise ValueError(f"bad policy {policy!r}: K must be >= 1")
        return name, k
    raise ValueError(f"unknown policy {policy!r}; use 'window', 'staggered:K' or 'persistent'")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but no CUDA GPU is available; use --device cpu")
    return dev


class TorchEngine:
    """Drive a :class:`evapp.nets.SpikingClassifier` frame by frame under a streaming policy.

    ``feed(frame)`` takes one time step, a float32 ``[2, H, W]`` numpy array or tensor of event counts, and
    returns a list with zero or one :class:`EngineAnswer`. ``compile=True`` (CUDA only) wraps ``model.step``
    in ``torch.compile``; the first step then takes seconds, and any compile failure falls back to eager.
    """

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device = "auto",
        policy: str = "window",
        compile: bool = False,
        record_spikes: bool = True,
        allow_tf32: bool = False,
    ) -> None:
        self.device = resolve_device(device)
        if self.device.type == "cuda" and not allow_tf32:
            # Process-wide. TF32 convs (PyTorch's cuDNN default) round pre-activations to ~1e-3, enough to flip
            # neurons sitting near threshold, and a flip propagates: measured on an H100, T single steps vs one
            # multi-step call then differ by up to 2.7 in the logits; with TF32 off SAFormer/SpikingResformer
            # match to 1e-7 (SGLFormer can still flip where cuDNN picks a different fp32 algorithm per batch).
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        self.policy, self.K = parse_policy(policy)
        self.T = int(model.cfg.T)
        if self.policy == "staggered" and self.T % self.K:
            raise ValueError(f"staggered:{self.K} needs K to divide T={self.T} (answers every T/K frames)")
        self.stride = self.T // self.K
        self.model = model.to(self.device).eval()
        self.input_shape = tuple(model.input_shape)
        self.record_spikes = record_spikes
        set_spike_recording(self.model, record_spikes)
        self._neurons = [m for m in self.model.modules() if isinstance(m, BaseNode)]
        self._row_masks = torch.eye(self.K, dtype=torch.bool, device=self.device)
        self._step = self.model.step
        self._compiled = False
        if compile:
            if self.device.type != "cuda":
                warnings.warn("compile=True is only used on CUDA; running eagerly", stacklevel=2)
            else:
                self._step = torch.compile(self.model.step, dynamic=False)
                self._compiled = True
        self.reset()

    @property
    def batch(self) -> int:
        return self.K

    def reset(self) -> None:
        reset_state(self.model)
        reset_spike_counts(self.model)
        self._g = 0  # frames fed since reset
        self._n = 0  # window policy: frames in the current window

    # -- internals ------------------------------------------------------------------------------------
    def _to_device(self, frame) -> Tensor:
        x = torch.from_numpy(np.ascontiguousarray(frame)) if isinstance(frame, np.ndarray) else frame
        if tuple(x.shape) != self.input_shape:
            raise ValueError(f"frame shape {tuple(x.shape)} does not match the model input {self.input_shape}")
        return x.to(self.device, torch.float32, non_blocking=True).unsqueeze(0)

    def _run(self, x: Tensor) -> Tensor:
        if self._compiled:
            try:
                return self._step(x)
            except Exception as exc:  # noqa: BLE001 - any compile failure falls back to eager
                warnings.warn(f"torch.compile failed ({exc}); falling back to eager", stacklevel=3)
                self._step, self._compiled = self.model.step, False
        return self._step(x)

    def _spike_rate(self) -> float | None:
        if not self.record_spikes:
            return None
        rates = [m.spike_sum / m.spike_elems for m in self._neurons if m.spike_sum is not None and m.spike_elems]
        reset_spike_counts(self.model)
        return float(torch.stack(rates).mean()) if rates else None

    def _answer(self, logits: Tensor, t0: float, frames: int) -> EngineAnswer:
        lg = logits.float().cpu().numpy()  # syncs the device
        step_ms = (time.perf_counter() - t0) * 1e3
        p = np.exp(lg - lg.max())
        p /= p.sum()
        cid = int(p.argmax())
        return EngineAnswer(lg, p, cid, float(p[cid]), step_ms, self._spike_rate(), frames, self._g)

    # -- public ---------------------------------------------------------------------------------------
    @torch.inference_mode()
    def feed(self, frame) -> list[EngineAnswer]:
        t0 = time.perf_counter()
        x = self._to_device(frame)
        out: list[EngineAnswer] = []
        g = self._g
        if self.policy == "window":
            if self._n == 0:
                reset_state(self.model)
            logits = self._run(x)
            self._n += 1
            if self._n == self.T:
                out.append(self._answer(logits[0], t0, self.T))
                self._n = 0
        elif self.policy == "staggered":
            if g % self.stride == 0:  # row (g / stride) mod K starts a new window with this frame
                reset_state(self.model, rows=self._row_masks[(g // self.stride) % self.K])
            logits = self._run(x.expand(self.K, *self.input_shape))
            done = g + 1
            if done % self.stride == 0 and done >= self.T:
                out.append(self._answer(logits[(done // self.stride) % self.K], t0, self.T))
        else:  # persistent
            logits = self._run(x)
            out.append(self._answer(logits[0], t0, g + 1))
        self._g += 1
        return out
