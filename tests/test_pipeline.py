"""The pipeline's parts on their own: the frame queue's back-pressure, the records' JSON lines, a model switch
mid-stream (no frame made for the previous model reaches the new one) and the taps."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from evapp.binning import FrameSpec
from evapp.errors import InputError
from evapp.events import SensorGeometry
from evapp.model_setup import ModelChoice, ModelSetup, build_model_setup
from evapp.pipeline import FrameRecord, Label, Pipeline, Prediction, ReplayOptions, Summary
from evapp.pipeline.queues import FrameItem, FrameQueue, LatestEvents, Marker
from evapp.sources import open_source
from evapp.sources.aedat4 import write_aedat4
from evapp.testing import random_stream

SPEC = FrameSpec((4, 4), 10)


def frame(i: int) -> FrameItem:
    return FrameItem(np.full((2, 4, 4), i, np.float32), i, 0.0, 0.0, i, 0, SPEC)


def drain(q: FrameQueue) -> list:
    out = []
    while (item := q.get(timeout=0)) is not None:
        out.append(item)
    return out


def test_live_queue_drops_the_oldest_frames_and_never_a_marker():
    q = FrameQueue(2, drop_oldest=True)
    q.put(frame(0))
    q.put_marker(Marker("reset"))
    q.put(frame(1))
    q.put_marker(Marker("frames", 7))
    for i in range(2, 6):
        q.put(frame(i))  # each put beyond the bound drops the oldest frame still waiting
    assert q.dropped == 4 and q.frames_waiting == 2
    items = drain(q)
    assert [(type(i).__name__, i.kind if isinstance(i, Marker) else i.t_end_us) for i in items] == [
        ("Marker", "reset"), ("Marker", "frames"), ("FrameItem", 4), ("FrameItem", 5)]
    assert q.frames_waiting == 0


def test_replay_queue_blocks_instead_of_dropping():
    q = FrameQueue(2, drop_oldest=False)
    q.put(frame(0))
    q.put(frame(1))
    done = threading.Event()

    def producer():
        q.put(frame(2))
        done.set()

    thread = threading.Thread(target=producer, daemon=True)
    thread.start()
    assert not done.wait(0.5)  # full: the reader waits
    q.put_marker(Marker("reset"))  # a marker never waits for room
    assert q.get(timeout=1).t_end_us == 0
    assert done.wait(5)
    thread.join(5)
    assert q.dropped == 0
    assert [getattr(i, "t_end_us", None) for i in drain(q)] == [1, None, 2]


def test_closing_the_queue_releases_a_blocked_reader():
    q = FrameQueue(1, drop_oldest=False)
    q.put(frame(0))
    thread = threading.Thread(target=q.put, args=(frame(1),), daemon=True)
    thread.start()
    q.close()
    thread.join(2)
    assert not thread.is_alive()


def test_latest_events_keeps_the_newest():
    buffer = LatestEvents(max_events=250)
    for i in range(5):
        buffer.add(np.full(100, i))
    taken = buffer.take()
    assert taken.shape[0] == 300 and taken[0] == 2 and taken[-1] == 4  # the oldest whole batches went
    assert buffer.take() is None


def test_records_print_the_json_lines_of_the_command_line():
    """The JSON lines ``evapp replay --headless`` prints, pinned: a sink's output format is a contract."""
    frame_line = FrameRecord(1711630, 400, received_at=12.5, recording_us=1711630).to_json()
    assert json.dumps(frame_line) == '{"type": "frame", "t_us": 1711630, "events": 400}'
    prediction = Prediction(1711630, Label(0, "hand_clapping", 0.795723456), (0.795723456, 0.204276544), 138.02712,
                            0.0593912345, Label(-1, "idle", 0.79572341), 12.345, received_at=1.0)
    assert json.dumps(prediction.to_json()) == (
        '{"type": "prediction", "t_us": 1711630, "class_id": 0, "class_name": "hand_clapping", "confidence": '
        '0.79572, "probs": [0.79572, 0.20428], "step_ms": 138.027, "spike_rate": 0.05939, "decision": {"class_id": '
        '-1, "class_name": "idle", "confidence": 0.79572}, "frames_per_s": 12.345}')
    summary = Summary(4062087, 702, 76, 112261, 3668950, "80,0,480,480", (128, 128), 695, 0, 1053.5741, 1194.18512)
    assert json.dumps(summary.to_json()) == (
        '{"type": "summary", "events_total": 4062087, "frames": 702, "leftover_events": 76, '
        '"events_outside_region": 112261, "events_thinned": 3668950, "region": "80,0,480,480", "input_size": '
        '[128, 128], "predictions": 695, "dropped_frames": 0, "latency_ms": {"median": 1053.574, "p99": 1194.185}}')
    live = Summary(10, 0, 10, 0, 0, "0,0,8,8", (8, 8), 0, 0, None, None, reconnects=1, recorded_events=10,
                   recording="x.aedat4").to_json()
    assert list(live)[-3:] == ["reconnects", "recorded_events", "recording"] and live["latency_ms"]["median"] is None


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("pipe") / "stream.aedat4"
    write_aedat4(path, random_stream(200_000, 320, 240, seed=3, rate_per_us=0.05),
                 SensorGeometry(320, 240, "DVXplorerLite_00000001"))
    return path


def test_set_model_swaps_engine_decoder_and_frames_between_two_frames(recording):
    """From a 128x128 model to a 64x64 one in the middle of a replay: the new model only ever gets frames of its
    own spec (a frame of the old spec would not fit it and the engine would raise), and the accounting goes on."""
    first = build_model_setup(ModelChoice("saformer-2-256", policy="persistent", device="cpu",
                                          events_per_frame=2000))
    second = build_model_setup(ModelChoice("spikingresformer-dvsg", policy="persistent", device="cpu",
                                           events_per_frame=1000))
    assert (first.frame_spec.input_size, second.frame_spec.input_size) == ((128, 128), (64, 64))
    pipeline = Pipeline(open_source(recording), first, replay=ReplayOptions(speed=None), with_frames=True)
    seen = []
    try:
        for record in pipeline.records():
            seen.append(record)
            if len([r for r in seen if isinstance(r, Prediction)]) == 5:
                pipeline.set_model(second)
    finally:
        pipeline.close()
    frames = [r.events for r in seen if isinstance(r, FrameRecord)]
    switch = frames.index(1000)
    assert set(frames[:switch]) == {2000} and set(frames[switch:]) == {1000}
    assert pipeline.engine is second.engine and pipeline.decoder is second.decoder
    assert second.engine.frames_since_reset > 0 and pipeline.mapping.width == 64
    s = pipeline.summary()
    assert s.events_total == 200_000 and s.frames >= len(frames)  # the accounting went on across the change
    assert s.input_size == (64, 64)


def test_set_model_refuses_a_region_the_new_model_does_not_fit(recording):
    from evapp.binning import Region

    pipeline = Pipeline(open_source(recording), ModelSetup.frames_only(FrameSpec((32, 32), 500)),
                        region=Region(0, 0, 40, 40))
    try:
        with pytest.raises(InputError, match="smaller than"):
            pipeline.set_model(ModelSetup.frames_only(FrameSpec((64, 64), 500)))
        assert pipeline.frame_spec.input_size == (32, 32)  # nothing changed
    finally:
        pipeline.close()


def test_taps_are_for_live_sources(recording):
    pipeline = Pipeline(open_source(recording))
    try:
        with pytest.raises(InputError, match="live"):
            pipeline.add_tap(lambda store: None)
    finally:
        pipeline.close()


def test_watchers_see_every_batch(recording):
    pipeline = Pipeline(open_source(recording), replay=ReplayOptions(speed=None))
    counted = []
    pipeline.watch_batches(lambda batch: counted.append(batch.shape[0]))
    try:
        for _ in pipeline.records():
            pass
    finally:
        pipeline.close()
    assert sum(counted) == 200_000


def test_event_rate_follows_stream_time_not_the_readers_bursts():
    """A reader that waits for a slow model delivers a second of stream in a burst, then nothing for a while:
    the rate shown is the stream's (stream time), and 0 only once nothing has come for a second of wall time."""
    from evapp.pipeline.queues import StreamRate

    rate = StreamRate(window_s=1.0)
    wall = 100.0
    for burst in range(3):  # every 0.9 s of wall time, one burst of 0.5 s of stream at 72 k events/s
        for i in range(50):
            rate.add(720, burst * 500_000 + i * 10_000, now=wall)
        if burst:  # (the first burst holds only half a second of stream)
            assert rate.rate(now=wall + 0.5) == pytest.approx(72_000, rel=0.02)  # mid-gap: the stream's rate
        wall += 0.9
    assert rate.rate(now=wall + 1.5) == 0.0  # a stalled stream
    rate.add(100, 0, now=wall + 2)  # a seek back to the start begins a new measurement
    assert rate.rate(now=wall + 2) == pytest.approx(100)


def test_a_long_replay_shows_its_progress(recording, capsys):
    from evapp.sinks.progress import ReplayProgress

    pipeline = Pipeline(open_source(recording), replay=ReplayOptions(speed=None))
    progress = ReplayProgress(pipeline, enabled=True)
    progress.REFRESH_S = 0.0
    try:
        for _ in pipeline.records():
            progress.update()
    finally:
        progress.close()
        pipeline.close()
    err = capsys.readouterr().err
    duration_s = round(pipeline.position_us / 1e6, 1)
    assert "replay:" in err and f"/{duration_s:.1f} s of recording" in err
    quiet = Pipeline(open_source(recording))
    assert ReplayProgress(quiet, enabled=False).bar is None  # not a terminal: silent
    quiet.close()


def test_the_rate_cap_thins_evenly_and_counts(recording):
    """Where frames may drop, a cap before binning keeps the stream's work bounded: a fixed events/s cap keeps that
    share of every batch, spread evenly, and the summary accounts for every event."""
    from evapp.pipeline.rate_cap import RateCap

    cap = RateCap(max_rate=1000.0)
    kept = cap.apply(np.arange(10_000), cap.keep_fraction(4000.0, None, False))
    assert cap.kept == 0.25 and kept.shape[0] == 2500 and cap.dropped == 7500
    assert set(np.diff(kept).tolist()) == {4}  # every fourth event, not the first quarter
    assert RateCap(0).keep_fraction(1e9, None, True) == 1.0  # off

    pipeline = Pipeline(open_source(recording), replay=ReplayOptions(speed=None), drop_late_frames=True,
                        max_rate=10_000.0)
    try:
        for _ in pipeline.records():
            pass
    finally:
        pipeline.close()
    s = pipeline.summary()
    assert s.events_total == 200_000 and s.events_over_rate_cap > 100_000  # a 50 kev/s recording capped at 10 kev/s
    assert s.frames * 5000 + s.leftover_events + s.events_outside_region + s.events_over_rate_cap == 200_000
    assert json.loads(json.dumps(s.to_json()))["events_over_rate_cap"] == s.events_over_rate_cap


def test_the_automatic_cap_follows_the_models_capacity():
    from evapp.binning import FrameSpec
    from evapp.pipeline.rate_cap import RateCap

    binner = FrameSpec((128, 128), 1000).binner(SensorGeometry(128, 128, "DVS128"))
    binner.push(random_stream(10_000, 128, 128, seed=1))
    cap = RateCap(None)
    assert cap.keep_fraction(1e6, binner, True) == 1.0  # nothing measured yet
    cap.note_feed(40.0, 4)  # 10 ms per row: 90 frames/s at 90 % load
    assert cap.keep_fraction(50_000, binner, True) == 1.0  # 50 frames/s: room
    assert cap.keep_fraction(450_000, binner, True) == pytest.approx(0.2)  # 450 frames/s: keep a fifth
