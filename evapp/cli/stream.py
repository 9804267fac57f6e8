"""``evapp replay``, ``evapp live``, ``evapp eval-stream``: a stream through the pipeline into a sink."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from evapp.cli.options import (
    events_per_frame_option,
    json_option,
    model_options,
    parse_speed,
    region_option,
    with_frames,
)
from evapp.errors import InputError
from evapp.sinks.jsonl import print_json

log = logging.getLogger(__name__)

input_size_option = click.option("--input-size", type=click.IntRange(min=1),
                                 help="Model input side in pixels (default: the model's, or 128 without a model).")
frames_option = click.option("--frames", "with_frames_lines", is_flag=True,
                             help="With --model, also print the frame lines.")


@click.command()
@click.argument("file")
@click.option("--speed", callback=parse_speed, default="1.0", show_default=True,
              help="Replay speed factor against the recording's own clock.")
@click.option("--max-speed", is_flag=True, help="Replay as fast as possible (overrides --speed).")
@click.option("--loop", is_flag=True, help="Start again at the end, forever (Ctrl-C stops).")
@click.option("--start", "start_s", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Start this many seconds into the recording.")
@events_per_frame_option()
@input_size_option
@region_option()
@model_options
@frames_option
@click.option("--headless", is_flag=True, help="No window: one JSON object per line on stdout.")
def replay(file, speed, max_speed, loop, start_s, events_per_frame, input_size, region, choice, with_frames_lines,
           headless) -> None:
    """Replay a recording (.aedat4, .aedat, .npy, .raw, .dat) or a tcp://HOST:PORT stream."""
    from evapp.interrupts import stop_requests
    from evapp.model_setup import build_model_setup
    from evapp.pipeline import Pipeline, ReplayOptions
    from evapp.sinks.jsonl import run_headless
    from evapp.sources import open_source

    choice = with_frames(choice, events_per_frame, input_size)
    setup = build_model_setup(choice)
    source = open_source(file)
    options = ReplayOptions(speed=None if max_speed else speed, loop=loop, start_s=start_s)
    # The window keeps a replay open at its end, so that a seek (or loop) can continue it.
    pipeline = Pipeline(source, setup, region=region, replay=options, hold_at_end=not headless,
                        with_frames=with_frames_lines)
    log.info("replaying %s from %s", source.geometry, file)
    with stop_requests() as stop:
        try:
            if headless:
                run_headless(pipeline, None, stop)
            else:
                from evapp.gui.app import run_window

                run_window(pipeline, choice, f"evapp replay: {file}", stop)
        finally:
            pipeline.close()
        if headless:
            print_json(pipeline.summary().to_json())


@click.command()
@click.option("--camera", "camera", required=True, metavar="dvxplorer|davis|dvs128|SERIAL|tcp://HOST:PORT",
              help="Camera kind or serial number (USB, through dv-processing), or a network stream.")
@click.option("--headless", is_flag=True, help="No window: one JSON object per line on stdout (as replay).")
@click.option("--record", "record_path", type=click.Path(dir_okay=False), metavar="FILE.aedat4",
              help="Record every event received to FILE.aedat4 (finalised on every exit).")
@click.option("--force", is_flag=True, help="Let --record overwrite an existing file.")
@click.option("--noise-filter", is_flag=True, help="dv-processing's background-activity noise filter.")
@click.option("--noise-filter-us", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Background-activity window: an event needs a neighbour this recent to survive.")
@events_per_frame_option()
@click.option("--input-size", type=click.IntRange(min=1), help="Model input side in pixels (default: the model's).")
@region_option("Sensor region mapped onto the input.")
@model_options
@frames_option
@click.option("--duration", "duration_s", type=click.FloatRange(min=0), help="Stop after this many seconds.")
def live(camera, headless, record_path, force, noise_filter, noise_filter_us, events_per_frame, input_size, region,
         choice, with_frames_lines, duration_s) -> None:
    """Recognise gestures live from a camera or a tcp://HOST:PORT stream; reconnects when it drops."""
    from evapp.interrupts import stop_requests
    from evapp.model_setup import build_model_setup
    from evapp.pipeline import Pipeline
    from evapp.sinks.jsonl import run_headless
    from evapp.sinks.recorder import AedatRecorder, check_record_path
    from evapp.sources.live import background_activity_filter, open_live

    if record_path:
        check_record_path(record_path, force)  # before the camera is opened: fail fast, overwrite nothing
    setup = build_model_setup(with_frames(choice, events_per_frame, input_size))
    source = open_live(camera)
    if noise_filter:
        source.store_filter = background_activity_filter(source.geometry, noise_filter_us)
    recorder = None
    try:
        pipeline = Pipeline(source, setup, region=region, with_frames=with_frames_lines)
        if record_path:
            recorder = AedatRecorder(record_path, source.geometry, force=force)
            pipeline.add_tap(recorder)
        log.info("live from %s (%s)", camera, source.geometry)
        with stop_requests() as stop:
            try:
                if headless:
                    run_headless(pipeline, duration_s, stop)
                else:
                    from evapp.gui.app import run_window

                    run_window(pipeline, choice, f"evapp live: {camera}", stop,
                               recorder_factory=lambda path: AedatRecorder(path, source.geometry, force=True),
                               quit_after_s=duration_s)
            finally:
                pipeline.close()
                if recorder is not None:
                    recorder.close()
            recording = {} if recorder is None else {"recorded_events": recorder.events,
                                                     "recording": str(recorder.path)}
            if headless:
                print_json(pipeline.summary(reconnects=source.reconnects, **recording).to_json())
    finally:
        if recorder is not None:
            recorder.close()
        source.close()


@click.command("eval-stream")
@click.argument("file")
@model_options(frames_only=False)
@events_per_frame_option("Events per frame (default: the model's).")
@region_option("Sensor region mapped onto the input.")
@click.option("--confirm", type=click.IntRange(min=1), default=3, show_default=True,
              help="Correct answers in a row that count as a decision (for the latency).")
@click.option("--confusion", "confusion_path", type=click.Path(dir_okay=False),
              help="Where to save the confusion matrix PNG (default: FILE's name + _confusion.png, here).")
@json_option("Print one JSON object instead of a report.")
def eval_stream(file, choice, events_per_frame, region, confirm, confusion_path, as_json) -> None:
    """Run the pipeline over a labelled recording: frame accuracy, decision latency, misses, false alarms."""
    from evapp.evaluate import confusion_png, evaluate_stream
    from evapp.model_setup import build_model_setup
    from evapp.pipeline import Pipeline, ReplayOptions
    from evapp.sources import open_source

    if not choice.name:
        raise InputError("No trained model ships in models/; name one with --model NAME (see 'evapp models').")
    setup = build_model_setup(with_frames(choice, events_per_frame))
    source = open_source(file)
    if source.is_live:
        raise InputError("eval-stream needs a labelled recording, not a live stream.")
    pipeline = Pipeline(source, setup, region=region, replay=ReplayOptions(speed=None), with_frames=True)
    run = evaluate_stream(pipeline, confirm, file)
    metrics, policy, n = run.metrics, setup.policy_text, setup.frame_spec.events_per_frame
    png = Path(confusion_path or f"{Path(file).stem}_confusion.png")
    confusion_png(metrics, png, title=f"{choice.name} on {Path(file).name} ({policy})")
    report = {"file": str(file), "model": choice.name, "policy": policy, "events_per_frame": n,
              "frames": run.frames, "answers": run.answers, **metrics.to_dict(), "confusion_png": str(png)}
    if as_json:
        print_json(report)
        return
    acc = "n/a" if metrics.frame_accuracy is None else f"{100 * metrics.frame_accuracy:.1f} %"
    lat = "n/a" if metrics.median_latency_ms is None else f"{metrics.median_latency_ms:.0f} ms"
    click.echo(f"{file}: {choice.name}, policy {policy}, N={n}, {run.frames} frames, {run.answers} answers")
    click.echo(f"frame accuracy      {acc} of {metrics.frames_in_gestures} frames inside gestures")
    click.echo(f"decision latency    median {lat} (labelled start to {confirm} correct answers in a row)")
    click.echo(f"missed gestures     {metrics.missed} of {len(metrics.gestures)}")
    click.echo(f"false alarms        {metrics.false_alarms} (a gesture named during a pause)")
    for g in metrics.gestures:
        shown = "missed" if g.latency_ms is None else f"{g.latency_ms:.0f} ms"
        click.echo(f"  {metrics.class_names[g.class_id]:<28} {g.start_us / 1e6:8.2f} s  {shown}")
    click.echo(f"confusion matrix    {png}")


COMMANDS = (replay, live, eval_stream)
