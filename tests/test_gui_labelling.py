"""Labelling while recording, and models of any class list in the window (offscreen, pytest-qt).

The live tests run the window on a stand-in camera (``evapp.testing.start_server``) with tiny packaged models
(32x32 input, one 32-wide stage: fast on any CPU) of 11 and of 5 classes, given by path as ``--model`` takes them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("PyQt6", reason="the window needs PyQt6")
from PyQt6.QtCore import QPoint, QRectF, Qt  # noqa: E402

from evapp.binning import FrameSpec  # noqa: E402
from evapp.engine.artifact import Preprocessing, write_artifact  # noqa: E402
from evapp.events import GESTURE_CLASSES, LabelInterval  # noqa: E402
from evapp.gui.widgets import ProbabilityBars, Timeline, class_colour  # noqa: E402
from evapp.gui.window import MainWindow  # noqa: E402
from evapp.model_setup import ModelChoice, build_model_setup  # noqa: E402
from evapp.nets import create_model  # noqa: E402
from evapp.pipeline import Pipeline  # noqa: E402
from evapp.sinks.labelling import LabellingRefused, LiveLabeller  # noqa: E402
from evapp.sources import open_source  # noqa: E402
from evapp.sources.aedat3 import read_labels_csv  # noqa: E402
from evapp.testing import free_port, start_server  # noqa: E402

FIVE = ("wave", "clap", "push", "pull", "circle")
N = 1000  # events per frame of the tiny models
STEP_US = 5000  # how far the recording's clock must move between two key presses (5 batches of the stand-in camera)


@pytest.fixture(autouse=True)
def no_shipped_models(tmp_path, monkeypatch):
    monkeypatch.setenv("EVAPP_MODELS", str(tmp_path / "no-models"))


def tiny_artifact(folder, names) -> str:
    """A packaged (untrained) saformer-2-256 of ``names``: what ``evapp package`` writes, small enough to be fast."""
    names = tuple(names)
    model = create_model("saformer-2-256", num_classes=len(names), class_names=names, embed_dims=(32,),
                         num_heads=(2,), input_size=(32, 32), T=3, events_per_frame=N)
    frames = FrameSpec((32, 32), N, reference_px_per_input_px=15.0)  # 480 sensor rows onto 32: keep every event
    write_artifact(folder, model, Preprocessing(frames, 3, names), policy="persistent")
    return str(folder)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("artifacts")
    return {"gesture": tiny_artifact(root / "tiny-gesture", GESTURE_CLASSES),
            "five": tiny_artifact(root / "tiny-five", FIVE)}


@pytest.fixture
def live_window(qtbot, tmp_path):
    """``start(model_path)``: the window on a stand-in camera (60 kev/s for 10 s, batches of 1000 events), recording
    to tmp_path/take.aedat4 (as the Record button does; ``as_cli``: as ``live --record`` does, before the window)."""
    from evapp.sinks.recorder import AedatRecorder
    from evapp.sources.live import open_live

    made = []

    def start(model_path, as_cli=False):
        port = free_port()
        server = start_server(port, 600_000, seed=31, rate=60_000, batch=1000)
        source = open_live(f"tcp://127.0.0.1:{port}")
        choice = ModelChoice(model_path, device="cpu")
        pipeline = Pipeline(source, build_model_setup(choice))
        if as_cli:
            pipeline.add_tap(AedatRecorder(tmp_path / "take.aedat4", source.geometry))
        win = MainWindow(pipeline, choice, "live",
                         recorder_factory=lambda path: AedatRecorder(path, source.geometry, force=True))
        made.append((server, win, pipeline))
        qtbot.addWidget(win)
        win.show()
        if not as_cli:
            win.start_recording(tmp_path / "take.aedat4")
        qtbot.waitUntil(lambda: win.recorder.last_time_us is not None and win.isActiveWindow(), timeout=20_000)
        return win

    yield start
    for server, win, pipeline in made:
        win.close()
        pipeline.close()
        if server.poll() is None:
            server.kill()


def advance(qtbot, win, us: int = STEP_US) -> None:
    """Let the recording's clock move on by ``us``."""
    start = win.recorder.last_time_us
    qtbot.waitUntil(lambda: win.recorder.last_time_us >= start + us, timeout=20_000)


def press(qtbot, win, key) -> tuple[int, int]:
    """Press ``key`` on the window; the recording's time (before, after) the press."""
    before = win.recorder.last_time_us
    qtbot.keyClick(win, key)
    return before, win.recorder.last_time_us


def click_bar(qtbot, win, class_id: int) -> tuple[int, int]:
    before = win.recorder.last_time_us
    bar = win.bars.layout_rects()[class_id][2]
    qtbot.mouseClick(win.bars, Qt.MouseButton.LeftButton, pos=bar.center().toPoint())
    return before, win.recorder.last_time_us


def recording_span(path) -> tuple[int, int]:
    """The .aedat4's first and last event times, on its own clock."""
    source = open_source(path)
    try:
        last = max(int(b["timestamp"][-1]) for b in source.batches())  # rebased to the first event
        return source.t0_us, source.t0_us + last
    finally:
        source.close()


# -- the labeller, without a window ---------------------------------------------------------------------------------
def test_live_labeller_writes_intervals_on_the_recordings_clock(tmp_path):
    labeller = LiveLabeller(tmp_path / "take.aedat4", GESTURE_CLASSES)
    assert labeller.toggle(2, 1_000_100) and labeller.open_class == 2
    assert not labeller.labels_path.exists()  # nothing is written before an interval is closed
    assert not labeller.toggle(2, 1_500_000)  # the same class again closes it: written at once
    assert read_labels_csv(tmp_path / "take_labels.csv") == [LabelInterval(2, 1_000_100, 1_500_000)]
    labeller.toggle(4, 2_000_000)
    labeller.toggle(0, 2_300_000)  # another class closes the open one first
    labeller.toggle(7, 2_300_000)  # an interval of no time at all is dropped
    assert labeller.finish(2_900_000) == tmp_path / "take_labels.csv"  # the open one ends at the last event
    rows = (tmp_path / "take_labels.csv").read_text().splitlines()
    assert rows == ["class,startTime_usec,endTime_usec", "3,1000100,1500000", "5,2000000,2300000", "8,2300000,2900000"]
    assert not (tmp_path / "classes.json").exists()  # DVS128 Gesture's classes need none
    with pytest.raises(ValueError):
        labeller.open(11, 3_000_000)


def test_a_custom_class_list_writes_classes_json_and_a_folder_keeps_one_list(tmp_path):
    five = tmp_path / "five"
    five.mkdir()
    labeller = LiveLabeller(five / "a.aedat4", FIVE)
    assert labeller.finish(10) is None and not (five / "classes.json").exists()  # nothing labelled, nothing written
    labeller.toggle(4, 100)
    labeller.finish(900)
    assert json.loads((five / "classes.json").read_text()) == list(FIVE)
    assert (five / "a_labels.csv").read_text().splitlines()[1] == "5,100,900"
    LiveLabeller(five / "b.aedat4", FIVE)  # the same list: fine
    with pytest.raises(LabellingRefused, match="other classes"):
        LiveLabeller(five / "c.aedat4", GESTURE_CLASSES)
    with pytest.raises(LabellingRefused, match="other classes"):
        LiveLabeller(five / "c.aedat4", FIVE[:3])
    gestures = tmp_path / "gestures"  # labels without a classes.json: DVS128 Gesture's classes
    gestures.mkdir()
    (gestures / "old_labels.csv").write_text("class,startTime_usec,endTime_usec\n1,0,10\n")
    LiveLabeller(gestures / "new.aedat4", GESTURE_CLASSES)
    with pytest.raises(LabellingRefused, match="DVS128 Gesture"):
        LiveLabeller(gestures / "new.aedat4", FIVE)
    with pytest.raises(LabellingRefused, match="no model"):
        LiveLabeller(tmp_path / "x.aedat4", ())


# -- the window -----------------------------------------------------------------------------------------------------
def test_keys_and_bar_clicks_label_a_live_recording_on_its_clock(qtbot, live_window, artifacts, tmp_path):
    win = live_window(artifacts["gesture"])
    advance(qtbot, win)
    presses = [press(qtbot, win, Qt.Key.Key_3)]  # opens class 3 (id 2)
    assert win.labelling.labeller.open_class == 2 and "LABELLING left hand wave" in win.status.text()
    advance(qtbot, win)
    qtbot.wait(100)
    spans = win.timeline.user_spans
    assert len(spans) == 1 and spans[0][2] == 2 and spans[0][1] > spans[0][0]  # the open one grows
    presses.append(press(qtbot, win, Qt.Key.Key_3))  # closes it
    assert win.labelling.labeller.open_class is None and (tmp_path / "take_labels.csv").is_file()
    advance(qtbot, win)
    presses.append(click_bar(qtbot, win, 4))  # opens class 5 (id 4)
    advance(qtbot, win)
    presses.append(press(qtbot, win, Qt.Key.Key_0))  # closes it, opens class 10 (id 9)
    advance(qtbot, win)
    recorder = win.recorder
    win.stop_recording()  # the open interval ends at the recording's last event
    assert "3 labelled intervals" in win.status.text()

    labels = read_labels_csv(tmp_path / "take_labels.csv")  # absolute µs, 0-based ids
    assert [lab.class_id for lab in labels] == [2, 4, 9]
    starts, ends = (presses[0], presses[2], presses[3]), (presses[1], presses[3])
    for lab, (before, after) in zip(labels, starts, strict=True):
        assert before <= lab.start_us <= after  # the recording's time at the press (within the batch written)
    for lab, (before, after) in zip(labels, ends, strict=False):
        assert before <= lab.end_us <= after
    assert labels[2].end_us == recorder.last_time_us
    first, last = recording_span(tmp_path / "take.aedat4")
    assert all(first <= lab.start_us < lab.end_us <= last for lab in labels)
    # Replayed, the intervals lie where the recording's frames are: read on the file's rebased clock.
    rebased = read_labels_csv(tmp_path / "take_labels.csv", t0_us=first)
    assert all(0 <= lab.start_us < lab.end_us <= last - first for lab in rebased)
    source = open_source(tmp_path / "take.aedat4")
    try:
        assert source.info().labels == rebased  # the replay's ground truth is what was labelled
    finally:
        source.close()

    drawn = win.timeline.user_spans  # the timeline drew the three intervals, in their classes
    assert [cid for _, _, cid in drawn] == [2, 4, 9] and all(a < b for a, b, _ in drawn)
    for (a, b, _), lab in zip(drawn, labels, strict=True):  # on the timeline's clock, about as long
        assert abs((b - a) - (lab.end_us - lab.start_us)) <= 2 * STEP_US
    assert not (tmp_path / "classes.json").exists()


@pytest.mark.parametrize("as_cli", [False, True], ids=["record-button", "live-record"])
def test_closing_the_window_with_an_interval_open_writes_the_labels(qtbot, live_window, artifacts, tmp_path, as_cli):
    win = live_window(artifacts["gesture"], as_cli)
    assert win.record_button.isChecked()  # live --record FILE's recording is the window's: labelled, stopped by it
    press(qtbot, win, Qt.Key.Key_1)
    advance(qtbot, win)
    recorder = win.recorder
    win.close()  # also what Ctrl-C in the terminal does (run_window closes the window)
    labels = read_labels_csv(tmp_path / "take_labels.csv")
    assert len(labels) == 1 and labels[0].class_id == 0 and labels[0].end_us == recorder.last_time_us
    assert recorder.closed


def test_a_source_breaking_off_writes_the_labels(qtbot, live_window, artifacts, tmp_path):
    win = live_window(artifacts["gesture"])
    press(qtbot, win, Qt.Key.Key_2)
    advance(qtbot, win)

    def broken(max_items=1000):
        raise OSError("the camera is gone")

    win.pipeline.poll = broken  # what tick() gets from a pipeline whose source failed
    qtbot.waitUntil(lambda: win.error is not None, timeout=5000)
    assert [lab.class_id for lab in read_labels_csv(tmp_path / "take_labels.csv")] == [1]


def test_a_five_class_model_shows_five_bars_and_labels_with_keys_1_to_5(qtbot, live_window, artifacts, tmp_path):
    win = live_window(artifacts["five"])
    assert win.bars.names == FIVE and len(win.bars.layout_rects()) == 5
    qtbot.waitUntil(lambda: win.predictions_shown >= 1, timeout=30_000)
    assert len(win.bars.probs) == 5
    press(qtbot, win, Qt.Key.Key_5)
    assert win.labelling.labeller.open_class == 4
    press(qtbot, win, Qt.Key.Key_6)  # no sixth class: nothing happens, and the status line says so
    assert win.labelling.labeller.open_class == 4
    assert "key 6 does nothing: this model has 5 classes (keys 1-5)" in win.status.text()
    advance(qtbot, win)
    press(qtbot, win, Qt.Key.Key_5)
    win.stop_recording()
    assert [lab.class_id for lab in read_labels_csv(tmp_path / "take_labels.csv")] == [4]
    assert json.loads((tmp_path / "classes.json").read_text()) == list(FIVE)
    qtbot.keyClick(win, Qt.Key.Key_1)  # not recording any more
    assert "labelling works while recording" in win.status.text()


def test_switching_to_other_classes_stops_labelling_keeps_the_file_and_the_box_keeps_the_path(
        qtbot, live_window, artifacts, tmp_path):
    gesture, five = artifacts["gesture"], artifacts["five"]
    win = live_window(gesture)
    box = win.model_box
    assert box.currentData() == gesture and box.currentText() == f"tiny-gesture ({gesture})"  # given by path
    press(qtbot, win, Qt.Key.Key_2)
    advance(qtbot, win)
    win.change_model(five, "persistent", "cpu")
    qtbot.waitUntil(lambda: win.bars.names == FIVE, timeout=30_000)
    assert [lab.class_id for lab in read_labels_csv(tmp_path / "take_labels.csv")] == [1]  # closed and kept
    assert "the model's classes changed: labelling of this recording stopped" in win.status.text()
    press(qtbot, win, Qt.Key.Key_1)
    assert "previous model's classes" in win.status.text() and win.labelling.labeller.open_class is None
    box.setCurrentIndex(box.findData(gesture))  # the path-given model is still offered: switch back to it
    win._apply_model_clicked()
    qtbot.waitUntil(lambda: win.bars.names == GESTURE_CLASSES and win.model_name == gesture, timeout=30_000)
    win.stop_recording()
    assert [lab.class_id for lab in read_labels_csv(tmp_path / "take_labels.csv")] == [1]


@pytest.mark.parametrize("n", [3, 5, 12, 20])
@pytest.mark.parametrize("size", [(260, 240), (260, 700), (420, 400)])
def test_bars_fit_any_number_of_classes(qtbot, n, size):
    bars = ProbabilityBars()
    qtbot.addWidget(bars)
    bars.resize(*size)
    bars.set_names([f"class_{i}_with_a_long_name" for i in range(n)])
    bars.set_probs(np.full(n, 1 / n), 1)
    bars.labelling = 2
    inside = QRectF(bars.rect())
    rows = bars.layout_rects()
    assert len(rows) == n
    for i, rects in enumerate(rows):
        for rect in rects:
            assert rect.width() > 0 and rect.height() > 0 and inside.contains(rect), (i, rect)
        row = bars.row_height()
        assert i * row - 1e-6 <= rects[2].top() and rects[2].bottom() <= (i + 1) * row + 1e-6  # in its own row
        assert not rects[1].intersects(rects[2]) and not rects[2].intersects(rects[3])  # name, bar, value apart
    assert bars.class_at(rows[n - 1][2].center().y()) == n - 1 and bars.class_at(rows[0][2].center().y()) == 0
    assert not bars.grab().isNull()  # paints
    with qtbot.waitSignal(bars.class_clicked) as clicked:
        qtbot.mouseClick(bars, Qt.MouseButton.LeftButton, pos=QPoint(size[0] // 2, int(rows[n - 1][2].center().y())))
    assert clicked.args == [n - 1]


def test_twenty_classes_get_twenty_colours():
    from tests.test_gui import cie_lab

    lab = cie_lab([class_colour(i).getRgb()[:3] for i in range(20)])
    distances = [np.linalg.norm(lab[i] - lab[j]) for i in range(20) for j in range(i + 1, 20)]
    assert min(distances) > 12  # every pair tells apart (CIE76); the first 11 keep test_gui's > 30


def test_timeline_draws_the_labelling_spans_in_view():
    timeline = Timeline()
    timeline.resize(600, 46)
    timeline.cursor_us = 40_000_000  # live: the last 30 s are shown
    timeline.user_spans = [(1_000_000, 5_000_000, 3), (12_000_000, 20_000_000, 0), (30_000_000, 40_000_000, 14)]
    assert timeline.drawn_label_spans() == [(12_000_000, 20_000_000, 0), (30_000_000, 40_000_000, 14)]
    assert not timeline.grab().isNull()


def test_a_replays_ground_truth_takes_the_models_numbering(qtbot, artifacts, tmp_path):
    """A recording labelled with another order of the same names (its classes.json): the timeline colours each
    labelled gesture as the model's answer of that name."""
    from evapp.events import SensorGeometry
    from evapp.gui.app import duration_of
    from evapp.pipeline import ReplayOptions
    from evapp.sources.aedat3 import write_class_names, write_labels_csv
    from evapp.sources.aedat4 import write_aedat4
    from evapp.testing import random_stream

    events = random_stream(60_000, 128, 128, seed=3, rate_per_us=0.02)
    write_aedat4(tmp_path / "r.aedat4", events, SensorGeometry(128, 128, "DVS128"))
    write_class_names(tmp_path, FIVE[::-1])
    write_labels_csv(tmp_path / "r_labels.csv", [LabelInterval(0, 100_000, 900_000)], t0_us=int(events[0]["timestamp"]))
    choice = ModelChoice(artifacts["five"], device="cpu")
    source = open_source(tmp_path / "r.aedat4")
    pipeline = Pipeline(source, build_model_setup(choice), replay=ReplayOptions(speed=1.0), hold_at_end=True,
                        drop_late_frames=True)
    win = MainWindow(pipeline, choice, "replay", duration_us=duration_of(source))
    qtbot.addWidget(win)
    try:
        win.show()
        qtbot.waitUntil(lambda: len(win.timeline.labels) == 1, timeout=10_000)
        assert source.labels[0].class_id == 0 and win.timeline.labels[0].class_id == FIVE.index("circle")
    finally:
        win.close()
        pipeline.close()


def test_ctrl_c_of_live_record_in_the_window_writes_the_labels(qtbot, artifacts, tmp_path):
    """``evapp live --record FILE`` in the window, then Ctrl-C: run_window closes the window from its stop poll
    (as evapp.interrupts asks), which ends the open interval and writes the CSV."""
    from PyQt6.QtCore import QTimer
    from PyQt6.QtTest import QTest
    from PyQt6.QtWidgets import QApplication

    from evapp.gui.app import run_window
    from evapp.sinks.recorder import AedatRecorder
    from evapp.sources.live import open_live

    port = free_port()
    server = start_server(port, 600_000, seed=32, rate=60_000, batch=1000)
    source = open_live(f"tcp://127.0.0.1:{port}")
    choice = ModelChoice(artifacts["gesture"], device="cpu")
    pipeline = Pipeline(source, build_model_setup(choice))
    recorder = AedatRecorder(tmp_path / "take.aedat4", source.geometry)
    pipeline.add_tap(recorder)  # as the live command does before it starts the window
    stop, pressed = [], []

    def act():
        window = QApplication.activeWindow()
        if window is None or recorder.last_time_us is None:
            return
        if not pressed:
            pressed.append(recorder.last_time_us)
            QTest.keyClick(window, Qt.Key.Key_4)
        elif recorder.last_time_us > pressed[0] + STEP_US:
            stop.append("SIGINT")  # what the Ctrl-C handler does

    timer = QTimer()
    timer.timeout.connect(act)
    timer.start(50)
    try:
        run_window(pipeline, choice, "live", stop, recorder_factory=lambda path: AedatRecorder(path, source.geometry))
    finally:
        timer.stop()
        pipeline.close()
        recorder.close()
        server.kill()
    labels = read_labels_csv(tmp_path / "take_labels.csv")
    assert [lab.class_id for lab in labels] == [3] and labels[0].end_us == recorder.last_time_us
    assert labels[0].start_us >= pressed[0]
