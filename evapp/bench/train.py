"""Training-step benchmark: seconds per fine-tuning step on the CPU (forward and backward of a batch of T-frame
clips, ``evapp finetune``'s trainable set and precision), in PyTorch's stock memory layout and in the channels-last
layout ``evapp.train.loop`` trains in, interleaved step by step so a busy machine slows both alike."""

from __future__ import annotations

import statistics
import time

import torch

from evapp.machine import describe_machine
from evapp.tables import format_rows
from evapp.testing import synthetic_frames

LAYOUTS = ("stock", "channels-last")
DEFAULT_MODELS = ("saformer-2-256", "sglformer-3-256")  # the shipped models


def _model(name: str, trainable: str, layout: str):
    from evapp.engine.loading import load
    from evapp.train.finetune import set_trainable
    from evapp.train.loop import training_layout

    model = load(name).model
    set_trainable(model, trainable)
    model.train()
    return training_layout(model, torch.device("cpu")) if layout == "channels-last" else model


def _step(model, x: torch.Tensor, y: torch.Tensor, bf16: bool) -> float:
    started = time.perf_counter()
    with torch.autocast("cpu", enabled=bf16):
        loss = torch.nn.functional.cross_entropy(model(x).float(), y)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - started


def bench_train(names, batch: int = 16, steps: int = 5, trainable: str = "deep", precision: str = "auto") -> list:
    """One row per model and layout: the median and the fastest of ``steps`` timed steps, after one untimed step
    each (the allocator's and the kernels' warm-up). The clips are ``synthetic_frames`` at the model's N."""
    from evapp.train.finetune import training_precision

    precision = training_precision(precision, "cpu")
    rows = []
    for name in names:
        models = {layout: _model(name, trainable, layout) for layout in LAYOUTS}
        cfg = models["stock"].cfg
        x = synthetic_frames(cfg.T, batch, tuple(cfg.input_size), events=cfg.events_per_frame)
        y = torch.arange(batch) % cfg.num_classes
        times: dict[str, list[float]] = {layout: [] for layout in LAYOUTS}
        for i in range(steps + 1):
            for layout in LAYOUTS:
                seconds = _step(models[layout], x, y, precision == "bf16")
                if i:
                    times[layout].append(seconds)
        stock = statistics.median(times["stock"])
        for layout in LAYOUTS:
            median = statistics.median(times[layout])
            rows.append({"model": name, "train": trainable, "precision": precision, "layout": layout,
                         "batch": batch, "T": cfg.T, "steps": steps, "median_s": round(median, 3),
                         "min_s": round(min(times[layout]), 3), "x_stock": round(stock / median, 2)})
    return rows


def format_train_bench(rows: list[dict]) -> str:
    return describe_machine() + "\n" + format_rows(rows, [
        ("model", "model", ""), ("train", "trained", ""), ("precision", "precision", ""), ("layout", "layout", ""),
        ("batch", "batch", "d"), ("T", "T", "d"), ("median_s", "s/step (median)", ".2f"),
        ("min_s", "fastest", ".2f"), ("x_stock", "x stock", ".2f")])
