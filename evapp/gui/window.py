"""The main window: event view with the prediction over it, probability bars, timeline, controls, status line.

Inference never runs on the GUI thread: the pipeline's reader and inference threads do the work and the window
polls the pipeline's output queue from a 30 Hz timer (no Qt object is touched from another thread). A new
model / policy / device is built on a helper thread and handed to the pipeline between two frames. While a live
stream is recorded, the keys 1..9 and 0 and clicks on the class bars label it (:mod:`evapp.gui.labelling`); the
two rows of controls are built in :mod:`evapp.gui.controls`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path

from PyQt6.QtCore import Qt, QTimer
from PyQt6.QtGui import QKeySequence, QShortcut
from PyQt6.QtWidgets import QFileDialog, QLabel, QMainWindow, QWidget

from evapp.errors import EvappError
from evapp.gui.controls import build_controls
from evapp.gui.labelling import CLASS_KEYS, LabellingControl
from evapp.gui.widgets import EventView, ProbabilityBars, Timeline, show_decision, truth_labels, view_layout
from evapp.model_setup import ModelChoice, build_model_setup
from evapp.pipeline import Prediction
from evapp.pipeline.queues import LatestEvents

log = logging.getLogger(__name__)

SEEK_STEP_S = 5.0


class MainWindow(QMainWindow):
    """The window on a running pipeline; ``choice`` is the model the command line chose (the window builds the
    models the user switches to from it, keeping its decoder and torch options)."""

    def __init__(self, pipeline, choice: ModelChoice, title: str = "evapp", recorder_factory=None,
                 duration_us: int | None = None, recorder=None):
        super().__init__()
        self.pipeline = pipeline
        self.choice = choice
        self.recorder_factory = recorder_factory
        self.model_name, self.device = pipeline.model.name, choice.device
        self.policy = self._policy_of(pipeline.model, choice.policy)
        self.engine_kind = pipeline.model.engine_kind or choice.engine
        self.is_live = pipeline.is_live
        self.error: BaseException | None = None
        # A recording the command line started (live --record FILE) is the window's too: it can label it, and
        # Record stops it.
        self.recorder = recorder if recorder is not None else recorder_tap(pipeline)
        self.labelling = LabellingControl(self)
        self._end_seen = False
        self.latest_events = LatestEvents()
        pipeline.watch_batches(self.latest_events.add)
        self.last_prediction: Prediction | None = None
        self.predictions_shown = 0
        self.frames_shown = 0
        self._engine_results: queue.Queue = queue.Queue()
        self._building = False
        self._user_region = None
        self._notice, self._notice_until = "", 0.0
        self.setWindowTitle(title)

        geometry = pipeline.source.geometry
        self.view = EventView(geometry)
        self.view.region = pipeline.mapping.region
        self.view.region_selected.connect(self.set_region)
        self.view.region_reset.connect(lambda: self.set_region(None))
        self.bars = ProbabilityBars()
        self.bars.set_names(pipeline.class_names)
        self.bars.class_clicked.connect(lambda class_id: self.labelling.toggle(class_id, "click"))
        self.timeline = Timeline()
        self.timeline.duration_us = duration_us
        self.timeline.labels = self._truth_labels()

        self.controls_row, self.model_row = build_controls(self)
        self.record_button.setChecked(self.recorder is not None)
        layout = view_layout(self.view, self.bars, self.timeline)
        layout.addLayout(self.controls_row)
        layout.addLayout(self.model_row)
        central = QWidget()
        central.setLayout(layout)
        self.setCentralWidget(central)
        self.status = QLabel()
        self.statusBar().addWidget(self.status, 1)
        self._build_shortcuts()
        self.resize(1100, 720)

        self.timer = QTimer(self)
        self.timer.timeout.connect(self.tick)
        self.timer.start(33)
        pipeline.start()

    def _asked_policy(self, setup) -> str:
        """What the policy box offers for ``setup``: ``auto`` while auto chooses, else the policy running."""
        return "auto" if setup.governor is not None else self.policy

    @staticmethod
    def _policy_of(setup, asked: str | None) -> str:
        """The policy the engine really runs (an artifact may choose it when none was asked for)."""
        return setup.policy_text if setup.engine is not None else (asked or "window")

    # -- layout ---------------------------------------------------------------------------------------
    def _build_shortcuts(self) -> None:
        def bind(keys, action):
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.setContext(Qt.ShortcutContext.ApplicationShortcut)
            shortcut.activated.connect(action)

        bind(Qt.Key.Key_Space, self.toggle_pause)
        bind(Qt.Key.Key_R, self.reset_state)
        bind(Qt.Key.Key_S, lambda: self.save_screenshot())
        bind(Qt.Key.Key_Left, lambda: self.seek_by(-SEEK_STEP_S))
        bind(Qt.Key.Key_Right, lambda: self.seek_by(SEEK_STEP_S))
        bind("Ctrl+Q", self.close)
        for key, class_id in CLASS_KEYS:  # labelling while recording
            bind(key, lambda class_id=class_id: self.labelling.key(class_id))

    # -- controls -------------------------------------------------------------------------------------
    def toggle_pause(self) -> None:
        if self.pipeline.paused:
            self.pipeline.resume()
        else:
            self.pipeline.pause()
        self.play_button.setText("Play" if self.pipeline.paused else "Pause")

    def seek_to(self, position_s: float) -> None:
        if self.is_live:
            return
        duration_s = (self.timeline.duration_us or 0) / 1e6
        position_s = min(max(position_s, 0.0), duration_s) if duration_s else max(position_s, 0.0)
        self.timeline.add_gap(self.pipeline.position_us)
        self.pipeline.seek(position_s)
        self.timeline.cursor_us = int(position_s * 1e6)
        self.last_prediction = None
        self.view.label_text = ""
        self.notify(f"seek to {position_s:.1f} s")

    def seek_by(self, delta_s: float) -> None:
        self.seek_to(self.pipeline.position_us / 1e6 + delta_s)

    def _set_loop(self, on: bool) -> None:
        self.pipeline.loop = on

    def reset_state(self) -> None:
        """Clear the model's state and the decoder (the answers start again from a reset state)."""
        self.pipeline.reset()
        self.last_prediction = None
        self.view.label_text = ""
        self.bars.set_probs(self.bars.probs * 0, -1)

    def set_events_per_frame(self, n: int) -> None:
        if n != self.pipeline.binner.n:
            self.pipeline.set_binning(n, self._user_region)

    def set_region(self, region) -> None:
        try:
            self.pipeline.set_binning(self.pipeline.binner.n, region)
        except EvappError as exc:
            self.notify(str(exc))
            return
        self._user_region = region
        self.view.region = region or self.pipeline.frame_spec.region(self.pipeline.source.geometry)
        self.view.update()

    def _apply_model_clicked(self) -> None:
        self.change_model(self.model_box.currentData(), self.policy_box.currentText().strip(),
                          self.device_box.currentText(), self.engine_box.currentText())

    def change_model(self, model_name: str | None, policy: str, device: str, engine_kind: str = "torch") -> None:
        """Build the engine on a helper thread (it can take seconds); the timer hands it to the pipeline."""
        if self._building:
            return
        self._building = True
        self.apply_button.setEnabled(False)
        self.view.banner_text = f"loading {model_name or 'no model'} ..."

        def build():
            try:
                result = build_model_setup(self.choice.switched(model_name, policy, device, engine_kind))
                self._engine_results.put((model_name, policy, device, engine_kind, result))
            except BaseException as exc:  # noqa: BLE001 - shown in the status line
                self._engine_results.put((model_name, policy, device, engine_kind, exc))

        threading.Thread(target=build, name="evapp-model-loader", daemon=True).start()

    def _take_engine(self) -> None:
        try:
            model_name, policy, device, engine_kind, result = self._engine_results.get_nowait()
        except queue.Empty:
            return
        self._building = False
        self.apply_button.setEnabled(True)
        self.view.banner_text = ""
        if not isinstance(result, BaseException):
            try:
                self.pipeline.set_model(result)
            except EvappError as exc:  # e.g. the chosen region is smaller than the new model's input
                result = exc
        if isinstance(result, BaseException):
            self.notify(f"model not changed: {result}", 6.0)
            return
        self.model_name, self.policy, self.device = model_name, self._policy_of(result, policy), device
        self.engine_kind = result.engine_kind or engine_kind
        self.policy_box.setCurrentText(self._asked_policy(result))
        self.n_box.setValue(result.frame_spec.events_per_frame)
        self.bars.set_names(result.class_names)
        self.labelling.classes_changed(result.class_names)
        self.last_prediction = None
        self.view.label_text = ""

    def _record_clicked(self, checked: bool) -> None:
        if checked:
            path, _ = QFileDialog.getSaveFileName(self, "Record to", "recording.aedat4", "AEDAT4 (*.aedat4)")
            if not path:
                self.record_button.setChecked(False)
                return
            self.start_recording(path)
        else:
            self.stop_recording()

    def start_recording(self, path: str | Path) -> None:
        try:
            self.recorder = self.recorder_factory(path)
        except EvappError as exc:
            self.notify(str(exc), 6.0)
            self.record_button.setChecked(False)
            return
        self.pipeline.add_tap(self.recorder)
        self.labelling.recording_started()
        self.record_button.setChecked(True)

    def stop_recording(self) -> None:
        if self.recorder is None:
            return
        self.pipeline.remove_tap(self.recorder)
        self.recorder.close()
        labelled = self.labelling.finish()
        self.notify(f"recorded {self.recorder.events:,} events to {self.recorder.path}"
                    + (f"; {labelled}" if labelled else ""), 8.0)
        self.recorder = None
        self.record_button.setChecked(False)

    def save_screenshot(self, path: str | Path | None = None) -> Path:
        if path is None:
            from evapp.paths import output_dir

            path = output_dir() / time.strftime("evapp-%Y%m%d-%H%M%S.png")
        path = Path(path)
        self.grab().save(str(path))
        self.statusBar().showMessage(f"saved {path}", 3000)
        return path

    # -- the timer ------------------------------------------------------------------------------------
    def tick(self) -> None:
        self._take_engine()
        try:
            outputs = self.pipeline.poll()
        except BaseException as exc:  # noqa: BLE001 - the CLI turns it into one sentence after the window closes
            self.error = exc
            self.close()
            return
        shown = []
        for record in outputs:
            if isinstance(record, Prediction):
                self._show_prediction(record)
                shown.append(record)
            else:
                self.frames_shown += 1
        if not self.pipeline.paused:  # paused: the picture stays as it was
            self.view.add_events(self.latest_events.take())
        position = self.pipeline.position_us
        self.timeline.cursor_us = position
        self.timeline.labels = self._truth_labels()
        self.timeline.user_spans = self.labelling.timeline_spans(position)
        self.timeline.update()
        if self.pipeline.finished and not self._end_seen:  # the stream has ended: the labels so far are written
            self._end_seen = True
            labelled = self.labelling.finish()
            if labelled:
                self.notify(labelled, 8.0)
        if not self.seek_slider.isSliderDown():
            self.seek_slider.setValue(int(position / 1e5))
        self.position_label.setText(f"{position / 1e6:6.1f} s")
        self.view.repaint()  # the prediction is on screen now: that is where its latency ends
        for prediction in shown:
            self.pipeline.report_shown(prediction)
        self._update_status()

    def _truth_labels(self) -> list:
        return truth_labels(self.pipeline.source, self.bars.names)

    def _show_prediction(self, prediction: Prediction) -> None:
        self.last_prediction = prediction
        self.predictions_shown += 1
        answer = prediction.answer
        show_decision(self.view, self.bars, self.timeline, prediction)
        self.view.detail_text = (f"raw: {answer.class_name.replace('_', ' ')} {answer.confidence:.2f}   "
                                 f"step {prediction.step_ms:.1f} ms")

    def _update_status(self) -> None:
        s = self.pipeline.stats()
        parts = [f"{s['event_rate'] / 1e3:,.1f} kev/s", f"{s['frames_per_s']:.1f} frames/s"]
        parts.append("ms/step n/a" if s["step_ms"] is None else f"{s['step_ms']:.1f} ms/step")
        parts.append("latency n/a" if s["latency_ms"] is None else f"latency {s['latency_ms']:.0f} ms")
        parts.append(f"dropped {s['dropped_frames']}")
        if s["behind_s"] > 0.3:  # events waiting before the pipeline: shown as they grow, dropped past the bound
            parts.append(f"behind {s['behind_s']:.1f} s ({self.pipeline.backlog.events_dropped:,} events dropped)")
        if self.pipeline.rate_cap.kept < 1.0:
            parts.append(f"rate cap: {100 * self.pipeline.rate_cap.kept:.0f} % of events kept")
        if self.pipeline.model.engine is not None:  # --policy auto changes it while running
            self.policy = self.pipeline.model.policy_text
        parts.append(f"model {self.model_name or 'none'} ({self.engine_kind}, {self.policy}, {self.device})")
        if self.recorder is not None and self.recorder.stopped_because:
            parts[:0] = [f"recording STOPPED ({self.recorder.stopped_because}): {self.recorder.events:,} events kept"]
        elif self.recorder is not None:  # first: what is being recorded and labelled must stay in view
            parts[:0] = [f"REC {self.recorder.events:,} events"] + [t for t in [self.labelling.status_text()] if t]
        if self.pipeline.paused:
            parts.append("paused")
        if self.pipeline.finished:
            parts.append("ended")
        elif self.pipeline.at_end:
            parts.append("end of the recording")
        if s["status"]:
            parts.append(s["status"])
        if not self._building:
            self.view.banner_text = s["status"] or ("paused" if self.pipeline.paused else "") or (
                "end of the recording: seek, or tick Loop" if self.pipeline.at_end else "")
        if time.monotonic() < self._notice_until:  # a message the user must have time to read
            parts.insert(0, self._notice)
        self.status.setText("  |  ".join(parts))

    def notify(self, text: str, seconds: float = 3.0) -> None:
        """Show ``text`` first in the status line for ``seconds`` (the line is rewritten at every tick)."""
        self._notice, self._notice_until = text, time.monotonic() + seconds
        self._update_status()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self.timer.stop()
        self.pipeline.close()  # the source too: what it still delivers reaches the recording before it is closed
        self.stop_recording()
        super().closeEvent(event)


def recorder_tap(pipeline):
    """The recorder the command line tapped into the pipeline (live --record FILE), if any."""
    from evapp.sinks.recorder import AedatRecorder

    hooks = getattr(pipeline.source, "store_hooks", ()) if pipeline.is_live else ()
    return next((hook for hook in hooks if isinstance(hook, AedatRecorder)), None)
