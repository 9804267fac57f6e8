"""Small layers shared by the architectures; all take time-major ``[T, B, ...]`` tensors."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..snn.state import Stateful


def seq(fn, x: Tensor) -> Tensor:
    """Apply a stateless per-sample op to ``[T, B, ...]`` by folding T into the batch (as SpikingJelly's
    ``SeqToANNContainer``); training-mode BN statistics therefore pool over T*B like the reference code."""
    y = fn(x.flatten(0, 1))
    # reshape, not unflatten: PyTorch's ONNX tracer loses the dynamic batch size through ``unflatten`` and
    # would bake the tracing batch into every later reshape (evapp export); the result is the same view
    return y.reshape(x.shape[:2] + y.shape[1:])


class MatMul(nn.Module):
    """``a @ b`` as a module, so diagnostics (synaptic-op counting in evapp.bench.model) can hook it."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return a @ b


class RunningMean(Stateful, nn.Module):
    """Streaming readout for heads that average per-step logits over T: running sum + count per row.

    ``value`` = sum / max(count, 1), so a reset row reads zeros until its first step."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.register_buffer("sum", None, persistent=False)
        self.register_buffer("count", None, persistent=False)

    def update(self, logits_seq: Tensor) -> Tensor:
        """Add ``[T, B, K]`` per-step logits; return the running mean ``[B, K]``."""
        part = logits_seq.detach().sum(0)
        if self.sum is None:
            self.sum = part
            self.count = torch.full((part.shape[0],), float(logits_seq.shape[0]), device=part.device)
        else:
            self.sum = self.sum + part
            self.count = self.count + logits_seq.shape[0]
        return self.sum / self.count.clamp(min=1.0).unsqueeze(1)

    def reset(self) -> None:
        self.sum = None
        self.count = None

    def reset_rows(self, keep: Tensor) -> None:
        if self.sum is not None:
            keep = keep.to(self.sum.dtype)
            self.sum = self.sum * keep.unsqueeze(1)
            self.count = self.count * keep

    def state_tensors(self):
        return [self.sum, self.count]

    def load_state_tensors(self, tensors) -> None:
        self.sum, self.count = tensors
