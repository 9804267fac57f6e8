"""``evapp live`` and the window launch shared with ``evapp replay`` (registered on the ``evapp`` group by cli.py)."""

from __future__ import annotations

import logging

import click

from evapp.cli import (
    EXACT_EAGER,
    TorchOptions,
    _decoder,
    _make_engine,
    _model_frame_settings,
    _print_json,
    _region,
    _resolve_model_name,
    cli,
    model_options,
    run_headless,
)
from evapp.errors import InputError
from evapp.interrupts import stop_requests

log = logging.getLogger("evapp")


class EngineFactory:
    """Builds (engine, decoder, class names, N, input size) for a model choice; the window calls it again."""

    def __init__(self, weights, decoder_overrides: dict | None = None, torch_opts: TorchOptions = EXACT_EAGER):
        self.weights = weights
        self.decoder_overrides = decoder_overrides  # the command line's, kept when the window switches model
        self.torch_opts = torch_opts  # the command line's torch fast paths, kept when the window switches model

    def __call__(self, model_name: str | None, policy: str, device: str, events_per_frame=None, input_size=None,
                 engine_kind: str = "torch"):
        if not model_name:
            return None, None, None, events_per_frame or 5000, input_size or 128
        opts = self.torch_opts if engine_kind == "torch" else EXACT_EAGER
        engine, cfg = _make_engine(model_name, self.weights, policy, device, engine_kind, opts)
        n, size = _model_frame_settings(model_name, cfg, events_per_frame, input_size)
        return engine, _decoder(self.decoder_overrides, model_name), cfg.class_names, n, size


def open_window(pipeline, factory: EngineFactory, model_name, policy, device, title: str, stop: list,
                recorder_factory=None, screenshot=None, quit_after_s=None) -> int:
    from evapp.gui.app import run_window

    return run_window(pipeline, factory, model_name, policy, device, title, stop, recorder_factory=recorder_factory,
                      screenshot=screenshot, quit_after_s=quit_after_s)


@cli.command()
@click.option("--camera", "camera", required=True, metavar="dvxplorer|davis|dvs128|SERIAL|tcp://HOST:PORT",
              help="Camera kind or serial number (USB, through dv-processing), or a network stream.")
@click.option("--headless", is_flag=True, help="No window: one JSON object per line on stdout (as replay).")
@click.option("--record", "record_path", type=click.Path(dir_okay=False), metavar="FILE.aedat4",
              help="Record every event received to FILE.aedat4 (finalised on every exit).")
@click.option("--force", is_flag=True, help="Let --record overwrite an existing file.")
@click.option("--noise-filter", is_flag=True, help="dv-processing's background-activity noise filter.")
@click.option("--noise-filter-us", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Background-activity window: an event needs a neighbour this recent to survive.")
@click.option("--events-per-frame", "-N", type=click.IntRange(min=1),
              help="Events per frame (default: the model's N, or 5000 without a model).")
@click.option("--input-size", type=click.IntRange(min=1), help="Model input side in pixels (default: the model's).")
@click.option("--region", callback=_region, metavar="x,y,w,h", help="Sensor region mapped onto the input.")
@model_options
@click.option("--frames", "with_frames", is_flag=True, help="With --model, also print the frame lines.")
@click.option("--duration", "duration_s", type=click.FloatRange(min=0), help="Stop after this many seconds.")
def live(camera, headless, record_path, force, noise_filter, noise_filter_us, events_per_frame, input_size, region,
         model_name, no_model, weights, policy, device, engine_kind, torch_opts, decoder_overrides, with_frames,
         duration_s) -> None:
    """Recognise gestures live from a camera or a tcp://HOST:PORT stream; reconnects when it drops."""
    from evapp.pipeline import Pipeline
    from evapp.recorder import AedatRecorder, check_record_path
    from evapp.sources.live import background_activity_filter, open_live

    if record_path:
        check_record_path(record_path, force)  # before the camera is opened: fail fast, overwrite nothing
    if weights and not model_name:
        raise InputError("--weights needs --model NAME.")
    model_name = _resolve_model_name(model_name, no_model)
    factory = EngineFactory(weights, decoder_overrides, torch_opts)
    engine, decoder, class_names, n, size = factory(model_name, policy, device, events_per_frame, input_size,
                                                    engine_kind=engine_kind)
    source = open_live(camera)
    if noise_filter:
        source.store_filter = background_activity_filter(source.geometry, noise_filter_us)
    recorder = None
    try:
        if record_path:
            recorder = AedatRecorder(record_path, source.geometry, force=force)
            source.store_hooks.append(recorder)
        pipeline = Pipeline(source, n, size, region, engine=engine, decoder=decoder, class_names=class_names,
                            with_frames=with_frames, keep_view_events=not headless)
        log.info("live from %s (%s)", camera, source.geometry)
        with stop_requests() as stop:
            try:
                if headless:
                    run_headless(pipeline, duration_s, stop)
                else:
                    open_window(pipeline, factory, model_name, policy, device, f"evapp live: {camera}", stop,
                                recorder_factory=lambda path: AedatRecorder(path, source.geometry, force=True),
                                quit_after_s=duration_s)
            finally:
                pipeline.close()
                if recorder is not None:
                    recorder.close()
            summary = pipeline.summary()
            summary["reconnects"] = source.reconnects
            if recorder is not None:
                summary["recorded_events"] = recorder.events
                summary["recording"] = str(recorder.path)
            if headless:
                _print_json(summary)
    finally:
        if recorder is not None:
            recorder.close()
        source.close()


def replay_window(pipeline, model_name, weights, policy, device, decoder_overrides: dict | None, file: str,
                  torch_opts: TorchOptions = EXACT_EAGER) -> None:
    """``evapp replay FILE`` without --headless: the window on a replay that waits at its end for a seek."""
    factory = EngineFactory(weights, decoder_overrides, torch_opts)
    pipeline.hold_at_end = True
    with stop_requests() as stop:
        try:
            open_window(pipeline, factory, model_name, policy, device, f"evapp replay: {file}", stop)
        finally:
            pipeline.close()
