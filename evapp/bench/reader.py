"""``evapp bench live reader``: what reading a network stream in a child process costs (evapp.sources.isolation).

A local NetworkWriter sends a burst of random events as fast as it can; the in-process reader and the isolated
one take turns (interleaved, so a busy machine slows both alike), and each round times from the first batch
received to the last event.
"""

from __future__ import annotations

import time

DEFAULT_EVENTS = 3_000_000
DEMO_RATE = 72_000  # events/s of assets/demo.aedat4 (README)


def read_rate(isolated: bool, events: int, seed: int = 1) -> float:
    """Events per second through one reader, first batch to last event."""
    from evapp.sources.isolation import IsolatedNetworkSource
    from evapp.sources.network import NetworkSource
    from evapp.testing import free_port, start_server

    port = free_port()
    server = start_server(port, events, seed=seed, rate=0, batch=20_000, linger=2.0)
    source = (IsolatedNetworkSource if isolated else NetworkSource)(f"tcp://127.0.0.1:{port}")
    got, started = 0, None
    try:
        for batch in source._raw_batches():
            started = started or time.perf_counter()
            got += batch.shape[0]
            if got >= events:
                break
        return got / max(time.perf_counter() - (started or time.perf_counter()), 1e-9)
    finally:
        source.close()
        server.kill()


def bench_reader(events: int = DEFAULT_EVENTS, rounds: int = 3) -> list[dict]:
    rows = []
    for r in range(rounds):
        for isolated in (False, True):
            rate = read_rate(isolated, events, seed=r + 1)
            rows.append({"round": r + 1, "reader": "child process" if isolated else "in process",
                         "mev_per_s": round(rate / 1e6, 2), "x_demo_rate": round(rate / DEMO_RATE)})
    return rows
