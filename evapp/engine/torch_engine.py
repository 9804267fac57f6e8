"""Stateful PyTorch inference engine: one frame in, zero or one answer out, state kept on the device.

The policies (``window``, ``staggered:K``, ``persistent``) live in :class:`evapp.engine.base.StreamingEngine`,
shared with the ONNX Runtime engine; this module supplies the torch backend. The model's state is always
materialised (a reset writes the reset values rather than dropping the tensors), so a compiled step sees the
same tensor shapes every call and compiles once, and the CUDA-graph path can keep static state buffers.

Fast paths, both optional:

- ``compile=True`` (or a ``torch.compile`` backend name) wraps ``model.step`` in ``torch.compile`` on any device;
  the first step then takes seconds, and a compile failure falls back to eager with a warning.
- ``cuda_graph=True`` (CUDA only) captures one step, optionally compiled, in a CUDA graph with static input and
  state buffers (``torch.cuda.graph``); each frame is then one copy in and one graph replay. Per-row and full
  resets write the static buffers in place. Spike recording is off on this path (``spike_rate`` is None):
  counters reassigned inside a captured graph would not accumulate.

Precision (``precision``): ``fp32`` (default) is exact, with TF32 switched off on CUDA so that T single steps
match one multi-step call. ``tf32`` lets cuDNN and matmuls round inputs to TF32 (CUDA); ``fp16`` and ``bf16``
run the step under ``torch.autocast`` (convolutions and matmuls in half precision, neurons and state in
float32). They are faster on a GPU and flip the odd near-threshold neuron, so a few answers differ from fp32
(agreement measured in the README, Deployment).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from ..binning import FrameSpec
from ..snn.neurons import BaseNode
from ..snn.state import get_state, reset_spike_counts, set_spike_recording, set_state, state_specs
from .base import EngineAnswer, StreamingEngine, parse_policy

__all__ = ["PRECISIONS", "EngineAnswer", "TorchEngine", "parse_policy", "resolve_device"]

PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
_AUTOCAST = {"fp16": torch.float16, "bf16": torch.bfloat16}


def model_frame_spec(cfg) -> FrameSpec:
    """The frames a model's config asks for (an untrained model: no training density to thin to)."""
    return FrameSpec(tuple(cfg.input_size), int(cfg.events_per_frame))


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise RuntimeError(f"device {device!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise RuntimeError(f"device {device!r} cannot run evapp's models; use auto, cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but no CUDA GPU is available; use --device cpu")
    return dev


class TorchEngine(StreamingEngine):
    """Drive a :class:`evapp.nets.SpikingClassifier` frame by frame under a streaming policy.

    ``feed(frame)`` takes one time step, a float32 ``[2, H, W]`` numpy array or tensor of event counts, and
    returns a list with zero or one :class:`EngineAnswer`.
    """

    kind = "torch"

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device = "auto",
        policy: str = "window",
        compile: bool | str = False,
        record_spikes: bool = True,
        precision: str = "fp32",
        cuda_graph: bool = False,
        frame_spec: FrameSpec | None = None,
        cpu_threads: int | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.cpu_threads = cpu_threads
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        if precision in ("tf32", "fp16") and self.device.type != "cuda":
            raise ValueError(f"precision {precision} needs a CUDA device (on the CPU: fp32 or bf16)")
        self.precision = precision
        if self.device.type == "cuda":
            # Process-wide. TF32 convs (PyTorch's cuDNN default) round pre-activations to ~1e-3, enough to flip
            # neurons sitting near threshold, and a flip propagates through the steps (docs/decisions.md, TF32).
            torch.backends.cudnn.allow_tf32 = precision == "tf32"
            torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        super().__init__(int(model.cfg.T), policy, tuple(model.input_shape), frame_spec or model_frame_spec(model.cfg))
        if cuda_graph and self.device.type != "cuda":
            raise ValueError(f"a CUDA graph needs a CUDA device, not {self.device.type}")
        self.model = model.to(self.device).eval()
        self.cuda_graph = cuda_graph
        self.record_spikes = record_spikes and not cuda_graph
        set_spike_recording(self.model, self.record_spikes)
        self._neurons = [m for m in self.model.modules() if isinstance(m, BaseNode)]
        self._specs = state_specs(self.model, self.K)
        self._state = [torch.full(s.shape, s.fill, dtype=s.dtype, device=self.device) for s in self._specs]
        self._x = torch.zeros(self.K, *self.input_shape, device=self.device)
        self._out: Tensor | None = None
        self._graph = None
        self._step_fn = self._autocast(self.model.step)
        self._compiled = False
        if compile:
            backend = compile if isinstance(compile, str) else "inductor"
            self._step_fn = torch.compile(self._step_fn, dynamic=False, backend=backend)
            self._compiled = True
        self.reset()

    def _autocast(self, step):
        """``step`` under autocast for fp16/bf16 (traced by torch.compile and captured by a CUDA graph alike)."""
        dtype = _AUTOCAST.get(self.precision)
        if dtype is None:
            return step
        device_type = self.device.type

        def step_in_half_precision(x: Tensor) -> Tensor:
            with torch.autocast(device_type, dtype=dtype):
                return step(x)

        return step_in_half_precision

    def claim_cpu_threads(self) -> Callable[[], None] | None:
        """On the CPU: torch's intra-op threads for this engine's steps (``cpu_threads``, default all cores but
        one, so the pipeline's reader thread keeps a core; README, Deployment); undone when the stream ends."""
        if self.device.type != "cpu":
            return None
        before = torch.get_num_threads()
        wanted = self.cpu_threads or max(1, min(before, (os.cpu_count() or 1) - 1))
        torch.set_num_threads(wanted)
        return lambda: torch.set_num_threads(before)

    # -- backend primitives ---------------------------------------------------------------------------
    def _stage(self, frame) -> None:
        x = torch.from_numpy(np.ascontiguousarray(frame)) if isinstance(frame, np.ndarray) else frame
        self._x.copy_(x.to(torch.float32).expand(self.K, *self.input_shape), non_blocking=True)

    def _reset_rows(self, row: int | None) -> None:
        if self._graph is not None:  # static buffers: write in place
            for t, s in zip(self._state, self._specs, strict=True):
                (t if row is None else t[row]).fill_(s.fill)
            return
        if row is None:
            self._state = [torch.full(s.shape, s.fill, dtype=s.dtype, device=self.device) for s in self._specs]
        else:
            state = get_state(self.model)
            keep = torch.ones(self.K, dtype=torch.bool, device=self.device)
            keep[row] = False
            self._state = [
                torch.where(keep.view(-1, *([1] * (t.dim() - 1))), t, torch.full_like(t, s.fill))
                for t, s in zip(state, self._specs, strict=True)
            ]
        set_state(self.model, self._state)

    def _run_eager(self, x: Tensor) -> Tensor:
        if self._compiled:
            try:
                return self._step_fn(x)
            except Exception as exc:  # noqa: BLE001 - any compile failure falls back to eager
                warnings.warn(f"torch.compile failed ({exc}); falling back to eager", stacklevel=4)
                self._step_fn, self._compiled = self._autocast(self.model.step), False
        return self._step_fn(x)

    def _step(self) -> None:
        if self.cuda_graph:
            if self._graph is None:
                self._capture()
            self._graph.replay()
            return
        self._out = self._run_eager(self._x)

    def _capture(self) -> None:
        """Capture one step into a CUDA graph: static input ``_x``, static state ``_state``, static logits."""
        static = [t.clone() for t in get_state(self.model)]  # the state the first step must start from
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):  # warm-up (compile, cuDNN autotune) outside the capture
            for _ in range(3):
                set_state(self.model, [t.clone() for t in static])
                self._run_eager(self._x)
        torch.cuda.current_stream(self.device).wait_stream(side)
        self._state = static
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            set_state(self.model, self._state)
            out = self._step_fn(self._x)
            for dst, src in zip(self._state, get_state(self.model), strict=True):
                dst.copy_(src)
        self._graph, self._out = graph, out
        set_state(self.model, self._state)

    def _remap_rows(self, rows: list[int | None]) -> None:
        if self._graph is not None or self.cuda_graph:
            raise NotImplementedError("a captured CUDA graph has a fixed batch: choose a fixed policy with "
                                      "--cuda-graph")
        old = get_state(self.model)
        specs = [dataclasses.replace(s, shape=(len(rows), *s.shape[1:])) for s in self._specs]  # batch-first
        self._state = [
            torch.stack([t[r] if r is not None else torch.full(s.shape[1:], s.fill, dtype=s.dtype, device=self.device)
                         for r in rows])
            for t, s in zip(old, specs, strict=True)
        ]
        self._specs = specs
        self._x = torch.zeros(len(rows), *self.input_shape, device=self.device)
        set_state(self.model, self._state)

    def _logits(self, row: int) -> np.ndarray:
        return self._out[row].float().cpu().numpy()  # syncs the device

    def _take_spike_rate(self) -> float | None:
        if not self.record_spikes or not self._neurons:
            return None
        sums = torch.stack([m.spike_sum for m in self._neurons])
        elems = torch.stack([m.spike_elems for m in self._neurons])
        valid = elems > 0
        rate = float(torch.where(valid, sums / elems.clamp(min=1), 0).sum() / valid.sum())  # one sync
        reset_spike_counts(self.model)
        return None if rate != rate else rate  # NaN: no layer has counted yet

    def _clear_spike_counts(self) -> None:
        reset_spike_counts(self.model)

    # -- public ---------------------------------------------------------------------------------------
    @torch.inference_mode()
    def feed(self, frame) -> list[EngineAnswer]:
        return super().feed(frame)

    @torch.inference_mode()
    def reset(self) -> None:
        super().reset()

    @torch.inference_mode()
    def set_staggered(self, K: int) -> None:
        super().set_staggered(K)

    @torch.inference_mode()
    def set_policy(self, policy: str) -> None:
        super().set_policy(policy)
