"""AEDAT4 recordings through dv-processing (reference/event-io.md sections 1.3 and 1.4)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from evapp.errors import InputError, with_reason
from evapp.events import SensorGeometry
from evapp.sources.aedat3 import Aedat3FormatError, labels_path_for, read_class_names, read_labels_csv
from evapp.sources.base import EventSource, SourceInfo
from evapp.sources.stores import to_event_store  # noqa: F401 - imported from here by callers

log = logging.getLogger(__name__)

AEDAT4_MAGIC = b"#!AER-DAT4.0"  # the first bytes of every AEDAT4 file (iniVation's AEDAT 4.0 format)


def write_aedat4(path: str | Path, batches, geometry: SensorGeometry, camera_name: str | None = None,
                 compression: str = "lz4") -> int:
    """Write event batches (program dtype, monotonic µs) to an .aedat4 file with dv-processing.

    dv-processing has no numpy -> EventStore constructor, so events go in through ``push_back``
    (about 1 M events/s, event-io.md section 1.1). The file is finalised when the writer is destroyed,
    which happens before this returns, on every exit path. ``compression`` is lz4 (dv's default, fast to
    read) or zstd (about 35 % smaller, 2x slower to read; event-io.md section 1.5). Returns the events written.
    """
    import dv_processing as dv

    codec = {"lz4": dv.CompressionType.LZ4, "zstd": dv.CompressionType.ZSTD, "none": dv.CompressionType.NONE}

    if Path(path).suffix != ".aedat4":  # dv-processing's writer aborts the process on any other spelling
        raise InputError(f"{path} should end in lower-case .aedat4 (dv-processing writes no other spelling).")
    if isinstance(batches, np.ndarray):
        batches = [batches]
    name = camera_name or geometry.name
    config = dv.io.MonoCameraWriter.EventOnlyConfig(name, (geometry.width, geometry.height), codec[compression])
    writer = dv.io.MonoCameraWriter(str(path), config)
    written = 0
    try:
        for batch in batches:
            for start in range(0, batch.shape[0], 100_000):
                chunk = batch[start : start + 100_000]
                writer.writeEvents(to_event_store(chunk))
                written += chunk.shape[0]
    finally:
        del writer
    return written


class Aedat4Source(EventSource):
    """An .aedat4 recording, read in a child process with the ``aedat`` decoder (``evapp.sources.aedat4_packets``):
    a damaged or cut-off file replays what it holds, with the packets skipped and where the readable part ends
    counted.

    Recordings that also hold IMU, trigger or APS-frame streams replay their event stream only; the other
    streams are listed by ``info()``. A sibling ``<stem>_labels.csv`` (DVS128 Gesture format, as written by
    ``evapp simulate``) is read as ground truth on the rebased clock.
    """

    format_name = "AEDAT4"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.suffix != ".aedat4":  # dv-processing's reader refuses any other spelling of the extension
            raise InputError(f"{self.path} must end in lower-case .aedat4 for dv-processing to read it: rename it "
                             f"to {self.path.with_suffix('.aedat4').name}.")
        self._reader = self._open()
        streams, self._event_streams = self._reader.streams, self._reader.event_streams
        if not self._event_streams:
            self._reader.kill()
            raise InputError(f"{self.path} holds no event stream (streams: {', '.join(streams) or 'none'}).")
        self.stream_name = "events" if "events" in self._event_streams else self._event_streams[0]
        self._other_streams = [s for s in streams if s != self.stream_name]
        resolution = self._reader.resolutions[self.stream_name]
        geometry = SensorGeometry(int(resolution[0]), int(resolution[1]), self._reader.camera or "unknown")
        labels_file = labels_path_for(self.path)
        super().__init__(geometry)
        self._labels_file = labels_file if labels_file.is_file() else None
        if self._labels_file is not None:
            try:
                self.label_classes = read_class_names(self.path.parent)
            except Aedat3FormatError as exc:
                raise InputError(str(exc)) from None

    def _open(self):
        try:
            with open(self.path, "rb") as f:
                magic = f.read(len(AEDAT4_MAGIC))
        except OSError as exc:
            raise InputError(f"{self.path} cannot be read ({exc.strerror or exc}).") from None
        if magic != AEDAT4_MAGIC:
            raise InputError(f"{self.path} is not an AEDAT4 recording (it does not start with the AEDAT4 "
                             f"header {AEDAT4_MAGIC.decode()!r}).")
        from evapp.sources.aedat4_packets import ReaderRefused
        from evapp.sources.isolation import file_reader

        try:  # in a child process: a decoder that aborts on a corrupt file takes only the child with it
            return file_reader(str(self.path))
        except ReaderRefused as exc:
            raise InputError(with_reason(f"{self.path} is not a readable AEDAT4 recording", exc)) from None

    packets_skipped = 0  # packets that did not decode, skipped
    readable_end: str | None = None  # why the readable part ends before the file does, in words

    def _raw_batches(self):
        if self._reader is None:
            raise InputError(f"{self.path} was closed.")
        from evapp.sources.aedat4_packets import ReaderRefused, ReadGap

        self.packets_skipped, self.readable_end = 0, None
        count = first = last = 0
        try:
            for batch in self._reader.read(self.stream_name):
                if not isinstance(batch, ReadGap):
                    first = first if count else int(batch["timestamp"][0])
                    count, last = count + batch.shape[0], int(batch["timestamp"][-1])
                    yield batch
                elif batch.kind == "undecodable":
                    if not self.packets_skipped:
                        log.warning("%s: a packet that does not decode (%s) was skipped; skipped packets are "
                                    "counted (packets_skipped)", self.path, batch.reason)
                    self.packets_skipped += 1
                else:
                    self.readable_end = batch.reason
                    if not count:
                        raise InputError(f"{self.path} holds no readable events: {self.readable_end}.")
                    log.warning("%s is not whole: %s; read its first %s events (%.3f s)", self.path,
                                self.readable_end, f"{count:,}", (last - first) / 1e6)
        except ReaderRefused as exc:
            raise InputError(with_reason(f"{self.path} is corrupted or truncated", exc)) from None

    def batches(self):
        first = None
        for batch in super().batches():
            if first is None:
                first = True
                self._load_labels()
            yield batch

    def _load_labels(self) -> None:
        if self._labels_file is not None and not self.labels:
            self.labels = self._read_labels(self.t0_us or 0)

    def _read_labels(self, t0_us: int):
        try:
            return read_labels_csv(self._labels_file, t0_us, len(self.label_classes))
        except Aedat3FormatError as exc:
            raise InputError(str(exc)) from None

    def info(self) -> SourceInfo:
        count, first, last = self._count_span()
        if self._labels_file is not None:
            self.labels = self._read_labels(first)
        return SourceInfo(str(self.path), self.format_name, self.geometry, last - first, count, self._other_streams,
                          self.labels, self.packets_skipped, self.readable_end)

    def describe(self) -> str:
        return str(self.path)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.kill()
            self._reader = None
