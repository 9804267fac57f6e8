"""Labelling a recording while it is made: intervals of a class, opened and closed at the recording's own time.

:class:`LiveLabeller` knows no GUI: the window calls :meth:`~LiveLabeller.toggle` with the class of the key
pressed (or the bar clicked) and the recorder's ``last_time_us``, the newest event time written on the
recording's own clock, so the intervals lie on the same clock as the .aedat4's timestamps:
``read_labels_csv(csv, t0_us=first_event_time_of_the_file)`` gives intervals that match the frames of the
recording when it is replayed.

What is written, beside the recording ``<folder>/<stem>.aedat4``:

- ``<stem>_labels.csv``: DVS128 Gesture's ``class,startTime_usec,endTime_usec``, 1-based class numbers, absolute
  µs. It is rewritten (whole, atomically) at every close of an interval and by :meth:`~LiveLabeller.finish`;
  nothing is written before the first interval is closed. An interval of zero length (opened and closed with
  no event in between) is dropped.
- ``classes.json`` (a JSON list of names, what the class numbers index) when the class list is not DVS128
  Gesture's 11 classes (``GESTURE_CLASSES``), which a folder without a classes.json means.

The folder's class list rule: one folder, one class list. Labelling is refused (:class:`LabellingRefused`, one
sentence) when the folder's ``classes.json`` lists other classes, or when the class list is not
``GESTURE_CLASSES``, the folder has no classes.json and already holds other ``*_labels.csv`` files (they are
DVS128 Gesture's classes, and a new classes.json would change what they mean). Record into another folder then.
"""

from __future__ import annotations

import os
from pathlib import Path

from evapp.errors import InputError
from evapp.events import GESTURE_CLASSES, LabelInterval
from evapp.sources.aedat3 import (
    CLASSES_FILE,
    Aedat3FormatError,
    labels_path_for,
    read_class_names,
    write_class_names,
    write_labels_csv,
)


class LabellingRefused(InputError):
    """This recording cannot be labelled with this class list (the sentence says why)."""


def _short(names) -> str:
    names = list(names)
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def classes_json_needed(recording_path: str | Path, class_names) -> bool:
    """Check the folder's class list rule (module docstring) for ``class_names``; True when a classes.json must be
    written with the labels. Raises LabellingRefused when the folder holds another class list."""
    recording_path = Path(recording_path)
    folder, names = recording_path.parent, tuple(class_names)
    existing = folder / CLASSES_FILE
    if existing.is_file():
        try:
            listed = read_class_names(folder)
        except Aedat3FormatError as exc:
            raise LabellingRefused(f"{exc}: labelling would add to a folder whose classes are unknown.") from None
        if listed != names:
            raise LabellingRefused(f"{existing} lists {len(listed)} other classes ({_short(listed)}) than this "
                                   f"model's {len(names)} ({_short(names)}): record into another folder to label "
                                   "with this model.")
        return False
    if names == GESTURE_CLASSES:
        return False
    own = labels_path_for(recording_path).name
    others = sorted(p.name for p in folder.glob("*_labels.csv") if p.name != own)
    if others:
        raise LabellingRefused(f"{folder} already holds labels of DVS128 Gesture's 11 classes ({others[0]}, no "
                               f"{CLASSES_FILE}): record into another folder to label with this model's "
                               f"{len(names)} classes.")
    return True


class LiveLabeller:
    """Labelled intervals of one recording, on its own clock; one interval is open at a time.

    ``class_names`` is the class list the ids index (the model's). Raises LabellingRefused at once when the folder
    holds another class list (module docstring)."""

    def __init__(self, recording_path: str | Path, class_names):
        self.recording_path = Path(recording_path)
        self.class_names = tuple(class_names)
        if not self.class_names:
            raise LabellingRefused("There is no class list to label with (no model runs): choose a model first.")
        self.labels_path = labels_path_for(self.recording_path)
        self.classes_path = self.recording_path.parent / CLASSES_FILE
        self._write_classes = classes_json_needed(self.recording_path, self.class_names)
        self.intervals: list[LabelInterval] = []  # closed, in order, absolute µs on the recording's clock
        self.open_interval: tuple[int, int] | None = None  # (class id, start µs)
        self.written = False

    @property
    def open_class(self) -> int | None:
        return None if self.open_interval is None else self.open_interval[0]

    def open(self, class_id: int, t_us: int) -> LabelInterval | None:
        """Open an interval of ``class_id`` at ``t_us``; an interval still open is closed there first (returned)."""
        if not 0 <= class_id < len(self.class_names):
            raise ValueError(f"class {class_id} is not one of the {len(self.class_names)} classes")
        closed = self.close(t_us)
        self.open_interval = (int(class_id), int(t_us))
        return closed

    def close(self, t_us: int) -> LabelInterval | None:
        """Close the open interval at ``t_us`` and rewrite the CSV; the interval, or None (none open, or empty)."""
        if self.open_interval is None:
            return None
        class_id, start = self.open_interval
        self.open_interval = None
        end = max(int(t_us), start)
        if end == start:
            return None
        interval = LabelInterval(class_id, start, end)
        self.intervals.append(interval)
        self.write()
        return interval

    def toggle(self, class_id: int, t_us: int) -> bool:
        """The key of ``class_id`` was pressed: close its interval if it is the open one, else open one (closing
        another open one first). True when an interval of ``class_id`` is open afterwards."""
        if self.open_class == class_id:
            self.close(t_us)
            return False
        self.open(class_id, t_us)
        return True

    def finish(self, t_us: int | None) -> Path | None:
        """The end of the recording (last event at ``t_us``): close the open interval there and write the CSV;
        its path, or None when nothing was ever labelled."""
        if self.open_interval is not None:
            self.close(self.open_interval[1] if t_us is None else t_us)
        return self.write()

    def write(self) -> Path | None:
        """(Re)write the CSV (and the classes.json the folder needs); None when no interval was closed yet."""
        if not self.intervals and not self.written:
            return None
        if self._write_classes:
            if self.classes_path.is_file():  # written since the check (another recording of this folder)
                classes_json_needed(self.recording_path, self.class_names)
            else:
                write_class_names(self.classes_path.parent, self.class_names)
            self._write_classes = False
        _replace(self.labels_path, lambda p: write_labels_csv(p, self.intervals))
        self.written = True
        return self.labels_path


def _replace(path: Path, write) -> None:
    """Write through a temporary file, so a crash mid-write keeps the previous file whole."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)
