"""The simulated newcomer: a person outside the training ranges, a motion outside the 11 classes, its labels'
class list, lamp flicker, and the live performer served through a real dv-processing network stream."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import numpy as np
import pytest

from evapp.events import GESTURE_CLASSES
from evapp.simulate.dvs import DvsParams, DvsPixelArray
from evapp.simulate.figure import SIM_MOTIONS, Placement
from evapp.simulate.person import NEWCOMER, PersonSettings, person_by_name
from evapp.simulate.sequence import simulate_sequence
from evapp.simulate.stream import LiveScene
from evapp.simulate.writers import ensure_class_list, parse_classes, write_recording
from evapp.sources import open_source
from evapp.sources.aedat3 import labels_path_for, read_labels_csv

RAISE = SIM_MOTIONS.index("both_arms_raise")


def test_sim_motions_extend_the_11_classes():
    assert SIM_MOTIONS[:11] == GESTURE_CLASSES and RAISE == 11 and len(SIM_MOTIONS) == 12
    assert parse_classes("right_hand_wave,both_arms_raise,11") == [1, 11, 11]
    with pytest.raises(ValueError):
        parse_classes("12")
    with pytest.raises(ValueError):
        person_by_name("oldtimer")


@pytest.mark.parametrize("subject_seed", [0, 3, 17])
def test_newcomer_lies_outside_subject_random_ranges(subject_seed):
    texture, level, sub = NEWCOMER.scene(subject_seed)
    s = sub.scale
    assert s > 1.3  # Subject.random: 1.05..1.3
    assert abs(sub.cx - 0.5) > 0.05 and sub.sy > 0.46  # cx 0.5 +- 0.05, sy 0.42 +- 0.04
    assert sub.shoulder_w / (0.12 * s) > 1.08  # 0.92..1.08
    assert sub.upper_len / (0.15 * s) > 1.05 and sub.fore_len / (0.14 * s) > 1.05  # 0.95..1.05
    assert sub.upper_thick / (0.045 * s) > 1.2 and sub.fore_thick / (0.038 * s) > 1.2  # exactly 1
    assert sub.hip_w / (0.1 * s) > 1.1  # 0.9..1.1
    assert sub.skin < 150  # 150..215
    assert sub.shirt / level < 0.35  # 0.35..0.55 or 1.7..2.4 times the background level
    assert level > 100  # make_background: 50..100
    assert sub.rest_a1 > 12 and sub.rest_bend > 12  # 5..12, 3..12
    p = NEWCOMER.dvs_params()
    assert p.threshold_on == 0.3 and p.noise_rate_hz > 0.2 and p.flicker_hz == 100 and p.flicker_amplitude > 0
    # Identity: the same subject_seed is the same person and room; another is another.
    t2, _, sub2 = NEWCOMER.scene(subject_seed)
    assert sub2 == sub and np.array_equal(t2, texture)
    assert NEWCOMER.scene(subject_seed + 1)[2] != sub


QUIET = replace(NEWCOMER, flicker_amplitude=0.0, noise_rate_hz=0.0)


def test_both_arms_raise_moves_above_the_shoulders():
    ev, labels, geom = simulate_sequence([RAISE], 2, (128, 128), pause_s=0.3, gesture_s=2.0, fps=1000,
                                         person=QUIET, subject_seed=1)
    _, _, sub = QUIET.scene(1)
    _, shoulder_y = Placement(128, 128).to_px(0.0, sub.sy)
    lab = labels[0]
    t = ev["timestamp"]
    core = ev[(t >= lab.start_us + 300_000) & (t < lab.end_us - 300_000)]
    rest = ev[(t < lab.start_us)]
    assert core.shape[0] > 10 * max(rest.shape[0], 1)
    above = (core["y"] < shoulder_y).mean()
    assert above > 0.6, above
    # Both arms: events on both sides of the body.
    assert geom.width == 128
    cx, _ = Placement(128, 128).to_px(sub.cx, 0.0)
    left, right = (core["x"] < cx).mean(), (core["x"] >= cx).mean()
    assert min(left, right) > 0.3


@pytest.mark.parametrize("resolution", [(320, 240), (640, 480)])
def test_newcomer_recording_with_classes_json_reads_back(tmp_path, resolution):
    ev, labels, geom = simulate_sequence([1, RAISE], 5, resolution, pause_s=0.1, gesture_s=0.3, fps=400,
                                         person=NEWCOMER, subject_seed=3)
    assert (geom.width, geom.height) == resolution
    t0 = 1_700_000_000_000_000
    path, csv_path = write_recording(tmp_path / "rec.aedat4", ev, labels, geom, t0_us=t0)
    names = json.loads((tmp_path / "classes.json").read_text())
    assert names == list(SIM_MOTIONS)
    assert [int(r.split(",")[0]) for r in csv_path.read_text().splitlines()[1:]] == [2, 12]
    assert read_labels_csv(labels_path_for(path), t0_us=t0) == labels
    source = open_source(path)
    try:
        n = sum(b.shape[0] for b in source.batches())
        assert n == ev.shape[0]
        assert [(lab.class_id, lab.start_us, lab.end_us) for lab in source.labels] == [
            (lab.class_id, lab.start_us, lab.end_us) for lab in labels]
        classes = getattr(source, "label_classes", None)
        if classes is not None:  # readers that follow the classes.json convention
            assert [classes[lab.class_id] for lab in source.labels] == ["right_hand_wave", "both_arms_raise"]
    finally:
        source.close()
    # A second recording in the same folder keeps the same list; a foreign list is refused, nothing written.
    write_recording(tmp_path / "rec2.aedat4", ev[:1000], labels, geom)
    foreign = tmp_path / "other"
    foreign.mkdir()
    (foreign / "classes.json").write_text(json.dumps(["wave", "clap"]))
    with pytest.raises(ValueError, match="already lists other classes"):
        write_recording(foreign / "rec.aedat4", ev[:1000], labels, geom)
    assert not (foreign / "rec.aedat4").exists()


def test_no_classes_json_for_the_11_classes(tmp_path):
    assert ensure_class_list(tmp_path, [0, 10]) is None and not (tmp_path / "classes.json").exists()
    assert ensure_class_list(tmp_path, [11]) == tmp_path / "classes.json"
    assert ensure_class_list(tmp_path, [0, 11]) == tmp_path / "classes.json"  # same list: kept


def test_flicker_raises_the_rest_rate():
    kw = dict(pause_s=0.6, gesture_s=0.3, fps=500, subject_seed=2)
    calm, lab_c, _ = simulate_sequence([0], 4, (320, 240), person=replace(NEWCOMER, flicker_amplitude=0.0), **kw)
    flick, lab_f, _ = simulate_sequence([0], 4, (320, 240), person=NEWCOMER, **kw)

    def rest_rate(ev, lab):
        t = ev["timestamp"]
        return ((t > 200_000) & (t < lab[0].start_us)).sum() / ((lab[0].start_us - 200_000) * 1e-6)

    assert rest_rate(flick, lab_f) > 3 * rest_rate(calm, lab_c)


def test_flicker_fast_path_changes_no_event():
    """Visiting only the pixels the lamp can push over a threshold gives exactly the events of visiting all."""
    params = DvsParams(threshold_sigma=0.04, threshold_on=0.3, threshold_off=0.3, flicker_amplitude=0.2)
    rng = np.random.default_rng(0)
    frames = [rng.integers(20, 200, (24, 32)).astype(np.uint8)]
    for _ in range(60):
        f = frames[-1].copy()
        f[rng.integers(0, 24, 40), rng.integers(0, 32, 40)] = rng.integers(20, 200, 40)
        frames.append(f)
    t = np.arange(61) * 2000
    off = np.log1p(0.2 * np.sin(2 * np.pi * 100 * t * 1e-6))
    out = []
    for fast in (False, True):
        px = DvsPixelArray(32, 24, params, np.random.default_rng(1))
        if fast:
            px.set_offset_range(off.min(), off.max())
        px.reset(frames[0], 0, off[0])
        for k in range(1, 61):
            px.step(frames[k], int(t[k]), float(off[k]))
        out.append(px.take())
    assert out[0][0].shape[0] > 100
    for a, b in zip(out[0], out[1], strict=True):
        assert np.array_equal(a, b)


def test_live_scene_chunks_are_continuous():
    scene = LiveScene(NEWCOMER, (320, 240), subject_seed=3, seed=100, t0_us=10**15, fps=500)
    scene.perform(RAISE, 10**15 + 300_000, 1.0, take_seed=101)
    last = -1
    for i in range(1, 31):
        ev = scene.render(10**15 + i * 50_000)
        if ev.shape[0]:
            assert ev["timestamp"][0] > last and np.all(np.diff(ev["timestamp"]) >= 0)
            last = int(ev["timestamp"][-1])
    assert last > 10**15 + 1_400_000  # the chunks cover the 1.5 s asked for (speed: the README's numbers)


def test_person_settings_validate():
    with pytest.raises(ValueError):
        PersonSettings(background="jungle")


# ---------------------------------------------------------------- the live performer


def _drain(reader, seconds):
    """Events read from ``reader`` over ``seconds`` of wall time: (count, first and last timestamps)."""
    end = time.monotonic() + seconds
    n, first, last = 0, None, None
    while time.monotonic() < end:
        store = reader.getNextEventBatch()
        if store is not None and len(store):
            a = store.numpy()
            n += a.shape[0]
            first = int(a["timestamp"][0]) if first is None else first
            assert last is None or a["timestamp"][0] >= last
            last = int(a["timestamp"][-1])
        else:
            time.sleep(0.002)
    return n, first, last


def _session(dv, port, performer) -> dict:
    """Connect a real NetworkReader, read rest, prompt a take, read it; the reader is gone on return (no
    assertion in here keeps a reference to it alive)."""
    reader = dv.io.NetworkReader("127.0.0.1", port)
    out = {"resolution": tuple(reader.getEventResolution()), "camera": reader.getCameraName()}
    _drain(reader, 0.3)
    out["rest"] = _drain(reader, 1.5)
    out["wall_s"] = time.time()
    performer.on_prompt({"type": "prompt", "phase": "countdown", "count": 3, "class_name": "both_arms_raise",
                         "take": 1, "seconds": 1.0})
    performer.on_prompt({"type": "prompt", "phase": "go", "class_name": "both_arms_raise", "seconds": 1.0,
                         "take": 1, "of": 1})
    out["go"] = _drain(reader, 1.2)
    del reader  # the client leaves first: a NetworkWriter is never destroyed with a client connected
    return out


def test_performer_streams_in_real_time_and_performs_on_go():
    dv = pytest.importorskip("dv_processing")
    from evapp.simulate.performer import Performer
    from evapp.testing import free_port

    port = free_port()
    performer = Performer(port, NEWCOMER, (320, 240), subject_seed=3, seed=100, reaction_s=0.1).start()
    try:
        got = _session(dv, port, performer)
    finally:
        released = performer.stop()
    assert released
    assert got["resolution"] == (320, 240) and got["camera"] == "DVXplorer_Lite_sim"
    n_rest, first, last = got["rest"]
    assert (last - first) / 1e6 > 0.5  # the stream's clock runs with the wall clock's (its speed is not tested)
    assert abs(last / 1e6 - got["wall_s"]) < 10.0  # timestamps are wall-clock µs, not from zero
    n_go = got["go"][0]
    rest_rate, go_rate = n_rest / 1.5, n_go / 1.2
    assert go_rate > 1.5 * rest_rate, (rest_rate, go_rate)
    assert performer.performed and performer.performed[0][0] == "both_arms_raise"
    assert performer.stats.realtime_factor > 0  # measured (the README states it on this machine)


def test_performer_reads_prompt_lines_and_warns_on_unknown_names():
    from evapp.simulate.performer import OTHER, Performer

    said = []
    performer = Performer(0, NEWCOMER, log=said.append)
    performer.on_line("not json")
    performer.on_line(json.dumps({"type": "summary", "phase": "go"}))
    performer.on_line(json.dumps({"type": "prompt", "phase": "countdown", "count": 3, "class_name": "jazz_hands",
                                  "take": 2}))
    performer.on_line(json.dumps({"type": "prompt", "phase": "go", "class_name": "jazz_hands", "take": 2,
                                  "seconds": 2.0}))
    assert len(said) == 1 and "jazz_hands" in said[0]
    assert [p[0] for p in performer._pending] == [OTHER]
    performer.on_line(json.dumps({"type": "prompt", "phase": "done"}))
    assert performer._done_at is not None
