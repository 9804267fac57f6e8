import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evapp.binning import FixedCountBinner, FrameSpec, Region, SensorMapping, default_region
from evapp.errors import InputError
from evapp.events import SensorGeometry, make_events
from evapp.testing import random_stream


def reference_frames(events, mapping: SensorMapping, n: int) -> np.ndarray:
    """Straightforward per-event mapping + np.add.at, independent of the binner's tables."""
    r = mapping.region
    x, y, p = events["x"].astype(int), events["y"].astype(int), events["polarity"].astype(int)
    inside = (x >= r.x) & (x < r.x + r.w) & (y >= r.y) & (y < r.y + r.h)
    x, y, p = x[inside], y[inside], p[inside]
    col = (x - r.x) * mapping.width // r.w
    row = (y - r.y) * mapping.height // r.h
    k = x.shape[0] // n
    out = np.zeros((k, 2, mapping.height, mapping.width), np.float32)
    frame = np.arange(k * n) // n
    np.add.at(out, (frame, p[: k * n], row[: k * n], col[: k * n]), 1)
    return out


def bin_all(binner, events, cuts):
    frames, ends = [], []
    for a, b in zip([0, *cuts], [*cuts, events.shape[0]], strict=True):
        done = binner.push(events[a:b])
        frames.append(done.counts)
        ends.append(done.t_end_us)
    return np.concatenate(frames), np.concatenate(ends)


@settings(max_examples=60, deadline=None)
@given(
    n_events=st.integers(0, 30_000),
    n=st.integers(1, 7000),
    sensor=st.sampled_from([(128, 128), (640, 480), (346, 260)]),
    cuts=st.lists(st.integers(0, 30_000), max_size=12),
    seed=st.integers(0, 2**16),
)
def test_no_event_lost_or_counted_twice_for_any_batch_split(n_events, n, sensor, cuts, seed):
    events = random_stream(n_events, *sensor, seed=seed)
    mapping = SensorMapping(SensorGeometry(*sensor), 32)
    binner = FixedCountBinner(n, mapping)
    cuts = sorted(c for c in cuts if c <= n_events)
    frames, ends = bin_all(binner, events, cuts)
    expected = reference_frames(events, mapping, n)
    np.testing.assert_array_equal(frames, expected)
    assert (frames.sum(axis=(1, 2, 3)) == n).all()
    assert binner.frames_out * n + binner.leftover + binner.events_outside == n_events
    # Each frame's time is its N-th inside event's timestamp.
    r = mapping.region
    inside = (events["x"] >= r.x) & (events["x"] < r.x + r.w) & (events["y"] >= r.y) & (events["y"] < r.y + r.h)
    t_inside = events["timestamp"][inside]
    np.testing.assert_array_equal(ends, t_inside[np.arange(1, len(frames) + 1) * n - 1])


@pytest.mark.parametrize("n", [1000, 5000])
def test_equals_tonic_to_frame(n):
    import tonic.transforms as T

    events = random_stream(23_456, 128, 128, seed=3)
    binner = FixedCountBinner(n, SensorMapping(SensorGeometry(128, 128), 128))
    ours = bin_all(binner, events, [777, 5000, 5001, 17_000])[0]
    tonic_events = np.empty(events.shape[0], dtype=[("x", "<i2"), ("y", "<i2"), ("p", "?"), ("t", "<i8")])
    tonic_events["x"], tonic_events["y"] = events["x"], events["y"]
    tonic_events["p"], tonic_events["t"] = events["polarity"].astype(bool), events["timestamp"]
    theirs = T.ToFrame(sensor_size=(128, 128, 2), event_count=n)(tonic_events)
    assert theirs.shape == ours.shape == (23_456 // n, 2, 128, 128)
    np.testing.assert_array_equal(ours, theirs.astype(np.float32))


def test_dvxplorer_maps_central_square_onto_input():
    geometry = SensorGeometry(640, 480)
    assert default_region(geometry) == Region(80, 0, 480, 480)
    mapping = SensorMapping(geometry, 128)
    # Corners of the central square, one pixel outside it, and both polarities.
    events = make_events([0, 1, 2, 3, 4], [80, 559, 79, 560, 320], [0, 479, 10, 10, 240], [1, 0, 1, 1, 0])
    keys = mapping.keys(events)
    pixels = 128 * 128
    assert keys.tolist() == [pixels + 0, 127 * 128 + 127, mapping.bins, mapping.bins, 64 * 128 + 64]


def test_explicit_region_and_integer_downscale():
    mapping = SensorMapping(SensorGeometry(640, 480), 128, Region.parse("128,48,384,384"))
    xs = np.arange(128, 512)
    events = make_events(np.zeros(xs.shape[0]), xs, np.full(xs.shape[0], 48), np.zeros(xs.shape[0]))
    counts = np.bincount(mapping.keys(events), minlength=mapping.bins + 1)
    assert (counts[:128] == 3).all()  # exactly 3 sensor columns per input column


def test_corrupt_coordinates_fall_outside_instead_of_aliasing():
    mapping = SensorMapping(SensorGeometry(128, 128), 128)
    events = make_events([0, 1, 2], [-1, 200, 5], [5, 5, 300], [0, 1, 1])
    assert mapping.keys(events).tolist() == [mapping.bins] * 3


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "640,0,480,480", "0,-480,480,480", "0,0,64,64"])
def test_bad_regions_are_refused(text):
    with pytest.raises(InputError):
        SensorMapping(SensorGeometry(640, 480), 128, Region.parse(text))


def test_reset_discards_partial_frame():
    events = random_stream(1500, 128, 128)
    binner = FixedCountBinner(1000, SensorMapping(SensorGeometry(128, 128), 128))
    assert len(binner.push(events[:700])) == 0
    binner.reset()
    assert binner.leftover == 0
    assert len(binner.push(events[700:])) == 0
    assert binner.leftover == 800


def test_reset_counts_discarded_events_once():
    events = random_stream(1500, 640, 480)
    binner = FixedCountBinner(1000, SensorMapping(SensorGeometry(640, 480), 128))
    binner.push(events[:700])
    outside_before = binner.events_outside
    binner.reset()
    assert binner.events_outside == outside_before
    binner.push(events[700:])
    total = binner.frames_out * 1000 + binner.leftover + binner.events_outside + binner.events_discarded
    assert total == 1500


@pytest.mark.parametrize("keep", [1 / 14.0625, 0.25, 0.5, 0.999])
def test_thinning_keeps_an_even_fraction_and_accounts_for_every_event(keep):
    events = random_stream(200_000, 640, 480)
    mapping = SensorMapping(SensorGeometry(640, 480), 128)
    whole = FixedCountBinner(500, mapping, keep_fraction=keep)
    frames = whole.push(events)
    inside = int((mapping.keys(events) < mapping.bins).sum())
    assert whole.events_thinned + whole.frames_out * 500 + whole.leftover == inside
    assert abs(whole.frames_out * 500 + whole.leftover - inside * keep) <= 1
    assert whole.frames_out * 500 + whole.leftover + whole.events_thinned + whole.events_outside == events.shape[0]
    # Any batch split gives the same frames: the thinning phase carries over between pushes.
    split = FixedCountBinner(500, mapping, keep_fraction=keep)
    parts = [split.push(events[a:b]) for a, b in [(0, 777), (777, 50_000), (50_000, 200_000)]]
    assert np.array_equal(np.concatenate([p.counts for p in parts]), frames.counts)
    assert np.array_equal(np.concatenate([p.t_end_us for p in parts]), frames.t_end_us)


def test_the_whole_view_letterboxes_a_wide_sensor_so_its_edges_reach_the_input():
    geometry = SensorGeometry(320, 240)  # a DVXplorer Lite
    assert default_region(geometry, "whole") == Region(0, -40, 320, 320)
    assert default_region(SensorGeometry(128, 128), "whole") == default_region(SensorGeometry(128, 128))
    mapping = FrameSpec((128, 128), 1000, view="whole").mapping(geometry)
    assert mapping.region == Region(0, -40, 320, 320) and mapping.covers_sensor
    # The sensor's corners (cut off by the centre view) land on the letterboxed input; 2.5 sensor px per input px.
    events = make_events([0, 1, 2, 3], [0, 319, 0, 160], [0, 239, 239, 120], [0, 1, 0, 0])
    keys = mapping.keys(events)
    rows, cols = (keys % (128 * 128)) // 128, keys % 128
    assert rows.tolist() == [16, 111, 111, 64] and cols.tolist() == [0, 127, 0, 64]
    assert (keys // (128 * 128)).tolist() == [0, 1, 0, 0]
    assert FrameSpec((128, 128), 1000).mapping(geometry).keys(events)[:3].tolist() == [mapping.bins] * 3
    # Every sensor pixel lands inside; the letterbox rows stay empty.
    xs, ys = np.meshgrid(np.arange(320), np.arange(240))
    every = make_events(np.zeros(xs.size), xs.ravel(), ys.ravel(), np.zeros(xs.size))
    counts = np.bincount(mapping.keys(every), minlength=mapping.bins + 1)[: 128 * 128].reshape(128, 128)
    assert counts.sum() == 320 * 240 and counts[:16].sum() == counts[112:].sum() == 0 and counts[16:112].all()


def test_a_region_must_overlap_the_sensor_and_a_view_must_be_known():
    with pytest.raises(InputError, match="does not overlap the 320x240 sensor"):
        SensorMapping(SensorGeometry(320, 240), 128, Region(0, 240, 320, 320))
    with pytest.raises(InputError, match="View 'wide' is not one of centre, whole"):
        default_region(SensorGeometry(320, 240), "wide")
    with pytest.raises(ValueError, match="view must be one of"):
        FrameSpec((128, 128), 1000, view="wide")
