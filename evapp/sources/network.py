"""Live event streams from a dv-processing ``NetworkWriter`` (DV software, another evapp) at tcp://HOST:PORT."""

from __future__ import annotations

import time
from urllib.parse import urlparse

from evapp.errors import InputError, SourceLost, native_reason, with_reason
from evapp.events import SensorGeometry
from evapp.sources.base import LiveSource


def parse_tcp_address(spec: str) -> tuple[str, int]:
    url = urlparse(spec)
    try:
        port = url.port  # urllib checks the port when it is read: a word or 99999 raises here
    except ValueError:
        port = None
    if url.scheme != "tcp" or not url.hostname or port is None or port == 0:
        raise InputError(f"'{spec}' is not a network address of the form tcp://HOST:PORT (PORT 1..65535).")
    return url.hostname, port


class NetworkSource(LiveSource):
    """Events from a dv-processing network server.

    ``NetworkReader.getNextEventBatch`` is non-blocking (it returns None when nothing is queued,
    event-io.md section 1.6), so the reader polls with a short sleep. The stream ends when the server closes
    the connection; ``idle_timeout_s`` bounds how long a silent but open connection is waited on.
    """

    format_name = "dv-processing network stream"

    def __init__(self, spec: str, idle_timeout_s: float | None = None, poll_s: float = 0.0005):
        import dv_processing as dv

        self.spec = spec
        self.host, self.port = parse_tcp_address(spec)
        try:
            self._reader = dv.io.NetworkReader(self.host, self.port)
        except RuntimeError as exc:
            reason = native_reason(exc)
            raise InputError(f"Nothing accepts connections at {spec}{f' ({reason})' if reason else ''}; start the "
                             "event server first or check the address.") from None
        resolution = self._reader.getEventResolution()
        if resolution is None:
            raise InputError(f"The stream at {spec} carries no events.")
        name = self._reader.getCameraName() or "network"
        super().__init__(SensorGeometry(int(resolution[0]), int(resolution[1]), name))
        self.idle_timeout_s = idle_timeout_s
        self.poll_s = poll_s
        self.drain_requested = False  # set from a signal handler: end at the first empty poll

    def _raw_batches(self):
        reader = self._reader
        last_data = time.monotonic()
        while not self._stop_requested:
            try:
                store = reader.getNextEventBatch()
            except RuntimeError as exc:
                raise SourceLost(with_reason(f"The stream at {self.spec} broke off", exc)) from None
            if store is not None and len(store):
                last_data = time.monotonic()
                batch = self._deliver(store)
                if batch is not None:
                    yield batch
                continue
            if not reader.isRunning() or self.drain_requested:  # drained: everything received so far was handed on
                return
            idle_s = time.monotonic() - last_data
            if self.idle_timeout_s is not None and idle_s > self.idle_timeout_s:
                return
            # Poll fast while data flows; after 20 ms of silence poll every 5 ms so an idle stream costs no CPU.
            time.sleep(self.poll_s if idle_s < 0.02 else 0.005)

    def describe(self) -> str:
        return self.spec

    def close(self) -> None:
        if self._reader is not None:
            self._drain_to_hooks(self._reader.getNextEventBatch)
        self._reader = None
