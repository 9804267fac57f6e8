"""Synthetic inputs for the tests and the benchmarks: random event streams, count frames like a gesture's, and a
stand-in live camera.

``random_stream`` makes uniform random events with absolute µs timestamps; ``synthetic_frames`` makes Poisson
count frames of a moving blob (torch is imported only when it is called, so importing this module stays light).

The stand-in camera is a dv-processing NetworkWriter on 127.0.0.1 streaming random events at a set rate:
``python -m evapp.testing PORT N_EVENTS BATCH SEED RATE_EV_S T0_US [LINGER_S]`` waits for a client, sends
``random_stream(N_EVENTS, 640, 480, SEED, t0=T0_US)`` in batches of BATCH, one batch every BATCH / RATE s
(RATE 0: as fast as possible), prints "sent", lingers, and leaves with os._exit (destroying a NetworkWriter
with a client connected hangs forever, reference/event-io.md section 1.6). A restarted server given a later
T0_US continues the clock, as a camera coming back would.

``evapp bench live max-rate`` streams from it, and the live tests use it as their camera; ``start_server``
starts it as a subprocess and returns once it listens. ``python -m evapp.testing recording PORT FILE SPEED
LINGER_S`` (``start_recording_server``) serves a recording instead, at SPEED times its event rate
(``evapp bench live served``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from evapp.events import make_events

if TYPE_CHECKING:
    import torch

__all__ = ["T0_US", "free_port", "random_stream", "serve", "start_server", "synthetic_frames"]

T0_US = 1_700_000_000_000_000


def random_stream(n: int, width: int, height: int, seed: int = 0, t0: int = T0_US,
                  rate_per_us: float = 1.0) -> np.ndarray:
    """n events, uniform over the sensor, monotonic µs timestamps starting at an absolute t0 (so readers rebase)."""
    rng = np.random.default_rng(seed)
    dt = rng.exponential(1.0 / rate_per_us, n).astype(np.int64)
    return make_events(t0 + np.cumsum(dt), rng.integers(0, width, n), rng.integers(0, height, n),
                       rng.integers(0, 2, n))


def synthetic_frames(
    T: int, B: int, size: tuple[int, int], events: int = 20_000, seed: int = 0, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Poisson count frames ``[T, B, 2, H, W]`` with about ``events`` events per frame, concentrated in a
    moving blob over a thin background (like a gesturing arm), split evenly across the two polarities."""
    import torch

    g = torch.Generator().manual_seed(seed)
    H, W = size
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    out = torch.empty(T, B, 2, H, W)
    for b in range(B):
        c0 = torch.rand(2, generator=g) * torch.tensor([H / 2, W / 2]) + torch.tensor([H / 4, W / 4])
        vel = (torch.rand(2, generator=g) - 0.5) * 0.1 * torch.tensor([H, W])
        for t in range(T):
            cy, cx = c0 + vel * t
            blob = torch.exp(-(((yy - cy) / (0.12 * H)) ** 2 + ((xx - cx) / (0.12 * W)) ** 2))
            rate = blob + 0.02
            rate = rate / rate.sum() * (events / 2)
            out[t, b] = torch.poisson(rate.expand(2, H, W), generator=g)
    return out.to(device)


# --- the stand-in camera ---------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, n_events: int, seed: int, rate: float = 0.0, t0: int = T0_US, batch: int = 5000,
                 linger: float = 60.0, first_after_s: float = 0.0, paced: bool = False) -> subprocess.Popen:
    """This module as a subprocess (stdout piped, text); returns once it says "listening". Kill it when done.
    ``first_after_s``: the client is connected this long before the first event is sent (a quiet camera).
    ``paced``: the events' clock runs as fast as the wall clock (``rate`` events per second), as a camera's does."""
    proc = subprocess.Popen([sys.executable, "-m", "evapp.testing", str(port), str(n_events), str(batch),
                             str(seed), str(rate), str(t0), str(linger), str(first_after_s), str(int(paced))],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if line != "listening":
        proc.kill()
        raise RuntimeError(f"the stream server on port {port} did not start (it said {line!r})")
    return proc


def serve(port: int, n: int, batch: int, seed: int, rate: float, t0: int, linger: float = 60.0,
          first_after_s: float = 0.0, paced: bool = False) -> None:
    """Stream ``random_stream(n, 640, 480, seed, t0)`` (at ``rate / 1e6`` events per µs when ``paced``) to the first
    client, then leave the process (os._exit)."""
    from evapp.sources.aedat4 import to_event_store

    events = random_stream(n, 640, 480, seed=seed, t0=t0, rate_per_us=rate / 1e6 if paced else 1.0)
    stores = [to_event_store(events[s : s + batch]) for s in range(0, n, batch)]
    due = [i * batch / rate if rate > 0 else 0.0 for i in range(len(stores))]
    _serve(port, stores, due, "DVXplorer_DXA00000", (640, 480), linger, first_after_s)


def _serve(port: int, stores: list, due_s: list[float], camera: str, size: tuple[int, int], linger: float,
           first_after_s: float = 0.0) -> None:
    """A NetworkWriter on 127.0.0.1:``port``: wait for a client, send each store at its due time (seconds after the
    first), print "sent", linger, leave with os._exit (never destroy a NetworkWriter with a client connected)."""
    import dv_processing as dv

    server = dv.io.NetworkWriter("127.0.0.1", port, dv.io.Stream.EventStream(0, "events", camera, size))
    print("listening", flush=True)
    deadline = time.monotonic() + 60
    while server.getClientCount() == 0:
        if time.monotonic() > deadline:
            os._exit(2)
        time.sleep(0.01)
    time.sleep(first_after_s)
    start = time.monotonic()
    for store, at in zip(stores, due_s, strict=True):
        delay = start + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        server.writeEvents(store)
    print("sent", flush=True)
    time.sleep(linger)
    os._exit(0)


def start_recording_server(port: int, path: str | Path, speed: float = 1.0, linger: float = 30.0) -> subprocess.Popen:
    """A stand-in camera replaying ``path`` (an .aedat4) in real time at ``speed`` times its event rate (its clock
    compressed by ``speed``); returns once it listens. Kill it when done."""
    proc = subprocess.Popen([sys.executable, "-m", "evapp.testing", "recording", str(port), str(path), str(speed),
                             str(linger)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if line != "listening":
        proc.kill()
        raise RuntimeError(f"the recording server on port {port} did not start (it said {line!r})")
    return proc


def serve_recording(port: int, path: str, speed: float, linger: float) -> None:
    """Stream the recording to the first client, paced by its own clock divided by ``speed``, then leave."""
    from evapp.sources import open_source
    from evapp.sources.aedat4 import to_event_store

    source = open_source(path)
    stores, due = [], []
    for batch in source.batches():  # rebased: the first event at 0
        batch = batch.copy()
        batch["timestamp"] = T0_US + batch["timestamp"] // speed
        stores.append(to_event_store(batch))
        due.append((int(batch["timestamp"][-1]) - T0_US) / 1e6)
    g = source.geometry
    _serve(port, stores, due, g.name, (g.width, g.height), linger)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "recording":
        serve_recording(int(args[1]), args[2], float(args[3]), float(args[4]))
        return
    port, n, batch, seed = (int(v) for v in args[0:4])
    rate, t0 = float(args[4]), int(args[5])
    linger = float(args[6]) if len(args) > 6 else 60.0
    first_after_s = float(args[7]) if len(args) > 7 else 0.0
    paced = len(args) > 8 and args[8] == "1"
    serve(port, n, batch, seed, rate, t0, linger, first_after_s, paced)


if __name__ == "__main__":
    main()
