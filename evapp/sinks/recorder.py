"""Recording a live stream to .aedat4: every event received, exactly as received, finalised on every exit path.

The recorder is a tap of the pipeline (``Pipeline.add_tap`` hands it the live source's stores): it sees each
dv-processing EventStore before the noise filter and before numpy, and hands it straight to
``MonoCameraWriter`` (no per-event copy). dv-processing finalises the file when the writer is destroyed, which
``close()`` does; the callers close it in ``finally`` blocks and on window close, so Ctrl-C, closing the window
and a lost source all leave a complete file.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path

from evapp.errors import InputError, with_reason
from evapp.events import SensorGeometry

log = logging.getLogger(__name__)

# Free space a recording leaves on its disk: enough for the writer to finalise the file (its last packets and
# its packet index) after recording stops. dv-processing's writer aborts the process when a write fails.
DISK_RESERVE_BYTES = 32 << 20


def free_bytes(folder: Path) -> int:
    stat = os.statvfs(folder)
    return stat.f_bavail * stat.f_frsize


def check_record_path(path: str | Path, force: bool) -> Path:
    """Refuse a wrong extension, a missing folder, an existing file without ``force``, a folder that takes no file
    or a disk too full to record on."""
    path = Path(path)
    if path.suffix != ".aedat4":
        raise InputError(f"{path} should end in lower-case .aedat4 (recordings are AEDAT4 files, and dv-processing "
                         "reads no other spelling).")
    if path.is_dir():
        raise InputError(f"{path} is a directory; give a file name ending in .aedat4.")
    if not path.parent.exists():
        raise InputError(f"The folder {path.parent} does not exist.")
    if path.exists() and not force:
        raise InputError(f"{path} already exists; pass --force to overwrite it.")
    try:  # before any camera is opened: a folder that cannot take the file is said now, not after connecting
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".evapp-write-check-"):
            pass
    except OSError as exc:
        raise InputError(f"Cannot write into {path.parent} ({exc.strerror or exc}).") from None
    if (free := free_bytes(path.parent)) < 2 * DISK_RESERVE_BYTES:
        raise InputError(f"The disk of {path.parent} has {free >> 20} MiB free; a recording needs more than "
                         f"{2 * DISK_RESERVE_BYTES >> 20} MiB.")
    return path


class AedatRecorder:
    """Writes EventStores to an .aedat4 file; thread-safe (the reader writes, another thread may close)."""

    def __init__(self, path: str | Path, geometry: SensorGeometry, force: bool = False):
        import dv_processing as dv

        self.path = check_record_path(path, force)
        config = dv.io.MonoCameraWriter.EventOnlyConfig(geometry.name, (geometry.width, geometry.height))
        try:
            self._writer = dv.io.MonoCameraWriter(str(self.path), config)
        except RuntimeError as exc:
            raise InputError(with_reason(f"{self.path} cannot be written", exc)) from None
        self._lock = threading.Lock()
        self._last_t: int | None = None
        self._shift = 0  # added after a reconnect whose clock went backwards (the writer needs monotonic time)
        self.events = 0
        self.stopped_because: str | None = None  # why recording stopped before the end (the disk filled up)

    @property
    def closed(self) -> bool:
        return self._writer is None

    @property
    def last_time_us(self) -> int | None:
        """The newest event time written, on the recording's own clock (None before the first event)."""
        return self._last_t

    def write_store(self, store) -> None:
        with self._lock:
            if self._writer is None or not len(store):
                return
            if self._last_t is not None and store.getLowestTime() + self._shift < self._last_t:
                self._shift = self._last_t + 1 - store.getLowestTime()
                log.warning("the stream's clock went backwards (a reconnect?); the recording shifts it by %d µs "
                            "to stay monotonic", self._shift)
            if self._shift:
                store = self._shifted(store)
            if (free := free_bytes(self.path.parent)) < DISK_RESERVE_BYTES:
                self._stop(f"its disk has only {free >> 20} MiB free")
                return
            self._writer.writeEvents(store)
            self.events += len(store)
            self._last_t = store.getHighestTime()

    def _stop(self, because: str) -> None:
        """Stop recording (the lock held): the file is finalised with what it holds, and the stream goes on."""
        writer, self._writer = self._writer, None
        del writer
        self.stopped_because = because
        log.warning("recording stopped: %s; %s holds the %s events recorded until then, finalised", because,
                    self.path, f"{self.events:,}")

    __call__ = write_store  # so the recorder itself is a store hook

    def _shifted(self, store):
        from evapp.sources.aedat4 import to_event_store

        events = store.numpy()
        events["timestamp"] += self._shift
        return to_event_store(events)

    def close(self) -> None:
        """Finalise the file (idempotent)."""
        with self._lock:
            if self._writer is None:
                return
            writer, self._writer = self._writer, None
            del writer  # dv-processing writes the file's index and closes it when the writer is destroyed
        log.info("recorded %d events to %s", self.events, self.path)
