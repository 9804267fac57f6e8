"""A simulated person who follows ``evapp collect``'s prompts, live, through a dv-processing network camera.

``python -m evapp.simulate.performer --port P --person newcomer --resolution 320x240 --subject-seed 3
--seed 100 [--reaction-s 0.3]`` starts a ``NetworkWriter`` on 127.0.0.1:P, prints ``listening`` and
streams events in real time: the person at rest (sway, sensor noise, the lamp's flicker) whenever not
performing. It reads ``evapp collect --headless``'s stdout on stdin (JSON lines; only ``"type": "prompt"``
records matter): on ``countdown`` it looks the take's ``class_name`` up, on ``go`` it performs it for
``seconds`` after a human reaction delay, then rests; on ``done`` or end of input it streams rest for
``--linger-s`` and leaves with ``os._exit`` (destroying a NetworkWriter with a client connected hangs,
reference/event-io.md section 1.6). For example::

    (sleep 3; evapp collect --camera tcp://127.0.0.1:7777 --headless ...) | \\
        python -m evapp.simulate.performer --port 7777 --person newcomer --resolution 320x240

Class names are matched against ``SIM_MOTIONS`` (DVS128 Gesture's 11 and ``both_arms_raise``); a name the
simulator does not know is performed as ``other_gestures`` (smooth wandering of the hands) with a warning
on stderr. Each take's choreography is seeded by ``seed + take``, so no two takes are the same.

Timestamps are the wall clock in µs (``time.time_ns() // 1000`` at the start plus the monotonic time
since), on the renderer's frame grid; events are sent in chunks of ``chunk_s`` once their time has passed,
as a camera does. :class:`Performer` is usable in-process (``start()`` / ``on_prompt(dict)`` / ``stop()``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from dataclasses import dataclass

from evapp.simulate.figure import SIM_MOTIONS
from evapp.simulate.person import NEWCOMER, PERSONS, PersonSettings, person_by_name
from evapp.simulate.stream import LiveScene

OTHER = SIM_MOTIONS.index("other_gestures")
DEFAULT_FPS = 500.0  # pose samples per second: 5 per cycle of a 100 Hz lamp, real time at 320x240 on 2 cores


@dataclass
class PerformerStats:
    chunks: int = 0
    events: int = 0
    render_s: float = 0.0  # wall time spent rendering
    stream_s: float = 0.0  # stream time rendered
    max_lag_s: float = 0.0  # the most a chunk was sent after its end (render time + scheduling)

    @property
    def realtime_factor(self) -> float:
        """Render time per second of stream (under 1: keeps up)."""
        return self.render_s / self.stream_s if self.stream_s else 0.0


class Performer:
    """A :class:`~evapp.simulate.stream.LiveScene` served on a dv-processing NetworkWriter, driven by prompts.

    ``serve_forever()`` blocks (the main thread of the command); ``start()`` runs it in a daemon thread and
    returns once the writer listens. ``on_prompt(record)`` / ``on_line(text)`` may be called from any thread.
    ``stop()`` ends the stream and releases the writer once no client is connected (a test closes its reader
    first). With ``exit_on_done`` (the command), ``done`` or end of input leads to ``os._exit(0)`` after
    ``linger_s`` of rest."""

    def __init__(self, port: int, settings: PersonSettings = NEWCOMER, resolution: tuple[int, int] = (320, 240),
                 subject_seed: int = 0, seed: int = 0, *, reaction_s: float = 0.3, linger_s: float = 5.0,
                 chunk_s: float = 0.05, fps: float = DEFAULT_FPS, warm_s: float = 0.5, camera: str | None = None,
                 host: str = "127.0.0.1", exit_on_done: bool = False, log=None):
        self.port, self.host = int(port), host
        self.settings, self.resolution = settings, (int(resolution[0]), int(resolution[1]))
        self.subject_seed, self.seed = int(subject_seed), int(seed)
        self.reaction_s, self.linger_s, self.chunk_s, self.fps = reaction_s, linger_s, chunk_s, fps
        self.warm_s = warm_s
        w, h = self.resolution
        self.camera = camera or {(320, 240): "DVXplorer_Lite_sim", (640, 480): "DVXplorer_sim"}.get(
            (w, h), f"simulated_{w}x{h}")
        self.exit_on_done = exit_on_done
        self._log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._lock = threading.Lock()
        self._pending: list[tuple[int, float, int, int]] = []  # (motion, wall start s, take, seconds)
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._done_at: float | None = None  # monotonic time of "done" / end of input
        self._thread: threading.Thread | None = None
        self._writer = None
        self._t0_wall_us = 0
        self._t0_mono = 0.0
        self.scene: LiveScene | None = None
        self.stats = PerformerStats()
        self.performed: list[tuple[str, int, int]] = []  # (motion name, start_us, end_us) on the stream clock
        self._warned_lag = False
        self._resolved: dict[tuple[int, str | None], int] = {}

    # --- prompts ----------------------------------------------------------------------------------------------

    def motion_for(self, class_name: str | None) -> int:
        """The SIM_MOTIONS index for a prompt's class name; unknown names -> other_gestures (warned)."""
        if class_name in SIM_MOTIONS:
            return SIM_MOTIONS.index(class_name)
        self._log(f"performer: warning: {class_name!r} is not a motion the simulator knows "
                  f"({', '.join(SIM_MOTIONS)}); performing other_gestures-like wandering instead")
        return OTHER

    def on_line(self, line: str) -> None:
        """One line of ``evapp collect --headless``'s stdout: a prompt record is acted on, anything else ignored."""
        line = line.strip()
        if not line.startswith("{"):
            return
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            return
        if isinstance(record, dict) and record.get("type") == "prompt":
            self.on_prompt(record)

    def on_prompt(self, record: dict) -> None:
        """Act on one prompt record (``Prompt.to_json()``): countdown, go, pause, done."""
        phase = record.get("phase")
        take = int(record.get("take") or 0)
        name = record.get("class_name")
        if phase == "countdown" and name is not None:
            self._resolve(take, name)  # early: the warning for an unknown name comes with the first number
        elif phase == "go":
            motion = self._resolve(take, name)
            with self._lock:
                self._pending.append((motion, time.monotonic() + self.reaction_s, take,
                                      float(record.get("seconds") or 3.0)))
        elif phase == "done":
            self.finish()

    def _resolve(self, take: int, name: str | None) -> int:
        key = (take, name)
        if key not in self._resolved:
            self._resolved[key] = self.motion_for(name)
        return self._resolved[key]

    def finish(self) -> None:
        """The session is over (``done`` or end of input): rest for ``linger_s``, then stop (or leave)."""
        with self._lock:
            if self._done_at is None:
                self._done_at = time.monotonic()

    # --- the stream -------------------------------------------------------------------------------------------

    def now_us(self) -> int:
        return self._t0_wall_us + int((time.monotonic() - self._t0_mono) * 1e6)

    def _start_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for motion, start_mono, take, seconds in pending:
            start_us = self._t0_wall_us + int((start_mono - self._t0_mono) * 1e6)
            lab = self.scene.perform(motion, start_us, seconds, take_seed=self.seed + take)
            self.performed.append((SIM_MOTIONS[motion], lab.start_us, lab.end_us))

    def serve_forever(self) -> None:
        """Listen, stream rest and prompted motions until ``stop()`` (or, with ``exit_on_done``, leave)."""
        import dv_processing as dv

        from evapp.sources.aedat4 import to_event_store

        self._writer = dv.io.NetworkWriter(self.host, self.port,
                                           dv.io.Stream.EventStream(0, "events", self.camera, self.resolution))
        self._t0_mono = time.monotonic()
        self._t0_wall_us = time.time_ns() // 1000
        # A camera that has been on a while: the sensor's first burst (every reference starts anywhere in its
        # band) and the flicker's settling happen before the stream, and their events are not sent.
        warm_us = int(self.warm_s * 1e6)
        self.scene = LiveScene(self.settings, self.resolution, self.subject_seed, self.seed,
                               t0_us=self._t0_wall_us - warm_us, fps=self.fps)
        chunk_us = int(self.chunk_s * 1e6)
        for _ in range(20):  # warm up, then catch up with the wall clock (rendering is faster than real time)
            self.scene.render(self.now_us())
            if self.now_us() - self.scene.t_rendered_us < chunk_us:
                break
        self._listening.set()
        next_end = self.scene.t_rendered_us + chunk_us
        while not self._stop.is_set():
            delay = (next_end - self.now_us()) / 1e6
            if delay > 0:
                self._stop.wait(delay)
                continue
            self._start_pending()
            t = time.perf_counter()
            events = self.scene.render(next_end)
            self.stats.render_s += time.perf_counter() - t
            if events.shape[0]:
                self._writer.writeEvents(to_event_store(events))
            lag = (self.now_us() - next_end) / 1e6
            self.stats.chunks += 1
            self.stats.events += int(events.shape[0])
            self.stats.stream_s += self.chunk_s
            self.stats.max_lag_s = max(self.stats.max_lag_s, lag)
            if lag > 0.5 and not self._warned_lag:
                self._warned_lag = True
                self._log(f"performer: warning: rendering falls behind real time ({lag:.2f} s late); try a "
                          "smaller --fps or resolution")
            next_end += chunk_us
            done_at = self._done_at
            if done_at is not None and time.monotonic() - done_at >= self.linger_s \
                    and self.now_us() >= self.scene.busy_until_us():
                if self.exit_on_done:
                    self._log(f"performer: done ({self.stats.events} events, render "
                              f"{self.stats.realtime_factor:.2f} s per s of stream)")
                    sys.stdout.flush()
                    os._exit(0)
                break

    def start(self, timeout_s: float = 10.0) -> Performer:
        """``serve_forever`` in a daemon thread; returns once the writer listens."""
        self._thread = threading.Thread(target=self.serve_forever, name="performer", daemon=True)
        self._thread.start()
        if not self._listening.wait(timeout_s):
            raise RuntimeError(f"the performer did not start listening on port {self.port}")
        return self

    def client_count(self) -> int:
        return int(self._writer.getClientCount()) if self._writer is not None else 0

    def stop(self, wait_clients_s: float = 5.0) -> bool:
        """End the stream; release the writer once no client is connected (True), else keep it (False: never
        destroy a NetworkWriter with a client connected)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)
        deadline = time.monotonic() + wait_clients_s
        while self.client_count() > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.client_count() > 0:
            _KEPT.append(self._writer)
            return False
        self._writer = None
        return True


_KEPT: list = []  # writers a client still held at stop(): never destroyed (see Performer.stop)


def _read_stdin(performer: Performer) -> None:
    for line in sys.stdin:
        performer.on_line(line)
    performer.finish()  # end of input = the session is over


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m evapp.simulate.performer", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--person", default="newcomer", choices=sorted(PERSONS))
    parser.add_argument("--resolution", default="320x240", help="WxH (320x240 DVXplorer Lite, 640x480 DVXplorer)")
    parser.add_argument("--subject-seed", type=int, default=0, help="who: the person's identity")
    parser.add_argument("--seed", type=int, default=0, help="how: the choreography (take k uses seed + k)")
    parser.add_argument("--reaction-s", type=float, default=0.3, help="delay between 'go' and moving")
    parser.add_argument("--linger-s", type=float, default=5.0, help="rest streamed after 'done' / end of input")
    parser.add_argument("--fps", type=float, default=DEFAULT_FPS, help="pose samples per second")
    parser.add_argument("--camera", help="camera name the stream announces")
    args = parser.parse_args(argv)
    try:
        w, h = (int(v) for v in args.resolution.lower().split("x"))
    except ValueError:
        parser.error(f"--resolution {args.resolution!r} is not WxH")
    performer = Performer(args.port, person_by_name(args.person), (w, h), args.subject_seed, args.seed,
                          reaction_s=args.reaction_s, linger_s=args.linger_s, fps=args.fps, camera=args.camera,
                          exit_on_done=True)
    threading.Thread(target=_read_stdin, args=(performer,), daemon=True).start()
    try:
        performer.start()
        print("listening", flush=True)
        performer._thread.join()
    except KeyboardInterrupt:
        pass
    os._exit(0)


if __name__ == "__main__":
    main()
