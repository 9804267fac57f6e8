"""What a training run's folder holds besides the weights: ``last.pt`` (to resume exactly), ``run.json`` (what
``evapp package`` needs to rebuild the model and write its card), and where ``--init``'s weights came from."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from evapp.errors import InputError
from evapp.machine import describe_device
from evapp.train.averaging import WeightAverage
from evapp.train.settings import TrainSettings


class Checkpoint:
    """``last.pt`` in the run folder: weights, optimiser, scaler, epoch, best metric, settings."""

    def __init__(self, folder: Path):
        self.path = folder / "last.pt"

    def save(self, model, optimizer, scaler, epoch: int, step: int, best: float, settings: TrainSettings,
             average: WeightAverage | None = None) -> None:
        tmp = self.path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(), "epoch": epoch, "step": step, "best": best,
                    "settings": asdict(settings), "average": average.state_dict() if average else None}, tmp)
        os.replace(tmp, self.path)  # never a half-written checkpoint

    def load(self) -> dict:
        try:
            return torch.load(self.path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise InputError(f"Cannot resume: {self.path} does not exist.") from None


@dataclass
class StartingWeights:
    """What ``--init`` names: the weights file, the model config they were trained with (as overrides of the
    zoo's defaults) and where they came from (for the model card)."""

    path: Path
    overrides: dict
    lineage: dict


def starting_weights(init: str) -> StartingWeights:
    """``--init`` takes a weights file, a run folder (its best.safetensors) or an artifact (weights.safetensors).
    The folder holding the weights says how they were made: a run's run.json or an artifact's config.json (model
    config, command, epochs and the runs before). A file anywhere else carries neither."""
    path = Path(init)
    if path.is_dir():
        found = [path / name for name in ("best.safetensors", "weights.safetensors") if (path / name).is_file()]
        if not found:
            raise InputError(f"{path} holds neither best.safetensors (a run) nor weights.safetensors (an artifact).")
        path = found[0]
    folder = path.parent
    overrides: dict = {}
    lineage: dict = {"path": str(init)}
    if (folder / "run.json").is_file():
        run = json.loads((folder / "run.json").read_text())
        overrides = dict(run.get("model_overrides", {}))
        metrics = folder / "metrics.jsonl"
        history = metrics.read_text().splitlines() if metrics.is_file() else []
        lineage.update(command=run.get("command", "?"), epochs=len(history),
                       train_seconds=json.loads(history[-1]).get("elapsed_s") if history else None,
                       init_from=run.get("init_from"))
    elif (folder / "config.json").is_file():
        config = json.loads((folder / "config.json").read_text())
        overrides = {k: v for k, v in config.get("model", {}).items() if k not in ("name", "arch")}
        training = config.get("training") or {}
        if "command" in training:  # kept here too: re-packaging into the same folder replaces that artifact
            lineage.update(command=training["command"], epochs=training.get("epochs_run"),
                           train_seconds=training.get("train_seconds"), init_from=training.get("init_from"))
    return StartingWeights(path, overrides, lineage)


def command_line(argv: list[str]) -> str:
    """The command as a user types it: ``evapp ...`` for the console script, ``python -m evapp`` and ``torchrun
    -m evapp`` (whose argv[0] is the package's ``__main__.py``); anything else verbatim."""
    import shlex

    prog = Path(argv[0])
    if prog.name == "evapp" or (prog.name == "__main__.py" and prog.parent.name == "evapp"):
        return "evapp " + shlex.join(argv[1:])
    return shlex.join(argv)


def write_run(out: Path, settings: TrainSettings, overrides: dict, px_per_input_px: float, device, world: int,
              init_from: dict | None) -> None:
    """run.json: what ``evapp package`` needs to rebuild the model and write its card."""
    run = {"command": command_line(sys.argv), "settings": asdict(settings), "model_overrides": overrides,
           "machine": describe_device(device), "px_per_input_px": px_per_input_px, "world_size": world,
           "init_from": init_from}
    (out / "run.json").write_text(json.dumps(run, indent=2) + "\n")
