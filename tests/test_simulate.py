"""The synthetic DVS gesture generator: determinism, kinematics, event statistics, files, cross-resolution."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evapp.events import EVENT_DTYPE, GESTURE_CLASSES, LabelInterval
from evapp.simulate import DvsParams, render_performance, simulate_sequence
from evapp.simulate.dvs import DvsPixelArray, noise_events
from evapp.simulate.figure import LEFT, RIGHT, Placement, Subject, keypoints, make_background
from evapp.simulate.sequence import _rng, choreography, select_frames
from evapp.simulate.writers import parse_classes, write_dataset, write_recording
from evapp.sources.aedat3 import labels_path_for, read_aedat3, read_labels_csv

ALL = list(range(len(GESTURE_CLASSES)))
GESTURE_S, PAUSE_S = 1.2, 0.6


@pytest.fixture(scope="module")
def all_classes():
    """One subject performing all 11 classes in order at 128x128 (about 20 s of stream)."""
    return simulate_sequence(ALL, seed=0, pause_s=PAUSE_S, gesture_s=GESTURE_S)


def _in(ev, a, b):
    t = ev["timestamp"]
    return ev[(t >= a) & (t < b)]


def _pause_rate(ev, labels):
    """Events per second in the pauses, 0.1 s away from every gesture."""
    edges = [0] + [x for lab in labels for x in (lab.start_us, lab.end_us)] + [int(ev["timestamp"][-1])]
    n, dur = 0, 0.0
    for a, b in zip(edges[0::2], edges[1::2], strict=True):
        a, b = a + 100_000, b - 100_000
        if b > a:
            n += _in(ev, a, b).shape[0]
            dur += (b - a) * 1e-6
    return n / dur


def _core(lab: LabelInterval, margin_us: int = 300_000):
    return lab.start_us + margin_us, lab.end_us - margin_us


# ---------------------------------------------------------------- determinism


def test_same_seed_same_events_different_seed_differs():
    a, la, ga = render_performance(1, seed=3, gesture_s=0.6, pause_s=0.2)
    b, lb, gb = render_performance(1, seed=3, gesture_s=0.6, pause_s=0.2)
    c, _, _ = render_performance(1, seed=4, gesture_s=0.6, pause_s=0.2)
    assert a.dtype == EVENT_DTYPE and a.shape[0] > 1000
    assert np.array_equal(a, b) and la == lb and ga == gb
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_subject_and_background_do_not_depend_on_resolution():
    rng1, rng2 = _rng(5, 1), _rng(5, 1)
    t1, l1 = make_background(rng1)
    t2, l2 = make_background(rng2)
    assert np.array_equal(t1, t2) and Subject.random(rng1, l1) == Subject.random(rng2, l2)


# ---------------------------------------------------------------- kinematics and conventions


def _hand_angle_turns(class_id: int, side: int) -> float:
    """Net turns of the hand around its shoulder, image coordinates (x right, y down): + = clockwise."""
    rng = _rng(11, 1)
    tex, level = make_background(rng)
    sub = Subject.random(rng, level)
    _t, pose, _labels = choreography([class_id], 11, 0.2, 2.0, 500.0, sub)
    pts = keypoints(sub, pose)
    (sx, sy), (hx, hy) = pts[f"sh{side}"], pts[f"ha{side}"]
    ang = np.unwrap(np.arctan2(hy - sy, hx - sx))
    return float((ang[-1] - ang[0]) / (2 * np.pi))


@pytest.mark.parametrize(
    "name, side, sign",
    [
        ("right_arm_clockwise", RIGHT, 1),
        ("right_arm_counter_clockwise", RIGHT, -1),
        ("left_arm_clockwise", LEFT, 1),
        ("left_arm_counter_clockwise", LEFT, -1),
    ],
)
def test_arm_circles_turn_the_documented_way(name, side, sign):
    turns = _hand_angle_turns(GESTURE_CLASSES.index(name), side)
    assert sign * turns >= 1.0  # at least one full turn, clockwise as seen from the camera


def test_subjects_right_arm_is_on_the_image_left():
    rng = _rng(2, 1)
    tex, level = make_background(rng)
    sub = Subject.random(rng, level)
    _t, pose, _ = choreography([1], 2, 0.2, 1.0, 500.0, sub)
    pts = keypoints(sub, pose)
    assert np.all(pts["sh-1"][0] < sub.cx) and np.all(pts["ha-1"][0] < sub.cx)
    assert np.all(pts["sh1"][0] > sub.cx)


# ---------------------------------------------------------------- event statistics on all 11 classes


def test_stream_invariants(all_classes):
    ev, labels, geom = all_classes
    assert (geom.width, geom.height) == (128, 128)
    t = ev["timestamp"]
    assert t[0] == 0 and np.all(np.diff(t) >= 0)
    assert ev["x"].min() >= 0 and ev["x"].max() < 128 and ev["y"].min() >= 0 and ev["y"].max() < 128
    assert set(np.unique(ev["polarity"]).tolist()) <= {0, 1}
    assert [lab.class_id for lab in labels] == ALL
    assert all(lab.end_us - lab.start_us == pytest.approx(GESTURE_S * 1e6, abs=100) for lab in labels)


def test_every_class_moves_and_is_balanced(all_classes):
    ev, labels, _ = all_classes
    pause = _pause_rate(ev, labels)
    rates = []
    for lab in labels:
        core = _in(ev, *_core(lab))
        rate = core.shape[0] / ((lab.end_us - lab.start_us - 600_000) * 1e-6)
        rates.append(rate)
        assert 0.3 <= core["polarity"].mean() <= 0.7, GESTURE_CLASSES[lab.class_id]
        assert rate >= 2.0 * pause, f"{GESTURE_CLASSES[lab.class_id]}: {rate:.0f} ev/s vs {pause:.0f} in pauses"
    # Over all gestures the motion rate is far above the (mostly noise) pause rate.
    assert np.mean(rates) >= 5.0 * pause
    assert 0.3 <= ev["polarity"].mean() <= 0.7


def _centroid_x(ev, lab):
    core = _in(ev, *_core(lab))
    return float(core["x"].mean())


def test_motion_is_where_the_class_says(all_classes):
    ev, labels, _ = all_classes
    cx = {GESTURE_CLASSES[lab.class_id]: _centroid_x(ev, lab) for lab in labels}
    # Subject's right hand = image left half; left hand = image right half.
    assert cx["right_hand_wave"] < 64 - 10 and cx["left_hand_wave"] > 64 + 10
    for rot in ("clockwise", "counter_clockwise"):
        assert cx[f"right_arm_{rot}"] < 64 - 5 < 64 + 5 < cx[f"left_arm_{rot}"]
    # Two-handed, symmetric gestures stay near the body's centre line.
    for name in ("hand_clapping", "arm_roll", "air_drums"):
        assert abs(cx[name] - 64) < 16, name


def test_arm_circle_events_rotate_clockwise_on_the_image(all_classes):
    ev, labels, _ = all_classes
    turns = {}
    for lab in labels:
        if "_arm_" not in GESTURE_CLASSES[lab.class_id]:
            continue
        a, b = _core(lab, 200_000)
        side_mask = (ev["x"] < 64) if GESTURE_CLASSES[lab.class_id].startswith("right") else (ev["x"] >= 64)
        part = _in(ev[side_mask], a, b)
        bins = np.arange(a, b, 40_000)
        k = np.searchsorted(bins, part["timestamp"], side="right") - 1
        cnt = np.bincount(k, minlength=len(bins))
        mx = np.bincount(k, part["x"].astype(float), len(bins)) / np.maximum(cnt, 1)
        my = np.bincount(k, part["y"].astype(float), len(bins)) / np.maximum(cnt, 1)
        ok = cnt > 20
        # Angle of the event centroid around the arm's circle centre (mean of all centroids).
        ang = np.unwrap(np.arctan2(my[ok] - my[ok].mean(), mx[ok] - mx[ok].mean()))
        turns[GESTURE_CLASSES[lab.class_id]] = (ang[-1] - ang[0]) / (2 * np.pi)
    assert turns["right_arm_clockwise"] > 0.5 and turns["left_arm_clockwise"] > 0.5
    assert turns["right_arm_counter_clockwise"] < -0.5 and turns["left_arm_counter_clockwise"] < -0.5


# ---------------------------------------------------------------- pixel model units


def test_pixel_model_counts_threshold_crossings_and_interpolates_time():
    params = DvsParams(threshold_on=0.2, threshold_off=0.2, threshold_sigma=0.0, refractory_us=0,
                       noise_rate_hz=0.0, hot_pixel_fraction=0.0)
    px = DvsPixelArray(4, 1, params, np.random.default_rng(0))
    lut = px.lut
    px.reset(np.full((1, 4), 20, np.uint8), 0)
    px.step(np.full((1, 4), 200, np.uint8), 1000)
    t, x, y, p = px.take()
    change = float(lut[200] - lut[20])
    n_per_px = np.bincount(x, minlength=4)
    # The reference starts anywhere inside its dead band, so a change of c thresholds gives c +- 1 events.
    k = change / 0.2
    assert np.all((n_per_px >= np.floor(k) - 1) & (n_per_px <= np.ceil(k))) and np.all(p == 1)
    # Crossings are spread over the frame interval (linear interpolation), not stacked at its end.
    assert t.min() > 0 and t.max() <= 1000 and t.max() - t.min() > 700
    px.step(np.full((1, 4), 20, np.uint8), 2000)  # back down: OFF events only, same count within one
    t2, x2, _, p2 = px.take()
    assert np.all(p2 == 0) and abs(t2.shape[0] - t.shape[0]) <= 4 and t2.min() > 1000


def test_refractory_period_limits_the_rate_of_a_pixel():
    params = DvsParams(threshold_sigma=0.0, refractory_us=400, noise_rate_hz=0.0, hot_pixel_fraction=0.0)
    px = DvsPixelArray(1, 1, params, np.random.default_rng(1))
    px.reset(np.full((1, 1), 5, np.uint8), 0)
    for k, v in enumerate(np.linspace(5, 250, 10).astype(np.uint8)[1:], start=1):
        px.step(np.full((1, 1), v, np.uint8), k * 200)
    t, *_ = px.take()
    assert t.shape[0] >= 2 and np.all(np.diff(np.sort(t)) >= 400)


def test_noise_rate_and_hot_pixels():
    params = DvsParams(noise_rate_hz=0.5, hot_pixel_fraction=1e-3, hot_pixel_rate_hz=(100.0, 100.0))
    t, x, y, p = noise_events(64, 64, 0, 2_000_000, params, np.random.default_rng(0))
    expected = 0.5 * 64 * 64 * 2 + 4 * 100 * 2
    assert abs(t.shape[0] - expected) < 6 * np.sqrt(expected)
    counts = np.bincount(y.astype(int) * 64 + x, minlength=64 * 64)
    assert np.sort(counts)[-4:].min() > 100  # the hot pixels stand out


def test_select_frames_keeps_motion_and_min_rate():
    t = np.arange(0, 1_000_001, 1000)
    motion = np.zeros(t.shape[0])
    motion[400:600] = 0.2  # 0.2 px per fine frame for 0.2 s
    idx = select_frames(motion, t, 0.5, 100.0)
    assert idx[0] == 0 and idx[-1] == t.shape[0] - 1
    assert np.diff(t[idx]).max() <= 10_000
    fast = idx[(idx > 400) & (idx < 600)]
    assert 60 <= fast.shape[0] <= 100  # about one frame per 0.5 px


# ---------------------------------------------------------------- files


def test_aedat4_round_trip_with_labels(tmp_path):
    dv = pytest.importorskip("dv_processing")
    ev, labels, geom = simulate_sequence([1, 8], seed=5, pause_s=0.3, gesture_s=0.6)
    t0 = 1_700_000_000_000_000  # an epoch-like absolute time, as real recordings have
    path, csv_path = write_recording(tmp_path / "rec.aedat4", ev, labels, geom, t0_us=t0)
    assert csv_path == tmp_path / "rec_labels.csv"
    assert csv_path.read_text().splitlines()[0] == "class,startTime_usec,endTime_usec"
    rec = dv.io.MonoCameraRecording(str(path))
    assert tuple(rec.getEventResolution()) == (128, 128)
    parts = []
    while (batch := rec.getNextEventBatch()) is not None:
        parts.append(batch.numpy())
    back = np.concatenate(parts)
    first = int(back["timestamp"][0])
    assert first == t0
    back["timestamp"] -= first
    for f in ("timestamp", "x", "y", "polarity"):
        assert np.array_equal(back[f], ev[f]), f
    assert read_labels_csv(csv_path, t0_us=first) == labels



def test_dataset_workers_write_the_same_files(tmp_path):
    """Trials rendered in a process pool are byte-identical to one process's, listed in the same order."""
    kwargs = dict(n_users=3, lightings=("led", "natural"), seed=2, train_users=2, gesture_s=0.3, pause_s=0.2,
                  vary_sensor=True)
    one = write_dataset(tmp_path / "one", **kwargs)
    seen = []
    pool = write_dataset(tmp_path / "pool", workers=2, progress=seen.append, **kwargs)
    assert (pool.train, pool.test, pool.events) == (one.train, one.test, one.events)
    assert seen == one.train + one.test
    for name in sorted(p.name for p in (tmp_path / "one").iterdir()):
        assert (tmp_path / "pool" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name

def test_dataset_layout_round_trip(tmp_path):
    info = write_dataset(tmp_path, n_users=2, lightings=("fluorescent", "natural"), seed=1,
                         train_users=1, gesture_s=0.4, pause_s=0.2)
    assert (tmp_path / "trials_to_train.txt").read_text().split() == ["user01_fluorescent.aedat",
                                                                       "user01_natural.aedat"]
    assert (tmp_path / "trials_to_test.txt").read_text().split() == ["user02_fluorescent.aedat",
                                                                      "user02_natural.aedat"]
    firsts = []
    for name in info.train + info.test:
        ev = read_aedat3(tmp_path / name)
        t0 = int(ev["timestamp"][0])
        firsts.append(t0)
        assert t0 > 0 and np.all(np.diff(ev["timestamp"]) >= 0)
        labels = read_labels_csv(labels_path_for(tmp_path / name), t0_us=t0)
        assert sorted(lab.class_id for lab in labels) == ALL  # each class once, random order
        assert [lab.class_id for lab in labels] != ALL
        rel = ev["timestamp"] - t0
        for lab in labels:
            assert 0 < lab.start_us < lab.end_us <= rel[-1]
            assert ((rel >= lab.start_us) & (rel < lab.end_us)).sum() > 500
    assert len(set(firsts)) == len(firsts)  # a different absolute offset per trial
    # Different users are different people: their streams differ even for the same lighting.
    a, b = read_aedat3(tmp_path / info.train[0]), read_aedat3(tmp_path / info.test[0])
    assert a.shape != b.shape


def test_parse_classes():
    assert parse_classes(None) == ALL and parse_classes("all") == ALL
    assert parse_classes("0, right_hand_wave,10") == [0, 1, 10]
    with pytest.raises(ValueError):
        parse_classes("12")
    with pytest.raises(ValueError):
        parse_classes("jazz_hands")


# ---------------------------------------------------------------- cross-resolution consistency


def test_640x480_central_square_matches_128x128():
    kw = {"gesture_s": 0.8, "pause_s": 0.2}
    small, lab_s, g_s = render_performance(7, seed=7, resolution=(128, 128), **kw)
    big, lab_b, g_b = render_performance(7, seed=7, resolution=(640, 480), **kw)
    assert (g_b.width, g_b.height) == (640, 480) and g_b.name == "DVXplorer"
    assert [lab.class_id for lab in lab_s] == [lab.class_id for lab in lab_b]
    place_s, place_b = Placement(128, 128), Placement(640, 480)
    s = _in(small, lab_s[0].start_us, lab_s[0].end_us)
    b = _in(big, lab_b[0].start_us, lab_b[0].end_us)
    inside = (b["x"] >= 80) & (b["x"] < 560)
    ratio = inside.sum() / s.shape[0]
    assert 5.0 < ratio < 30.0  # 14x the pixels; edges scale with the side, swept area with its square
    us, vs = place_s.to_norm(s["x"].astype(float), s["y"].astype(float))
    ub, vb = place_b.to_norm(b["x"][inside].astype(float), b["y"][inside].astype(float))
    assert abs(us.mean() - ub.mean()) < 0.03 and abs(vs.mean() - vb.mean()) < 0.03
    # Outside the central square the wider sensor sees only background: noise, no motion.
    outside_rate = (~inside).sum() / ((lab_b[0].end_us - lab_b[0].start_us) * 1e-6) / (2 * 80 * 480)
    assert outside_rate < 1.0  # events per second per pixel


def test_lighting_flicker_adds_background_events():
    kw = {"gesture_s": 0.3, "pause_s": 0.1}
    calm, _, _ = render_performance(0, seed=2, **kw)
    flick, _, _ = render_performance(0, seed=2, params=DvsParams(flicker_amplitude=0.3, flicker_hz=50.0), **kw)
    far = (calm["y"] < 10).sum(), (flick["y"] < 10).sum()  # top rows: background only
    assert far[1] > 10 * max(far[0], 1)


def test_simulate_main_writes_a_recording(tmp_path):
    from evapp.simulate.writers import simulate_main

    out = simulate_main(tmp_path / "demo.aedat4", classes="right_hand_wave,0", seed=3, gesture_s=0.4, pause_s=0.2,
                        t0_us=5_000_000)
    assert out["classes"] == ["right_hand_wave", "hand_clapping"] and out["events"] > 1000
    labels = read_labels_csv(out["labels"], t0_us=5_000_000)
    assert [lab.class_id for lab in labels] == [1, 0] and out["bytes"] > 0


def test_dataset_split_renders_the_same_performances_at_another_resolution(tmp_path):
    from evapp.sources import open_source

    small = write_dataset(tmp_path / "128", n_users=2, lightings=("led",), seed=4, train_users=1,
                          gesture_s=0.4, pause_s=0.2, vary_sensor=True)
    big = write_dataset(tmp_path / "256", n_users=2, lightings=("led",), seed=4, train_users=1,
                        gesture_s=0.4, pause_s=0.2, vary_sensor=True, resolution=(256, 256), split="test")
    assert big.train == [] and big.test == ["user02_led.aedat4"]  # only the held-out user, in AEDAT4
    assert (tmp_path / "256" / "trials_to_test.txt").read_text().split() == big.test
    a, b = open_source(tmp_path / "128" / small.test[0]), open_source(tmp_path / "256" / big.test[0])
    assert (b.geometry.width, b.geometry.height) == (256, 256)
    for source in (a, b):  # labels are rebased to the first event, known once the file is read
        for _ in source.batches():
            pass
    # Same subject, choreography and sensor draw: the labelled intervals agree to the first event's jitter.
    assert [lab.class_id for lab in a.labels] == [lab.class_id for lab in b.labels]
    for la, lb in zip(a.labels, b.labels, strict=True):
        assert abs(la.start_us - lb.start_us) < 20_000 and abs(la.end_us - lb.end_us) < 20_000
    assert json.loads((tmp_path / "256" / "evapp_simulate.json").read_text())["split"] == "test"
