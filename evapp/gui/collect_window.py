"""``evapp collect`` in the window: the main window on the live stream, with the prompt panel above it.

The panel names the gesture to perform, counts down, and shows a bar for the take and for the pause. The session
is ticked from the window's own timer on the GUI thread (the take files are written on the reader thread, as the
recorder is); Backspace (or the panel's button) discards the last finished take and asks for it again; closing the
window ends the session with every finished take kept.
"""

from __future__ import annotations

from PyQt6.QtCore import Qt, QTimer
from PyQt6.QtGui import QFont, QKeySequence, QShortcut
from PyQt6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from evapp.collect.protocol import Prompt
from evapp.collect.session import CollectSession, FinishedTake
from evapp.gui.window import MainWindow

PHASE_COLOURS = {"countdown": "#e69f00", "go": "#009e73", "pause": "#7f7f7f", "done": "#0072b2",
                 "waiting": "#7f7f7f"}


class PromptPanel(QWidget):
    """The prompt on now in large type, the take's number and a bar for the phase."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.title = QLabel("waiting for the first events ...")
        font = QFont()
        font.setPointSize(22)
        font.setBold(True)
        self.title.setFont(font)
        self.title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.detail = QLabel("")
        self.detail.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(False)
        self.redo_button = QPushButton("Redo the last take")
        row = QHBoxLayout()
        row.addWidget(self.detail, 1)
        row.addWidget(self.redo_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.bar)
        layout.addLayout(row)
        self.phase = "waiting"

    def show_prompt(self, prompt: Prompt) -> None:
        self.phase = prompt.phase
        if prompt.phase == "countdown":
            self.title.setText(f"{prompt.take.class_name.replace('_', ' ')} in {prompt.count}")
        elif prompt.phase == "go":
            self.title.setText(f"{prompt.take.class_name.replace('_', ' ')}: go")
        elif prompt.phase == "pause":
            self.title.setText("rest")
        else:
            self.title.setText("done: every take is recorded")
        if prompt.take is not None:
            self.detail.setText(f"take {prompt.take.index + 1} of {prompt.of}" + ("  (again)" if prompt.redo else "")
                                + "   Backspace: redo the last take")
        self.title.setStyleSheet(f"color: {PHASE_COLOURS.get(prompt.phase, '#000')}")

    def set_progress(self, fraction: float) -> None:
        self.bar.setValue(int(1000 * fraction))


class CollectWindow(MainWindow):
    def __init__(self, pipeline, session: CollectSession, choice, title: str):
        super().__init__(pipeline, choice, title)
        self.session = session
        self.panel = PromptPanel()
        self.centralWidget().layout().insertWidget(0, self.panel)
        self.shown: list[Prompt | FinishedTake] = []
        self._collect_timer = QTimer(self)
        self._collect_timer.timeout.connect(self.tick_session)
        self._collect_timer.start(20)
        redo = QShortcut(QKeySequence("Backspace"), self)  # R is the window's reset
        redo.setContext(Qt.ShortcutContext.ApplicationShortcut)
        redo.activated.connect(self.redo_last)
        self.panel.redo_button.clicked.connect(self.redo_last)

    def tick_session(self) -> None:
        for item in self.session.tick():
            self.shown.append(item)
            if isinstance(item, Prompt):
                self.panel.show_prompt(item)
            else:
                self.notify(f"recorded {item.file}: {item.events:,} events", 3.0)
        self.panel.set_progress(self.session.progress())

    def redo_last(self) -> None:
        take = self.session.redo_last()
        self.notify("no finished take to redo" if take is None else
                    f"take {take.index + 1} ({take.class_name}) is asked again after this one", 4.0)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self._collect_timer.stop()
        for item in self.session.close():
            self.shown.append(item)
        super().closeEvent(event)


def run_collect_window(pipeline, session: CollectSession, choice, stop: list) -> int:
    from evapp.gui.app import run_window

    return run_window(pipeline, choice, "evapp collect", stop,
                      make_window=lambda: CollectWindow(pipeline, session, choice, "evapp collect"))
