"""``evapp replay``, ``evapp live``, ``evapp eval-stream``: a stream through the pipeline into a sink."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from evapp.cli.options import (
    FiniteFloat,
    device_option,
    events_per_frame_option,
    json_option,
    model_options,
    parse_speed,
    region_option,
    with_frames,
)
from evapp.errors import InputError, SourceLost
from evapp.sinks.jsonl import print_json

log = logging.getLogger(__name__)

input_size_option = click.option("--input-size", type=click.IntRange(min=1),
                                 help="Model input side in pixels (default: the model's, or 128 without a model).")
frames_option = click.option("--frames", "with_frames_lines", is_flag=True,
                             help="With --model, also print the frame lines.")


@click.command(short_help="Replay a recording or a tcp:// stream.")
@click.argument("file")
@click.option("--speed", callback=parse_speed, default="1.0", show_default=True,
              help="Replay speed factor against the recording's own clock.")
@click.option("--max-speed", is_flag=True, help="Replay as fast as possible (overrides --speed).")
@click.option("--loop", is_flag=True, help="Start again at the end, forever (Ctrl-C stops).")
@click.option("--start", "start_s", type=FiniteFloat(min=0), default=0.0, show_default=True,
              help="Start this many seconds into the recording.")
@events_per_frame_option()
@input_size_option
@region_option()
@model_options(realtime="window")
@frames_option
@click.option("--headless", is_flag=True, help="No window: one JSON object per line on stdout.")
@click.option("--max-rate", type=FiniteFloat(min=0), metavar="EV/S",
              help="In the window: cap the event rate before binning (default: what the model can take; 0: off).")
def replay(file, speed, max_speed, loop, start_s, events_per_frame, input_size, region, choice, with_frames_lines,
           headless, max_rate) -> None:
    """Replay a recording (.aedat4, .aedat, .npy, .raw, .dat) or a tcp://HOST:PORT stream."""
    from evapp.interrupts import stop_requests
    from evapp.model_setup import build_model_setup
    from evapp.pipeline import Pipeline, ReplayOptions
    from evapp.sinks.jsonl import run_headless
    from evapp.sources import open_source

    if not headless:
        from evapp.gui.app import check_display

        check_display()  # before the model is built: a missing display is said at once
    choice = with_frames(choice, events_per_frame, input_size)
    setup = build_model_setup(choice)
    source = open_source(file)
    options = ReplayOptions(speed=None if max_speed else speed, loop=loop, start_s=start_s)
    # The window keeps a replay open at its end, so that a seek (or loop) can continue it, and keeps the replay's
    # clock: the model answers the frames it can take, as live (a headless replay never drops a frame).
    pipeline = Pipeline(source, setup, region=region, replay=options, hold_at_end=not headless,
                        with_frames=with_frames_lines, drop_late_frames=not headless, max_rate=max_rate)
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


@click.command(short_help="Recognise gestures live from a camera or stream.")
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
@model_options(realtime="always")
@frames_option
@click.option("--duration", "duration_s", type=FiniteFloat(min=0),
              help="Stop this many seconds after the first event arrives.")
@click.option("--max-rate", type=FiniteFloat(min=0), metavar="EV/S",
              help="Cap the event rate before binning; the excess is thinned evenly and counted (default: what the "
                   "model can take, measured while running; 0: off).")
def live(camera, headless, record_path, force, noise_filter, noise_filter_us, events_per_frame, input_size, region,
         choice, with_frames_lines, duration_s, max_rate) -> None:
    """Recognise gestures live from a camera or a tcp://HOST:PORT stream; reconnects when it drops."""
    from evapp.interrupts import stop_requests
    from evapp.model_setup import build_model_setup
    from evapp.pipeline import Pipeline
    from evapp.sinks.jsonl import run_headless
    from evapp.sinks.recorder import AedatRecorder, check_record_path
    from evapp.sources.live import background_activity_filter, open_live

    if record_path:
        check_record_path(record_path, force)  # before the camera is opened: fail fast, overwrite nothing
    if not headless:
        from evapp.gui.app import check_display

        check_display()
    choice = with_frames(choice, events_per_frame, input_size)
    source = open_live(camera)  # an absent camera or a dead address is said before the model loads (seconds)
    recorder = None
    try:
        setup = build_model_setup(choice)
        if noise_filter:
            source.store_filter = background_activity_filter(source.geometry, noise_filter_us)
        pipeline = Pipeline(source, setup, region=region, with_frames=with_frames_lines, max_rate=max_rate)
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
                                                     "recording": str(recorder.path),
                                                     "recording_stopped": recorder.stopped_because}
            if headless:
                print_json(pipeline.summary(reconnects=source.reconnects, **recording).to_json())
            if source.lost and not stop:
                raise SourceLost(f"{source.lost}, and had not come back when the run ended.")
    finally:
        if recorder is not None:
            recorder.close()
        source.close()


confirm_option = click.option("--confirm", type=click.IntRange(min=1), default=3, show_default=True,
                              help="Correct answers in a row that count as a decision (for the latency).")
confusion_option = click.option("--confusion", "confusion_path", type=click.Path(dir_okay=False),
                                help="Where to save the confusion matrix PNG (default: FILE's name + "
                                     "_confusion.png in $EVAPP_OUTPUT, else ~/evapp-output); the accuracy-since-"
                                     "onset curve goes beside it (_onset.png).")


@click.command("eval-stream", short_help="Frame accuracy and latency on a labelled recording.")
@click.argument("file")
@model_options(frames_only=False)
@events_per_frame_option("Events per frame (default: the model's).")
@region_option("Sensor region mapped onto the input.")
@confirm_option
@confusion_option
@json_option("Print one JSON object instead of a report.")
def eval_stream(file, choice, events_per_frame, region, confirm, confusion_path, as_json) -> None:
    """Run the pipeline over a labelled recording: frame accuracy, decision latency, misses, false alarms."""
    if not choice.name:
        raise InputError("No trained model ships in models/; name one with --model NAME (see 'evapp models').")
    report = _evaluate(file, with_frames(choice, events_per_frame), region, confirm, confusion_path)
    if as_json:
        print_json(report)
    else:
        from evapp.evaluate import format_report

        click.echo(format_report(report, confirm))


@click.command(short_help="Recognise the gestures of the demo recording and say how it went.")
@click.option("--model", "model_name", metavar="NAME",
              help="Model to run (default: saformer-2-256 on a CPU, the best shipped model on a GPU).")
@click.option("--policy", metavar="window|staggered:K|persistent", help="Default: the model's.")
@device_option("Where the model runs.")
@confirm_option
@confusion_option
@json_option("Print one JSON object instead of a report.")
def demo(model_name, policy, device, confirm, confusion_path, as_json) -> None:
    """Run a shipped model over assets/demo.aedat4 (a synthetic recording of the 11 gestures) as fast as this
    machine allows and print, for each labelled gesture, the gesture named and how soon, then the totals."""
    from evapp.model_setup import ModelChoice, resolve_model_name
    from evapp.paths import assets_dir

    path = assets_dir() / "demo.aedat4"
    if not path.is_file():
        raise InputError(f"The demo recording {path} is missing (set EVAPP_ASSETS to the checkout's assets/ folder).")
    model_name = resolve_model_name(model_name, realtime_on=device)
    report = _evaluate(str(path), ModelChoice(model_name, policy=policy, device=device), None, confirm,
                       confusion_path)
    if as_json:
        print_json(report)
    else:
        from evapp.evaluate import format_report

        click.echo(format_report(report, confirm))


def _evaluate(file: str, choice, region, confirm: int, confusion_path: str | None) -> dict:
    """The labelled recording through the pipeline as fast as possible: the streaming metrics as one record."""
    import time

    from evapp.evaluate import confusion_png, evaluate_stream, onset_png
    from evapp.model_setup import build_model_setup
    from evapp.paths import output_dir
    from evapp.pipeline import Pipeline, ReplayOptions
    from evapp.plots import beside
    from evapp.sources import open_source

    started = time.perf_counter()
    setup = build_model_setup(choice)
    source = open_source(file)
    if source.is_live:
        raise InputError("eval-stream needs a labelled recording, not a live stream.")
    pipeline = Pipeline(source, setup, region=region, replay=ReplayOptions(speed=None), with_frames=True)
    run = evaluate_stream(pipeline, confirm, file)
    metrics, policy = run.metrics, setup.policy_text
    png = Path(confusion_path) if confusion_path else output_dir() / f"{Path(file).stem}_confusion.png"
    title = f"{choice.name} on {Path(file).name} ({policy})"
    confusion_png(metrics, png, title=title)
    curve_png = beside(png, "onset")
    onset_png(metrics, curve_png, title=title)
    return {"file": str(file), "model": choice.name, "policy": policy,
            "events_per_frame": setup.frame_spec.events_per_frame, "frames": run.frames, "answers": run.answers,
            **metrics.to_dict(), "confusion_png": str(png), "onset_png": str(curve_png),
            "recording_s": pipeline.position_us / 1e6,
            "wall_s": round(time.perf_counter() - started, 1)}


def parse_size(ctx, param, value):
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"'{value}' is not WIDTHxHEIGHT (e.g. 1280x720).") from None
    if not (16 <= w <= 7680 and 16 <= h <= 4320) or w % 2 or h % 2:
        raise click.BadParameter(f"'{value}': width and height must be even, 16x16 to 7680x4320.")
    return w, h


@click.command(short_help="Render a replay with its predictions to a video file.")
@click.argument("file")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), metavar="VIDEO",
              help="The video to write: .mp4 or .avi (OpenCV, mp4v), or .gif (Pillow).")
@click.option("--speed", callback=parse_speed, default="1.0", show_default=True,
              help="Recording seconds per video second.")
@click.option("--fps", type=FiniteFloat(min=1, max=120), default=30.0, show_default=True,
              help="Video frames per second.")
@click.option("--size", callback=parse_size, default="1280x720", show_default=True, metavar="WxH",
              help="Video frame size in pixels.")
@click.option("--start", "start_s", type=FiniteFloat(min=0), default=0.0, show_default=True,
              help="Start the video this many seconds into the recording (the model runs from its start).")
@click.option("--duration", "duration_s", type=FiniteFloat(min=0, min_open=True),
              help="Render this many seconds of the recording (default: to its end).")
@click.option("--force", is_flag=True, help="Overwrite an existing video file.")
@model_options(frames_only=False)
@events_per_frame_option("Events per frame (default: the model's).")
@region_option("Sensor region mapped onto the input.")
def render(file, out_path, speed, fps, size, start_s, duration_s, force, choice, events_per_frame, region) -> None:
    """Replay a recording through the model and write what the window shows (events, input region, the decided
    gesture and its confidence, class bars, timeline with the ground truth) as a video on the recording's clock."""
    from evapp.interrupts import stop_requests
    from evapp.model_setup import build_model_setup
    from evapp.pipeline import Pipeline, ReplayOptions
    from evapp.sinks.video import VideoSettings, check_video_path, render_video
    from evapp.sources import open_source

    out = check_video_path(out_path)
    if out.exists() and not force:
        raise InputError(f"{out} exists; pass --force to overwrite it.")
    if not choice.name:
        raise InputError("No trained model ships in models/; name one with --model NAME (see 'evapp models').")
    setup = build_model_setup(with_frames(choice, events_per_frame))
    source = open_source(file)
    if source.is_live:
        raise InputError("render needs a recording, not a live stream (record it first: evapp live --record).")
    # from the recording's start: at --start the model has the state a whole replay would give it
    pipeline = Pipeline(source, setup, region=region, replay=ReplayOptions(speed=None), with_frames=False)
    settings = VideoSettings(out, fps=fps, speed=speed, size=size, start_s=start_s, duration_s=duration_s)
    with stop_requests() as stop:
        video = render_video(pipeline, settings, stop)
    print_json({"type": "video", "path": str(video.path), "frames": video.frames, "fps": video.fps,
                "size": list(video.size), "recording_s": round(video.recording_s, 3), "model": choice.name,
                "policy": setup.policy_text, "shown": video.runs()})


COMMANDS = (replay, live, eval_stream, demo, render)
