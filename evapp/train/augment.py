"""Clip augmentations in tonic's style: small callable classes applied to a batch of clips ``[B, T, 2, H, W]``.

The recipes are SGLFormer's / Spikformer's (architectures.md sections 1.4 and 2.4): an optional horizontal
flip, then one op of SNNAugmentWide chosen uniformly per clip {identity, ShearX up to 0.3 rad (17.2 deg),
TranslateX / TranslateY up to 5 px, Rotate up to 30 deg, Cutout of 0.1-11 % of the area}, magnitudes from
31 bins with a random sign, nearest-neighbour resampling, one transform for all T frames of a clip; then
batch mixup (alpha 0.5, p 0.5, label smoothing 0.1). Every random draw comes from the ``torch.Generator``
passed in, so a training step is a pure function of (seed, epoch, step) and a resumed run is exact.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from evapp.events import GESTURE_CLASSES

_MIRROR_WORDS = {"left": "right", "right": "left", "clockwise": "counter_clockwise",
                 "counter_clockwise": "clockwise"}


def mirror_name(name: str) -> str:
    """The class a gesture becomes in a mirror: the hands swap and so does the sense of rotation
    (``right_arm_clockwise`` -> ``left_arm_counter_clockwise``); a name with no side or sense is its own mirror."""
    words = name.replace("counter_clockwise", "counter-clockwise").split("_")
    return "_".join(_MIRROR_WORDS.get(w.replace("-", "_"), w.replace("-", "_")) for w in words)


def mirror_classes(class_names) -> list[int]:
    """For each class, the index of its mirror image in ``class_names``, or -1 where that name is not in the
    list (a clip of it is never flipped: its mirror image belongs to no class)."""
    names = list(class_names)
    return [names.index(mirror_name(n)) if mirror_name(n) in names else -1 for n in names]


class RandomFlip:
    """Horizontal flip with p=0.5. ``mode='paper'`` keeps the labels (what the official code does, which
    teaches the model that left and right hands are the same class); ``mode='mirror'`` relabels the flipped
    clip with its mirror class by name (``mirror_classes``) and leaves a clip whose mirror class is missing as it is."""

    def __init__(self, mode: str, class_names=GESTURE_CLASSES, p: float = 0.5):
        if mode not in ("paper", "mirror"):
            raise ValueError(f"flip mode must be 'paper' or 'mirror', not {mode!r}")
        self.mode, self.p = mode, p
        self.mirror = torch.tensor(mirror_classes(class_names))

    def __call__(self, x: Tensor, y: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        flip = torch.rand(x.shape[0], generator=gen) < self.p
        if self.mode == "mirror":  # labels [B] (one per clip) or [B, L] (one per step; -1 = no gesture)
            mirror = self.mirror.to(y.device)
            unmirrored = ((y >= 0) & (mirror[y.clamp(min=0)] < 0)).view(y.shape[0], -1).any(1)
            flip &= ~unmirrored.cpu()
        if flip.any():
            x = x.clone()
            x[flip] = x[flip].flip(-1)
            if self.mode == "mirror":
                flipped = flip.to(y.device).view(-1, *[1] * (y.dim() - 1))
                y = torch.where(flipped & (y >= 0), mirror[y.clamp(min=0)], y)
        return x, y


class SNNAugmentWide:
    """One randomly chosen geometric op (or cutout, or nothing) per clip, the same for all its frames."""

    OPS = ("identity", "shear_x", "translate_x", "translate_y", "rotate", "cutout")
    BINS = 31

    def __init__(self, max_shear: float = 0.3, max_translate_px: float = 5.0, max_rotate_deg: float = 30.0,
                 cutout_area: tuple[float, float] = (0.001, 0.11)):
        self.max_shear, self.max_translate_px = max_shear, max_translate_px
        self.max_rotate_deg, self.cutout_area = max_rotate_deg, cutout_area

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        b, t, c, h, w = x.shape
        op = torch.randint(len(self.OPS), (b,), generator=gen)
        magnitude = torch.randint(self.BINS, (b,), generator=gen).float() / (self.BINS - 1)
        sign = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
        m = magnitude * sign
        theta = torch.eye(2, 3).repeat(b, 1, 1)  # affine_grid works in [-1, 1] coordinates
        shear = op == 1
        theta[shear, 0, 1] = torch.tan(m[shear] * self.max_shear)
        tx, ty = op == 2, op == 3
        theta[tx, 0, 2] = m[tx] * self.max_translate_px * 2 / w
        theta[ty, 1, 2] = m[ty] * self.max_translate_px * 2 / h
        rot = op == 4
        angle = torch.deg2rad(m[rot] * self.max_rotate_deg)
        theta[rot, 0, 0], theta[rot, 0, 1] = torch.cos(angle), -torch.sin(angle)
        theta[rot, 1, 0], theta[rot, 1, 1] = torch.sin(angle), torch.cos(angle)
        warp = (op >= 1) & (op <= 4)
        out = x
        if warp.any():
            out = x.clone()
            idx = warp.nonzero().squeeze(1)
            flat = x[idx].reshape(idx.shape[0], t * c, h, w)
            grid = F.affine_grid(theta[idx].to(x.device, x.dtype), list(flat.shape), align_corners=False)
            out[idx] = F.grid_sample(flat, grid, mode="nearest", padding_mode="zeros",
                                     align_corners=False).reshape(idx.shape[0], t, c, h, w)
        cut = (op == 5).nonzero().squeeze(1).tolist()
        if cut:
            out = out.clone() if out is x else out
            lo, hi = self.cutout_area
            for i in cut:
                area = (lo + (hi - lo) * torch.rand(1, generator=gen).item()) * h * w
                side = max(1, int(round(math.sqrt(area))))
                y0 = int(torch.randint(0, h - side + 1, (1,), generator=gen))
                x0 = int(torch.randint(0, w - side + 1, (1,), generator=gen))
                out[i, :, :, y0 : y0 + side, x0 : x0 + side] = 0
        return out


def one_hot_smooth(y: Tensor, classes: int, smoothing: float) -> Tensor:
    off = smoothing / classes
    return torch.full((y.shape[0], classes), off, device=y.device).scatter_(1, y[:, None], 1.0 - smoothing + off)


class Mixup:
    """timm-style batch mixup: with probability ``p`` the batch is blended with its reverse by
    lambda ~ Beta(alpha, alpha); targets become the same blend of label-smoothed one-hot vectors."""

    def __init__(self, alpha: float = 0.5, p: float = 0.5, smoothing: float = 0.1):
        self.alpha, self.p, self.smoothing = alpha, p, smoothing

    def __call__(self, x: Tensor, y: Tensor, classes: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        target = one_hot_smooth(y, classes, self.smoothing)
        if self.alpha <= 0 or torch.rand(1, generator=gen).item() >= self.p:
            return x, target
        seed = int(torch.randint(2**31 - 1, (1,), generator=gen))
        lam = float(np.random.default_rng(seed).beta(self.alpha, self.alpha))  # Beta takes no torch generator
        return lam * x + (1 - lam) * x.flip(0), lam * target + (1 - lam) * target.flip(0)
