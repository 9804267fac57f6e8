"""``evapp models``, ``export``, ``train``, ``package``, ``eval``: the model zoo, its artifacts and training."""

from __future__ import annotations

import json
from pathlib import Path

import click

from evapp.cli.options import FiniteFloat, device_option, json_option, parse_policy, settings_option
from evapp.errors import InputError, as_input_error
from evapp.sinks.jsonl import print_json
from evapp.train.settings import FLIPS, TrainSettings


@click.command(short_help="List the trained models and the zoo's architectures.")
@json_option()
def models(as_json: bool) -> None:
    """List the trained artifacts in models/ and the zoo's architectures: parameters, input, T, N, accuracy."""
    from evapp.engine.loading import catalogue, default_model_name
    from evapp.tables import format_rows

    rows = catalogue()
    if as_json:
        print_json({"models": rows, "default": default_model_name()})
        return
    broken = [r for r in rows if "broken" in r]
    rows = [r for r in rows if "broken" not in r]
    for r in rows:
        r["name"] = r["name"] + (" (default)" if r["default"] else "")
    click.echo(format_rows(rows, [("name", "name", ""), ("arch", "architecture", ""), ("params", "parameters", ",d"),
                                  ("input", "input", ""), ("T", "T", "d"), ("events_per_frame", "events/frame", ",d"),
                                  ("policy", "policy", ""), ("accuracy", "clip accuracy", "")]))
    for r in broken:  # listed, not fatal: one broken folder must not hide the others
        click.echo(f"broken: {r['name']}: {r['broken']}")


@click.command(short_help="Export one time step with explicit state to ONNX.")
@click.argument("model_name", metavar="NAME")
@click.option("--weights", type=click.Path(dir_okay=False), help="Weights (.safetensors; default: the artifact's).")
@click.option("--out", metavar="DIR", help="Folder for model.onnx and onnx.json (default: models/NAME/).")
@click.option("--opset", type=click.Choice(["17", "18"]), default="17", show_default=True,
              help="ONNX opset (both run on ONNX Runtime's CUDA provider and TensorRT >= 8.6).")
def export(model_name, weights, out, opset) -> None:
    """ONNX of one time step with explicit state: (frame, state...) -> (logits, new state..., spike counts)."""

    from evapp.engine.export import export_onnx
    from evapp.engine.loading import load, models_dir

    loaded = load(model_name, weights)
    folder = Path(out) if out else (loaded.artifact.folder if loaded.artifact else models_dir() / loaded.cfg.name)
    onnx_path, meta_path = export_onnx(loaded.model, folder, int(opset), weights=loaded.weights)
    print_json({"model": loaded.cfg.name, "onnx": str(onnx_path), "meta": str(meta_path), "opset": int(opset),
                 "weights": str(loaded.weights) if loaded.weights else None})


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


def _setting(name: str, *decls: str, **kwargs):
    return settings_option(TrainSettings, name, *decls, **kwargs)


@click.command(short_help="Train a zoo model on DVS128 Gesture or a synthetic set.")
@click.argument("model_name", metavar="NAME")
@click.option("--data", required=True, metavar="DIR",
              help="DVS128 Gesture (original or tonic layout) or a set from 'evapp simulate --dataset'.")
@click.option("--out", metavar="DIR", help="Run folder: metrics.jsonl, last.pt, best.safetensors (runs/NAME).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@_setting("epochs", "--epochs", type=click.IntRange(min=1))
@_setting("batch_size", "--batch-size", type=click.IntRange(min=1))
@_setting("lr", "--lr", type=FiniteFloat(min=0, min_open=True),
          help="Peak learning rate (SGLFormer's recipe: 5e-3).")
@_setting("weight_decay", "--weight-decay", type=FiniteFloat(min=0))
@_setting("warmup_epochs", "--warmup-epochs", type=FiniteFloat(min=0))
@_setting("T", "--T", type=click.IntRange(min=1), help="Time steps per clip (default: the model's).")
@_setting("events_per_frame", "--events-per-frame", "-N", type=click.IntRange(min=1),
          help="Events per frame (default: model's).")
@_setting("framing", "--framing", type=click.Choice(["count", "clip"]),
          help="count: fixed N events per frame as live; clip: each gesture split into T equal-count frames.")
@_setting("objective", "--objective", type=click.Choice(["clips", "stream"]),
          help="clips: T frames from reset, one label; stream: long crops, no reset, a label per step.")
@_setting("stream_length", "--stream-length", type=click.IntRange(min=2))
@_setting("windows_per_gesture", "--windows-per-gesture", type=click.IntRange(min=1),
          help="Random T-frame windows drawn from each training gesture per epoch.")
@_setting("flip", "--flip", type=click.Choice(FLIPS),
          help="Horizontal flip: paper keeps labels (official code), mirror swaps left/right classes.")
@_setting("augment", "--augment/--no-augment", help="SNNAugmentWide per clip.")
@_setting("mixup", "--mixup/--no-mixup", help="Mixup (alpha 0.5, p 0.5).")
@_setting("label_smoothing", "--label-smoothing", type=FiniteFloat(0, 1))
@_setting("seed", "--seed", type=int)
@_setting("device", "--device", metavar="auto|cpu|cuda")
@_setting("amp", "--amp/--no-amp", help="Mixed precision (default: on for CUDA).")
@_setting("threads", "--threads", type=click.IntRange(min=1), help="CPU threads for torch.")
@_setting("max_steps_per_epoch", "--max-steps-per-epoch", type=click.IntRange(min=1),
          help="Cap steps per epoch (smoke runs).")
@_setting("eval_limit", "--eval-limit", type=click.IntRange(min=1),
          help="Test windows evaluated per epoch (default: all).")
@_setting("stop_after", "--stop-after", type=click.IntRange(min=1),
          help="Stop after this many epochs of the --epochs schedule; continue later with --resume.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Model config override (repeatable).")
@_setting("init", "--init", metavar="PATH",
          help="Start from these weights (a .safetensors file, a run folder or a model artifact): fine-tuning.")
@click.option("--artifact", "artifact_dir", metavar="DIR",
              help="At the end, evaluate the best weights and write a model artifact here (e.g. models/NAME).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--download", is_flag=True,
              help="Let tonic download DVS128 Gesture into DIR/DVSGesture first (where a network allows it).")
def train(model_name, data, out, resume, sets, artifact_dir, no_progress, download, **settings) -> None:
    """Train a zoo model on DVS128 Gesture or a synthetic set; frames are made by the live binner."""
    from evapp.engine.loading import require_architectures
    from evapp.train import train as run_training
    from evapp.train.package import package_run

    require_architectures([model_name])
    if download:
        from evapp.train.tonic_gesture import download_dvs_gesture

        download_dvs_gesture(data)
    settings = TrainSettings(model=model_name, data=data, out=out or f"runs/{model_name}",
                             model_overrides=_overrides(sets), **settings)
    with as_input_error():
        result = run_training(settings, resume=resume, progress=not no_progress)
    print_json({"type": "train", **{k: v for k, v in result.items() if k not in ("model_config", "best_test_result")}})
    if artifact_dir:
        summary = package_run(settings.out, artifact_dir, data=data)
        print_json({"type": "artifact", **summary})


@click.command(short_help="Turn a training run into a model artifact.")
@click.argument("run_dir", metavar="RUN")
@click.argument("artifact_dir", metavar="DIR")
@click.option("--data", metavar="DIR", help="Dataset to evaluate on (default: the run's).")
@click.option("--policy", default="window", show_default=True, help="Policy recorded as the artifact's default.")
@click.option("--also", multiple=True, metavar="DIR",
              help="Another dataset to report in the card (e.g. the test split rendered at 640x480); repeatable.")
@click.option("--force", is_flag=True, help="Replace an existing artifact in DIR.")
def package(run_dir, artifact_dir, data, policy, also, force) -> None:
    """Evaluate a training run's best weights and write them as a model artifact (config, weights, card)."""

    from evapp.train.package import package_run

    if (Path(artifact_dir) / "config.json").exists() and not force:
        raise InputError(f"{artifact_dir} already holds a model artifact; pass --force to replace it.")
    parse_policy(policy)
    print_json({"type": "artifact", **package_run(run_dir, artifact_dir, data=data, policy=policy, also=list(also))})


@click.command("eval", short_help="Clip accuracy of a model on a dataset split.")
@click.argument("model_name", metavar="NAME")
@click.option("--data", required=True, metavar="DIR|FILE",
              help="A dataset folder (clip accuracy) or a labelled recording (streaming metrics, as eval-stream).")
@click.option("--split", type=click.Choice(["train", "test"]), default="test", show_default=True)
@click.option("--weights", type=click.Path(dir_okay=False), help="Weights (default: the model's artifact).")
@device_option()
@click.option("--confusion", "confusion_path", type=click.Path(dir_okay=False),
              help="Where to save the confusion matrix PNG (default: NAME_SPLIT_confusion.png in $EVAPP_OUTPUT, else "
                   "~/evapp-output); the model's learning curve goes beside it (_learning_curve.png).")
@json_option("Print one JSON object instead of a report.")
@click.pass_context
def eval_cmd(ctx, model_name, data, split, weights, device, confusion_path, as_json) -> None:
    """Clip accuracy of a model on a dataset split (per class, confusion matrix); recordings go to eval-stream."""

    if Path(data).is_file():
        from evapp.cli.stream import eval_stream

        ctx.invoke(eval_stream, file=data, model_name=model_name, weights=weights, device=device,
                   confusion_path=confusion_path, as_json=as_json)
        return
    from evapp.engine.loading import load
    from evapp.engine.torch_engine import model_frame_spec, resolve_device
    from evapp.paths import output_dir
    from evapp.plots import beside, confusion_matrix_png, learning_curve_png
    from evapp.train.data import load_split
    from evapp.train.loop import evaluate_clips
    from evapp.train.package import position_summary

    loaded = load(model_name, weights)
    model, cfg = loaded.model, loaded.cfg
    spec = loaded.artifact.preprocessing.frames if loaded.artifact else model_frame_spec(cfg)
    with as_input_error(RuntimeError):
        dev = resolve_device(device)
    trials = load_split(data, split, spec, cfg.T, class_names=tuple(cfg.class_names))
    result = evaluate_clips(model.to(dev), trials, cfg.T, dev)
    result.update({"model": model_name, "data": str(data), "split": split, "trials": len(trials)})
    png = Path(confusion_path) if confusion_path else output_dir() / f"{Path(model_name).name}_{split}_confusion.png"
    confusion_matrix_png(result["confusion"], list(cfg.class_names), png,
                         title=f"{model_name} on {Path(data).name} ({split})",
                         footer="rows: labelled class, columns: predicted class")
    result["confusion_png"] = str(png)
    history = (loaded.artifact.training or {}).get("history") if loaded.artifact else None
    if history:
        curve = beside(png, "learning_curve")
        learning_curve_png(history, curve, title=f"{model_name}: learning curve")
        result["learning_curve_png"] = str(curve)
    if as_json:
        print_json(result)
        return
    click.echo(f"{model_name} on {data} ({split}, {len(trials)} trials, {result['clips']} clips of T={cfg.T}): "
               f"clip accuracy {100 * result['clip_accuracy']:.2f} %")
    for name, acc in zip(cfg.class_names, result["per_class_accuracy"], strict=True):
        click.echo(f"  {name:28s} {100 * acc:6.2f} %")
    click.echo("by position in the gesture (onset: the first T frames, offset: the last T): "
               + position_summary(result["accuracy_by_position"]))
    click.echo(f"confusion matrix: {png}")
    if "learning_curve_png" in result:
        click.echo(f"learning curve: {result['learning_curve_png']}")


@click.command("import-checkpoint", short_help="Turn an official SGLFormer or SpikingResformer checkpoint into an "
                                             "artifact.")
@click.argument("arch", type=click.Choice(["sglformer", "spikingresformer"]))
@click.argument("checkpoint", metavar="FILE.pth")
@click.option("--out", required=True, metavar="DIR", help="The artifact folder to write (e.g. models/NAME).")
@click.option("--T", "T", type=click.IntRange(min=1),
              help="Time steps per clip (SGLFormer: read off its head; SpikingResformer: default 16, its config's).")
@click.option("--events-per-frame", "-N", type=click.IntRange(min=1),
              help="Events per frame when a stream is framed by count (default: the architecture's).")
@click.option("--force", is_flag=True, help="Replace an existing artifact in DIR.")
def import_checkpoint_cmd(arch, checkpoint, out, T, events_per_frame, force) -> None:
    """Import a checkpoint saved by the official training code (SGLFormer's dvs128-gesture/train.py,
    SpikingResformer's main.py): its tensors renamed by an explicit table, the papers' preprocessing kept."""
    from evapp.train.import_checkpoint import import_checkpoint

    if (Path(out) / "config.json").exists() and not force:
        raise InputError(f"{out} already holds a model artifact; pass --force to replace it.")
    print_json({"type": "artifact", **import_checkpoint(arch, checkpoint, out, T=T, events_per_frame=events_per_frame)})


COMMANDS = (models, export, train, package, eval_cmd, import_checkpoint_cmd)
