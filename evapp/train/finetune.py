"""``evapp finetune``: adapt an artifact to the takes of one or more ``evapp collect`` folders, on the CPU.

- Classes: the union of the folders' class lists, in order. A class the base knows keeps its classifier row; a new
  name gets a new row (the layer's own initialisation); a base class no folder lists is dropped.
- Data: every finished take (``session.json``), framed exactly as live with the base's frame contract. The last take
  of each class (by take number, over all folders) is held out: it validates each epoch and picks the weights.
- What is trained (``head``: the classifier; ``last``: the last block and the classifier; ``deep``: all but the
  first two convolutions; ``all``), the precision of a step and the learning rate have defaults measured on the
  README's newcomer scenario; the epochs are as many as fit the time budget, from a timed step. A frozen layer keeps
  its normalisation statistics too (``--statistics keep``: every layer does).
- The decoder's idle threshold and motion floor are recalibrated on the user's own pauses.
- The result is a full artifact: config, weights, a model card with the lineage, the held-out metrics and a
  confusion PNG.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path

import torch

from evapp.errors import InputError
from evapp.nets.base import classifier, classifier_keys
from evapp.train.data import FramedTrial, Trial, evaluation_windows, frame_trials
from evapp.train.distill import Teacher
from evapp.train.settings import PRECISIONS, STATISTICS, TRAINABLE, FinetuneSettings

log = logging.getLogger(__name__)


@dataclass
class Collection:
    """The takes of the data folders: class list, (trial, take number, class name) and per-folder facts."""

    class_names: tuple[str, ...]
    takes: list[tuple[Trial, int, str]]
    folders: list[dict]


def read_collections(folders) -> Collection:
    from evapp.collect.session import SessionRecord

    names: list[str] = []
    takes: list[tuple[Trial, int, str]] = []
    facts = []
    for i, folder in enumerate(folders):
        folder = Path(folder)
        if not (folder / "session.json").is_file():
            raise InputError(f"{folder} is not an 'evapp collect' folder (no session.json).")
        record = SessionRecord.load(folder)
        if not record.takes:
            raise InputError(f"{folder} holds no finished take.")
        for name in record.plan.classes:
            if name not in names:
                names.append(name)
        for take in record.takes:
            path = folder / take["file"]
            if not path.is_file():
                raise InputError(f"{folder}/session.json lists {take['file']}, which is missing.")
            takes.append((Trial(path, "train"), i * 100_000 + take["take"], take["class_name"]))
        facts.append({"folder": str(folder), "takes": len(record.takes), "camera": record.camera,
                      "geometry": record.geometry,
                      "gesture_s": round(sum(t["duration_s"] for t in record.takes), 1)})
    return Collection(tuple(names), takes, facts)


def held_out_split(collection: Collection) -> tuple[list[Trial], list[Trial]]:
    """(training takes, held-out takes): the last take of each class is held out when the class has two or more."""
    last: dict[str, tuple[int, Trial]] = {}
    counts: dict[str, int] = {}
    for trial, number, name in collection.takes:
        counts[name] = counts.get(name, 0) + 1
        if name not in last or number > last[name][0]:
            last[name] = (number, trial)
    held = {id(t) for name, (_, t) in last.items() if counts[name] >= 2}
    train = [t for t, _, _ in collection.takes if id(t) not in held]
    test = [t for t, _, _ in collection.takes if id(t) in held]
    return train, test


def rehearsal_trials(root: str, count: int | None, spec, T: int, names: tuple[str, ...]) -> list[FramedTrial]:
    """``count`` (None: all) evenly spaced trials of the train split of the dataset at ``root``, framed as the user's
    takes and labelled by ``names`` (a class the fine-tuned model does not have is left unlabelled)."""
    import numpy as np

    from evapp.train.data import find_trials

    trials = find_trials(root, "train")
    picks = np.unique(np.linspace(0, len(trials) - 1, min(count or len(trials), len(trials))).round().astype(int))
    started = time.perf_counter()
    framed = frame_trials([trials[i] for i in picks], spec, T, class_names=names, other_classes="unlabelled")
    log.info("framed %d rehearsal trials of %s in %.1f s", len(framed), root, time.perf_counter() - started)
    if not any(ft.segments() for ft in framed):
        raise InputError(f"--rehearse {root}: its train split labels none of the classes fine-tuned "
                         f"({', '.join(names[:3])}, ...).")
    return framed


def adapted_model(base_model, class_names: tuple[str, ...]):
    """A copy of ``base_model`` answering ``class_names``: every weight the base has, classifier rows by name."""
    from evapp.nets import create_model

    cfg = dataclasses.replace(base_model.cfg, num_classes=len(class_names), class_names=tuple(class_names))
    torch.manual_seed(0)  # the new rows' initialisation
    model = create_model(cfg)
    base_head, head = classifier(base_model), classifier(model)
    head_names = classifier_keys(model)
    state = {k: v for k, v in base_model.state_dict().items() if k not in head_names}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert set(missing) == head_names and not unexpected, (missing, unexpected)
    base_names = list(base_model.cfg.class_names)
    with torch.no_grad():
        for row, name in enumerate(class_names):
            if name in base_names:
                head.weight[row] = base_head.weight[base_names.index(name)]
                head.bias[row] = base_head.bias[base_names.index(name)]
    return model


def _head_scale(model, settings: FinetuneSettings) -> dict[str, float]:
    """The classifier's parameter names -> ``head_lr_scale``."""
    return dict.fromkeys(classifier_keys(model), settings.head_lr_scale)


def set_trainable(model, trainable: str, statistics: str = "adapt") -> int:
    """Freeze all but what ``trainable`` names; returns the parameters left to train. ``last``: the classifier and
    the parameters registered after the last block's start (the last quarter of the parameter tensors); ``deep``:
    all but the first two convolutions (with their norms), the layers at the input's full and half resolution,
    which hold most of a step's backward cost and the least person-specific features."""
    if trainable not in TRAINABLE:
        raise InputError(f"--train {trainable!r}: choose one of {', '.join(TRAINABLE)}.")
    if statistics not in STATISTICS:
        raise InputError(f"--statistics {statistics!r}: choose one of {', '.join(STATISTICS)}.")
    params = list(model.named_parameters())
    head = classifier_keys(model)
    keep_from = {"all": 0, "deep": _third_convolution(model), "last": int(len(params) * 0.75),
                 "head": len(params)}[trainable]
    for i, (name, p) in enumerate(params):
        p.requires_grad_(i >= keep_from or name in head)
    keep_frozen_statistics(model, everywhere=statistics == "keep")
    return sum(p.numel() for _, p in params if p.requires_grad)


def keep_frozen_statistics(model, everywhere: bool = False) -> None:
    """Normalisation layers whose weights are frozen (or all, ``everywhere``) stay in eval mode while training:
    in training mode a batch norm normalises by the batch and pulls its running statistics toward the batches
    seen, so a frozen layer would still change, and the base's own data would meet statistics of the user's."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and (
                everywhere or not any(p.requires_grad for p in module.parameters())):
            module.train = types.MethodType(_stay_in_eval, module)
            module.eval()


def _stay_in_eval(module, mode: bool = True):
    """``Module.train`` of a layer whose statistics are kept: it stays in eval mode."""
    module.training = False
    return module


def _third_convolution(model) -> int:
    """The index, among the parameters, of the third convolution's weight (registration order is data order)."""
    convs = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    names = [name for name, _ in model.named_parameters()]
    return names.index(f"{convs[2]}.weight") if len(convs) > 2 else 0


def training_precision(precision: str, device: str) -> str:
    """``auto``: bfloat16 on a CPU that multiplies it natively (AVX512-BF16 or AMX), where a step takes about
    half the time of float32 (README, Fine-tuning); float32 elsewhere."""
    if precision not in PRECISIONS:
        raise InputError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}.")
    if precision != "auto":
        return precision
    native = any(getattr(torch.cpu, probe, lambda: False)()  # private probes: absent in another torch, no bf16
                 for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return "bf16" if device == "cpu" and native else "fp32"


def finetune(settings: FinetuneSettings, progress: bool = True) -> dict:
    """Fine-tune ``settings.base`` on the data folders and write the artifact to ``settings.out``."""
    from safetensors.torch import load_file

    from evapp.decoder import DecoderSettings
    from evapp.engine.artifact import Preprocessing, write_artifact
    from evapp.engine.loading import load
    from evapp.machine import describe_machine
    from evapp.train.interpolate import interpolate_if_harmless
    from evapp.train.loop import Prepared, evaluate_clips, train, training_layout
    from evapp.train.package import idle_rate_threshold, motion_floor, write_figures
    from evapp.train.run_folder import command_line
    from evapp.train.settings import TrainSettings

    started = time.perf_counter()
    base = load(settings.base)
    if base.artifact is None:
        raise InputError(f"{settings.base} is not a trained artifact; fine-tune one of 'evapp models'.")
    if settings.threads:
        torch.set_num_threads(settings.threads)
    collection = read_collections(settings.data)
    names = collection.class_names
    train_trials, test_trials = held_out_split(collection)
    pre = base.artifact.preprocessing
    spec, T = dataclasses.replace(pre.frames, view=settings.view), pre.T
    framed = frame_trials(train_trials + test_trials, spec, T, class_names=names)
    framed_train, framed_test = framed[: len(train_trials)], framed[len(train_trials):]
    _check_enough(framed_train, T, spec)
    if settings.distill > 0 and not settings.rehearse:
        raise InputError("--distill teaches the base's answers on the rehearsal clips: give --rehearse DATASET too.")
    rehearsal = []
    if settings.rehearse:  # before the model is built: a wrong folder fails fast
        rehearsal = rehearsal_trials(settings.rehearse, settings.rehearse_trials, spec, T, names)
    model = adapted_model(base.model, names)
    trained_params = set_trainable(model, settings.trainable, settings.statistics)
    precision = training_precision(settings.precision, settings.device)
    out = Path(settings.out)
    run_dir = out / "run"
    train_settings = TrainSettings(model=model.cfg.name, data=",".join(settings.data), out=str(run_dir),
                                   epochs=settings.epochs or 1, batch_size=settings.batch_size, lr=settings.lr,
                                   warmup_epochs=0.5, windows_per_gesture=settings.windows_per_gesture,
                                   mixup=False, seed=settings.seed, device=settings.device,
                                   eval_limit=settings.eval_limit, lr_scales=_head_scale(model, settings),
                                   init=str(base.artifact.folder), rehearse_share=settings.rehearse_share,
                                   amp=precision == "bf16", flip=settings.flip, average_decay=settings.average)
    prepared = Prepared(framed_train + rehearsal, framed_test, spec, T,
                        rehearsal_from=len(framed_train) if rehearsal else None)
    device = torch.device(settings.device)
    teacher = None
    if rehearsal and settings.distill > 0:  # the base's forward runs beside the step, in the step's layout
        teacher = Teacher.of(training_layout(base.model, device), names, settings.distill)
    budget = None
    if settings.epochs is None:
        training_layout(model, device)  # the step timed is the step run
        budget = epochs_in_budget(model, prepared, train_settings, settings, time.perf_counter() - started, teacher)
        train_settings = dataclasses.replace(train_settings, epochs=budget["epochs"])
        log.info("%d epochs fit in %g minutes (a step takes %.2f s)", budget["epochs"], settings.minutes,
                 budget["step_s"])
    final = train(train_settings, prepared=prepared, progress=progress, model=model, teacher=teacher,
                  replan=budget_replan(budget, settings, started) if budget else None)
    if (run_dir / "best.safetensors").is_file():
        model.load_state_dict(load_file(str(run_dir / "best.safetensors")))
    model.eval()
    def held_out_check(m):  # the one that picked the epoch: same windows, same precision
        with torch.autocast(device.type, enabled=precision == "bf16"):
            return evaluate_clips(m, framed_test, T, device, limit=settings.eval_limit)

    held, interpolation = interpolate_if_harmless(model, base.model, settings.interpolate,
                                                  final.get("best_test_result"),
                                                  held_out_check if framed_test else lambda m: None)
    decoder = DecoderSettings.from_dict({**base.artifact.decoder, "idle_below_fps": idle_rate_threshold(framed_train),
                                         "idle_floor_fps": motion_floor(framed_train)}).to_dict()
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    seconds = round(time.perf_counter() - started, 1)
    if budget:
        budget["epochs"] = len(history)
    lineage = {"base": str(base.artifact.folder), "base_classes": list(base.model.cfg.class_names),
               "data": collection.folders, "command": command_line(sys.argv), "machine": describe_machine(),
               "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "seconds": seconds,
               "trainable": settings.trainable, "parameters_trained": trained_params, "epochs": len(history),
               "statistics": settings.statistics,
               "precision": precision, "budget": budget, "flip": settings.flip, "view": settings.view,
               "average": settings.average, "interpolation": interpolation,
               "lr": settings.lr, "head_lr_scale": settings.head_lr_scale, "base_training": base.artifact.training,
               "rehearsal": {"folder": settings.rehearse, "trials": [t.name for t in rehearsal],
                             "share": settings.rehearse_share, "distill": settings.distill if teacher else 0.0}
               if rehearsal else None}
    metrics = {"data_kind": "user recordings (evapp collect)", "held_out_takes": len(framed_test)}
    if held is not None:
        metrics.update(clip_accuracy=round(held["clip_accuracy"], 4), clips=held["clips"],
                       per_class_accuracy=held["per_class_accuracy"])
    training = {"command": lineage["command"], "finetune": lineage, "epochs_run": len(history),
                "train_seconds": final.get("train_seconds"), "history": history}
    card = finetune_card(out.name, model.cfg, lineage, metrics, history, held is not None, names)
    write_artifact(out, model, Preprocessing(spec, T, names), policy=base.artifact.policy, decoder=decoder,
                   metrics=metrics, training=training, card=card)
    write_figures(out, out.name, history, held["confusion"] if held else None, list(names),
                  f"held-out takes, {held['clips']} clips" if held else "")
    return {"artifact": str(out), "classes": list(names), "train_takes": len(framed_train),
            "held_out_takes": len(framed_test), "held_out_clip_accuracy": metrics.get("clip_accuracy"),
            "trainable": settings.trainable, "parameters_trained": trained_params, "precision": precision,
            "epochs": len(history), "seconds": seconds,
            "rehearsal_trials": len(rehearsal), "interpolation": interpolation,
            "decoder": {k: decoder[k] for k in ("idle_below_fps", "idle_floor_fps")}}


def epochs_in_budget(model, prepared, train_settings, settings: FinetuneSettings, spent_s: float,
                     teacher=None) -> dict:
    """The epochs that fit in ``settings.minutes`` from the start: one training step (forward and backward in the
    step's precision, on a real batch) and one held-out batch are timed, the weights and normalisation statistics
    left as they were; the time already spent framing counts."""
    import numpy as np

    from evapp.train.loop import _epoch_windows, _steps_per_epoch, batch_clips

    T, B = prepared.T, train_settings.batch_size
    windows = _epoch_windows(train_settings, prepared, T, 0)
    steps = _steps_per_epoch(train_settings, prepared, T, 1)
    x, y = batch_clips(prepared.train, windows[:B], T)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    times = []
    for _ in range(3):  # the first steps pay for the allocator's and the kernels' warm-up
        t = time.perf_counter()
        with torch.autocast("cpu", enabled=bool(train_settings.amp)):
            logits = model(x)
            loss = torch.nn.functional.cross_entropy(logits.float(), y)
            if teacher is not None:
                rehearsed = torch.tensor([w.trial >= prepared.rehearsal_from for w in windows[:B]])
                loss = loss + teacher.loss(x, logits, rehearsed)
        loss.backward()
        times.append(time.perf_counter() - t)
    model.zero_grad(set_to_none=True)
    model.load_state_dict(saved)
    held = evaluation_windows(prepared.test, T)[: train_settings.eval_batch_size]
    eval_s = 0.0
    if held:
        model.eval()
        x_held = batch_clips(prepared.test, held, T)[0]
        with torch.no_grad(), torch.autocast("cpu", enabled=bool(train_settings.amp)):
            model(x_held)  # as for the steps, the first pass pays for the warm-up
            t = time.perf_counter()
            model(x_held)
        eval_s = (time.perf_counter() - t) / len(held)  # per held-out window
        model.train()
    step_s = min(times[1:])
    per_epoch = steps * step_s + eval_s * (train_settings.eval_limit or 0)
    card_eval_s = eval_s * (train_settings.eval_limit or 0) * (settings.interpolate < 1)  # the mix's check
    left = _usable_s(settings) - spent_s - sum(times) - card_eval_s
    epochs = int(np.clip(left // max(per_epoch, 1e-6), 1, 500))
    return {"minutes": settings.minutes, "step_s": round(step_s, 3), "steps_per_epoch": steps,
            "epoch_s": round(per_epoch, 1), "epochs": epochs, "planned": epochs,
            "card_eval_s": round(card_eval_s, 1)}


def _usable_s(settings: FinetuneSettings) -> float:
    """The budget's seconds less a margin for writing the artifact and its figures."""
    return settings.minutes * 60 * 0.97


def budget_replan(budget: dict, settings: FinetuneSettings, started: float):
    """``train``'s ``replan`` for the time budget: as many epochs as fit in what is left, at the mean time the
    epochs so far took (a few timed steps misjudge a busy or warming-up machine in either direction)."""

    def replan(done: int, seconds: float) -> int:
        left = started + _usable_s(settings) - budget["card_eval_s"] - time.perf_counter()
        return done + int(max(left, 0.0) // (seconds / done))

    return replan


def _check_enough(trials: list[FramedTrial], T: int, spec) -> None:
    if not evaluation_windows(trials, T):
        raise InputError(f"No take lasts {T} frames of {spec.events_per_frame} events: record longer takes "
                         "(--take-s) or more movement.")


def _budget_text(budget: dict | None) -> str:
    if not budget:
        return ""
    planned = budget.get("planned", budget["epochs"])
    return (f" (as many as fit in {budget['minutes']:g} minutes: a timed step took {budget['step_s']:.2f} s, so an "
            f"epoch of {budget['steps_per_epoch']} steps and its held-out check about {budget['epoch_s']:.0f} s and "
            f"{planned} epochs planned"
            + (", re-planned from the epochs' own time after each" if planned != budget["epochs"] else "") + ")")


def finetune_card(name: str, cfg, lineage: dict, metrics: dict, history: list, has_confusion: bool, names) -> str:
    from evapp.train.package import figures_markdown

    base_names = set(lineage["base_classes"])
    kept = [n for n in names if n in base_names]
    new = [n for n in names if n not in base_names]
    dropped = [n for n in lineage["base_classes"] if n not in names]
    lines = [f"# {name}: model card (fine-tuned)", "",
             f"Fine-tuned from `{lineage['base']}` (architecture `{cfg.name}`, T = {cfg.T}, N = {cfg.events_per_frame})"
             f" on the user's own recordings by `{lineage['command']}`, {lineage['finished']}, {lineage['seconds']} s "
             f"on the {lineage['machine'].removeprefix('machine: ')}.", "",
             f"- classes ({len(names)}): {', '.join(names)}",
             f"- kept from the base: {', '.join(kept) or 'none'}; new: {', '.join(new) or 'none'}; "
             f"dropped: {', '.join(dropped) or 'none'}",
             f"- trained: `{lineage['trainable']}` ({lineage['parameters_trained']:,} parameters), "
             f"{lineage['epochs']} epochs in {lineage['precision']}{_budget_text(lineage['budget'])}, "
             f"{'mirrored clips relabelled by name, ' if lineage['flip'] == 'mirror' else ''}"
             + ("the base's normalisation statistics kept in every layer, "
                if lineage.get("statistics") == "keep" else "")
             + f"learning rate {lineage['lr']} "
             f"(the classifier's x{lineage['head_lr_scale']})"
             + (f"; the moving average of the weights (decay {lineage['average']:g}) validated and kept"
                if lineage.get("average") else "") + _interpolation_text(lineage.get("interpolation")),
             "", "## Data", ""]
    for f in lineage["data"]:
        lines.append(f"- `{f['folder']}`: {f['takes']} takes, {f['gesture_s']} s of gestures, camera "
                     f"`{f['camera']}` {'x'.join(map(str, f['geometry']))}")
    lines.append(f"- the input shows the sensor's `{lineage.get('view', 'centre')}` view "
                 + ("(its centred square)" if lineage.get("view", "centre") == "centre"
                    else "(all of it, letterboxed into a square)"))
    if lineage.get("rehearsal"):
        r = lineage["rehearsal"]
        lines.append(f"- rehearsal (against forgetting the base's classes): {len(r['trials'])} trials of the train "
                     f"split of `{r['folder']}`, {r['share']:g}x the user's windows in every epoch"
                     + (f", taught the base's own answers too (distillation weight {r['distill']:g})"
                        if r.get("distill") else ""))
    lines += ["", "## Held-out takes (the last take of each class)", ""]
    if "clip_accuracy" in metrics:
        lines.append(f"Clip accuracy **{100 * metrics['clip_accuracy']:.1f} %** of {metrics['clips']} clips "
                     f"({metrics['held_out_takes']} takes; evenly spaced windows scored in {lineage['precision']}, "
                     "the check that picked the epoch).")
        lines += ["", "| class | accuracy |", "|---|---|"]
        lines += [f"| {n} | {100 * a:.1f} % |" for n, a in zip(names, metrics["per_class_accuracy"], strict=True)]
        lines += figures_markdown(confusion=has_confusion, history=False)
    else:
        lines.append("No class had two takes: nothing was held out.")
    lines += ["", "## Learning curve"] + figures_markdown(confusion=False, history=bool(history))
    lines += ["", "| epoch | train loss | held-out clip accuracy |", "|---|---|---|"]
    for h in history:
        acc = h.get("test_clip_accuracy")
        lines.append(f"| {h['epoch']} | {h['train_loss']:.4f} | {'' if acc is None else f'{100 * acc:.1f} %'} |")
    return "\n".join(lines) + "\n"


def _interpolation_text(record: dict | None) -> str:
    if not record or record["alpha"] >= 1.0:
        return ""
    tuned, mixed = record.get("held_out_tuned"), record.get("held_out_interpolated")
    scores = (f" (held-out takes {100 * mixed:.1f} % mixed, {100 * tuned:.1f} % tuned)"
              if tuned is not None and mixed is not None else "")
    if record["kept"]:
        return f"; then mixed with the base's weights, {record['alpha']:g} tuned (WiSE-FT){scores}"
    return f"; a mix with the base's weights at {record['alpha']:g} cost the held-out takes too much{scores}: not kept"
