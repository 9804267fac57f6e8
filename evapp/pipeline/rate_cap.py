"""The event-rate cap before binning: where frames may drop (live, the window), a scene that moves everywhere
must not make the answers late, so events beyond what the model can take are thinned away evenly and counted."""

from __future__ import annotations

import numpy as np


class RateCap:
    """``max_rate`` None: the cap follows the model's measured capacity at one row per frame; 0: off; else a fixed
    number of events per second of stream."""

    MARGIN = 0.9  # of the capacity: below saturation, so the frame queue stays short
    SMOOTHING = 0.2  # weight of a new feed time in the running mean

    def __init__(self, max_rate: float | None = None):
        self.max_rate = max_rate
        self.dropped = 0  # events thinned away
        self.kept = 1.0  # fraction kept at the last batch
        self._seen = 0
        self._feed_ms_per_row: float | None = None

    @property
    def active(self) -> bool:
        return self.max_rate != 0

    def note_feed(self, feed_ms: float, rows: int) -> None:
        """One engine feed took ``feed_ms`` for ``rows`` batch rows (the inference thread)."""
        per_row = feed_ms / max(rows, 1)
        mean = self._feed_ms_per_row
        self._feed_ms_per_row = per_row if mean is None else mean + self.SMOOTHING * (per_row - mean)

    def keep_fraction(self, raw_rate: float, binner, has_model: bool) -> float:
        """Fraction of the incoming events to keep: the user's events/s, or the frames per second the model can
        take against the frames per second this stream would make (after region and training-density thinning)."""
        if not self.active or raw_rate <= 0:
            return 1.0
        if self.max_rate:
            return min(1.0, self.max_rate / raw_rate)
        ms = self._feed_ms_per_row
        if ms is None or not has_model or binner.events_in == 0:
            return 1.0
        kept = (binner.events_in - binner.events_outside - binner.events_thinned) / binner.events_in
        wanted_fps = raw_rate * kept / binner.n
        return min(1.0, self.MARGIN * 1e3 / ms / wanted_fps) if wanted_fps > 0 else 1.0

    def apply(self, batch: np.ndarray, keep: float) -> np.ndarray:
        """Keep every event whose running position crosses a multiple of 1/keep: spread evenly over the stream."""
        self.kept = keep
        if keep >= 1.0:
            return batch
        position = np.arange(self._seen + 1, self._seen + batch.shape[0] + 1)
        mask = np.floor(position * keep) > np.floor((position - 1) * keep)
        self._seen += batch.shape[0]
        self.dropped += int(batch.shape[0] - np.count_nonzero(mask))
        return batch[mask]
