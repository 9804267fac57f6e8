"""Streaming evaluation: what a user feels on a labelled recording.

Inputs are the decoder's decisions (time, class or idle) and the frames' times; labels are ground-truth
intervals on the same rebased clock. Metrics:

- frame accuracy: over frames whose time lies inside a labelled gesture, the fraction for which the label
  on show at that time (the latest decision at or before it) is the labelled class;
- decision latency per gesture: labelled start to the first decision that is correct and stays correct for
  ``confirm`` consecutive decisions; a gesture with no such decision before its end is missed;
- false alarms: decisions that start naming a gesture (a change of label to a class) inside a pause;
- a confusion matrix of frames inside gestures: rows the true class, columns the class on show (last column:
  idle / nothing named).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evapp.decoder import IDLE
from evapp.events import GESTURE_CLASSES, LabelInterval, align_labels, labels_at


@dataclass
class GestureResult:
    class_id: int
    start_us: int
    end_us: int
    latency_ms: float | None  # None when missed
    shown_most: int = IDLE  # the label on show in most of the gesture's frames (IDLE: nothing named)


@dataclass
class StreamMetrics:
    frame_accuracy: float | None
    frames_in_gestures: int
    gestures: list[GestureResult]
    false_alarms: int
    confusion: np.ndarray  # [labelled classes, model classes + 1]
    class_names: list[str] = field(default_factory=lambda: list(GESTURE_CLASSES))  # the model's, then unknown ones

    @property
    def missed(self) -> int:
        return sum(g.latency_ms is None for g in self.gestures)

    @property
    def median_latency_ms(self) -> float | None:
        lat = [g.latency_ms for g in self.gestures if g.latency_ms is not None]
        return float(np.median(lat)) if lat else None

    def name(self, class_id: int) -> str:
        return "idle" if class_id == IDLE else self.class_names[class_id]

    def to_dict(self) -> dict:
        return {
            "frame_accuracy": self.frame_accuracy,
            "frames_in_gestures": self.frames_in_gestures,
            "gestures": len(self.gestures),
            "missed_gestures": self.missed,
            "false_alarms": self.false_alarms,
            "median_latency_ms": self.median_latency_ms,
            "per_gesture": [
                {"class_id": g.class_id, "class_name": self.class_names[g.class_id], "start_us": g.start_us,
                 "end_us": g.end_us, "latency_ms": g.latency_ms, "shown_most": self.name(g.shown_most)}
                for g in self.gestures
            ],
            "confusion": self.confusion.tolist(),
            "class_names": self.class_names,
        }


def shown_at(times_us: np.ndarray, decision_t: np.ndarray, decision_cls: np.ndarray) -> np.ndarray:
    """The label on show at each time: the latest decision at or before it (IDLE before the first)."""
    idx = np.searchsorted(decision_t, times_us, side="right") - 1
    return np.where(idx >= 0, decision_cls[np.clip(idx, 0, None)], IDLE)


def stream_metrics(frame_t_us, decision_t_us, decision_cls, labels: list[LabelInterval], confirm: int = 3,
                   num_classes: int = len(GESTURE_CLASSES), shown_classes: int | None = None) -> StreamMetrics:
    """``num_classes``: the classes the labels' ids index (rows); ``shown_classes``: the model's (columns, then
    idle; default the same). Labelled classes past the model's can never be named (``align_labels``)."""
    shown_classes = num_classes if shown_classes is None else shown_classes
    frame_t = np.asarray(frame_t_us, dtype=np.int64)
    dec_t = np.asarray(decision_t_us, dtype=np.int64)
    dec_c = np.asarray(decision_cls, dtype=np.int64)
    truth = labels_at(frame_t, labels)
    shown = shown_at(frame_t, dec_t, dec_c)
    inside = truth != IDLE
    confusion = np.zeros((num_classes, shown_classes + 1), dtype=np.int64)
    np.add.at(confusion, (truth[inside], np.where(shown[inside] == IDLE, shown_classes, shown[inside])), 1)
    accuracy = float((shown[inside] == truth[inside]).mean()) if inside.any() else None

    gestures = []
    for lab in labels:
        in_gesture = np.flatnonzero((dec_t >= lab.start_us) & (dec_t < lab.end_us))
        latency = None
        run = 0
        for i in in_gesture:
            run = run + 1 if dec_c[i] == lab.class_id else 0
            if run >= confirm:
                first = i - confirm + 1
                latency = (dec_t[first] - lab.start_us) / 1000.0
                break
        during = shown[(frame_t >= lab.start_us) & (frame_t < lab.end_us)]
        values, counts = np.unique(during, return_counts=True)
        most = int(values[np.argmax(counts)]) if counts.size else IDLE
        gestures.append(GestureResult(lab.class_id, lab.start_us, lab.end_us, latency, most))

    onsets = np.flatnonzero((dec_c != IDLE) & (dec_c != np.concatenate([[IDLE], dec_c[:-1]])))
    false_alarms = int((labels_at(dec_t[onsets], labels) == IDLE).sum()) if onsets.size else 0
    return StreamMetrics(accuracy, int(inside.sum()), gestures, false_alarms, confusion)


def confusion_png(metrics: StreamMetrics, path, title: str = "") -> None:
    """Save a stream's confusion matrix (with its idle row and column) as a PNG."""
    rows, cols = metrics.confusion.shape
    names = list(metrics.class_names)
    confusion_matrix_png(metrics.confusion, names[:rows], path, title, column_names=[*names[: cols - 1], "idle"])


def confusion_matrix_png(conf, names: list[str], path, title: str = "",
                         footer: str = "rows: labelled class, columns: class shown", column_names=None) -> None:
    """Save a confusion matrix as a PNG (row-normalised colours, counts written in the cells)."""
    import cv2

    column_names = names if column_names is None else column_names
    conf = np.asarray(conf)
    rows, cols = conf.shape
    cell, left, top = 44, 230, 60
    width, height = left + cols * cell + 20, top + rows * cell + 150
    img = np.full((height, width, 3), 255, np.uint8)
    norm = conf / np.maximum(conf.sum(axis=1, keepdims=True), 1)
    font = cv2.FONT_HERSHEY_SIMPLEX
    if title:
        cv2.putText(img, title, (10, 30), font, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    for r in range(rows):
        cv2.putText(img, names[r][:26], (5, top + r * cell + 28), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        for c in range(cols):
            shade = int(255 * (1 - norm[r, c]))
            x0, y0 = left + c * cell, top + r * cell
            cv2.rectangle(img, (x0, y0), (x0 + cell - 1, y0 + cell - 1), (255, shade, shade), -1)
            cv2.rectangle(img, (x0, y0), (x0 + cell - 1, y0 + cell - 1), (200, 200, 200), 1)
            if conf[r, c]:
                color = (255, 255, 255) if norm[r, c] > 0.5 else (0, 0, 0)
                cv2.putText(img, str(int(conf[r, c])), (x0 + 4, y0 + 27), font, 0.4, color, 1, cv2.LINE_AA)
    for c in range(cols):
        org = (left + c * cell + 18, top + rows * cell + 8)
        label = np.full((cell - 4, 140, 3), 255, np.uint8)
        cv2.putText(label, column_names[c][:16], (2, 25), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        rotated = cv2.rotate(label, cv2.ROTATE_90_CLOCKWISE)
        h, w = rotated.shape[:2]
        x0 = org[0] - w // 2
        img[org[1] : org[1] + h, x0 : x0 + w] = np.minimum(img[org[1] : org[1] + h, x0 : x0 + w], rotated)
    cv2.putText(img, footer, (10, height - 8), font, 0.45, (0, 0, 0), 1,
                cv2.LINE_AA)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write {path}")


@dataclass
class StreamRun:
    """What ``evaluate_stream`` measured: the metrics and how many frames and answers the stream made."""

    metrics: StreamMetrics
    frames: int
    answers: int


def evaluate_stream(pipeline, confirm: int = 3, name: str = "the recording") -> StreamRun:
    """Run ``pipeline`` (a labelled replay, frame records on) to its end and score its decisions (with a
    progress bar on a terminal)."""
    from evapp.errors import InputError
    from evapp.pipeline import FrameRecord
    from evapp.sinks.progress import ReplayProgress

    frame_t, decision_t, decision_cls = [], [], []
    progress = ReplayProgress(pipeline, desc="evaluating")
    try:
        for record in pipeline.records():
            progress.update()
            if isinstance(record, FrameRecord):
                frame_t.append(record.t_us)
            else:
                decision_t.append(record.t_us)
                decision_cls.append(record.decision.class_id)
    finally:
        progress.close()
        pipeline.close()
    source = pipeline.source
    if not source.labels:  # a file source knows its labels once it has been read
        raise InputError(f"{name} has no labels (expected {Path(name).stem}_labels.csv beside it).")
    labels, names = align_labels(source.labels, source.label_classes, pipeline.class_names)
    metrics = stream_metrics(frame_t, decision_t, decision_cls, labels, confirm=confirm, num_classes=len(names),
                             shown_classes=len(pipeline.class_names))
    metrics.class_names = list(names)
    return StreamRun(metrics, len(frame_t), len(decision_t))


def format_report(report: dict, confirm: int) -> str:
    """``eval-stream``'s report as text a person reads in a few seconds: what was labelled, what was named and
    how soon, then the totals."""
    n = len(report["per_gesture"])
    named = n - report["missed_gestures"]
    acc = "n/a" if report["frame_accuracy"] is None else f"{100 * report['frame_accuracy']:.1f} %"
    lat = "n/a" if report["median_latency_ms"] is None else f"{report['median_latency_ms']:.0f} ms"
    lines = [f"{report['file']}: {report['model']}, policy {report['policy']}, N={report['events_per_frame']}, "
             f"{report['frames']} frames, {report['answers']} answers",
             f"  {'labelled':<28} {'from':>8}   {'named':<28} after"]
    for g in report["per_gesture"]:
        after = "missed" if g["latency_ms"] is None else f"{g['latency_ms']:.0f} ms"
        lines.append(f"  {g['class_name']:<28} {g['start_us'] / 1e6:6.2f} s   {g['shown_most']:<28} {after}")
    lines += [
        f"{named} of {n} gestures named ({confirm} correct answers in a row), frame accuracy {acc} of "
        f"{report['frames_in_gestures']} frames inside gestures, median latency {lat}, "
        f"{report['false_alarms']} false alarm{'' if report['false_alarms'] == 1 else 's'} (a gesture named during a "
        "pause)",
        f"confusion matrix: {report['confusion_png']}",
    ]
    if report.get("wall_s") is not None:
        lines.append(f"{report['recording_s']:.1f} s of recording evaluated in {report['wall_s']:.0f} s")
    return "\n".join(lines)
