"""The scene around the figure: lighting presets, background textures, and where the normalised square lies
on a sensor.

Scene coordinates are normalised to the *central square* of the sensor (see :mod:`evapp.simulate.figure`).
``make_background`` is the training sets' background (low-contrast blurred noise with faint rectangles);
``make_shelves_background`` is a different kind (vertical stripes and shelf boards) for persons the models
have never seen (:mod:`evapp.simulate.person`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Lighting presets of DVS128 Gesture's trial names: (global gain, texture contrast factor).
LIGHTINGS = {
    "fluorescent": (1.0, 1.0),
    "fluorescent_led": (1.1, 1.0),
    "lab": (0.8, 1.1),
    "led": (1.2, 0.9),
    "natural": (0.65, 1.3),
}


def make_background(rng: np.random.Generator, lighting: str | None = None) -> tuple[np.ndarray, float]:
    """A low-contrast static texture over u in [-0.5, 1.5], v in [0, 1] (512x256 grid, float 0-255).

    Returned at lighting gain 1 (the renderer applies the gain) with its mean level; the lighting preset
    only changes the texture's contrast here.
    """
    _gain, contrast = LIGHTINGS.get(lighting or "fluorescent", (1.0, 1.0))
    level = float(rng.uniform(50, 100))
    h, w = 256, 512
    tex = np.zeros((h, w), np.float32)
    for sigma, amp in ((24.0, 0.08), (6.0, 0.04), (1.5, 0.025)):
        noise = rng.standard_normal((h, w)).astype(np.float32)
        noise = cv2.GaussianBlur(noise, (0, 0), sigma)
        noise /= max(float(noise.std()), 1e-6)
        tex += amp * contrast * noise
    for _ in range(int(rng.integers(2, 6))):  # furniture, door frames: faint rectangles
        x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 20))
        x1, y1 = x0 + int(rng.integers(20, 160)), y0 + int(rng.integers(20, 200))
        tex[y0:y1, x0:x1] += float(rng.uniform(-0.12, 0.12)) * contrast
    img = level * np.exp(tex)
    return np.clip(img, 2.0, 250.0).astype(np.float32), level


@dataclass(frozen=True)
class Placement:
    """Where the normalised central square lies on a sensor of ``width`` x ``height`` pixels."""

    width: int
    height: int

    @property
    def side(self) -> int:
        return min(self.width, self.height)

    @property
    def ox(self) -> float:
        return (self.width - self.side) / 2.0

    @property
    def oy(self) -> float:
        return (self.height - self.side) / 2.0

    def to_px(self, u, v):
        """Normalised scene coordinates -> continuous pixel coordinates (pixel centres at integers)."""
        return self.ox + np.asarray(u) * self.side - 0.5, self.oy + np.asarray(v) * self.side - 0.5

    def to_norm(self, x, y):
        return (np.asarray(x) + 0.5 - self.ox) / self.side, (np.asarray(y) + 0.5 - self.oy) / self.side


def render_background(texture: np.ndarray, place: Placement) -> np.ndarray:
    """Sample the normalised background texture at every sensor pixel (float32 0-255)."""
    x = np.arange(place.width, dtype=np.float32)
    y = np.arange(place.height, dtype=np.float32)
    u, v = place.to_norm(x, y)
    th, tw = texture.shape
    map_x = np.broadcast_to(((u + 0.5) * (tw / 2.0) - 0.5).astype(np.float32)[None, :], (place.height, place.width))
    map_y = np.broadcast_to((v * th - 0.5).astype(np.float32)[:, None], (place.height, place.width))
    return cv2.remap(texture, np.ascontiguousarray(map_x), np.ascontiguousarray(map_y), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REFLECT)


def make_shelves_background(rng: np.random.Generator, level: float, contrast: float = 1.0) -> tuple[np.ndarray, float]:
    """A room unlike :func:`make_background`'s: a wall of vertical stripes (wallpaper, book spines) crossed
    by dark shelf boards, with books standing on them, over the same u in [-0.5, 1.5], v in [0, 1] grid.

    Log contrasts of about 0.15-0.6 (``make_background``'s are about 0.1: blurred noise of log amplitude
    0.08 + 0.04 + 0.025 and faint rectangles of +-0.12), sharp edges instead of blur, and a mean ``level``
    chosen by the caller (``make_background``'s lies in 50..100). Returned at lighting gain 1 with its mean.
    """
    h, w = 256, 512
    tex = np.zeros((h, w), np.float32)
    x = 0
    while x < w:  # wallpaper stripes of random width and alternating brightness
        width = int(rng.integers(6, 22))
        tex[:, x : x + width] += float(rng.uniform(0.08, 0.2)) * contrast * (1 if (x // 7) % 2 else -1)
        x += width
    shelf_rows = np.sort(rng.choice(np.arange(30, h - 10, 12), int(rng.integers(3, 5)), replace=False))
    for y in shelf_rows.tolist():
        tex[y : y + int(rng.integers(4, 7)), :] = -0.6 * contrast  # a board, darker than the wall
        bx = int(rng.integers(0, 12))
        while bx < w:  # books standing on it
            bw, bh = int(rng.integers(3, 10)), int(rng.integers(10, 26))
            tex[max(0, y - bh) : y, bx : bx + bw] = float(rng.uniform(-0.7, 0.35)) * contrast
            bx += bw + int(rng.integers(0, 14))
    tex = cv2.GaussianBlur(tex, (0, 0), 0.6)  # optics: edges a pixel wide, not aliased
    img = np.clip(level * np.exp(tex - float(tex.mean())), 2.0, 250.0).astype(np.float32)
    return img, float(img.mean())
