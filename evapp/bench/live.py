"""``evapp bench live``: real-time measurements, end-to-end latency at the demo's rate and the highest live rate
without dropped frames.

``latency`` replays assets/demo.aedat4 at its own speed through the pipeline, as ``evapp replay``
does, and reports the end-to-end latency of every prediction: from the wall time at which the batch holding
the answering frame's last event reached the pipeline to the prediction being printed (headless) or painted
(``--window``, offscreen Qt; the window's timer runs at 30 Hz, so add up to 33 ms of waiting for the timer).

``max-rate`` streams uniform random events from a dv-processing NetworkWriter subprocess
(``python -m evapp.testing``) at a set rate into the live pipeline (whole 640x480 sensor as the region, the
model's own N, policy window) and raises the rate until frames are dropped; it reports the highest rate that
ran without a drop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from evapp.machine import describe_machine
from evapp.tables import format_rows

__all__ = ["DEFAULT_MODELS", "DEFAULT_RATES", "format_latency", "format_max_rate", "max_rate", "measure_latency",
           "run_rate"]

DEFAULT_MODELS = ("saformer-2-256", "sglformer-3-256", "spikingresformer-dvsg")
DEFAULT_RATES = (50e3, 100e3, 150e3, 200e3, 250e3, 300e3, 400e3, 600e3, 800e3)


def _setup(model: str, policy: str):
    """``model`` on the CPU with ``policy``, built as every consumer builds it (evapp.model_setup)."""
    from evapp.model_setup import ModelChoice, build_model_setup

    choice = ModelChoice(model, policy=policy, device="cpu")
    return choice, build_model_setup(choice)


def measure_latency(model: str, seconds: float, window: bool, policy: str) -> dict:
    """Replay the demo at its own speed for ``seconds`` with ``model`` on the CPU; latency of every answer."""
    from evapp.pipeline import Pipeline, ReplayOptions
    from evapp.sources import open_source

    from .suite import demo_recording

    choice, setup = _setup(model, policy)
    source = open_source(str(demo_recording()))
    pipeline = Pipeline(source, setup, replay=ReplayOptions(speed=1.0))
    if window:
        from PyQt6.QtCore import QTimer
        from PyQt6.QtWidgets import QApplication

        from evapp.gui.app import duration_of
        from evapp.gui.window import MainWindow

        app = QApplication.instance() or QApplication([])
        win = MainWindow(pipeline, choice, "measure", duration_us=duration_of(source))
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
    return {"model": model, "mode": "window" if window else "headless", "policy": policy,
            "N": setup.frame_spec.events_per_frame,
            "predictions": int(lat.size),
            "latency_median_ms": round(float(np.median(lat)), 1) if lat.size else None,
            "latency_p99_ms": round(float(np.percentile(lat, 99)), 1) if lat.size else None,
            "step_ms_median": round(float(np.median(pipeline.recent_step_ms)), 1) if pipeline.recent_step_ms else None,
            "dropped_frames": pipeline.frame_queue.dropped}


def run_rate(model: str, rate: float, seconds: float, port: int) -> dict:
    """Stream ``rate * seconds`` uniform events at ``rate`` ev/s into the live pipeline; frames and drops."""
    from evapp.binning import Region
    from evapp.pipeline import Pipeline
    from evapp.sources.live import open_live
    from evapp.testing import start_server

    _, setup = _setup(model, "window")
    engine, n = setup.engine, setup.frame_spec.events_per_frame
    for _ in range(5):  # warm-up, so first-step costs do not count as falling behind
        engine.feed(np.zeros(engine.input_shape, np.float32))
    engine.reset()
    count = int(rate * seconds)
    server = start_server(port, count, seed=9, rate=rate, batch=5000, linger=30.0)
    try:
        source = open_live(f"tcp://127.0.0.1:{port}")
        pipeline = Pipeline(source, setup, region=Region(0, 0, 640, 480), with_frames=False)
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
    finally:
        server.kill()
        server.wait()
    return {"model": model, "rate_ev_s": rate, "N": n, "frames": pipeline.binner.frames_out,
            "dropped_frames": pipeline.frame_queue.dropped,
            "step_ms_median": round(float(np.median(pipeline.recent_step_ms)), 1) if pipeline.recent_step_ms else None}


def max_rate(model: str, rates: Sequence[float], seconds: float,
             progress: Callable[[dict], None] | None = None) -> dict:
    """Try ``rates`` in order until one drops frames; the highest without drops, the first with, every step."""
    from evapp.testing import free_port

    best = first_drop = None
    steps = []
    for rate in rates:
        result = run_rate(model, rate, seconds, free_port())
        steps.append(result)
        if progress is not None:
            progress(result)
        if result["dropped_frames"]:
            first_drop = result
            break
        best = result
    return {"model": model, "max_rate_without_drops_ev_s": best and best["rate_ev_s"],
            "N": best["N"] if best else steps[-1]["N"], "step_ms_median": best and best["step_ms_median"],
            "first_rate_with_drops_ev_s": first_drop and first_drop["rate_ev_s"],
            "dropped_at_first_rate_with_drops": first_drop and first_drop["dropped_frames"],
            "frames_at_first_rate_with_drops": first_drop and first_drop["frames"],
            "seconds": seconds, "steps": steps}


def measure_served(model: str | None, factor: float, policy: str | None = "auto", port: int | None = None,
                   path: str | Path | None = None) -> dict:
    """The demo (or ``path``) served live over tcp:// at ``factor`` times its event rate into the live pipeline
    (the command line's defaults: --policy auto, the rate cap from the measured capacity): latency, answers per
    second, dropped frames and events, the longest gap between answers inside a gesture, and how often the label
    shown is right (sampled every 20 ms inside the labelled gestures, their times divided by ``factor``)."""
    from evapp.evaluate import shown_at
    from evapp.events import labels_at
    from evapp.model_setup import ModelChoice, build_model_setup, resolve_model_name
    from evapp.pipeline import Pipeline, Prediction
    from evapp.sources import open_source
    from evapp.sources.live import open_live
    from evapp.testing import free_port, start_recording_server

    from .suite import demo_recording

    path = Path(path or demo_recording())
    labels_source = open_source(path)
    labels_source.info()  # reads the labels on the recording's own rebased clock
    labels = [type(lab)(lab.class_id, int(lab.start_us / factor), int(lab.end_us / factor))
              for lab in labels_source.labels]
    labels_source.close()
    name = model or resolve_model_name(None, realtime_on="cpu")
    setup = build_model_setup(ModelChoice(name, policy=policy, device="cpu"))
    port = port or free_port()
    server = start_recording_server(port, path, factor)
    answers: list[tuple[int, int]] = []
    try:
        source = open_live(f"tcp://127.0.0.1:{port}")
        pipeline = Pipeline(source, setup, with_frames=False)
        pipeline.start()
        try:
            deadline = None  # one second after the server has sent everything (or has gone): the last answers
            while deadline is None or time.monotonic() < deadline:
                record = pipeline.wait_output(0.05)
                if isinstance(record, Prediction):
                    pipeline.report_shown(record)
                    answers.append((record.t_us, record.decision.class_id))
                if deadline is None and (server.poll() is not None or _said(server, "sent")):
                    deadline = time.monotonic() + 1.0
        finally:
            pipeline.close()
    finally:
        server.kill()
        server.wait()
    summary = pipeline.summary()
    t = np.asarray([a for a, _ in answers], np.int64)
    shown_cls = np.asarray([c for _, c in answers], np.int64)
    grid = np.arange(0, max((lab.end_us for lab in labels), default=0), 20_000)
    truth = labels_at(grid, labels)
    inside = truth >= 0
    accuracy = float((shown_at(grid, t, shown_cls)[inside] == truth[inside]).mean()) if inside.any() else None
    gaps = [np.diff(np.concatenate([[lab.start_us], t[(t >= lab.start_us) & (t < lab.end_us)], [lab.end_us]]))
            for lab in labels]
    lat = np.asarray(pipeline.latencies_ms)
    return {"model": name, "factor": factor, "policy": setup.policy_text,  # served in real time: stream = wall
            "answers": int(t.size),
            "answers_per_s": round(t.size / max((t[-1] - t[0]) / 1e6, 1e-9), 2) if t.size > 1 else None,
            "accuracy": None if accuracy is None else round(accuracy, 4),
            "latency_median_ms": round(float(np.median(lat)), 1) if lat.size else None,
            "latency_p99_ms": round(float(np.percentile(lat, 99)), 1) if lat.size else None,
            "max_gap_in_gesture_ms": round(float(max(g.max() for g in gaps)) / 1e3) if gaps else None,
            "dropped_frames": summary.dropped_frames, "frames": summary.frames,
            "events": summary.events_total, "events_over_rate_cap": summary.events_over_rate_cap,
            "policy_changes": summary.policy_changes}


def _said(proc, text: str) -> bool:
    """Whether the server has printed ``text`` (without blocking)."""
    import select

    while select.select([proc.stdout], [], [], 0)[0]:
        line = proc.stdout.readline()
        if not line:
            return False
        if line.strip() == text:
            return True
    return False


def format_served(rows: list[dict]) -> str:
    columns = [("model", "model", ""), ("factor", "x demo rate", "g"), ("policy", "policy", ""),
               ("accuracy", "label right", ".3f"), ("latency_median_ms", "latency median ms", ".0f"),
               ("latency_p99_ms", "latency p99 ms", ".0f"), ("max_gap_in_gesture_ms", "longest gap ms", ".0f"),
               ("answers", "answers", "d"), ("dropped_frames", "dropped frames", "d"), ("frames", "of frames", "d"),
               ("events_over_rate_cap", "events over cap", ",d"), ("events", "of events", ",d")]
    return describe_machine() + "\n" + format_rows(rows, columns)


def format_latency(rows: list[dict]) -> str:
    columns = [("model", "model", ""), ("mode", "sink", ""), ("policy", "policy", ""), ("N", "N", "d"),
               ("predictions", "answers", "d"), ("step_ms_median", "ms/step median", ".1f"),
               ("latency_median_ms", "latency median ms", ".1f"), ("latency_p99_ms", "latency p99 ms", ".1f"),
               ("dropped_frames", "dropped", "d")]
    return describe_machine() + "\n" + format_rows(rows, columns)


def format_max_rate(rows: list[dict]) -> str:
    columns = [("model", "model", ""), ("N", "N", "d"),
               ("max_rate_without_drops_ev_s", "sustained ev/s", ".0f"),
               ("step_ms_median", "ms/step median", ".1f"),
               ("first_rate_with_drops_ev_s", "first rate with drops ev/s", ".0f"),
               ("dropped_at_first_rate_with_drops", "dropped", "d"),
               ("frames_at_first_rate_with_drops", "of frames", "d")]
    return describe_machine() + "\n" + format_rows(rows, columns)
