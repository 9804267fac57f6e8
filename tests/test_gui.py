"""The window, offscreen (pytest-qt): predictions on a written recording, pause, seek, reset, region, model change."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("PyQt6", reason="the window needs PyQt6")
from PyQt6.QtCore import QPoint, Qt  # noqa: E402

from evapp.decoder import IDLE  # noqa: E402
from evapp.events import LabelInterval, SensorGeometry  # noqa: E402
from evapp.gui.app import duration_of  # noqa: E402
from evapp.gui.window import MainWindow  # noqa: E402
from evapp.model_setup import ModelChoice, build_model_setup  # noqa: E402
from evapp.pipeline import Pipeline, Prediction, ReplayOptions  # noqa: E402
from evapp.snn.state import stateful_modules  # noqa: E402
from evapp.sources import open_source  # noqa: E402
from evapp.sources.aedat3 import write_labels_csv  # noqa: E402
from evapp.sources.aedat4 import write_aedat4  # noqa: E402
from evapp.testing import T0_US as T0  # noqa: E402
from evapp.testing import free_port, random_stream, start_server  # noqa: E402

MODEL = "saformer-2-256"
N = 4000


@pytest.fixture(autouse=True)
def untrained_zoo(tmp_path, monkeypatch):
    """No model artifacts: these tests run untrained zoo models with the N they choose, whatever models/ holds."""
    monkeypatch.setenv("EVAPP_MODELS", str(tmp_path / "no-models"))


@pytest.fixture(scope="module")
def labelled_recording(tmp_path_factory):
    """12 s of 320x240 (DVXplorer Lite) events at 40 kev/s (about 8 frames/s at N=4000), two labelled gestures."""
    path = tmp_path_factory.mktemp("gui") / "take.aedat4"
    events = random_stream(480_000, 320, 240, seed=7, t0=T0, rate_per_us=0.04)
    write_aedat4(path, events, SensorGeometry(320, 240, "DVXplorerLite_00000001"))
    first = int(events["timestamp"][0])
    write_labels_csv(path.with_name("take_labels.csv"),
                     [LabelInterval(1, 1_000_000, 4_000_000), LabelInterval(7, 6_000_000, 9_000_000)], t0_us=first)
    return path


@pytest.fixture
def window(qtbot, labelled_recording):
    choice = ModelChoice(MODEL, policy="persistent", device="cpu", events_per_frame=N)
    source = open_source(labelled_recording)
    pipeline = Pipeline(source, build_model_setup(choice), replay=ReplayOptions(speed=1.0), hold_at_end=True,
                        drop_late_frames=True)  # as `evapp replay` builds it for the window
    win = MainWindow(pipeline, choice, "test", duration_us=duration_of(source))
    qtbot.addWidget(win)
    win.show()
    yield win
    win.close()
    pipeline.close()


def settle(qtbot, window):
    """After a pause: wait until the queued frames have gone through the engine (slow on a busy CPU)."""
    engine = window.pipeline.engine
    qtbot.waitUntil(lambda: window.pipeline.frame_queue.frames_waiting == 0, timeout=30_000)
    previous = -1
    while engine.frames_since_reset != previous:  # the step in flight, if any, has finished
        previous = engine.frames_since_reset
        qtbot.wait(400)


def test_window_shows_predictions_ground_truth_and_status(qtbot, window, tmp_path):
    qtbot.waitUntil(lambda: window.predictions_shown >= 3, timeout=30_000)
    assert isinstance(window.last_prediction, Prediction)
    assert abs(window.bars.probs.sum() - 1) < 1e-3 and len(window.bars.names) == 11
    assert window.view.label_text  # the decided gesture (or idle) and its confidence drawn over the view
    assert len(window.timeline.labels) == 2 and window.timeline.marks  # ground truth and predictions
    assert window.timeline.duration_us == pytest.approx(12e6, rel=0.05)
    status = window.status.text()
    for part in ("kev/s", "frames/s", "ms/step", "latency", "dropped 0"):
        assert part in status
    assert window.pipeline.stats()["latency_ms"] > 0
    shot = window.save_screenshot(tmp_path / "shot.png")
    assert shot.is_file() and shot.stat().st_size > 1000


def test_pause_stops_progress_and_play_continues(qtbot, window):
    qtbot.waitUntil(lambda: window.predictions_shown >= 1, timeout=30_000)
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert window.pipeline.paused and window.play_button.text() == "Play"
    settle(qtbot, window)
    position, shown = window.pipeline.position_us, window.predictions_shown
    qtbot.wait(1200)
    assert window.pipeline.position_us == position and window.predictions_shown == shown
    qtbot.keyClick(window, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: window.pipeline.position_us > position, timeout=10_000)
    qtbot.waitUntil(lambda: window.predictions_shown > shown, timeout=20_000)


def test_seek_moves_forward_and_back(qtbot, window):
    qtbot.waitUntil(lambda: window.pipeline.position_us > 0, timeout=10_000)
    window.seek_to(8.0)
    qtbot.waitUntil(lambda: window.pipeline.position_us >= 8_000_000, timeout=10_000)
    qtbot.keyClick(window, Qt.Key.Key_Left)  # 5 s back
    qtbot.waitUntil(lambda: 3_000_000 <= window.pipeline.position_us < 6_000_000, timeout=10_000)
    qtbot.waitUntil(lambda: window.predictions_shown >= 1, timeout=30_000)


def test_reset_clears_model_and_decoder_state(qtbot, window):
    qtbot.waitUntil(lambda: window.predictions_shown >= 2, timeout=30_000)
    window.toggle_pause()
    settle(qtbot, window)
    engine = window.pipeline.engine
    assert engine.frames_since_reset > 0
    qtbot.keyClick(window, Qt.Key.Key_R)
    qtbot.waitUntil(lambda: engine.frames_since_reset == 0, timeout=5000)
    state = [t for _, m in stateful_modules(engine.model) for t in m.state_tensors()]
    assert all(t is None or float(t.abs().sum()) == 0 for t in state)  # membranes and readout back at rest
    assert window.pipeline.decoder.label == IDLE and window.pipeline.decoder.answers_held == 0
    assert window.last_prediction is None and window.view.label_text == ""


def test_region_drag_and_events_per_frame(qtbot, window):
    view = window.view
    qtbot.waitUntil(lambda: window.pipeline.position_us > 0, timeout=10_000)
    target = view._target()
    scale = target.width() / 320

    def at(x, y):
        return QPoint(int(target.x() + x * scale), int(target.y() + y * scale))

    def drag(x0, y0, x1, y1):
        qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=at(x0, y0))
        qtbot.mouseMove(view, at(x1, y1))
        qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=at(x1, y1))

    default = view.region
    assert (default.x, default.y, default.w, default.h) == (40, 0, 240, 240)  # the centred square, outlined
    drag(10, 10, 60, 60)  # smaller than the 128x128 model input: refused with a sentence, nothing changes
    assert view.region == default and "smaller than" in window.status.text()
    drag(10, 20, 170, 180)
    region = view.region
    assert (region.w, region.h) == pytest.approx((160, 160), abs=2) and region.x == pytest.approx(10, abs=1)
    qtbot.waitUntil(lambda: window.pipeline.mapping.region == region, timeout=10_000)
    window.n_box.setValue(2000)
    window.set_events_per_frame(2000)
    qtbot.waitUntil(lambda: window.pipeline.binner.n == 2000, timeout=10_000)
    assert window.pipeline.mapping.region == region  # N changes keep the chosen region


def test_model_engine_policy_change_and_no_model(qtbot, window):
    pytest.importorskip("onnxruntime", reason="the ONNX engine needs onnxruntime")
    assert window.engine_kind == "torch"
    window.change_model(MODEL, "window", "cpu", "onnx")  # exported in memory: takes seconds, off the GUI thread
    assert window.view.banner_text.startswith("loading")
    qtbot.waitUntil(lambda: window.policy == "window" and window.engine_kind == "onnx", timeout=90_000)
    qtbot.waitUntil(lambda: type(window.pipeline.engine).__name__ == "OnnxEngine", timeout=10_000)
    assert window.pipeline.engine.policy == "window" and "(onnx, window, cpu)" in window.status.text()
    qtbot.waitUntil(lambda: window.pipeline.binner.n == 20_000, timeout=10_000)  # the model's own N
    assert window.n_box.value() == 20_000
    window.change_model(None, "window", "cpu")
    qtbot.waitUntil(lambda: window.pipeline.engine is None, timeout=30_000)
    assert window.bars.names == ()
    window.seek_to(0.0)  # on a busy machine the 12 s replay may have reached its end during the model changes
    frames = window.frames_shown
    qtbot.waitUntil(lambda: window.frames_shown > frames, timeout=20_000)  # frames still flow without a model


def test_replay_window_keeps_the_clock_and_counts_what_the_model_skips(qtbot, window):
    """In the window a replay runs at the chosen speed whatever the model's pace (the view shows the events as
    they come); frames the model could not take are counted, as live. A headless replay never drops
    (tests/test_live.py)."""
    pipeline = window.pipeline
    pipeline.set_speed(4.0)
    qtbot.waitUntil(lambda: pipeline.position_us > 8_000_000, timeout=30_000)
    rate = pipeline.stats()["event_rate"]  # read while the stream flows: paused, it falls to 0 after 1 s
    window.toggle_pause()
    settle(qtbot, window)
    made, waiting = pipeline.binner.frames_out, pipeline.frame_queue.frames_waiting
    assert pipeline.engine.frames_since_reset > 0
    assert pipeline.frame_queue.dropped + pipeline.engine.frames_since_reset + waiting == made
    assert rate == pytest.approx(40_000, rel=0.25)  # the recording's rate, 40 kev/s


def test_window_says_when_the_replay_has_ended(qtbot, window):
    window.seek_to(11.5)  # half a second before the end of the 12 s recording
    qtbot.waitUntil(lambda: window.pipeline.at_end, timeout=20_000)
    qtbot.waitUntil(lambda: "end of the recording" in window.status.text(), timeout=5000)
    assert window.view.banner_text.startswith("end of the recording")
    window.seek_to(2.0)  # a seek continues the replay
    qtbot.waitUntil(lambda: not window.pipeline.at_end and window.pipeline.position_us < 6_000_000, timeout=10_000)


def test_two_quick_seeks_add_up(qtbot, window):
    qtbot.waitUntil(lambda: window.pipeline.position_us > 0, timeout=10_000)
    window.toggle_pause()  # the replay stays where the seeks put it
    start = window.pipeline.position_us
    qtbot.keyClick(window, Qt.Key.Key_Right)
    qtbot.keyClick(window, Qt.Key.Key_Right)  # before the first seek has been applied
    assert window.pipeline.position_us == start + 10_000_000


def test_a_seek_leaves_a_gap_in_the_predictions(qtbot, window):
    timeline = window.timeline
    timeline.clear()
    for t in range(0, 3_000_000, 500_000):
        timeline.add(t, 1)
    timeline.add_gap(3_000_000)  # the reader was at 3 s when the user sought to 9 s
    timeline.add(2_900_000, 1)  # an answer from before the seek (answers lag the reader), arriving late
    timeline.add(9_000_000, 7)  # the first answer after the seek
    timeline.add(9_500_000, 7)
    spans = timeline.spans()
    assert (2_900_000, 3_000_000, 1) in spans and all(not (a < 6_000_000 < b) for a, b, _ in spans)
    assert spans[-1] == (9_000_000, 9_500_000, 7)
    assert timeline.x_of(0) >= timeline.caption_width()  # the first bars start right of the captions


def test_a_refused_region_is_explained_long_enough_to_read(qtbot, window):
    from evapp.binning import Region

    window.set_region(Region(10, 10, 50, 50))  # smaller than the 128x128 model input
    qtbot.wait(1500)  # 45 timer ticks later
    assert "smaller than" in window.status.text()


def test_model_box_marks_untrained_architectures(window):
    from evapp.engine.loading import model_names

    items = [(window.model_box.itemText(i), window.model_box.itemData(i)) for i in range(window.model_box.count())]
    assert items[0] == ("(no model)", None)
    assert [data for _, data in items[1:]] == model_names()
    assert all(text == f"{data} (untrained)" for text, data in items[1:])  # EVAPP_MODELS is empty here
    assert window.model_box.currentData() == MODEL


def test_long_class_names_fit_the_view(qtbot, window):
    from PyQt6.QtGui import QFontMetrics

    view = window.view
    view.resize(420, 320)
    view.label_text = "left arm counter clockwise  0.97"
    width = QFontMetrics(view.label_font()).horizontalAdvance(view.label_text)
    assert width <= view._target().width() - 24
    view.label_text = "idle  0.50"
    assert view.label_font().pointSize() > QFontMetrics(view.label_font()).height() / 4  # short names stay large


def cie_lab(rgb) -> np.ndarray:
    """sRGB (0-255) to CIELAB (D65), the CIE's formulas."""
    c = np.asarray(rgb, float) / 255
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    xyz = c @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    f = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(f > 216 / 24389, np.cbrt(f), (24389 / 27 * f + 16) / 116)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], -1)


def test_classes_get_distinct_colours():
    from evapp.gui.widgets import class_colour

    lab = cie_lab([class_colour(i).getRgb()[:3] for i in range(11)])
    distances = [np.linalg.norm(lab[i] - lab[j]) for i in range(11) for j in range(i + 1, 11)]
    # CIE76 colour difference of every pair (hue steps of 360/11 degrees gave 17 between neighbours)
    assert min(distances) > 30
    assert class_colour(-1).getRgb()[:3] == (150, 150, 150)  # idle stays grey
    assert len({class_colour(i).getRgb() for i in range(40)}) == 40  # more classes still get colours of their own


def test_screenshot_without_a_path_goes_to_the_output_folder(window, output_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shot = window.save_screenshot()
    assert shot.parent == output_folder and shot.is_file() and not list(tmp_path.glob("*.png"))


def test_window_close_stops_the_threads(qtbot, window):
    qtbot.waitUntil(lambda: window.pipeline.position_us > 0, timeout=10_000)
    window.close()
    deadline = time.monotonic() + 5
    while window.pipeline.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not window.pipeline.running
    assert np.isfinite(window.pipeline.stats()["event_rate"])


def test_live_window_says_reconnecting_and_records(qtbot, tmp_path):
    """The window on a live network stream: the server is killed (the window says it is reconnecting), comes
    back, and the Record button's file holds exactly the events the recorder received."""
    from evapp.sinks.recorder import AedatRecorder
    from evapp.sources.live import open_live
    from tests.test_live import count_events, wait_line

    port = free_port()
    first = start_server(port, 30_000, seed=21, rate=100_000)
    second = None
    source = open_live(f"tcp://127.0.0.1:{port}")
    pipeline = Pipeline(source)  # no model: frames only
    win = MainWindow(pipeline, ModelChoice(None, policy="window", device="cpu"), "live",
                     recorder_factory=lambda path: AedatRecorder(path, source.geometry, force=True))
    qtbot.addWidget(win)
    try:
        win.show()
        assert win.record_button.isEnabled() and not win.seek_slider.isEnabled()
        win.start_recording(tmp_path / "live.aedat4")
        wait_line(first, "sent")
        qtbot.waitUntil(lambda: pipeline.binner.events_in == 30_000, timeout=20_000)
        first.kill()
        qtbot.waitUntil(lambda: "reconnecting" in win.status.text(), timeout=20_000)
        assert "reconnecting" in win.view.banner_text
        second = start_server(port, 20_000, seed=22, rate=100_000, t0=T0 + 10_000_000)
        wait_line(second, "sent")
        qtbot.waitUntil(lambda: source.reconnects == 1 and pipeline.binner.events_in == 50_000, timeout=30_000)
        qtbot.waitUntil(lambda: "reconnecting" not in win.status.text(), timeout=5000)
        recorder = win.recorder
        win.stop_recording()
        assert recorder.closed and 20_000 <= recorder.events <= 50_000
        assert count_events(tmp_path / "live.aedat4") == recorder.events
        assert win.frames_shown > 0
    finally:
        win.close()
        pipeline.close()
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()


def test_replay_without_headless_opens_the_window_and_ctrl_c_closes_it(labelled_recording, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    err = tmp_path / "replay.err"
    with open(err, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "evapp", "replay", str(labelled_recording), "--model", MODEL,
                                 "-N", str(N), "--device", "cpu"], stderr=stderr, stdout=subprocess.PIPE, env=env)
        try:
            time.sleep(6)
            assert proc.poll() is None, err.read_text()  # the window is up and running
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130 and out == b""  # a window, not JSON lines
    assert "Traceback" not in err.read_text() and "interrupted" in err.read_text()
