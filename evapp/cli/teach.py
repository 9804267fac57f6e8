"""``evapp collect`` and ``evapp finetune``: teach evapp a user's own gestures."""

from __future__ import annotations

import logging

import click

from evapp.binning import VIEWS
from evapp.cli.options import FiniteFloat, model_options, settings_option
from evapp.errors import InputError, as_input_error
from evapp.sinks.jsonl import print_json
from evapp.train.settings import PRECISIONS, STATISTICS, TRAINABLE, FinetuneSettings

log = logging.getLogger(__name__)


@click.command(short_help="Record labelled takes of your own gestures, guided by prompts.")
@click.option("--camera", required=True, metavar="dvxplorer|davis|dvs128|SERIAL|tcp://HOST:PORT",
              help="Camera kind or serial number (USB, through dv-processing), or a network stream.")
@click.option("--classes", "classes_text", required=True, metavar="NAME,NAME,...",
              help="The gestures to record, in order (their names become the model's classes).")
@click.option("--takes", type=click.IntRange(min=1), default=5, show_default=True, help="Takes of each class.")
@click.option("--take-s", type=FiniteFloat(min=0.5, max=60), default=3.0, show_default=True,
              help="Seconds of each take.")
@click.option("--pause-s", type=FiniteFloat(min=0, max=60), default=2.0, show_default=True,
              help="Seconds of rest after each take (recorded: it teaches evapp what rest looks like).")
@click.option("--countdown-s", type=FiniteFloat(min=0, max=30), default=3.0, show_default=True,
              help="Seconds of the countdown that names the next gesture ('3, 2, 1').")
@click.option("--seed", type=int, default=0, show_default=True, help="The shuffle of the classes in each round.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Folder for the takes (continued where it stopped if it holds this session).")
@click.option("--redo-last", is_flag=True, help="Discard the last finished take in DIR and record it again.")
@click.option("--headless", is_flag=True,
              help="No window: the prompts as JSON lines on stdout and as text on stderr.")
@model_options(realtime="always")
def collect(camera, classes_text, takes, take_s, pause_s, countdown_s, seed, out_dir, redo_last, headless,
            choice) -> None:
    """Record labelled takes of your gestures from a camera or stream: a prompt names each gesture, counts down
    and times the take; every event received is kept in DIR, one .aedat4 and _labels.csv per take."""
    from evapp.collect.protocol import CollectPlan, parse_class_names
    from evapp.collect.run import open_session, run_headless, summary
    from evapp.collect.session import prepare_folder
    from evapp.interrupts import stop_requests
    from evapp.model_setup import ModelSetup, build_model_setup
    from evapp.pipeline import Pipeline
    from evapp.sources.live import open_live

    with as_input_error(ValueError):
        plan = CollectPlan(parse_class_names(classes_text), takes, take_s, pause_s, countdown_s, seed)
    record = prepare_folder(out_dir, plan, redo_last)  # a wrong DIR is refused before the camera is opened
    if not headless:
        from evapp.gui.app import check_display

        check_display()
    setup = ModelSetup.frames_only() if headless else build_model_setup(choice)
    source = open_live(camera)
    try:
        pipeline = Pipeline(source, setup)
        session = open_session(out_dir, record, pipeline, camera)
        with stop_requests() as stop:
            if headless:
                run_headless(pipeline, session, stop, print_json)
            else:
                from evapp.gui.collect_window import run_collect_window

                run_collect_window(pipeline, session, choice, stop)
            print_json(summary(session))
    finally:
        source.close()


@click.command(short_help="Adapt a model to your recordings from 'evapp collect', on the CPU in minutes.")
@click.argument("base", metavar="BASE")
@click.option("--data", "data_dirs", multiple=True, required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="A folder written by 'evapp collect' (repeat for more); its classes become the model's.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), metavar="models/NAME",
              help="Folder of the new artifact (under models/ it is found by name).")
@settings_option(FinetuneSettings, "trainable", "--train", type=click.Choice(TRAINABLE),
                 help="What is trained: the classifier; the last block and the classifier; all but the first two "
                      "convolutions (at the input's full and half resolution); or every weight.")
@settings_option(FinetuneSettings, "precision", "--precision", type=click.Choice(PRECISIONS),
                 help="A training step's arithmetic: auto takes bfloat16 where the CPU multiplies it natively "
                      "(about twice as fast), else float32. The artifact's weights are float32 either way.")
@settings_option(FinetuneSettings, "flip", "--flip", type=click.Choice(("none", "mirror")),
                 help="mirror: half the clips are mirrored and relabelled by name (right <-> left, clockwise <-> "
                      "counter_clockwise; a name without a side is its own mirror; a class whose mirror name is not "
                      "in the list is never flipped).")
@settings_option(FinetuneSettings, "view", "--view", type=click.Choice(VIEWS),
                 help="What of the sensor the input shows: whole (all of it, letterboxed into a square, so a "
                      "gesture at a wide sensor's edge is seen) or centre (its centred square, as the base saw).")
@settings_option(FinetuneSettings, "statistics", "--statistics", type=click.Choice(STATISTICS),
                 help="The normalisation statistics of the trained layers: adapt (they follow the training batches, "
                      "your takes and the rehearsal clips) or keep (the base's, as a frozen layer always does).")
@settings_option(FinetuneSettings, "epochs", "--epochs", type=click.IntRange(min=1, max=500),
                 help="Epochs (default: as many as fit in --minutes, from a timed training step).")
@settings_option(FinetuneSettings, "minutes", "--minutes", type=FiniteFloat(min=0.5, max=1440),
                 help="Time budget from start to artifact, when --epochs is not given.")
@settings_option(FinetuneSettings, "lr", "--lr", type=FiniteFloat(min=0, min_open=True, max=1),
                 help="Peak learning rate (AdamW, cosine schedule).")
@settings_option(FinetuneSettings, "head_lr_scale", "--head-lr-scale", type=FiniteFloat(min=0, min_open=True,
                                                                                         max=1000),
                 help="The classifier's learning rate as a multiple of --lr (its new rows start from nothing).")
@click.option("--rehearse", type=click.Path(file_okay=False), metavar="DATASET",
              help="A dataset folder of the base's own kind of data ('evapp train --data' layouts; for the shipped "
                   "models see the README): its train split is mixed in so the base's classes are not forgotten.")
@settings_option(FinetuneSettings, "rehearse_trials", "--rehearse-trials", type=click.IntRange(min=1),
                 help="Trials of --rehearse's train split used, evenly spaced (default: all).")
@settings_option(FinetuneSettings, "rehearse_share", "--rehearse-share", type=FiniteFloat(min=0, max=20),
                 help="Rehearsal windows per epoch as a multiple of the windows of your takes.")
@settings_option(FinetuneSettings, "distill", "--distill", type=FiniteFloat(min=0, max=100),
                 help="Weight of the base's own answers on the rehearsal clips, against forgetting (0: hard labels "
                      "only).")
@settings_option(FinetuneSettings, "average", "--average", type=FiniteFloat(min=0, max=0.9999),
                 help="Validate and keep a moving average of the weights with this decay per step, not the last "
                      "step's weights (0: off).")
@settings_option(FinetuneSettings, "interpolate", "--interpolate", type=FiniteFloat(min=0, max=1),
                 help="Mix the tuned weights with the base's, this share tuned (WiSE-FT), against forgetting; kept "
                      "only if the held-out takes lose at most a point (1: the tuned weights alone, no mix).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for training (default: PyTorch's).")
@click.option("--force", is_flag=True, help="Replace an existing artifact folder.")
def finetune(base, data_dirs, out_dir, trainable, precision, flip, view, statistics, epochs, minutes, lr,
             head_lr_scale, rehearse, rehearse_trials, rehearse_share, distill, average, interpolate, seed, threads,
             force) -> None:
    """Fine-tune the artifact BASE on the takes of one or more collect folders and write a new artifact (config,
    weights, model card with its lineage, held-out metrics and a confusion PNG)."""
    from pathlib import Path

    from evapp.train.finetune import finetune as run_finetune

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not force:
        raise InputError(f"{out} already exists; pass --force to replace it.")
    settings = FinetuneSettings(base, tuple(data_dirs), str(out), trainable=trainable, epochs=epochs, minutes=minutes,
                                lr=lr, head_lr_scale=head_lr_scale, seed=seed, threads=threads, rehearse=rehearse,
                                rehearse_trials=rehearse_trials, rehearse_share=rehearse_share, precision=precision,
                                flip=flip, view=view, distill=distill, average=average,
                                interpolate=interpolate, statistics=statistics)
    print_json(run_finetune(settings))


COMMANDS = (collect, finetune)
