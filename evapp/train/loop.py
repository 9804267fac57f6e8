"""``evapp train``: the official recipes (architectures.md 1.4 / 2.4 / 3.3) on frames made as live.

- AdamW (no weight decay on biases, norms and PLIF ``w``), cosine schedule with linear warm-up, per step.
- Augmentation: optional flip (``paper`` or ``mirror``), SNNAugmentWide, mixup with label smoothing, mixup
  switched off for the last part of training as the official code does (from epoch 75 of 202, ~37 %).
- ``clips`` objective: a window of T frames from reset, one label (the training condition of ``window`` and
  ``staggered``). ``stream`` objective: crops of ``stream_length`` frames anywhere in a trial, across gesture
  boundaries, never reset inside a crop, a loss at every labelled step (for the ``persistent`` policy).
- Every random draw of a step comes from a generator seeded by (seed, epoch, step), and a checkpoint holds
  model, optimiser and the position in the schedule, so a resumed run is exactly the uninterrupted one.
- AMP on CUDA; one process, or several under ``torchrun`` (DDP; gloo on the CPU, NCCL on GPUs): each rank
  takes every world-th window of the epoch's shuffled list.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from evapp.binning import FrameSpec
from evapp.errors import InputError
from evapp.train.augment import Mixup, RandomFlip, SNNAugmentWide
from evapp.train.averaging import WeightAverage
from evapp.train.data import (
    WINDOW_POSITIONS,
    FramedTrial,
    Window,
    evaluation_windows,
    load_split,
    sample_windows,
    stream_windows,
    training_windows,
    window_position,
)
from evapp.train.run_folder import Checkpoint, starting_weights, write_run
from evapp.train.settings import TrainSettings

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    train: list[FramedTrial]
    test: list[FramedTrial]
    frames: FrameSpec
    T: int
    rehearsal_from: int | None = None  # train[rehearsal_from:] are rehearsal trials (fine-tuning), sampled apart


def _dist() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _init_distributed(device: torch.device) -> None:
    """Under torchrun (WORLD_SIZE > 1) join the process group: NCCL for GPUs, gloo for the CPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")


def _generator(*key: int) -> torch.Generator:
    seed = np.random.SeedSequence([k & 0xFFFFFFFF for k in key]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(seed))


def _param_groups(model, weight_decay: float, lr_scales: dict[str, float] | None = None) -> list[dict]:
    """timm's rule: no weight decay on 1-d parameters (biases, norms) and on the model's named exceptions.
    ``lr_scales``: parameter-name prefix -> factor on the learning rate (a fine-tuned model's new classifier)."""
    skip = model.no_weight_decay()
    groups: dict[tuple[bool, float], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        scale = next((f for prefix, f in (lr_scales or {}).items() if name.startswith(prefix)), 1.0)
        groups.setdefault((not (p.ndim <= 1 or name in skip), scale), []).append(p)
    return [{"params": params, "weight_decay": weight_decay if decay else 0.0, "lr_scale": scale}
            for (decay, scale), params in sorted(groups.items(), key=lambda kv: (not kv[0][0], kv[0][1]))]


@dataclass
class CosineSchedule:
    """Linear warm-up from ``minimum`` to ``base`` over ``warmup`` steps, then cosine down to ``minimum`` at
    ``total``. ``retarget`` moves the end (fine-tuning's re-planned budget) without a jump: the cosine's phase
    reached so far is kept and what is left of it is spread over the steps left, so the rate never rises again."""

    total: int
    warmup: int
    base: float
    minimum: float
    _from_step: int = 0  # where the phase below was last re-anchored
    _from_phase: float = 0.0

    def phase(self, step: int) -> float:
        """0 at the end of the warm-up, 1 at ``total``."""
        start = max(self._from_step, self.warmup)
        return min(1.0, self._from_phase + (1 - self._from_phase) * (step - start) / max(1, self.total - start))

    def lr(self, step: int) -> float:
        if step < self.warmup:
            return self.minimum + (self.base - self.minimum) * step / max(1, self.warmup)
        return self.minimum + 0.5 * (self.base - self.minimum) * (1 + math.cos(math.pi * self.phase(step)))

    def retarget(self, step: int, total: int) -> None:
        if step >= self.warmup:
            self._from_step, self._from_phase = step, self.phase(step)
        self.total = total


def batch_clips(trials: list[FramedTrial], windows: list[Window], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows -> ``x [length, B, 2, H, W]`` float32 and labels: ``[B]`` (clips) or ``[length, B]`` (stream)."""
    shape = trials[windows[0].trial].frame_shape
    x = np.empty((len(windows), length, *shape), np.float32)
    per_step = windows[0].label < 0
    y = np.empty((len(windows), length) if per_step else len(windows), np.int64)
    for i, w in enumerate(windows):
        trials[w.trial].dense(w.start, w.start + length, out=x[i])
        y[i] = trials[w.trial].frame_labels[w.start : w.start + length] if per_step else w.label
    xt = torch.from_numpy(x).transpose(0, 1)
    yt = torch.from_numpy(y)
    return xt, (yt.transpose(0, 1) if per_step else yt)


def prepare_data(settings: TrainSettings, cfg) -> Prepared:
    spec = FrameSpec(tuple(cfg.input_size), cfg.events_per_frame, settings.framing)
    started = time.perf_counter()
    names = tuple(cfg.class_names)
    train = load_split(settings.data, "train", spec, cfg.T, class_names=names)
    test = load_split(settings.data, "test", spec, cfg.T, class_names=names)
    frames = sum(len(t) for t in train + test)
    log.info("framed %d train + %d test trials into %d frames of %d events in %.1f s", len(train), len(test),
             frames, spec.events_per_frame, time.perf_counter() - started)
    if not evaluation_windows(train, cfg.T):
        raise InputError(f"No gesture in {settings.data} lasts {cfg.T} frames of {spec.events_per_frame} "
                         "events; use a smaller -N or --T.")
    return Prepared(train, test, spec, cfg.T)


@torch.no_grad()
def evaluate_clips(model, trials: list[FramedTrial], T: int, device: torch.device, batch_size: int = 32,
                   limit: int | None = None) -> dict:
    """Clip accuracy over every non-overlapping T-frame window inside a gesture, per class, by position in the
    gesture (``window_position``) and confusion.

    ``limit`` evaluates an evenly spaced subset of at most that many windows (a cheap per-epoch estimate)."""
    windows = evaluation_windows(trials, T)
    if limit is not None and len(windows) > limit:
        windows = [windows[i] for i in np.linspace(0, len(windows) - 1, limit).round().astype(int)]
    k = model.num_classes
    confusion = np.zeros((k, k), np.int64)
    positions = np.array([WINDOW_POSITIONS.index(window_position(trials[w.trial], w, T)) for w in windows], np.int64)
    hits = np.zeros(len(windows), bool)
    loss_sum = 0.0
    was_training = model.training
    model.eval()
    for i in range(0, len(windows), batch_size):
        chunk = windows[i : i + batch_size]
        x, y = batch_clips(trials, chunk, T)
        logits = model(x.to(device)).float().cpu()
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        predicted = logits.argmax(1).numpy()
        np.add.at(confusion, (y.numpy(), predicted), 1)
        hits[i : i + batch_size] = predicted == y.numpy()
    model.train(was_training)
    n = int(confusion.sum())
    per_class = confusion.diagonal() / np.maximum(confusion.sum(1), 1)
    totals = np.bincount(positions, minlength=len(WINDOW_POSITIONS))
    rights = np.bincount(positions[hits], minlength=len(WINDOW_POSITIONS))
    return {"clips": n, "clip_accuracy": float(confusion.trace() / max(n, 1)), "loss": loss_sum / max(n, 1),
            "per_class_accuracy": [round(float(a), 4) for a in per_class], "confusion": confusion.tolist(),
            "accuracy_by_position": {
                name: {"clips": int(total), "correct": int(right),
                       "accuracy": round(float(right / total), 4) if total else None}
                for name, total, right in zip(WINDOW_POSITIONS, totals, rights, strict=True)}}


def _stream_loss(model, x: torch.Tensor, y: torch.Tensor, smoothing: float) -> torch.Tensor:
    """A crop from reset, never reset inside; CE at every step that has a gesture label, on the answer the
    model gives over its last T frames (``sliding_logits``)."""
    model.reset()
    logits = model.sliding_logits(x)
    mask = y >= 0
    if not mask.any():  # a crop that lies wholly in pauses: a zero loss that still reaches every parameter
        return logits.sum() * 0.0
    return F.cross_entropy(logits[mask].float(), y[mask], label_smoothing=smoothing)


def train(settings: TrainSettings, resume: bool = False, prepared: Prepared | None = None, progress=True,
          model=None, teacher=None, replan=None) -> dict:
    """Train; returns the final metrics. Writes metrics.jsonl, last.pt and best.safetensors to ``settings.out``.

    ``model``: an initialised model to train instead of building ``settings.model`` (fine-tuning; its parameters
    with ``requires_grad`` off stay as they are). ``teacher``: a ``distill.Teacher`` whose answers the rehearsal
    clips are also taught (fine-tuning). ``replan``: ``(epochs done, seconds so far) -> epochs in all``, asked after
    each epoch but the last planned (fine-tuning's time budget, from the epochs' measured time); the rest of the
    schedule stretches or shrinks to it (``CosineSchedule.retarget``)."""
    from safetensors.torch import save_file

    from evapp.engine.loading import load_weights_into
    from evapp.engine.torch_engine import resolve_device
    from evapp.nets import create_model

    device = resolve_device(settings.device)
    _init_distributed(device)
    rank, world = _dist()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    start = starting_weights(settings.init) if settings.init else None
    overrides = {**(start.overrides if start else {}), **settings.model_overrides}  # fine-tuning keeps T, N, ...
    if settings.T:
        overrides["T"] = settings.T
    if settings.events_per_frame:
        overrides["events_per_frame"] = settings.events_per_frame
    torch.manual_seed(settings.seed)  # the initial weights
    given = model is not None
    model = model if given else create_model(settings.model, **overrides)
    if start is not None and not resume and not given:
        load_weights_into(model, start.path, settings.model)
        log.info("starting from the weights in %s", settings.init)
    model = training_layout(model.to(device), device)
    cfg = model.cfg
    prepared = prepared or prepare_data(settings, cfg)
    T = cfg.T
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = Checkpoint(out)
    amp = device.type == "cuda" if settings.amp is None else settings.amp
    scaler = torch.amp.GradScaler("cuda", enabled=amp and device.type == "cuda")  # bfloat16 needs no scaling
    optimizer = torch.optim.AdamW(_param_groups(model, settings.weight_decay, settings.lr_scales), lr=settings.lr,
                                  eps=1e-8)
    average = WeightAverage(model, settings.average_decay) if settings.average_decay else None
    start_epoch, step, best, best_result = 0, 0, -1.0, None
    if resume:
        state = ckpt.load()
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, step, best = state["epoch"] + 1, state["step"], state["best"]
        if average is not None and state.get("average"):
            average.load_state_dict(state["average"])
        log.info("resumed from %s at epoch %d", ckpt.path, start_epoch)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                        else None)
    flip = RandomFlip(settings.flip, cfg.class_names) if settings.flip != "none" else None
    wide = SNNAugmentWide() if settings.augment else None
    mixup = Mixup(0.5, 0.5, settings.label_smoothing) if settings.mixup else None
    mixup_epochs = math.ceil(settings.mixup_until * settings.epochs)
    steps_per_epoch = _steps_per_epoch(settings, prepared, T, world)
    epochs = settings.epochs
    schedule = CosineSchedule(steps_per_epoch * epochs, int(settings.warmup_epochs * steps_per_epoch), settings.lr,
                              settings.min_lr)
    metrics_path = out / "metrics.jsonl"
    if rank == 0 and not resume:
        metrics_path.unlink(missing_ok=True)
        density = prepared.frames.mapping(prepared.train[0].geometry).pixels_per_input_px
        write_run(out, settings, overrides, density, device, world, start.lineage if start else None)
    final: dict = {}
    started = time.perf_counter()
    epoch = start_epoch
    while epoch < (epochs if settings.stop_after is None else min(epochs, settings.stop_after)):
        windows = _epoch_windows(settings, prepared, T, epoch)
        mine = windows[rank::world][: steps_per_epoch * settings.batch_size]
        net.train()
        last = final.get("test_clip_accuracy")
        held_out = "" if last is None else f", test {100 * last:.1f} %"
        bar = _progress(steps_per_epoch, f"epoch {epoch + 1}/{epochs}{held_out}", progress and rank == 0)
        seen, loss_sum, correct = 0, 0.0, 0
        for i in range(steps_per_epoch):
            batch = mine[i * settings.batch_size : (i + 1) * settings.batch_size]
            if not batch:
                break
            gen = _generator(settings.seed, epoch, i, rank)
            length = settings.stream_length if settings.objective == "stream" else T
            x, y = batch_clips(prepared.train, batch, length)
            xb = x.transpose(0, 1)  # augment per clip: [B, T, 2, H, W]
            if flip is not None:
                if settings.objective == "stream":  # per-step labels [L, B]: the flip wants the batch first
                    xb, y_batch_first = flip(xb, y.T, gen)
                    y = y_batch_first.T
                else:
                    xb, y = flip(xb, y, gen)
            if wide is not None:
                xb = wide(xb, gen)
            for group in optimizer.param_groups:
                group["lr"] = group["lr_scale"] * schedule.lr(step)
            with torch.autocast(device.type, enabled=amp):
                if settings.objective == "stream":
                    loss = _stream_loss(net.module if world > 1 else net, xb.transpose(0, 1).to(device),
                                        y.to(device), settings.label_smoothing)
                    logits = None
                else:
                    use_mixup = mixup is not None and epoch < mixup_epochs
                    if use_mixup:
                        xb, target = mixup(xb, y, cfg.num_classes, gen)
                    logits = net(xb.transpose(0, 1).to(device))
                    if use_mixup:
                        loss = torch.sum(-target.to(device) * F.log_softmax(logits.float(), -1), -1).mean()
                    else:
                        loss = F.cross_entropy(logits.float(), y.to(device), label_smoothing=settings.label_smoothing)
                    if teacher is not None:  # fine-tuning: the base's own answers on its own (rehearsal) clips
                        rehearsed = torch.tensor([w.trial >= (prepared.rehearsal_from or len(prepared.train))
                                                  for w in batch])
                        loss = loss + teacher.loss(xb.transpose(0, 1).to(device), logits, rehearsed.to(device))
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if average is not None:
                average.update(model)
            step += 1
            seen += len(batch)
            loss_sum += float(loss.detach()) * len(batch)
            if logits is not None:
                correct += int((logits.argmax(1).cpu() == y).sum())
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}")
        if bar is not None:
            bar.close()
        record = {"epoch": epoch + 1, "step": step, "lr": optimizer.param_groups[0]["lr"],
                  "train_loss": loss_sum / max(seen, 1), "train_accuracy": correct / max(seen, 1) if correct else None,
                  "elapsed_s": round(time.perf_counter() - started, 1)}
        if rank == 0:
            kept = average.model if average is not None else model  # what is validated is what is kept
            with torch.autocast(device.type, enabled=amp):  # the steps' precision: a check to pick weights by
                result = evaluate_clips(kept, prepared.test, T, device, settings.eval_batch_size,
                                        settings.eval_limit) if prepared.test else {}
            record.update({f"test_{k}": v for k, v in result.items() if k in ("clip_accuracy", "loss", "clips")})
            record["test_per_class_accuracy"] = result.get("per_class_accuracy")
            if result and result["clip_accuracy"] > best:
                best, best_result = result["clip_accuracy"], result
                save_file({k: v.detach().cpu().contiguous() for k, v in kept.state_dict().items()},
                          str(out / "best.safetensors"))
            with open(metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            ckpt.save(model, optimizer, scaler, epoch, step, best, settings, average)
            log.info("epoch %d: train loss %.4f, test clip accuracy %s", epoch + 1, record["train_loss"],
                     record.get("test_clip_accuracy"))
            final = {**record, "best_test_clip_accuracy": best, "best_test_result": best_result}
        if world > 1:
            torch.distributed.barrier()
        epoch += 1
        if (replan is not None and epoch < epochs  # once the schedule has ended, more epochs would not learn
                and (planned := max(epoch, replan(epoch, time.perf_counter() - started))) != epochs):
            log.info("re-planned: %d epochs in all (from %d), after %d", planned, epochs, epoch)
            epochs = planned
            schedule.retarget(step, steps_per_epoch * planned)
    final.setdefault("best_test_clip_accuracy", best)
    final["model_config"] = cfg.to_dict()
    final["framing"] = {**prepared.frames.to_dict(), "T": prepared.T}
    final["train_seconds"] = round(time.perf_counter() - started, 1)
    model.to(memory_format=torch.contiguous_format)
    return final


def training_layout(model, device: torch.device):
    """A training step on the CPU runs in channels-last layout: oneDNN's convolutions, their backward and the
    pooling are faster in it (a ``sglformer-3-256`` step a quarter faster: README, Fine-tuning); the convolutions'
    weights set the layout of everything after them. Elsewhere the stock layout."""
    return model.to(memory_format=torch.channels_last) if device.type == "cpu" else model


def _epoch_windows(settings: TrainSettings, prepared: Prepared, T: int, epoch: int) -> list[Window]:
    rng = np.random.default_rng([settings.seed, 7, epoch])
    if settings.objective == "stream":
        n = settings.windows_per_gesture * sum(len(t.segments()) for t in prepared.train)
        windows = stream_windows(prepared.train, settings.stream_length, n, rng)
    else:
        own = prepared.train[: prepared.rehearsal_from]
        windows = training_windows(own, T, settings.windows_per_gesture, rng)
        if prepared.rehearsal_from is not None:  # fine-tuning: the base's own data, a share of the user's windows
            windows += sample_windows(prepared.train, T, round(settings.rehearse_share * len(windows)), rng,
                                      first=prepared.rehearsal_from)
    return [windows[i] for i in rng.permutation(len(windows))]


def _steps_per_epoch(settings: TrainSettings, prepared: Prepared, T: int, world: int) -> int:
    n = len(_epoch_windows(settings, prepared, T, 0)) // world
    steps = max(1, n // settings.batch_size)  # drop_last, as the official loaders
    return min(steps, settings.max_steps_per_epoch) if settings.max_steps_per_epoch else steps


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", leave=False, dynamic_ncols=True)

