"""A fake camera for tests: a dv-processing NetworkWriter on 127.0.0.1 that sends a known event stream.

Run as a subprocess: ``python tests/dv_server.py PORT N_EVENTS BATCH SEED [LINGER_S]``. It waits for a client,
sends N_EVENTS events (tests.conftest.random_stream(N_EVENTS, 640, 480, SEED)) in batches of BATCH, waits
LINGER_S so the client can drain, then leaves with os._exit: destroying a NetworkWriter while a client is
connected hangs forever (reference/event-io.md section 1.6).
"""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dv_processing as dv  # noqa: E402

from evapp.sources.aedat4 import to_event_store  # noqa: E402
from tests.conftest import random_stream  # noqa: E402


def main() -> None:
    port, n, batch, seed = (int(v) for v in sys.argv[1:5])
    linger = float(sys.argv[5]) if len(sys.argv) > 5 else 2.0
    events = random_stream(n, 640, 480, seed=seed)
    stream = dv.io.Stream.EventStream(0, "events", "DVXplorer_DXA00000", (640, 480))
    server = dv.io.NetworkWriter("127.0.0.1", port, stream)
    print("listening", flush=True)
    deadline = time.monotonic() + 30
    while server.getClientCount() == 0:
        if time.monotonic() > deadline:
            os._exit(2)
        time.sleep(0.01)
    for start in range(0, n, batch):
        server.writeEvents(to_event_store(events[start : start + batch]))
    print("sent", flush=True)
    time.sleep(linger)
    os._exit(0)


if __name__ == "__main__":
    main()
