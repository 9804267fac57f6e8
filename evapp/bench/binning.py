"""Binning benchmark: our streaming fixed-count binner vs tonic's ``ToFrame(event_count=N)``.

Both run single-threaded on the same uniformly random events (the worst case for cache locality; real
gesture events are clustered). Tonic's ToFrame bins the whole array in one call; ours is fed in batches as a
live source would feed it, and at 640x480 it also applies the crop-and-downscale to 128x128 that tonic
would need a separate ``CenterCrop`` + ``Downsample`` pass for (tonic is given the already-mapped events,
so its time excludes the mapping).
"""

from __future__ import annotations

import time

import numpy as np

from evapp.binning import FixedCountBinner, SensorMapping
from evapp.events import SensorGeometry
from evapp.tables import format_rows
from evapp.testing import random_stream

CASES = [((128, 128), 5000), ((128, 128), 20000), ((640, 480), 5000), ((640, 480), 20000)]


def _time_ours(events: np.ndarray, mapping: SensorMapping, n: int, batch: int, repeats: int = 2) -> float:
    best = float("inf")
    for _ in range(repeats):
        binner = FixedCountBinner(n, mapping)
        t0 = time.perf_counter()
        for start in range(0, events.shape[0], batch):
            binner.push(events[start : start + batch])
        best = min(best, time.perf_counter() - t0)
    return best


def _time_tonic(events: np.ndarray, mapping: SensorMapping, n: int) -> float:
    import tonic.transforms as T

    keys = mapping.keys(events)
    inside = keys < mapping.bins
    keys = keys[inside]
    pixels = mapping.height * mapping.width
    tonic_events = np.empty(keys.shape[0], dtype=[("x", "<i2"), ("y", "<i2"), ("p", "?"), ("t", "<i8")])
    tonic_events["p"] = keys >= pixels
    tonic_events["y"] = (keys % pixels) // mapping.width
    tonic_events["x"] = keys % mapping.width
    tonic_events["t"] = events["timestamp"][inside]
    to_frame = T.ToFrame(sensor_size=(mapping.width, mapping.height, 2), event_count=n)
    t0 = time.perf_counter()
    to_frame(tonic_events)
    return time.perf_counter() - t0


def bench_binning(n_events: int = 10_000_000, batch: int = 100_000, with_tonic: bool = True) -> list[dict]:
    """One row per case; both binners are single-threaded numpy code."""
    rows = []
    for (w, h), n in CASES:
        events = random_stream(n_events, w, h)
        mapping = SensorMapping(SensorGeometry(w, h, f"{w}x{h}"), 128)
        ours = _time_ours(events, mapping, n, batch)
        row = {"sensor": f"{w}x{h}", "input": "128x128", "N": n, "events": n_events, "batch": batch,
               "ours_mev_s": n_events / ours / 1e6, "tonic_mev_s": None, "ratio": None}
        if with_tonic:
            tonic_s = _time_tonic(events, mapping, n)
            row["tonic_mev_s"] = n_events / tonic_s / 1e6
            row["ratio"] = tonic_s / ours
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    return format_rows(rows, [
        ("sensor", "sensor", ""), ("input", "input", ""), ("N", "N", "d"), ("events", "events", ",d"),
        ("batch", "batch", ",d"), ("ours_mev_s", "evapp Mev/s", ".1f"), ("tonic_mev_s", "tonic Mev/s", ".1f"),
        ("ratio", "speed-up", ".1f"),
    ])
