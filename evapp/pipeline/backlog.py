"""How far a live stream's events reach the pipeline behind the camera, and what is dropped beyond a bound.

A live stream's clock runs as the wall clock does, so ``wall time - stream time`` of each batch as it arrives is
the link's own delay plus any backlog waiting in the socket and the reader before the pipeline (a reader that
cannot keep up, a stall). The smallest value seen is the link's delay; what lies above it is the backlog. Past
``BOUND_S`` the pipeline drops whole batches, oldest first, until the backlog is under ``RESUME_S`` again; each
is counted (``events_dropped_behind``), and a prediction's latency includes the backlog its events waited in.
"""

from __future__ import annotations

import math


class Backlog:
    BOUND_S = 1.0
    RESUME_S = 0.5
    CLOCK_JUMP_S = 5.0  # the stream's clock moved this much more (or less) than the wall clock: a new stream

    def __init__(self) -> None:
        self.behind_s = 0.0
        self.max_behind_s = 0.0
        self.events_dropped = 0
        self.dropping = False
        self._floor = math.inf
        self._last: tuple[float, int] | None = None  # (wall s, stream µs) of the previous batch

    def update(self, wall_s: float, stream_us: int) -> float:
        """The backlog (s) when a batch whose newest event is at ``stream_us`` arrives at ``wall_s``."""
        if self._last is not None:
            wall_step, stream_step = wall_s - self._last[0], (stream_us - self._last[1]) / 1e6
            if stream_step < 0 or abs(stream_step - wall_step) > self.CLOCK_JUMP_S:
                self._floor = math.inf  # a reconnect or a restarted server: measure from here
        self._last = (wall_s, stream_us)
        lag = wall_s - stream_us / 1e6
        self._floor = min(self._floor, lag)
        self.behind_s = lag - self._floor
        self.max_behind_s = max(self.max_behind_s, self.behind_s)
        if not self.dropping and self.behind_s > self.BOUND_S:
            self.dropping = True
        elif self.dropping and self.behind_s < self.RESUME_S:
            self.dropping = False
        return self.behind_s
