"""Wiring of the data flow: source -> binner -> (engine -> decoder) -> records for the sinks.

The CLI's headless mode and the Qt window drive this same object, so what the window shows is exactly what
``evapp replay --headless`` prints. Until the model engine is attached, each record describes one frame.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from evapp.binning import FixedCountBinner, Region, SensorMapping
from evapp.sources import EventSource, looped, paced


@dataclass
class ReplayOptions:
    speed: float | None = 1.0  # None: as fast as possible
    loop: bool = False
    start_s: float = 0.0


class Pipeline:
    """One stream from source to records; iterate ``records()`` and read ``summary()`` at the end."""

    def __init__(
        self,
        source: EventSource,
        events_per_frame: int,
        input_size: int | tuple[int, int],
        region: Region | None = None,
        replay: ReplayOptions | None = None,
    ):
        self.source = source
        self.mapping = SensorMapping(source.geometry, input_size, region)
        self.binner = FixedCountBinner(events_per_frame, self.mapping)
        self.replay = replay or ReplayOptions()

    def batches(self) -> Iterator:
        if self.source.is_live:
            return self.source.batches()
        start_us = int(round(self.replay.start_s * 1e6))
        return paced(looped(self.source, start_us, self.replay.loop), self.replay.speed)

    def frames(self) -> Iterator[tuple]:
        """Yield ``(counts [2,H,W] float32, t_end_us)`` for every completed frame."""
        for batch in self.batches():
            done = self.binner.push(batch)
            yield from zip(done.counts, done.t_end_us.tolist(), strict=True)

    def records(self) -> Iterator[dict]:
        """One JSON-ready record per frame."""
        for _counts, t_end in self.frames():
            yield {"type": "frame", "t_us": t_end, "events": self.binner.n}

    def summary(self) -> dict:
        b = self.binner
        return {
            "type": "summary",
            "events_total": b.events_in,
            "frames": b.frames_out,
            "leftover_events": b.leftover,
            "events_outside_region": b.events_outside,
            "region": str(self.mapping.region),
            "input_size": [self.mapping.height, self.mapping.width],
        }

    def close(self) -> None:
        self.source.close()
