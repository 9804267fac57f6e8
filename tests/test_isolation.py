"""Misbehaving network peers against the reader child (evapp.sources.isolation): a peer that accepts and never
sends, one that sends random bytes, one whose stream turns to garbage after valid packets. Each run of the real
`evapp live` is ended by SIGINT within 2 s or fails with one sentence, and a recording keeps every event the
process received, finalised."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from evapp.sources import open_source
from evapp.testing import T0_US, free_port, random_stream, start_server
from tests.conftest import json_lines
from tests.test_live import count_events

ROOT = Path(__file__).resolve().parent.parent


class Peer:
    """A TCP server on 127.0.0.1 that accepts every client and then does ``behaviour(client)`` in a thread."""

    def __init__(self, behaviour):
        self.port = free_port()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._behaviour = behaviour
        self._clients: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self._clients.append(client)
            threading.Thread(target=self._run, args=(client,), daemon=True).start()

    def _run(self, client):
        try:
            self._behaviour(client)
        except OSError:
            pass

    def close(self):
        self._server.close()
        for c in self._clients:
            c.close()


def silent(client):
    time.sleep(120)


def garbage(client):
    rng = np.random.default_rng(1)
    while True:
        client.sendall(rng.integers(0, 256, 1 << 16, dtype=np.uint8).tobytes())
        time.sleep(0.01)


def turns_to_garbage(upstream_port: int, valid_bytes: int):
    """Forward the real server's first ``valid_bytes`` bytes, then random bytes."""

    def behaviour(client):
        upstream = socket.create_connection(("127.0.0.1", upstream_port))
        sent = 0
        while sent < valid_bytes:
            data = upstream.recv(min(65536, valid_bytes - sent))
            if not data:
                break
            client.sendall(data)
            sent += len(data)
        garbage(client)

    return behaviour


def forwarded_header(upstream_port: int, client):
    """Connect to the real server and forward its stream header (the network framing: an int32 header size and
    the header); returns the server's stream, at its first packet."""
    stream = socket.create_connection(("127.0.0.1", upstream_port)).makefile("rb")
    header = stream.read(4)
    client.sendall(header + stream.read(int.from_bytes(header, "little")))
    return stream


def next_packet(stream) -> tuple[bytes, bytes]:
    """The next packet's framing (an int32 stream id and an int32 size) and its bytes."""
    framing = stream.read(8)
    return framing, stream.read(int.from_bytes(framing[4:], "little"))


def claims_a_huge_packet(upstream_port: int, valid_packets: int):
    """Forward the real server's stream header and first packets (the network framing: an int32 header size and
    the header, then per packet an int32 stream id and an int32 size), then a packet header that claims 2 GiB."""

    def behaviour(client):
        stream = forwarded_header(upstream_port, client)
        for _ in range(valid_packets):
            client.sendall(b"".join(next_packet(stream)))
        client.sendall((0).to_bytes(4, "little") + (0x7FFFFFF0).to_bytes(4, "little"))
        garbage(client)

    return behaviour


def stamps_one_event_early(upstream_port: int, packets: int, first_us: list[int]):
    """Forward the real server's stream header and first ``packets`` packets, but in the third one stamp its 100th
    event at the time of the second packet's first event (``first_us``: each packet's first timestamp): a packet
    whose events go back in time, and back past the packet before it. Then stay silent. The events sit in a packet
    uncompressed, 16 bytes each with the timestamp first (dv-processing's Event)."""

    def behaviour(client):
        stream = forwarded_header(upstream_port, client)
        for k in range(packets):
            framing, packet = next_packet(stream)
            packet = bytearray(packet)
            if k == 2:
                at = packet.find(first_us[2].to_bytes(8, "little")) + 100 * 16
                packet[at : at + 8] = first_us[1].to_bytes(8, "little")
            client.sendall(framing + packet)
        silent(client)

    return behaviour


def rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` and of its children (the reader child), in kB."""
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total = max(total, int(next(x for x in status.splitlines() if x.startswith("VmRSS")).split()[1]))
        except (OSError, StopIteration):
            pass
    return total


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for t in Path(f"/proc/{pid}/task").iterdir()
                for c in (t / "children").read_text().split()]
    except OSError:
        return []


def evapp_live(*args, err_path, preexec_fn=None):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "evapp", "live", "--headless", "--no-model", *args],
                            stdout=subprocess.PIPE, stderr=open(err_path, "w"), text=True, env=env, cwd=ROOT,
                            preexec_fn=preexec_fn)


def recording_live(port: int, rec, err_path):
    """`evapp live --record REC` from tcp://127.0.0.1:PORT (frames of 2000 events, no model)."""
    return evapp_live("--camera", f"tcp://127.0.0.1:{port}", "--record", str(rec), "-N", "2000", err_path=err_path)


def wait_until(condition, timeout_s: float = 30.0, every_s: float = 0.1, each=lambda: None) -> None:
    """Poll ``condition`` (calling ``each`` at every poll) until it holds or ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not condition():
        each()
        time.sleep(every_s)


def interrupt(proc, after_s: float) -> float:
    """SIGINT after ``after_s``; the seconds until the process ended."""
    time.sleep(after_s)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    return time.monotonic() - sent


@pytest.mark.parametrize("after_s", [1.0, 3.0])
def test_a_peer_that_accepts_and_never_sends_is_ended_by_ctrl_c(tmp_path, after_s):
    peer = Peer(silent)
    try:
        live = evapp_live("--camera", f"tcp://127.0.0.1:{peer.port}", "--duration", "10",
                          err_path=tmp_path / "err")
        took = interrupt(live, after_s)
    finally:
        peer.close()
    assert live.returncode == 130 and took < 2.0, (took, (tmp_path / "err").read_text())


def test_ctrl_c_is_honoured_when_evapp_was_started_with_it_ignored(tmp_path):
    """A shell without job control starts background commands with SIGINT ignored; evapp still ends on it."""
    peer = Peer(silent)
    try:
        live = evapp_live("--camera", f"tcp://127.0.0.1:{peer.port}", "--duration", "10",
                          err_path=tmp_path / "err", preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        took = interrupt(live, 1.0)  # still connecting
    finally:
        peer.close()
    assert live.returncode == 130 and took < 2.0, (took, (tmp_path / "err").read_text())


def test_a_peer_that_never_sends_a_stream_is_one_sentence(tmp_path, capsys):
    from evapp.cli.main import main

    peer = Peer(silent)
    try:
        started = time.monotonic()
        assert main(["live", "--camera", f"tcp://127.0.0.1:{peer.port}", "--headless", "--no-model"]) == 2
        took = time.monotonic() - started
    finally:
        peer.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "accepted the connection but sent no stream within 5 s" in err[0]
    assert took < 8


def test_a_garbage_peer_costs_a_bounded_reader_and_one_sentence(tmp_path):
    peer = Peer(garbage)
    err_path = tmp_path / "err"
    try:
        live = evapp_live("--camera", f"tcp://127.0.0.1:{peer.port}", err_path=err_path)
        peak_kb = 0
        deadline = time.monotonic() + 20
        while live.poll() is None and time.monotonic() < deadline:
            try:
                status = Path(f"/proc/{live.pid}/status").read_text()
                peak_kb = max(peak_kb, int(next(x for x in status.splitlines() if x.startswith("VmRSS")).split()[1]))
            except (OSError, StopIteration):
                pass
            time.sleep(0.05)
        if live.poll() is None:
            live.kill()
    finally:
        peer.close()
    err = err_path.read_text().strip().splitlines()
    assert live.returncode == 2 and len(err) == 1 and err[0].startswith("evapp: error:"), err
    assert "tcp://127.0.0.1" in err[0]
    assert peak_kb < 600_000  # the parent: the garbage is the child's problem, and the child is capped


def test_a_stream_that_turns_to_garbage_keeps_every_received_event_recorded(tmp_path):
    upstream = free_port()
    server = start_server(upstream, 200_000, seed=3, rate=100_000, batch=5000, paced=True)
    peer = Peer(turns_to_garbage(upstream, valid_bytes=400_000))
    rec, err_path = tmp_path / "take.aedat4", tmp_path / "err"
    try:
        live = recording_live(peer.port, rec, err_path)
        wait_until(lambda: "lost tcp://" in err_path.read_text())
        log = err_path.read_text()
        took = interrupt(live, 0.5)  # now reconnecting to the peer, whose stream turns to garbage again
        out = live.stdout.read()
    finally:
        server.kill()
        peer.close()
    assert "lost tcp://" in log, log
    assert live.returncode == 130 and took < 2.0, (took, err_path.read_text())
    summary = json_lines(out)[-1]
    assert summary["type"] == "summary" and summary["recorded_events"] > 0
    assert count_events(rec) == summary["recorded_events"] >= summary["events_total"]  # finalised, nothing lost


def test_a_packet_whose_events_go_back_in_time_is_recorded_whole_and_counted(tmp_path):
    """dv-processing hands on a packet's events as they are; a store (the recorder's) takes them in time order only."""
    upstream, n, batch = free_port(), 40_000, 5000
    server = start_server(upstream, n, seed=3, batch=batch)
    firsts = [int(t) for t in random_stream(n, 640, 480, seed=3, t0=T0_US)["timestamp"][::batch]]
    peer = Peer(stamps_one_event_early(upstream, n // batch, firsts))
    rec, err_path = tmp_path / "take.aedat4", tmp_path / "err"
    try:
        live = recording_live(peer.port, rec, err_path)
        wait_until(lambda: "stamped earlier" in err_path.read_text())
        took = interrupt(live, 1.0)
        out = live.stdout.read()
    finally:
        server.kill()
        peer.close()
    assert live.returncode == 130 and took < 2.0, (took, err_path.read_text())
    summary = json_lines(out)[-1]
    source = open_source(rec)
    recorded = np.concatenate(list(source.batches()))["timestamp"]
    source.close()
    assert summary["recorded_events"] == recorded.shape[0] == n, (summary, err_path.read_text())
    assert summary["events_total"] == n and summary["events_time_clamped"] == 1  # the one event stamped early
    assert recorded[2 * batch + 100] == recorded[2 * batch + 99]  # kept, at the time of the event before it


def test_bench_live_reader_compares_the_child_with_the_in_process_reader(capfd):
    import json

    from evapp.cli.main import main

    assert main(["bench", "live", "reader", "--events", "40000", "--rounds", "1", "--json"]) == 0
    rows = json.loads(capfd.readouterr().out)["reader"]
    assert [r["reader"] for r in rows] == ["in process", "child process"] and all(r["mev_per_s"] > 0 for r in rows)


def test_a_packet_claiming_2_gib_costs_a_bounded_reader_and_keeps_the_recording(tmp_path):
    upstream = free_port()
    server = start_server(upstream, 400_000, seed=3, rate=100_000, batch=5000, paced=True)
    peer = Peer(claims_a_huge_packet(upstream, valid_packets=4))
    rec, err_path = tmp_path / "take.aedat4", tmp_path / "err"
    try:
        live = recording_live(peer.port, rec, err_path)
        peak = [0]  # the largest process: evapp or its reader child
        wait_until(lambda: "lost tcp://" in err_path.read_text(), every_s=0.05,
                   each=lambda: peak.__setitem__(0, max(peak[0], rss_kb(live.pid))))
        peak_kb = peak[0]
        took = interrupt(live, 0.5)
        out = live.stdout.read()
    finally:
        server.kill()
        peer.close()
    assert "lost tcp://" in err_path.read_text(), err_path.read_text()
    assert live.returncode == 130 and took < 2.0, err_path.read_text()
    assert peak_kb < 1_000_000, peak_kb  # neither process came near the 2 GiB the packet claimed
    print(f"peak resident memory of evapp or its reader: {peak_kb / 1024:.0f} MiB")
    summary = json_lines(out)[-1]
    # every event evapp received is in the file, finalised: of each connection's four valid packets (the
    # reconnect meets the same peer), those the reader handed over before it met the claim (dv-processing parses
    # ahead, so the last may die with it)
    assert count_events(rec) == summary["recorded_events"] >= summary["events_total"]
    assert summary["recorded_events"] >= 15_000 and summary["recorded_events"] % 5000 == 0
