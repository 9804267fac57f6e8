"""``evapp render``: a replay drawn to a video file by the window's own widgets, on the recording's clock.

The pipeline runs as a headless replay (no frame dropped: every answer is the one the model gives that frame).
Video frame ``k`` shows the recording at ``start + k * speed / fps``: the events since the previous video frame
(fading as in the window), the latest answer at or before that time (label, confidence, class bars) and the
timeline with the ground truth. The widgets paint offscreen (Qt's ``offscreen`` platform), so no display is
needed. ``.mp4`` / ``.avi`` are written by OpenCV's ``VideoWriter`` (MPEG-4 Part 2, ``mp4v``, which every
OpenCV wheel can encode); ``.gif`` by Pillow, for previews that play inline on a web page.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evapp.errors import InputError

VIDEO_SUFFIXES = (".mp4", ".avi", ".gif")
MAX_GIF_FRAMES = 1500  # a GIF's frames are held until it is written


@dataclass(frozen=True)
class VideoSettings:
    out: Path
    fps: float = 30.0
    speed: float = 1.0  # recording seconds per video second
    size: tuple[int, int] = (1280, 720)
    start_s: float = 0.0
    duration_s: float | None = None  # of recording; None: to its end


@dataclass(frozen=True)
class RenderedVideo:
    """What was written: the file, its frames, and the label on show in each frame (for a caption or a test)."""

    path: Path
    frames: int
    fps: float
    size: tuple[int, int]
    shown: tuple[str, ...]
    recording_s: float

    def runs(self) -> list[dict]:
        """The label on show as runs of frames: ``[{"label", "first_frame", "frames"}, ...]``."""
        out = []
        for i, label in enumerate(self.shown):
            if out and out[-1]["label"] == label:
                out[-1]["frames"] += 1
            else:
                out.append({"label": label, "first_frame": i, "frames": 1})
        return out


def check_video_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise InputError(f"{path.name}: a video is written as {', '.join(VIDEO_SUFFIXES)}, not "
                         f"'{path.suffix or 'no extension'}'.")
    if not path.parent.is_dir():
        raise InputError(f"{path.parent} is not a folder to write {path.name} into.")
    return path


class _Writer:
    """Frames (RGB, H x W x 3) to a file: OpenCV for mp4 / avi, Pillow for gif."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        self.path, self.fps, self.size = path, fps, size
        self._gif: list = []
        self._cv = None
        if path.suffix.lower() != ".gif":
            import cv2

            self._cv = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
            if not self._cv.isOpened():
                raise InputError(f"OpenCV could not open {path} for writing an mp4v video.")

    def write(self, rgb: np.ndarray) -> None:
        if self._cv is not None:
            self._cv.write(np.ascontiguousarray(rgb[:, :, ::-1]))
        else:
            self._gif.append(rgb)

    def close(self) -> None:
        if self._cv is not None:
            self._cv.release()
            self._cv = None
        elif self._gif:
            from PIL import Image

            # one palette for every frame (from a sample of them), undithered: pixels that do not change stay
            # identical from frame to frame, which GIF stores cheaply
            sample = self._gif[:: max(1, len(self._gif) // 16)]
            palette = Image.fromarray(np.concatenate(sample)).quantize(colors=128, method=Image.Quantize.MEDIANCUT)
            frames = [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in self._gif]
            frames[0].save(self.path, save_all=True, append_images=frames[1:], loop=0, optimize=True,
                           duration=round(1000 / self.fps))
            self._gif = []


class _Events:
    """Batches from the reader thread, taken up to a time by the renderer."""

    def __init__(self):
        self._parts: deque[np.ndarray] = deque()
        self._lock = threading.Lock()

    def add(self, batch: np.ndarray) -> None:
        with self._lock:
            self._parts.append(batch)

    def take_until(self, t_us: int) -> np.ndarray | None:
        out = []
        with self._lock:
            while self._parts:
                batch = self._parts[0]
                if int(batch["timestamp"][-1]) <= t_us:
                    out.append(self._parts.popleft())
                    continue
                cut = int(np.searchsorted(batch["timestamp"], t_us, side="right"))
                if cut:
                    out.append(batch[:cut])
                    self._parts[0] = batch[cut:]
                break
        if not out:
            return None
        return np.concatenate(out) if len(out) > 1 else out[0]


def _qt_app():
    from PyQt6.QtCore import qInstallMessageHandler
    from PyQt6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # a video needs no display
        qInstallMessageHandler(_quiet_offscreen)
        app = QApplication(sys.argv[:1])
    return app


def _quiet_offscreen(kind, context, message: str) -> None:
    """Qt's messages on stderr, less the offscreen platform's note that it has no window manager to tell."""
    if "propagateSizeHints" not in message:
        print(message, file=sys.stderr)


class _Panel:
    """The window's event view, class bars and timeline, laid out as in the window, painted offscreen."""

    LAYOUT_WIDTH = 1280

    def __init__(self, pipeline, size: tuple[int, int], duration_us: int | None):
        from PyQt6.QtCore import Qt
        from PyQt6.QtWidgets import QWidget

        from evapp.gui.widgets import EventView, ProbabilityBars, Timeline, truth_labels, view_layout

        self.app = _qt_app()
        self.widget = QWidget()
        self.widget.setAttribute(Qt.WidgetAttribute.WA_DontShowOnScreen)
        self.widget.setStyleSheet("background-color: rgb(18, 18, 18); color: rgb(220, 220, 220);")
        self.view = EventView(pipeline.source.geometry)
        self.view.setMinimumSize(16, 16)
        self.view.region = pipeline.mapping.region
        self.bars = ProbabilityBars()
        self.bars.set_names(pipeline.class_names)
        self.timeline = Timeline()
        self.timeline.duration_us = duration_us
        self._labels = lambda: truth_labels(pipeline.source, pipeline.class_names)
        self.widget.setLayout(view_layout(self.view, self.bars, self.timeline))
        # laid out at no less than the window's usual width, then scaled: a small video keeps the window's look
        scale = max(1.0, self.LAYOUT_WIDTH / size[0])
        self.widget.resize(round(size[0] * scale), round(size[1] * scale))
        self.widget.show()
        self.size = size

    def show(self, prediction) -> None:
        from evapp.gui.widgets import show_decision

        show_decision(self.view, self.bars, self.timeline, prediction)

    def paint(self, events: np.ndarray | None, at_us: int, caption: str) -> np.ndarray:
        from PyQt6.QtCore import Qt
        from PyQt6.QtGui import QImage

        self.view.add_events(events)
        self.view.detail_text = caption
        self.timeline.cursor_us = at_us
        self.timeline.labels = self._labels()
        self.app.processEvents()
        image = self.widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
        if (image.width(), image.height()) != self.size:
            image = image.scaled(*self.size, Qt.AspectRatioMode.IgnoreAspectRatio,
                                 Qt.TransformationMode.SmoothTransformation)
        w, h = image.width(), image.height()
        rgb = np.frombuffer(image.constBits().asstring(image.sizeInBytes()), np.uint8)
        return rgb.reshape(h, image.bytesPerLine())[:, : 3 * w].reshape(h, w, 3).copy()

    def close(self) -> None:
        self.widget.close()
        self.widget.deleteLater()


def render_video(pipeline, settings: VideoSettings, stop=None, progress: bool | None = None) -> RenderedVideo:
    """Run ``pipeline`` (a headless replay from the recording's start, ``ReplayOptions(speed=None)``: at
    ``settings.start_s`` the model shows what it would show there in a whole replay) and write the video.
    ``stop`` (a list, non-empty once a stop is asked for: evapp.interrupts) ends it early, and what was drawn
    until then is a complete video."""
    from evapp.pipeline import Prediction

    info = pipeline.source.info()
    start_us = int(round(settings.start_s * 1e6))
    end_us = info.duration_us or 0
    if settings.duration_s is not None:
        end_us = min(end_us, start_us + int(settings.duration_s * 1e6))
    if end_us <= start_us:
        raise InputError(f"Nothing to render: the recording lasts {(info.duration_us or 0) / 1e6:.1f} s, and the "
                         f"video would start at {settings.start_s:g} s.")
    step_us = settings.speed * 1e6 / settings.fps
    total = int((end_us - start_us) / step_us) + 1
    if settings.out.suffix.lower() == ".gif" and total > MAX_GIF_FRAMES:
        raise InputError(f"A GIF is for short previews (at most {MAX_GIF_FRAMES} frames, this one would have "
                         f"{total}): write .mp4, or choose a shorter --duration or a lower --fps.")
    events = _Events()
    pipeline.watch_batches(events.add)
    panel = _Panel(pipeline, settings.size, info.duration_us)
    writer = _Writer(settings.out, settings.fps, settings.size)
    bar = _progress_bar(total, progress)
    shown: list[str] = []
    speed = f"{settings.speed:g}x" if settings.speed != 1 else "real time"

    def draw_until(t_us: float, label: str) -> None:
        if not shown:  # before the first video frame: what happened earlier is not drawn
            events.take_until(int(min(t_us, start_us - step_us)))
        while len(shown) < total and start_us + len(shown) * step_us < t_us:
            at = int(start_us + len(shown) * step_us)
            writer.write(panel.paint(events.take_until(at), at, f"{at / 1e6:6.2f} s   ({speed})"))
            shown.append(label)
            if bar is not None:
                bar.update(1)

    label = "idle"
    try:
        for record in pipeline.records():
            if stop:
                break
            if not isinstance(record, Prediction):
                continue
            draw_until(record.t_us, label)  # the frames before this answer show the one before it
            if len(shown) >= total:
                break
            panel.show(record)
            label = record.decision.class_name
        if not stop:
            draw_until(end_us + 1, label)  # the rest of the recording shows the last answer
    finally:
        pipeline.close()
        writer.close()
        panel.close()
        if bar is not None:
            bar.close()
    return RenderedVideo(settings.out, len(shown), settings.fps, settings.size, tuple(shown),
                         (len(shown) - 1) * step_us / 1e6 if shown else 0.0)


def _progress_bar(total: int, enabled: bool | None):
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="rendering", unit="frame", leave=False, file=sys.stderr, dynamic_ncols=True)
