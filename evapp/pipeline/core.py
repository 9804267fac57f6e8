"""Wiring of the data flow: source -> binner -> (engine -> decoder) -> records for the sinks.

The CLI's headless mode and the Qt window drive this same object, so what the window shows is exactly what
``evapp replay --headless`` prints.

Threads (DESIGN section 1): a *reader* thread pulls batches from the source (a replay through its
:class:`~evapp.sources.replay.ReplayClock`), bins them and puts frames into a bounded frame queue; an
*inference* thread takes frames, runs the engine and the decoder and puts records into an output queue; the
consumer (a sink: the JSON-lines printer or the window's timer) takes records from there. Back-pressure differs
by mode:

- live: when inference falls behind, the frame queue drops its OLDEST frames (counted in ``dropped_frames``),
  so what is shown stays close to now and latency stays bounded;
- replay: the reader blocks instead, so a replay never drops a frame; it just runs slower than asked.

A prediction's end-to-end latency runs from the arrival of the batch holding its frame's last event until the
consumer has emitted (printed, shown) it. Control travels with the frames: a reset or a new model is a marker
in the frame queue; a new frame spec is applied by the reader before its next batch, and frames of the binner
it replaced are dropped as stale.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator

import numpy as np

from evapp.binning import FrameSpec, Region
from evapp.decoder import IDLE, MotionRate
from evapp.errors import InputError
from evapp.model_setup import ModelSetup
from evapp.pipeline.backlog import Backlog
from evapp.pipeline.queues import FrameItem, FrameQueue, Marker, StreamRate, percentile
from evapp.pipeline.rate_cap import RateCap
from evapp.pipeline.records import FrameRecord, Label, Prediction, Record, Summary, summary_of
from evapp.sources import EventSource
from evapp.sources.replay import ReplayClock, ReplayOptions

log = logging.getLogger(__name__)


class Pipeline:
    """One stream from source to records.

    Headless: iterate ``records()`` and read ``summary()`` at the end. Window: ``start()``, then ``poll()``
    from a timer, ``report_shown()`` for the latency, and the controls (``pause``, ``seek``, ``reset``,
    ``set_model``, ...); ``close()`` when done.
    """

    LIVE_QUEUE_FRAMES = 2  # live: at most this many frames wait for inference; older ones are dropped
    REPLAY_QUEUE_FRAMES = 8

    def __init__(self, source: EventSource, model: ModelSetup | None = None, *, region: Region | None = None,
                 replay: ReplayOptions | None = None, hold_at_end: bool = False, with_frames: bool = True,
                 drop_late_frames: bool | None = None, max_rate: float | None = None):
        self.source = source
        self.is_live = source.is_live
        self.model = model or ModelSetup.frames_only()  # the inference thread's current model
        self.with_frames = with_frames or self.model.engine is None
        self.frame_spec = self.model.frame_spec  # what the reader bins with now (the user may change N)
        self.region = region
        self._generation = 0
        self._binner_generation = 0
        self.binner = self.frame_spec.binner(source.geometry, region)
        self._pending: tuple[FrameSpec, Region | None, int] | None = None  # applied by the reader thread
        self._accepted_generation = 0  # the inference thread drops frames of older binners
        self._lock = threading.Lock()
        self.clock = None if self.is_live else ReplayClock(source, replay, hold_at_end=hold_at_end,
                                                           on_restart=self._restart_stream)
        self._live_paused = False
        self._live_position_us = 0
        self.predictions = 0
        self._dropped_seen = 0
        self.first_batch_at: float | None = None  # perf_counter when the stream's first batch arrived
        self.first_position_us = 0
        self._motion = MotionRate()
        self._batch_watchers: list[Callable[[np.ndarray], None]] = []
        self.backlog = Backlog()  # live: the wait before the pipeline, dropped beyond a bound

        # Live streams, and replays in the window (whose clock keeps the chosen speed), drop the oldest frame
        # when the model falls behind; a headless replay never drops a frame and runs slower instead.
        drop = self.is_live if drop_late_frames is None else drop_late_frames
        self.frame_queue = FrameQueue(self.LIVE_QUEUE_FRAMES if drop else self.REPLAY_QUEUE_FRAMES, drop_oldest=drop)
        # Where frames may drop, an event-rate cap before binning bounds the work (None: from the measured
        # capacity, 0: off, else events/s); the excess is thinned uniformly and counted.
        self.rate_cap = RateCap(max_rate if drop else 0)
        self.output_queue: queue.Queue = queue.Queue(maxsize=512)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._release_threads: Callable[[], None] | None = None
        self._done = False
        self.done_at: float | None = None
        # Statistics for the status line and the summary.
        self.event_rate = StreamRate()
        self.frame_rate = StreamRate()
        self.latencies_ms: list[float] = []
        self.recent_latency_ms: deque[float] = deque(maxlen=200)
        self.recent_step_ms: deque[float] = deque(maxlen=50)

    # -- what runs now --------------------------------------------------------------------------------
    @property
    def engine(self):
        return self.model.engine

    @property
    def decoder(self):
        return self.model.decoder

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.model.class_names

    @property
    def mapping(self):
        return self.binner.mapping

    # -- headless -------------------------------------------------------------------------------------
    def records(self) -> Iterator[Record]:
        """Records in stream order: per frame (without an engine, or when asked), per prediction."""
        self.start()
        while True:
            record = self.wait_output(timeout=0.2)
            if record is None:
                if self._done:
                    return
                continue
            yield record
            # Back here only after the consumer has emitted the record (printed it): that is "emitted".
            if isinstance(record, Prediction):
                self.report_shown(record)

    def wait_output(self, timeout: float) -> Record | None:
        """The next record, waiting up to ``timeout`` s; None when none came or the stream has ended."""
        if self._done:
            return None
        try:
            item = self.output_queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, Marker):
            self._done = True
            self.done_at = time.perf_counter()
            if item.kind == "error":
                raise item.payload
            return None
        return item

    # -- window ---------------------------------------------------------------------------------------
    def poll(self, max_items: int = 1000) -> list[Record]:
        """Records ready now (never blocks); raises the worker's error, if any, once."""
        out = []
        while len(out) < max_items:
            record = self.wait_output(timeout=0)
            if record is None:
                break
            out.append(record)
        return out

    @property
    def finished(self) -> bool:
        return self._done

    def report_shown(self, prediction: Prediction) -> None:
        """The consumer has emitted ``prediction``: record its end-to-end latency."""
        latency = (time.perf_counter() - prediction.received_at) * 1e3
        self.latencies_ms.append(latency)
        self.recent_latency_ms.append(latency)

    def watch_batches(self, watcher: Callable[[np.ndarray], None]) -> None:
        """Call ``watcher(batch)`` on the reader thread with every batch read (the window's event view)."""
        self._batch_watchers.append(watcher)

    def add_tap(self, tap) -> None:
        """Hand every EventStore a live source receives to ``tap`` (the recorder), exactly as received, before
        the noise filter; recording is for live sources."""
        if not self.is_live:
            raise InputError("Recording is for live cameras and streams.")
        self.source.store_hooks.append(tap)

    def remove_tap(self, tap) -> None:
        if self.is_live and tap in self.source.store_hooks:
            self.source.store_hooks.remove(tap)

    # -- replay controls (a live stream ignores seek, speed and loop) ------------------------------------------
    def pause(self) -> None:
        if self.clock is not None:
            self.clock.pause()
        self._live_paused = True

    def resume(self) -> None:
        if self.clock is not None:
            self.clock.resume()
        self._live_paused = False

    @property
    def paused(self) -> bool:
        return self.clock.paused if self.clock is not None else self._live_paused

    @property
    def speed(self) -> float | None:
        return self.clock.speed if self.clock is not None else 1.0

    def set_speed(self, speed: float | None) -> None:
        if self.clock is not None:
            self.clock.speed = speed

    @property
    def loop(self) -> bool:
        return self.clock is not None and self.clock.loop

    @loop.setter
    def loop(self, on: bool) -> None:
        if self.clock is not None:
            self.clock.loop = on

    @property
    def at_end(self) -> bool:
        """A replay in the window has reached the end of the recording and waits for a seek or loop."""
        return self.clock is not None and self.clock.at_end

    @property
    def position_us(self) -> int:
        """Recording position of the newest batch read."""
        return self.clock.position_us if self.clock is not None else self._live_position_us

    def seek(self, position_s: float) -> None:
        """Replays: continue from ``position_s`` into the recording, with a fresh binner, engine and decoder."""
        if self.clock is not None:
            self.clock.seek(position_s)

    def reset(self) -> None:
        """Clear the model state and the decoder (ordered with the frames, applied by the inference thread)."""
        self.frame_queue.put_marker(Marker("reset"))

    # -- model and frames -----------------------------------------------------------------------------
    def set_model(self, setup: ModelSetup) -> None:
        """Swap engine, decoder, class names and frame spec in one step: the new model takes the next frame,
        and no frame made for the previous model reaches it (raises InputError now if the region does not
        fit the new model's input)."""
        self._set_frames(setup.frame_spec, self.region, Marker("model", setup))

    def set_binning(self, events_per_frame: int, region: Region | None) -> None:
        """New N or region for the running model (raises InputError now if the region is bad)."""
        spec = dataclasses.replace(self.frame_spec, events_per_frame=int(events_per_frame))
        self._set_frames(spec, region, None)

    def _set_frames(self, spec: FrameSpec, region: Region | None, marker: Marker | None) -> None:
        spec.mapping(self.source.geometry, region)  # validate here, in the caller's thread
        with self._lock:
            self._generation += 1
            self._pending = (spec, region, self._generation)
            self.frame_spec, self.region = spec, region
            self.frame_queue.put_marker(Marker("frames", self._generation))
            if marker is not None:
                self.frame_queue.put_marker(marker)

    def _apply_pending_frames(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        spec, region, generation = pending
        self.binner = spec.binner(self.source.geometry, region).continue_from(self.binner)
        self._binner_generation = generation
        self.frame_queue.clear_frames()
        self.frame_queue.put_marker(Marker("reset"))

    def stats(self) -> dict:
        """What the status line shows."""
        return {
            "event_rate": self.event_rate.rate(),
            "frames_per_s": self.frame_rate.rate(),
            "step_ms": percentile(list(self.recent_step_ms), 50),
            "latency_ms": percentile(list(self.recent_latency_ms), 50),
            "dropped_frames": self.frame_queue.dropped,
            "behind_s": self.backlog.behind_s if self.is_live else 0.0,
            "status": getattr(self.source, "status", "") or "",
        }

    # -- threads --------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._threads:
            return
        self._claim_threads(self.model.engine)
        for target, name in ((self._reader_loop, "evapp-reader"), (self._inference_loop, "evapp-inference")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    @property
    def running(self) -> bool:
        """Whether the reader or the inference thread is still alive."""
        return any(t.is_alive() for t in self._threads)

    def _claim_threads(self, engine) -> None:
        if self._release_threads is not None:
            self._release_threads()
        self._release_threads = engine.claim_cpu_threads() if engine is not None else None

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self.clock is not None:
            self.clock.stop()
        if self.is_live:
            self.source.stop()
        self.frame_queue.close()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)
        if self._release_threads is not None:  # the process's other work gets its threads back
            self._release_threads()
            self._release_threads = None

    def close(self) -> None:
        self.stop()
        self.source.close()

    def _reader_loop(self) -> None:
        try:
            for batch, recording_us in self._batches():
                if self._stop.is_set():
                    break
                self._apply_pending_frames()
                self._read_one(batch, time.perf_counter(), recording_us)
            self.frame_queue.put_marker(Marker("end"))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            self.frame_queue.put_marker(Marker("error", exc))

    def _batches(self) -> Iterator[tuple[np.ndarray, int]]:
        if self.clock is not None:
            yield from self.clock.batches()
            return
        for batch in self.source.batches():
            self._live_position_us = int(batch["timestamp"][-1])
            yield batch, self._live_position_us

    def _read_one(self, batch: np.ndarray, received_at: float, recording_us: int) -> None:
        if self.first_batch_at is None:
            self.first_batch_at, self.first_position_us = received_at, int(batch["timestamp"][0])
        self.event_rate.add(batch.shape[0], int(batch["timestamp"][-1]), received_at)
        for watcher in self._batch_watchers:
            watcher(batch)
        due_at = received_at  # a latency counts from when the events were due, not when they reached us
        if self.is_live:
            due_at -= self.backlog.update(received_at, int(batch["timestamp"][-1]))
            if self.backlog.dropping:  # oldest first: these events waited longer than the bound
                self.backlog.events_dropped += batch.shape[0]
                return
        cap = self.rate_cap
        if cap.active:
            batch = cap.apply(batch, cap.keep_fraction(self.event_rate.rate(), self.binner, self.engine is not None))
        if self.is_live and self._live_paused:
            return  # live and paused: keep reading (and recording), show and infer nothing
        done = self.binner.push(batch)
        shift = recording_us - int(batch["timestamp"][-1])
        spec, generation = self.frame_spec, self._binner_generation
        for counts, t_end in zip(done.counts, done.t_end_us.tolist(), strict=True):
            self.frame_rate.add(1, t_end, received_at)
            fps = self._motion.update(t_end)
            self.frame_queue.put(FrameItem(counts, t_end, due_at, fps, t_end + shift, generation, spec))

    def _restart_stream(self) -> None:
        """A seek: no frame spans the jump, and the model starts again from rest."""
        self.binner.reset()
        self._motion.reset()
        self.frame_queue.clear_frames()
        self.frame_queue.put_marker(Marker("reset"))

    def _inference_loop(self) -> None:
        try:
            while not self._stop.is_set():  # stopped: queued frames are left, so closing never waits on them
                item = self.frame_queue.get(timeout=0.1)
                if item is None:
                    continue
                if isinstance(item, Marker):
                    if item.kind in ("end", "error"):
                        self._emit(item)
                        return
                    self._apply_marker(item)
                elif item.generation >= self._accepted_generation:
                    self._infer(item)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            self._emit(Marker("error", exc))

    def _apply_marker(self, marker: Marker) -> None:
        if marker.kind == "reset":
            if self.engine is not None:
                self.engine.reset()
            if self.decoder is not None:
                self.decoder.reset()
        elif marker.kind == "frames":
            self._accepted_generation = marker.payload
        elif marker.kind == "model":
            self.model = marker.payload
            self._claim_threads(self.model.engine)
            self.with_frames = self.with_frames or self.model.engine is None

    def _infer(self, item: FrameItem) -> None:
        if self.with_frames:
            self._emit(FrameRecord(item.t_end_us, item.spec.events_per_frame, item.received_at, item.recording_us))
        if self.engine is None:
            return
        started = time.perf_counter()
        answers = self.engine.feed(item.counts)
        feed_ms = (time.perf_counter() - started) * 1e3
        self.rate_cap.note_feed(feed_ms, self.engine.batch)
        if self.model.governor is not None:  # --policy auto: K for the next frame
            dropped, self._dropped_seen = self.frame_queue.dropped > self._dropped_seen, self.frame_queue.dropped
            self.model.governor.observe(feed_ms, self.frame_rate.rate(), item.t_end_us, dropped)
        for answer in answers:
            self.recent_step_ms.append(answer.step_ms)
            self._emit(self._prediction(item, answer))

    def _emit(self, item: Record | Marker) -> None:
        while True:
            try:
                self.output_queue.put(item, timeout=0.1)
                return
            except queue.Full:
                if self._stop.is_set():
                    return

    def _label(self, class_id: int, confidence: float) -> Label:
        return Label(class_id, "idle" if class_id == IDLE else self.class_names[class_id], confidence)

    def _prediction(self, item: FrameItem, answer) -> Prediction:
        decision = self.decoder.update(item.t_end_us, answer.probs, item.frames_per_s)
        self.predictions += 1
        return Prediction(item.t_end_us, self._label(answer.class_id, answer.confidence),
                          tuple(float(p) for p in answer.probs), answer.step_ms, answer.spike_rate,
                          self._label(decision.class_id, decision.confidence), item.frames_per_s,
                          item.received_at, item.recording_us,
                          policy=self.engine.policy_text if self.model.governor is not None else None)

    def summary(self, **live: int | str | None) -> Summary:
        """The stream's accounting; ``live`` adds reconnects and the recording's events and path."""
        return summary_of(self, **live)
