"""Real-time measurements for the README: end-to-end latency at the demo's rate, highest live rate without drops.

    python scripts/measure_live.py latency [--model saformer-2-256] [--seconds 56] [--window]
    python scripts/measure_live.py max-rate [--model NAME ...] [--seconds 6]

``latency`` replays assets/demo.aedat4 at its own speed (72 kev/s) through the pipeline, as ``evapp replay``
does, and reports the end-to-end latency of every prediction: from the wall time at which the batch holding
the answering frame's last event reached the pipeline to the prediction being printed (headless) or painted
(``--window``, offscreen Qt; the window's timer runs at 30 Hz, so add up to 33 ms of waiting for the timer).

``max-rate`` streams uniform random events from a dv-processing NetworkWriter subprocess (tests/live_server.py)
at a set rate into the live pipeline (whole 640x480 sensor as the region, the model's own N, policy window)
and raises the rate until frames are dropped; it prints the highest rate that ran without a drop.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evapp.bench import machine_description  # noqa: E402
from evapp.binning import Region  # noqa: E402
from evapp.cli_live import EngineFactory  # noqa: E402
from evapp.pipeline import Pipeline, ReplayOptions  # noqa: E402
from evapp.sources import open_source  # noqa: E402

T0 = 1_700_000_000_000_000


def measure_latency(model: str, seconds: float, window: bool, policy: str) -> dict:
    factory = EngineFactory(None, (None, None, None, None))
    engine, decoder, names, n, size = factory(model, policy, "cpu")
    source = open_source(ROOT / "assets" / "demo.aedat4")
    pipeline = Pipeline(source, n, size, None, ReplayOptions(speed=1.0), engine=engine, decoder=decoder,
                        class_names=names, keep_view_events=window)
    if window:
        from PyQt6.QtCore import QTimer
        from PyQt6.QtWidgets import QApplication

        from evapp.gui.app import duration_of
        from evapp.gui.window import MainWindow

        app = QApplication.instance() or QApplication([])
        win = MainWindow(pipeline, factory, model, policy, "cpu", "measure", duration_us=duration_of(source))
        win.show()
        QTimer.singleShot(int(seconds * 1000), win.close)
        app.exec()
    else:
        deadline = time.monotonic() + seconds
        for _ in pipeline.records():
            if time.monotonic() > deadline:
                break
    pipeline.close()
    lat = np.asarray(pipeline.latencies_ms)
    return {"model": model, "mode": "window" if window else "headless", "policy": policy, "N": n,
            "predictions": int(lat.size),
            "latency_median_ms": round(float(np.median(lat)), 1),
            "latency_p99_ms": round(float(np.percentile(lat, 99)), 1),
            "step_ms_median": round(float(np.median(pipeline.recent_step_ms)), 1),
            "dropped_frames": pipeline.frame_queue.dropped}


def run_rate(model: str, rate: float, seconds: float, port: int) -> dict:
    from evapp.sources.live import open_live

    factory = EngineFactory(None, (None, None, None, None))
    engine, decoder, names, n, size = factory(model, "window", "cpu")
    for _ in range(5):  # warm-up, so first-step costs do not count as falling behind
        engine.feed(np.zeros(engine.input_shape, np.float32))
    engine.reset()
    count = int(rate * seconds)
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "live_server.py"), str(port), str(count),
                               "5000", "9", str(rate), str(T0), "30"], stdout=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == "listening"
    source = open_live(f"tcp://127.0.0.1:{port}")
    pipeline = Pipeline(source, n, size, Region(0, 0, 640, 480), engine=engine, decoder=decoder,
                        class_names=names, with_frames=False)
    pipeline.start()
    try:
        server.stdout.readline()  # "sent"
        deadline = time.monotonic() + 5
        while pipeline.binner.events_in < count and time.monotonic() < deadline:
            pipeline.wait_output(0.05)
        time.sleep(0.5)
        while pipeline.wait_output(0.2) is not None:
            pass
    finally:
        pipeline.close()
        server.kill()
    return {"model": model, "rate_ev_s": rate, "N": n, "frames": pipeline.binner.frames_out,
            "dropped_frames": pipeline.frame_queue.dropped,
            "step_ms_median": round(float(np.median(pipeline.recent_step_ms)), 1) if pipeline.recent_step_ms else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["latency", "max-rate"])
    parser.add_argument("--model", action="append")
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--window", action="store_true")
    parser.add_argument("--policy", default="window", help="latency: the engine's policy (persistent answers "
                        "every frame, so it gives many more samples than window's one answer per T frames)")
    parser.add_argument("--rates", default="50e3,100e3,150e3,200e3,250e3,300e3,400e3,600e3,800e3")
    args = parser.parse_args()
    print(machine_description(), file=sys.stderr)
    models = args.model or ["saformer-2-256", "sglformer-3-256", "spikingresformer-dvsg"]
    if args.what == "latency":
        for model in models:
            print(json.dumps(measure_latency(model, args.seconds or 56.0, args.window, args.policy)), flush=True)
        return
    from tests.test_sources import free_port

    for model in models:
        best = None
        for rate in (float(r) for r in args.rates.split(",")):
            result = run_rate(model, rate, args.seconds or 6.0, free_port())
            print(json.dumps(result), file=sys.stderr, flush=True)
            if result["dropped_frames"]:
                break
            best = result
        print(json.dumps({"model": model, "max_rate_without_drops_ev_s": best and best["rate_ev_s"],
                          "N": best and best["N"], "step_ms_median": best and best["step_ms_median"]}), flush=True)


if __name__ == "__main__":
    main()
