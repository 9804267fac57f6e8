"""--policy auto: the governor steps K down before the frame queue would drop and back up when there is room;
the composition root and the live command give it to the engines that can re-batch."""

from __future__ import annotations

import pytest

from evapp.engine.auto_policy import AutoPolicy
from evapp.model_setup import ModelChoice, build_model_setup


@pytest.fixture
def tiny_auto():
    setup = build_model_setup(ModelChoice("saformer-2-256", policy="auto", device="cpu", events_per_frame=500))
    return setup


def feed_times(governor, ms_per_row: float, fps: float, seconds: float, t0_us: int = 0) -> int:
    """Tell the governor about ``seconds`` of frames at ``fps``, each feed costing ``ms_per_row`` per row of K."""
    t = t0_us
    for _ in range(int(seconds * fps)):
        t += int(1e6 / fps)
        governor.observe(ms_per_row * governor.engine.K, fps, t)
    return t


def test_auto_starts_at_the_most_accurate_rung_and_says_so(tiny_auto):
    assert tiny_auto.governor is not None and tiny_auto.engine.policy_text == "staggered:8"
    assert tiny_auto.policy_text == "auto: staggered:8"
    assert tiny_auto.governor.rungs == ["staggered:8", "staggered:4", "staggered:2", "persistent"]  # K divides T


def test_auto_steps_down_when_busy_and_up_when_there_is_room(tiny_auto):
    governor = tiny_auto.governor
    # 20 frames/s and 10 ms per row: staggered:8 keeps the inference thread 160 % busy, staggered:4 80 %
    t = feed_times(governor, 10.0, 20.0, 1.0)
    assert tiny_auto.engine.K == 4 and [c.policy for c in governor.changes] == ["staggered:4"]
    # then the scene calms down to 5 frames/s: staggered:8 would be 40 % busy, but not before HOLD_S of stream
    # at the rung does it step back up
    t = feed_times(governor, 10.0, 5.0, 1.5, t)
    assert tiny_auto.engine.K == 4
    t = feed_times(governor, 10.0, 5.0, 2.0, t)
    assert tiny_auto.engine.K == 8 and [c.policy for c in governor.changes] == ["staggered:4", "staggered:8"]
    # busy again, for good: down to the rung that keeps up (80 % at staggered:4), and it stays there
    feed_times(governor, 10.0, 20.0, 6.0, t)
    assert tiny_auto.engine.K == 4 and governor.changes[-1].policy == "staggered:4"
    assert all(a.t_us < b.t_us for a, b in zip(governor.changes, governor.changes[1:], strict=False))


def test_a_dropped_frame_steps_down_at_once(tiny_auto):
    governor = tiny_auto.governor
    t = feed_times(governor, 1.0, 10.0, 1.0)  # 8 % busy: no reason to change
    assert tiny_auto.engine.K == 8
    assert governor.observe(8.0, 10.0, t + 100_000, dropped=True).policy == "staggered:4"


def test_engines_that_cannot_rebatch_keep_a_fixed_policy(caplog):
    pytest.importorskip("onnxruntime", reason="the ONNX engine needs onnxruntime")
    setup = build_model_setup(ModelChoice("saformer-2-256", policy="auto", device="cpu", engine="onnx",
                                          events_per_frame=500))
    assert setup.governor is None and setup.engine.policy_text == "window"  # the model's own
    assert "--policy auto needs the torch engine" in caplog.text


def test_the_governor_only_changes_staggered_engines():
    from evapp.nets import create_model

    model = create_model("saformer-2-256", T=4, embed_dims=[32], num_heads=[2], input_size=[32, 32])
    from evapp.engine import TorchEngine

    engine = TorchEngine(model, device="cpu", policy="staggered:4")
    assert AutoPolicy(engine).rungs == ["staggered:4", "staggered:2", "persistent"]


def test_down_to_persistent_and_back(tiny_auto):
    """Below staggered:2 the governor goes persistent (one row, an answer every frame), keeping the row with the
    longest history; back up, the staggered rows start their own windows and answer once a window is whole."""
    import numpy as np

    engine, governor = tiny_auto.engine, tiny_auto.governor
    frame = np.zeros(engine.input_shape, np.float32)
    for _ in range(20):
        engine.feed(frame)
    t = feed_times(governor, 30.0, 20.0, 2.0)  # 30 ms per row at 20 frames/s: even staggered:2 is 120 % busy
    assert engine.policy_text == "persistent" and [c.policy for c in governor.changes] == [
        "staggered:4", "staggered:2", "persistent"]
    assert all(len(engine.feed(frame)) == 1 for _ in range(3))  # an answer every frame
    feed_times(governor, 30.0, 2.0, 4.0, t)  # a quiet scene: 2 frames/s leaves room for staggered:2 (12 %)
    assert engine.policy_text == "staggered:2"
    answers = [len(engine.feed(frame)) for _ in range(24)]
    assert sum(answers[:15]) == 0 and sum(answers) > 0  # no answer from a partial window (T = 16)
