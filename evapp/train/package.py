"""From a training run to a shipped model artifact: evaluate the best weights, write config, weights and card."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import torch

from evapp.binning import FrameSpec
from evapp.decoder import FLOOR_QUANTILE, DecoderSettings, motion_rates, time_weighted_quantile
from evapp.engine.artifact import Preprocessing, write_artifact
from evapp.errors import InputError
from evapp.train.data import load_split
from evapp.train.loop import evaluate_clips

log = logging.getLogger(__name__)


def dataset_kind(folder: str | Path) -> str:
    """'synthetic' for a set written by ``evapp simulate --dataset``, else 'DVS128 Gesture'."""
    from evapp.simulate.writers import SYNTHETIC_MARKER

    return "synthetic" if (Path(folder) / SYNTHETIC_MARKER).is_file() else "DVS128 Gesture"


def evaluate_weights(model, data: str | Path, spec: FrameSpec, split: str = "test") -> dict:
    trials = load_split(data, split, spec, model.cfg.T, class_names=tuple(model.cfg.class_names))
    if not trials:
        raise InputError(f"{data} has no {split} trials to evaluate on.")
    result = evaluate_clips(model, trials, model.cfg.T, torch.device("cpu"))
    result["trials"] = len(trials)
    return result


def idle_rate_threshold(trials, quantile: float = 0.1) -> float:
    """The frames-per-second threshold below which the decoder calls the scene idle, from labelled training
    trials: just above the motion rate of the quietest tenth of the pause frames.

    Fixed-count frames come slowly when little moves, so a quiet pause makes few frames, and many frames
    labelled "pause" are the residual motion just after a gesture (synthetic training set, rates by
    ``motion_rates``: pause frames 2.6 / 6.5 / 11.3 frames/s at the 10th / 50th / 90th percentile, gesture
    frames 12.9 / 72.5 at the 5th / 50th). The quietest pause frames are what the sensor makes when nothing
    moves; a threshold just above them keeps gestures named on a sensor whose motion makes fewer events than
    the training data's. The rate is measured as the pipeline measures it."""
    # a trial's first frame has no interval before it (rate 0): it says nothing about the scene
    pauses = [motion_rates(ft.t_end_us)[1:][ft.frame_labels[1:] < 0] for ft in trials]
    pauses = np.concatenate(pauses) if pauses else np.zeros(0)
    if pauses.shape[0] == 0:
        return 0.0
    return round(float(np.quantile(pauses, quantile)) + 1.0, 2)


def motion_floor(trials) -> float:
    """The training streams' motion floor, as ``evapp.decoder.MotionFloor`` measures a live stream's: the
    time-weighted ``FLOOR_QUANTILE`` of each trial's motion rate (a synthetic trial lasts about 45 s, close to
    the live horizon of 60 s), the median over trials (the synthetic set varies the sensor's noise and
    threshold per trial: 1.8 to 7.4 frames/s between its 10th and 90th percentile trials)."""
    floors = []
    for ft in trials:
        if len(ft) > 2:
            floors.append(time_weighted_quantile(motion_rates(ft.t_end_us)[1:], np.diff(ft.t_end_us), FLOOR_QUANTILE))
    return round(float(np.median(floors)), 2) if floors else 0.0


def package_run(run_dir: str | Path, artifact_dir: str | Path, data: str | Path | None = None,
                policy: str = "window", decoder: dict | None = None, also: list[str] | None = None) -> dict:
    """Evaluate ``run_dir/best.safetensors`` on the test split and write an artifact to ``artifact_dir``.

    ``also`` lists more datasets (e.g. the held-out performances rendered at 640x480) whose clip accuracy
    goes into the card beside the main one, framed with the main data's density as the reference.
    """
    from safetensors.torch import load_file

    from evapp.nets import create_model

    run_dir = Path(run_dir)
    try:
        run = json.loads((run_dir / "run.json").read_text())
        state = load_file(str(run_dir / "best.safetensors"))
    except FileNotFoundError as exc:
        raise InputError(f"{run_dir} is not a finished training run ({Path(exc.filename).name} is missing).") from None
    settings = run["settings"]
    data = data or settings["data"]
    model = create_model(settings["model"], **run["model_overrides"])
    model.load_state_dict(state)
    model.eval()
    cfg = model.cfg
    spec = FrameSpec(tuple(cfg.input_size), cfg.events_per_frame, settings["framing"])
    main = evaluate_weights(model, data, spec)
    decoder = dict(decoder or {})
    if "idle_below_fps" not in decoder or "idle_floor_fps" not in decoder:
        # calibrated on the training split, never on test data
        train_trials = load_split(data, "train", spec, cfg.T, class_names=tuple(cfg.class_names))
        decoder.setdefault("idle_below_fps", idle_rate_threshold(train_trials))
        decoder.setdefault("idle_floor_fps", motion_floor(train_trials))
    decoder = DecoderSettings.from_dict(decoder).to_dict()  # every setting written out: the artifact says it all
    reference = run.get("px_per_input_px", 1.0)
    thinned = dataclasses.replace(spec, reference_px_per_input_px=reference)
    extra = {str(other): evaluate_weights(model, other, thinned) for other in also or []}
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    metrics = {"clip_accuracy": round(main["clip_accuracy"], 4), "clips": main["clips"],
               "per_class_accuracy": main["per_class_accuracy"],
               "accuracy_by_position": main["accuracy_by_position"], "data_kind": dataset_kind(data),
               "also": {k: {"clip_accuracy": round(v["clip_accuracy"], 4), "clips": v["clips"]}
                        for k, v in extra.items()}}
    pre = Preprocessing(thinned, cfg.T, tuple(cfg.class_names))
    training = {"command": run["command"], "data": str(data), "seed": settings["seed"], "machine": run["machine"],
                "train_seconds": history[-1]["elapsed_s"] if history else None, "epochs_run": len(history),
                "settings": settings, "init_from": run.get("init_from"), "history": history}
    card = model_card(cfg, metrics, training, main, extra, history, policy, decoder)
    write_artifact(artifact_dir, model, pre, policy=policy, decoder=decoder, metrics=metrics,
                   training=training, card=card)
    write_figures(artifact_dir, cfg.name, history, main["confusion"], list(cfg.class_names),
                  f"{kind_label(metrics['data_kind'])} test split, {main['clips']} clips")
    return {"artifact": str(artifact_dir), "clip_accuracy": metrics["clip_accuracy"], "clips": main["clips"],
            "also": metrics["also"], "decoder": decoder}


CONFUSION_PNG = "confusion.png"
LEARNING_CURVE_PNG = "learning_curve.png"


def kind_label(kind: str) -> str:
    return "synthetic" if kind == "synthetic" else kind


def write_figures(folder: str | Path, name: str, history: list[dict], confusion, class_names: list[str],
                  evaluated_on: str) -> None:
    """An artifact's figures: the confusion matrix of its held-out clips and its learning curve."""
    from evapp.plots import confusion_matrix_png, learning_curve_png

    folder = Path(folder)
    if confusion is not None:
        confusion_matrix_png(confusion, class_names, folder / CONFUSION_PNG, title=f"{name}: {evaluated_on}",
                             footer="rows: labelled class, columns: class answered")
    if history:
        learning_curve_png(history, folder / LEARNING_CURVE_PNG, title=f"{name}: learning curve")


def figures_markdown(confusion: bool = True, history: bool = True) -> list[str]:
    lines = []
    if confusion:
        lines += ["", f"![confusion matrix of the held-out clips]({CONFUSION_PNG})"]
    if history:
        lines += ["", f"![learning curve: train loss and validation accuracy per epoch]({LEARNING_CURVE_PNG})"]
    return lines


def position_summary(by_position: dict) -> str:
    """'onset 88.5 % of 165, steady 98.5 % of 2593, offset 89.1 % of 165': accuracy and windows per position
    of a window in its gesture (``evapp.train.data.window_position``)."""
    parts = []
    for name, result in by_position.items():
        accuracy = "n/a" if result["accuracy"] is None else f"{100 * result['accuracy']:.1f} %"
        parts.append(f"{name} {accuracy} of {result['clips']}")
    return ", ".join(parts)


def model_card(cfg, metrics: dict, training: dict, main: dict, extra: dict, history: list, policy: str,
               decoder: dict) -> str:
    kind = metrics["data_kind"]
    lines = [
        f"# {cfg.name}: model card",
        "",
        f"Architecture `{cfg.arch}` (see `evapp/nets/{cfg.arch}.py`), T = {cfg.T}, input 2x{cfg.input_size[0]}x"
        f"{cfg.input_size[1]}, N = {cfg.events_per_frame} events per frame (fixed-count frames made by the live "
        f"binner), {cfg.num_classes} classes. Default policy: `{policy}`. A sensor with more pixels per input "
        "pixel than the training sensor is thinned to the training density while binning.",
        f"Decoder (`evapp/decoder.py`): {decoder['smoothing']} answers averaged, confidence threshold "
        f"{decoder['threshold']}, a new label leads {decoder['hold']} answer(s) before it shows, idle below "
        f"{decoder['idle_below_fps']} frames/s (calibrated on the training split's pauses), scaled down on a "
        f"stream whose motion floor lies below the training streams' {decoder['idle_floor_fps']} frames/s.",
        "",
        f"**Trained on {kind} data** (`{training['data']}`)"
        + (": synthetic gesture streams from `evapp simulate`, not DVS128 Gesture. These numbers say nothing "
           "about accuracy on real recordings." if kind == "synthetic" else "."),
        "",
        "## Training",
        "",
        f"- command: `{training['command']}`",
        f"- seed {training['seed']}, {training['epochs_run']} epochs, {training['train_seconds']} s on "
        f"{training['machine']}",
    ]
    earlier = training.get("init_from")
    while earlier:  # fine-tuned: every run that went into the weights, newest first
        by = (f", trained by `{earlier['command']}` ({earlier['epochs']} epochs, {earlier['train_seconds']} s)"
              if "command" in earlier else "")
        lines.append(f"- started from `{earlier['path']}`{by}")
        earlier = earlier.get("init_from")
    lines += [
        "",
        "## Results (held-out test split, clip accuracy over every non-overlapping T-frame window inside a gesture)",
        "",
        f"- {kind} test split: **{100 * main['clip_accuracy']:.2f} %** of {main['clips']} clips "
        f"({main['trials']} trials)",
    ]
    lines.append("- by position in the gesture: " + position_summary(main["accuracy_by_position"]))
    for name, res in extra.items():
        lines.append(f"- `{name}`: {100 * res['clip_accuracy']:.2f} % of {res['clips']} clips ({res['trials']} trials)")
    lines += ["", "| class | accuracy |", "|---|---|"]
    lines += [f"| {n} | {100 * a:.1f} % |" for n, a in zip(cfg.class_names, main["per_class_accuracy"], strict=True)]
    lines += figures_markdown(confusion=True, history=False)
    lines += ["", "## Learning curve"] + figures_markdown(confusion=False, history=bool(history))
    lines += ["", "| epoch | train loss | test clip accuracy | elapsed s |", "|---|---|---|---|"]
    for h in history:
        acc = h.get("test_clip_accuracy")
        lines.append(f"| {h['epoch']} | {h['train_loss']:.4f} | {'' if acc is None else f'{100 * acc:.2f} %'} | "
                     f"{h['elapsed_s']} |")
    return "\n".join(lines) + "\n"
