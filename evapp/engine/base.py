"""The streaming policies, shared by every inference engine (torch, ONNX Runtime).

Policies (DESIGN.md section 3):

- ``window``: reset every T frames, answer at the end of each window (the training condition).
- ``staggered:K``: K windows offset by T/K frames run as ONE batch of K rows; the row whose window starts
  at a frame is reset alone (per-row reset), and every T/K frames the row whose window just completed
  answers. The first answer comes after T frames; every answer is a training-condition answer.
- ``persistent``: never reset (except ``reset()``); answer every frame from the running readout. Only
  meaningful for a model trained on continuous streams.

:class:`StreamingEngine` holds this logic and the answer construction once; a backend supplies five
primitives on a batch of ``K`` rows (K = 1 except for ``staggered:K``): stage a frame, reset all rows or one
row of the state, take one step, read one row's logits to the host, and report the firing rate.

Every engine also declares what the pipeline needs to know about it: ``frame_spec`` (the frames the model was
trained on), ``kind`` (``torch`` or ``onnx``), ``policy_text`` and :meth:`StreamingEngine.claim_cpu_threads`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from evapp.binning import FrameSpec

__all__ = ["EngineAnswer", "StreamingEngine", "parse_policy", "policy_text"]


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


def policy_text(name: str, K: int) -> str:
    """The spelling ``parse_policy`` reads back: ``window``, ``staggered:K`` or ``persistent``."""
    return f"staggered:{K}" if name == "staggered" else name


class StreamingEngine:
    """Frame in, zero or one :class:`EngineAnswer` out, under a streaming policy; state stays in the backend.

    Subclasses call ``super().__init__(T, policy, input_shape, frame_spec)`` once their backend can run a batch
    of :attr:`batch` rows, then :meth:`reset`, and implement the ``_``-prefixed primitives below.
    """

    kind = "engine"  # "torch" or "onnx" in the backends

    def __init__(self, T: int, policy: str, input_shape: tuple[int, ...], frame_spec: FrameSpec) -> None:
        self.policy, self.K = parse_policy(policy)
        self.T = int(T)
        if self.policy == "staggered" and self.T % self.K:
            raise ValueError(f"staggered:{self.K} needs K to divide T={self.T} (answers every T/K frames)")
        self.stride = self.T // self.K
        self.input_shape = tuple(input_shape)
        if tuple(self.input_shape[-2:]) != frame_spec.input_size:
            raise ValueError(f"frame spec {frame_spec.input_size} does not match the model input {self.input_shape}")
        self.frame_spec = frame_spec
        self.frames_since_reset = 0
        self.frames_in_window = 0  # window policy: frames of the current window
        self._row_frames = np.zeros(self.K, np.int64)  # staggered: frames each row has seen since its reset

    @property
    def policy_text(self) -> str:
        return policy_text(self.policy, self.K)

    def claim_cpu_threads(self) -> Callable[[], None] | None:
        """Called by the pipeline before streaming: take the CPU threads this engine should use while the
        pipeline's reader thread keeps a core; returns the undo, or None when there was nothing to take."""
        return None

    @property
    def batch(self) -> int:
        """Rows run per step: K for ``staggered:K``, else 1."""
        return self.K

    # -- backend primitives ---------------------------------------------------------------------------
    def _stage(self, frame) -> None:  # pragma: no cover - interface
        """Put one validated ``[C, H, W]`` frame (numpy or tensor) into every row of the next step's input."""
        raise NotImplementedError

    def _reset_rows(self, row: int | None) -> None:  # pragma: no cover - interface
        """Return the state of batch row ``row`` (all rows when None) to its post-reset value."""
        raise NotImplementedError

    def _step(self) -> None:  # pragma: no cover - interface
        """Advance every row one time step on the staged frame (asynchronous where the device allows)."""
        raise NotImplementedError

    def _logits(self, row: int) -> np.ndarray:  # pragma: no cover - interface
        """Host copy (float32 ``[num_classes]``) of the last step's logits of ``row``; syncs the device."""
        raise NotImplementedError

    def _take_spike_rate(self) -> float | None:  # pragma: no cover - interface
        """Mean over neuron layers of spikes/neuron/step since the last call (None if not recorded); clears."""
        raise NotImplementedError

    def _clear_spike_counts(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def _remap_rows(self, rows: list[int | None]) -> None:
        """Make the batch ``len(rows)`` rows: new row j takes the state of old row ``rows[j]``, or the reset state
        where that is None. Backends that cannot re-batch while streaming keep this default."""
        raise NotImplementedError(f"the {self.kind} engine cannot change its policy while streaming")

    @property
    def can_change_policy(self) -> bool:
        return type(self)._remap_rows is not StreamingEngine._remap_rows

    # -- shared ---------------------------------------------------------------------------------------
    def _check_frame(self, frame):
        if tuple(frame.shape) != self.input_shape:
            raise ValueError(f"frame shape {tuple(frame.shape)} does not match the model input {self.input_shape}")
        return frame

    def reset(self) -> None:
        """Clear all state and spike counters; the next frame starts a new stream."""
        self._reset_rows(None)
        self._clear_spike_counts()
        self.frames_since_reset = 0
        self.frames_in_window = 0
        self._row_frames[:] = 0

    def set_policy(self, policy: str) -> None:
        """Between two frames, move among ``staggered:K`` and ``persistent`` (what --policy auto does). Going to
        persistent keeps the row with the longest history, never reset again; leaving it starts every row of the
        staggered batch at its own window (no answer before a whole window)."""
        name, K = parse_policy(policy)
        if name == "window" or self.policy == "window":
            raise ValueError("the window policy does not change while streaming; use staggered:K or persistent")
        if name == self.policy == "staggered":
            self.set_staggered(K)
        elif name == "persistent" and self.policy == "staggered":
            self._remap_rows([int(np.argmax(self._row_frames))])
            self.policy, self.K, self.stride = "persistent", 1, self.T
            self._row_frames = np.array([self._row_frames.max()], np.int64)
        elif name == "staggered" and self.policy == "persistent":
            if self.T % K:
                raise ValueError(f"staggered:{K} needs K to divide T={self.T}")
            self._remap_rows([None] * K)
            self.policy, self.K, self.stride = "staggered", K, self.T // K
            self._row_frames = np.zeros(K, np.int64)

    def set_staggered(self, K: int) -> None:
        """Switch ``staggered:K`` between two frames, keeping every row whose window schedule survives: row r of
        staggered:K starts its windows at frames g = r * T/K (mod T), so going down keeps the rows that start
        where the new rows do, and going up adds rows whose first window is still to come (a row answers only
        after a whole window since its reset, so no answer comes from a partial one)."""
        if self.policy != "staggered":
            raise ValueError(f"only a staggered policy changes its K, not {self.policy_text}")
        if K < 1 or self.T % K:
            raise ValueError(f"staggered:{K} needs K to divide T={self.T}")
        if K == self.K:
            return
        stride = self.T // K
        rows = [(j * stride) // self.stride if (j * stride) % self.stride == 0 else None for j in range(K)]
        self._remap_rows(rows)
        self._row_frames = np.array([self._row_frames[r] if r is not None else 0 for r in rows], np.int64)
        self.K, self.stride = K, stride

    def _answer(self, row: int, t0: float, frames: int) -> EngineAnswer:
        lg = np.asarray(self._logits(row), dtype=np.float32)
        step_ms = (time.perf_counter() - t0) * 1e3
        p = np.exp(lg - lg.max())
        p /= p.sum()
        cid = int(p.argmax())
        return EngineAnswer(lg, p, cid, float(p[cid]), step_ms, self._take_spike_rate(), frames,
                            self.frames_since_reset)

    def feed(self, frame) -> list[EngineAnswer]:
        """One time step: ``frame`` is a float32 ``[C, H, W]`` numpy array or tensor of event counts."""
        t0 = time.perf_counter()
        self._stage(self._check_frame(frame))
        out: list[EngineAnswer] = []
        g = self.frames_since_reset
        if self.policy == "window":
            if self.frames_in_window == 0:
                self._reset_rows(None)
            self._step()
            self.frames_in_window += 1
            if self.frames_in_window == self.T:
                out.append(self._answer(0, t0, self.T))
                self.frames_in_window = 0
        elif self.policy == "staggered":
            if g % self.stride == 0:  # row (g / stride) mod K starts a new window with this frame
                row = (g // self.stride) % self.K
                self._reset_rows(row)
                self._row_frames[row] = 0
            self._step()
            self._row_frames += 1
            done = g + 1
            row = (done // self.stride) % self.K
            if done % self.stride == 0 and self._row_frames[row] >= self.T:
                out.append(self._answer(row, t0, self.T))
        else:  # persistent
            self._step()
            self._row_frames += 1
            out.append(self._answer(0, t0, int(self._row_frames[0])))
        self.frames_since_reset += 1
        return out
