"""A file replay paced against the wall clock, with the controls the window needs.

One reader thread iterates ``ReplayClock.batches()``; any other thread (the GUI's) may pause, resume, seek,
change the speed, toggle looping or stop while it runs. Controls are posted as flags and applied by the reader
between batches, so the source itself is only ever touched from the reader thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from evapp.errors import InputError
from evapp.sources.base import EventSource, start_at

_POLL_S = 0.05  # longest wait between two looks at the controls, so stop/seek/speed act promptly


@dataclass(frozen=True)
class ReplayOptions:
    speed: float | None = 1.0  # None: as fast as possible
    loop: bool = False
    start_s: float = 0.0


class ReplayClock:
    """A file source replayed against the wall clock: start, seek, pause, speed, loop, hold at the end.

    Looping continues the clock (each pass starts 1 µs after the previous pass's last event), so stream time
    never goes backwards unless the user seeks; a seek restarts the stream at the sought place with no offset.
    """

    def __init__(self, source: EventSource, options: ReplayOptions | None = None, *, hold_at_end: bool = False,
                 on_restart: Callable[[], None] | None = None):
        self.source = source
        self.options = options or ReplayOptions()
        self.loop = self.options.loop
        self.hold_at_end = hold_at_end  # at the end, wait for a seek (or loop) instead of returning: the window
        self.on_restart = on_restart  # called in the reader thread when a seek restarts the stream
        self._position_us = 0
        self.at_end = False  # holding at the end of the recording (hold_at_end), waiting for a seek or loop
        self._recording_end_us = 0  # the last event time read so far, skipped batches included
        self._speed = self.options.speed
        self._lock = threading.Lock()  # makes "take the pending control and clear it" one step
        self._seek_us: int | None = None
        self._reanchor = False
        self._stop = threading.Event()
        self._running = threading.Event()  # cleared while paused
        self._running.set()

    # -- controls (any thread) --------------------------------------------------------------------------
    @property
    def speed(self) -> float | None:
        return self._speed

    @speed.setter
    def speed(self, speed: float | None) -> None:
        with self._lock:
            self._speed = speed
            self._reanchor = True  # measure the new speed from now, not from the start

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        with self._lock:
            self._reanchor = True  # the paused time is not owed: no burst of overdue batches
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def seek(self, position_s: float) -> None:
        """Continue from ``position_s`` into the recording (a later seek before it is applied wins)."""
        with self._lock:
            self._seek_us = max(0, int(position_s * 1e6))

    def stop(self) -> None:
        self._stop.set()

    # -- the reader thread ------------------------------------------------------------------------------
    def batches(self) -> Iterator[tuple[np.ndarray, int]]:
        """(batch, recording_us): the batch with loop-offset timestamps, and its last event's time in the
        recording (without the offset). ``on_restart()`` runs before the first batch after each seek."""
        start_us = int(round(self.options.start_s * 1e6))
        offset = 0
        first_pass = True
        while not self._stop.is_set():
            last = None
            anchor: tuple[float, int] | None = None  # (wall, stream) pair the pacing is measured from
            sought = None
            stream = start_at(self._tracked(self.source.batches()), start_us)
            try:
                for batch in stream:
                    sought = self._take_seek()
                    if sought is not None:
                        break
                    self._wait_while_paused()
                    if self._stop.is_set():
                        return
                    if self._seek_us is not None:
                        continue  # handled at the top with the next batch
                    t_last = int(batch["timestamp"][-1])
                    last = t_last
                    if offset:
                        batch = batch.copy()
                        batch["timestamp"] += offset
                    speed = self._speed
                    if speed is not None:
                        if self._take_reanchor() or anchor is None:
                            anchor = (time.perf_counter(), int(batch["timestamp"][0]))
                        self._sleep_until(anchor[0] + (int(batch["timestamp"][-1]) - anchor[1]) * 1e-6 / speed)
                        if self._stop.is_set():
                            return
                        if self._seek_us is not None:
                            continue  # a batch from before the seek is not shown after it
                    self._position_us = t_last
                    yield batch, t_last
            finally:
                stream.close()
            if first_pass and last is None and sought is None and self._seek_us is None and start_us > 0:
                raise InputError(f"The recording ends at {self._recording_end_us / 1e6:.1f} s, before the start "
                                 f"asked for ({start_us / 1e6:g} s).")
            first_pass = False
            if sought is None and self._seek_us is None and not self.loop and self.hold_at_end:
                self._hold()
            if self._stop.is_set():
                return
            if sought is None:
                sought = self._take_seek()
            if sought is not None:
                start_us, offset = sought, 0
                if self.on_restart is not None:
                    self.on_restart()
                continue
            if not self.loop or last is None:
                return
            # The next pass begins 1 µs after this pass's last event, at the same place in the recording.
            offset += last - start_us + 1

    @property
    def position_us(self) -> int:
        """Recording time of the last batch released, or where a seek not yet applied will continue (so that
        two quick seeks by a step add up)."""
        pending = self._seek_us
        return pending if pending is not None else self._position_us

    def _tracked(self, batches: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        for batch in batches:
            self._recording_end_us = int(batch["timestamp"][-1])
            yield batch

    def _take_seek(self) -> int | None:
        with self._lock:
            sought, self._seek_us = self._seek_us, None
        return sought

    def _take_reanchor(self) -> bool:
        with self._lock:
            reanchor, self._reanchor = self._reanchor, False
        return reanchor

    def _wait_while_paused(self) -> None:
        while not self._running.is_set() and not self._stop.is_set() and self._seek_us is None:
            self._running.wait(_POLL_S)

    def _sleep_until(self, due: float) -> None:
        """Wait for ``due`` (perf_counter); a stop, a seek or a new speed / resume cuts the wait short."""
        while not self._stop.is_set() and not self._reanchor and self._seek_us is None:
            delay = due - time.perf_counter()
            if delay <= 0:
                return
            self._stop.wait(min(delay, _POLL_S))

    def _hold(self) -> None:
        """At the end of the recording: wait until a seek, looping or a stop continues (or ends) the replay."""
        self.at_end = True
        try:
            while self._seek_us is None and not self.loop and not self._stop.is_set():
                self._stop.wait(_POLL_S)
        finally:
            self.at_end = False
