"""An AEDAT4 recording read packet by packet with the ``aedat`` decoder, with a ``ReadGap`` wherever a packet is
skipped or the readable part ends. Runs in the reader child
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
    pass goes on; ``reason`` is the decoder's) or ``truncated`` (the file ends inside a packet, or nothing after
    this point decodes; ``reason`` says which, in words)."""

    kind: str
    reason: str


# The header's description of each stream (AEDAT 4.0: an XML tree, one /outInfo/<id>/ node per stream)
_STREAM_NODE = re.compile(rb'<node name="(\d+)" path="/outInfo/\d+/">(.*?)</node>', re.DOTALL)
_OUTPUT_NAME = re.compile(rb'key="originalOutputName" type="string">([^<]{1,200})<')
_SOURCE = re.compile(rb'key="source" type="string">([^<]{1,200})<')
HEADER_BYTES = 1 << 20  # where the description is looked for: a header is a few kB


class InProcessFileReader:
    """An AEDAT4 recording read with the ``aedat`` decoder (neuromorphicsystems' Rust decoder, the one
    ``tonic.io.read_aedat4`` uses): the streams from its stream table and the header's description, the events
    packet by packet. It goes on past a packet that does not decode and reads a file that ends inside a packet;
    dv-processing's reader can do neither, and spins for ever on a damaged packet index. In the reader child, or
    in this process for a worker that may not start children (a daemonic pool worker framing training trials: the
    user's own files)."""

    MAX_GAPS_IN_A_ROW = 100  # nothing decodes any more: the rest of the file is not packets

    def __init__(self, path: str):
        self.path = path
        streams = self._decoder().id_to_stream()
        with open(path, "rb") as f:
            described = {int(i): node for i, node in _STREAM_NODE.findall(f.read(HEADER_BYTES))}

        def name(i: int, stream: dict) -> str:
            found = _OUTPUT_NAME.search(described.get(i, b""))
            return found.group(1).decode("utf-8", "replace") if found else f"{stream.get('type', 'stream')} {i}"

        self._ids = {name(i, s): i for i, s in sorted(streams.items())}
        self.streams = list(self._ids)
        self.event_streams = [n for n, i in self._ids.items() if streams[i].get("type") == "events"]
        self.resolutions = {n: (streams[self._ids[n]]["width"], streams[self._ids[n]]["height"])
                            for n in self.event_streams}
        source = next((m for n in self.event_streams if (m := _SOURCE.search(described.get(self._ids[n], b"")))),
                      None)
        self.camera = source.group(1).decode("utf-8", "replace") if source else None

    def _decoder(self):
        import aedat

        try:
            return aedat.Decoder(self.path)
        except Exception as exc:
            raise ReaderRefused(str(exc)[:2000] or type(exc).__name__) from None

    def read(self, stream: str):
        """One pass over ``stream``: numpy batches in file order, and a ``ReadGap`` where a packet was skipped or
        the readable part ends."""
        wanted, packets, in_a_row = self._ids[stream], iter(self._decoder()), 0
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except BaseException as exc:  # the decoder's panics are BaseExceptions too
                if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
                    raise
                reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
                in_a_row += 1
                if "fill whole buffer" in reason:  # the decoder's end of file inside a packet (or its header)
                    yield ReadGap("truncated", "it was cut off (a recording never finalised, or a copy that did "
                                               "not finish)")
                    return
                if in_a_row >= self.MAX_GAPS_IN_A_ROW:
                    yield ReadGap("truncated", f"nothing decodes after this point ({reason})")
                    return
                yield ReadGap("undecodable", reason)
                continue
            in_a_row = 0
            if packet.get("stream_id") == wanted and "events" in packet and len(packet["events"]):
                e = packet["events"]
                yield make_events(e["t"], e["x"], e["y"], e["on"])

    def kill(self) -> None:
        pass
