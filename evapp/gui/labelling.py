"""Labelling in the window while it records: the keys 1..9 and 0 (the 10th class) and clicks on the class bars
open and close intervals of a :class:`~evapp.sinks.labelling.LiveLabeller` at the recording's current time
(the recorder's ``last_time_us``), shown on the timeline and in the status line.

The labeller is made for the recording and the model's class list at the first key press (or click); when the
user switches to a model with another class list, the open interval is closed, the file is kept and labelling
this recording stops (one recording, one class list). Every end of a recording (Stop, closing the window, Ctrl-C,
the source breaking off or ending) closes the open interval at the recording's last event time and writes the CSV.
"""

from __future__ import annotations

import logging

from PyQt6.QtCore import Qt

from evapp.errors import EvappError
from evapp.sinks.labelling import LiveLabeller

log = logging.getLogger(__name__)

# Key -> 0-based class: 1..9 are the first nine classes, 0 the tenth.
CLASS_KEYS = tuple((getattr(Qt.Key, f"Key_{d}"), (d - 1) % 10) for d in (1, 2, 3, 4, 5, 6, 7, 8, 9, 0))


def key_name(class_id: int) -> str:
    """The key that labels ``class_id`` ("" past the tenth class: those are labelled by clicking their bar)."""
    return str((class_id + 1) % 10) if class_id < 10 else ""


class LabellingControl:
    """The window's labelling: its labeller (None until the first key of a recording), the spans the timeline
    draws (on the timeline's clock: the stream position when each interval was opened and closed) and the text
    of the status line."""

    def __init__(self, window):
        self.window = window
        self.labeller: LiveLabeller | None = None
        self.retired = False  # the model's class list changed: this recording is not labelled any further
        self.spans: list[tuple[int, int, int]] = []  # closed: (start, end, class) on the timeline's clock
        self.open_span: tuple[int, int] | None = None  # (start on the timeline's clock, class)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.window.bars.names)  # the model's classes as shown (the pipeline's follow a frame later)

    def _recorder_time(self) -> int | None:
        recorder = self.window.recorder
        return None if recorder is None else recorder.last_time_us

    def _name(self, class_id: int) -> str:
        names = self.labeller.class_names if self.labeller is not None else self.names
        return names[class_id].replace("_", " ") if 0 <= class_id < len(names) else str(class_id + 1)

    # -- the user ---------------------------------------------------------------------------------------------
    def key(self, class_id: int) -> None:
        self.toggle(class_id, f"key {key_name(class_id)}")

    def toggle(self, class_id: int, what: str = "click") -> None:
        """Open (or close) an interval of ``class_id`` now; a sentence in the status line when that cannot be."""
        window = self.window
        names = self.names
        if window.recorder is None:
            window.notify(f"{what}: labelling works while recording (Record, or live --record FILE).", 4.0)
            return
        if not names:
            window.notify(f"{what}: no model runs, so there are no classes to label.", 4.0)
            return
        if class_id >= len(names):
            keys = "1-9 and 0" if len(names) >= 10 else f"1-{len(names)}"
            window.notify(f"{what} does nothing: this model has {len(names)} classes (keys {keys}).", 4.0)
            return
        if self.retired:
            window.notify(f"{what}: this recording's labels use the previous model's classes; start a new "
                          "recording to label with this model's.", 5.0)
            return
        t_us = self._recorder_time()
        if t_us is None:
            window.notify(f"{what}: no event recorded yet, nothing to label.", 4.0)
            return
        try:
            if self.labeller is None:
                self.labeller = LiveLabeller(window.recorder.path, names)
            was_open = self.labeller.open_class
            is_open = self.labeller.toggle(class_id, t_us)
        except (EvappError, OSError) as exc:
            window.notify(f"not labelling: {exc}", 8.0)
            return
        position = window.pipeline.position_us
        if was_open is not None:
            self._close_span(position)
        if is_open:
            self.open_span = (position, class_id)
            window.notify(f"labelling {self._name(class_id)} ({what} again ends it)", 3.0)
        else:
            window.notify(f"{self._name(class_id)} labelled: {len(self.labeller.intervals)} intervals in "
                          f"{self.labeller.labels_path.name}", 3.0)
        window.bars.labelling = self.labeller.open_class
        window.bars.update()

    def _close_span(self, position: int) -> None:
        if self.open_span is not None:
            start, class_id = self.open_span
            if position > start:
                self.spans.append((start, position, class_id))
            self.open_span = None

    # -- the recording ----------------------------------------------------------------------------------------
    def recording_started(self) -> None:
        self.labeller, self.retired = None, False
        self.spans, self.open_span = [], None
        self.window.bars.labelling = None

    def finish(self) -> str:
        """The recording ends (any way): close the open interval at its last event and write the CSV; a sentence
        for the status line ("" when nothing was labelled)."""
        labeller = self.labeller
        self._close_span(self.window.pipeline.position_us)
        self.window.bars.labelling = None
        if labeller is None:
            return ""
        try:
            path = labeller.finish(self._recorder_time())
        except (EvappError, OSError) as exc:
            log.error("the labels of %s could not be written: %s", labeller.recording_path, exc)
            return f"labels NOT written: {exc}"
        return "" if path is None else f"{len(labeller.intervals)} labelled intervals in {path}"

    def classes_changed(self, names) -> None:
        """The model changed: a labeller of another class list closes its interval, keeps its file and stops."""
        labeller = self.labeller
        if labeller is None or tuple(names) == labeller.class_names or self.retired:
            self.window.bars.labelling = None if labeller is None else labeller.open_class  # the bars were renewed
            return
        if not labeller.intervals and labeller.open_interval is None:
            self.labeller = None  # nothing labelled yet: the next key labels with the new list
            return
        said = self.finish()
        self.retired = True
        said = said or "nothing labelled"
        self.window.notify(f"the model's classes changed: labelling of this recording stopped ({said}; it keeps the "
                           f"previous model's {len(labeller.class_names)} classes).", 8.0)

    # -- what is shown ----------------------------------------------------------------------------------------
    def timeline_spans(self, cursor_us: int) -> list[tuple[int, int, int]]:
        """The spans to draw: the closed intervals and the open one, growing up to ``cursor_us``."""
        spans = list(self.spans)
        if self.open_span is not None:
            start, class_id = self.open_span
            spans.append((start, max(cursor_us, start), class_id))
        return spans

    def status_text(self) -> str:
        labeller = self.labeller
        if self.window.recorder is None or labeller is None:
            return ""
        if labeller.open_class is not None:
            return f"LABELLING {self._name(labeller.open_class)}"
        return f"{len(labeller.intervals)} labelled"
