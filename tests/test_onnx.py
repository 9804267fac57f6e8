"""ONNX export and the ONNX Runtime engine (CPU provider) against torch, for all three models.

Each model is built with the config override T=4 (so that 3T = 12 steps stays fast; the exported step does not
depend on T except through SGLFormer's ring buffer length), BN-calibrated so that its neurons fire, and
exported once per module. Frames are small sparse random count frames (a few hundred events).

Spikes are compared exactly through the exported per-layer spike counts. Equality is what the arithmetic
gives here, not a law: ORT's kernels sum in another order than oneDNN's (~1e-7 relative), so a neuron
sitting within ~1e-7 of its threshold could in principle fire in one and not the other. Batch 1 and sparse
frames keep that away; a larger batch on dense frames was seen to flip one attention neuron in 4 x 12 steps.
"""

from __future__ import annotations

import copy
import functools
import json

import numpy as np
import pytest
import torch

from evapp.cli.main import main
from evapp.engine import TorchEngine
from evapp.engine.export import StepWrapper, export_step
from evapp.engine.onnx_engine import OnnxEngine
from evapp.nets import calibrate_bn, create_model
from evapp.snn.state import state_specs
from evapp.testing import synthetic_frames

MODELS = ["sglformer-3-256", "saformer-2-256", "spikingresformer-dvsg"]
T = 4


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Torch on one thread (ORT's CPU engine uses cores - 1 = 1 here): on a busy 2-core machine two spinning
    torch threads made the eager reference steps several times slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@functools.cache
def export_model(name: str):
    """A BN-calibrated model at T=4, its exported step and 3T frames (once per model for the whole file)."""
    torch.manual_seed(0)
    model = create_model(name, T=T)
    calibrate_bn(model, synthetic_frames(T, 2, model.cfg.input_size, model.cfg.events_per_frame, seed=100))
    data, meta = export_step(model)
    frames = synthetic_frames(3 * T, 1, model.cfg.input_size, 400, seed=7)[:, 0]
    return model, data, meta, frames


@pytest.fixture(params=MODELS)
def exported(request):
    return export_model(request.param)


def test_meta_describes_the_graph(exported):
    import onnx

    model, data, meta, _ = exported
    graph = onnx.load_from_string(data).graph
    assert [i.name for i in graph.input] == [i["name"] for i in meta["inputs"]]
    assert [o.name for o in graph.output] == [o["name"] for o in meta["outputs"]]
    n_state = len(state_specs(model, 1))
    assert len(meta["inputs"]) == 1 + n_state and len(meta["outputs"]) == 2 + n_state
    assert meta["opset"] == 17 and meta["config"]["T"] == T
    for inp in graph.input:  # dynamic batch axis on every input
        assert inp.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert len(meta["spike_layers"]) == len(meta["spike_neurons"]) == meta["outputs"][-1]["shape"][1]


def test_step_parity_across_reset(exported):
    """3T steps, reset after 1.5T: logits within 1e-4, identical spike counts per layer, state within 1e-4."""
    model, data, meta, frames = exported
    engine = OnnxEngine(data, meta, device="cpu", policy="persistent")
    assert engine.providers == ["CPUExecutionProvider"]
    wrapper = StepWrapper(copy.deepcopy(model)).eval()
    specs = state_specs(model, 1)
    state = [torch.full(s.shape, s.fill) for s in specs]
    total_spikes = 0.0
    for t in range(3 * T):
        if t == 3 * T // 2:
            engine.reset()
            state = [torch.full(s.shape, s.fill) for s in specs]
        with torch.no_grad():
            logits, *state, counts = wrapper(frames[t : t + 1], *state)
        (answer,) = engine.feed(frames[t].numpy())
        np.testing.assert_allclose(answer.logits, logits[0].numpy(), rtol=0, atol=1e-4)
        np.testing.assert_array_equal(engine.last_spike_counts(), counts.numpy())
        for got, want in zip(engine.state(), state, strict=True):
            np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=1e-4)
        total_spikes += float(counts.sum())
    assert total_spikes > 0  # the comparison saw activity


@pytest.mark.parametrize("policy", ["window", "staggered:2"])
def test_policies_match_torch_engine(policy, batch_invariant_cpu):
    """Same answers (frame, logits, class, spike rate) as TorchEngine; staggered:2 at T=4 resets one of the two
    rows every other frame (the per-row reset graph). Run on SAFormer only, to keep the file fast: the policy
    code is the shared StreamingEngine and the reset graph treats every state tensor alike (the ring buffer
    and counters of SGLFormer's head are state tensors like the membranes)."""
    model, data, meta, frames = export_model("saformer-2-256")
    onnx_engine = OnnxEngine(data, meta, device="cpu", policy=policy)
    torch_engine = TorchEngine(copy.deepcopy(model), device="cpu", policy=policy)
    n = 0
    for t in range(3 * T):
        got, want = onnx_engine.feed(frames[t].numpy()), torch_engine.feed(frames[t])
        assert len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            n += 1
            assert (a.frame_index, a.frames_in_window, a.class_id) == (b.frame_index, b.frames_in_window, b.class_id)
            np.testing.assert_allclose(a.logits, b.logits, rtol=0, atol=1e-4)
            assert a.spike_rate == pytest.approx(b.spike_rate, rel=1e-6)
    assert n >= 3


@pytest.fixture
def batch_invariant_cpu():
    """Per-sample convs in torch (see tests/test_torch_engine.py), so batched rows are computed as at batch 1."""
    with torch.backends.mkldnn.flags(enabled=False, allow_tf32=None):
        yield


def test_export_cli_then_replay_with_onnx_engine(tmp_path, capsys, monkeypatch):
    """evapp export writes exactly model.onnx + onnx.json into the artifact folder; replay --engine onnx then
    runs that file and answers like --engine torch."""
    from evapp.events import SensorGeometry
    from evapp.sources.aedat4 import write_aedat4
    from evapp.testing import random_stream

    monkeypatch.setenv("EVAPP_MODELS", str(tmp_path / "models"))
    out = tmp_path / "models" / "saformer-2-256"
    assert main(["export", "saformer-2-256", "--opset", "18"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "onnx.json"]
    meta = json.loads((out / "onnx.json").read_text())
    assert meta["opset"] == 18 and meta["model"] == "saformer-2-256" and meta["config"]["T"] == 16
    assert meta["weights"] == {"file": None, "sha256": None}
    assert json.loads(capsys.readouterr().out)["onnx"] == str(out / "model.onnx")

    rec = tmp_path / "r.aedat4"
    write_aedat4(rec, random_stream(40_000, 128, 128, seed=4), SensorGeometry(128, 128, "DVS128"))
    answers = {}
    for kind in ("onnx", "torch"):
        assert main(["-v", "replay", str(rec), "--headless", "--max-speed", "--model", "saformer-2-256", "-N", "1000",
                     "--policy", "staggered:4", "--device", "cpu", "--engine", kind]) == 0
        captured = capsys.readouterr()
        answers[kind] = [json.loads(line) for line in captured.out.splitlines() if '"prediction"' in line]
        if kind == "onnx":
            assert "CPUExecutionProvider" in captured.err  # the providers used are logged
            assert "exporting" not in captured.err  # the artifact's model.onnx was used
    assert len(answers["onnx"]) == len(answers["torch"]) == (40 - 16) // 4 + 1
    for a, b in zip(answers["onnx"], answers["torch"], strict=True):
        assert a["t_us"] == b["t_us"]
        np.testing.assert_allclose(a["probs"], b["probs"], rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["export", "no-such-model"], "There is no model named"),
        (["export", "saformer-2-256", "--weights", "/nonexistent/w.safetensors"], "does not exist"),
        (["export", "saformer-2-256", "--out", "{file}/sub"], "Cannot create the output folder"),
        (["replay", "x.aedat4", "--model", "saformer-2-256", "--engine", "tensorflow"], "Invalid value"),
    ],
)
def test_export_bad_input(tmp_path, capsys, args, says):
    blocker = tmp_path / "file"
    blocker.write_text("")
    args = [a.replace("{file}", str(blocker)) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    last = err.splitlines()[-1]
    assert says in last and last.startswith("evapp: error:") and "Traceback" not in err
