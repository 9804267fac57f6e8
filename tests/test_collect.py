"""``evapp collect --headless`` against a real dv-processing NetworkWriter (``python -m evapp.testing``): the takes'
files hold exactly the events received, their labels are the prompts' stream times, an interrupted session keeps
its finished takes and continues (``--redo-last``), and a wrong folder or class list is one sentence."""

from __future__ import annotations

import json
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
from evapp.sources.aedat3 import labels_path_for, read_labels_csv
from evapp.testing import T0_US, free_port, random_stream, start_server
from tests.conftest import json_lines

ROOT = Path(__file__).resolve().parent.parent
TIMING = ["--take-s", "0.6", "--pause-s", "0.3", "--countdown-s", "0.3"]


def start_collect(port: int, out: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "EVAPP_MODELS": str(out.parent / "no-models")}
    return subprocess.Popen([sys.executable, "-m", "evapp", "collect", "--camera", f"tcp://127.0.0.1:{port}",
                             "--out", str(out), "--headless", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def read_file(path: Path) -> np.ndarray:
    """The events of a take file on its own (absolute) clock."""
    source = open_source(path)
    try:
        events = np.concatenate(list(source.batches()))
        events["timestamp"] += source.t0_us
        return events
    finally:
        source.close()


def collect_to_end(server, port: int, out: Path, *args: str) -> tuple[list[dict], str]:
    """Run ``evapp collect --headless`` against ``server`` until it ends by itself (exit 0); its JSON lines and
    stderr."""
    proc = start_collect(port, out, *args)
    try:
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        finish(proc, server)
    assert proc.returncode == 0, stderr
    return json_lines(stdout), stderr


def finish(*procs) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_takes_hold_every_event_received_and_labels_are_the_prompts_times(tmp_path):
    port, out = free_port(), tmp_path / "takes"
    n = 600_000
    server = start_server(port, n, seed=4, rate=60_000, batch=2000, paced=True)
    lines, stderr = collect_to_end(server, port, out, "--classes", "wave,clap", "--takes", "2", *TIMING)
    prompts = [x for x in lines if x["type"] == "prompt"]
    takes = [x for x in lines if x["type"] == "take"]
    summary = lines[-1]
    assert summary["type"] == "summary" and summary["complete"] and summary["takes_recorded"] == 4
    # Each round asks every class once, and each take is countdown 3, 2, 1, go, pause.
    assert sorted(t["class_name"] for t in takes[:2]) == sorted(t["class_name"] for t in takes[2:]) == ["clap", "wave"]
    for take in takes:
        mine = [p for p in prompts if p.get("take") == take["take"]]
        assert [(p["phase"], p.get("count")) for p in mine] == [("countdown", 3), ("countdown", 2), ("countdown", 1),
                                                                 ("go", None), ("pause", None)]
        go, pause = mine[3], mine[4]
        path = out / take["file"]
        labels = read_labels_csv(labels_path_for(path))
        assert [(lab.class_id, lab.start_us, lab.end_us) for lab in labels] == \
            [(take["class_id"], go["stream_us"], pause["stream_us"])]
        assert abs((pause["stream_us"] - go["stream_us"]) / 1e6 - 0.6) < 0.1  # the take's length on the camera clock
        events = read_file(path)
        assert events.shape[0] == take["events"]
        t = events["timestamp"]
        assert t[0] <= go["stream_us"] < pause["stream_us"] <= t[-1]  # the label lies inside its own file
        # "go" is the stream's time when it was shown: the events received by then reach within a batch of it.
        assert t[t <= go["stream_us"]].max() >= go["stream_us"] - 50_000
    assert "take 1/4" in stderr and "go" in stderr
    # Every event received is in exactly one file, in order: the files together are the stream's prefix.
    together = np.concatenate([read_file(out / t["file"]) for t in takes])
    assert together.shape[0] == summary["received_events"] == summary["events_in_finished_takes"]
    sent = random_stream(n, 640, 480, seed=4, t0=T0_US, rate_per_us=0.06)[: together.shape[0]]
    for field in ("timestamp", "x", "y", "polarity"):
        np.testing.assert_array_equal(together[field], sent[field])
    assert json.loads((out / "classes.json").read_text()) == ["wave", "clap"]
    session = json.loads((out / "session.json").read_text())
    assert [t["file"] for t in session["takes"]] == [t["file"] for t in takes]


def test_an_interrupted_session_keeps_its_takes_and_continues_with_redo_last(tmp_path):
    port, out = free_port(), tmp_path / "takes"
    server = start_server(port, 3_000_000, seed=5, rate=60_000, batch=2000, paced=True)
    proc = start_collect(port, out, "--classes", "a,b,c", "--takes", "2", *TIMING)
    try:
        deadline = time.monotonic() + 40
        seen = []
        while time.monotonic() < deadline:  # Ctrl-C during the gesture of the third take
            line = proc.stdout.readline()
            seen.append(line)
            if '"phase": "go"' in line and '"take": 3' in line:
                break
        time.sleep(0.2)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rest, stderr = proc.communicate(timeout=10)
        assert time.monotonic() - started < 2.0
    finally:
        finish(proc, server)
    assert proc.returncode == 130, stderr
    session = json.loads((out / "session.json").read_text())
    assert [t["take"] for t in session["takes"]] == [1, 2]
    unfinished = list(out.glob("take-003_*.unfinished.aedat4"))
    assert len(unfinished) == 1 and read_file(unfinished[0]).shape[0] > 0  # kept, finalised, readable
    last = session["takes"][-1]["file"]

    port = free_port()
    server = start_server(port, 3_000_000, seed=6, rate=60_000, batch=2000, paced=True)
    lines, _ = collect_to_end(server, port, out, "--classes", "a,b,c", "--takes", "2", "--redo-last", *TIMING)
    redone = [x for x in lines if x["type"] == "take"]
    assert [t["take"] for t in redone] == [2, 3, 4, 5, 6]  # the discarded take first, then the missing ones
    assert (out / "discarded" / last).is_file()  # the user's redo moves it aside, never deletes it
    session = json.loads((out / "session.json").read_text())
    assert sorted(t["take"] for t in session["takes"]) == [1, 2, 3, 4, 5, 6] and lines[-1]["complete"]
    for take in session["takes"]:
        assert read_file(out / take["file"]).shape[0] == take["events"]


@pytest.mark.parametrize("args,message", [
    (["--classes", "wave,,clap"], "empty name"),
    (["--classes", "wave,wave"], "listed twice"),
    (["--classes", "wave,idle"], "'idle'"),
    (["--classes", "a/b"], "letters, digits"),
])
def test_a_wrong_class_list_is_one_sentence(tmp_path, capsys, args, message):
    code = main(["collect", "--camera", "tcp://127.0.0.1:9", "--out", str(tmp_path / "x"), "--headless", *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_a_wrong_folder_is_refused_before_connecting(tmp_path, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert main(["collect", "--camera", "tcp://127.0.0.1:9", "--out", str(busy), "--classes", "a", "--headless"]) == 2
    assert "not empty" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    (other / "session.json").write_text(json.dumps({"plan": {"classes": ["x"], "takes": 1, "take_s": 1,
                                                             "pause_s": 1, "countdown_s": 0, "seed": 0},
                                                    "takes": []}))
    assert main(["collect", "--camera", "tcp://127.0.0.1:9", "--out", str(other), "--classes", "a", "--headless"]) == 2
    assert "classes x" in capsys.readouterr().err
    assert main(["collect", "--camera", "tcp://127.0.0.1:9", "--out", str(tmp_path / "new"), "--classes", "a",
                 "--headless", "--redo-last"]) == 2
    assert "no collect session" in capsys.readouterr().err


def test_the_stream_clock_is_read_off_the_freshest_store(tmp_path):
    """A camera whose stores come 20 ms late, one of them 400 ms late: a label time is the camera's time at the
    prompt, not the newest event's time (which the late store would pull back)."""
    from evapp.collect.session import TakeFiles
    from evapp.events import SensorGeometry
    from evapp.sources.aedat4 import to_event_store

    now = [100.0]
    files = TakeFiles(tmp_path, SensorGeometry(64, 64, "test"), clock=lambda: now[0])
    files.open(tmp_path / "take.aedat4")
    camera_offset_us = 5_000_000_000

    def arrive(camera_s: float, delay_s: float) -> None:
        now[0] = camera_s + delay_s
        events = random_stream(10, 64, 64, t0=int(camera_s * 1e6) + camera_offset_us - 20, rate_per_us=1.0)
        files(to_event_store(events))

    assert files.stream_time(100.0) is None
    for k in range(50):
        arrive(100.0 + 0.01 * k, 0.02)
    arrive(100.5, 0.4)  # rendering or the network fell behind for a moment
    at = 100.9
    assert abs(files.stream_time(at) - (int(at * 1e6) + camera_offset_us)) < 30_000
    assert files.latest_us < int(at * 1e6) + camera_offset_us - 350_000
    files.close_now()
    assert files.closed[0][1] == 510  # every store is in the file


def test_files_are_cut_on_the_camera_clock_even_when_the_reader_falls_behind(tmp_path):
    """The session cuts at camera times; stores that arrive after the cut time (a reader 3 s behind) still go to
    the file their events belong to, and a store spanning the cut is split at it."""
    from evapp.collect.session import TakeFiles
    from evapp.events import SensorGeometry
    from evapp.sources.aedat4 import to_event_store

    now = [0.0]
    files = TakeFiles(tmp_path, SensorGeometry(64, 64, "test"), clock=lambda: now[0])
    files.open(tmp_path / "a.aedat4")
    events = random_stream(10_000, 64, 64, t0=1_000_000, rate_per_us=0.01)  # 1 s of camera time
    cut = int(events["timestamp"][5_050])
    files.cut_at(cut, tmp_path / "b.aedat4")
    for start in range(0, 10_000, 100):
        now[0] += 3.0 if start == 0 else 0.01  # the reader is 3 s behind the camera the whole time
        files(to_event_store(events[start : start + 100]))
    files.close_now()
    (a, n_a, _), (b, n_b, _) = files.closed
    assert (a.name, b.name) == ("a.aedat4", "b.aedat4")
    assert (n_a, n_b) == (int((events["timestamp"] < cut).sum()), int((events["timestamp"] >= cut).sum()))
    assert read_file(a)["timestamp"].max() < cut <= read_file(b)["timestamp"].min()
    assert files.received == 10_000
