"""An AEDAT4 recording read packet by packet: its streams from dv-processing, its events from the ``aedat``
decoder, with a ``ReadGap`` wherever a packet is skipped or the readable part ends. Runs in the reader child
(``evapp.sources.isolation``), or in process where no child may be started."""

from __future__ import annotations

import re
from dataclasses import dataclass

from evapp.events import make_events


class ReaderRefused(Exception):
    """The file cannot be read at all, with the reader's message."""


@dataclass(frozen=True)
class ReadGap:
    """In a pass's stream of batches, where events could not be read: ``undecodable`` (one packet skipped, the
    pass goes on) or ``truncated`` (the file ends inside a packet, or nothing after this point decodes)."""

    kind: str
    reason: str


_AEDAT_SOURCE = re.compile(rb'key="source" type="string">([^<]{1,200})<')


class InProcessFileReader:
    """An AEDAT4 recording's metadata from dv-processing, its events packet by packet from the ``aedat`` decoder
    (neuromorphicsystems' Rust decoder, the one ``tonic.io.read_aedat4`` uses), which can go on past a packet that
    does not decode and read a file that ends inside a packet; dv-processing's reader can do neither. In the
    reader child, or in this process for a worker that may not start children (a daemonic pool worker framing
    training trials: the user's own files)."""

    MAX_GAPS_IN_A_ROW = 100  # nothing decodes any more: the rest of the file is not packets

    def __init__(self, path: str):
        self.path = path
        self.refusal = None  # dv-processing's reason for refusing the file, where the events are read anyway
        try:
            self._metadata_from_dv()
        except (RuntimeError, ValueError, IndexError, MemoryError) as exc:
            self.refusal = str(exc)[:2000] or type(exc).__name__
            self._metadata_from_packets()

    def _metadata_from_dv(self) -> None:
        import dv_processing as dv

        rec = dv.io.MonoCameraRecording(self.path)
        self.streams = list(rec.getStreamNames())
        self.event_streams = [s for s in self.streams if rec.isStreamOfEventType(s)]
        self.resolutions = {s: None if (r := rec.getEventResolution(s)) is None else tuple(r)
                            for s in self.event_streams}
        self.camera = rec.getCameraName()

    def _metadata_from_packets(self) -> None:
        """What the decoder knows, for a file dv-processing refuses (a truncated one has no packet table)."""
        try:
            streams = self._decoder().id_to_stream()
        except ReaderRefused as exc:
            raise ReaderRefused(self.refusal) from exc
        events = [i for i, s in sorted(streams.items()) if s.get("type") == "events"]
        self.streams = [f"{s.get('type', 'stream')}" if i in events[:1] else f"{s.get('type', 'stream')} {i}"
                        for i, s in sorted(streams.items())]
        self.event_streams = self.streams[:1] if events else []
        self.resolutions = {name: (streams[events[0]]["width"], streams[events[0]]["height"])
                            for name in self.event_streams}
        with open(self.path, "rb") as f:
            found = _AEDAT_SOURCE.search(f.read(1 << 16))
        self.camera = found.group(1).decode("utf-8", "replace") if found else None

    def _decoder(self):
        import aedat

        try:
            return aedat.Decoder(self.path)
        except Exception as exc:
            raise ReaderRefused(str(exc)[:2000] or type(exc).__name__) from None

    def read(self, stream: str):
        """One pass over the first event stream: numpy batches in file order, and a ``ReadGap`` where a packet
        was skipped or the readable part ends."""
        decoder = self._decoder()
        ids = [i for i, s in sorted(decoder.id_to_stream().items()) if s.get("type") == "events"]
        if not ids:
            return
        packets, in_a_row = iter(decoder), 0
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                if self.refusal is not None:  # every packet read, but the file is not whole (no packet index)
                    yield ReadGap("truncated", self.refusal)
                return
            except BaseException as exc:  # the decoder's panics are BaseExceptions too
                if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
                    raise
                reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
                in_a_row += 1
                if "fill whole buffer" in reason or in_a_row >= self.MAX_GAPS_IN_A_ROW:
                    yield ReadGap("truncated", reason)
                    return
                yield ReadGap("undecodable", reason)
                continue
            in_a_row = 0
            if packet.get("stream_id") == ids[0] and "events" in packet and len(packet["events"]):
                e = packet["events"]
                yield make_events(e["t"], e["x"], e["y"], e["on"])

    def kill(self) -> None:
        pass
