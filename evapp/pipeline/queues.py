"""The pipeline's queues: the bounded frame queue with its control markers, a stream-time rate and the
viewer's buffer of the newest events."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from evapp.binning import FrameSpec


@dataclass
class FrameItem:
    counts: np.ndarray  # [2, H, W] float32
    t_end_us: int  # stream time of the frame's last event
    received_at: float  # perf_counter() when the batch holding its last event reached the pipeline
    frames_per_s: float  # frames per second over the last few frames (the decoder's motion measure)
    recording_us: int  # position in the recording (t_end_us without the loop offset), for the timeline
    generation: int  # which binner made it: frames of a binner that was replaced since are stale
    spec: FrameSpec  # the spec it was made with


def percentile(values, q: float) -> float | None:
    return None if len(values) == 0 else float(np.percentile(np.asarray(values, dtype=np.float64), q))


class Marker:
    """A queue item that is not a frame: never dropped, processed in order with the frames."""

    def __init__(self, kind: str, payload=None):
        self.kind, self.payload = kind, payload

    def __repr__(self) -> str:
        return f"Marker({self.kind!r})"


class FrameQueue:
    """Bounded frame queue: ``drop_oldest`` (live) discards the oldest frame when full, else ``put`` blocks
    (replay: never drop, run slower). Markers do not count against the bound and are never dropped."""

    def __init__(self, maxsize: int, drop_oldest: bool):
        self.maxsize, self.drop_oldest = maxsize, drop_oldest
        self._items: deque = deque()
        self._frames = 0
        self._cond = threading.Condition()
        self.dropped = 0
        self.closed = False

    @property
    def frames_waiting(self) -> int:
        return self._frames

    def put(self, item: FrameItem) -> None:
        with self._cond:
            if self.drop_oldest:
                while self._frames >= self.maxsize:
                    self._drop_one()
            else:
                while self._frames >= self.maxsize and not self.closed:
                    self._cond.wait(0.1)
            self._items.append(item)
            self._frames += 1
            self._cond.notify_all()

    def _drop_one(self) -> None:
        for i, old in enumerate(self._items):
            if isinstance(old, FrameItem):
                del self._items[i]
                self._frames -= 1
                self.dropped += 1
                return

    def put_marker(self, marker: Marker) -> None:
        with self._cond:
            self._items.append(marker)
            self._cond.notify_all()

    def get(self, timeout: float) -> FrameItem | Marker | None:
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            if not self._items:
                return None
            item = self._items.popleft()
            if isinstance(item, FrameItem):
                self._frames -= 1
            self._cond.notify_all()
            return item

    def clear_frames(self) -> None:
        """Forget queued frames (after a seek or a reset); markers stay."""
        with self._cond:
            self._items = deque(i for i in self._items if not isinstance(i, FrameItem))
            self._frames = 0
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class StreamRate:
    """Count per second of stream time over the last ``window_s`` of the stream (what a recording or a camera
    delivers, however the reader's batches bunch up in wall time); 0 once nothing has arrived for ``window_s``
    of wall time (a stalled stream)."""

    def __init__(self, window_s: float = 1.0):
        self.window_s = window_s
        self._samples: deque[tuple[int, int]] = deque()  # (stream time µs, count)
        self._total = 0
        self._last_wall = 0.0
        self._lock = threading.Lock()

    def add(self, n: int, t_us: int, now: float | None = None) -> None:
        with self._lock:
            if self._samples and t_us < self._samples[-1][0]:  # a seek back or a new pass: start over
                self._samples.clear()
                self._total = 0
            self._samples.append((int(t_us), n))
            self._total += n
            horizon = t_us - self.window_s * 1e6
            while self._samples and self._samples[0][0] <= horizon:
                self._total -= self._samples.popleft()[1]
            self._last_wall = time.perf_counter() if now is None else now

    def rate(self, now: float | None = None) -> float:
        now = time.perf_counter() if now is None else now
        with self._lock:
            if not self._samples or now - self._last_wall > self.window_s:
                return 0.0
            return self._total / self.window_s


class LatestEvents:
    """The newest events read (at most ``max_events``), for a viewer that takes them at its own pace; thread-safe
    (the reader thread adds, the window's timer takes)."""

    def __init__(self, max_events: int = 300_000):
        self.max_events = max_events
        self._parts: deque[np.ndarray] = deque()
        self._count = 0
        self._lock = threading.Lock()

    def add(self, batch: np.ndarray) -> None:
        with self._lock:
            self._parts.append(batch)
            self._count += batch.shape[0]
            while self._count - self._parts[0].shape[0] >= self.max_events:
                self._count -= self._parts.popleft().shape[0]

    def take(self) -> np.ndarray | None:
        """The events added since the last call, or None if none arrived."""
        with self._lock:
            if not self._parts:
                return None
            parts = list(self._parts)
            self._parts.clear()
            self._count = 0
        return np.concatenate(parts) if len(parts) > 1 else parts[0]
