"""The ``evapp`` command line. Every command has ``--help``; ``--debug`` (anywhere) shows tracebacks.

User-facing failures raise ``EvappError`` subclasses and end as one sentence on stderr with a non-zero exit
code; anything else is a bug and says so (with the traceback under ``--debug``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import sys
import time
import traceback

import click

from evapp.cpu_memory import keep_freed_memory
from evapp.errors import EvappError, InputError

log = logging.getLogger("evapp")


def _print_json(record: dict) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def run_headless(pipeline, duration_s: float | None = None, stop: list | None = None) -> None:
    """Print the pipeline's records as JSON lines until the stream ends, ``duration_s`` has passed or a stop
    is requested (``stop`` non-empty: see evapp.interrupts)."""
    deadline = None if duration_s is None else time.monotonic() + duration_s
    stop = [] if stop is None else stop
    pipeline.start()
    while not pipeline.finished and not stop and (deadline is None or time.monotonic() < deadline):
        out = pipeline.wait_output(0.1)
        if out is None:
            continue
        _print_json(out.record)
        if out.record["type"] == "prediction":
            pipeline.report_shown(out)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, help="Show full tracebacks and debug logging.")
@click.option("-v", "--verbose", is_flag=True, help="More log output on stderr.")
@click.version_option(package_name="evapp")
def cli(debug: bool, verbose: bool) -> None:
    """evapp: real-time gesture recognition from event cameras with stateful spiking transformers."""
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    # Only evapp's own logger speaks at -v: libraries (torch at exit, for one) stay at warnings.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="evapp: %(levelname)s: %(message)s",
                        force=True)
    log.setLevel(level)
    keep_freed_memory()  # before torch allocates anything: see evapp/cpu_memory.py


@cli.command()
@click.argument("file")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def info(file: str, as_json: bool) -> None:
    """Describe a recording: sensor, resolution, duration, events, mean rate, other streams, labels."""
    from evapp.sources import open_source

    source = open_source(file)
    try:
        meta = source.info()
    finally:
        source.close()
    record = {
        "path": meta.path,
        "format": meta.format,
        "sensor": meta.geometry.name,
        "width": meta.geometry.width,
        "height": meta.geometry.height,
        "duration_s": (meta.duration_us or 0) / 1e6,
        "events": meta.event_count,
        "mean_rate_ev_per_s": meta.mean_rate,
        "other_streams": meta.other_streams,
        "labels": len(meta.labels),
    }
    if as_json:
        _print_json(record)
        return
    rate = f"{meta.mean_rate / 1e6:.3f} M events/s" if meta.mean_rate else "n/a"
    lines = [
        f"file        {meta.path}",
        f"format      {meta.format}",
        f"sensor      {meta.geometry.name}",
        f"resolution  {meta.geometry.width}x{meta.geometry.height}",
        f"duration    {record['duration_s']:.3f} s",
        f"events      {meta.event_count:,}",
        f"mean rate   {rate}",
        f"streams     {', '.join(meta.other_streams) if meta.other_streams else 'events only'}",
        f"labels      {len(meta.labels)} gesture intervals" if meta.labels else "labels      none",
    ]
    click.echo("\n".join(lines))


@cli.command()
def cameras() -> None:
    """List the event cameras dv-processing can see (model and serial number)."""
    from evapp.sources.camera import list_cameras

    found = list_cameras()
    if not found:
        click.echo("No event camera was found (check the USB cable and iniVation's udev rules).")
        return
    for cam in found:
        click.echo(f"{cam.model}\t{cam.serial}")


def _speed(ctx, param, value):
    if value is None:
        return None
    try:
        speed = float(value)
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a number.") from None
    if not speed > 0:
        raise click.BadParameter(f"'{value}' must be greater than 0.")
    return speed


def _region(ctx, param, value):
    if value is None:
        return None
    from evapp.binning import Region

    try:
        return Region.parse(value)
    except InputError as exc:
        raise click.BadParameter(str(exc)) from None


def decoder_options(func):
    """--smoothing/--threshold/--hold/--idle-fps/--idle-floor-fps: override the model's decoder settings; the
    command gets them as one ``decoder_overrides`` dict of the options given (DecoderSettings field names)."""
    from evapp.decoder import DecoderSettings

    d = DecoderSettings()
    options = [
        click.option("--smoothing", type=click.IntRange(min=1),
                     help=f"Answers averaged by the decoder (default: the model's, else {d.smoothing})."),
        click.option("--threshold", type=click.FloatRange(0, 1),
                     help=f"Confidence needed to name a gesture (the model's, else {d.threshold})."),
        click.option("--hold", type=click.IntRange(min=1),
                     help=f"Answers a new label must lead before it shows (the model's, else {d.hold})."),
        click.option("--idle-fps", type=click.FloatRange(min=0),
                     help="Frames/s over the last two frame intervals below which the scene is idle "
                          f"(the model's, else {d.idle_below_fps:g}: never idle)."),
        click.option("--idle-floor-fps", type=click.FloatRange(min=0),
                     help="The training streams' motion floor: a stream whose own floor is lower scales the idle "
                          f"threshold down by the ratio (the model's, else {d.idle_floor_fps:g}: never scaled)."),
    ]

    @functools.wraps(func)
    def wrapper(*args, smoothing, threshold, hold, idle_fps, idle_floor_fps, **kwargs):
        given = {"smoothing": smoothing, "threshold": threshold, "hold": hold, "idle_below_fps": idle_fps,
                 "idle_floor_fps": idle_floor_fps}
        return func(*args, decoder_overrides={k: v for k, v in given.items() if v is not None}, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


# evapp.engine.torch_engine.PRECISIONS, spelled out so that the CLI starts without importing torch (a test keeps
# the two equal).
PRECISION_CHOICES = ("fp32", "tf32", "fp16", "bf16")


@dataclasses.dataclass(frozen=True)
class TorchOptions:
    """The torch engine's fast paths, chosen on the command line (README, Deployment)."""

    precision: str = "fp32"
    compile: bool = False
    cuda_graph: bool = False

    @property
    def any(self) -> bool:
        return self != EXACT_EAGER


EXACT_EAGER = TorchOptions()  # the default: fp32, eager, no graph


def torch_options(func):
    """--precision/--compile/--cuda-graph, passed to the command as one ``torch_opts`` argument."""

    @functools.wraps(func)
    def wrapper(*args, precision, compile_step, cuda_graph, **kwargs):
        return func(*args, torch_opts=TorchOptions(precision, compile_step, cuda_graph), **kwargs)

    options = [
        click.option("--precision", type=click.Choice(PRECISION_CHOICES), default="fp32", show_default=True,
                     help="Torch engine arithmetic: fp32 exact; tf32, fp16 (CUDA) and bf16 faster, a few answers "
                          "differ."),
        click.option("--compile", "compile_step", is_flag=True,
                     help="torch.compile the step (the first frame waits for the compile: seconds to a minute)."),
        click.option("--cuda-graph", is_flag=True,
                     help="Replay each step as one CUDA graph (CUDA; no spike rate). About 10x faster on an H100."),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def model_options(func):
    """--model/--no-model/--weights/--policy/--device/--engine and the decoder options (replay and live)."""
    options = [
        click.option("--model", "model_name", metavar="NAME",
                     help="Model to run (see 'evapp models'; default: the best shipped one)."),
        click.option("--no-model", is_flag=True, help="Run no model: only bin frames and show the events."),
        click.option("--weights", type=click.Path(dir_okay=False), help="Weights (.safetensors) for --model."),
        click.option("--policy", metavar="window|staggered:K|persistent",
                     help="When state is reset and answers are given (default: the model's; see the README)."),
        click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda",
                     help="Where the model runs."),
        click.option("--engine", "engine_kind", type=click.Choice(["torch", "onnx"]), default="torch",
                     show_default=True, help="Inference engine: PyTorch, or ONNX Runtime on the exported step."),
        torch_options,
        decoder_options,
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _decoder(overrides: dict | None, model_name: str | None = None):
    """The model artifact's decoder settings (or the defaults), with the command line's overrides."""
    from evapp.decoder import Decoder, DecoderSettings
    from evapp.engine.loading import find_artifact

    artifact = find_artifact(model_name) if model_name else None
    return Decoder(DecoderSettings.from_dict({**(artifact.decoder if artifact else {}), **(overrides or {})}))


def _resolve_model_name(model_name: str | None, no_model: bool = False) -> str | None:
    """``--model`` if given, else the best shipped artifact (None with ``--no-model`` or when none ships)."""
    if model_name or no_model:
        return model_name
    from evapp.engine.loading import default_model_name

    name = default_model_name()
    if name:
        log.info("using the default model %s (choose another with --model, or --no-model for frames only)", name)
    return name


def _model_frame_settings(model_name, cfg, events_per_frame, input_size):
    """N and input size for a model: a trained artifact's, refusing others; an untrained model's config N
    unless the user chose one (warned)."""
    from evapp.engine.artifact import check_pipeline
    from evapp.engine.loading import find_artifact

    size = (input_size, input_size) if input_size is not None else None
    artifact = find_artifact(model_name)
    if artifact is not None:
        check_pipeline(artifact, events_per_frame=events_per_frame, input_size=size)
        return artifact.preprocessing.events_per_frame, tuple(artifact.preprocessing.input_size)
    if size is not None and size != tuple(cfg.input_size):
        raise InputError(f"{model_name} takes {cfg.input_size[0]}x{cfg.input_size[1]} input, "
                         f"not {input_size}x{input_size}.")
    if events_per_frame is None:
        events_per_frame = cfg.events_per_frame
    elif events_per_frame != cfg.events_per_frame:
        log.warning("%s was configured for N=%d events per frame; using N=%d.", model_name,
                    cfg.events_per_frame, events_per_frame)
    return events_per_frame, tuple(cfg.input_size)


@cli.command()
@click.argument("file")
@click.option("--speed", callback=_speed, default="1.0", show_default=True,
              help="Replay speed factor against the recording's own clock.")
@click.option("--max-speed", is_flag=True, help="Replay as fast as possible (overrides --speed).")
@click.option("--loop", is_flag=True, help="Start again at the end, forever (Ctrl-C stops).")
@click.option("--start", "start_s", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Start this many seconds into the recording.")
@click.option("--events-per-frame", "-N", type=click.IntRange(min=1),
              help="Events per frame (default: the model's N, or 5000 without a model).")
@click.option("--input-size", type=click.IntRange(min=1),
              help="Model input side in pixels (default: the model's, or 128 without a model).")
@click.option("--region", callback=_region, metavar="x,y,w,h",
              help="Sensor region mapped onto the input (default: the centred square).")
@model_options
@click.option("--frames", "with_frames", is_flag=True, help="With --model, also print the frame lines.")
@click.option("--headless", is_flag=True, help="No window: one JSON object per line on stdout.")
def replay(file, speed, max_speed, loop, start_s, events_per_frame, input_size, region, model_name, no_model, weights,
           policy, device, engine_kind, torch_opts, decoder_overrides, with_frames, headless) -> None:
    """Replay a recording (.aedat4, .aedat, .npy, .raw, .dat) or a tcp://HOST:PORT stream."""
    from evapp.pipeline import Pipeline, ReplayOptions
    from evapp.sources import open_source

    engine, class_names, decoder = None, None, None
    if weights and not model_name:
        raise InputError("--weights needs --model NAME.")
    model_name = _resolve_model_name(model_name, no_model)
    if model_name:
        engine, cfg = _make_engine(model_name, weights, policy, device, engine_kind, torch_opts)
        class_names = cfg.class_names
        events_per_frame, input_size = _model_frame_settings(model_name, cfg, events_per_frame, input_size)
        decoder = _decoder(decoder_overrides, model_name)
    source = open_source(file)
    options = ReplayOptions(speed=None if max_speed else speed, loop=loop, start_s=start_s)
    pipeline = Pipeline(source, events_per_frame or 5000, input_size or 128, region, options, engine=engine,
                        decoder=decoder, class_names=class_names, with_frames=with_frames,
                        keep_view_events=not headless)
    log.info("replaying %s from %s", source.geometry, file)
    if not headless:  # the window (evapp/gui), driving this same pipeline
        from evapp.cli_live import replay_window

        return replay_window(pipeline, model_name, weights, policy, device, decoder_overrides, file, torch_opts)
    from evapp.interrupts import stop_requests

    with stop_requests() as stop:
        try:
            run_headless(pipeline, None, stop)
        finally:
            pipeline.close()
        _print_json(pipeline.summary())


def _make_engine(model_name: str, weights, policy: str | None, device: str, engine_kind: str = "torch",
                 torch_opts: TorchOptions = EXACT_EAGER):
    """The engine for a model; ``policy`` None means the artifact's default policy (else ``window``).

    ``engine_kind`` ``onnx`` runs the exported step with ONNX Runtime (the artifact's model.onnx when it was
    exported from these weights, else an in-memory export). The engine carries the artifact's preprocessing
    so the pipeline makes frames the way the model was trained (N, input size, cross-sensor thinning).
    ``torch_opts`` are the torch engine's fast paths (precision, compile, CUDA graph)."""
    from evapp.engine import TorchEngine
    from evapp.engine.loading import load

    loaded = load(model_name, weights)
    model, artifact = loaded.model, loaded.artifact
    policy = policy or (artifact.policy if artifact else "window")
    if engine_kind == "onnx" and torch_opts.any:
        raise InputError("--precision, --compile and --cuda-graph apply to --engine torch.")
    try:
        if engine_kind == "onnx":
            from evapp.engine.onnx_engine import OnnxEngine

            engine = OnnxEngine.for_loaded(loaded, device=device, policy=policy)
        else:
            engine = TorchEngine(model, device=device, policy=policy, precision=torch_opts.precision,
                                 compile=torch_opts.compile, cuda_graph=torch_opts.cuda_graph)
    except (ValueError, RuntimeError) as exc:
        raise InputError(f"{exc}.") from None
    engine.preprocessing = artifact.preprocessing if artifact else None
    return engine, model.cfg


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models(as_json: bool) -> None:
    """List the trained artifacts in models/ and the zoo's architectures: parameters, input, T, N, accuracy."""
    from evapp.bench import format_rows
    from evapp.engine.loading import default_model_name, list_artifacts
    from evapp.nets import count_params, create_model, get_config, list_models

    rows = []
    default = default_model_name()
    shipped = list_artifacts()
    for artifact in shipped:
        cfg, pre = artifact.config, artifact.preprocessing
        acc = artifact.metrics.get("clip_accuracy")
        rows.append({"name": artifact.name, "arch": cfg.name, "params": count_params(create_model(cfg)),
                     "input": f"2x{cfg.input_size[0]}x{cfg.input_size[1]}", "T": cfg.T,
                     "events_per_frame": pre.events_per_frame, "policy": artifact.policy,
                     "weights": str(artifact.weights_path) if artifact.weights_path.is_file() else "none",
                     "accuracy": "" if acc is None else f"{100 * acc:.1f} % ({artifact.metrics.get('data_kind', '?')})",
                     "default": artifact.name == default})
    for name in list_models():
        if any(r["name"] == name for r in rows):
            continue
        cfg = get_config(name)
        rows.append({"name": name, "arch": name, "params": count_params(create_model(name)),
                     "input": f"2x{cfg.input_size[0]}x{cfg.input_size[1]}", "T": cfg.T,
                     "events_per_frame": cfg.events_per_frame, "policy": "window", "weights": "none",
                     "accuracy": "untrained", "default": False})
    if as_json:
        _print_json({"models": rows, "default": default})
        return
    for r in rows:
        r["name"] = r["name"] + (" (default)" if r["default"] else "")
    click.echo(format_rows(rows, [("name", "name", ""), ("arch", "architecture", ""), ("params", "parameters", ",d"),
                                  ("input", "input", ""), ("T", "T", "d"), ("events_per_frame", "events/frame", ",d"),
                                  ("policy", "policy", ""), ("accuracy", "clip accuracy", "")]))


@cli.command("eval-stream")
@click.argument("file")
@click.option("--model", "model_name", metavar="NAME", help="Model to evaluate (default: the best shipped one).")
@click.option("--weights", type=click.Path(dir_okay=False), help="Weights (.safetensors) for --model.")
@click.option("--policy", metavar="window|staggered:K|persistent", help="Default: the model's.")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda")
@click.option("--engine", "engine_kind", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True,
              help="Inference engine: PyTorch, or ONNX Runtime on the exported step.")
@torch_options
@click.option("--events-per-frame", "-N", type=click.IntRange(min=1), help="Events per frame (default: the model's).")
@click.option("--region", callback=_region, metavar="x,y,w,h", help="Sensor region mapped onto the input.")
@decoder_options
@click.option("--confirm", type=click.IntRange(min=1), default=3, show_default=True,
              help="Correct answers in a row that count as a decision (for the latency).")
@click.option("--confusion", "confusion_path", type=click.Path(dir_okay=False),
              help="Where to save the confusion matrix PNG (default: FILE's name + _confusion.png, here).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a report.")
def eval_stream(file, model_name, weights, policy, device, engine_kind, torch_opts, events_per_frame, region,
                decoder_overrides, confirm, confusion_path, as_json) -> None:
    """Run the pipeline over a labelled recording: frame accuracy, decision latency, misses, false alarms."""
    from pathlib import Path

    from evapp.evaluate import confusion_png, stream_metrics
    from evapp.pipeline import Pipeline, ReplayOptions
    from evapp.sources import open_source

    model_name = _resolve_model_name(model_name)
    if not model_name:
        raise InputError("No trained model ships in models/; name one with --model NAME (see 'evapp models').")
    engine, cfg = _make_engine(model_name, weights, policy, device, engine_kind, torch_opts)
    policy = f"{engine.policy}:{engine.K}" if engine.policy == "staggered" else engine.policy
    events_per_frame, input_size = _model_frame_settings(model_name, cfg, events_per_frame, None)
    source = open_source(file)
    if source.is_live:
        raise InputError("eval-stream needs a labelled recording, not a live stream.")
    pipeline = Pipeline(source, events_per_frame, input_size, region, ReplayOptions(speed=None), engine=engine,
                        decoder=_decoder(decoder_overrides, model_name),
                        class_names=cfg.class_names,
                        with_frames=True)
    frame_t, decision_t, decision_cls, step_ms = [], [], [], []
    try:
        for record in pipeline.records():
            if record["type"] == "frame":
                frame_t.append(record["t_us"])
            else:
                decision_t.append(record["t_us"])
                decision_cls.append(record["decision"]["class_id"])
                step_ms.append(record["step_ms"])
    finally:
        pipeline.close()
    if not source.labels:
        raise InputError(f"{file} has no labels (expected {Path(file).stem}_labels.csv beside it).")
    metrics = stream_metrics(frame_t, decision_t, decision_cls, source.labels, confirm=confirm,
                             num_classes=len(cfg.class_names))
    metrics.class_names = list(cfg.class_names)
    png = Path(confusion_path or f"{Path(file).stem}_confusion.png")
    confusion_png(metrics, png, title=f"{model_name} on {Path(file).name} ({policy})")
    report = {"file": str(file), "model": model_name, "policy": policy, "events_per_frame": events_per_frame,
              "frames": len(frame_t), "answers": len(decision_t), **metrics.to_dict(), "confusion_png": str(png)}
    if as_json:
        _print_json(report)
        return
    acc = "n/a" if metrics.frame_accuracy is None else f"{100 * metrics.frame_accuracy:.1f} %"
    lat = "n/a" if metrics.median_latency_ms is None else f"{metrics.median_latency_ms:.0f} ms"
    click.echo(f"{file}: {model_name}, policy {policy}, N={events_per_frame}, {len(frame_t)} frames, "
               f"{len(decision_t)} answers")
    click.echo(f"frame accuracy      {acc} of {metrics.frames_in_gestures} frames inside gestures")
    click.echo(f"decision latency    median {lat} (labelled start to {confirm} correct answers in a row)")
    click.echo(f"missed gestures     {metrics.missed} of {len(metrics.gestures)}")
    click.echo(f"false alarms        {metrics.false_alarms} (a gesture named during a pause)")
    for g in metrics.gestures:
        shown = "missed" if g.latency_ms is None else f"{g.latency_ms:.0f} ms"
        click.echo(f"  {metrics.class_names[g.class_id]:<28} {g.start_us / 1e6:8.2f} s  {shown}")
    click.echo(f"confusion matrix    {png}")


def _resolution(ctx, param, value):
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"'{value}' is not WIDTHxHEIGHT.") from None
    if w < 32 or h < 32:
        raise click.BadParameter(f"'{value}' is too small (at least 32x32).")
    return w, h


@cli.command()
@click.argument("out")
@click.option("--classes", default="all", show_default=True,
              help="Gestures in order: 'all', or 0-based ids / names separated by commas.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same events.")
@click.option("--resolution", callback=_resolution, default="128x128", show_default=True,
              help="Sensor size WxH (128x128 DVS128, 640x480 DVXplorer).")
@click.option("--gesture-s", type=click.FloatRange(min=0.2), default=2.0, show_default=True,
              help="Seconds per gesture.")
@click.option("--pause-s", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Seconds of stillness between gestures.")
@click.option("--lighting", help="Lighting name for a recording (changes brightness and flicker).")
@click.option("--fps", type=click.FloatRange(min=100), default=2000.0, show_default=True,
              help="Pose sampling rate of the renderer.")
@click.option("--threshold", type=click.FloatRange(0.01, 2), help="DVS contrast threshold (log intensity, 0.2).")
@click.option("--noise-hz", type=click.FloatRange(min=0), help="Background activity per pixel per second (0.1).")
@click.option("--t0-us", type=click.IntRange(min=0), default=0, show_default=True,
              help="Absolute time of the first event in the file.")
@click.option("--compression", type=click.Choice(["lz4", "zstd"]), default="lz4", show_default=True,
              help="AEDAT4 compression (zstd: smaller files, slower to read).")
@click.option("--dataset", is_flag=True, help="OUT is a folder in DVS128 Gesture's original layout.")
@click.option("--users", type=click.IntRange(min=2), default=4, show_default=True, help="Dataset: subjects.")
@click.option("--lightings", default="fluorescent,led", show_default=True, help="Dataset: lightings per subject.")
@click.option("--train-users", type=click.IntRange(min=1), help="Dataset: subjects in the train split.")
@click.option("--split", type=click.Choice(["all", "train", "test"]), default="all", show_default=True,
              help="Dataset: write only this split's trials (e.g. held-out performances at another resolution).")
@click.option("--vary-sensor", is_flag=True,
              help="Dataset: draw each trial's contrast threshold and noise rate at random (robust training sets).")
@click.option("--workers", type=click.IntRange(min=1),
              help="Dataset: trials rendered in parallel processes (default: all cores; same files as one).")
@click.option("--force", is_flag=True, help="Overwrite an existing OUT.")
def simulate(out, classes, seed, resolution, gesture_s, pause_s, lighting, fps, threshold, noise_hz, t0_us,
             compression, dataset, users, lightings, train_users, split, vary_sensor, workers, force) -> None:
    """Synthetic DVS gesture streams: an .aedat4 + labels CSV, or a DVS128-Gesture-layout dataset folder."""
    from pathlib import Path

    from evapp.simulate.writers import simulate_main

    path = Path(out)
    if not dataset and path.suffix != ".aedat4":
        raise InputError(f"{out} should end in .aedat4 (or pass --dataset to write a folder).")
    if path.exists() and not force and (not path.is_dir() or any(path.iterdir())):
        raise InputError(f"{out} already exists; pass --force to overwrite it.")
    if train_users is not None and train_users >= users:
        raise InputError(f"--train-users {train_users} leaves no test subject out of {users}.")
    try:
        summary = simulate_main(out, classes, seed, resolution, gesture_s, pause_s, dataset=dataset, n_users=users,
                                lightings=tuple(x for x in lightings.split(",") if x), train_users=train_users,
                                lighting=lighting, fps=fps, threshold=threshold, noise_hz=noise_hz, t0_us=t0_us,
                                progress=lambda msg: log.info("%s", msg), compression=compression,
                                vary_sensor=vary_sensor, split=split, workers=workers or os.cpu_count() or 1)
    except ValueError as exc:
        raise InputError(f"{exc}.") from None
    _print_json(summary)


@cli.command()
@click.argument("model_name", metavar="NAME")
@click.option("--weights", type=click.Path(dir_okay=False), help="Weights (.safetensors; default: the artifact's).")
@click.option("--out", metavar="DIR", help="Folder for model.onnx and onnx.json (default: models/NAME/).")
@click.option("--opset", type=click.Choice(["17", "18"]), default="17", show_default=True,
              help="ONNX opset (both run on ONNX Runtime's CUDA provider and TensorRT >= 8.6).")
def export(model_name, weights, out, opset) -> None:
    """ONNX of one time step with explicit state: (frame, state...) -> (logits, new state..., spike counts)."""
    from pathlib import Path

    from evapp.engine.export import export_onnx
    from evapp.engine.loading import load, models_dir

    loaded = load(model_name, weights)
    folder = Path(out) if out else (loaded.artifact.folder if loaded.artifact else models_dir() / loaded.cfg.name)
    onnx_path, meta_path = export_onnx(loaded.model, folder, int(opset), weights=loaded.weights)
    _print_json({"model": loaded.cfg.name, "onnx": str(onnx_path), "meta": str(meta_path), "opset": int(opset),
                 "weights": str(loaded.weights) if loaded.weights else None})


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--quick", is_flag=True, help="Small sizes (1 M binning events, 10 steps, 10 s of replay).")
@click.option("--device", "devices", default="all", show_default=True, metavar="all|cpu|cuda",
              help="Devices for the step and replay rows (all: cpu and, if present, cuda).")
@click.option("--no-compile", is_flag=True, help="Skip the torch.compile rows (compiling takes minutes on a CPU).")
@click.option("--ort-threads", type=click.IntRange(min=1), help="ONNX Runtime intra-op threads (default: ORT's).")
@click.pass_context
def bench(ctx, as_json, quick, devices, no_compile, ort_threads) -> None:
    """Measure speed (this machine is described in every table). Without a subcommand: everything, one table."""
    if ctx.invoked_subcommand is None:
        _bench_all(as_json, quick, devices, no_compile, ort_threads)


@bench.command("all")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--quick", is_flag=True, help="Small sizes (1 M binning events, 10 steps, 10 s of replay).")
@click.option("--device", "devices", default="all", show_default=True, metavar="all|cpu|cuda")
@click.option("--no-compile", is_flag=True, help="Skip the torch.compile rows.")
@click.option("--ort-threads", type=click.IntRange(min=1), help="ONNX Runtime intra-op threads (default: ORT's).")
def bench_all_cmd(as_json, quick, devices, no_compile, ort_threads) -> None:
    """Every benchmark as one table: binning, ms/step per model and engine, replay of the demo (x real time)."""
    _bench_all(as_json, quick, devices, no_compile, ort_threads)


def _bench_all(as_json, quick, devices, no_compile, ort_threads) -> None:
    from evapp.bench import machine_description
    from evapp.bench.suite import ENGINES, bench_all, format_suite
    from evapp.bench.suite import devices as available
    from evapp.nets import list_models

    if devices == "all":
        devs = available()
    elif devices in ("cpu", "cuda"):
        if devices not in available():
            raise InputError("--device cuda was requested but no CUDA GPU is available; use --device cpu.")
        devs = [devices]
    else:
        raise InputError(f"--device '{devices}' is not one of all, cpu, cuda.")
    engines = [e for e in ENGINES if not (no_compile and e == "torch compiled")]
    rows = bench_all(list_models(), devs, engines, binning_events=1_000_000 if quick else 10_000_000,
                     with_tonic=not quick, iters=10 if quick else 30, replay_seconds=10.0 if quick else None,
                     ort_threads=ort_threads)
    if as_json:
        _print_json({"machine": machine_description(), "rows": rows})
    else:
        click.echo(format_suite(rows))


@bench.command("binning")
@click.option("--events", type=click.IntRange(min=1000), default=10_000_000, show_default=True,
              help="Number of synthetic events per case.")
@click.option("--batch", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="Events per batch pushed into the binner.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--no-tonic", is_flag=True, help="Skip tonic's ToFrame (it is slow and memory-hungry).")
def bench_binning_cmd(events: int, batch: int, as_json: bool, no_tonic: bool) -> None:
    """Our fixed-count binner against tonic's ToFrame(event_count=N) on the same events."""
    from evapp.bench import machine_description
    from evapp.bench.binning import bench_binning, format_table

    rows = bench_binning(n_events=events, batch=batch, with_tonic=not no_tonic)
    if as_json:
        _print_json({"machine": machine_description(), "binning": rows})
    else:
        click.echo(machine_description())
        click.echo(format_table(rows))


@bench.command("model")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda", help="Where the models run.")
@click.option("--batch", "batches", default="1,4", show_default=True, metavar="B[,B...]",
              help="Batch sizes (K of staggered:K runs as a batch of K).")
@click.option("--iters", type=click.IntRange(min=1), default=50, show_default=True, help="Timed steps per case.")
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True, help="Untimed steps first.")
@click.option("--per-layer", is_flag=True, help="Also print the spike rate of every neuron layer.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def bench_model_cmd(names, device, batches, iters, warmup, per_layer, as_json) -> None:
    """Milliseconds per time step of each zoo model (median, p99), spike rates, energy per step (45 nm)."""
    from evapp.bench import machine_description
    from evapp.bench.model import bench_models, format_model_bench
    from evapp.engine import resolve_device
    from evapp.nets import list_models

    unknown = [n for n in names if n not in list_models()]
    if unknown:
        raise InputError(f"There is no model named '{unknown[0]}' (available: {', '.join(list_models())}).")
    try:
        sizes = tuple(int(b) for b in batches.split(","))
        dev = resolve_device(device)
    except ValueError:
        raise InputError(f"--batch '{batches}' is not a comma-separated list of integers.") from None
    except RuntimeError as exc:
        raise InputError(f"{exc}.") from None
    rows = bench_models(names or list_models(), dev, sizes, warmup=warmup, iters=iters)
    if as_json:
        _print_json({"machine": machine_description(), "models": rows})
    else:
        click.echo(format_model_bench(rows, per_layer=per_layer))


@bench.group("live")
def bench_live() -> None:
    """Real-time measurements: end-to-end latency at the demo's rate, highest live rate without drops (CPU)."""


@bench_live.command("latency")
@click.option("--model", "models", multiple=True, metavar="NAME",
              help="Model (repeatable; default: saformer-2-256, sglformer-3-256, spikingresformer-dvsg).")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=56.0, show_default=True,
              help="Seconds of the demo recording replayed at its own speed.")
@click.option("--window", is_flag=True, help="Latency to the answer painted in the window (offscreen Qt).")
@click.option("--policy", default="window", show_default=True, metavar="window|staggered:K|persistent",
              help="The engine's policy (persistent answers every frame: many more samples than window).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def bench_live_latency_cmd(models, seconds, window, policy, as_json) -> None:
    """Replay assets/demo.aedat4 at its own speed; latency from an answer's last event to the answer shown."""
    from evapp.bench import machine_description
    from evapp.bench.live import DEFAULT_MODELS, format_latency, measure_latency

    _parse_policy_or_fail(policy)
    _check_models(models)
    rows = [measure_latency(m, seconds, window, policy) for m in models or DEFAULT_MODELS]
    if as_json:
        _print_json({"machine": machine_description(), "latency": rows})
    else:
        click.echo(format_latency(rows))


@bench_live.command("max-rate")
@click.option("--model", "models", multiple=True, metavar="NAME",
              help="Model (repeatable; default: saformer-2-256, sglformer-3-256, spikingresformer-dvsg).")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=6.0, show_default=True,
              help="Seconds streamed at each rate.")
@click.option("--rates", metavar="R[,R...]",
              help="Event rates (ev/s) tried in order until frames are dropped (default: 50e3 to 800e3 in 9 steps).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def bench_live_max_rate_cmd(models, seconds, rates, as_json) -> None:
    """Stream random events over the whole 640x480 sensor from a local NetworkWriter at rising rates into the
    live pipeline (policy window, the model's N); the highest rate without a dropped frame."""
    from evapp.bench import machine_description
    from evapp.bench.live import DEFAULT_MODELS, DEFAULT_RATES, format_max_rate, max_rate

    _check_models(models)
    try:
        rate_list = [float(r) for r in rates.split(",")] if rates is not None else list(DEFAULT_RATES)
    except ValueError:
        raise InputError(f"--rates '{rates}' is not a comma-separated list of numbers.") from None
    if not rate_list or min(rate_list) <= 0:
        raise InputError(f"--rates '{rates}' must list positive event rates.")

    def progress(step: dict) -> None:
        click.echo(json.dumps(step), err=True)

    rows = [max_rate(m, rate_list, seconds, progress) for m in models or DEFAULT_MODELS]
    if as_json:
        _print_json({"machine": machine_description(), "max_rate": rows})
    else:
        click.echo(format_max_rate(rows))


def _check_models(names) -> None:
    from evapp.nets import list_models

    unknown = [n for n in names if n not in list_models()]
    if unknown:
        raise InputError(f"There is no model named '{unknown[0]}' (available: {', '.join(list_models())}).")


def _parse_policy_or_fail(policy: str) -> None:
    from evapp.engine.base import parse_policy

    try:
        parse_policy(policy)
    except ValueError as exc:
        raise InputError(f"{exc}.") from None


def _overrides(items: tuple[str, ...]) -> dict:
    """``--set key=value``: model config overrides, values parsed as JSON (``embed_dims=[32]``)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"--set {item!r} should look like key=value (e.g. embed_dims=[64]).")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


@cli.command()
@click.argument("model_name", metavar="NAME")
@click.option("--data", required=True, metavar="DIR",
              help="DVS128 Gesture (original or tonic layout) or a set from 'evapp simulate --dataset'.")
@click.option("--out", metavar="DIR", help="Run folder: metrics.jsonl, last.pt, best.safetensors (runs/NAME).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=5e-3, show_default=True,
              help="Peak learning rate (SGLFormer's recipe: 5e-3).")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=0.06, show_default=True)
@click.option("--warmup-epochs", type=click.FloatRange(min=0), default=1.0, show_default=True)
@click.option("--T", "T", type=click.IntRange(min=1), help="Time steps per clip (default: the model's).")
@click.option("--events-per-frame", "-N", type=click.IntRange(min=1), help="Events per frame (default: model's).")
@click.option("--framing", type=click.Choice(["count", "clip"]), default="count", show_default=True,
              help="count: fixed N events per frame as live; clip: each gesture split into T equal-count frames.")
@click.option("--objective", type=click.Choice(["clips", "stream"]), default="clips", show_default=True,
              help="clips: T frames from reset, one label; stream: long crops, no reset, a label per step.")
@click.option("--stream-length", type=click.IntRange(min=2), default=32, show_default=True)
@click.option("--windows-per-gesture", type=click.IntRange(min=1), default=4, show_default=True,
              help="Random T-frame windows drawn from each training gesture per epoch.")
@click.option("--flip", type=click.Choice(["none", "paper", "mirror"]), default="none", show_default=True,
              help="Horizontal flip: paper keeps labels (official code), mirror swaps left/right classes.")
@click.option("--augment/--no-augment", default=True, show_default=True, help="SNNAugmentWide per clip.")
@click.option("--mixup/--no-mixup", default=True, show_default=True, help="Mixup (alpha 0.5, p 0.5).")
@click.option("--label-smoothing", type=click.FloatRange(0, 1), default=0.1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda")
@click.option("--amp/--no-amp", default=None, help="Mixed precision (default: on for CUDA).")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for torch.")
@click.option("--max-steps-per-epoch", type=click.IntRange(min=1), help="Cap steps per epoch (smoke runs).")
@click.option("--eval-limit", type=click.IntRange(min=1), help="Test windows evaluated per epoch (default: all).")
@click.option("--stop-after", type=click.IntRange(min=1),
              help="Stop after this many epochs of the --epochs schedule; continue later with --resume.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Model config override (repeatable).")
@click.option("--init", "init", metavar="PATH",
              help="Start from these weights (a .safetensors file, a run folder or a model artifact): fine-tuning.")
@click.option("--artifact", "artifact_dir", metavar="DIR",
              help="At the end, evaluate the best weights and write a model artifact here (e.g. models/NAME).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def train(model_name, data, out, resume, epochs, batch_size, lr, weight_decay, warmup_epochs, T, events_per_frame,
          framing, objective, stream_length, windows_per_gesture, flip, augment, mixup, label_smoothing, seed,
          device, amp, threads, max_steps_per_epoch, eval_limit, stop_after, sets, init, artifact_dir,
          no_progress) -> None:
    """Train a zoo model on DVS128 Gesture or a synthetic set; frames are made by the live binner."""
    from evapp.nets import list_models
    from evapp.train import TrainSettings
    from evapp.train import train as run_training
    from evapp.train.package import package_run

    if model_name not in list_models():
        raise InputError(f"There is no model named '{model_name}' (available: {', '.join(list_models())}).")
    settings = TrainSettings(
        model=model_name, data=data, out=out or f"runs/{model_name}", epochs=epochs, batch_size=batch_size, lr=lr,
        weight_decay=weight_decay, warmup_epochs=warmup_epochs, T=T, events_per_frame=events_per_frame,
        framing=framing, objective=objective, stream_length=stream_length, windows_per_gesture=windows_per_gesture,
        flip=flip, augment=augment, mixup=mixup, label_smoothing=label_smoothing, seed=seed, device=device,
        amp=amp, max_steps_per_epoch=max_steps_per_epoch, model_overrides=_overrides(sets), threads=threads,
        eval_limit=eval_limit, stop_after=stop_after, init=init)
    try:
        result = run_training(settings, resume=resume, progress=not no_progress)
    except (ValueError, RuntimeError) as exc:
        raise InputError(f"{exc}.") from None
    _print_json({"type": "train", **{k: v for k, v in result.items() if k != "model_config"}})
    if artifact_dir:
        summary = package_run(settings.out, artifact_dir, data=data)
        _print_json({"type": "artifact", **summary})


@cli.command()
@click.argument("run_dir", metavar="RUN")
@click.argument("artifact_dir", metavar="DIR")
@click.option("--data", metavar="DIR", help="Dataset to evaluate on (default: the run's).")
@click.option("--policy", default="window", show_default=True, help="Policy recorded as the artifact's default.")
@click.option("--also", multiple=True, metavar="DIR",
              help="Another dataset to report in the card (e.g. the test split rendered at 640x480); repeatable.")
@click.option("--force", is_flag=True, help="Replace an existing artifact in DIR.")
def package(run_dir, artifact_dir, data, policy, also, force) -> None:
    """Evaluate a training run's best weights and write them as a model artifact (config, weights, card)."""
    from pathlib import Path

    from evapp.train.package import package_run

    if (Path(artifact_dir) / "config.json").exists() and not force:
        raise InputError(f"{artifact_dir} already holds a model artifact; pass --force to replace it.")
    _parse_policy_or_fail(policy)
    _print_json({"type": "artifact", **package_run(run_dir, artifact_dir, data=data, policy=policy, also=list(also))})


@cli.command("eval")
@click.argument("model_name", metavar="NAME")
@click.option("--data", required=True, metavar="DIR|FILE",
              help="A dataset folder (clip accuracy) or a labelled recording (streaming metrics, as eval-stream).")
@click.option("--split", type=click.Choice(["train", "test"]), default="test", show_default=True)
@click.option("--weights", type=click.Path(dir_okay=False), help="Weights (default: the model's artifact).")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda")
@click.option("--confusion", "confusion_path", type=click.Path(dir_okay=False), help="Save the confusion matrix PNG.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a report.")
@click.pass_context
def eval_cmd(ctx, model_name, data, split, weights, device, confusion_path, as_json) -> None:
    """Clip accuracy of a model on a dataset split (per class, confusion matrix); recordings go to eval-stream."""
    from pathlib import Path

    if Path(data).is_file():
        ctx.invoke(eval_stream, file=data, model_name=model_name, weights=weights, device=device,
                   confusion_path=confusion_path, as_json=as_json)
        return
    from evapp.engine.loading import load_model
    from evapp.engine.torch_engine import resolve_device
    from evapp.evaluate import confusion_matrix_png
    from evapp.train.data import Framing, load_split
    from evapp.train.loop import evaluate_clips
    from evapp.train.package import position_summary

    model, artifact = load_model(model_name, weights)
    cfg = model.cfg
    pre = artifact.preprocessing if artifact else None
    framing = Framing(tuple(cfg.input_size), cfg.events_per_frame, cfg.T, pre.framing if pre else "count",
                      pre.reference_px_per_input_px if pre else None)
    try:
        dev = resolve_device(device)
    except RuntimeError as exc:
        raise InputError(f"{exc}.") from None
    trials = load_split(data, split, framing)
    result = evaluate_clips(model.to(dev), trials, cfg.T, dev)
    result.update({"model": model_name, "data": str(data), "split": split, "trials": len(trials)})
    if confusion_path:
        confusion_matrix_png(result["confusion"], list(cfg.class_names), confusion_path,
                             title=f"{model_name} on {Path(data).name} ({split})",
                             footer="rows: labelled class, columns: predicted class")
        result["confusion_png"] = confusion_path
    if as_json:
        _print_json(result)
        return
    click.echo(f"{model_name} on {data} ({split}, {len(trials)} trials, {result['clips']} clips of T={cfg.T}): "
               f"clip accuracy {100 * result['clip_accuracy']:.2f} %")
    for name, acc in zip(cfg.class_names, result["per_class_accuracy"], strict=True):
        click.echo(f"  {name:28s} {100 * acc:6.2f} %")
    click.echo("by position in the gesture (onset: the first T frames, offset: the last T): "
               + position_summary(result["accuracy_by_position"]))


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the click group and turns errors into one sentence and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("EVAPP_DEBUG") == "1"
    if debug and "--debug" in args:
        args.remove("--debug")
        args.insert(0, "--debug")
    try:
        cli.main(args=args, prog_name="evapp", standalone_mode=False)
        return 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("evapp: interrupted.", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("evapp: interrupted.", err=True)
        return 130
    except click.exceptions.UsageError as exc:
        hint = f" (see 'evapp {exc.ctx.command_path.split(' ', 1)[-1]} --help')" if exc.ctx else ""
        click.echo(f"evapp: error: {exc.format_message()}{hint}", err=True)
        return exc.exit_code
    except EvappError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"evapp: error: {exc}", err=True)
        return exc.exit_code
    except BrokenPipeError:
        # The reader of our stdout went away (e.g. `| head`): not an error of ours.
        sys.stderr.close()
        return 0
    except Exception as exc:  # noqa: BLE001 - the last line of defence for the user
        if debug:
            traceback.print_exc()
        click.echo(f"evapp: internal error: {type(exc).__name__}: {exc} (run with --debug for details).", err=True)
        return 1


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


from evapp import cli_live  # noqa: E402, F401 - registers 'evapp live' on the group above

