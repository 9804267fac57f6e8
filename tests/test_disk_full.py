"""A recording onto a disk that fills up (a real small tmpfs, filled by another writer while evapp records): the
recording stops with one warning before the disk is full, its file finalised with every event it counts, and the
stream goes on; a disk already too full is one sentence before any camera is opened (issue 19)."""

from __future__ import annotations

import subprocess
import time

import pytest

from evapp.sinks.recorder import DISK_RESERVE_BYTES, free_bytes
from evapp.testing import free_port, start_server
from tests.conftest import json_lines
from tests.test_isolation import evapp_live, interrupt, recording_live, wait_until
from tests.test_live import count_events


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={3 * DISK_RESERVE_BYTES}", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode:
        pytest.skip(f"mounting a small tmpfs needs root (mount said: {done.stderr.decode().strip()})")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_disk_that_fills_up_stops_the_recording_finalised(small_disk, tmp_path):
    port = free_port()
    server = start_server(port, 3_000_000, seed=6, rate=100_000, batch=5000, paced=True)
    rec, err_path = small_disk / "take.aedat4", tmp_path / "err"
    try:
        live = recording_live(port, rec, err_path)
        wait_until(lambda: rec.exists() and rec.stat().st_size >= 200_000)
        with open(small_disk / "ballast", "wb") as ballast:  # another program fills the disk
            ballast.write(bytes(free_bytes(small_disk) - DISK_RESERVE_BYTES // 2))
        wait_until(lambda: "recording stopped" in err_path.read_text())
        time.sleep(1.0)  # the stream goes on
        took = interrupt(live, 0.0)
        out = live.stdout.read()
    finally:
        server.kill()
    err = err_path.read_text()
    assert live.returncode == 130 and took < 2.0, err
    warnings = [line for line in err.splitlines() if "recording stopped" in line]
    assert len(warnings) == 1 and warnings[0].startswith("evapp: WARNING: recording stopped: its disk has only")
    summary = json_lines(out)[-1]
    assert summary["recording_stopped"].startswith("its disk has only")
    assert 0 < summary["recorded_events"] < summary["events_total"]
    assert count_events(rec) == summary["recorded_events"]  # finalised: every event it counts is in the file


def test_a_disk_too_full_to_record_on_is_one_sentence_before_connecting(small_disk, tmp_path):
    (small_disk / "ballast").write_bytes(bytes(free_bytes(small_disk) - DISK_RESERVE_BYTES))
    err_path = tmp_path / "err"
    live = evapp_live("--camera", f"tcp://127.0.0.1:{free_port()}", "--record", str(small_disk / "take.aedat4"),
                      err_path=err_path)  # nothing listens there: the disk is said first
    live.wait(timeout=30)
    err = err_path.read_text().strip().splitlines()
    assert live.returncode == 2 and len(err) == 1 and "MiB free; a recording needs more than" in err[0], err
