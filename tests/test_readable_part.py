"""A recording that is not whole (cut off inside a packet, never finalised, a packet that does not decode, a
damaged packet index, a recorder killed with SIGKILL): evapp replays every event it can read, exactly, says what
it could not in one warning, and counts it in the summary and in `evapp info` (issue 19)."""

from __future__ import annotations

import json
import signal
import struct

import numpy as np
import pytest

from evapp.cli.main import main
from evapp.sources import open_source
from evapp.sources.aedat4 import write_aedat4
from evapp.testing import free_port, random_stream, start_server
from tests.conftest import DVX
from tests.test_isolation import recording_live, wait_until

PACKET = 10_000  # events per writeEvents call, and so per packet


def packet_spans(raw: bytes, n: int) -> list[tuple[int, int]]:
    """(start, end) bytes of the first ``n`` packets, from AEDAT 4.0's framing: the 14-byte magic, an int32 header
    size and the header, then per packet an int32 stream id, an int32 size and that many bytes."""
    (header_size,) = struct.unpack_from("<i", raw, 14)
    spans, at = [], 18 + header_size
    for _ in range(n):
        _, size = struct.unpack_from("<ii", raw, at)
        spans.append((at, at + 8 + size))
        at += 8 + size
    return spans


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    path = tmp_path_factory.mktemp("whole") / "take.aedat4"
    events = random_stream(6 * PACKET, 640, 480, seed=4)
    write_aedat4(path, [events[i : i + PACKET] for i in range(0, events.shape[0], PACKET)], DVX)
    raw = path.read_bytes()
    spans = packet_spans(raw, 6)
    assert all(e == s for (_, e), (s, _) in zip(spans[:-1], spans[1:], strict=True))  # six packets, back to back
    return events, raw, spans


def replayed(path) -> np.ndarray:
    source = open_source(path)
    try:
        return np.concatenate(list(source.batches()))
    finally:
        source.close()


def same_events(got: np.ndarray, expected: np.ndarray) -> bool:
    return bool(got.shape == expected.shape and (got["x"] == expected["x"]).all()
                and (got["y"] == expected["y"]).all()
                and (got["timestamp"] == expected["timestamp"] - expected["timestamp"][0]).all())


def run(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def replay_summary(path, capsys):
    code, out, err = run(["replay", str(path), "--headless", "--no-model", "--max-speed"], capsys)
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1]), err


def test_a_recording_cut_inside_a_packet_replays_every_whole_packet(original, tmp_path, capsys):
    events, raw, spans = original
    start, end = spans[3]
    path = tmp_path / "cut.aedat4"
    path.write_bytes(raw[: (start + end) // 2])
    assert same_events(replayed(path), events[: 3 * PACKET])
    capsys.readouterr()
    summary, err = replay_summary(path, capsys)
    assert summary["events_total"] == 3 * PACKET and "cut off" in summary["readable_end"]
    warnings = err.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("evapp: WARNING:") and "30,000 events" in warnings[0]
    code, out, _ = run(["info", str(path)], capsys)
    assert code == 0 and "events      30,000" in out and "readable    only the events above: it was cut off" in out


def test_a_recording_never_finalised_replays_every_packet_and_says_so(original, tmp_path, capsys):
    events, raw, spans = original
    path = tmp_path / "unfinished.aedat4"
    path.write_bytes(raw[: spans[4][1]])  # five whole packets, no packet index
    assert same_events(replayed(path), events[: 5 * PACKET])
    capsys.readouterr()
    summary, _ = replay_summary(path, capsys)
    assert summary["events_total"] == 5 * PACKET and "cut off" in summary["readable_end"]


def test_a_packet_that_does_not_decode_is_skipped_and_counted(original, tmp_path, capsys):
    events, raw, spans = original
    damaged = bytearray(raw)
    start, end = spans[2]
    middle = (start + end) // 2
    damaged[middle : middle + 64] = bytes(64)
    path = tmp_path / "damaged.aedat4"
    path.write_bytes(bytes(damaged))
    expected = np.concatenate([events[: 2 * PACKET], events[3 * PACKET :]])
    got = replayed(path)
    assert got.shape == expected.shape and (got["x"] == expected["x"]).all()
    capsys.readouterr()
    summary, err = replay_summary(path, capsys)
    assert summary["events_total"] == 5 * PACKET and summary["packets_skipped"] == 1 and "readable_end" not in summary
    assert "does not decode" in err
    code, out, _ = run(["info", str(path), "--json"], capsys)
    assert code == 0 and json.loads(out)["packets_skipped"] == 1


def test_a_damaged_packet_index_does_not_matter(original, tmp_path, capsys):
    """dv-processing spins for ever opening such a file; the packets before the index are all there."""
    events, raw, spans = original
    damaged = bytearray(raw)
    index = spans[-1][1]
    damaged[index + 8 :] = bytes(b ^ 0x5A for b in damaged[index + 8 :])
    path = tmp_path / "index.aedat4"
    path.write_bytes(bytes(damaged))
    assert same_events(replayed(path), events)
    capsys.readouterr()
    summary, err = replay_summary(path, capsys)
    assert summary["events_total"] == events.shape[0] and not err.strip()


def test_a_whole_recording_says_nothing_of_the_kind(original, tmp_path, capsys):
    events, raw, _ = original
    path = tmp_path / "whole.aedat4"
    path.write_bytes(raw)
    summary, err = replay_summary(path, capsys)
    assert summary["events_total"] == events.shape[0] and "packets_skipped" not in summary
    assert "readable_end" not in summary and not err.strip()


def test_a_recording_whose_recorder_was_killed_replays_what_it_had_written(tmp_path, capsys):
    port = free_port()
    server = start_server(port, 400_000, seed=5, rate=100_000, batch=5000, paced=True)
    rec, err_path = tmp_path / "killed.aedat4", tmp_path / "err"
    try:
        live = recording_live(port, rec, err_path)
        wait_until(lambda: rec.exists() and rec.stat().st_size >= 400_000)
        live.send_signal(signal.SIGKILL)
        live.wait(timeout=10)
    finally:
        server.kill()
    served = random_stream(400_000, 640, 480, seed=5, rate_per_us=0.1)
    got = replayed(rec)
    assert 0 < got.shape[0] < served.shape[0]
    assert same_events(got, served[: got.shape[0]])  # a prefix of what was sent, exactly
    capsys.readouterr()
    summary, err = replay_summary(rec, capsys)
    assert summary["events_total"] == got.shape[0] and summary["readable_end"], err
