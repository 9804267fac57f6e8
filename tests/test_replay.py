"""ReplayClock on real recordings: start, loop, pacing, speed, seek, pause, hold at the end, stop.

Pacing is checked as a lower bound only (a batch is never released early); wall-clock upper bounds appear only
as hang guards (join timeouts), so a busy machine slows these tests down but does not fail them.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from evapp.sources import ReplayClock, ReplayOptions, open_source
from evapp.sources.aedat3 import write_aedat3
from evapp.sources.aedat4 import write_aedat4
from evapp.testing import random_stream
from tests.conftest import DVX

HANG_S = 10.0  # a guard against a hung reader, never a measure of speed


def rebased(events):
    out = events.copy()
    out["timestamp"] -= out["timestamp"][0]
    return out


def recording(tmp_path, n, rate_per_us=1.0, packet=500, seed=0):
    """An AEDAT 3.1 file of ``n`` events (one batch per ``packet`` events), opened, and its rebased events."""
    events = random_stream(n, 128, 128, seed=seed, rate_per_us=rate_per_us)
    path = tmp_path / "rec.aedat"
    write_aedat3(path, events, packet_size=packet)
    return open_source(path), rebased(events)


RESTART = "restart"


class Reader:
    """Iterates ``ReplayClock.batches()`` in a thread, as the pipeline's reader does.

    ``items`` holds, in the reader's order, (release time, batch, recording_us, position_us) per batch and
    ``RESTART`` where ``on_restart`` was called.
    """

    def __init__(self, source, options=None, stop_after_events=None, start=True, **kwargs):
        self.items: list = []
        self.error: BaseException | None = None
        self.stop_after_events = stop_after_events
        self.clock = ReplayClock(source, options, on_restart=lambda: self.items.append(RESTART), **kwargs)
        self.thread = threading.Thread(target=self._run, daemon=True)
        if start:
            self.start()

    def start(self):
        self.thread.start()

    def _run(self):
        try:
            for batch, recording_us in self.clock.batches():
                self.items.append((time.perf_counter(), batch, recording_us, self.clock.position_us))
                if self.stop_after_events is not None and self.events >= self.stop_after_events:
                    self.clock.stop()
        except BaseException as exc:  # noqa: BLE001 - raised in the test's thread by join()
            self.error = exc

    @property
    def batches(self):
        return [item[1] for item in self.items if item is not RESTART]

    @property
    def events(self):
        return sum(b.shape[0] for b in self.batches)

    def segments(self):
        """The events between restarts: one array per stretch of the stream."""
        parts: list[list] = [[]]
        for item in self.items:
            if item is RESTART:
                parts.append([])
            else:
                parts[-1].append(item[1])
        return [np.concatenate(p) if p else None for p in parts]

    def wait_for(self, condition, timeout=HANG_S):
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.error is None, self.error
            assert time.monotonic() < deadline, "the replay did not get there"
            time.sleep(0.005)

    def join(self, timeout=HANG_S):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "batches() did not return"
        if self.error is not None:
            raise self.error


def test_loop_continues_the_clock_and_start_skips(tmp_path):
    source, file = recording(tmp_path, 5000, packet=700, seed=9)
    duration = int(file["timestamp"][-1])
    start_us = duration // 2
    clock = ReplayClock(source, ReplayOptions(speed=None, loop=True, start_s=start_us / 1e6))
    got, shifts = [], []
    for batch, recording_us in clock.batches():
        got.append(batch)
        shifts.append(int(batch["timestamp"][-1]) - recording_us)
        if sum(b.shape[0] for b in got) >= 3 * 5000:
            break
    t = np.concatenate(got)["timestamp"]
    assert (np.diff(t) >= 0).all()
    assert t[0] >= start_us
    second_half = file["timestamp"][file["timestamp"] >= start_us]
    np.testing.assert_array_equal(t[: second_half.shape[0]], second_half)
    # The second pass repeats the same events one pass length later.
    period = duration - start_us + 1
    np.testing.assert_array_equal(t[second_half.shape[0] : 2 * second_half.shape[0]], second_half + period)
    # recording_us is the place in the recording: the batch's time less the passes before it.
    assert shifts[0] == 0 and set(np.diff(shifts).tolist()) == {0, period}


def test_pacing_never_releases_a_batch_before_its_stream_time(tmp_path):
    speed = 4.0
    source, file = recording(tmp_path, 10_000, rate_per_us=0.01, packet=1000)  # about 1 s of stream time
    clock = ReplayClock(source, ReplayOptions(speed=speed))
    t0 = time.perf_counter()  # the clock anchors no earlier than this, at the first batch's first event (0)
    released = [(time.perf_counter(), batch) for batch, _ in clock.batches()]
    np.testing.assert_array_equal(np.concatenate([b for _, b in released]), file)
    for wall, batch in released:
        # A lower bound only: a batch is never early (it may be late on a busy machine).
        assert wall >= t0 + (int(batch["timestamp"][-1]) - 0) * 1e-6 / speed


def write_aedat4_recording(tmp_path, events):
    path = tmp_path / "rec.aedat4"
    write_aedat4(path, events, DVX)
    return path


def write_aedat3_recording(tmp_path, events):
    path = tmp_path / "rec.aedat"
    write_aedat3(path, events, packet_size=1000)
    return path


@pytest.mark.parametrize("write", [write_aedat3_recording, write_aedat4_recording], ids=["aedat3", "aedat4"])
def test_max_speed_yields_the_whole_file_and_returns(tmp_path, write):
    events = random_stream(20_000, 128, 128, seed=3)
    clock = ReplayClock(open_source(write(tmp_path, events)), ReplayOptions(speed=None))
    got = list(clock.batches())  # without hold_at_end the generator returns at the end
    np.testing.assert_array_equal(np.concatenate([b for b, _ in got]), rebased(events))
    assert [r for _, r in got] == [int(b["timestamp"][-1]) for b, _ in got]
    assert clock.position_us == int(rebased(events)["timestamp"][-1])


def test_seek_from_another_thread_restarts_at_the_sought_place(tmp_path):
    source, file = recording(tmp_path, 50_000, rate_per_us=0.1, packet=1000)  # 0.5 s, 10 ms batches
    reader = Reader(source, ReplayOptions(speed=1.0))
    reader.wait_for(lambda: reader.clock.position_us >= 250_000)
    reader.clock.seek(0.1)  # back
    reader.join()
    assert reader.items.count(RESTART) == 1
    before, after = reader.segments()
    np.testing.assert_array_equal(before, file[: before.shape[0]])  # what came before is a prefix of the file
    assert before["timestamp"][-1] >= 250_000
    np.testing.assert_array_equal(after, file[file["timestamp"] >= 100_000])
    for item in reader.items:
        if item is not RESTART:
            _, batch, recording_us, position_us = item
            assert recording_us == position_us == int(batch["timestamp"][-1])  # no loop: no offset
    assert reader.clock.position_us == int(file["timestamp"][-1])


def waiting_reader(tmp_path, where: str):
    """A reader thread whose first batch waits: for its pacing (speed 0.001: 50 s) or because it is paused."""
    source, file = recording(tmp_path, 5000, rate_per_us=0.01, packet=500)  # 0.5 s, 50 ms batches
    reader = Reader(source, ReplayOptions(speed=0.001 if where == "pacing" else None), start=False)
    if where == "pause":
        reader.clock.pause()
    reader.start()
    time.sleep(0.2)
    return reader, file


@pytest.mark.parametrize("where", ["pacing", "pause"])
def test_seek_during_a_wait_restarts_without_releasing_the_waiting_batch(tmp_path, where):
    reader, file = waiting_reader(tmp_path, where)
    reader.clock.seek(0.1)
    reader.wait_for(lambda: RESTART in reader.items)
    time.sleep(0.1)
    assert reader.items == [RESTART]  # the batch that was waiting belongs before the seek: never released
    if where == "pause":
        assert reader.clock.paused  # a seek does not resume
        reader.clock.resume()
    else:
        reader.clock.speed = None
    reader.join()
    before, after = reader.segments()
    assert before is None
    np.testing.assert_array_equal(after, file[file["timestamp"] >= 100_000])


def test_pause_blocks_the_stream_and_resume_continues_without_a_burst(tmp_path):
    speed = 2.0
    source, file = recording(tmp_path, 20_000, rate_per_us=0.02, packet=500)  # 1 s, 25 ms batches
    reader = Reader(source, ReplayOptions(speed=speed))
    reader.wait_for(lambda: len(reader.items) >= 4)
    reader.clock.pause()
    assert reader.clock.paused
    time.sleep(0.3)  # a batch already past the pause check (in its pacing wait) may still come
    held = len(reader.items)
    time.sleep(0.4)
    assert len(reader.items) == held  # nothing while paused
    resumed_at = time.perf_counter()
    reader.clock.resume()
    assert not reader.clock.paused
    reader.join()
    # Nothing lost, nothing repeated.
    np.testing.assert_array_equal(np.concatenate(reader.batches), file)
    # Resume re-anchors the pacing: the rest of the file is paced from the resume, not released at once.
    after = reader.items[held:]
    assert after and all(wall >= resumed_at for wall, *_ in after)
    first_t = int(after[0][1]["timestamp"][0])
    assert after[-1][0] >= resumed_at + (int(file["timestamp"][-1]) - first_t) * 1e-6 / speed


def test_hold_at_end_waits_for_a_seek_and_stop_ends_it(tmp_path):
    source, file = recording(tmp_path, 5000, packet=500)
    mid_us = int(file["timestamp"][2500])
    tail = file[file["timestamp"] >= mid_us]
    reader = Reader(source, ReplayOptions(speed=None), hold_at_end=True)
    reader.wait_for(lambda: reader.events == 5000)
    time.sleep(0.2)
    assert reader.thread.is_alive() and reader.events == 5000  # held at the end, not returned
    reader.clock.seek(mid_us / 1e6)
    reader.wait_for(lambda: reader.events == 5000 + tail.shape[0])
    reader.clock.seek(-5.0)  # clamped at the start of the recording
    reader.wait_for(lambda: reader.events == 2 * 5000 + tail.shape[0])
    time.sleep(0.1)
    assert reader.thread.is_alive()
    reader.clock.stop()
    reader.join(timeout=1.0)
    whole, from_mid, again = reader.segments()
    np.testing.assert_array_equal(whole, file)
    np.testing.assert_array_equal(from_mid, tail)
    np.testing.assert_array_equal(again, file)


def test_hold_at_end_then_loop_continues_the_clock(tmp_path):
    source, file = recording(tmp_path, 5000, packet=500)
    reader = Reader(source, ReplayOptions(speed=None), hold_at_end=True, stop_after_events=3 * 5000)
    reader.wait_for(lambda: reader.events == 5000)
    time.sleep(0.1)
    assert reader.thread.is_alive() and reader.events == 5000
    reader.clock.loop = True
    reader.join()
    assert RESTART not in reader.items  # looping is no restart
    t = np.concatenate(reader.batches)["timestamp"]
    period = int(file["timestamp"][-1]) + 1
    np.testing.assert_array_equal(t[:5000], file["timestamp"])
    np.testing.assert_array_equal(t[5000:10_000], file["timestamp"] + period)


def test_speed_change_cuts_a_long_pacing_wait(tmp_path):
    source, file = recording(tmp_path, 5000, rate_per_us=0.01, packet=500)  # 50 ms batches
    reader = Reader(source, ReplayOptions(speed=0.001))  # the first batch alone would take 50 s
    time.sleep(0.2)
    assert reader.items == []
    reader.clock.speed = None
    assert reader.clock.speed is None
    reader.join()
    np.testing.assert_array_equal(np.concatenate(reader.batches), file)


@pytest.mark.parametrize("where", ["pacing", "pause"])
def test_stop_returns_promptly_from_a_wait(tmp_path, where):
    reader, _ = waiting_reader(tmp_path, where)
    assert reader.thread.is_alive() and reader.items == []
    stopped_at = time.monotonic()
    reader.clock.stop()
    reader.join(timeout=1.0)
    assert time.monotonic() - stopped_at < 1.0
    assert reader.items == []  # a stop during the wait releases nothing
