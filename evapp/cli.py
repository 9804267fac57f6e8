"""The ``evapp`` command line. Every command has ``--help``; ``--debug`` (anywhere) shows tracebacks.

User-facing failures raise ``EvappError`` subclasses and end as one sentence on stderr with a non-zero exit
code; anything else is a bug and says so (with the traceback under ``--debug``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback

import click

from evapp.errors import EvappError, InputError

log = logging.getLogger("evapp")


def _print_json(record: dict) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, help="Show full tracebacks and debug logging.")
@click.option("-v", "--verbose", is_flag=True, help="More log output on stderr.")
@click.version_option(package_name="evapp")
def cli(debug: bool, verbose: bool) -> None:
    """evapp: real-time gesture recognition from event cameras with stateful spiking transformers."""
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, stream=sys.stderr, format="evapp: %(levelname)s: %(message)s")


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


@cli.command()
@click.argument("file")
@click.option("--speed", callback=_speed, default="1.0", show_default=True,
              help="Replay speed factor against the recording's own clock.")
@click.option("--max-speed", is_flag=True, help="Replay as fast as possible (overrides --speed).")
@click.option("--loop", is_flag=True, help="Start again at the end, forever (Ctrl-C stops).")
@click.option("--start", "start_s", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Start this many seconds into the recording.")
@click.option("--events-per-frame", "-N", type=click.IntRange(min=1), default=5000, show_default=True,
              help="Events per frame (N).")
@click.option("--input-size", type=click.IntRange(min=1), default=128, show_default=True,
              help="Model input side in pixels; the sensor is mapped onto a square of this size.")
@click.option("--region", callback=_region, metavar="x,y,w,h",
              help="Sensor region mapped onto the input (default: the centred square).")
@click.option("--headless", is_flag=True, help="No window: one JSON object per line on stdout.")
def replay(file, speed, max_speed, loop, start_s, events_per_frame, input_size, region, headless) -> None:
    """Replay a recording (.aedat4, .aedat, .npy, .raw, .dat) or a tcp://HOST:PORT stream."""
    from evapp.pipeline import Pipeline, ReplayOptions
    from evapp.sources import open_source

    if not headless:
        raise EvappError("The replay window is not built yet; run with --headless for JSON output.")
    source = open_source(file)
    options = ReplayOptions(speed=None if max_speed else speed, loop=loop, start_s=start_s)
    pipeline = Pipeline(source, events_per_frame, input_size, region, options)
    log.info("replaying %s from %s", source.geometry, file)
    try:
        for record in pipeline.records():
            _print_json(record)
    finally:
        pipeline.close()
    _print_json(pipeline.summary())


@cli.group()
def bench() -> None:
    """Measure speed (this machine is described in every table)."""


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
