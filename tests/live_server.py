"""A fake live camera for the live tests: a dv-processing NetworkWriter on 127.0.0.1 streaming at a set rate.

``python tests/live_server.py PORT N_EVENTS BATCH SEED RATE_EV_S T0_US [LINGER_S]``: waits for a client, sends
``random_stream(N_EVENTS, 640, 480, SEED, t0=T0_US)`` in batches of BATCH, one batch every BATCH / RATE s
(RATE 0: as fast as possible), prints "sent", lingers, and leaves with os._exit (destroying a NetworkWriter
with a client connected hangs; tests/dv_server.py). A restarted server given a later T0_US continues the clock,
as a camera coming back would.
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
    rate, t0 = float(sys.argv[5]), int(sys.argv[6])
    linger = float(sys.argv[7]) if len(sys.argv) > 7 else 60.0
    events = random_stream(n, 640, 480, seed=seed, t0=t0)
    stores = [to_event_store(events[s : s + batch]) for s in range(0, n, batch)]
    stream = dv.io.Stream.EventStream(0, "events", "DVXplorer_DXA00000", (640, 480))
    server = dv.io.NetworkWriter("127.0.0.1", port, stream)
    print("listening", flush=True)
    deadline = time.monotonic() + 60
    while server.getClientCount() == 0:
        if time.monotonic() > deadline:
            os._exit(2)
        time.sleep(0.01)
    start = time.monotonic()
    for i, store in enumerate(stores):
        if rate > 0:
            delay = start + i * batch / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        server.writeEvents(store)
    print("sent", flush=True)
    time.sleep(linger)
    os._exit(0)


if __name__ == "__main__":
    main()
