"""The compiled TorchEngine compiles once (no recompile per step) and matches eager; the CUDA-graph path.

The recompile bug was a guard on Python numbers: spike recording mutated an int attribute in every step
(``spike_elems += s.numel()``), so torch.compile recompiled each step. Guards and recompiles are decided by
TorchDynamo whatever the backend, so the always-run test uses the ``aot_eager`` backend (seconds); the same
check with inductor, which compiles C++ with gcc (about a minute on a small 2-core machine), runs when
EVAPP_SLOW_TESTS=1.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch

from evapp.engine import TorchEngine
from evapp.nets import calibrate_bn, create_model
from evapp.testing import synthetic_frames


def tiny_model():
    """SAFormer with every knob small (T=2, D=32, one block, 32x32 input): the same code paths, fast."""
    torch.manual_seed(0)
    m = create_model("saformer-2-256", T=2, embed_dims=(32,), depths=(1,), input_size=(32, 32), extra={"agg": 2})
    calibrate_bn(m, synthetic_frames(2, 2, (32, 32), 300, seed=1))
    return m


def run_compiled(backend: str, policy: str = "staggered:2", steps: int = 7) -> None:
    import torch._dynamo

    torch._dynamo.reset()
    model = tiny_model()
    frames = synthetic_frames(steps, 1, (32, 32), 300, seed=2)[:, 0]
    eager = TorchEngine(copy.deepcopy(model), device="cpu", policy=policy)
    compiled = TorchEngine(copy.deepcopy(model), device="cpu", policy=policy, compile=backend)
    torch._dynamo.utils.counters.clear()
    answers = 0
    with torch._dynamo.config.patch(error_on_recompile=True):
        for t in range(steps):
            if t == 4:  # a full reset between steps: still no recompile
                eager.reset()
                compiled.reset()
            for a, b in zip(eager.feed(frames[t]), compiled.feed(frames[t]), strict=True):
                answers += 1
                np.testing.assert_allclose(b.logits, a.logits, rtol=0, atol=1e-5)
                assert b.spike_rate == pytest.approx(a.spike_rate)  # recording stays on when compiled
    assert answers >= 3
    assert compiled._compiled, "the compiled step fell back to eager (a recompile or a compile error)"
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1


def test_compiled_step_compiles_once():
    run_compiled("aot_eager")


@pytest.mark.skipif(os.environ.get("EVAPP_SLOW_TESTS") != "1",
                    reason="needs EVAPP_SLOW_TESTS=1 (inductor's C++ compile takes about a minute on 2 cores)")
def test_inductor_step_compiles_once():
    run_compiled("inductor", policy="window")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("policy,precision", [("window", "fp32"), ("staggered:2", "fp32"), ("staggered:2", "fp16")])
def test_cuda_graph_matches_eager(policy, precision):
    model = tiny_model()
    frames = synthetic_frames(7, 1, (32, 32), 300, seed=2)[:, 0]
    eager = TorchEngine(copy.deepcopy(model), device="cuda", policy=policy, precision=precision)
    graphed = TorchEngine(copy.deepcopy(model), device="cuda", policy=policy, cuda_graph=True, precision=precision)
    answers = 0
    for t in range(7):
        if t == 4:
            eager.reset()
            graphed.reset()
        for a, b in zip(eager.feed(frames[t]), graphed.feed(frames[t]), strict=True):
            answers += 1
            np.testing.assert_allclose(b.logits, a.logits, rtol=0, atol=1e-4)
            assert b.spike_rate is None and b.frame_index == a.frame_index
    assert answers >= 3 and graphed._graph is not None


def test_half_precision_runs_the_step_under_autocast():
    """bf16 (the CPU's half precision) changes the logits a little, compiled or not; fp16 and tf32 want CUDA."""
    import torch._dynamo

    torch._dynamo.reset()
    model = tiny_model()
    frames = synthetic_frames(7, 1, (32, 32), 300, seed=2)[:, 0]
    exact = TorchEngine(copy.deepcopy(model), device="cpu", policy="persistent")
    half = TorchEngine(copy.deepcopy(model), device="cpu", policy="persistent", precision="bf16")
    half_compiled = TorchEngine(copy.deepcopy(model), device="cpu", policy="persistent", precision="bf16",
                                compile="aot_eager")
    diffs = []
    for t in range(7):
        (a,), (b,), (c,) = exact.feed(frames[t]), half.feed(frames[t]), half_compiled.feed(frames[t])
        diffs.append(np.abs(a.logits - b.logits).max())
        np.testing.assert_allclose(c.logits, b.logits, rtol=0, atol=1e-4)  # compile traces the autocast too
        assert np.abs(a.probs - b.probs).max() < 0.1
    assert max(diffs) > 1e-3, "bf16 gave fp32's logits: autocast is not applied"
    assert half_compiled._compiled
    for precision in ("fp16", "tf32"):
        with pytest.raises(ValueError, match="needs a CUDA device"):
            TorchEngine(copy.deepcopy(model), device="cpu", precision=precision)
    with pytest.raises(ValueError, match="must be one of"):
        TorchEngine(copy.deepcopy(model), device="cpu", precision="int8")


def test_cli_precision_choices_are_the_engines():
    from evapp.cli.options import PRECISION_CHOICES
    from evapp.engine.torch_engine import PRECISIONS

    assert PRECISION_CHOICES == PRECISIONS
