"""Readers of untrusted bytes in a child process: a network peer cannot hang, abort or exhaust evapp.

dv-processing's ``NetworkReader`` blocks while holding the GIL (a peer that accepts and never sends), aborts the
process from C++ on bytes that do not parse (``std::length_error``), and allocates what a corrupt packet header
asks for. So the reader runs in a spawned child process (``_child_main``) that streams decoded event batches to
the parent through a pipe, with a heartbeat from a second thread. The parent (``IsolatedNetworkSource``) never
blocks longer than a poll: Ctrl-C and SIGTERM are honoured in every state; a child that sends nothing, not even a
heartbeat, for ``STALL_S`` (a reader stuck with the GIL held) is killed, as is one that takes longer than
``CONNECT_S`` to deliver the stream's header; a child that dies (a C++ abort, the memory bound) is a lost stream,
which ``ReconnectingSource`` reconnects. The recorder writes from the batches the parent received, so a reader's
death never costs a recorded event. The child's address space is capped at ``MEMORY_BOUND`` bytes.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time

import numpy as np

from evapp.errors import InputError, SourceLost
from evapp.events import EVENT_DTYPE, SensorGeometry
from evapp.sources.aedat4_packets import InProcessFileReader, ReaderRefused, ReadGap
from evapp.sources.base import LiveSource

log = logging.getLogger(__name__)

CONNECT_S = 5.0  # from start to the stream's header (a silent peer holds the child here)
STALL_S = 3.0  # no batch and no heartbeat: the child is stuck
HEARTBEAT_S = 0.25
MEMORY_BOUND = 2 << 30  # the child's address space (RLIMIT_AS), interpreter and libraries included

_HELLO, _BATCH, _BEAT, _ERROR, _END = b"H", b"B", b"P", b"E", b"Z"


def _die_with_parent() -> None:
    """Linux: the child gets SIGKILL when the parent dies (even by SIGKILL), wherever it is blocked."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _child_setup() -> None:
    """What every reader child does first: leave Ctrl-C to the parent, die with it, keep dv-processing's own
    abort messages off the terminal (the parent puts them in words), cap its address space."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when the child ends
    _die_with_parent()
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
    except OSError:
        pass
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BOUND, MEMORY_BOUND))
    except (ImportError, ValueError, OSError):
        pass


def _child_main(spec: str, conn) -> None:
    """The child: open the network stream, send its header, then every batch as raw bytes, until it ends."""
    _child_setup()
    lock = threading.Lock()

    def send(kind: bytes, payload: bytes = b"") -> None:
        with lock:
            conn.send_bytes(kind + payload)

    def beat() -> None:
        while True:
            time.sleep(HEARTBEAT_S)
            try:
                send(_BEAT)
            except OSError:
                return

    threading.Thread(target=beat, daemon=True).start()
    from evapp.sources.network import NetworkSource

    try:
        source = NetworkSource(spec)
        # the parent is closing: hand on what the reader already holds, then end (see IsolatedNetworkSource.close)
        signal.signal(signal.SIGUSR1, lambda *_: setattr(source, "drain_requested", True))
        g = source.geometry
        send(_HELLO, pickle.dumps((g.width, g.height, g.name)))
        for batch in source._raw_batches():
            send(_BATCH, np.ascontiguousarray(batch, EVENT_DTYPE).tobytes())
        send(_END)
    except (InputError, SourceLost) as exc:
        send(_ERROR, pickle.dumps((type(exc).__name__, str(exc))))
    except OSError:  # the parent went away
        pass
    except MemoryError:
        send(_ERROR, pickle.dumps(("SourceLost", f"The stream at {spec} asked for more memory than its reader's "
                                                 f"bound of {MEMORY_BOUND >> 20} MiB (not a dv-processing event "
                                                 "stream?).")))


class ReaderProcess:
    """The parent's handle on one reader child: messages with a timeout, death noticed, kill on close."""

    def __init__(self, spec: str):
        context = multiprocessing.get_context("spawn")
        self._conn, child_end = context.Pipe(duplex=False)
        self.process = context.Process(target=_child_main, args=(spec, child_end), daemon=True,
                                       name=f"evapp-reader {spec}")
        self.process.start()
        child_end.close()
        self.last_message = time.monotonic()

    def next(self, timeout: float) -> tuple[bytes, bytes] | None:
        """(kind, payload), or None when nothing came within ``timeout``; EOFError when the child is gone."""
        if not self._conn.poll(timeout):
            return None
        try:
            data = self._conn.recv_bytes()
        except OSError:  # the child died in the middle of a message ("got end of file during message")
            raise EOFError from None
        self.last_message = time.monotonic()
        return data[:1], data[1:]

    def death(self) -> str:
        """Why the child ended, in words."""
        self.process.join(timeout=0.5)
        code = self.process.exitcode
        if code is None:
            return "it stopped responding"
        if code == -signal.SIGABRT:
            return "its reader aborted in dv-processing on bytes it could not parse"
        if code < 0:
            return f"its reader was killed by signal {-code}"
        return f"its reader exited with code {code}"

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=1.0)
        self._conn.close()


class IsolatedNetworkSource(LiveSource):
    """A ``tcp://`` stream read by a child process (see the module docstring); batches arrive as numpy, and the
    store hooks (the recorder) get EventStores made from exactly those batches."""

    format_name = "dv-processing network stream"
    POLL_S = 0.1

    def __init__(self, spec: str, stopped=lambda: False):
        """``stopped``: polled while connecting (a reconnect that Ctrl-C must be able to end)."""
        from evapp.sources.network import parse_tcp_address

        parse_tcp_address(spec)  # a malformed address is said before any process starts
        self.spec = spec
        self._child = ReaderProcess(spec)
        try:
            geometry = self._await_header(stopped)
        except BaseException:  # Ctrl-C while connecting too: no reader child outlives its source
            self._child.kill()
            raise
        super().__init__(geometry)

    def _await_header(self, stopped) -> SensorGeometry:
        deadline = time.monotonic() + CONNECT_S
        while True:
            if stopped():
                raise InputError(f"Connecting to {self.spec} was stopped.")
            try:
                message = self._child.next(self.POLL_S)
            except EOFError:
                reason = self._child.death()
                self._child.kill()
                raise InputError(f"The stream at {self.spec} broke off while connecting ({reason}).") from None
            if message is not None:
                kind, payload = message
                if kind == _HELLO:
                    width, height, name = pickle.loads(payload)
                    return SensorGeometry(width, height, name)
                if kind == _ERROR:
                    self._child.kill()
                    raise InputError(pickle.loads(payload)[1])
            if time.monotonic() > deadline:
                break
        self._child.kill()
        raise InputError(f"{self.spec} accepted the connection but sent no stream within {CONNECT_S:g} s (not a "
                         "dv-processing event server, or a stuck one).")

    def _raw_batches(self):
        child = self._child
        while not self._stop_requested:
            try:
                message = child.next(self.POLL_S)
            except EOFError:
                raise SourceLost(f"The stream at {self.spec} broke off ({child.death()})") from None
            if message is None:
                if time.monotonic() - child.last_message > STALL_S:
                    child.kill()
                    raise SourceLost(f"The stream at {self.spec} stopped: its reader sent nothing for "
                                     f"{STALL_S:g} s")
                continue
            kind, payload = message
            if kind == _BATCH:
                batch = self._received(np.frombuffer(payload, EVENT_DTYPE).copy())
                if batch is not None:
                    yield batch
            elif kind == _END:
                return
            elif kind == _ERROR:
                raise SourceLost(pickle.loads(payload)[1])

    def _received(self, batch: np.ndarray) -> np.ndarray | None:
        """The recorder and the noise filter see stores made from the batch as it arrived (in time order, see
        ``to_event_store``); unfiltered, the batch itself goes on, so that ``batches`` counts its clamped events."""
        if not self.store_hooks and self.store_filter is None:
            return batch
        from evapp.sources.stores import to_event_store

        delivered = self._deliver(to_event_store(batch))
        return batch if self.store_filter is None else delivered

    def describe(self) -> str:
        return self.spec

    def close(self) -> None:
        """Ask the child to hand on what its reader already holds and end (a live stream never goes quiet, so
        waiting for silence would take the whole bound), give those batches to the hooks, then end the child."""
        child, self._child = self._child, None
        if child is None:
            return
        if self.store_hooks and child.process.is_alive():
            try:
                os.kill(child.process.pid, signal.SIGUSR1)
            except OSError:
                pass
        deadline = time.monotonic() + 1.0
        while self.store_hooks and time.monotonic() < deadline:
            try:
                message = child.next(0.05)
            except (EOFError, OSError):
                break
            if message is None:
                continue
            if message[0] == _BATCH:
                self._received(np.frombuffer(message[1], EVENT_DTYPE).copy())
            elif message[0] in (_END, _ERROR):
                break
        child.kill()


# -- files ------------------------------------------------------------------------------------------------
# A corrupt .aedat4 can make dv-processing's getNextEventBatch spin for ever (100 % CPU, the GIL held) or abort.
# The recording is opened and read in a child; the parent asks for a pass over the events ("read", with a
# number, so that a pass abandoned by a seek is told apart from the next) and waits on the pipe, never blocked.
FILE_STALL_S = 3.0  # waiting this long for the next batch of a file (the child sends far faster): stuck

_READ, _QUIT, _GAP = b"R", b"Q", b"G"


def _file_child_main(path: str, conn) -> None:
    """The child: the recording read by ``InProcessFileReader``, each pass's batches sent until it ends or the
    parent asks for another pass (or to quit)."""
    _child_setup()

    def send(kind: bytes, number: int, payload: bytes = b"") -> None:
        conn.send_bytes(kind + number.to_bytes(4, "little") + payload)

    try:
        reader = InProcessFileReader(path)
    except ReaderRefused as exc:
        send(_ERROR, 0, pickle.dumps(str(exc)))
        return
    send(_HELLO, 0, pickle.dumps((reader.streams, reader.event_streams, reader.resolutions, reader.camera)))
    command = conn.recv_bytes()
    while command[:1] == _READ:
        number, stream = int.from_bytes(command[1:5], "little"), command[5:].decode()
        command = None
        try:
            for batch in reader.read(stream):
                if conn.poll():  # a new pass, or quit: this one is abandoned
                    command = conn.recv_bytes()
                    break
                if isinstance(batch, ReadGap):
                    send(_GAP, number, pickle.dumps((batch.kind, batch.reason)))
                else:
                    send(_BATCH, number, np.ascontiguousarray(batch, EVENT_DTYPE).tobytes())
            else:
                send(_END, number)
        except ReaderRefused as exc:
            send(_ERROR, number, pickle.dumps(str(exc)))
        if command is None:
            command = conn.recv_bytes()


class FileReaderProcess:
    """The parent's handle on a recording read by a child: its streams, and passes over one event stream."""

    def __init__(self, path: str):
        context = multiprocessing.get_context("spawn")
        self._conn, child_end = context.Pipe(duplex=True)
        self.path = path
        self.process = context.Process(target=_file_child_main, args=(path, child_end), daemon=True,
                                       name=f"evapp-reader {path}")
        self.process.start()
        child_end.close()
        self._pass = 0
        kind, _, payload = self._next(CONNECT_S, "at all")
        if kind == _ERROR:
            self.kill()
            raise ReaderRefused(pickle.loads(payload))
        self.streams, self.event_streams, self.resolutions, self.camera = pickle.loads(payload)

    def _next(self, bound_s: float, doing: str) -> tuple[bytes, int, bytes]:
        """The next message; InputError when the child died or sent nothing for ``bound_s`` seconds (the wait is
        in short polls, so Ctrl-C in the main thread is seen)."""
        deadline = time.monotonic() + bound_s
        while True:
            try:
                if self._conn.poll(0.1):
                    data = self._conn.recv_bytes()
                    return data[:1], int.from_bytes(data[1:5], "little"), data[5:]
            except (EOFError, OSError):
                code = self.process.exitcode
                self.kill()
                why = ("its reader aborted in dv-processing" if code == -signal.SIGABRT
                       else f"its reader ended (exit code {code})")
                raise InputError(f"{self.path} could not be read {doing}: {why} (a corrupt file?).") from None
            if time.monotonic() > deadline:
                self.kill()
                raise InputError(f"{self.path} could not be read {doing}: its reader made no progress for "
                                 f"{bound_s:g} s (a corrupt file?).")

    def read(self, stream: str):
        """The raw batches of one pass over ``stream``, in file order, with ``ReadGap``s as the child met them."""
        self._pass += 1
        number = self._pass
        self._conn.send_bytes(_READ + number.to_bytes(4, "little") + stream.encode())
        events = 0
        while True:
            kind, of_pass, payload = self._next(FILE_STALL_S, f"past its first {events:,} events" if events
                                                else "from its first event")
            if of_pass != number:
                continue  # the rest of an abandoned pass
            if kind == _BATCH:
                batch = np.frombuffer(payload, EVENT_DTYPE).copy()
                events += batch.shape[0]
                yield batch
            elif kind == _GAP:
                yield ReadGap(*pickle.loads(payload))
            elif kind == _END:
                return
            elif kind == _ERROR:
                raise ReaderRefused(pickle.loads(payload))

    def kill(self) -> None:
        if self.process.is_alive():
            try:
                self._conn.send_bytes(_QUIT)
            except OSError:
                pass
            self.process.join(timeout=0.2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=1.0)
        self._conn.close()


def file_reader(path: str):
    """A child process's reader, or this process's where it may not start one."""
    if multiprocessing.current_process().daemon:
        return InProcessFileReader(path)
    return FileReaderProcess(path)
