"""``evapp info``, ``evapp cameras``, ``evapp simulate``: recordings and cameras."""

from __future__ import annotations

import logging
import os

import click

from evapp.cli.options import FiniteFloat, json_option, parse_resolution
from evapp.errors import InputError, as_input_error
from evapp.sinks.jsonl import print_json

log = logging.getLogger(__name__)


@click.command(short_help="Describe a recording: sensor, size, events, labels.")
@click.argument("file")
@json_option("Print one JSON object instead of text.")
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
        "packets_skipped": meta.packets_skipped,
        "readable_end": meta.readable_end,
    }
    if as_json:
        print_json(record)
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
    if meta.packets_skipped:
        n = meta.packets_skipped
        lines.append(f"skipped     {n:,} packet{'' if n == 1 else 's'} that did not decode (the events above are the "
                     "rest)")
    if meta.readable_end:
        lines.append(f"readable    only the events above: {meta.readable_end}")
    click.echo("\n".join(lines))


@click.command(short_help="List the event cameras dv-processing sees.")
def cameras() -> None:
    """List the event cameras dv-processing can see (model and serial number)."""
    from evapp.sources.camera import list_cameras

    found = list_cameras()
    if not found:
        click.echo("No event camera was found (check the USB cable and iniVation's udev rules).")
        return
    for cam in found:
        click.echo(f"{cam.model}\t{cam.serial}")


@click.command(short_help="Write synthetic gesture recordings or a dataset.")
@click.argument("out")
@click.option("--classes", default="all", show_default=True,
              help="Gestures in order: 'all' (the 11), or 0-based ids / names separated by commas "
                   "(11 = both_arms_raise).")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same events.")
@click.option("--resolution", callback=parse_resolution, default="128x128", show_default=True,
              help="Sensor size WxH (128x128 DVS128, 320x240 DVXplorer Lite, 640x480 DVXplorer).")
@click.option("--gesture-s", type=FiniteFloat(min=0.2), default=2.0, show_default=True,
              help="Seconds per gesture.")
@click.option("--pause-s", type=FiniteFloat(min=0), default=1.0, show_default=True,
              help="Seconds of stillness between gestures.")
@click.option("--lighting", help="Lighting name for a recording (changes brightness and flicker).")
@click.option("--fps", type=FiniteFloat(min=100), default=2000.0, show_default=True,
              help="Pose sampling rate of the renderer.")
@click.option("--threshold", type=FiniteFloat(0.01, 2), help="DVS contrast threshold (log intensity, 0.2).")
@click.option("--noise-hz", type=FiniteFloat(min=0), help="Background activity per pixel per second (0.1).")
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
@click.option("--person", type=click.Choice(["newcomer"]),
              help="Recording: a preset person, room and sensor outside the training sets' ranges "
                   "(newcomer: 0.3 threshold, 0.5 Hz noise, 100 Hz lamp flicker).")
@click.option("--subject-seed", type=int, help="Recording: who performs (default --seed); --seed is how.")
@click.option("--force", is_flag=True, help="Overwrite an existing OUT.")
def simulate(out, classes, seed, resolution, gesture_s, pause_s, lighting, fps, threshold, noise_hz, t0_us,
             compression, dataset, users, lightings, train_users, split, vary_sensor, workers, person, subject_seed,
             force) -> None:
    """Synthetic DVS gesture streams: an .aedat4 + labels CSV, or a DVS128-Gesture-layout dataset folder.

    --classes takes DVS128 Gesture's 11 classes and both_arms_raise (id 11, none of them); a recording with
    it gets a classes.json beside its labels CSV (the list its 1-based class numbers index)."""
    from pathlib import Path

    from evapp.simulate.writers import simulate_main

    path = Path(out)
    if not dataset and path.suffix != ".aedat4":
        raise InputError(f"{out} should end in .aedat4 (or pass --dataset to write a folder).")
    if path.exists() and not force and (not path.is_dir() or any(path.iterdir())):
        raise InputError(f"{out} already exists; pass --force to overwrite it.")
    if train_users is not None and train_users >= users:
        raise InputError(f"--train-users {train_users} leaves no test subject out of {users}.")
    with as_input_error(ValueError):
        summary = simulate_main(out, classes, seed, resolution, gesture_s, pause_s, dataset=dataset, n_users=users,
                                lightings=tuple(x for x in lightings.split(",") if x), train_users=train_users,
                                lighting=lighting, fps=fps, threshold=threshold, noise_hz=noise_hz, t0_us=t0_us,
                                progress=lambda msg: log.info("%s", msg), compression=compression,
                                vary_sensor=vary_sensor, split=split, workers=workers or os.cpu_count() or 1,
                                person=person, subject_seed=subject_seed)
    print_json(summary)


COMMANDS = (info, cameras, simulate)
