"""The one interface every event source implements, plus ``start_at`` (replay ``--start``).

A source yields batches in ``EVENT_DTYPE`` with timestamps rebased to the stream's first event, carries the
sensor geometry, and (for labelled recordings) ground-truth intervals on the same rebased clock. Pacing a
file against the wall clock (speed, pause, seek, loop) is the same for every format and lives once in
``evapp.sources.replay``.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from evapp.errors import InputError
from evapp.events import GESTURE_CLASSES, LabelInterval, SensorGeometry

log = logging.getLogger(__name__)


@dataclass
class SourceInfo:
    """What ``evapp info`` prints about a source."""

    path: str
    format: str
    geometry: SensorGeometry
    duration_us: int | None = None
    event_count: int | None = None
    other_streams: list[str] = field(default_factory=list)
    labels: list[LabelInterval] = field(default_factory=list)
    packets_skipped: int = 0  # packets that did not decode
    readable_end: str | None = None  # why the readable part ends before the file does

    @property
    def mean_rate(self) -> float | None:
        if not self.event_count or not self.duration_us:
            return None
        return self.event_count / (self.duration_us * 1e-6)


class EventSource(ABC):
    """A stream of event batches. Subclasses implement ``_raw_batches`` (absolute time, file order)."""

    format_name = "events"
    is_live = False

    def __init__(self, geometry: SensorGeometry, labels: list[LabelInterval] | None = None):
        self.geometry = geometry
        self.labels = labels or []
        self.label_classes: tuple[str, ...] = GESTURE_CLASSES  # the names ``labels``' class ids index
        self.t0_us: int | None = None  # absolute time of the stream's first event

    @abstractmethod
    def _raw_batches(self) -> Iterator[np.ndarray]:
        """Batches with the source's own (absolute) timestamps, in stream order."""

    def batches(self) -> Iterator[np.ndarray]:
        """Batches rebased so that the stream's first event is at t = 0, on a clock that never goes back: an
        event stamped earlier than the one before it (a corrupt packet, a descending file) is kept, at the time
        of the event before it, and counted (``events_time_clamped``, one warning)."""
        last = None
        for batch in self._raw_batches():
            if batch.shape[0] == 0:
                continue
            if self.t0_us is None:
                self.t0_us = int(batch["timestamp"][0])
            t = batch["timestamp"]
            if (last is not None and t[0] < last) or (t.shape[0] > 1 and bool((t[1:] < t[:-1]).any())):
                batch = self._clamp_time(batch, last)
            last = int(batch["timestamp"][-1])
            if self.t0_us:
                batch = batch.copy() if not batch.flags.writeable else batch
                batch["timestamp"] -= self.t0_us
            yield batch
        if self.t0_us is None and not self.is_live:
            raise InputError(f"{self.describe()} contains no events.")

    events_time_clamped = 0

    def _clamp_time(self, batch: np.ndarray, last: int | None) -> np.ndarray:
        batch = batch.copy()
        t = batch["timestamp"]
        clamped = np.maximum.accumulate(np.maximum(t, last) if last is not None else t)
        moved = int(np.count_nonzero(clamped != t))
        batch["timestamp"] = clamped
        if moved and not self.events_time_clamped:
            log.warning("%s: events stamped earlier than the events before them (a corrupt packet, or a file in "
                        "the wrong order); kept at the time of the event before them, and counted in the summary",
                        self.describe())
        self.events_time_clamped += moved
        return batch

    def info(self) -> SourceInfo:
        """Describe the source; file sources override this with header facts where they can."""
        count, first, last = self._count_span()
        return SourceInfo(self.describe(), self.format_name, self.geometry, last - first, count, [], self.labels)

    def _count_span(self) -> tuple[int, int, int]:
        """(events, first timestamp, last timestamp), read through the whole source; none is an input error."""
        count, first, last = 0, None, None
        for batch in self._raw_batches():
            if batch.shape[0]:
                count += batch.shape[0]
                first = int(batch["timestamp"][0]) if first is None else first
                last = int(batch["timestamp"][-1])
        if first is None:
            raise InputError(f"{self.describe()} contains no events.")
        return count, first, last

    def describe(self) -> str:
        return self.format_name

    def close(self) -> None:  # noqa: B027 - most file sources hold nothing to release
        """Release the device, connection or file."""


class LiveSource(EventSource):
    """A camera or network stream: dv-processing hands us EventStores, which we look at before numpy.

    ``store_hooks`` see every store exactly as received (the recorder writes them, so a recording holds every
    event that arrived); ``store_filter`` (the noise filter) then thins the store before it becomes numpy.
    ``stop()`` may be called from another thread and makes the polling loop return.
    """

    is_live = True

    def __init__(self, geometry: SensorGeometry):
        super().__init__(geometry)
        self.store_hooks: list = []
        self.store_filter = None
        self._stop_requested = False

    def _deliver(self, store) -> np.ndarray | None:
        for hook in self.store_hooks:
            hook(store)
        if self.store_filter is not None:
            store = self.store_filter(store)
            if not len(store):
                return None
        return store.numpy()

    def stop(self) -> None:
        self._stop_requested = True

    def _drain_to_hooks(self, next_store) -> None:
        """At close: hand the stores the driver already holds to the hooks, so a recording keeps every event
        that reached this process, even those the pipeline never read (e.g. Ctrl-C right after a burst)."""
        if not self.store_hooks:
            return
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                store = next_store()
            except RuntimeError:
                return
            if store is None or not len(store):
                return
            for hook in self.store_hooks:
                hook(store)


def start_at(batches: Iterator[np.ndarray], start_us: int) -> Iterator[np.ndarray]:
    """Drop everything before ``start_us`` on the rebased clock (replay ``--start``)."""
    for batch in batches:
        if batch["timestamp"][-1] < start_us:
            continue
        if batch["timestamp"][0] < start_us:
            batch = batch[np.searchsorted(batch["timestamp"], start_us, side="left") :]
        yield batch

