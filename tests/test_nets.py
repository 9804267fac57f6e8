"""Models: registry, parameter counts, streaming equivalence, state round trip, SGLFormer ring buffer."""

import json

import pytest
import torch

from evapp.events import GESTURE_CLASSES
from evapp.nets import ModelConfig, calibrate_bn, count_params, create_model, get_config, list_models
from evapp.snn import BaseNode, get_state, set_state, state_specs, zero_state
from evapp.testing import synthetic_frames

MODELS = ["sglformer-3-256", "saformer-2-256", "spikingresformer-dvsg"]


def small_model(name, T=4, seed=0):
    """Untrained model with BN statistics calibrated on Poisson frames, so that neurons really fire."""
    torch.manual_seed(seed)
    m = create_model(name, T=T)
    calibrate_bn(m, synthetic_frames(T, 2, m.cfg.input_size, m.cfg.events_per_frame, seed=seed + 100))
    return m


def test_registry():
    assert set(MODELS) <= set(list_models())
    cfg = get_config("sglformer-3-256")
    assert cfg.num_classes == 11 and cfg.class_names == GESTURE_CLASSES and cfg.T == 16
    assert cfg.input_size == (128, 128) and cfg.in_channels == 2
    assert get_config("spikingresformer-dvsg").input_size == (64, 64)
    for name in MODELS:
        c = get_config(name)
        assert ModelConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    with pytest.raises(KeyError, match="unknown model"):
        create_model("resnet-50")
    with pytest.raises(TypeError, match="override"):
        get_config("saformer-2-256", depth=3)
    assert get_config("saformer-2-256", extra={"agg": 2}).extra == {"pool_after": (1, 2, 3, 4), "agg": 2}


@pytest.mark.parametrize(
    ("name", "T", "expected"),
    [
        ("sglformer-3-256", 16, 4_164_691),  # released code, architectures.md 1.5
        ("sglformer-3-256", 10, 4_066_387),
        ("saformer-2-256", 16, 2_437_387),  # reconstruction, evapp/nets/saformer.py docstring
        ("spikingresformer-dvsg", 16, 2_709_830),  # analytic count, evapp/nets/spikingresformer.py
    ],
)
def test_param_count(name, T, expected):
    assert count_params(create_model(name, T=T)) == expected


def test_spikingresformer_close_to_reference_count():
    assert abs(count_params(create_model("spikingresformer-dvsg")) - 2.71e6) / 2.71e6 < 0.01


def _record_spikes(model):
    rec = {}
    hooks = [
        m.register_forward_hook(lambda mod, i, o, n=n: rec.setdefault(n, []).append(o.clone()))
        for n, m in model.named_modules()
        if isinstance(m, BaseNode)
    ]
    return rec, hooks


@pytest.mark.parametrize("name", MODELS)
def test_streaming_equals_multistep(name):
    T = 4
    model = small_model(name, T)
    x = synthetic_frames(T, 2, model.cfg.input_size, model.cfg.events_per_frame, seed=1)
    rec, hooks = _record_spikes(model)
    with torch.inference_mode():
        clip = model(x)
        multi = {n: v[0] for n, v in rec.items()}
        rec.clear()
        model.reset()
        for t in range(T):
            streamed = model.step(x[t])
    for h in hooks:
        h.remove()
    assert clip.shape == (2, 11)
    total = 0.0
    for n, s in multi.items():
        single = torch.cat(rec[n])  # T calls of [1, B, ...]
        assert torch.equal(single, s), f"spikes differ in {n}"
        total += s.sum().item()
    assert total > 0
    torch.testing.assert_close(streamed, clip, rtol=0, atol=1e-5)
    if name != "sglformer-3-256":
        per_step = model.forward_per_step(x)
        assert per_step.shape == (T, 2, 11)
        torch.testing.assert_close(per_step.mean(0), clip, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_full_size_forward(name):
    model = create_model(name).eval()
    T = model.cfg.T
    x = synthetic_frames(T, 1, model.cfg.input_size, model.cfg.events_per_frame, seed=2)
    with torch.inference_mode():
        out = model(x)
    assert out.shape == (1, 11) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS)
def test_state_roundtrip(name):
    model = small_model(name, T=4)
    x = synthetic_frames(4, 2, model.cfg.input_size, model.cfg.events_per_frame, seed=3)
    specs = state_specs(model, 2)
    with torch.inference_mode():
        model.step(x[0])
        model.step(x[1])
        saved = [t.clone() for t in get_state(model)]
        assert [tuple(t.shape) for t in saved] == [s.shape for s in specs]
        a = [model.step(x[2]), model.step(x[3])]
        set_state(model, saved)
        b = [model.step(x[2]), model.step(x[3])]
        # a zero state is the same as a reset
        set_state(model, zero_state(model, 2))
        z = model.step(x[0])
        model.reset()
        r = model.step(x[0])
    for u, v in zip(a, b, strict=True):
        assert torch.equal(u, v)
    assert torch.equal(z, r)


def test_state_order_is_deterministic():
    names = [s.name for s in state_specs(create_model("saformer-2-256", T=2), 1)]
    assert names == [s.name for s in state_specs(create_model("saformer-2-256", T=2), 1)]
    assert names[0].startswith("sps.") and names[-2:] == ["readout.0", "readout.1"]


def test_sglformer_ring_buffer():
    T = 4
    model = small_model("sglformer-3-256", T)
    x = synthetic_frames(T + 2, 1, (128, 128), seed=4)
    with torch.inference_mode():
        model.reset()
        partial = [model.step(x[t]) for t in range(T + 2)]
        buf_prev = None
        # before T frames: the answer is the head over the frames seen so far, zeros for the rest
        for k in (1, 3):
            torch.testing.assert_close(partial[k - 1], model(x[:k]), rtol=0, atol=1e-5)
        model.reset()
        for t in range(T + 1):
            model.step(x[t])
            if t == T - 1:
                buf_prev = model.head.buf.clone()
        # after T frames the buffer slides: oldest first, newest last
        assert torch.equal(model.head.buf[..., :-1], buf_prev[..., 1:])
    with pytest.raises(ValueError, match="at most T"):
        model(x)


def test_training_step_backpropagates():
    model = create_model("sglformer-3-256", T=2).train()
    x = synthetic_frames(2, 2, (128, 128), seed=5)
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 3]))
    loss.backward()
    assert model.stem.conv.weight.grad is not None and model.stem.conv.weight.grad.abs().sum() > 0


def test_input_shape_checked():
    model = create_model("spikingresformer-dvsg", T=2)
    with pytest.raises(ValueError, match=r"\[B, 2, 64, 64\]"):
        model.step(torch.zeros(1, 2, 128, 128))


@pytest.mark.parametrize("name", ["sglformer-3-256", "saformer-2-256"])
def test_sliding_logits_match_the_streaming_answers_beyond_the_first_window(name):
    """What continuous-stream training optimises is what the persistent policy answers, over 3T steps."""
    torch.manual_seed(0)
    model = create_model(name, T=3, embed_dims=(32,), num_heads=(2,), input_size=(32, 32)).eval()
    x = (torch.rand(9, 2, 2, 32, 32) < 0.1).float()
    with torch.no_grad():
        model.reset()
        sliding = model.sliding_logits(x)
        model.reset()
        stepped = torch.stack([model.step(frame) for frame in x])
    assert torch.allclose(sliding, stepped, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_channels_last_max_pool_gives_the_stock_layers_bits(dtype):
    """The models' MaxPool2d takes another memory layout without a gradient to keep; its answer must not change,
    ties included (sparse event frames after a convolution are mostly one constant value)."""
    from evapp.nets.layers import MaxPool2d

    x = synthetic_frames(4, 3, (64, 48), 300, seed=1).flatten(0, 1).to(dtype)
    x = torch.nn.functional.conv2d(x, torch.randn(8, 2, 3, 3, dtype=dtype), padding=1)
    ours, stock = MaxPool2d(3, 2, 1), torch.nn.MaxPool2d(3, 2, 1)
    with torch.no_grad():
        fast = ours(x)
    assert fast.is_contiguous() and fast.dtype == dtype
    assert torch.equal(fast, stock(x))
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ours(a).square().sum().backward()
    stock(b).square().sum().backward()
    assert torch.equal(a.grad, b.grad)
