"""The training run's settings: one place for every default (``evapp train`` builds its options from them)."""

from __future__ import annotations

from dataclasses import dataclass, field

FLIPS = ("none", "paper", "mirror")  # horizontal flips while training (evapp/train/augment.py RandomFlip)
TRAINABLE = ("head", "last", "deep", "all")  # what `evapp finetune --train` trains
PRECISIONS = ("auto", "fp32", "bf16")  # the arithmetic of a training step on the CPU
STATISTICS = ("adapt", "keep")  # the trained layers' normalisation statistics while fine-tuning


@dataclass
class TrainSettings:
    model: str
    data: str
    out: str
    epochs: int = 20
    batch_size: int = 16
    lr: float = 5e-3
    weight_decay: float = 0.06
    warmup_epochs: float = 1.0
    min_lr: float = 1e-5
    T: int | None = None  # default: the model's
    events_per_frame: int | None = None  # default: the model's
    framing: str = "count"
    objective: str = "clips"  # or "stream"
    stream_length: int = 32
    windows_per_gesture: int = 4
    flip: str = "none"  # FLIPS
    augment: bool = True
    mixup: bool = True
    mixup_until: float = 0.37  # fraction of epochs with mixup (official: 75 of 202)
    label_smoothing: float = 0.1
    seed: int = 0
    device: str = "auto"
    amp: bool | None = None  # default: on for CUDA (float16); on the CPU, True is bfloat16
    max_steps_per_epoch: int | None = None
    stop_after: int | None = None  # stop after this many epochs of the schedule (resume later with --resume)
    eval_batch_size: int = 32
    eval_limit: int | None = None  # windows evaluated per epoch (None: all)
    model_overrides: dict = field(default_factory=dict)
    threads: int | None = None
    init: str | None = None  # weights (.safetensors, or a run or artifact folder) to start from: fine-tuning
    lr_scales: dict = field(default_factory=dict)  # parameter-name prefix -> learning-rate factor
    rehearse_share: float = 0.0  # fine-tuning: rehearsal windows per epoch, as a multiple of the user's windows
    average_decay: float = 0.0  # validate and keep a moving average of the weights (averaging.py); 0: the weights


@dataclass(frozen=True)
class FinetuneSettings:
    """``evapp finetune``'s settings; the defaults are the ones measured on the README's newcomer scenario."""

    base: str
    data: tuple[str, ...]
    out: str
    trainable: str = "deep"
    epochs: int | None = None  # None: as many as fit in ``minutes``, from a measured training step
    minutes: float = 10.0  # the time budget from start to artifact when ``epochs`` is None
    lr: float = 2e-3
    head_lr_scale: float = 10.0  # the classifier's learning rate, as a multiple of ``lr``
    batch_size: int = 16
    windows_per_gesture: int = 4
    eval_limit: int = 120  # held-out windows scored after each epoch (evenly spaced)
    rehearse: str | None = None  # a dataset folder of the base's own kind of data, mixed in against forgetting
    rehearse_trials: int | None = None  # of its train split, evenly spaced (None: all of them)
    rehearse_share: float = 1.0  # rehearsal windows per epoch, as a multiple of the user's
    average: float = 0.98  # the decay of the moving average of the weights validated and kept (0: the weights)
    distill: float = 0.0  # the weight of the base's own answers on the rehearsal clips (0: hard labels only)
    seed: int = 0
    threads: int | None = None
    device: str = "cpu"
    precision: str = "auto"  # bf16 where the CPU multiplies bfloat16 natively (PRECISIONS)
    flip: str = "none"  # or "mirror" (the shipped models' recipe): a mirrored take teaches its mirror class
    interpolate: float = 1.0  # the tuned share of a weight mix with the base (1: the tuned weights alone)
    statistics: str = "adapt"  # or "keep": the trained layers' normalisation statistics stay the base's (STATISTICS)
    view: str = "whole"  # the sensor region the input shows (binning.VIEWS): whole keeps a wide sensor's edges
