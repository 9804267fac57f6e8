"""TorchEngine policies: window == model.forward, staggered:K == window engines at each offset, persistent."""

import copy

import numpy as np
import pytest
import torch

from evapp.engine import EngineAnswer, TorchEngine, parse_policy
from evapp.nets import calibrate_bn, create_model
from evapp.testing import synthetic_frames

MODELS = ["sglformer-3-256", "saformer-2-256", "spikingresformer-dvsg"]


def small_model(name, T, seed=0):
    torch.manual_seed(seed)
    m = create_model(name, T=T)
    calibrate_bn(m, synthetic_frames(T, 2, m.cfg.input_size, m.cfg.events_per_frame, seed=seed + 100))
    return m


def frames_for(model, n, seed=7):
    return synthetic_frames(n, 1, model.cfg.input_size, model.cfg.events_per_frame, seed=seed)[:, 0]


@pytest.fixture
def batch_invariant_cpu():
    """oneDNN picks conv kernels by batch size, so a row of a batch of K and the same input at batch 1 can
    differ by ~1e-6 in the first conv; in a spiking net that can flip a neuron sitting at its threshold and
    the flip propagates (SpikingResformer's real-valued stream is the most sensitive). The staggered policy
    is checked for exact equality with oneDNN off, where every conv is computed per sample. ``allow_tf32=None``
    leaves oneDNN's TF32 setting alone: setting it at all (the context manager's default) makes torch warn that
    TF32 on oneDNN exists only for Intel GPUs."""
    with torch.backends.mkldnn.flags(enabled=False, allow_tf32=None):
        yield


def test_parse_policy():
    assert parse_policy("window") == ("window", 1)
    assert parse_policy("staggered:4") == ("staggered", 4)
    assert parse_policy("persistent") == ("persistent", 1)
    for bad in ("sliding", "staggered:x", "staggered:0", "window:2"):
        with pytest.raises(ValueError):
            parse_policy(bad)


@pytest.mark.parametrize("name", ["sglformer-3-256", "spikingresformer-dvsg"])
def test_window_answers_equal_forward(name):
    T = 4
    model = small_model(name, T)
    x = frames_for(model, 2 * T)
    eng = TorchEngine(copy.deepcopy(model), device="cpu", policy="window")
    answers = []
    for t in range(2 * T):
        got = eng.feed(x[t].numpy())  # numpy input
        assert len(got) == (1 if (t + 1) % T == 0 else 0)
        answers += got
    assert [a.frame_index for a in answers] == [T - 1, 2 * T - 1]
    with torch.inference_mode():
        for w, a in enumerate(answers):
            ref = model(x[w * T : (w + 1) * T].unsqueeze(1))[0].numpy()
            assert isinstance(a, EngineAnswer) and a.frames_in_window == T
            np.testing.assert_allclose(a.logits, ref, rtol=0, atol=1e-5)
            assert a.class_id == int(np.argmax(a.probs)) and a.confidence == pytest.approx(a.probs.max())
            assert a.probs.sum() == pytest.approx(1.0, abs=1e-6)
            assert a.step_ms > 0 and 0 < a.spike_rate < 1


@pytest.mark.parametrize(("name", "T"), [("sglformer-3-256", 4), ("saformer-2-256", 4), ("spikingresformer-dvsg", 8)])
def test_staggered_equals_window_started_at_offset(name, T, batch_invariant_cpu):
    K = 4
    stride = T // K
    model = small_model(name, T)
    n = T + 3 * stride
    x = frames_for(model, n, seed=11)
    stag = TorchEngine(copy.deepcopy(model), device="cpu", policy=f"staggered:{K}")
    answers = []
    for t in range(n):
        got = stag.feed(x[t])  # torch input
        assert len(got) == (1 if t + 1 >= T and (t + 1) % stride == 0 else 0)
        answers += got
    assert len(answers) == 4
    ref_engine = TorchEngine(model, device="cpu", policy="window")
    for a in answers:
        start = a.frame_index + 1 - T
        ref_engine.reset()
        ref = [r for t in range(start, start + T) for r in ref_engine.feed(x[t])]
        assert len(ref) == 1
        np.testing.assert_allclose(a.logits, ref[0].logits, rtol=0, atol=1e-5)
        assert a.class_id == ref[0].class_id and a.frames_in_window == T


def test_persistent_answers_every_frame_and_never_resets():
    T = 4
    model = small_model("saformer-2-256", T)
    x = frames_for(model, T + 2)
    eng = TorchEngine(copy.deepcopy(model), device="cpu", policy="persistent")
    answers = [eng.feed(x[t])[0] for t in range(T + 2)]
    assert [a.frames_in_window for a in answers] == list(range(1, T + 3))
    with torch.inference_mode():
        model.reset()
        refs = [model.step(x[t : t + 1])[0].numpy() for t in range(T + 2)]
    for a, r in zip(answers, refs, strict=True):
        np.testing.assert_allclose(a.logits, r, rtol=0, atol=1e-6)
    eng.reset()
    np.testing.assert_allclose(eng.feed(x[0])[0].logits, refs[0], rtol=0, atol=1e-6)


def test_engine_errors():
    model = create_model("spikingresformer-dvsg", T=4)
    with pytest.raises(ValueError, match="divide"):
        TorchEngine(model, device="cpu", policy="staggered:3")
    eng = TorchEngine(model, device="cpu")
    assert eng.device.type == "cpu" and eng.batch == 1
    with pytest.raises(ValueError, match="does not match"):
        eng.feed(np.zeros((2, 128, 128), np.float32))
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA"):
            TorchEngine(model, device="cuda")
        assert TorchEngine(model, device="auto").device.type == "cpu"


def test_changing_K_keeps_the_rows_that_stay(batch_invariant_cpu):
    """staggered:8 -> 4 -> 8 in the middle of a stream (what --policy auto does): between the changes the answers
    are exactly those of an engine that ran staggered:4 all along; after going back up, the kept rows answer as
    staggered:8 would, the new rows only once they have seen a whole window, and then all of them."""
    torch.manual_seed(0)
    model = create_model("saformer-2-256", T=8, embed_dims=[32], num_heads=[2], input_size=[32, 32])  # small: fast
    calibrate_bn(model, synthetic_frames(8, 2, model.cfg.input_size, 100, seed=1))
    frames = synthetic_frames(40, 1, model.cfg.input_size, 100, seed=2)[:, 0]
    switching, four, eight = (TorchEngine(copy.deepcopy(model), device="cpu", policy=p)
                              for p in ("staggered:8", "staggered:4", "staggered:8"))
    got, want4, want8 = {}, {}, {}
    for t in range(40):
        if t in (13, 27):
            switching.set_staggered(4 if t == 13 else 8)
        for engine, out in ((switching, got), (four, want4), (eight, want8)):
            for answer in engine.feed(frames[t]):
                out[t] = answer.logits
    assert switching.policy_text == "staggered:8" and switching.batch == 8
    middle = [t for t in got if 13 <= t < 27]
    assert middle == [t for t in want4 if 13 <= t < 27] and len(middle) == 7  # an answer every 2 frames
    assert all(np.array_equal(got[t], want4[t]) for t in middle)
    after = [t for t in got if t >= 27]
    assert after == [27, 29, 31, 33, 34, 35, 36, 37, 38, 39]  # new rows answer once a window is whole
    assert all(np.array_equal(got[t], want8[t]) for t in after)
    with pytest.raises(ValueError, match="divide"):
        switching.set_staggered(3)
