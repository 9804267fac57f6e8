"""Live sources that survive a dropped camera or server: reconnect with back-off, say so, keep the clock.

``open_live(spec)`` opens ``dvxplorer|davis|dvs128|SERIAL`` (USB, dv-processing) or ``tcp://HOST:PORT`` once,
so that an absent camera or server fails at once with one sentence, and returns a ``ReconnectingSource``:
when the stream breaks off or ends, it logs it, shows ``status`` ("reconnecting to ... (attempt 3)") and
opens the same camera or address again after 0.2, 0.5, 1, 2, 5, 5, ... seconds until it succeeds or is stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta

from evapp.errors import InputError, SourceLost
from evapp.sources.base import LiveSource

log = logging.getLogger(__name__)

BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)


def _open_once(spec: str, stopped: Callable[[], bool] = lambda: False) -> LiveSource:
    if spec.startswith("tcp://"):  # bytes from a peer: read in a child process (evapp.sources.isolation)
        from evapp.sources.isolation import IsolatedNetworkSource

        return IsolatedNetworkSource(spec, stopped)
    from evapp.sources.camera import CameraSource

    return CameraSource(spec)


def background_activity_filter(geometry, duration_us: int = 2000) -> Callable:
    """dv-processing's background-activity noise filter as a store -> store function (about 32 Mev/s).

    An event survives when a neighbouring pixel fired within ``duration_us`` before it; isolated noise
    events do not (reference/event-io.md section 1.7).
    """
    import dv_processing as dv

    noise_filter = dv.noise.BackgroundActivityNoiseFilter(
        (geometry.width, geometry.height), backgroundActivityDuration=timedelta(microseconds=duration_us))

    def apply(store):
        noise_filter.accept(store)
        return noise_filter.generateEvents()

    return apply


class ReconnectingSource(LiveSource):
    """A live source that re-opens its camera or address whenever the stream drops."""

    def __init__(self, spec: str, opener: Callable[..., LiveSource] = _open_once):
        self.spec = spec
        self._opener = opener
        self._inner: LiveSource | None = opener(spec)  # the first open fails loudly (absent camera, no server)
        super().__init__(self._inner.geometry)
        self._attach(self._inner)  # the hooks list is shared: a recorder added later sees even undrained data
        self.format_name = self._inner.format_name
        self.status = ""  # what the window's status line shows ("" while streaming normally)
        self.reconnects = 0
        self.lost: str | None = None  # while the stream is away: since when (s into the run) and why, in words
        self._last_t: int | None = None  # the newest event time delivered, on the delivered clock
        self._lost_at = 0.0  # time.monotonic() when the stream was lost
        self._started = time.monotonic()

    def _attach(self, inner: LiveSource) -> None:
        inner.store_hooks = self.store_hooks
        inner.store_filter = self.store_filter

    def _raw_batches(self):
        attempt = 0
        while not self._stop_requested:
            if self._inner is None:
                delay = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
                attempt += 1
                self.status = f"reconnecting to {self.spec} (attempt {attempt}, next try in {delay:g} s)"
                if self._sleep(delay):
                    return
                try:
                    inner = self._opener(self.spec, lambda: self._stop_requested)
                except InputError as exc:
                    log.info("reconnect attempt %d to %s failed: %s", attempt, self.spec, exc)
                    continue
                if (inner.geometry.width, inner.geometry.height) != (self.geometry.width, self.geometry.height):
                    inner.close()
                    raise InputError(f"{self.spec} came back as a {inner.geometry.width}x{inner.geometry.height} "
                                     f"sensor, not {self.geometry.width}x{self.geometry.height}; restart evapp.")
                log.warning("reconnected to %s after %d attempt(s)", self.spec, attempt)
                self._inner, self.status, attempt = inner, "", 0
                self.reconnects += 1
                self.lost = None
            self._attach(self._inner)
            try:
                yield from self._continuing_clock(self._inner._raw_batches())
                reason = "the stream ended"
            except SourceLost as exc:
                reason = str(exc).rstrip(".")
            if self._stop_requested:
                return
            log.warning("lost %s (%s); reconnecting with back-off", self.spec, reason)
            self._lost_at = time.monotonic()
            self.lost = f"{self.spec} was lost {self._lost_at - self._started:.1f} s into the run ({reason})"
            self.status = f"lost {self.spec}; reconnecting"
            self._inner.close()
            self._inner = None

    def _continuing_clock(self, batches):
        """A stream that comes back with its clock behind the last event delivered (a camera or server that
        started again) is shifted to go on from there, plus the time it was away: times never jump back, and the
        decoder sees the gap as the pause it was."""
        shift = None
        for batch in batches:
            if shift is None:
                first = int(batch["timestamp"][0])
                shift = 0
                if self._last_t is not None and first < self._last_t:
                    shift = self._last_t + int((time.monotonic() - self._lost_at) * 1e6) - first
                    log.warning("%s came back with its clock %.1f s behind; its times go on from the last event's",
                                self.spec, (self._last_t - first) / 1e6)
            if shift:
                batch = batch.copy()
                batch["timestamp"] += shift
            self._last_t = int(batch["timestamp"][-1])
            yield batch

    def _sleep(self, seconds: float) -> bool:
        """Sleep, waking early when stopped; True when stopped."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self._stop_requested:
                return True
            time.sleep(0.05)
        return self._stop_requested

    def stop(self) -> None:
        super().stop()
        if self._inner is not None:
            self._inner.stop()

    def describe(self) -> str:
        return self.spec

    def close(self) -> None:
        self.stop()
        if self._inner is not None:
            self._inner.close()
            self._inner = None


def open_live(spec: str) -> ReconnectingSource:
    """Open a camera (kind word or serial number) or a tcp://HOST:PORT stream, reconnecting when it drops."""
    return ReconnectingSource(spec)
