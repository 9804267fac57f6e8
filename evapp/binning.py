"""Fixed-count binning: the stream becomes frames of exactly N events, per-polarity counts at model resolution.

The sensor-to-model mapping (crop + downscale, or a user region) is a lookup table computed once and applied
while binning, so there is no extra pass over the events (DESIGN section 2). The binner is streaming: events
left over after the last full frame wait for the next batch, so no event is dropped or counted twice,
whatever the batch boundaries. Everything is vectorised: one table lookup per event and one ``bincount`` per
frame (``np.add.at``, which tonic uses, is 5-10x slower; event-io.md section 1.7).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evapp.errors import InputError
from evapp.events import SensorGeometry


@dataclass(frozen=True)
class Region:
    """A rectangle of the sensor, in sensor pixels: x, y of its top-left corner, width, height."""

    x: int
    y: int
    w: int
    h: int

    @classmethod
    def parse(cls, text: str) -> Region:
        try:
            x, y, w, h = (int(v) for v in text.split(","))
        except ValueError:
            raise InputError(f"Region '{text}' is not four integers x,y,w,h.") from None
        return cls(x, y, w, h)

    def __str__(self) -> str:
        return f"{self.x},{self.y},{self.w},{self.h}"


VIEWS = ("centre", "whole")


def default_region(geometry: SensorGeometry, view: str = "centre") -> Region:
    """The square a model sees of a sensor. ``centre``: the centred square of side min(width, height), a
    640x480 DVXplorer gives its central 480x480. ``whole``: the centred square of side max(width, height),
    letterboxed, so nothing at the sensor's edges is cut off (a 320x240 sensor gives 0,-40,320,320; the rows
    past the sensor stay empty). Both are the same square on a square sensor."""
    if view not in VIEWS:
        raise InputError(f"View '{view}' is not one of {', '.join(VIEWS)}.")
    side = (min if view == "centre" else max)(geometry.width, geometry.height)
    return Region((geometry.width - side) // 2, (geometry.height - side) // 2, side, side)


class SensorMapping:
    """Lookup tables from sensor pixel and polarity to a flat index into a ``[2, H, W]`` model frame.

    The key of an event is ``row_table[2 * y + p] + col_table[x]``: the row table holds ``(p * H + Y) * W`` and
    the column table ``X``; both hold a large sentinel outside the region, so one ``minimum`` sends every
    outside event to a trash bin just past the frame. The tables have 65536 entries indexed by int16, so any
    coordinate in a corrupt file (negative or past the sensor) also lands in the trash bin instead of
    raising or aliasing another pixel. Separable tables stay in L1 cache, which a 2*640*480 table does not.

    Inside the region, input column ``X = (x - region.x) * W // region.w`` (likewise for rows), so an integer
    ratio gives equal blocks of sensor pixels; a non-integer ratio such as 480 -> 128 (3.75) gives blocks of
    3 and 4 pixels in a fixed pattern, which ``--region`` with a multiple of the input size (e.g.
    ``128,48,384,384`` for 3x on a DVXplorer) avoids.
    """

    _OUTSIDE = 1 << 24

    def __init__(self, geometry: SensorGeometry, input_size: tuple[int, int] | int, region: Region | None = None):
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        self.geometry = geometry
        self.height, self.width = input_size
        self.region = region or default_region(geometry)
        r = self.region
        W, H = geometry.width, geometry.height
        if r.w <= 0 or r.h <= 0 or r.x >= W or r.y >= H or r.x + r.w <= 0 or r.y + r.h <= 0:
            raise InputError(f"Region {r} does not overlap the {W}x{H} sensor.")
        if r.w < self.width or r.h < self.height:
            raise InputError(f"Region {r} is smaller than the {self.width}x{self.height} model input.")
        self.bins = 2 * self.height * self.width  # the trash bin is index ``bins``
        # A region may reach past the sensor (the ``whole`` view's letterbox): only sensor pixels get entries.
        xs = np.arange(max(r.x, 0), min(r.x + r.w, W))
        self.col_table = np.full(1 << 16, self._OUTSIDE, dtype=np.intp)
        self.col_table[xs] = (xs - r.x) * self.width // r.w
        ys = np.arange(max(r.y, 0), min(r.y + r.h, H))
        rows = (ys - r.y) * self.height // r.h
        self.row_table = np.full(1 << 16, self._OUTSIDE, dtype=np.intp)
        self.row_table[2 * ys] = rows * self.width
        self.row_table[2 * ys + 1] = (rows + self.height) * self.width
        self.covers_sensor = r.x <= 0 and r.y <= 0 and r.x + r.w >= W and r.y + r.h >= H

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return (2, self.height, self.width)

    @property
    def pixels_per_input_px(self) -> float:
        """Sensor pixels gathered into one input pixel: 1 for a DVS128 at 128x128, 14.06 for 480x480 -> 128."""
        return self.region.w * self.region.h / (self.width * self.height)

    def keys(self, batch: np.ndarray) -> np.ndarray:
        """Flat frame index of every event (int32); ``bins`` (the trash bin) for events outside the region."""
        row_index = batch["y"] * np.int16(2)
        row_index += batch["polarity"]
        keys = self.row_table.take(row_index)
        keys += self.col_table.take(batch["x"])
        np.minimum(keys, self.bins, out=keys)
        return keys


def thinning_keep_fraction(mapping: SensorMapping, reference_px_per_input_px: float | None) -> float:
    """Fraction of inside events to keep so a sensor with ``mapping`` makes frames with the density of a
    training sensor of ``reference_px_per_input_px`` (None: no reference, keep all; never more than all)."""
    if reference_px_per_input_px is None:
        return 1.0
    return min(1.0, reference_px_per_input_px / mapping.pixels_per_input_px)


FRAMING_MODES = ("count", "clip")


@dataclass(frozen=True)
class FrameSpec:
    """How events become a model's frames: THE frame contract (DESIGN section 2), one type for training,
    evaluation, the model artifact, the engine, the binner and the pipeline.

    ``input_size`` is (height, width) of the model input; ``events_per_frame`` is N at that resolution;
    ``mode`` is ``count`` (fixed N events per frame, as live) or ``clip`` (the papers' framing, SpikingJelly's
    ``split_by='number'``: each labelled gesture split into T equal-count frames, for training and clip
    evaluation; a stream, whose gestures' ends are not known in advance, is framed by count with N);
    ``reference_px_per_input_px`` is the training sensor's density in sensor pixels per input pixel, to which a
    denser sensor is thinned (None: no reference, keep every event). ``binned_size`` (None for evapp's own
    models: events are counted straight into input pixels, block sums): count at this size, then resize to
    ``input_size`` bilinearly with antialiasing, as SpikingResformer's official input pipeline does
    (torchvision ``Resize(64, antialias=True)`` on 128x128 count frames). ``view`` is the region of a sensor
    the input shows when no ``--region`` is given (:func:`default_region`): ``centre`` for every model trained on
    square sensors, ``whole`` where fine-tuning on a wide sensor found gestures reaching past its centred square.
    """

    input_size: tuple[int, int]
    events_per_frame: int
    mode: str = "count"
    reference_px_per_input_px: float | None = None
    binned_size: tuple[int, int] | None = None
    view: str = "centre"

    def __post_init__(self) -> None:
        size = self.input_size
        size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        object.__setattr__(self, "input_size", size)
        object.__setattr__(self, "events_per_frame", int(self.events_per_frame))
        if self.mode not in FRAMING_MODES:
            raise ValueError(f"framing mode must be one of {', '.join(FRAMING_MODES)}, not {self.mode!r}")
        if self.binned_size is not None:
            object.__setattr__(self, "binned_size", (int(self.binned_size[0]), int(self.binned_size[1])))
        if self.view not in VIEWS:
            raise ValueError(f"view must be one of {', '.join(VIEWS)}, not {self.view!r}")

    def region(self, geometry: SensorGeometry) -> Region:
        """The sensor region this spec maps onto the input when no region is given: its ``view`` of the sensor."""
        return default_region(geometry, self.view)

    def mapping(self, geometry: SensorGeometry, region: Region | None = None) -> SensorMapping:
        """Sensor pixels to the pixels events are counted in (``binned_size`` where set, else the input)."""
        return SensorMapping(geometry, self.binned_size or self.input_size, region or self.region(geometry))

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """The frames the model takes: ``[2, H, W]``."""
        return (2, *self.input_size)

    def resize(self, counts: np.ndarray) -> np.ndarray:
        """Count frames ``[k, 2, h, w]`` at the binned size -> the input size (unchanged without ``binned_size``)."""
        if self.binned_size is None or tuple(counts.shape[-2:]) == self.input_size:
            return counts
        if counts.shape[0] == 0:
            return np.zeros((0, *self.frame_shape), np.float32)
        import torch
        import torch.nn.functional as F

        with torch.no_grad():
            out = F.interpolate(torch.from_numpy(np.ascontiguousarray(counts, np.float32)), size=self.input_size,
                                mode="bilinear", align_corners=False, antialias=True)
        return out.numpy()

    def binner(self, geometry: SensorGeometry, region: Region | None = None) -> FixedCountBinner:
        """The live binner for this spec on a sensor: its mapping and the thinning to the training density."""
        mapping = self.mapping(geometry, region)
        return FixedCountBinner(self.events_per_frame, mapping,
                                thinning_keep_fraction(mapping, self.reference_px_per_input_px),
                                resize=(self.resize, self.frame_shape) if self.binned_size else None)

    def to_dict(self) -> dict:
        out = {"input_size": list(self.input_size), "events_per_frame": self.events_per_frame,
               "framing": self.mode, "reference_px_per_input_px": self.reference_px_per_input_px}
        if self.binned_size is not None:
            out["binned_size"] = list(self.binned_size)
        if self.view != "centre":
            out["view"] = self.view
        return out


@dataclass
class Frames:
    """Frames completed by one ``push``: counts ``[k, 2, H, W]`` float32 and each frame's last-event time."""

    counts: np.ndarray
    t_end_us: np.ndarray

    def __len__(self) -> int:
        return self.counts.shape[0]


class FixedCountBinner:
    """Streaming fixed-count binner: every frame holds exactly ``events_per_frame`` events inside the region.

    Outside events stay in the key stream, routed to the trash bin, rather than being compressed out: a
    cumulative count of inside events finds the frame boundaries, which is cheaper than copying the batch.
    Large batches are processed in cache-sized chunks.
    """

    CHUNK = 65536

    def __init__(self, events_per_frame: int, mapping: SensorMapping, keep_fraction: float = 1.0,
                 resize: tuple | None = None):
        if events_per_frame <= 0:
            raise InputError(f"Events per frame must be a positive integer, not {events_per_frame}.")
        if not 0 < keep_fraction <= 1:
            raise InputError(f"The fraction of events kept must lie in (0, 1], not {keep_fraction}.")
        self.n = int(events_per_frame)
        self.mapping = mapping
        # (function, frame shape): counts [k, 2, h, w] -> the model's input (FrameSpec.resize), or None
        self.resize, self.frame_shape = resize if resize is not None else (None, mapping.frame_shape)
        # Cross-sensor thinning (DESIGN section 2): keep every (1/keep_fraction)-th inside event, evenly spaced
        # over the stream, so a sensor with more pixels per input pixel than the training sensor makes frames
        # with the training sensor's event density. Deterministic: the same stream gives the same frames.
        self.keep_fraction = float(keep_fraction)
        self._inside_seen = 0  # inside events seen before thinning, the thinning phase
        self.events_thinned = 0
        self._pending_keys: list[np.ndarray] = []  # keys of the partial frame (may include trash)
        self.pending = 0  # inside events waiting for the next frame
        self.events_in = 0  # every event pushed
        self.events_outside = 0  # events outside the region (never part of a frame)
        self.events_discarded = 0  # inside events of partial frames dropped by reset()
        self.frames_out = 0

    def continue_from(self, previous: FixedCountBinner) -> FixedCountBinner:
        """Take over the stream's accounting from the binner this one replaces (new N, region or model), so
        the counters still account for every event; the previous binner's partial frame counts as outside."""
        self.events_in, self.frames_out = previous.events_in, previous.frames_out
        self.events_outside = previous.events_outside + previous.leftover
        self.events_thinned = previous.events_thinned
        self.events_discarded = previous.events_discarded
        return self

    def reset(self) -> None:
        """Forget the partial frame (after a seek, so that a frame never spans the jump).

        Its inside events are counted in ``events_discarded``; its outside and thinned events were counted
        when they were pushed."""
        self.events_discarded += self.pending
        self._pending_keys, self.pending = [], 0

    @property
    def leftover(self) -> int:
        """Events inside the region that wait for the next frame."""
        return self.pending

    def push(self, batch: np.ndarray) -> Frames:
        """Bin a batch; returns the frames it completed (possibly none)."""
        frames, ends = [], []
        for start in range(0, batch.shape[0], self.CHUNK):
            self._push_chunk(batch[start : start + self.CHUNK], frames, ends)
        shape = self.mapping.frame_shape
        if not frames:
            return Frames(np.zeros((0, *self.frame_shape), np.float32), np.zeros(0, np.int64))
        counts = np.concatenate(frames) if len(frames) > 1 else frames[0]
        counts = counts.reshape(-1, *shape)
        return Frames(counts if self.resize is None else self.resize(counts), np.concatenate(ends))

    def _push_chunk(self, chunk: np.ndarray, frames: list, ends: list) -> None:
        m = self.mapping
        self.events_in += chunk.shape[0]
        keys = m.keys(chunk)
        thinning = self.keep_fraction < 1.0
        if m.covers_sensor and not thinning:
            inside_count = keys.shape[0]
        else:
            inside = keys < m.bins
            inside_count = int(np.count_nonzero(inside))
            self.events_outside += keys.shape[0] - inside_count
            if thinning:
                inside, inside_count = self._thin(keys, inside, inside_count)
        if self.pending + inside_count < self.n:
            self._pending_keys.append(keys)
            self.pending += inside_count
            return
        # Position (in this chunk) of the last event of each frame completed here.
        k = (self.pending + inside_count) // self.n
        targets = np.arange(1, k + 1) * self.n - self.pending  # inside events needed from this chunk
        if m.covers_sensor and not thinning:
            cut = targets
        else:
            cut = np.searchsorted(np.cumsum(inside, dtype=np.int32), targets) + 1
        counts = np.empty((k, m.bins), np.float32)
        start = 0
        for j in range(k):
            part = keys[start : cut[j]]
            if j == 0 and self._pending_keys:
                part = np.concatenate([*self._pending_keys, part])
            counts[j] = np.bincount(part, minlength=m.bins + 1)[: m.bins]
            start = cut[j]
        frames.append(counts)
        ends.append(chunk["timestamp"][cut - 1].astype(np.int64))
        rest = keys[start:]
        self._pending_keys = [rest] if rest.shape[0] else []
        self.pending = self.pending + inside_count - k * self.n
        self.frames_out += k

    def _thin(self, keys: np.ndarray, inside: np.ndarray, inside_count: int) -> tuple[np.ndarray, int]:
        """Send all but an evenly spaced ``keep_fraction`` of the inside events to the trash bin (in place)."""
        position = np.cumsum(inside, dtype=np.int64)
        position += self._inside_seen  # 1-based index of each inside event in the whole stream
        keep = np.floor(position * self.keep_fraction) > np.floor((position - 1) * self.keep_fraction)
        keep &= inside
        kept = int(np.count_nonzero(keep))
        keys[inside & ~keep] = self.mapping.bins
        self._inside_seen += inside_count
        self.events_thinned += inside_count - kept
        return keep, kept
