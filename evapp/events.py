"""The one event dtype of the program and the sensor geometry that travels with every source.

The layout is exactly what dv-processing's ``EventStore.numpy()`` yields (reference/event-io.md section 1.3),
so batches from the camera, the network and .aedat4 files need no conversion; every other reader converts
to it at the source and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EVENT_DTYPE = np.dtype(
    {"names": ["timestamp", "x", "y", "polarity"], "formats": ["<i8", "<i2", "<i2", "i1"], "itemsize": 16}
)

# DVS128 Gesture class names, index = 0-based label (DVS128 Gesture's gesture_mapping / tonic's classes).
GESTURE_CLASSES = (
    "hand_clapping",
    "right_hand_wave",
    "left_hand_wave",
    "right_arm_clockwise",
    "right_arm_counter_clockwise",
    "left_arm_clockwise",
    "left_arm_counter_clockwise",
    "arm_roll",
    "air_drums",
    "air_guitar",
    "other_gestures",
)


@dataclass(frozen=True)
class SensorGeometry:
    """Width, height and a human name of the sensor that produced a stream."""

    width: int
    height: int
    name: str = "unknown"

    def __str__(self) -> str:
        return f"{self.name} ({self.width}x{self.height})"


@dataclass(frozen=True)
class LabelInterval:
    """A ground-truth gesture: 0-based class id and [start_us, end_us) on the stream's rebased clock."""

    class_id: int  # index into the class list the labels come with (``EventSource.label_classes``)
    start_us: int
    end_us: int


def empty_events(n: int = 0) -> np.ndarray:
    return np.zeros(n, dtype=EVENT_DTYPE)


def make_events(t, x, y, p) -> np.ndarray:
    """Pack column arrays into the program's event dtype (the one conversion point for non-dv readers)."""
    t = np.asarray(t)
    out = np.empty(t.shape[0], dtype=EVENT_DTYPE)
    out["timestamp"] = t
    out["x"] = x
    out["y"] = y
    out["polarity"] = np.asarray(p) != 0
    return out


NO_LABEL = -1  # outside every labelled gesture (the decoder's IDLE has the same value)


def labels_at(times_us: np.ndarray, labels: list[LabelInterval]) -> np.ndarray:
    """Class of the gesture whose interval ``[start, end)`` holds each time; NO_LABEL elsewhere (a later interval
    wins an overlap)."""
    out = np.full(np.shape(times_us)[0], NO_LABEL, np.int64)
    for lab in labels:
        out[(times_us >= lab.start_us) & (times_us < lab.end_us)] = lab.class_id
    return out


def align_labels(labels: list[LabelInterval], label_classes,
                 class_names) -> tuple[list[LabelInterval], tuple[str, ...]]:
    """Renumber intervals numbered in ``label_classes`` by the index of their name in ``class_names`` (a model's).

    A labelled class the model does not know gets an id past the model's (``len(class_names)``, ...), so it is
    scored as a gesture no answer can name. Returns the intervals and the names their ids index: the model's,
    then the unknown ones in order of appearance."""
    names = list(class_names)
    out = []
    for lab in labels:
        name = label_classes[lab.class_id]
        if name not in names:
            names.append(name)
        out.append(LabelInterval(names.index(name), lab.start_us, lab.end_us))
    return out, tuple(names)
