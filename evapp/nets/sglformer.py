"""SGLFormer-3-256 for DVS128 Gesture (Zhang et al., Front. Neurosci. 2024; papers/000).

The graph is the released code's ``dvs128-gesture/sglformer.py`` as written down in
shared/reference/architectures.md section 1 (not the paper's 2.17M figure, which does not match the code):

- stem Conv3x3(2->42) and a CML tokenizer of four Conv3x3 blocks with conv -> BN -> MaxPool(3,2,1) -> LIF,
  128x128 -> 8x8 = 64 tokens of D=256;
- one stage: LocalBlock (with its double residual, out = 2x + DW(x) + y), local SSA on the dilated 2x2
  partition, two global SSA, an MLP after each SSA; every sub-module ends in a LIF, so the residual stream
  holds small integers;
- STB head: depthwise Conv2d with kernel (64 tokens, T), groups=256, + BN2d + Linear -> one logit vector
  per clip. 4,164,691 parameters at T=16.

Implementation note (no effect on results): q/k/v convs, their BNs and the LIFs are pointwise, so they run
on the unpartitioned map and only the attention products use the partition; the partition is a pure
permutation, so this is the same function (also in training-mode BN) and keeps every neuron's state in
``[B, C, H, W]`` layout, which per-row reset needs.

Streaming: the STB head weighs each frame by its absolute position t = 0..T-1 since reset. ``step`` keeps
the per-frame features ``[B, 256, 64]`` in a ring buffer ``[B, 256, 64, T]`` on the device. Frame k after
a reset is written at position k while k < T; after T frames the buffer slides (oldest at position 0,
newest at T-1). The answer is always the head applied to the buffer. Before T frames have been seen the
missing positions are zeros, i.e. the answer is the online partial sum of the head over the frames seen
so far (architectures.md 1.6) followed by BN and Linear; only the answer after exactly T frames from a
reset is a training-condition answer. ``forward`` accepts T' <= T frames with the same zero-padding.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..snn.neurons import LIF
from ..snn.state import Stateful
from .base import ModelConfig, SpikingClassifier, register_model, trunc_normal_init
from .layers import MatMul, MaxPool2d, seq


class ConvBNLIF(nn.Module):
    """conv(k, s1) -> BN -> [MaxPool(3,2,1) if ``pool``] -> LIF: SGLFormer's Conv3x3/Conv1x1/DWConv (CML)."""

    def __init__(self, cin: int, cout: int, k: int, groups: int = 1, pool: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, 1, k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.pool = MaxPool2d(3, 2, 1) if pool else nn.Identity()
        self.lif = LIF(tau=2.0)

    def forward(self, x: Tensor) -> Tensor:
        return self.lif(seq(lambda z: self.pool(self.bn(self.conv(z))), x))


class MLP(nn.Module):
    def __init__(self, dim: int, ratio: int) -> None:
        super().__init__()
        self.fc1 = ConvBNLIF(dim, dim * ratio, 1)
        self.fc2 = ConvBNLIF(dim * ratio, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.fc1(x))


class LocalBlock(nn.Module):
    """As coded: x1 = x + DW(x); y = 1x1 -> DW(4d) -> 1x1; return y + x1 (the caller adds x again)."""

    def __init__(self, dim: int, ratio: int) -> None:
        super().__init__()
        self.dw = ConvBNLIF(dim, dim, 3, groups=dim)
        self.pw1 = ConvBNLIF(dim, dim * ratio, 1)
        self.dw2 = ConvBNLIF(dim * ratio, dim * ratio, 3, groups=dim * ratio)
        self.pw2 = ConvBNLIF(dim * ratio, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        x1 = x + self.dw(x)
        return self.pw2(self.dw2(self.pw1(x1))) + x1


def _partition(x: Tensor, n: int) -> Tensor:
    """[T,B,C,H,W] -> [T,B*n*n,C,H/n,W/n]; group (h mod n, w mod n): dilated windows, as the released code."""
    T, B, C, H, W = x.shape
    x = x.reshape(T, B, C, H // n, n, W // n, n).permute(0, 1, 4, 6, 2, 3, 5)
    return x.reshape(T, B * n * n, C, H // n, W // n)


def _integrate(x: Tensor, n: int) -> Tensor:
    T, Bg, C, h, w = x.shape
    B = Bg // (n * n)
    x = x.reshape(T, B, n, n, C, h, w).permute(0, 1, 4, 5, 2, 6, 3)
    return x.reshape(T, B, C, h * n, w * n)


class SSA(nn.Module):
    """Spiking self-attention: y = LIF_0.5((q k^T) v * 0.125), out = Conv1x1-BN-LIF(y).

    ``num_hw`` > 1 makes it the local SSA (attention within the dilated n x n partition)."""

    def __init__(self, dim: int, heads: int, num_hw: int = 1, scale: float = 0.125) -> None:
        super().__init__()
        self.heads, self.num_hw, self.scale = heads, num_hw, scale
        self.q = ConvBNLIF(dim, dim, 1)
        self.k = ConvBNLIF(dim, dim, 1)
        self.v = ConvBNLIF(dim, dim, 1)
        self.qk = MatMul()
        self.av = MatMul()
        self.attn_lif = LIF(tau=2.0, v_threshold=0.5)
        self.proj = ConvBNLIF(dim, dim, 1)

    def _heads(self, z: Tensor) -> Tensor:
        T, B, C, H, W = z.shape
        return z.flatten(3).transpose(-1, -2).reshape(T, B, H * W, self.heads, C // self.heads).transpose(2, 3)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.q(x), self.k(x), self.v(x)
        if self.num_hw > 1:
            q, k, v = (_partition(z, self.num_hw) for z in (q, k, v))
        T, Bg, C, H, W = q.shape
        y = self.av(self.qk(self._heads(q), self._heads(k).transpose(-2, -1)), self._heads(v)) * self.scale
        y = y.transpose(2, 3).reshape(T, Bg, H * W, C).transpose(-1, -2).reshape(T, Bg, C, H, W)
        if self.num_hw > 1:
            y = _integrate(y, self.num_hw)
        return self.proj(self.attn_lif(y))


class STBHead(Stateful, nn.Module):
    """Full-size depthwise conv over (tokens, T) + BN2d + Linear, with the streaming ring buffer."""

    def __init__(self, dim: int, tokens: int, T: int, num_classes: int) -> None:
        super().__init__()
        self.T = T
        self.conv = nn.Conv2d(dim, dim, kernel_size=(tokens, T), groups=dim, bias=True)
        self.bn = nn.BatchNorm2d(dim)
        self.fc = nn.Linear(dim, num_classes)
        self.register_buffer("buf", None, persistent=False)  # [B, C, N, T]
        self.register_buffer("count", None, persistent=False)  # [B] frames since reset (float)
        self.register_buffer("_pos", torch.arange(T, dtype=torch.float32), persistent=False)

    def head(self, f: Tensor) -> Tensor:
        """``f``: [B, C, N, T'] with T' <= T (right-padded with zeros) -> logits [B, K]."""
        if f.shape[-1] < self.T:
            f = nn.functional.pad(f, (0, self.T - f.shape[-1]))
        return self.fc(self.bn(self.conv(f)).flatten(1))

    def load_clip(self, feats: Tensor) -> None:
        """Put a multi-step run's features [T', B, C, N] (from reset) into the ring buffer."""
        f = feats.detach().permute(1, 2, 3, 0)
        self.buf = nn.functional.pad(f, (0, self.T - f.shape[-1]))
        self.count = torch.full((f.shape[0],), float(f.shape[-1]), device=f.device)

    def push(self, feat: Tensor) -> Tensor:
        """Add one frame's features [B, C, N]; return the logits for the buffer."""
        feat = feat.detach()
        if self.buf is None:
            B, C, N = feat.shape
            self.buf = feat.new_zeros(B, C, N, self.T)
            self.count = feat.new_zeros(B)
        full = (self.count >= self.T).view(-1, 1, 1, 1)
        buf = torch.where(full, self.buf.roll(-1, dims=-1), self.buf)
        slot = (self._pos == self.count.clamp(max=self.T - 1).unsqueeze(1)).view(-1, 1, 1, self.T)
        self.buf = torch.where(slot, feat.unsqueeze(-1), buf)
        self.count = self.count + 1.0
        return self.head(self.buf)

    def reset(self) -> None:
        self.buf = None
        self.count = None

    def reset_rows(self, keep: Tensor) -> None:
        if self.buf is not None:
            keep = keep.to(self.buf.dtype)
            self.buf = self.buf * keep.view(-1, 1, 1, 1)
            self.count = self.count * keep

    def state_tensors(self):
        return [self.buf, self.count]

    def load_state_tensors(self, tensors) -> None:
        self.buf, self.count = tensors


class SGLFormer(SpikingClassifier):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        d, heads, r = cfg.embed_dims[0], cfg.num_heads[0], cfg.mlp_ratio
        stem = cfg.extra.get("stem_channels", d // 6)  # 42 for D=256, as the released code
        self.stem = ConvBNLIF(cfg.in_channels, stem, 3)
        chans = [stem, d // 4, d // 2, d, d]
        self.tokenizer = nn.Sequential(*[ConvBNLIF(chans[i], chans[i + 1], 3, pool=True) for i in range(4)])
        self.local_block = LocalBlock(d, r)
        num_hw = cfg.extra.get("num_hw", 2)
        self.ssa = nn.ModuleList([SSA(d, heads, num_hw=num_hw), SSA(d, heads), SSA(d, heads)])
        self.mlp = nn.ModuleList([MLP(d, r) for _ in range(3)])
        h, w = cfg.input_size[0] // 16, cfg.input_size[1] // 16
        self.tokens = h * w
        self.head = STBHead(d, self.tokens, cfg.T, cfg.num_classes)
        trunc_normal_init(self)

    def forward_steps(self, x: Tensor) -> Tensor:
        """[T, B, 2, H, W] -> per-frame features [T, B, D, tokens], continuing from the current state."""
        x = self.tokenizer(self.stem(x))
        x = x + self.local_block(x)
        for ssa, mlp in zip(self.ssa, self.mlp, strict=True):
            x = x + ssa(x)
            x = x + mlp(x)
        return x.flatten(3)

    def forward(self, x: Tensor) -> Tensor:
        self._check(x, 5)
        if x.shape[0] > self.cfg.T:
            raise ValueError(f"{self.cfg.name}: the STB head takes at most T={self.cfg.T} frames, got {x.shape[0]}")
        self.reset()
        feats = self.forward_steps(x)
        self.head.load_clip(feats)
        return self.head.head(feats.permute(1, 2, 3, 0))

    def step(self, frame: Tensor) -> Tensor:
        self._check(frame, 4)
        return self.head.push(self.forward_steps(frame.unsqueeze(0))[0])

    def sliding_logits(self, x: Tensor) -> Tensor:
        """Continuous-stream training: ``[L, B, 2, H, W]`` from the current state -> ``[L, B, K]``, at each step
        the STB head over the last T frames' features, exactly what the ring buffer answers (differentiable)."""
        feats = self.forward_steps(x).permute(1, 2, 3, 0)  # [B, C, N, L]
        T = self.cfg.T
        return torch.stack([self.head.head(feats[..., max(0, t - T + 1) : t + 1]) for t in range(feats.shape[-1])])


@register_model(
    ModelConfig(
        name="sglformer-3-256",
        arch="sglformer",
        embed_dims=(256,),
        depths=(1,),
        num_heads=(16,),
        T=16,
        input_size=(128, 128),
        extra={"stem_channels": 42, "num_hw": 2},
    )
)
def sglformer_3_256(cfg: ModelConfig) -> SGLFormer:
    return SGLFormer(cfg)
