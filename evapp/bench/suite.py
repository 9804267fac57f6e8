"""``evapp bench`` (no subcommand) / ``evapp bench all``: every speed measurement as ONE table.

Rows, each with the machine line printed above the table:

- ``binning``: our streaming binner (and tonic's ToFrame where asked) in M events/s, from
  :mod:`evapp.bench.binning`;
- ``step``: ms per time step of each model at batch 1 for ``torch eager``, ``torch compiled``
  (``torch.compile``, inductor) and ``onnx`` (ONNX Runtime on the exported step) on every available device;
  on CUDA also ``torch cuda-graph`` and ``torch compiled cuda-graph`` (the step captured in a CUDA graph), and
  batch K = 4 (the ``staggered:4`` policy's batch) beside batch 1.
  Timed through the engines with the ``persistent`` policy, so a step is what streaming costs: frame upload,
  the step, logits to the host and the softmax. Untrained models are BN-calibrated on synthetic frames
  (:func:`evapp.testing.synthetic_frames`) so that neurons fire as in a trained model;
- ``replay``: end-to-end speed of the demo recording through the whole pipeline (reader, binner, engine,
  decoder) as fast as possible, in x real time (recording seconds per wall-clock second).
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from evapp.machine import describe_machine
from evapp.tables import format_rows

from ..paths import assets_dir

__all__ = ["bench_all", "bench_replay", "bench_steps", "format_suite"]

log = logging.getLogger(__name__)

ENGINES = ("torch eager", "torch compiled", "onnx")
CUDA_ENGINES = ("torch cuda-graph", "torch compiled cuda-graph")  # added where the device is CUDA
CUDA_BATCHES = (1, 4)  # batch 1, and the staggered:4 policy's batch of four offset windows


def demo_recording() -> Path:
    """The demo recording the replay and live benchmarks stream: ``assets/demo.aedat4``."""
    return assets_dir() / "demo.aedat4"


def _calibrated(name: str, seed: int = 0):
    from ..nets import calibrate_bn, create_model
    from ..testing import synthetic_frames

    torch.manual_seed(seed)
    model = create_model(name)
    cfg = model.cfg
    calibrate_bn(model, synthetic_frames(cfg.T, 2, cfg.input_size, cfg.events_per_frame, seed=seed + 1))
    return model


def _engine(kind: str, model, device: str, ort_threads: int | None, policy: str = "persistent"):
    from ..engine import TorchEngine

    if kind.startswith("torch"):
        return TorchEngine(copy.deepcopy(model), device=device, policy=policy, compile="compiled" in kind,
                           cuda_graph="cuda-graph" in kind)
    from ..engine.onnx_engine import OnnxEngine

    return OnnxEngine.from_model(model, device=device, policy=policy, intra_op_threads=ort_threads)


def devices() -> list[str]:
    """``cpu``, plus ``cuda`` where torch sees a GPU."""
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def bench_steps(
    names: Sequence[str],
    devs: Sequence[str] = ("cpu",),
    engines: Sequence[str] = ENGINES,
    warmup: int = 5,
    iters: int = 30,
    ort_threads: int | None = None,
) -> list[dict]:
    """ms per step (median, p99 after ``warmup``) of each model x device x engine at batch 1.

    On the CPU torch and ONNX Runtime get the same number of threads: ``ort_threads`` if given, else all cores
    but one (the ORT engine's default, which leaves a core to the pipeline's reader thread, as the pipeline
    does for torch): with unequal counts the table would measure the machine's load, not the engines."""
    from ..testing import synthetic_frames

    threads = ort_threads or max(1, (os.cpu_count() or 2) - 1)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _bench_steps(names, devs, engines, warmup, iters, threads, synthetic_frames)
    finally:
        torch.set_num_threads(saved)


def _bench_steps(names, devs, engines, warmup, iters, ort_threads, synthetic_frames) -> list[dict]:
    rows = []
    for name in names:
        model = _calibrated(name)
        cfg = model.cfg
        frames = synthetic_frames(cfg.T, 1, cfg.input_size, cfg.events_per_frame, seed=3)[:, 0].numpy()
        for dev in devs:
            kinds = list(engines)
            if dev == "cuda":
                kinds += [k for k in CUDA_ENGINES if "compiled" not in k or "torch compiled" in engines]
            for batch in CUDA_BATCHES if dev == "cuda" else (1,):
                for kind in kinds:
                    rows.append(_bench_one(name, model, frames, dev, kind, batch, warmup, iters, ort_threads))
    return rows


def _bench_one(name, model, frames, dev, kind, batch, warmup, iters, ort_threads) -> dict:
    """One row: ``batch`` 1 runs the persistent policy, batch K the staggered:K policy (K rows per step)."""
    T = model.cfg.T
    row = {"bench": "step", "case": f"{name} b{batch}", "device": dev, "engine": kind, "unit": "ms/step",
           "median": None, "p99": None, "note": ""}
    try:
        if "compiled" in kind:
            # Dynamo keys compiled code on the code object of ``step``, shared by every model instance; past its
            # recompile limit (8) a further compile silently runs eager. Each compiled row starts from a clean cache.
            import torch._dynamo

            torch._dynamo.reset()
        t0 = time.perf_counter()
        eng = _engine(kind, model, dev, ort_threads, policy="persistent" if batch == 1 else f"staggered:{batch}")
        eng.feed(frames[0])  # the first step compiles / captures the CUDA graph / builds TensorRT engines
        setup = time.perf_counter() - t0
        if "compiled" in kind and not eng._compiled:
            row["note"] = "compile failed, eager"
        # staggered:K answers, and so waits for the device, only every T/K frames: the other feeds would time the
        # launch alone, so every step is synchronised.
        sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
        times = []
        for i in range(warmup + iters):
            t0 = time.perf_counter()
            eng.feed(frames[(i + 1) % T])
            sync()
            times.append((time.perf_counter() - t0) * 1e3)
        times = times[warmup:]
        row.update(median=float(np.median(times)), p99=float(np.percentile(times, 99)))
        if kind == "onnx":
            row["note"] = ",".join(p.replace("ExecutionProvider", "") for p in eng.providers)
        elif "compiled" in kind and not row["note"]:
            row["note"] = f"compile {setup:.0f} s"
        if dev == "cpu":
            row["note"] = ", ".join(x for x in (row["note"], f"{ort_threads} thread(s)") if x)
    except Exception as exc:  # noqa: BLE001 - a failing engine is a row, not the end of the table
        row["note"] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
        log.debug("bench %s %s %s", name, dev, kind, exc_info=True)
    return row


def bench_replay(
    model_name: str, devs: Sequence[str] = ("cpu",), engines: Sequence[str] = ("torch eager", "onnx"),
    path: str | Path | None = None, seconds: float | None = None, ort_threads: int | None = None,
) -> list[dict]:
    """x real time of the whole pipeline over ``path`` (None: the demo recording) with ``model_name``, window
    policy.

    ``seconds`` limits the replay to that much recording time (None: all of it). The model is BN-calibrated
    like the step bench (untrained weights spike about as much as trained ones; speed depends on that)."""
    from ..decoder import Decoder
    from ..model_setup import ModelSetup
    from ..pipeline import FrameRecord, Pipeline, Prediction, ReplayOptions
    from ..sources import open_source

    path = Path(path) if path is not None else demo_recording()
    model = _calibrated(model_name)
    cfg = model.cfg
    rows = []
    for dev in devs:
        for kind in engines:
            row = {"bench": "replay", "case": f"{path.name} {model_name}", "device": dev, "engine": kind,
                   "unit": "x real time", "median": None, "p99": None, "note": ""}
            try:
                eng = _engine(kind, model, dev, ort_threads, policy="window")
                source = open_source(str(path))
                setup = ModelSetup(model_name, eng, Decoder(), tuple(cfg.class_names), eng.frame_spec)
                pipe = Pipeline(source, setup, replay=ReplayOptions(speed=None), with_frames=True)
                t_last, answers, frames = 0, 0, 0
                t0 = time.perf_counter()
                try:
                    for rec in pipe.records():
                        is_answer = isinstance(rec, Prediction)
                        answers += is_answer
                        frames += isinstance(rec, FrameRecord)
                        t_last = max(t_last, rec.t_us)
                        if seconds is not None and t_last >= seconds * 1e6 and is_answer:
                            break
                finally:
                    pipe.close()
                wall = time.perf_counter() - t0
                dropped = pipe.summary().dropped_frames
                row["median"] = (t_last / 1e6) / wall
                row["note"] = f"{t_last / 1e6:.1f} s in {wall:.1f} s, {frames} frames, {answers} answers"
                if dropped:
                    row["note"] += f", {dropped} dropped"
            except Exception as exc:  # noqa: BLE001
                row["note"] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
                log.debug("bench replay %s %s", dev, kind, exc_info=True)
            rows.append(row)
    return rows


def bench_all(
    names: Sequence[str],
    devs: Sequence[str] | None = None,
    engines: Sequence[str] = ENGINES,
    binning_events: int = 10_000_000,
    with_tonic: bool = True,
    iters: int = 30,
    replay_model: str | None = "saformer-2-256",
    replay_seconds: float | None = None,
    ort_threads: int | None = None,
) -> list[dict]:
    from .binning import bench_binning

    devs = list(devs or devices())
    rows = []
    for r in bench_binning(n_events=binning_events, with_tonic=with_tonic):
        case = f"{r['sensor']}->{r['input']} N={r['N']}"
        rows.append({"bench": "binning", "case": case, "device": "cpu", "engine": "evapp", "unit": "Mev/s",
                     "median": r["ours_mev_s"], "p99": None, "note": f"{r['events']:,} events"})
        if r["tonic_mev_s"] is not None:
            rows.append({"bench": "binning", "case": case, "device": "cpu", "engine": "tonic ToFrame",
                         "unit": "Mev/s", "median": r["tonic_mev_s"], "p99": None,
                         "note": f"evapp {r['ratio']:.1f}x faster"})
    rows += bench_steps(names, devs, engines, iters=iters, ort_threads=ort_threads)
    if replay_model:
        rows += bench_replay(replay_model, devs, [e for e in ("torch eager", "onnx") if e in engines],
                             seconds=replay_seconds, ort_threads=ort_threads)
    return rows


def format_suite(rows: list[dict]) -> str:
    table = format_rows(rows, [("bench", "bench", ""), ("case", "case", ""), ("device", "device", ""),
                               ("engine", "engine", ""), ("median", "median", ".2f"), ("p99", "p99", ".2f"),
                               ("unit", "unit", ""), ("note", "note", "")])
    return describe_machine() + "\n" + table
