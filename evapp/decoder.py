"""The decoder stage between engine and sinks: from raw per-answer probabilities to a steady label.

Raw answers flicker: a window that straddles two gestures, a pause, a noisy frame. The decoder smooths the
probability vectors over the last few answers, names a gesture only when the smoothed confidence passes a
threshold, says "idle" when the scene is quiet (few frames per second: frames hold a fixed number of events,
so a slow frame rate means little motion), and switches from one gesture to another only after the new one
has led for ``hold`` consecutive answers (hysteresis). Its settings live in the model artifact and can be
overridden on the command line.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, fields

import numpy as np

IDLE = -1


@dataclass
class DecoderSettings:
    smoothing: int = 3  # answers averaged (1 = no smoothing)
    threshold: float = 0.5  # smoothed confidence needed to name a gesture
    hold: int = 2  # consecutive answers a new gesture must lead before the label switches
    idle_below_fps: float = 0.0  # frames per second below which the scene counts as idle (0 = never idle)

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
        self._label = IDLE
        self._candidate = IDLE
        self._candidate_run = 0

    def update(self, t_us: int, probs: np.ndarray, fps: float | None = None) -> Decision:
        """Feed one engine answer (probabilities at stream time ``t_us``, current frames per second)."""
        s = self.settings
        probs = np.asarray(probs, dtype=np.float64)
        self._recent.append(probs)
        smooth = np.mean(self._recent, axis=0)
        top = int(np.argmax(smooth))
        confidence = float(smooth[top])
        if fps is not None and fps < s.idle_below_fps:
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
