"""``evapp live`` against a real dv-processing NetworkWriter in a subprocess (``python -m evapp.testing``).

Covers: every event received is recorded (count in the file == count received == count sent), the recording
is finalised on Ctrl-C and on window close, the server killed and restarted (reconnect with back-off), no
overwrite without --force, an absent camera, the noise filter, and dropping the oldest frames when inference
falls behind (while a replay never drops).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from evapp.cli.main import main
from evapp.sources import open_source
from evapp.testing import T0_US as T0
from evapp.testing import free_port, start_server
from tests.conftest import json_lines

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def untrained_zoo(tmp_path, monkeypatch):
    """No model artifacts: these tests run untrained zoo models with the N they choose, whatever models/ holds."""
    monkeypatch.setenv("EVAPP_MODELS", str(tmp_path / "no-models"))


def start_live(*args, stderr_path):
    err = open(stderr_path, "w")  # noqa: SIM115 - closed by the caller through the process
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONUNBUFFERED": "1"}
    if "--model" not in args:
        args = (*args, "--no-model")
    return subprocess.Popen([sys.executable, "-m", "evapp", "-v", "live", *args], stdout=subprocess.PIPE,
                            stderr=err, text=True, env=env, cwd=ROOT)


def wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def wait_line(proc, text, timeout=30.0):
    """Read the server's stdout until ``text`` (it prints 'sent' once everything was written)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip() == text:
            return
    raise AssertionError(f"server never said {text!r}")


def run_to_end(live, server, timeout: float, wait_sent: bool = True) -> str:
    """Let ``server`` send everything (when ``wait_sent``), wait for ``live`` to end, kill what is left; its stdout."""
    try:
        if wait_sent:
            wait_line(server, "sent")
        out, _ = live.communicate(timeout=timeout)
    finally:
        for proc in (server, live):
            if proc.poll() is None:
                proc.kill()
    return out


def count_events(path):
    source = open_source(path)
    try:
        return sum(b.shape[0] for b in source.batches())
    finally:
        source.close()


def last_json(text):
    lines = json_lines(text)
    return lines[-1], lines


def test_record_every_event_across_a_server_kill_and_reconnect_then_ctrl_c(tmp_path):
    port = free_port()
    rec, log_path = tmp_path / "take.aedat4", tmp_path / "live.err"
    first = start_server(port, 60_000, seed=1, rate=200_000)
    live = start_live("--camera", f"tcp://127.0.0.1:{port}", "--headless", "--record", str(rec), "-N", "5000",
                      stderr_path=log_path)
    second = None
    try:
        wait_line(first, "sent")
        time.sleep(0.5)  # let the client drain the socket before the server dies
        first.kill()
        first.wait(10)
        wait_for(lambda: "reconnecting" in log_path.read_text(), what="the reconnect message")
        # The camera comes back on the same port with its clock running on.
        second = start_server(port, 40_000, seed=2, rate=200_000, t0=T0 + 10_000_000)
        wait_line(second, "sent")
        wait_for(lambda: "reconnected" in log_path.read_text(), what="the reconnection")
        time.sleep(1.0)
        live.send_signal(signal.SIGINT)  # Ctrl-C
        out, _ = live.communicate(timeout=30)
    finally:
        for proc in (first, second, live):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert live.returncode == 130, log_path.read_text()
    summary, _ = last_json(out)
    assert summary["type"] == "summary" and summary["reconnects"] == 1
    assert summary["events_total"] == summary["recorded_events"] == 100_000
    assert count_events(rec) == 100_000  # finalised on Ctrl-C, every event received is in the file
    assert "lost tcp://" in log_path.read_text()


def test_a_server_that_restarts_its_clock_from_zero_continues_the_stream_clock(tmp_path):
    port = free_port()
    log_path = tmp_path / "live.err"
    first = start_server(port, 60_000, seed=1, rate=200_000)
    live = start_live("--camera", f"tcp://127.0.0.1:{port}", "--headless", "--frames", "-N", "5000",
                      stderr_path=log_path)
    second = None
    try:
        wait_line(first, "sent")
        time.sleep(0.5)
        first.kill()
        first.wait(10)
        wait_for(lambda: "reconnecting" in log_path.read_text(), what="the reconnect message")
        second = start_server(port, 40_000, seed=2, rate=200_000)  # the same clock as the first: from its start
        wait_line(second, "sent")
        wait_for(lambda: "reconnected" in log_path.read_text(), what="the reconnection")
        time.sleep(1.0)
        live.send_signal(signal.SIGINT)
        out, _ = live.communicate(timeout=30)
    finally:
        for proc in (first, second, live):
            if proc is not None and proc.poll() is None:
                proc.kill()
    summary, lines = last_json(out)
    times = [r["t_us"] for r in lines if r["type"] == "frame"]
    assert live.returncode == 130 and summary["reconnects"] == 1 and summary["events_total"] == 100_000
    assert len(times) > 10 and times == sorted(times)  # never back in time
    assert max(b - a for a, b in zip(times[:-1], times[1:], strict=True)) > 150_000  # the time away (>= 0.2 s) is a gap
    assert "events_time_clamped" not in summary and "came back with its clock" in log_path.read_text()


def test_a_run_that_ends_while_its_stream_is_away_is_exit_code_3(tmp_path):
    port = free_port()
    log_path = tmp_path / "live.err"
    server = start_server(port, 20_000, seed=1, rate=200_000)
    live = start_live("--camera", f"tcp://127.0.0.1:{port}", "--headless", "--duration", "3", "-N", "5000",
                      stderr_path=log_path)
    try:
        wait_line(server, "sent")
        time.sleep(0.5)
        server.kill()
        out, _ = live.communicate(timeout=30)
    finally:
        for proc in (server, live):
            if proc.poll() is None:
                proc.kill()
    summary, _ = last_json(out)
    errors = [line for line in log_path.read_text().splitlines() if line.startswith("evapp: error:")]
    assert live.returncode == 3 and summary["events_total"] == 20_000, log_path.read_text()
    assert len(errors) == 1 and "was lost" in errors[0] and "had not come back when the run ended" in errors[0]


def test_record_refuses_to_overwrite_without_force(tmp_path, capsys):
    existing = tmp_path / "old.aedat4"
    existing.write_bytes(b"precious")
    code = main(["live", "--camera", f"tcp://127.0.0.1:{free_port()}", "--headless", "--record", str(existing)])
    assert code == 2 and "already exists; pass --force" in capsys.readouterr().err
    assert existing.read_bytes() == b"precious"
    assert main(["live", "--camera", "tcp://127.0.0.1:1", "--headless", "--record", str(tmp_path / "x.txt")]) == 2
    assert ".aedat4" in capsys.readouterr().err


def test_record_with_force_overwrites_and_window_close_finalises(tmp_path):
    """The window path: --duration closes the window; the file is complete and replaced the old one."""
    pytest.importorskip("PyQt6", reason="the window needs PyQt6")
    port = free_port()
    rec, log_path = tmp_path / "take.aedat4", tmp_path / "live.err"
    rec.write_bytes(b"old")
    server = start_server(port, 30_000, seed=3, rate=100_000)
    live = start_live("--camera", f"tcp://127.0.0.1:{port}", "--record", str(rec), "--force", "-N", "5000",
                      "--duration", "3", stderr_path=log_path)
    run_to_end(live, server, timeout=60)
    assert live.returncode == 0, log_path.read_text()
    assert count_events(rec) == 30_000


def test_absent_camera_names_what_was_found(capsys):
    assert main(["live", "--camera", "dvxplorer", "--headless"]) == 2
    err = capsys.readouterr().err.strip()
    assert "No camera matching 'dvxplorer' was found" in err and "sees:" in err and len(err.splitlines()) == 1


def test_server_absent_at_start_is_one_sentence(capsys):
    assert main(["live", "--camera", f"tcp://127.0.0.1:{free_port()}", "--headless"]) == 2
    assert "Nothing accepts connections" in capsys.readouterr().err


def test_noise_filter_thins_uniform_noise_but_records_everything(tmp_path):
    port = free_port()
    rec, log_path = tmp_path / "noisy.aedat4", tmp_path / "live.err"
    server = start_server(port, 50_000, seed=4, rate=0)
    live = start_live("--camera", f"tcp://127.0.0.1:{port}", "--headless", "--noise-filter", "--record", str(rec),
                      "--duration", "4", stderr_path=log_path)
    out = run_to_end(live, server, timeout=60)
    summary, _ = last_json(out)
    assert summary["recorded_events"] == 50_000 == count_events(rec)  # the file keeps every event received
    assert summary["events_total"] < 25_000  # uniform noise over 640x480 has few neighbours: mostly removed


def test_live_drops_oldest_frames_when_inference_falls_behind(tmp_path):
    """A burst far above what the model sustains on this CPU: frames are dropped, counted, and latency stays
    bounded by the short queue; every frame is either answered or dropped (persistent answers each frame)."""
    port = free_port()
    log_path = tmp_path / "live.err"
    server = start_server(port, 400_000, seed=5, rate=0, batch=10_000)
    live = start_live("--camera", f"tcp://127.0.0.1:{port}", "--headless", "--model", "saformer-2-256",
                      "--device", "cpu", "--policy", "persistent", "-N", "1000", "--region", "0,0,640,480",
                      "--duration", "8", stderr_path=log_path)
    summary, lines = last_json(run_to_end(live, server, timeout=90))
    predictions = [r for r in lines if r["type"] == "prediction"]
    # every event is in a frame, the partial frame, or thinned by the rate cap (the model cannot take the burst)
    # or dropped as a backlog past its bound
    assert summary["events_total"] == 400_000
    assert (summary["frames"] * 1000 + summary["events_dropped_behind"] + summary["leftover_events"]
            + summary["events_outside_region"] + summary["events_thinned"] + summary["events_over_rate_cap"]) == 400_000
    assert summary["frames"] > 0 and summary["dropped_frames"] > 0
    answered = len(predictions)
    assert answered == summary["predictions"]
    assert answered + summary["dropped_frames"] <= summary["frames"] <= answered + summary["dropped_frames"] + 2
    t = [p["t_us"] for p in predictions]
    assert t == sorted(t)  # dropping the oldest keeps the stream order


def test_replay_at_a_speed_factor_never_drops(tmp_path, capsys):
    from evapp.sources.aedat4 import write_aedat4
    from evapp.testing import random_stream
    from tests.conftest import DVX

    path = tmp_path / "burst.aedat4"
    write_aedat4(path, random_stream(24_000, 640, 480, seed=6, rate_per_us=0.2), DVX)  # 0.12 s of 200 kev/s
    assert main(["replay", str(path), "--headless", "--speed", "2", "--model", "saformer-2-256", "--device", "cpu",
                 "--policy", "persistent", "-N", "1000", "--region", "0,0,640,480"]) == 0
    summary, lines = last_json(capsys.readouterr().out)
    assert summary["dropped_frames"] == 0 and summary["frames"] == 24 == summary["predictions"]
    assert summary["latency_ms"]["median"] > 0
    assert np.all(np.diff([r["t_us"] for r in lines if r["type"] == "prediction"]) > 0)


def test_ctrl_c_stops_a_headless_replay_with_its_summary():
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "evapp", "replay", str(ROOT / "assets" / "demo.aedat4"), "--headless", "--no-model"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert proc.stdout.readline().startswith('{"type": "frame"')  # running
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and err.strip().endswith("evapp: interrupted."), err
    summary, _ = last_json(out)
    assert summary["type"] == "summary" and 0 < summary["events_total"] < 4_062_087  # stopped part way


@pytest.mark.parametrize("sig,headless", [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGTERM, True)],
                         ids=["window-ctrl-c", "window-sigterm", "headless-sigterm"])
def test_recording_is_finalised_when_interrupted(tmp_path, sig, headless):
    if not headless:
        pytest.importorskip("PyQt6", reason="the window needs PyQt6")
    port = free_port()
    rec, log_path = tmp_path / "take.aedat4", tmp_path / "live.err"
    server = start_server(port, 30_000, seed=8, rate=100_000)
    live = start_live("--camera", f"tcp://127.0.0.1:{port}", "--record", str(rec), "-N", "5000",
                      *(["--headless"] if headless else []), stderr_path=log_path)
    try:
        wait_line(server, "sent")
        time.sleep(1.0)
        live.send_signal(sig)
        live.communicate(timeout=30)
    finally:
        for proc in (server, live):
            if proc.poll() is None:
                proc.kill()
    assert live.returncode == 130, log_path.read_text()
    assert count_events(rec) == 30_000


def test_duration_counts_from_the_first_event(tmp_path):
    """--duration S: S seconds of stream after the first event arrives (a camera that is quiet at first does not
    eat the time), then the command ends, long before this 6 s stream would."""
    port = free_port()
    server = start_server(port, 600_000, seed=5, rate=100_000, first_after_s=2.0)
    live = start_live("--camera", f"tcp://127.0.0.1:{port}", "--headless", "-N", "5000", "--duration", "1.5",
                      stderr_path=tmp_path / "live.err")
    summary, _ = last_json(run_to_end(live, server, timeout=60, wait_sent=False))
    assert live.returncode == 0
    assert 75_000 <= summary["events_total"] < 450_000  # about 1.5 s of the 100 kev/s stream, not 0, not all


def test_a_replay_as_fast_as_possible_reports_throughput_not_latency(tmp_path, capsys):
    """--max-speed has no wall clock to be late against: its summary gives x real time and answers per second."""
    from evapp.sources.aedat4 import write_aedat4
    from evapp.testing import random_stream
    from tests.conftest import DVX

    path = tmp_path / "fast.aedat4"
    events = random_stream(24_000, 640, 480, seed=6, rate_per_us=0.02)  # 1.2 s of 20 kev/s
    write_aedat4(path, events, DVX)
    assert main(["replay", str(path), "--headless", "--max-speed", "--model", "saformer-2-256", "--device", "cpu",
                 "--policy", "persistent", "-N", "1000", "--region", "0,0,640,480"]) == 0
    summary, lines = last_json(capsys.readouterr().out)
    assert "latency_ms" not in summary and summary["predictions"] == 24
    assert summary["throughput"]["x_real_time"] > 0 and summary["throughput"]["answers_per_s"] > 0
