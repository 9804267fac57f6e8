"""NeuroBench's metrics through its own classes on evapp's streaming step: footprint, activation sparsity and
synaptic operations checked against counts by hand on a small network, and through `evapp bench model`."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from evapp.bench.neurobench import neurobench_metrics
from evapp.cli.main import main
from evapp.snn.neurons import LIF
from evapp.snn.state import reset_state


class ConvLifLinear(nn.Module):
    """2x8x8 frames -> conv 3x3 (4 channels, padding 1) -> BatchNorm -> LIF -> linear to 3 classes."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.lif = LIF(step_mode="s")
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def reset(self) -> None:
        reset_state(self)

    def step(self, frame: torch.Tensor) -> torch.Tensor:
        return self.fc(self.lif(self.bn(self.conv(frame))).flatten(1))


def test_footprint_state_and_synaptic_operations_match_a_count_by_hand():
    net = ConvLifLinear().eval()
    frames = torch.full((1, 2, 2, 8, 8), 4.0)  # one sample of 2 steps; counts of 4 are not spikes: MACs
    spikes = []
    handle = net.lif.register_forward_hook(lambda m, i, out: spikes.append(out.clone()))
    result = neurobench_metrics(net, frames)
    handle.remove()
    # parameters: conv 4*2*3*3 + 4, BatchNorm 4 + 4, linear 3*256 + 3 (float32); buffers: BatchNorm's running mean
    # and variance (4 + 4 float32) and batch count (int64), the LIF's two float64 spike counters
    params = (72 + 4) + (4 + 4) + (768 + 3)
    assert result.footprint_bytes == 4 * params + 4 * 8 + 8 + 2 * 8
    assert result.state_bytes == 4 * 4 * 8 * 8  # the membrane of one stream: [1, 4, 8, 8] float32
    # dense: every weight times every input the kernel covers (22 = 2 + 3 * 6 + 2 valid taps per row with
    # padding), per step, two steps per sample; the linear layer 256 x 3
    dense_per_step = 22 * 22 * 2 * 4 + 256 * 3
    assert result.dense_ops_per_sample == 2 * dense_per_step
    assert result.effective_macs_per_sample == 2 * 22 * 22 * 2 * 4  # every input non-zero, every weight non-zero
    fired = sum(int(s.sum()) for s in spikes[:2])  # the sample's two steps (then a step that sizes the state)
    assert 0 < fired < 2 * 256
    assert result.effective_acs_per_sample == 3 * fired  # a spike reaches the 3 outputs: 3 accumulates


def test_activation_sparsity_is_one_minus_spikes_over_neuron_steps():
    from evapp.nets import create_model
    from evapp.snn.neurons import BaseNode
    from evapp.testing import synthetic_frames

    model = create_model("saformer-2-256", embed_dims=[32], num_heads=[2], input_size=[32, 32], T=2).eval()
    frames = synthetic_frames(2, 1, (32, 32), 150, seed=1).transpose(0, 1)  # [1 sample, 2 steps, 2, 32, 32]
    counted = {"spikes": 0, "neurons": 0}

    def record(module, inputs, out):
        counted["spikes"] += int((out != 0).sum())
        counted["neurons"] += out.numel()

    result = neurobench_metrics(model, frames)  # the harness's own hooks
    handles = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, BaseNode)]
    model.reset()
    with torch.inference_mode():
        for s in range(frames.shape[1]):
            model.step(frames[0, s : s + 1])
    for h in handles:
        h.remove()
    assert counted["neurons"] > 0 and 0 < counted["spikes"] < counted["neurons"]
    assert result.activation_sparsity == pytest.approx(1 - counted["spikes"] / counted["neurons"], abs=1e-12)


def test_bench_model_reports_neurobench_metrics_of_a_shipped_model(shipped_models, capfd):
    assert main(["bench", "model", "saformer-2-256", "--batch", "1", "--iters", "2", "--warmup", "0", "--json"]) == 0
    row = json.loads(capfd.readouterr().out)["models"][0]
    harness = row["neurobench"]
    assert row["weights"] == "trained (artifact)" and harness["policy"] == "persistent"
    assert harness["samples"] == 11 and harness["frames_per_sample"] == 8  # one T-frame clip per demo gesture
    assert harness["footprint_bytes"] > 4 * row["params"] and 0.5 < harness["activation_sparsity"] < 1
    assert harness["dense_ops_per_frame"] * 8 == pytest.approx(harness["dense_ops_per_sample"], abs=8)
    assert 0 < harness["effective_acs_per_frame"] < harness["dense_ops_per_frame"]
    assert harness["execution_rate_hz"] > 1  # the demo's frames per second at one step per frame
