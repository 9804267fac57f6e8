"""SpikingResformer, DVS128 Gesture direct-training variant ``spikingresformer_dvsg`` (Shi et al., CVPR 2024;
papers/001). Graph as the released code, written down in shared/reference/architectures.md section 3.

- Input: the model takes the 2-polarity count frame ``[2, 64, 64]`` and appends the third channel (sum of
  the polarities) itself, as the reference data pipeline does (architectures.md 3.3 step 4).
- Prologue Conv3x3(3->32) + BN, no pool; stages of planes 32/96/192, heads 1/3/6, patch 4/2/1, blocks
  [DSSA, GWFFN] x 1/2/3, stride-2 downsample (act -> Conv3x3 -> BN) between stages.
- Pre-activation everywhere: each module starts with its spiking activation and residuals add real-valued
  BN outputs (membrane shortcut). Neurons are PLIF (init tau 2, ATan alpha 2, threshold 1, detached hard
  reset), including the attention activation (the code uses its default activation there, not a 0.5 LIF).
- DSSA scales its two products by 1/sqrt(fr * m) with per-head firing-rate buffers (EMA 0.999 while
  training, initialised to the first batch's value, frozen at eval).
- Head: GAP of the real-valued last stage -> Linear(192, 11, bias=False) per step; clip logits are the
  mean over T, so the streaming answer (running mean) is exact.

Parameter count (analytic, equal to ``count_params``): 2,709,830 for 11 classes.

Open choices:
- Firing-rate buffers start at ``fr_init`` (0.25) rather than 0 so that an untrained model in eval mode gives
  finite outputs; training overwrites them with the first batch value exactly as the reference. The rates
  are clamped at 1e-4 inside the scale (only matters for a head that never fires, where the product is 0
  and the reference would produce 0 * inf = NaN).
- The 128 -> 64 resize is the binner's job (frames arrive as ``[2, 64, 64]``). evapp's own models take 2x2
  block sums. The reference resizes 128x128 counts with torchvision ``Resize(64, antialias=True)``: bilinear
  with the filter widened to the scale, i.e. per axis the weights (1, 3, 3, 1) / 8 over four input pixels at
  stride 2 (overlapping, renormalised at the border), not a 2x2 average; its frames hold about a quarter of
  the block sums. Imported official weights get exactly that resize (``FrameSpec.binned_size``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..snn.neurons import ParametricLIF
from .base import MeanHeadClassifier, ModelConfig, register_model, trunc_normal_init
from .layers import MatMul, SlidingMean, seq


def _act() -> ParametricLIF:
    return ParametricLIF(init_tau=2.0, surrogate="atan", v_threshold=1.0)


class ConvBN(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, pad: int | None = None):
        super().__init__()
        pad = (k - 1) // 2 if pad is None else pad
        self.conv = nn.Conv2d(cin, cout, k, stride, pad, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: Tensor) -> Tensor:
        return seq(lambda z: self.bn(self.conv(z)), x)


class DownsampleLayer(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.act = _act()
        self.conv = ConvBN(cin, cout, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.act(x))


class DSSA(nn.Module):
    """Dual spike self-attention; residual included (returns BN(Conv1x1(o)) + x)."""

    def __init__(self, dim: int, heads: int, patch: int, tokens_reduced: int, fr_init: float = 0.25) -> None:
        super().__init__()
        self.dim, self.heads, self.patch, self.lenth = dim, heads, patch, tokens_reduced
        self.act_in = _act()
        self.w = ConvBN(dim, 2 * dim, patch, stride=patch, pad=0)  # non-overlapping p x p patches
        self.mm1 = MatMul()
        self.act_attn = _act()
        self.mm2 = MatMul()
        self.act_out = _act()
        self.proj = ConvBN(dim, dim, 1)
        self.register_buffer("firing_rate_x", torch.full((1, 1, heads, 1, 1), fr_init))
        self.register_buffer("firing_rate_attn", torch.full((1, 1, heads, 1, 1), fr_init))
        self.register_buffer("fr_initialized", torch.zeros((), dtype=torch.bool))

    def _ema(self, name: str, batch_rate: Tensor) -> Tensor:
        if not bool(self.fr_initialized):
            setattr(self, name, batch_rate)
        else:
            setattr(self, name, getattr(self, name) * 0.999 + batch_rate * 0.001)
        return getattr(self, name)

    def forward(self, x: Tensor) -> Tensor:
        T, B, C, H, W = x.shape
        h, d = self.heads, C // self.heads
        s = self.act_in(x)
        y = self.w(s)  # [T,B,2C,H/p,W/p]
        y = y.reshape(T, B, h, 2 * d, -1)
        y1, y2 = y[:, :, :, :d], y[:, :, :, d:]  # [T,B,h,d,L']
        s_h = s.reshape(T, B, h, d, H * W)  # [T,B,h,d,N]
        if self.training:
            fr_x = self._ema("firing_rate_x", s_h.detach().mean((0, 1, 3, 4), keepdim=True))
        else:
            fr_x = self.firing_rate_x
        a = self.mm1(y1.transpose(-1, -2), s_h) / torch.sqrt(fr_x.clamp(min=1e-4) * d)  # [T,B,h,L',N]
        a = self.act_attn(a)
        if self.training:
            fr_a = self._ema("firing_rate_attn", a.detach().mean((0, 1, 3, 4), keepdim=True))
            self.fr_initialized.fill_(True)
        else:
            fr_a = self.firing_rate_attn
        o = self.mm2(y2, a) / torch.sqrt(fr_a.clamp(min=1e-4) * self.lenth)  # [T,B,h,d,N]
        o = self.act_out(o.reshape(T, B, C, H, W))
        return self.proj(o) + x


class GWFFN(nn.Module):
    """Group-wise spiking FFN (paper: GWSFFN): 1x1 up, grouped 3x3 (group width g) with inner residual, 1x1
    down; outer residual included."""

    def __init__(self, dim: int, ratio: int = 4, group_width: int = 32) -> None:
        super().__init__()
        inner = dim * ratio
        self.act1, self.up = _act(), ConvBN(dim, inner, 1)
        self.act2, self.conv = _act(), ConvBN(inner, inner, 3, groups=inner // group_width)
        self.act3, self.down = _act(), ConvBN(inner, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        u = self.up(self.act1(x))
        u = self.conv(self.act2(u)) + u
        return self.down(self.act3(u)) + x


class SpikingResformer(MeanHeadClassifier):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        planes, heads, depths = cfg.embed_dims, cfg.num_heads, cfg.depths
        patches = cfg.extra.get("patch_sizes", (4, 2, 1))
        gw = cfg.extra.get("group_width", 32)
        fr_init = cfg.extra.get("fr_init", 0.25)
        self.prologue = ConvBN(3, planes[0], 3)
        stages = []
        res = cfg.input_size[0]
        for i, (c, nh, depth, p) in enumerate(zip(planes, heads, depths, patches, strict=True)):
            blocks: list[nn.Module] = []
            if i > 0:
                blocks.append(DownsampleLayer(planes[i - 1], c))
                res //= 2
            lenth = (res // p) ** 2
            for _ in range(depth):
                blocks += [DSSA(c, nh, p, lenth, fr_init), GWFFN(c, cfg.mlp_ratio, gw)]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(planes[-1], cfg.num_classes, bias=False)
        self.readout = SlidingMean(cfg.num_classes, cfg.T)
        trunc_normal_init(self, convs=True)

    def forward_steps(self, x: Tensor) -> Tensor:
        x = torch.cat([x, x.sum(2, keepdim=True)], dim=2)  # third channel = both polarities
        x = self.stages(self.prologue(x))
        return self.fc(x.mean((3, 4)))


@register_model(
    ModelConfig(
        name="spikingresformer-dvsg",
        arch="spikingresformer",
        embed_dims=(32, 96, 192),
        depths=(1, 2, 3),
        num_heads=(1, 3, 6),
        T=16,
        input_size=(64, 64),
        extra={"patch_sizes": (4, 2, 1), "group_width": 32, "fr_init": 0.25},
    )
)
def spikingresformer_dvsg(cfg: ModelConfig) -> SpikingResformer:
    return SpikingResformer(cfg)
