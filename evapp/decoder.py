"""The decoder stage between engine and sinks: from raw per-answer probabilities to a steady label.

Raw answers flicker: a window that straddles two gestures, a pause, a noisy frame. The decoder smooths the
probability vectors over the last few answers, names a gesture only when the smoothed confidence passes a
threshold, says "idle" when the scene is quiet (few frames per second: frames hold a fixed number of events,
so a slow frame rate means little motion; see ``motion_rates``; the threshold follows the stream's own motion
floor down, see ``MotionFloor``), and switches from one gesture to another
only after the new one has led for ``hold`` consecutive answers (hysteresis). Its settings live in the model
artifact and can be overridden on the command line.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, fields
from typing import ClassVar

import numpy as np

IDLE = -1

# The motion rate is measured over the last few frame intervals, not over a fixed second of stream time: a
# one-second count kept a gesture "idle" for its first frames and smeared its end into the pause after it; two
# intervals react within two frames and still average out a single early frame (docs/decisions.md, motion rate).
MOTION_INTERVALS = 2


def motion_rates(frame_end_us, intervals: int = MOTION_INTERVALS) -> np.ndarray:
    """Frames per second at each frame of a stream, over the last ``intervals`` frame intervals (fewer at the
    start; 0 for the first frame). ``frame_end_us``: the frames' end times, ascending."""
    t = np.asarray(frame_end_us, dtype=np.int64)
    index = np.arange(t.shape[0])
    back = np.maximum(index - intervals, 0)
    n = index - back
    return np.where(n > 0, n * 1e6 / np.maximum(t - t[back], 1), 0.0)


class MotionRate:
    """``motion_rates`` one frame at a time, as the pipeline sees them."""

    def __init__(self, intervals: int = MOTION_INTERVALS):
        self._recent: deque[int] = deque(maxlen=intervals + 1)

    def reset(self) -> None:
        self._recent.clear()

    def update(self, t_end_us: int) -> float:
        if self._recent and t_end_us < self._recent[-1]:  # a seek backwards starts a new stream
            self.reset()
        self._recent.append(int(t_end_us))
        return float(motion_rates(self._recent, self._recent.maxlen - 1)[-1])


def time_weighted_quantile(values, weights, q: float) -> float:
    """The value below which a fraction ``q`` of the total weight lies (weights: the time each value lasted)."""
    values, weights = np.asarray(values, dtype=np.float64), np.asarray(weights, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    if cumulative.shape[0] == 0 or cumulative[-1] <= 0:
        return float("nan")
    return float(values[order][min(np.searchsorted(cumulative, q * cumulative[-1]), order.shape[0] - 1)])


# The stream's motion floor: the motion rate that the quietest tenth of the last minute stays below (weighted by
# time, not by frame: a gesture makes ten times the frames of a pause, so a per-frame quantile would be a gesture's
# rate). A quiet scene sets it: sensor noise and residual motion, which differ between sensors and settings. The
# idle threshold is calibrated on the training sensor; on a stream whose floor is lower than the training
# streams' (a larger sensor thinned to the training density, a low-noise camera), the same absolute threshold
# calls slow gestures idle. Scaling only ever lowers the threshold. Chosen on the synthetic tuning recordings,
# never on the demo (docs/decisions.md, motion floor).
FLOOR_QUANTILE = 0.1
FLOOR_HORIZON_S = 60.0
FLOOR_WARMUP_S = 5.0  # before this much of the stream has been seen, the absolute threshold holds


class MotionFloor:
    """The stream's motion floor (``FLOOR_QUANTILE`` of the motion rate over the last ``FLOOR_HORIZON_S``, time
    weighted), from the rate at each answer and the time since the previous one."""

    def __init__(self):
        self._samples: deque[tuple[int, float, float]] = deque()  # (t_us, rate, weight_us)
        self._first_us: int | None = None

    def reset(self) -> None:
        self._samples.clear()
        self._first_us = None

    def update(self, t_us: int, fps: float) -> None:
        if self._samples and t_us < self._samples[-1][0]:  # a seek backwards starts a new stream
            self.reset()
        if self._first_us is None:
            self._first_us = t_us
        weight = t_us - self._samples[-1][0] if self._samples else 0
        self._samples.append((t_us, fps, weight))
        while self._samples[0][0] <= t_us - FLOOR_HORIZON_S * 1e6:
            self._samples.popleft()

    def floor(self) -> float | None:
        """The floor in frames/s, or None while less than ``FLOOR_WARMUP_S`` of the stream has been seen."""
        if self._first_us is None or self._samples[-1][0] - self._first_us < FLOOR_WARMUP_S * 1e6:
            return None
        _, rates, weights = zip(*self._samples, strict=True)
        return time_weighted_quantile(rates, weights, FLOOR_QUANTILE)


# Defaults chosen on two synthetic tuning recordings, never on the demo (docs/decisions.md, decoder defaults).
@dataclass
class DecoderSettings:
    smoothing: int = 2  # answers averaged (1 = no smoothing)
    threshold: float = 0.3  # smoothed confidence needed to name a gesture
    hold: int = 1  # consecutive answers a new gesture must lead before the label switches
    idle_below_fps: float = 0.0  # frames per second below which the scene counts as idle (0 = never idle)
    # the training streams' motion floor (``MotionFloor``); a stream with a lower floor scales the idle threshold
    # down by the ratio (0 = the absolute threshold everywhere)
    idle_floor_fps: float = 0.0

    # what a model's stored settings may hold (the same ranges as the command-line options)
    BOUNDS: ClassVar[dict] = {"smoothing": (int, 1, 10_000), "threshold": (float, 0.0, 1.0), "hold": (int, 1, 10_000),
                              "idle_below_fps": (float, 0.0, 1e6), "idle_floor_fps": (float, 0.0, 1e6)}

    @classmethod
    def problem(cls, data) -> str | None:
        """What is wrong with a model's stored decoder settings, in words; None when they are usable."""
        if not isinstance(data, dict):
            return f"decoder settings are a JSON {type(data).__name__}, not an object"
        for name, value in data.items():
            if name not in cls.BOUNDS:
                continue
            kind, low, high = cls.BOUNDS[name]
            number = isinstance(value, int) if kind is int else isinstance(value, int | float)
            if isinstance(value, bool) or not number or not low <= value <= high:  # NaN fails the range too
                return f"decoder {name} {value!r} is not a {'whole ' if kind is int else ''}number in {low:g}..{high:g}"
        return None

    @classmethod
    def from_dict(cls, data: dict | None) -> DecoderSettings:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in names})

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Decision:
    t_us: int
    class_id: int  # IDLE (-1) when no gesture is named
    confidence: float
    probs: np.ndarray  # smoothed probabilities
    raw_class_id: int  # the engine's own top class for this answer


class Decoder:
    def __init__(self, settings: DecoderSettings | None = None):
        self.settings = settings or DecoderSettings()
        self.reset()

    def reset(self) -> None:
        self._recent: deque[np.ndarray] = deque(maxlen=max(1, int(self.settings.smoothing)))
        self._floor = MotionFloor()
        self._label = IDLE
        self._candidate = IDLE
        self._candidate_run = 0

    @property
    def label(self) -> int:
        """The class on show (IDLE when none)."""
        return self._label

    @property
    def answers_held(self) -> int:
        """Answers held for smoothing (0 right after a reset)."""
        return len(self._recent)

    def idle_threshold(self) -> float:
        """Frames/s below which the scene is idle now: the setting, scaled down on a stream whose motion floor
        lies below the training streams' (``MotionFloor``)."""
        s = self.settings
        floor = self._floor.floor() if s.idle_floor_fps > 0 else None
        if floor is None or not floor < s.idle_floor_fps:
            return s.idle_below_fps
        return s.idle_below_fps * floor / s.idle_floor_fps

    def update(self, t_us: int, probs: np.ndarray, fps: float | None = None) -> Decision:
        """Feed one engine answer (probabilities at stream time ``t_us``, current frames per second)."""
        s = self.settings
        probs = np.asarray(probs, dtype=np.float64)
        self._recent.append(probs)
        smooth = np.mean(self._recent, axis=0)
        top = int(np.argmax(smooth))
        confidence = float(smooth[top])
        if fps is not None and s.idle_floor_fps > 0:  # the floor is tracked only where it is used
            self._floor.update(t_us, fps)
        # the floor only ever lowers the threshold: it is looked up only when the rate is below the setting
        if fps is not None and fps < s.idle_below_fps and fps < self.idle_threshold():
            wanted = IDLE
        elif confidence >= s.threshold:
            wanted = top
        else:
            wanted = self._label if self._label != IDLE and smooth[self._label] >= s.threshold / 2 else IDLE
        if wanted == self._label:
            self._candidate, self._candidate_run = IDLE, 0
        else:
            self._candidate_run = self._candidate_run + 1 if wanted == self._candidate else 1
            self._candidate = wanted
            if self._candidate_run >= max(1, int(s.hold)):
                self._label, self._candidate, self._candidate_run = wanted, IDLE, 0
        shown = float(smooth[self._label]) if self._label != IDLE else confidence
        return Decision(t_us, self._label, shown, smooth, int(np.argmax(probs)))
