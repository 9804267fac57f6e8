import numpy as np
import pytest

from evapp.decoder import IDLE, Decoder, DecoderSettings, MotionFloor, MotionRate, motion_rates
from evapp.evaluate import confusion_png, onset_curves, onset_png, onset_value, stream_metrics
from evapp.events import GESTURE_CLASSES, LabelInterval


def one_hot(c, p=0.9, n=11):
    v = np.full(n, (1 - p) / (n - 1))
    v[c] = p
    return v


def test_decoder_hysteresis_threshold_and_idle():
    dec = Decoder(DecoderSettings(smoothing=1, threshold=0.5, hold=2, idle_below_fps=5.0))
    labels = [dec.update(i, one_hot(c), fps=30).class_id for i, c in enumerate([3, 3, 3, 4, 3, 4, 4, 4])]
    # 3 needs two answers to take over from idle; a single 4 does not flip it; two 4s in a row do.
    assert labels == [IDLE, 3, 3, 3, 3, 3, 4, 4]
    assert dec.update(9, one_hot(4), fps=2.0).class_id == 4  # first quiet answer: still held
    assert dec.update(10, one_hot(4), fps=2.0).class_id == IDLE  # quiet for `hold` answers: idle
    flat = np.full(11, 1 / 11)
    dec.reset()
    assert [dec.update(i, flat, fps=30).class_id for i in range(4)] == [IDLE] * 4  # never confident


def test_motion_floor_is_weighted_by_time_and_forgets_after_a_minute():
    floor = MotionFloor()
    for k in range(21):  # 20 s of quiet scene, an answer a second at 1 frame/s
        floor.update(k * 1_000_000, 1.0)
    for k in range(1, 401):  # 10 s of gesture, 40 answers a second at 40 frames/s: 400 of the 421 answers
        floor.update(20_000_000 + k * 25_000, 40.0)
    assert floor.floor() == 1.0  # a per-answer quantile would say 40
    for k in range(1, 2401):  # a further minute of gesture only: the quiet scene has left the horizon
        floor.update(30_000_000 + k * 25_000, 40.0)
    assert floor.floor() == 40.0
    floor.update(0, 1.0)  # a seek backwards: a new stream, not yet warmed up
    assert floor.floor() is None


def test_idle_threshold_follows_a_quieter_stream_floor_down_and_never_up():
    slow_gesture = one_hot(5)

    def shown_after_quiet(settings, quiet_fps, quiet_s=10):
        dec = Decoder(settings)
        for k in range(quiet_s + 1):  # a quiet scene, an answer a second
            dec.update(k * 1_000_000, np.full(11, 1 / 11), fps=quiet_fps)
        labels = [dec.update((quiet_s + 1) * 1_000_000 + k * 300_000, slow_gesture, fps=3.0).class_id
                  for k in range(3)]
        return labels, dec.idle_threshold()

    relative = DecoderSettings(smoothing=1, threshold=0.5, hold=1, idle_below_fps=4.0, idle_floor_fps=2.0)
    # the stream's floor (1 frame/s) is half the training streams' (2): the threshold halves, the slow gesture shows
    assert shown_after_quiet(relative, 1.0) == ([5, 5, 5], 2.0)
    # the absolute rule calls the same gesture idle
    absolute = DecoderSettings(smoothing=1, threshold=0.5, hold=1, idle_below_fps=4.0)
    assert shown_after_quiet(absolute, 1.0) == ([IDLE] * 3, 4.0)
    # a noisier stream than the training streams keeps the calibrated threshold (never raised)
    assert shown_after_quiet(relative, 3.5) == ([IDLE] * 3, 4.0)
    # before 5 s of stream the floor is not known: the calibrated threshold holds
    assert shown_after_quiet(relative, 1.0, quiet_s=3) == ([IDLE] * 3, 4.0)


def test_decoder_smoothing_averages_recent_answers():
    dec = Decoder(DecoderSettings(smoothing=3, threshold=0.0, hold=1))
    d = None
    for c in (1, 1, 2):
        d = dec.update(0, one_hot(c, p=1.0))
    np.testing.assert_allclose(d.probs[[1, 2]], [2 / 3, 1 / 3])
    assert d.class_id == 1 and d.raw_class_id == 2


def test_motion_rate_follows_the_last_frame_intervals():
    # 2 s of pause at 2 frames/s, then a gesture at 40 frames/s, then a seek back to the start.
    t = np.concatenate([np.arange(0, 2_000_000, 500_000), 2_000_000 + np.arange(1, 9) * 25_000])
    rates = motion_rates(t)
    assert rates[0] == 0 and rates[1] == pytest.approx(2.0) and rates[3] == pytest.approx(2.0)
    assert rates[5] == pytest.approx(2 / 0.55)  # one gesture interval beside one pause interval
    assert rates[6] == pytest.approx(40.0) and rates[-1] == pytest.approx(40.0)  # two intervals into the gesture
    live = MotionRate()
    assert [live.update(int(x)) for x in t] == pytest.approx(rates.tolist())
    assert live.update(0) == 0.0  # time went backwards (a seek): a new stream, no interval yet


def test_stream_metrics_match_hand_computed_numbers(tmp_path):
    labels = [LabelInterval(2, 1_000_000, 3_000_000), LabelInterval(5, 4_000_000, 6_000_000),
              LabelInterval(9, 6_200_000, 6_800_000)]
    frames = np.arange(70) * 100_000
    script = [(0, IDLE), (1_200_000, 2), (1_300_000, 2), (1_400_000, 2), (3_500_000, 7), (3_600_000, IDLE),
              (4_500_000, 5), (4_600_000, 0), (4_700_000, 5), (4_800_000, 5), (4_900_000, 5)]
    t, c = zip(*script, strict=True)
    m = stream_metrics(frames, t, c, labels, confirm=3)
    assert m.frames_in_gestures == 46
    assert m.frame_accuracy == pytest.approx(32 / 46)
    assert [g.latency_ms for g in m.gestures] == [200.0, 700.0, None]
    assert m.missed == 1 and m.median_latency_ms == 450.0
    assert m.false_alarms == 1
    assert m.confusion[2, 2] == 18 and m.confusion[2, 11] == 2
    assert m.confusion[5, 5] == 14 and m.confusion[5, 0] == 1 and m.confusion[5, 11] == 5
    assert m.confusion[9, 5] == 6 and m.confusion.sum() == 46
    png = tmp_path / "confusion.png"
    confusion_png(m, png, title="scripted")
    import cv2

    img = cv2.imread(str(png))
    assert img is not None and img.shape[0] > 400 and img.shape[1] > 600


def test_accuracy_since_onset_matches_hand_computed_values(tmp_path):
    # the scripted predictor above; a fourth gesture of other_gestures (class 10) is never named
    labels = [LabelInterval(2, 1_000_000, 3_000_000), LabelInterval(5, 4_000_000, 6_000_000),
              LabelInterval(9, 6_200_000, 6_800_000), LabelInterval(10, 7_000_000, 8_000_000)]
    script = [(0, IDLE), (1_200_000, 2), (1_300_000, 2), (1_400_000, 2), (3_500_000, 7), (3_600_000, IDLE),
              (4_500_000, 5), (4_600_000, 0), (4_700_000, 5), (4_800_000, 5), (4_900_000, 5)]
    t, c = zip(*script, strict=True)
    curves = onset_curves(labels, t, c, GESTURE_CLASSES)
    ten = curves["without_other_gestures"]
    assert ten["t_ms"][:3] == [0, 10, 20] and ten["t_ms"][-1] == 2000 and ten["gestures_at_onset"] == 3
    # 300 ms: the first gesture shows its class (from 1.2 s), the second idle, the third the second's class
    assert onset_value(ten, 300) == pytest.approx(1 / 3, abs=1e-4)
    # 600 ms: the third has ended (6.8 s); the second shows hand_clapping, decided exactly at 4.6 s
    assert onset_value(ten, 600) == pytest.approx(1 / 2, abs=1e-4) and ten["gestures"][60] == 2
    assert onset_value(ten, 700) == 1.0
    assert onset_value(ten, 2000) is None and ten["gestures"][200] == 0  # nothing lasts 2 s here
    # stable from 200 ms and 700 ms (after the wrong answer at 4.6 s); the third is never right: p95 is "never"
    assert ten["stable_ms"] == {"median": 700.0, "p95": None, "never": 1}
    every = curves["all"]
    assert every["gestures_at_onset"] == 4 and onset_value(every, 300) == pytest.approx(1 / 4, abs=1e-4)
    assert every["stable_ms"] == {"median": None, "p95": None, "never": 2}  # half the gestures never settle
    m = stream_metrics(np.arange(80) * 100_000, t, c, labels, confirm=3)
    m.onset = curves
    png = tmp_path / "onset.png"
    onset_png(m, png, title="scripted")
    import cv2

    img = cv2.imread(str(png))
    assert img is not None and img.shape[1] >= 600
