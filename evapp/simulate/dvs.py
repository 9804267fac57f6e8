"""A DVS pixel model: intensity frames rendered at a high rate become address events.

Each pixel keeps a memorised log intensity (its reference) and emits an ON (OFF) event each time the
current log intensity rises (falls) one contrast threshold above (below) it, moving the reference by that
threshold (Lichtsteiner, Posch and Delbruck, "A 128x128 120 dB 15 us latency asynchronous temporal contrast
vision sensor", IEEE JSSC 2008). Non-idealities follow the magnitudes used by v2e (Hu, Liu, Delbruck,
"v2e: From video frames to realistic DVS events", CVPR Workshops 2021): thresholds around 0.2-0.3 with
Gaussian pixel-to-pixel mismatch sigma about 0.03, a refractory period, background-activity noise of about
0.1-1 Hz per pixel, and a few hot pixels.

Between two rendered frames the log intensity is taken to change linearly, so the k-th threshold crossing
of a pixel gets the time at which the line reaches that level (several events per frame interval when the
change spans several thresholds). Events that fall inside the refractory period after a pixel's previous
event are dropped (the reference still moves, so the change is lost, as in a pixel held in reset).

Everything is vectorised over pixels; the only Python loop is one iteration per rendered frame, and it only
touches pixels whose rendered value changed since the previous frame (static background costs nothing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evapp.events import EVENT_DTYPE


@dataclass(frozen=True)
class DvsParams:
    threshold_on: float = 0.2  # log-intensity contrast thresholds (nominal)
    threshold_off: float = 0.2
    threshold_sigma: float = 0.03  # pixel-to-pixel mismatch (Gaussian sigma)
    refractory_us: int = 300
    noise_rate_hz: float = 0.1  # background activity per pixel (Poisson), half ON / half OFF
    hot_pixel_fraction: float = 1.5e-4  # share of pixels that are hot (at least one when > 0)
    hot_pixel_rate_hz: tuple[float, float] = (5.0, 50.0)
    log_eps: float = 4.0  # dark offset on the 0-255 scale: L = log(I + eps)
    flicker_amplitude: float = 0.0  # relative lighting modulation (0 = off)
    flicker_hz: float = 100.0


class DvsPixelArray:
    """Per-pixel state of a region of a DVS sensor; feed it frames in time order with :meth:`step`."""

    def __init__(self, width: int, height: int, params: DvsParams, rng: np.random.Generator):
        self.width, self.height, self.params = width, height, params
        n = width * height
        lo = 0.05
        self.th_on = np.maximum(rng.normal(params.threshold_on, params.threshold_sigma, n), lo).astype(np.float32)
        self.th_off = np.maximum(rng.normal(params.threshold_off, params.threshold_sigma, n), lo).astype(np.float32)
        self.th = np.stack([self.th_on, self.th_off], axis=1)  # [:, 0] ON, [:, 1] OFF
        self._all = np.arange(n)
        self._init_offset = rng.uniform(0.0, 1.0, n).astype(np.float32)
        self.lut = np.log(np.arange(256, dtype=np.float64) + params.log_eps).astype(np.float32)
        self.ref: np.ndarray | None = None
        self.prev_frame: np.ndarray | None = None
        self.prev_log: np.ndarray | None = None
        self.last_t = np.full(n, np.iinfo(np.int64).min // 2, dtype=np.int64)
        self.t_prev = 0
        self._chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._offset_range: tuple[float, float] | None = None
        self._offset_prev = 0.0
        self._excitable: np.ndarray | None = None

    def reset(self, frame: np.ndarray, t_us: int, log_offset: float = 0.0) -> None:
        """Start from ``frame`` (uint8) at ``t_us``; references sit at random points inside their dead band."""
        flat = frame.reshape(-1)
        log = self.lut[flat] + np.float32(log_offset)
        # log - ref uniformly inside (-th_off, th_on): pixels do not all fire at the first change.
        self.ref = log - (self._init_offset * (self.th_on + self.th_off) - self.th_off)
        self.prev_log = log
        self.prev_frame = flat.copy()
        self.t_prev = int(t_us)
        self._offset_prev = float(log_offset)
        if self._offset_range is not None:
            self._excitable = self._can_fire(self._all, flat)

    def set_offset_range(self, lo: float, hi: float) -> None:
        """Promise that every later global ``log_offset`` lies in ``[lo, hi]`` (a flickering lamp).

        :meth:`step` with an offset then only visits the pixels whose frame value changed or that can reach a
        threshold somewhere in that range from their reference; the others cannot fire, and their reference
        does not move, so skipping them changes no event (it saves most of the work when the flicker swing is
        below most pixels' thresholds)."""
        self._offset_range = (float(lo), float(hi))
        if self.ref is not None:
            self._excitable = self._can_fire(self._all, self.prev_frame)

    def _can_fire(self, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
        lo, hi = self._offset_range
        base = self.lut[values] - self.ref[rows]  # values: the frame's values at ``rows``
        margin = np.float32(1e-4)  # float32 rounding: err towards visiting a pixel
        return (base + np.float32(hi) >= self.th_on[rows] - margin) | (
            base + np.float32(lo) <= margin - self.th_off[rows])

    def step(self, frame: np.ndarray, t_us: int, log_offset: float | None = None) -> None:
        """Advance to ``frame`` rendered at ``t_us``; events go to an internal buffer (see :meth:`take`)."""
        flat = frame.reshape(-1)
        t_us = int(t_us)
        if log_offset is None:
            changed = np.flatnonzero(flat != self.prev_frame)
            cur = self.lut[flat[changed]]
        elif self._excitable is not None:  # flicker within a promised range: changed or excitable pixels only
            changed = np.flatnonzero((flat != self.prev_frame) | self._excitable)
            self.prev_log[changed] = self.lut[self.prev_frame[changed]] + np.float32(self._offset_prev)
            cur = self.lut[flat[changed]] + np.float32(log_offset)
        else:  # global lighting change: every pixel moves
            changed = None
            cur = self.lut[flat] + np.float32(log_offset)
        self._fire(changed, cur, t_us)
        if log_offset is not None:
            self._offset_prev = float(log_offset)
        if changed is None:
            self.prev_log = cur
            self.prev_frame[:] = flat
        else:
            self.prev_log[changed] = cur
            self.prev_frame[changed] = flat[changed]
            if log_offset is not None:  # the references of the visited pixels moved: can they fire again?
                self._excitable[changed] = self._can_fire(changed, flat[changed])
        self.t_prev = t_us

    def _fire(self, changed: np.ndarray | None, cur: np.ndarray, t_us: int) -> None:
        sel = slice(None) if changed is None else changed
        d = cur - self.ref[sel]
        neg = d < 0
        rows = self._all if changed is None else changed
        th = self.th[rows, neg.view(np.int8)]  # per-pixel ON or OFF threshold, whichever way it moved
        n = np.floor(np.abs(d) / th)
        act = np.flatnonzero(n >= 1)
        if act.size == 0:
            return
        idx = act if changed is None else changed[act]
        n, th, on = n[act], th[act], ~neg[act]
        sgn = np.where(on, np.float32(1), np.float32(-1))
        ref_old = self.ref[idx]
        self.ref[idx] = ref_old + sgn * n * th
        lp = self.prev_log[idx]
        dl = np.maximum(np.abs(cur[act] - lp), np.float32(1e-6))
        dt = np.float32(t_us - self.t_prev)
        # Times (µs after the previous frame) of the first crossing and spacing of the next ones.
        t1 = np.clip(sgn * (ref_old - lp) + th, 0, dl) * (dt / dl)
        spacing = th * (dt / dl)
        refr = self.params.refractory_us
        rel_last = (self.last_t[idx] - self.t_prev).astype(np.float32)
        n = n.astype(np.int64)
        if refr > 0:
            # First crossing outside the refractory period, then every k-th (k crossings per refractory period).
            j0 = np.maximum(np.ceil((rel_last + np.float32(refr) - t1) / spacing), 0).astype(np.int64)
            k = np.maximum(np.ceil(np.float32(refr) / spacing), 1).astype(np.int64)
            count = np.where(j0 < n, (n - 1 - j0) // k + 1, 0)
        else:
            j0, k, count = np.zeros_like(n), np.ones_like(n), n
        if count.shape[0] and count.max() == 1 and count.min() == 1:  # common case: one event per pixel
            rel = t1 + j0 * spacing
            tt = self.t_prev + np.minimum(np.ceil(rel).astype(np.int64), t_us - self.t_prev)
            self.last_t[idx] = tt
            self._chunks.append((tt, idx, on))
            return
        keep = count > 0
        if not keep.any():
            return
        idx, count, j0, k = idx[keep], count[keep], j0[keep], k[keep]
        t1, spacing, on = t1[keep], spacing[keep], on[keep]
        rep = np.repeat(np.arange(idx.shape[0]), count)
        starts = np.cumsum(count) - count
        j = j0[rep] + (np.arange(rep.shape[0]) - starts[rep]) * k[rep]
        span = t_us - self.t_prev
        t = self.t_prev + np.minimum(np.ceil(t1[rep] + j * spacing[rep]).astype(np.int64), span)
        last_j = j0 + (count - 1) * k
        self.last_t[idx] = self.t_prev + np.minimum(np.ceil(t1 + last_j * spacing).astype(np.int64), span)
        self._chunks.append((t, idx[rep], on[rep]))

    def take(self, x0: int = 0, y0: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Events emitted so far (t, x, y, polarity), unsorted, offset by the region's origin; clears them."""
        if not self._chunks:
            z = np.zeros(0, np.int64)
            return z, z.astype(np.int16), z.astype(np.int16), z.astype(np.int8)
        t = np.concatenate([c[0] for c in self._chunks])
        flat = np.concatenate([c[1] for c in self._chunks])
        p = np.concatenate([c[2] for c in self._chunks]).astype(np.int8)
        self._chunks = []
        y, x = np.divmod(flat, self.width)
        return t, (x + x0).astype(np.int16), (y + y0).astype(np.int16), p


def hot_pixels(npx: int, params: DvsParams, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A sensor's hot pixels: (flat indices, rates in Hz, the polarity each fires mostly); none when the
    fraction is 0, else at least one."""
    if params.hot_pixel_fraction <= 0:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool)
    n_hot = max(1, int(round(params.hot_pixel_fraction * npx)))
    hot = rng.choice(npx, n_hot, replace=False)
    rates = rng.uniform(*params.hot_pixel_rate_hz, n_hot)
    return hot, rates, rng.uniform(0.0, 1.0, n_hot) < 0.5


def noise_events(width: int, height: int, t_start: int, t_end: int, params: DvsParams,
                 rng: np.random.Generator, hot: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Background-activity noise (Poisson per pixel) plus a few hot pixels over [t_start, t_end) µs.

    The hot pixels are drawn from ``rng`` after the noise unless ``hot`` (from :func:`hot_pixels`) gives
    them: a stream rendered in chunks passes the same ``hot`` to every chunk."""
    dur = max(0, int(t_end) - int(t_start))
    npx = width * height
    n = int(rng.poisson(params.noise_rate_hz * npx * dur * 1e-6))
    t = rng.integers(t_start, max(t_end, t_start + 1), n, dtype=np.int64)
    flat = rng.integers(0, npx, n)
    p = rng.integers(0, 2, n).astype(np.int8)
    if params.hot_pixel_fraction > 0:
        # each hot pixel fires mostly one polarity (bias)
        hot, rates, bias = hot_pixels(npx, params, rng) if hot is None else hot
        n_hot = hot.shape[0]
        counts = rng.poisson(rates * dur * 1e-6)
        hp = np.repeat(np.arange(n_hot), counts)
        ht = rng.integers(t_start, max(t_end, t_start + 1), hp.shape[0], dtype=np.int64)
        hpol = np.where(rng.uniform(0, 1, hp.shape[0]) < 0.9, bias[hp], ~bias[hp]).astype(np.int8)
        t, flat, p = np.concatenate([t, ht]), np.concatenate([flat, hot[hp]]), np.concatenate([p, hpol])
    y, x = np.divmod(flat, width)
    return t, x.astype(np.int16), y.astype(np.int16), p


def pack_sorted(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
    """Concatenate (t, x, y, p) parts into one time-sorted event array (stable: ties keep their order)."""
    t = np.concatenate([q[0] for q in parts])
    order = np.argsort(t, kind="stable")
    out = np.empty(t.shape[0], dtype=EVENT_DTYPE)
    out["timestamp"] = t[order]
    out["x"] = np.concatenate([q[1] for q in parts])[order]
    out["y"] = np.concatenate([q[2] for q in parts])[order]
    out["polarity"] = np.concatenate([q[3] for q in parts])[order]
    return out
