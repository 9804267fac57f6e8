"""Streaming evaluation: what a user feels on a labelled recording.

Inputs are the decoder's decisions (time, class or idle) and the frames' times; labels are ground-truth
intervals on the same rebased clock. Metrics:

- frame accuracy: over frames whose time lies inside a labelled gesture, the fraction for which the label
  on show at that time (the latest decision at or before it) is the labelled class;
- decision latency per gesture: labelled start to the first decision that is correct and stays correct for
  ``confirm`` consecutive decisions; a gesture with no such decision before its end is missed;
- false alarms: decisions that start naming a gesture (a change of label to a class) inside a pause;
- a confusion matrix of frames inside gestures: rows the true class, columns the class on show (last column:
  idle / nothing named);
- accuracy since onset: every 10 ms from a labelled start to 2 s after it, the fraction of the gestures still
  going on whose label on show is right, and the time to a stable correct label (from the start to the last
  change of the label on show to the right class, after which it stays right to the gesture's end or to 2 s,
  whichever comes first: the end of a gesture, where the motion dies down, is not its recognition). The
  resolution is that of the curve BrainChip published for PLEIADES on DVS128 Gesture (Pei and Coenen, "PLEIADES:
  Building Temporal Kernels with Orthogonal Polynomials", 2024); the same for the 10 classes without
  ``other_gestures`` compares with published 10-class results.
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
    onset: dict = field(default_factory=dict)  # curve name -> onset_curve(...)

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
            "accuracy_since_onset": self.onset,
        }


def shown_at(times_us: np.ndarray, decision_t: np.ndarray, decision_cls: np.ndarray) -> np.ndarray:
    """The label on show at each time: the latest decision at or before it (IDLE before the first)."""
    if len(decision_cls) == 0:  # too short a stream for an answer: nothing was ever named
        return np.full(np.shape(times_us), IDLE, dtype=np.int64)
    idx = np.searchsorted(decision_t, times_us, side="right") - 1
    return np.where(idx >= 0, decision_cls[np.clip(idx, 0, None)], IDLE)


ONSET_STEP_MS = 10
ONSET_HORIZON_MS = 2000
OTHER_GESTURES = "other_gestures"


def onset_curve(labels: list[LabelInterval], decision_t_us, decision_cls, step_ms: int = ONSET_STEP_MS,
                horizon_ms: int = ONSET_HORIZON_MS) -> dict:
    """Accuracy against time since onset: at ``0, step, ..., horizon`` ms after each labelled start, the fraction
    of the gestures still going on (start + t < end) whose label on show is their class; and each gesture's time
    to a stable correct label (right from then to the end of the gesture or of the horizon), summarised as median
    and p95 (a gesture whose label is wrong there counts as never: longer than any)."""
    dec_t = np.asarray(decision_t_us, dtype=np.int64)
    dec_c = np.asarray(decision_cls, dtype=np.int64)
    t_ms = np.arange(0, horizon_ms + step_ms, step_ms, dtype=np.int64)
    right = np.zeros(t_ms.shape, np.int64)
    going = np.zeros(t_ms.shape, np.int64)
    stable = []
    for lab in labels:
        at = lab.start_us + 1000 * t_ms
        inside = at < lab.end_us
        going += inside
        right += inside & (shown_at(at, dec_t, dec_c) == lab.class_id)
        # the label on show from the start: what was shown at the start, then each decision inside the gesture
        within = (dec_t > lab.start_us) & (dec_t < min(lab.end_us, lab.start_us + 1000 * horizon_ms))
        times = np.concatenate([[lab.start_us], dec_t[within]])
        shown = np.concatenate([shown_at(np.array([lab.start_us]), dec_t, dec_c), dec_c[within]])
        wrong = np.flatnonzero(shown != lab.class_id)
        if wrong.size == 0:
            stable.append(0.0)
        elif wrong[-1] == shown.size - 1:
            stable.append(np.inf)
        else:
            stable.append((times[wrong[-1] + 1] - lab.start_us) / 1000.0)

    def quantile(q: float) -> float | None:
        """numpy's linear quantile, None where it would reach a gesture never stably right."""
        values = np.sort(np.asarray(stable, np.float64))
        position = q * (values.size - 1)
        low, high = int(np.floor(position)), int(np.ceil(position))
        if values.size == 0 or not np.isfinite(values[high]):
            return None
        return round(float(values[low] + (position - low) * (values[high] - values[low])), 1)

    accuracy = [round(float(r / g), 4) if g else None for r, g in zip(right, going, strict=True)]
    return {"step_ms": step_ms, "t_ms": t_ms.tolist(), "accuracy": accuracy, "gestures": going.tolist(),
            "gestures_at_onset": len(labels),
            "stable_ms": {"median": quantile(0.5), "p95": quantile(0.95),
                          "never": int(np.isinf(stable).sum()) if stable else 0}}


def onset_curves(labels: list[LabelInterval], decision_t_us, decision_cls, class_names) -> dict:
    """The curve over every labelled gesture (``all``) and, where the classes include other_gestures, over the
    other ten (``without_other_gestures``)."""
    names = list(class_names)
    curves = {"all": onset_curve(labels, decision_t_us, decision_cls)}
    if OTHER_GESTURES in names:
        other = names.index(OTHER_GESTURES)
        curves["without_other_gestures"] = onset_curve([lab for lab in labels if lab.class_id != other],
                                                       decision_t_us, decision_cls)
    return curves


def onset_value(curve: dict, t_ms: int) -> float | None:
    """The curve's accuracy ``t_ms`` after onset."""
    return curve["accuracy"][t_ms // curve["step_ms"]]


def stream_metrics(frame_t_us, decision_t_us, decision_cls, labels: list[LabelInterval], confirm: int = 3,
                   num_classes: int = len(GESTURE_CLASSES), shown_classes: int | None = None,
                   class_names=GESTURE_CLASSES) -> StreamMetrics:
    """``num_classes``: the classes the labels' ids index (rows); ``shown_classes``: the model's (columns, then
    idle; default the same). Labelled classes past the model's can never be named (``align_labels``).
    ``class_names``: the names the labels' ids index (the model's, then unknown ones)."""
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
    return StreamMetrics(accuracy, int(inside.sum()), gestures, false_alarms, confusion,
                         list(class_names), onset_curves(labels, dec_t, dec_c, class_names))


def confusion_png(metrics: StreamMetrics, path, title: str = "") -> None:
    """Save a stream's confusion matrix (with its idle row and column) as a PNG."""
    from evapp.plots import confusion_matrix_png

    rows, cols = metrics.confusion.shape
    names = list(metrics.class_names)
    confusion_matrix_png(metrics.confusion, names[:rows], path, title, column_names=[*names[: cols - 1], "idle"])


def onset_png(metrics: StreamMetrics, path, title: str = "") -> None:
    """Save the accuracy-since-onset curves as a PNG."""
    from evapp.plots import onset_curve_png

    onset_curve_png({ONSET_NAMES.get(k, k): v for k, v in metrics.onset.items()}, path, title)


ONSET_NAMES = {"all": "all classes", "without_other_gestures": "without other_gestures"}


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
                             shown_classes=len(pipeline.class_names), class_names=names)
    return StreamRun(metrics, len(frame_t), len(decision_t))


def onset_summary(name: str, curve: dict) -> str:
    """'accuracy since onset (all classes, 11 gestures): 18 % at 100 ms, ...; stable correct label after 230 ms
    (median), 410 ms (p95)'."""
    def pct(t_ms: int) -> str:
        value = onset_value(curve, t_ms)
        return "n/a" if value is None else f"{100 * value:.0f} %"

    def ms(value) -> str:
        return "never" if value is None else f"{value:.0f} ms"

    stable = curve["stable_ms"]
    points = ", ".join(f"{pct(t)} at {t} ms" for t in (100, 300, 500, 1000))
    return (f"accuracy since onset ({name}, {curve['gestures_at_onset']} gestures): {points}; stable correct label "
            f"after {ms(stable['median'])} (median), {ms(stable['p95'])} (p95)")


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
    ]
    lines += [onset_summary(ONSET_NAMES.get(name, name), curve)
              for name, curve in report.get("accuracy_since_onset", {}).items()]
    lines += [f"confusion matrix: {report['confusion_png']}"]
    if report.get("onset_png"):
        lines.append(f"accuracy since onset: {report['onset_png']}")
    if report.get("wall_s") is not None:
        lines.append(f"{report['recording_s']:.1f} s of recording evaluated in {report['wall_s']:.0f} s")
    return "\n".join(lines)
