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


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` whose gradient-free CPU forward runs in channels-last layout: PyTorch's CPU kernel for
    contiguous tensors is several times slower than its channels-last one (README, ``evapp bench model``), and a
    maximum is exact in any layout, so the answers are the same bits. With a gradient to keep, under tracing
    (ONNX export) or compiling, on other devices, and for an input already in channels-last layout (a training
    step on the CPU runs in it, ``evapp.train.loop``) it is the stock layer."""

    def forward(self, x: Tensor) -> Tensor:
        if (x.device.type != "cpu" or x.dim() != 4 or (torch.is_grad_enabled() and x.requires_grad)
                or x.is_contiguous(memory_format=torch.channels_last)
                or torch.jit.is_tracing() or torch.compiler.is_compiling()):
            return super().forward(x)
        return super().forward(x.contiguous(memory_format=torch.channels_last)).contiguous()


class MatMul(nn.Module):
    """``a @ b`` as a module, so diagnostics (synaptic-op counting in evapp.bench.model) can hook it."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return a @ b


class SlidingMean(Stateful, nn.Module):
    """Streaming readout for heads that average per-step logits over T: the mean of the last T per-step logits.

    From a reset it is the running mean, i.e. exactly what a T-frame window answers (architectures.md 2.6,
    3.4, 4.2). Past T steps it slides instead of averaging the whole stream, which is what continuous-stream
    training optimises (``SpikingClassifier.sliding_logits``), so the ``persistent`` policy answers as trained.
    State per row: the last T logits (a shift register; a reset row is zeros) and how many of them are real."""

    def __init__(self, num_classes: int, T: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.T = T
        self.register_buffer("last", None, persistent=False)  # [B, T, K], newest last
        self.register_buffer("count", None, persistent=False)  # [B] real entries, at most T (float)

    def update(self, logits_seq: Tensor) -> Tensor:
        """Add ``[L, B, K]`` per-step logits; return the mean of the last T ``[B, K]``."""
        new = logits_seq.detach().transpose(0, 1)
        if self.last is None:
            self.last = new.new_zeros(new.shape[0], self.T, new.shape[2])
            self.count = new.new_zeros(new.shape[0])
        self.last = torch.cat([self.last, new], 1)[:, -self.T :]
        self.count = (self.count + logits_seq.shape[0]).clamp(max=float(self.T))
        return self.last.sum(1) / self.count.clamp(min=1.0).unsqueeze(1)

    def reset(self) -> None:
        self.last = None
        self.count = None

    def reset_rows(self, keep: Tensor) -> None:
        if self.last is not None:
            keep = keep.to(self.last.dtype)
            self.last = self.last * keep.view(-1, 1, 1)
            self.count = self.count * keep

    def state_tensors(self):
        return [self.last, self.count]

    def load_state_tensors(self, tensors) -> None:
        self.last, self.count = tensors
