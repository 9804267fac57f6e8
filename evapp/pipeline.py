"""Wiring of the data flow: source -> binner -> (engine -> decoder) -> records for the sinks.

The CLI's headless mode and the Qt window drive this same object, so what the window shows is exactly what
``evapp replay --headless`` prints. Until the model engine is attached, each record describes one frame.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from evapp.binning import FixedCountBinner, Region, SensorMapping
from evapp.decoder import IDLE, Decoder
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
        engine=None,
        decoder: Decoder | None = None,
        class_names: tuple[str, ...] | None = None,
        with_frames: bool = True,
    ):
        self.source = source
        self.mapping = SensorMapping(source.geometry, input_size, region)
        self.binner = FixedCountBinner(events_per_frame, self.mapping)
        self.replay = replay or ReplayOptions()
        self.engine = engine
        self.decoder = decoder if decoder is not None else (Decoder() if engine is not None else None)
        self.class_names = class_names
        self.with_frames = with_frames or engine is None
        self.predictions = 0
        self._recent_frames: deque[int] = deque()

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
        """JSON-ready records: one per frame (without an engine, or when asked) and one per prediction."""
        for counts, t_end in self.frames():
            if self.with_frames:
                yield {"type": "frame", "t_us": t_end, "events": self.binner.n}
            if self.engine is None:
                continue
            fps = self._frame_rate(t_end)
            for answer in self.engine.feed(counts):
                yield self._prediction(t_end, answer, fps)

    def _frame_rate(self, t_us: int) -> float:
        """Frames completed in the last second of stream time: the decoder's measure of motion."""
        recent = self._recent_frames
        recent.append(t_us)
        while recent[0] <= t_us - 1_000_000:
            recent.popleft()
        return float(len(recent))

    def _name(self, class_id: int) -> str:
        return "idle" if class_id == IDLE else self.class_names[class_id]

    def _prediction(self, t_us: int, answer, fps: float) -> dict:
        decision = self.decoder.update(t_us, answer.probs, fps)
        self.predictions += 1
        return {
            "type": "prediction",
            "t_us": t_us,
            "class_id": answer.class_id,
            "class_name": self._name(answer.class_id),
            "confidence": round(answer.confidence, 5),
            "probs": [round(float(p), 5) for p in answer.probs],
            "step_ms": round(answer.step_ms, 3),
            "spike_rate": None if answer.spike_rate is None else round(answer.spike_rate, 5),
            "decision": {"class_id": decision.class_id, "class_name": self._name(decision.class_id),
                         "confidence": round(decision.confidence, 5)},
            "frames_per_s": fps,
        }

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
            "predictions": self.predictions,
        }

    def close(self) -> None:
        self.source.close()
