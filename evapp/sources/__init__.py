"""Event sources: cameras, files, network streams. ``open_source`` picks one from what the user typed."""

from __future__ import annotations

from pathlib import Path

from evapp.errors import InputError
from evapp.sources.base import EventSource, SourceInfo, start_at
from evapp.sources.replay import ReplayClock, ReplayOptions

FILE_FORMATS = {
    ".aedat4": "AEDAT4 recording (DV, dv-processing)",
    ".aedat": "DVS128 Gesture original (AEDAT 3.1)",
    ".npy": "tonic DVSGesture sample (x, y, p, t in ms)",
    ".raw": "Prophesee EVT 2.0 / EVT 3.0",
    ".dat": "Prophesee DAT",
}


def open_source(spec: str | Path) -> EventSource:
    """Open a file path or a tcp://HOST:PORT address as an event source, or raise one clear InputError."""
    spec = str(spec)
    if spec.startswith("tcp://"):  # a peer's bytes are read in a child process (evapp.sources.isolation)
        from evapp.sources.isolation import IsolatedNetworkSource

        return IsolatedNetworkSource(spec)
    path = Path(spec)
    if not path.exists():
        raise InputError(f"{path} does not exist.")
    if path.is_dir():
        raise InputError(f"{path} is a directory; give one recording file.")
    suffix = path.suffix.lower()
    if suffix not in FILE_FORMATS:
        known = ", ".join(FILE_FORMATS)
        raise InputError(f"{path} has an unknown extension '{path.suffix}' (evapp reads {known} and tcp://HOST:PORT).")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty (0 bytes).")
    if suffix == ".aedat4":
        from evapp.sources.aedat4 import Aedat4Source

        return Aedat4Source(path)
    from evapp.sources import files

    return {".aedat": files.Aedat3Source, ".npy": files.TonicNpySource}.get(suffix, files.PropheseeSource)(path)


__all__ = ["EventSource", "SourceInfo", "open_source", "start_at", "ReplayClock", "ReplayOptions", "FILE_FORMATS"]
