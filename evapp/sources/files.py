"""File formats other than AEDAT4: DVS128 Gesture originals, tonic's DVSGesture samples, Prophesee files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from evapp.errors import InputError
from evapp.events import GESTURE_CLASSES, LabelInterval, SensorGeometry, make_events
from evapp.sources.aedat3 import (
    Aedat3FormatError,
    iter_aedat3_batches,
    labels_path_for,
    read_class_names,
    read_labels_csv,
)
from evapp.sources.base import EventSource

DVS128 = SensorGeometry(128, 128, "DVS128")
_BATCH = 100_000


class Aedat3Source(EventSource):
    """A DVS128 Gesture original ``userNN_<lighting>.aedat`` (AEDAT 3.1) with its ``_labels.csv`` if present."""

    format_name = "AEDAT3.1 (DVS128 Gesture)"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            first = next(iter_aedat3_batches(self.path), None)
        except Aedat3FormatError as exc:
            raise InputError(f"{self.path} is not a readable AEDAT 3.1 file: {exc}.") from None
        super().__init__(DVS128)
        self._labels_file = labels_path_for(self.path)
        self._first_t = int(first["timestamp"][0]) if first is not None else 0
        if self._labels_file.is_file():
            try:
                self.label_classes = read_class_names(self.path.parent)
                self.labels = read_labels_csv(self._labels_file, self._first_t, len(self.label_classes))
            except Aedat3FormatError as exc:
                raise InputError(str(exc)) from None

    def _raw_batches(self):
        try:
            yield from iter_aedat3_batches(self.path)
        except Aedat3FormatError as exc:
            raise InputError(f"{self.path} is corrupted: {exc}.") from None

    def describe(self) -> str:
        return str(self.path)


class TonicNpySource(EventSource):
    """One sample of tonic's DVSGesture: an (N, 4) array of x, y, p, t with t in ms; the file stem is the label.

    (reference/event-io.md section 2.1: ``__getitem__`` multiplies t by 1000.)
    """

    format_name = "tonic DVSGesture .npy"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            arr = np.load(self.path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.path} is not a readable .npy file ({exc}).") from None
        if arr.ndim != 2 or arr.shape[1] != 4 or not (np.issubdtype(arr.dtype, np.integer)
                                                      or np.issubdtype(arr.dtype, np.floating)):
            raise InputError(f"{self.path} is not a tonic DVSGesture sample (expected an N x 4 array of numbers: x, "
                             f"y, p, t; it holds {arr.dtype} {arr.shape}).")
        if arr.shape[0] and not (np.isfinite(arr).all() and np.abs(arr[:, :3]).max() < 32768
                                 and np.abs(arr[:, 3]).max() < 9e12):
            raise InputError(f"{self.path} holds values no DVS sample has (non-finite, or coordinates past "
                             "16 bits, or times past 9e12 ms).")
        order = np.argsort(arr[:, 3], kind="stable")
        arr = arr[order]
        self._events = make_events(np.round(arr[:, 3] * 1000).astype(np.int64), arr[:, 0], arr[:, 1], arr[:, 2])
        labels = []
        if self.path.stem.isdigit() and int(self.path.stem) < len(GESTURE_CLASSES) and self._events.shape[0]:
            t = self._events["timestamp"]
            labels = [LabelInterval(int(self.path.stem), 0, int(t[-1] - t[0]) + 1)]
        super().__init__(DVS128, labels)

    def _raw_batches(self):
        for start in range(0, self._events.shape[0], _BATCH):
            yield self._events[start : start + _BATCH].copy()

    def describe(self) -> str:
        return str(self.path)


# Prophesee sensors by HAL plugin name, for files whose header states no geometry (Prophesee docs:
# Gen3 VGA 640x480, Gen3.1 VGA 640x480, Gen4.1 / IMX636 HD 1280x720, GenX320 320x320).
_PROPHESEE_PLUGINS = {"gen3": (640, 480), "gen31": (640, 480), "gen41": (1280, 720), "imx636": (1280, 720),
                      "genx320": (320, 320)}


class PropheseeSource(EventSource):
    """Prophesee ``.raw`` (EVT 2.0 / EVT 3.0) and ``.dat`` recordings through expelliarmus (a tonic dependency)."""

    format_name = "Prophesee"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        header = _prophesee_header(self.path)
        if self.path.suffix == ".dat":
            self.encoding = "dat"
        else:
            m = re.search(r"(?:evt\s+|format\s+EVT)(\d)", header, re.IGNORECASE)
            if not m or m.group(1) not in "23":
                raise InputError(
                    f"{self.path} does not say which Prophesee encoding it uses (EVT 2.0 or EVT 3.0 expected)."
                )
            self.encoding = f"evt{m.group(1)}"
        self.format_name = f"Prophesee {self.encoding.upper()}"
        size = _prophesee_geometry(header)
        if size is None:
            size = self._size_from_events()
        super().__init__(SensorGeometry(size[0], size[1], "Prophesee"))

    def _wizard(self):
        from expelliarmus import Wizard

        return Wizard(encoding=self.encoding, fpath=self.path, chunk_size=_BATCH)

    def _raw_batches(self):
        try:
            for chunk in self._wizard().read_chunk():
                if chunk.shape[0]:
                    yield make_events(chunk["t"], chunk["x"], chunk["y"], chunk["p"])
        except (RuntimeError, ValueError) as exc:
            raise InputError(f"{self.path} could not be decoded as {self.encoding.upper()} ({exc}).") from None

    def _size_from_events(self) -> tuple[int, int]:
        w = h = 0
        for batch in self._raw_batches():
            w, h = max(w, int(batch["x"].max()) + 1), max(h, int(batch["y"].max()) + 1)
        return w, h

    def describe(self) -> str:
        return str(self.path)


def _prophesee_header(path: Path) -> str:
    lines = []
    with open(path, "rb") as f:
        for raw in f:
            if not raw.startswith(b"%"):
                break
            lines.append(raw.decode("latin-1").strip())
            if len(lines) > 200:
                break
    if not lines:
        raise InputError(f"{path} has no Prophesee header (lines starting with '%').")
    return "\n".join(lines)


def _prophesee_geometry(header: str) -> tuple[int, int] | None:
    m = re.search(r"geometry\s+(\d+)x(\d+)", header)
    if m:
        return int(m.group(1)), int(m.group(2))
    w = re.search(r"width[=\s]+(\d+)", header, re.IGNORECASE)
    h = re.search(r"height[=\s]+(\d+)", header, re.IGNORECASE)
    if w and h:
        return int(w.group(1)), int(h.group(1))
    m = re.search(r"plugin_name\s+hal_plugin_(\w+?)(?:_|\s|$)", header)
    if m and m.group(1).lower() in _PROPHESEE_PLUGINS:
        return _PROPHESEE_PLUGINS[m.group(1).lower()]
    return None
