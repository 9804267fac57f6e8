"""The window's drawing widgets: the event view, the probability bars and the timeline strip."""

from __future__ import annotations

import numpy as np
from PyQt6.QtCore import QPoint, QRect, QRectF, Qt, pyqtSignal
from PyQt6.QtGui import QColor, QFont, QFontMetrics, QImage, QPainter, QPen
from PyQt6.QtWidgets import QHBoxLayout, QSizePolicy, QVBoxLayout, QWidget

from evapp.binning import Region
from evapp.events import SensorGeometry, align_labels
from evapp.gui.labelling import key_name

ON_COLOUR = np.array([90, 170, 255], np.float32)  # ON events: blue
OFF_COLOUR = np.array([255, 90, 70], np.float32)  # OFF events: red
BACKGROUND = 18
LEVELS = 16  # intensity levels per polarity in the colour table


def _colour_table() -> np.ndarray:
    """RGB for every (ON level, OFF level) pair: background plus both colours, saturating to white."""
    on = (np.arange(LEVELS) / (LEVELS - 1))[:, None, None]
    off = (np.arange(LEVELS) / (LEVELS - 1))[None, :, None]
    rgb = BACKGROUND + on * (ON_COLOUR - BACKGROUND) + off * (OFF_COLOUR - BACKGROUND)
    return np.clip(rgb, 0, 255).astype(np.uint8).reshape(LEVELS * LEVELS, 3)


_COLOUR_TABLE = _colour_table()


# Kenneth L. Kelly's colours of maximum contrast ("Twenty-two colors of maximum contrast", Color Engineering 3(6),
# 1965), in his order, so that neighbouring classes differ most; without white, black and the grey (idle's colour)
# and the dark browns and olive, which vanish on the dark background; his yellow-green moved up to the 11th place,
# which keeps every pair of the 11 gesture classes far apart (tests/test_gui.py measures it).
PALETTE = ("#F3C300", "#875692", "#F38400", "#A1CAF1", "#BE0032", "#C2B280", "#008856", "#E68FAC", "#0067A5",
           "#F99379", "#8DB600", "#604E97", "#F6A600", "#B3446C", "#DCD300", "#E25822")


def class_colour(class_id: int) -> QColor:
    """A distinct colour per class (grey for idle / unknown); past the palette, hues spread over the circle."""
    if class_id < 0:
        return QColor(150, 150, 150)
    if class_id < len(PALETTE):
        return QColor(PALETTE[class_id])
    return QColor.fromHsv(int(360 * class_id * 0.618034) % 360, 200, 230)  # golden-ratio steps: no neighbours alike


class EventView(QWidget):
    """Events at the sensor's resolution, ON/OFF coloured and fading, scaled to the widget (aspect kept).

    The model's input region is outlined; dragging with the left button selects a new region (emitted as
    ``region_selected``), the right button asks for the default region back (``region_reset``). The current
    prediction is drawn over the view.
    """

    region_selected = pyqtSignal(object)  # Region in sensor pixels
    region_reset = pyqtSignal()

    DECAY = 0.7  # fraction of the previous image kept at each refresh (30 Hz): a short trail

    def __init__(self, geometry: SensorGeometry, parent=None):
        super().__init__(parent)
        self.geometry_ = geometry
        self.setMinimumSize(320, 240)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._on = np.zeros((geometry.height, geometry.width), np.float32)
        self._off = np.zeros_like(self._on)
        self._rgb = np.full((geometry.height, geometry.width, 3), BACKGROUND, np.uint8)
        self.region: Region | None = None
        self.label_text = ""
        self.label_colour = QColor(255, 255, 255)
        self.detail_text = ""
        self.banner_text = ""  # e.g. "reconnecting ..." or "paused"
        self._drag_from: QPoint | None = None
        self._drag_to: QPoint | None = None

    # -- data ---------------------------------------------------------------------------------------
    def add_events(self, events: np.ndarray | None) -> None:
        """Fade the old picture and add these events (None: nothing new, the picture just fades).

        One event lights its pixel fully (gestures are sparse), so new events just set intensities to 1, and
        the colour comes from a 16x16-level lookup table: a few passes over H x W, not over H x W x 3 floats.
        """
        g = self.geometry_
        self._on *= self.DECAY
        self._off *= self.DECAY
        if events is not None and events.shape[0]:
            x = events["x"].astype(np.int64)
            y = events["y"].astype(np.int64)
            valid = (x >= 0) & (x < g.width) & (y >= 0) & (y < g.height)
            flat = (y * g.width + x)[valid]
            on = events["polarity"][valid] > 0
            self._on.reshape(-1)[flat[on]] = 1.0
            self._off.reshape(-1)[flat[~on]] = 1.0
        index = (self._on * (LEVELS - 0.01)).astype(np.uint8)
        index *= LEVELS
        index += (self._off * (LEVELS - 0.01)).astype(np.uint8)
        self._rgb = _COLOUR_TABLE[index]
        self.update()

    def clear(self) -> None:
        self._on[:] = 0
        self._off[:] = 0
        self.add_events(None)

    # -- geometry -------------------------------------------------------------------------------------
    def _target(self) -> QRectF:
        """Where the sensor image lies in the widget (scaled, aspect kept, centred)."""
        g = self.geometry_
        scale = min(self.width() / g.width, self.height() / g.height)
        w, h = g.width * scale, g.height * scale
        return QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)

    def to_sensor(self, point: QPoint) -> tuple[int, int]:
        t = self._target()
        g = self.geometry_
        x = int((point.x() - t.x()) * g.width / t.width())
        y = int((point.y() - t.y()) * g.height / t.height())
        return min(max(x, 0), g.width), min(max(y, 0), g.height)

    def _from_sensor(self, region: Region) -> QRectF:
        t = self._target()
        s = t.width() / self.geometry_.width
        return QRectF(t.x() + region.x * s, t.y() + region.y * s, region.w * s, region.h * s)

    # -- Qt -------------------------------------------------------------------------------------------
    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(BACKGROUND, BACKGROUND, BACKGROUND))
        g = self.geometry_
        image = QImage(self._rgb.data, g.width, g.height, 3 * g.width, QImage.Format.Format_RGB888)
        painter.drawImage(self._target(), image)
        if self.region is not None:
            painter.setPen(QPen(QColor(255, 220, 0), 2, Qt.PenStyle.DashLine))
            painter.drawRect(self._from_sensor(self.region))
        if self._drag_from is not None and self._drag_to is not None:
            painter.setPen(QPen(QColor(255, 255, 255), 1, Qt.PenStyle.DotLine))
            painter.drawRect(QRect(self._drag_from, self._drag_to).normalized())
        t = self._target()
        if self.label_text:
            painter.setFont(self.label_font())
            painter.setPen(self.label_colour)
            painter.drawText(t.adjusted(12, 8, -12, -8), Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft,
                             self.label_text)
        small = QFont()
        small.setPointSize(max(8, int(t.height() / 40)))
        painter.setFont(small)
        painter.setPen(QColor(220, 220, 220))
        if self.detail_text:
            painter.drawText(t.adjusted(12, 8, -12, -8), Qt.AlignmentFlag.AlignBottom | Qt.AlignmentFlag.AlignLeft,
                             self.detail_text)
        if self.banner_text:
            painter.setPen(QColor(255, 200, 0))
            painter.drawText(t.adjusted(12, 8, -12, -8), Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignRight,
                             self.banner_text)
        painter.end()

    def label_font(self) -> QFont:
        """The decided gesture's font: large, and small enough that the name and its confidence fit the view."""
        t = self._target()
        font = QFont()
        font.setBold(True)
        size = max(12, int(t.height() / 16))
        font.setPointSize(size)
        room = t.width() - 24
        while size > 7 and QFontMetrics(font).horizontalAdvance(self.label_text) > room:
            size -= 1
            font.setPointSize(size)
        return font

    def mousePressEvent(self, event) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton:
            self._drag_from = self._drag_to = event.position().toPoint()
        elif event.button() == Qt.MouseButton.RightButton:
            self.region_reset.emit()

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if self._drag_from is not None:
            self._drag_to = event.position().toPoint()
            self.update()

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if self._drag_from is None or event.button() != Qt.MouseButton.LeftButton:
            return
        (x0, y0), (x1, y1) = self.to_sensor(self._drag_from), self.to_sensor(event.position().toPoint())
        self._drag_from = self._drag_to = None
        self.update()
        x, y, w, h = min(x0, x1), min(y0, y1), abs(x1 - x0), abs(y1 - y0)
        if w >= 8 and h >= 8:
            self.region_selected.emit(Region(x, y, w, h))


class ProbabilityBars(QWidget):
    """One horizontal bar per class with its probability; the shown (decided) class is highlighted, the row of the
    class being labelled is tinted in its colour. A swatch in the class colour (the timeline's legend) carries the
    key that labels it.

    Any number of classes fits: with room, the name sits above its bar; else name, bar and value share one line
    and the font shrinks to the row. A click on a row emits ``class_clicked`` (labelling)."""

    class_clicked = pyqtSignal(int)

    VALUE_WIDTH = 44

    def __init__(self, parent=None):
        super().__init__(parent)
        self.names: tuple[str, ...] = ()
        self.probs = np.zeros(0)
        self.highlight = -1
        self.labelling: int | None = None
        self.setMinimumWidth(260)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)

    def set_names(self, names) -> None:
        self.names = tuple(names or ())
        self.probs = np.zeros(len(self.names))
        self.highlight = -1
        self.labelling = None
        self.update()

    def set_probs(self, probs, highlight: int) -> None:
        self.probs = np.asarray(probs, dtype=np.float64)
        self.highlight = highlight
        self.update()

    def row_height(self) -> float:
        """The height of one class's row: the widget's height shared out, at most four lines of text (few
        classes stack at the top)."""
        return min(self.height() / max(len(self.names), 1), 4 * QFontMetrics(self.font()).height())

    def row_font(self) -> QFont:
        """The widget's font, smaller when the rows are too low for it."""
        font = QFont(self.font())
        row = self.row_height()
        if QFontMetrics(font).height() > row * 0.9:
            font.setPixelSize(max(6, int(row * 0.75)))
        return font

    def layout_rects(self) -> list[tuple[QRectF, QRectF, QRectF, QRectF]]:
        """(swatch, name, bar, value) rectangles of each class, all inside the widget."""
        n = len(self.names)
        if n == 0:
            return []
        metrics = QFontMetrics(self.row_font())
        fh = metrics.height()
        w, row = self.width(), self.row_height()
        value_w = self.VALUE_WIDTH
        two_lines = row >= 2 * fh + 6
        swatch = min(fh, row * 0.8 if not two_lines else row * 0.45)
        out = []
        for i in range(n):
            top = i * row
            if two_lines:  # name above, bar below, value at the right: long names never clip the bar
                name_h = row * 0.5
                out.append((QRectF(4, top + name_h - swatch - 1, swatch, swatch),
                            QRectF(8 + swatch, top, w - 12 - swatch, name_h),
                            QRectF(4, top + name_h, w - 12 - value_w, row * 0.38),
                            QRectF(w - 4 - value_w, top + row * 0.45, value_w, row * 0.5)))
            else:
                name_w = min(max(metrics.horizontalAdvance(n.replace("_", " ")) for n in self.names) + 6,
                             (w - 20 - swatch - value_w) * 0.5)
                bar_x = 8 + swatch + name_w
                out.append((QRectF(4, top + (row - swatch) / 2, swatch, swatch),
                            QRectF(8 + swatch, top, name_w, row),
                            QRectF(bar_x, top + row * 0.2, max(w - 8 - value_w - bar_x, 1), row * 0.6),
                            QRectF(w - 4 - value_w, top, value_w, row)))
        return out

    def class_at(self, y: float) -> int:
        """The class of the row at height ``y`` (-1: none)."""
        index = int(y / max(self.row_height(), 1e-6))
        return index if 0 <= index < len(self.names) else -1

    def mousePressEvent(self, event) -> None:  # noqa: N802
        class_id = self.class_at(event.position().y())
        if event.button() == Qt.MouseButton.LeftButton and class_id >= 0:
            self.class_clicked.emit(class_id)

    def paintEvent(self, event) -> None:  # noqa: N802
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(32, 32, 32))
        if not self.names:
            painter.setPen(QColor(160, 160, 160))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "no model")
            painter.end()
            return
        font = self.row_font()
        painter.setFont(font)
        metrics = QFontMetrics(font)
        row = self.row_height()
        for i, (name, (swatch, name_rect, bar, value)) in enumerate(zip(self.names, self.layout_rects(),
                                                                       strict=True)):
            p = float(self.probs[i]) if i < len(self.probs) else 0.0
            colour = class_colour(i)
            if i == self.labelling:
                painter.fillRect(QRectF(0, i * row, self.width(), row), colour.darker(300))
            painter.fillRect(swatch, colour)
            key = key_name(i)
            if key and swatch.height() >= 9:
                painter.setPen(QColor(20, 20, 20) if colour.lightness() > 110 else QColor(240, 240, 240))
                painter.drawText(swatch, Qt.AlignmentFlag.AlignCenter, key)
            painter.fillRect(bar, QColor(45, 45, 45))
            painter.fillRect(QRectF(bar.x(), bar.y(), bar.width() * min(max(p, 0.0), 1.0), bar.height()),
                             colour if i == self.highlight else QColor(110, 130, 160))
            painter.setPen(QColor(255, 255, 255) if i in (self.highlight, self.labelling) else QColor(200, 200, 200))
            text = metrics.elidedText(name.replace("_", " "), Qt.TextElideMode.ElideRight, int(name_rect.width()))
            align = Qt.AlignmentFlag.AlignBottom if name_rect.height() < row else Qt.AlignmentFlag.AlignVCenter
            painter.drawText(name_rect, align, text)
            painter.drawText(value, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight, f"{p:.2f}")
        painter.end()


class Timeline(QWidget):
    """Predictions (lower band) and ground truth (upper band) along the recording, with a cursor; the band
    captions sit in a margin of their own at the left. While a recording is labelled, its labels (``user_spans``,
    the open one growing) take the upper band.

    Replays span the whole recording; live streams show the last ``window_us``. A seek leaves a gap: the span
    jumped over is not painted with the label shown before the jump.
    """

    CAPTIONS = ("ground truth", "predictions", "labelling")

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setFixedHeight(46)
        self.duration_us: int | None = None
        self.window_us = 30_000_000
        self.labels = []
        self.marks: list[tuple[int, int]] = []  # (recording time, decided class)
        self.gaps: list[int] = []  # recording times a seek jumped away from
        self.cursor_us = 0
        self.user_spans: list[tuple[int, int, int]] = []  # (start, end, class) being labelled, in the upper band

    def add(self, t_us: int, class_id: int) -> None:
        self.marks.append((t_us, class_id))
        if len(self.marks) > 20_000:
            del self.marks[:5000]

    def add_gap(self, at_us: int) -> None:
        """A seek away from ``at_us``: the predictions before it end there."""
        self.gaps.append(int(at_us))

    def clear(self) -> None:
        self.marks.clear()
        self.gaps.clear()
        self.update()

    def caption_width(self) -> int:
        metrics = QFontMetrics(self.font())
        return max(metrics.horizontalAdvance(c) for c in self.CAPTIONS) + 12

    def _span(self) -> tuple[int, int]:
        if self.duration_us:
            return 0, self.duration_us
        end = max(self.cursor_us, self.window_us)
        return end - self.window_us, end

    def x_of(self, t_us: int) -> float:
        """Where a recording time lies on the widget (right of the captions)."""
        t0, t1 = self._span()
        left = self.caption_width()
        return left + (t_us - t0) * (self.width() - left) / max(t1 - t0, 1)

    def spans(self) -> list[tuple[int, int, int]]:
        """(start, end, class) of each painted prediction: from one answer to the next, cut at a seek's gap and
        never backwards (after a seek back, the newer predictions restart)."""
        out = []
        for (a, cid), (b, _) in zip(self.marks, self.marks[1:], strict=False):
            if b < a:
                continue
            end = min([g for g in self.gaps if a <= g < b], default=b)
            out.append((a, end, cid))
        return out

    def drawn_label_spans(self) -> list[tuple[int, int, int]]:
        """(start, end, class) of the labelling spans painted now: the visible part of each."""
        t0, t1 = self._span()
        return [(max(a, t0), min(b, t1), cid) for a, b, cid in self.user_spans if b >= t0 and a <= t1]

    def paintEvent(self, event) -> None:  # noqa: N802
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(26, 26, 26))
        t0, t1 = self._span()
        half = self.height() / 2
        # The upper band: the recording's ground truth, and the labels being made (live streams have no ground
        # truth; a recording being labelled, when both are there, takes the lower half of the band).
        split = bool(self.user_spans and self.labels)
        height = (half - 3) / 2 if split else half - 3
        for lab in self.labels:
            x0, x1 = self.x_of(max(lab.start_us, t0)), self.x_of(lab.end_us)
            painter.fillRect(QRectF(x0, 2, max(x1 - x0, 1), height), class_colour(lab.class_id))
        if self.user_spans:
            y = 2 + (height if split else 0)
            for a, b, cid in self.drawn_label_spans():
                x0 = self.x_of(a)
                painter.fillRect(QRectF(x0, y, max(self.x_of(b) - x0, 1), height), class_colour(cid))
        for a, b, cid in self.spans():
            if b < t0 or a > t1:
                continue
            x0 = self.x_of(max(a, t0))
            painter.fillRect(QRectF(x0, half + 1, max(self.x_of(b) - x0, 1), half - 3), class_colour(cid))
        painter.setPen(QColor(200, 200, 200))
        painter.drawText(QRectF(4, 0, self.caption_width(), half), Qt.AlignmentFlag.AlignVCenter,
                         self.CAPTIONS[2] if self.user_spans else self.CAPTIONS[0] if self.labels else "")
        painter.drawText(QRectF(4, half, self.caption_width(), half), Qt.AlignmentFlag.AlignVCenter,
                         self.CAPTIONS[1])
        x = self.x_of(self.cursor_us)
        painter.setPen(QPen(QColor(255, 255, 255), 2))
        painter.drawLine(int(x), 0, int(x), self.height())
        painter.end()


def view_layout(view: EventView, bars: ProbabilityBars, timeline: Timeline) -> QVBoxLayout:
    """The window's picture: the event view beside the class bars, the timeline below them."""
    top = QHBoxLayout()
    top.addWidget(view, 3)
    top.addWidget(bars, 1)
    layout = QVBoxLayout()
    layout.addLayout(top, 1)
    layout.addWidget(timeline)
    return layout


def show_decision(view: EventView, bars: ProbabilityBars, timeline: Timeline, prediction) -> None:
    """A prediction drawn: the decided gesture and its confidence over the events, the bars, its timeline mark."""
    decision = prediction.decision
    view.label_text = f"{decision.class_name.replace('_', ' ')}  {decision.confidence:.2f}"
    view.label_colour = class_colour(decision.class_id).lighter(120)
    bars.set_probs(prediction.probs, decision.class_id)
    timeline.add(prediction.recording_us, decision.class_id)


def truth_labels(source, class_names) -> list:
    """The recording's ground truth, numbered as the model numbers its classes (so a class has one colour)."""
    classes = tuple(getattr(source, "label_classes", ()))
    if not class_names or not classes or classes == tuple(class_names):
        return list(source.labels)
    return align_labels(source.labels, classes, class_names)[0]
