"""Wiring of the data flow: source -> binner -> (engine -> decoder) -> records for the sinks.

The CLI's headless mode and the Qt window drive this same object, so what the window shows is exactly what
``evapp replay --headless`` prints.

Threads (DESIGN section 1): a *reader* thread pulls batches from the source (pacing a replay against the wall
clock), bins them and puts frames into a bounded frame queue; an *inference* thread takes frames, runs the
engine and the decoder and puts records into an output queue; the consumer (the CLI's print loop or the
window's timer) takes records from there. Back-pressure differs by mode:

- live: when inference falls behind, the frame queue drops its OLDEST frames (counted in ``dropped_frames``),
  so what is shown stays close to now and latency stays bounded;
- replay: the reader blocks instead, so a replay never drops a frame; it just runs slower than asked.

Each frame remembers the wall time at which the batch holding its last event reached the pipeline; a
prediction's end-to-end latency is the wall time from then until the consumer has emitted (printed, shown) it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from evapp.binning import FixedCountBinner, Region, SensorMapping, thinning_keep_fraction
from evapp.decoder import IDLE, Decoder, MotionRate
from evapp.sources import EventSource, start_at

log = logging.getLogger("evapp")


@dataclass
class ReplayOptions:
    speed: float | None = 1.0  # None: as fast as possible
    loop: bool = False
    start_s: float = 0.0


@dataclass
class FrameItem:
    counts: np.ndarray  # [2, H, W] float32
    t_end_us: int  # stream time of the frame's last event
    received_at: float  # perf_counter() when the batch holding its last event reached the pipeline
    frames_per_s: float  # frames per second over the last few frames (the decoder's motion measure)
    recording_us: int  # position in the recording (t_end_us without the loop offset), for the timeline


@dataclass
class Output:
    """One record for the sinks, with what the window needs beside the JSON line."""

    record: dict
    received_at: float
    recording_us: int


class _Marker:
    """A queue item that is not a frame: never dropped, processed in order with the frames."""

    def __init__(self, kind: str, payload=None):
        self.kind, self.payload = kind, payload


class FrameQueue:
    """Bounded frame queue: ``drop_oldest`` (live) discards the oldest frame when full, else ``put`` blocks."""

    def __init__(self, maxsize: int, drop_oldest: bool):
        self.maxsize, self.drop_oldest = maxsize, drop_oldest
        self._items: deque = deque()
        self._frames = 0
        self._cond = threading.Condition()
        self.dropped = 0
        self.closed = False

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

    def put_marker(self, marker: _Marker) -> None:
        with self._cond:
            self._items.append(marker)
            self._cond.notify_all()

    def get(self, timeout: float) -> FrameItem | _Marker | None:
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


class RollingRate:
    """Count per second over a sliding wall-clock window."""

    def __init__(self, window_s: float = 1.0):
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()
        self._total = 0

    def add(self, n: int, now: float | None = None) -> None:
        now = time.perf_counter() if now is None else now
        self._samples.append((now, n))
        self._total += n
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._samples and self._samples[0][0] < now - self.window_s:
            self._total -= self._samples.popleft()[1]

    def rate(self) -> float:
        self._trim(time.perf_counter())
        return self._total / self.window_s


def leave_a_core_for_the_reader() -> int:
    """Give torch's CPU threads one core less than the machine has, so the reader thread keeps one.

    Measured on the 2-core development machine with other work running: saformer-2-256 took 540 ms per step
    with torch's default 2 threads fighting the reader and 45 ms with 1.
    """
    import os

    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(before, (os.cpu_count() or 1) - 1)))
    return before


def percentile(values, q: float) -> float | None:
    return None if len(values) == 0 else float(np.percentile(np.asarray(values, dtype=np.float64), q))


class Pipeline:
    """One stream from source to records.

    Headless: iterate ``records()`` and read ``summary()`` at the end. Window: ``start()``, then ``poll()``
    from a timer, ``report_shown()`` for the latency, and the controls (``pause``, ``seek``, ``reset``, ...);
    ``close()`` when done.
    """

    LIVE_QUEUE_FRAMES = 2  # live: at most this many frames wait for inference; older ones are dropped
    REPLAY_QUEUE_FRAMES = 8
    VIEW_EVENTS_MAX = 300_000  # newest events kept for the event view between two window refreshes

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
        keep_view_events: bool = False,
        reference_px_per_input_px: float | None = None,
    ):
        self.source = source
        self.input_size = input_size
        # The model's training sensor density (artifact preprocessing, carried by the engine): a denser sensor
        # is thinned down to it, so frames look like the training frames (DESIGN section 2).
        if reference_px_per_input_px is None and engine is not None:
            preprocessing = getattr(engine, "preprocessing", None)
            reference_px_per_input_px = preprocessing.reference_px_per_input_px if preprocessing else None
        self.reference_px_per_input_px = reference_px_per_input_px
        self._make_binner(events_per_frame, region)
        self.replay = replay or ReplayOptions()
        self.engine = engine
        self.decoder = decoder if decoder is not None else (Decoder() if engine is not None else None)
        self.class_names = class_names
        self.with_frames = with_frames or engine is None
        self.is_live = source.is_live
        self.predictions = 0
        self._motion = MotionRate()

        self.frame_queue = FrameQueue(self.LIVE_QUEUE_FRAMES if self.is_live else self.REPLAY_QUEUE_FRAMES,
                                      drop_oldest=self.is_live)
        self.output_queue: queue.Queue = queue.Queue(maxsize=512)
        self._stop = threading.Event()
        self._running = threading.Event()  # cleared while paused
        self._running.set()
        self._threads: list[threading.Thread] = []
        self._torch_threads_before: int | None = None
        self._done = False
        # Controls posted by the window and applied by the reader thread between batches.
        self._seek_us: int | None = None
        self._new_binning: tuple[int, Region | None] | None = None
        self._pace_reanchor = False
        self.speed = self.replay.speed
        self.loop = self.replay.loop
        self.position_us = 0  # recording position of the newest batch read
        self.hold_at_end = False  # window: at the end of a replay wait for a seek instead of ending
        # Statistics for the status line and the summary.
        self.event_rate = RollingRate()
        self.frame_rate = RollingRate()
        self.latencies_ms: list[float] = []
        self.recent_latency_ms: deque[float] = deque(maxlen=200)
        self.recent_step_ms: deque[float] = deque(maxlen=50)
        self.keep_view_events = keep_view_events
        self._view: deque[np.ndarray] = deque()
        self._view_count = 0
        self._view_lock = threading.Lock()

    # -- headless -------------------------------------------------------------------------------------
    def records(self) -> Iterator[dict]:
        """JSON-ready records in stream order: per frame (without an engine, or when asked), per prediction."""
        self.start()
        while True:
            out = self.wait_output(timeout=0.2)
            if out is None:
                if self._done:
                    return
                continue
            yield out.record
            # Back here only after the consumer has emitted the record (printed it): that is "emitted".
            if out.record["type"] == "prediction":
                self.report_shown(out)

    def wait_output(self, timeout: float) -> Output | None:
        """The next record, waiting up to ``timeout`` s; None when none came or the stream has ended."""
        return self._next_output(timeout)

    def _next_output(self, timeout: float) -> Output | None:
        if self._done:
            return None
        try:
            item = self.output_queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, _Marker):
            self._done = True
            if item.kind == "error":
                raise item.payload
            return None
        return item

    # -- window ---------------------------------------------------------------------------------------
    def poll(self, max_items: int = 1000) -> list[Output]:
        """Records ready now (never blocks); raises the worker's error, if any, once."""
        outs = []
        while len(outs) < max_items:
            out = self._next_output(timeout=0)
            if out is None:
                break
            outs.append(out)
        return outs

    @property
    def finished(self) -> bool:
        return self._done

    def report_shown(self, out: Output) -> None:
        """The consumer has emitted ``out``: record its end-to-end latency."""
        latency = (time.perf_counter() - out.received_at) * 1e3
        self.latencies_ms.append(latency)
        self.recent_latency_ms.append(latency)

    def take_view_events(self) -> np.ndarray | None:
        """The newest events read since the last call (at most VIEW_EVENTS_MAX), or None if none arrived."""
        with self._view_lock:
            if not self._view:
                return None
            parts = list(self._view)
            self._view.clear()
            self._view_count = 0
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._pace_reanchor = True
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def set_speed(self, speed: float | None) -> None:
        self.speed = speed
        self._pace_reanchor = True

    def seek(self, position_s: float) -> None:
        """Replays: continue from ``position_s`` into the recording, with a fresh binner, engine and decoder."""
        if not self.is_live:
            self._seek_us = max(0, int(position_s * 1e6))

    def reset(self) -> None:
        """Clear the model state and the decoder (ordered with the frames, applied by the inference thread)."""
        self.frame_queue.put_marker(_Marker("reset"))

    def set_engine(self, engine, decoder: Decoder | None, class_names) -> None:
        """Swap the engine (model / policy / device change); applied between two frames.

        The new model's training density takes effect with the next ``set_binning`` (the window calls it).
        """
        preprocessing = getattr(engine, "preprocessing", None)
        self.reference_px_per_input_px = preprocessing.reference_px_per_input_px if preprocessing else None
        self.frame_queue.put_marker(_Marker("engine", (engine, decoder, class_names)))

    def _make_binner(self, events_per_frame: int, region: Region | None) -> None:
        self.mapping = SensorMapping(self.source.geometry, self.input_size, region)
        keep = thinning_keep_fraction(self.mapping, self.reference_px_per_input_px)
        self.binner = FixedCountBinner(events_per_frame, self.mapping, keep)

    def set_binning(self, events_per_frame: int, region: Region | None) -> None:
        """New N or region: the reader rebuilds the binner (raises InputError now if the region is bad)."""
        SensorMapping(self.source.geometry, self.input_size, region)  # validate here, in the caller's thread
        self._new_binning = (int(events_per_frame), region)

    def set_input_size(self, input_size) -> None:
        self.input_size = input_size

    def stats(self) -> dict:
        """What the status line shows."""
        lat = list(self.recent_latency_ms)
        steps = list(self.recent_step_ms)
        return {
            "event_rate": self.event_rate.rate(),
            "frames_per_s": self.frame_rate.rate(),
            "step_ms": percentile(steps, 50),
            "latency_ms": percentile(lat, 50),
            "dropped_frames": self.frame_queue.dropped,
            "status": getattr(self.source, "status", "") or "",
        }

    # -- threads --------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._threads:
            return
        if getattr(getattr(self.engine, "device", None), "type", None) == "cpu":
            self._torch_threads_before = leave_a_core_for_the_reader()
        for target, name in ((self._reader_loop, "evapp-reader"), (self._inference_loop, "evapp-inference")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._running.set()
        stop_source = getattr(self.source, "stop", None)
        if stop_source is not None:
            stop_source()
        self.frame_queue.close()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)
        if self._torch_threads_before is not None:  # the process's other torch work gets its threads back
            import torch

            torch.set_num_threads(self._torch_threads_before)
            self._torch_threads_before = None

    def close(self) -> None:
        self.stop()
        self.source.close()

    def _reader_loop(self) -> None:
        try:
            batches = self._live_batches() if self.is_live else self._replay_batches()
            for batch, received_at, recording_us in batches:
                if self._stop.is_set():
                    break
                self._apply_binning_change()
                self._read_one(batch, received_at, recording_us)
            self.frame_queue.put_marker(_Marker("end"))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            self.frame_queue.put_marker(_Marker("error", exc))

    def _apply_binning_change(self) -> None:
        change, self._new_binning = self._new_binning, None
        if change is None:
            return
        n, region = change
        old = self.binner
        self._make_binner(n, region)
        # Keep the stream's accounting continuous across the change.
        self.binner.events_in, self.binner.frames_out = old.events_in, old.frames_out
        self.binner.events_outside = old.events_outside + old.leftover
        self.binner.events_thinned = old.events_thinned
        self.frame_queue.clear_frames()
        self.frame_queue.put_marker(_Marker("reset"))

    def _read_one(self, batch: np.ndarray, received_at: float, recording_us: int) -> None:
        self.event_rate.add(batch.shape[0], received_at)
        if self.keep_view_events:
            with self._view_lock:
                self._view.append(batch)
                self._view_count += batch.shape[0]
                while self._view_count - self._view[0].shape[0] >= self.VIEW_EVENTS_MAX:
                    self._view_count -= self._view.popleft().shape[0]
        if self.is_live and self.paused:
            return  # live and paused: keep reading (and recording), show and infer nothing
        done = self.binner.push(batch)
        shift = recording_us - int(batch["timestamp"][-1])
        for counts, t_end in zip(done.counts, done.t_end_us.tolist(), strict=True):
            fps = self._motion.update(t_end)
            self.frame_queue.put(FrameItem(counts, t_end, received_at, fps, t_end + shift))

    def _live_batches(self) -> Iterator[tuple[np.ndarray, float, int]]:
        for batch in self.source.batches():
            t_last = int(batch["timestamp"][-1])
            self.position_us = t_last
            yield batch, time.perf_counter(), t_last

    def _replay_batches(self) -> Iterator[tuple[np.ndarray, float, int]]:
        """The recording paced against the wall clock, with pause, speed change, seek and loop.

        Looping continues the clock (each pass starts 1 µs after the previous pass's last event), so stream
        time never goes backwards unless the user seeks.
        """
        start_us = int(round(self.replay.start_s * 1e6))
        offset = 0
        while not self._stop.is_set():
            last = None
            anchor: tuple[float, int] | None = None  # (wall, stream) pair the pacing is measured from
            seeked = False
            for batch in start_at(self.source.batches(), start_us):
                if self._seek_us is not None:
                    start_us, self._seek_us, seeked = self._seek_us, None, True
                    offset = 0
                    self._restart_stream()
                    break
                while not self._running.is_set() and not self._stop.is_set():
                    self._running.wait(0.05)
                    if self._seek_us is not None:
                        break
                if self._stop.is_set():
                    return
                if self._seek_us is not None:
                    continue  # handled at the top with the next batch
                t_last = int(batch["timestamp"][-1])
                last = t_last
                if offset:
                    batch = batch.copy()
                    batch["timestamp"] += offset
                if self.speed is not None:
                    if anchor is None or self._pace_reanchor:
                        anchor, self._pace_reanchor = (time.perf_counter(), int(batch["timestamp"][0])), False
                    self._sleep_until(anchor[0] + (int(batch["timestamp"][-1]) - anchor[1]) * 1e-6 / self.speed)
                self.position_us = t_last
                yield batch, time.perf_counter(), t_last
            if not seeked and self._seek_us is None and not self.loop and self.hold_at_end:
                # The window keeps the replay open at its end so that a seek (or loop) can continue it.
                while self._seek_us is None and not self.loop and not self._stop.is_set():
                    time.sleep(0.05)
            if self._seek_us is not None:
                start_us, self._seek_us, offset = self._seek_us, None, 0
                self._restart_stream()
                continue
            if seeked:
                continue
            if not self.loop or last is None:
                return
            offset += last - start_us + 1

    def _sleep_until(self, due: float) -> None:
        while not self._stop.is_set() and not self._pace_reanchor and self._seek_us is None:
            delay = due - time.perf_counter()
            if delay <= 0:
                return
            time.sleep(min(delay, 0.05))

    def _restart_stream(self) -> None:
        self.binner.reset()
        self._motion.reset()
        self.frame_queue.clear_frames()
        self.frame_queue.put_marker(_Marker("reset"))

    def _inference_loop(self) -> None:
        try:
            while not self._stop.is_set():  # stopped: queued frames are left, so closing never waits on them
                item = self.frame_queue.get(timeout=0.1)
                if item is None:
                    continue
                if isinstance(item, _Marker):
                    if item.kind in ("end", "error"):
                        self._emit(item)
                        return
                    self._apply_marker(item)
                    continue
                self._infer(item)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            self._emit(_Marker("error", exc))

    def _apply_marker(self, marker: _Marker) -> None:
        if marker.kind == "reset":
            if self.engine is not None:
                self.engine.reset()
            if self.decoder is not None:
                self.decoder.reset()
        elif marker.kind == "engine":
            self.engine, decoder, self.class_names = marker.payload
            self.decoder = decoder if decoder is not None else (Decoder() if self.engine is not None else None)
            self.with_frames = self.with_frames or self.engine is None

    def _infer(self, item: FrameItem) -> None:
        self.frame_rate.add(1)
        if self.with_frames:
            self._emit(Output({"type": "frame", "t_us": item.t_end_us, "events": self.binner.n},
                              item.received_at, item.recording_us))
        if self.engine is None:
            return
        for answer in self.engine.feed(item.counts):
            self.recent_step_ms.append(answer.step_ms)
            self._emit(Output(self._prediction(item.t_end_us, answer, item.frames_per_s), item.received_at,
                              item.recording_us))

    def _emit(self, item: Output | _Marker) -> None:
        while True:
            try:
                self.output_queue.put(item, timeout=0.1)
                return
            except queue.Full:
                if self._stop.is_set():
                    return

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
            "events_thinned": b.events_thinned,
            "region": str(self.mapping.region),
            "input_size": [self.mapping.height, self.mapping.width],
            "predictions": self.predictions,
            "dropped_frames": self.frame_queue.dropped,
            "latency_ms": {"median": _round(percentile(self.latencies_ms, 50)),
                           "p99": _round(percentile(self.latencies_ms, 99))},
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)

