"""What the pipeline hands its sinks (DESIGN section 2, Prediction): typed records with a ``to_json()`` that is
the JSON line ``evapp replay --headless`` prints.

``received_at`` (when the batch holding the frame's last event reached the pipeline) and ``recording_us`` (the
position in the recording, for the timeline) travel with a record but are not part of its JSON line.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


@dataclass(frozen=True)
class FrameRecord:
    """A frame was made (printed with ``--frames``, or when no model runs)."""

    t_us: int  # stream time of the frame's last event
    events: int  # events in the frame (N)
    received_at: float = field(default=0.0, compare=False)
    recording_us: int = field(default=0, compare=False)

    def to_json(self) -> dict:
        return {"type": "frame", "t_us": self.t_us, "events": self.events}


@dataclass(frozen=True)
class Label:
    """A class with its name and confidence (``class_id`` -1, ``idle``: no gesture named)."""

    class_id: int
    class_name: str
    confidence: float

    def to_json(self) -> dict:
        return {"class_id": self.class_id, "class_name": self.class_name, "confidence": round(self.confidence, 5)}


@dataclass(frozen=True)
class Prediction:
    """One engine answer and the decoder's decision on it: ``answer`` is the engine's own top class, ``decision``
    the label on show (smoothed, thresholded, idle when nothing moves)."""

    t_us: int  # stream time of the answering frame's last event
    answer: Label
    probs: tuple[float, ...]
    step_ms: float
    spike_rate: float | None
    decision: Label
    frames_per_s: float
    received_at: float = field(default=0.0, compare=False)
    recording_us: int = field(default=0, compare=False)
    policy: str | None = None  # the policy that answered, under --policy auto

    def to_json(self) -> dict:
        out = {"type": "prediction", "t_us": self.t_us, "class_id": self.answer.class_id,
                "class_name": self.answer.class_name, "confidence": round(self.answer.confidence, 5),
                "probs": [round(p, 5) for p in self.probs], "step_ms": round(self.step_ms, 3),
                "spike_rate": _round(self.spike_rate, 5), "decision": self.decision.to_json(),
                "frames_per_s": self.frames_per_s}
        if self.policy is not None:
            out["policy"] = self.policy
        return out


@dataclass(frozen=True)
class Summary:
    """The stream's accounting at the end: every event is in exactly one of frames, leftover, outside, thinned
    (to the training density) and, live, over the rate cap."""

    events_total: int
    frames: int
    leftover_events: int
    events_outside_region: int
    events_thinned: int
    region: str
    input_size: tuple[int, int]
    predictions: int
    dropped_frames: int
    latency_median_ms: float | None
    latency_p99_ms: float | None
    reconnects: int | None = None  # live sources only
    recorded_events: int | None = None  # with a recording
    recording: str | None = None
    recording_stopped: str | None = None  # why the recording stopped before the stream did
    policy_changes: list | None = None  # under --policy auto: [{"t_us", "policy"}, ...]
    throughput: dict | None = None  # a replay as fast as possible: x real time and answers per second
    events_over_rate_cap: int | None = None  # where frames may drop: events thinned away by the rate cap
    events_time_clamped: int | None = None  # events stamped before the event before them, kept at its time
    packets_skipped: int | None = None  # a file's packets that did not decode
    readable_end: str | None = None  # why a file's readable part ended before the file
    events_dropped_behind: int | None = None  # live: events dropped while the backlog was over its bound
    max_behind_s: float | None = None  # live: the largest backlog before the pipeline

    def to_json(self) -> dict:
        out = {"type": "summary", "events_total": self.events_total, "frames": self.frames,
               "leftover_events": self.leftover_events, "events_outside_region": self.events_outside_region,
               "events_thinned": self.events_thinned, "region": self.region, "input_size": list(self.input_size),
               "predictions": self.predictions, "dropped_frames": self.dropped_frames}
        if self.throughput is None:
            out["latency_ms"] = {"median": _round(self.latency_median_ms, 3), "p99": _round(self.latency_p99_ms, 3)}
        for key in ("events_over_rate_cap", "events_dropped_behind", "max_behind_s", "events_time_clamped",
                    "packets_skipped", "readable_end", "throughput", "reconnects", "recorded_events", "recording",
                    "recording_stopped", "policy_changes"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


Record = FrameRecord | Prediction


def summary_of(pipeline, **live) -> Summary:
    """``pipeline``'s accounting at the end. As fast as possible there is nothing to be late against: a replay at
    --max-speed reports throughput instead of latency."""
    from evapp.pipeline.queues import percentile

    b, cap, governor = pipeline.binner, pipeline.rate_cap, pipeline.model.governor
    fastest = pipeline.clock is not None and pipeline.clock.speed is None
    latency = (None, None) if fastest else (percentile(pipeline.latencies_ms, 50),
                                            percentile(pipeline.latencies_ms, 99))
    behind = pipeline.backlog if pipeline.is_live else None
    total = b.events_in + cap.dropped + (behind.events_dropped if behind else 0)
    return Summary(total, b.frames_out, b.leftover, b.events_outside, b.events_thinned,
                   str(b.mapping.region), tuple(b.frame_shape[1:]), pipeline.predictions,
                   pipeline.frame_queue.dropped, *latency,
                   policy_changes=None if governor is None else [c.to_json() for c in governor.changes],
                   throughput=throughput_of(pipeline) if fastest else None,
                   events_over_rate_cap=cap.dropped if cap.active else None,
                   events_time_clamped=getattr(pipeline.source, "events_time_clamped", 0) or None,
                   packets_skipped=getattr(pipeline.source, "packets_skipped", 0) or None,
                   readable_end=getattr(pipeline.source, "readable_end", None),
                   events_dropped_behind=behind.events_dropped if behind else None,
                   max_behind_s=round(behind.max_behind_s, 3) if behind else None, **live)


def throughput_of(pipeline) -> dict:
    """Recording seconds per wall second and answers per wall second, from the first batch to the end."""
    start = pipeline.first_batch_at
    if start is None:
        return {"x_real_time": None, "answers_per_s": None}
    import time

    wall = max((pipeline.done_at or time.perf_counter()) - start, 1e-9)
    stream_s = max(pipeline.position_us - pipeline.first_position_us, 0) / 1e6
    return {"x_real_time": round(stream_s / wall, 3), "answers_per_s": round(pipeline.predictions / wall, 2)}
