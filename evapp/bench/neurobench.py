"""NeuroBench's metrics of a streaming model, computed by the ``neurobench`` package's own metric classes on
evapp's frames (Yik et al., "The neurobench framework for benchmarking neuromorphic computing algorithms and
systems", Nature Communications 16, 2025; neurobench 2.x).

The harness wraps a model as a ``NeuroBenchModel``: ``__call__(batch)`` runs inference and hooks on the network's
activation layers and connection layers (``nn.Linear``, ``nn.Conv1d/2d/3d``, RNN cells) record what the metrics
count. evapp's models are stateful: :class:`StreamingModel` runs a sample of S frames as S ``step`` calls from
reset, the membrane state carried from step to step exactly as the ``persistent`` policy carries it, and
registers evapp's spiking neurons (``BaseNode``) as the activation layers. What the harness's definitions then
mean here:

- footprint (``Footprint``): bytes of parameters and buffers (evapp's 16-byte spike counters of each neuron layer
  among them), measured after a reset; evapp adds the streaming state of one stream (membranes, the readout's
  buffers), which a reset model does not hold yet;
- activation sparsity (``ActivationSparsity``): zeros / all outputs of the neurons over every step of every sample,
  i.e. 1 - spikes / neuron-steps;
- synaptic operations (``SynapticOperations``): per connection layer and step, the input binarised times the
  weights binarised (effective ops: non-zero input x non-zero weight, bias excluded), an AC when the layer's input
  holds only 0 / +-1, else a MAC; dense = every weight x every input. The attention products of two activations
  (evapp's ``MatMul``) are not connection layers to the harness and are not counted; neither are BatchNorm and
  pooling. evapp's own energy model (``evapp.bench.model.op_counts``) counts those and weights spike sums by count.
  Reported per sample (S frames) as the harness does, and per frame (/ S).
- model execution rate: NeuroBench's rate of model executions per second of input; at a policy it is the
  stream's frame rate times the rows a frame runs (``staggered:K``: K; ``window`` and ``persistent``: 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from evapp.snn.neurons import BaseNode
from evapp.snn.state import get_state


def _base_model_class():
    from neurobench.models import NeuroBenchModel

    return NeuroBenchModel


def streaming_model(net: nn.Module):
    """``net`` (with ``step(frame [B, 2, H, W])`` and ``reset()``) as a NeuroBench model: a batch
    ``[B, S, 2, H, W]`` is S steps from reset; the answer is the last step's logits."""
    base = _base_model_class()

    class StreamingModel(base):
        def __init__(self, net: nn.Module):
            super().__init__()
            self.net = net.eval()
            self.add_activation_module(BaseNode)  # evapp's spiking neurons are the activation layers

        def __call__(self, batch: torch.Tensor) -> torch.Tensor:
            self.net.reset()
            with torch.inference_mode():
                for s in range(batch.shape[1]):
                    out = self.net.step(batch[:, s])
            return out

        def __net__(self) -> nn.Module:
            return self.net

    return StreamingModel(net)


@dataclass(frozen=True)
class NeuroBenchResult:
    footprint_bytes: int  # NeuroBench Footprint: parameters + buffers
    state_bytes: int  # one stream's membranes and readout buffers
    activation_sparsity: float
    effective_macs_per_sample: float
    effective_acs_per_sample: float
    dense_ops_per_sample: float
    frames_per_sample: int
    samples: int
    execution_rate_hz: float | None  # model executions per second of the input stream at the policy
    policy: str | None
    frames: str  # what the frames were

    def to_dict(self) -> dict:
        s = self.frames_per_sample
        return {
            "footprint_bytes": self.footprint_bytes, "state_bytes": self.state_bytes,
            "footprint_with_state_bytes": self.footprint_bytes + self.state_bytes,
            "activation_sparsity": round(self.activation_sparsity, 5),
            "effective_macs_per_sample": round(self.effective_macs_per_sample),
            "effective_acs_per_sample": round(self.effective_acs_per_sample),
            "dense_ops_per_sample": round(self.dense_ops_per_sample),
            "effective_macs_per_frame": round(self.effective_macs_per_sample / s),
            "effective_acs_per_frame": round(self.effective_acs_per_sample / s),
            "dense_ops_per_frame": round(self.dense_ops_per_sample / s),
            "frames_per_sample": s, "samples": self.samples,
            "execution_rate_hz": None if self.execution_rate_hz is None else round(self.execution_rate_hz, 1),
            "policy": self.policy, "frames": self.frames,
        }


def state_bytes(net: nn.Module, sample: torch.Tensor) -> int:
    """Bytes of one stream's state after a step (the neurons size their membranes on the first input)."""
    net.reset()
    with torch.inference_mode():
        net.step(sample[:1, 0])
    size = sum(t.numel() * t.element_size() for t in get_state(net))
    net.reset()
    return int(size)


def neurobench_metrics(net: nn.Module, samples: torch.Tensor, *, execution_rate_hz: float | None = None,
                       policy: str | None = None, frames: str = "") -> NeuroBenchResult:
    """NeuroBench's footprint, activation sparsity and synaptic operations of ``net`` over ``samples``
    ``[N, S, 2, H, W]`` (each sample S consecutive frames, run from reset), one sample per harness call."""
    from neurobench.metrics.static import Footprint
    from neurobench.metrics.workload import ActivationSparsity, SynapticOperations

    model = streaming_model(net)
    net.reset()  # membranes are buffers once sized: the footprint is the model's own, the state is counted apart
    footprint = int(Footprint()(model))
    synops = SynapticOperations()
    sparsities = []
    model.register_hooks()
    try:
        for sample in samples:
            batch = sample.unsqueeze(0)
            data = (batch, torch.zeros(1, dtype=torch.long))
            preds = model(batch)
            sparsities.append(ActivationSparsity()(model, preds, data))
            synops(model, preds, data)
            model.reset_hooks()
    finally:
        model.cleanup_hooks()
    ops = synops.compute()
    # every sample has as many neuron outputs, so the mean of the samples' sparsities is the harness's over all
    return NeuroBenchResult(footprint, state_bytes(net, samples[0:1]), float(np.mean(sparsities)),
                            float(ops["Effective_MACs"]), float(ops["Effective_ACs"]), float(ops["Dense"]),
                            int(samples.shape[1]), int(samples.shape[0]), execution_rate_hz, policy, frames)


def recording_samples(path, spec, frames_per_sample: int, max_samples: int = 11):
    """Samples of ``frames_per_sample`` consecutive frames binned from a labelled recording as the live binner
    bins it, one from the middle of each labelled gesture (at most ``max_samples``); and the stream's frame
    rate (frames per second of recording)."""
    from evapp.errors import InputError
    from evapp.events import labels_at
    from evapp.sources import open_source

    source = open_source(path)
    binner = spec.binner(source.geometry, None)
    counts, t_end = [], []
    for batch in source.batches():
        done = binner.push(batch)
        counts.extend(done.counts)
        t_end.extend(done.t_end_us.tolist())
    info = source.info()
    if len(counts) < frames_per_sample:
        raise InputError(f"{path} makes {len(counts)} frames of {spec.events_per_frame} events, fewer than the "
                         f"{frames_per_sample} a sample needs.")
    t_end = np.asarray(t_end, np.int64)
    truth = labels_at(t_end, source.labels) if source.labels else np.full(t_end.shape, -1)
    starts = []
    for lab in source.labels[:max_samples]:
        inside = np.flatnonzero(truth == lab.class_id)
        inside = inside[(t_end[inside] >= lab.start_us) & (t_end[inside] < lab.end_us)]
        if inside.size >= frames_per_sample:
            starts.append(int(inside[(inside.size - frames_per_sample) // 2]))
    if not starts:  # unlabelled: evenly spaced
        starts = np.linspace(0, len(counts) - frames_per_sample, min(max_samples, len(counts) // frames_per_sample),
                             dtype=int).tolist()
    stack = np.stack([np.stack(counts[s:s + frames_per_sample]) for s in starts]).astype(np.float32)
    frame_rate = len(counts) / max((info.duration_us or 1) / 1e6, 1e-6)
    return torch.from_numpy(stack), frame_rate
