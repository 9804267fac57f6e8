"""Ctrl-C and SIGTERM as a stop request that the running loop honours, never as an exception out of nowhere.

Python's default turns SIGINT into a KeyboardInterrupt raised wherever the main thread happens to be: inside
an import (torch's takes over a second; CPython then ends by SIGINT instead of exit code 130), inside a
queue's lock, or inside Qt's event loop (which aborts the process). A recording must be finalised on every
exit path, so while a pipeline runs the signals only append to a list; the headless loop and the window
poll it, stop, clean up, and the request becomes one KeyboardInterrupt at the end (exit code 130).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def stop_requests() -> Iterator[list[int]]:
    """Within the block SIGINT and SIGTERM append their number to the yielded list; on leaving it, a request
    raises KeyboardInterrupt. Outside the main thread (where handlers cannot be set) the list stays empty."""
    requests: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield requests
        return

    def record(signum, frame):
        requests.append(signum)

    previous = {sig: signal.signal(sig, record) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield requests
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if requests:
        raise KeyboardInterrupt
