"""Finding and loading models: a name -> an artifact in ``models/`` (or a registry model), weights, checks.

A model artifact (DESIGN section 2, :mod:`evapp.engine.artifact`) is a folder ``models/<name>/`` with
``config.json`` (architecture + the preprocessing it was trained with) and ``weights.safetensors``. ``--model``
takes an artifact's name, a path to an artifact folder, or a bare registry name; a registry model without an
artifact runs with random initialisation, and says so once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from evapp.engine.artifact import Artifact, read_artifact
from evapp.errors import InputError
from evapp.paths import models_dir

log = logging.getLogger(__name__)


def find_artifact(name: str) -> Artifact | None:
    """The artifact ``name`` names: a folder path holding config.json, or ``models/<name>/``; else None."""
    for folder in (Path(name), models_dir() / name):
        if (folder / "config.json").is_file():
            return read_artifact(folder)
    return None


def scan_artifacts() -> tuple[list[Artifact], list[tuple[Path, str]]]:
    """The artifacts in ``models/`` that read, and the folders that do not, each with the sentence why."""
    root = models_dir()
    good, broken = [], []
    if not root.is_dir():
        return good, broken
    for folder in sorted(root.iterdir()):
        if not (folder / "config.json").is_file():
            continue
        try:
            good.append(read_artifact(folder))
        except (InputError, OSError) as exc:
            broken.append((folder, str(exc)))
    return good, broken


_warned_broken: set[Path] = set()


def list_artifacts() -> list[Artifact]:
    """The readable artifacts in ``models/``; a broken one is skipped with one warning (per process)."""
    good, broken = scan_artifacts()
    for folder, reason in broken:
        if folder not in _warned_broken:
            _warned_broken.add(folder)
            log.warning("skipping the broken model folder %s: %s", folder, reason)
    return good


def default_model_name() -> str | None:
    """The best shipped model: the artifact with weights and the highest held-out clip accuracy."""
    shipped = [a for a in list_artifacts() if a.weights_path.is_file()]
    if not shipped:
        return None
    return max(shipped, key=lambda a: (a.metrics.get("clip_accuracy", 0.0), a.name)).name


@dataclass
class LoadedModel:
    model: object  # evapp.nets.SpikingClassifier, eval mode, on the CPU
    artifact: Artifact | None
    weights: Path | None

    @property
    def cfg(self):
        return self.model.cfg


def no_such_model(name: str, available) -> InputError:
    return InputError(f"There is no model named '{name}' (available: {', '.join(available)}).")


def require_architectures(names) -> None:
    """Refuse a name that is not one of the zoo's architectures (what ``train`` and ``bench`` run)."""
    from evapp.nets import list_models

    for name in names:
        if name not in list_models():
            raise no_such_model(name, list_models())


def model_names() -> list[str]:
    """What ``--model`` takes by name: the artifacts in ``models/``, then the zoo's architectures without one."""
    from evapp.nets import list_models

    shipped = [a.name for a in list_artifacts()]
    return shipped + [n for n in list_models() if n not in shipped]


def catalogue() -> list[dict]:
    """``evapp models``: every artifact (architecture, parameters, input, T, N, policy, weights, accuracy and
    the data it was measured on), then the zoo's architectures without an artifact (untrained)."""
    from evapp.nets import count_params, create_model, get_config, list_models

    rows = []
    good, broken = scan_artifacts()
    _warned_broken.update(folder for folder, _ in broken)  # listed as broken below: no warning as well
    default = default_model_name()
    for folder, reason in broken:
        rows.append({"name": folder.name, "arch": "broken", "params": None, "input": "", "T": None,
                     "events_per_frame": None, "policy": "", "weights": "none", "accuracy": f"broken: {reason}",
                     "default": False, "broken": reason})
    for artifact in good:
        cfg, frames = artifact.config, artifact.preprocessing.frames
        acc = artifact.metrics.get("clip_accuracy")
        rows.append({"name": artifact.name, "arch": cfg.name, "params": count_params(create_model(cfg)),
                     "input": f"2x{cfg.input_size[0]}x{cfg.input_size[1]}", "T": cfg.T,
                     "events_per_frame": frames.events_per_frame, "policy": artifact.policy,
                     "weights": str(artifact.weights_path) if artifact.weights_path.is_file() else "none",
                     "accuracy": "" if acc is None else f"{100 * acc:.1f} % ({artifact.metrics.get('data_kind', '?')})",
                     "default": artifact.name == default})
    for name in list_models():
        if any(r["name"] == name for r in rows):
            continue
        cfg = get_config(name)
        rows.append({"name": name, "arch": name, "params": count_params(create_model(name)),
                     "input": f"2x{cfg.input_size[0]}x{cfg.input_size[1]}", "T": cfg.T,
                     "events_per_frame": cfg.events_per_frame, "policy": "window", "weights": "none",
                     "accuracy": "untrained", "default": False})
    return rows


def load(name: str, weights: str | Path | None = None) -> LoadedModel:
    """Build the model ``name`` (artifact config if there is one) and load its weights."""
    from evapp.nets import create_model, list_models

    artifact = find_artifact(name)
    if artifact is None and name not in list_models():
        shipped = [a.name for a in list_artifacts()]
        raise no_such_model(name, sorted(set(list_models()) | set(shipped)))
    model = create_model(artifact.config) if artifact is not None else create_model(name)
    path = Path(weights) if weights else (artifact.weights_path if artifact is not None else None)
    if path is None:
        log.warning("%s has no trained weights; running with random initialisation (predictions are noise).", name)
        return LoadedModel(model.eval(), None, None)
    load_weights_into(model, path, name)
    return LoadedModel(model.eval(), artifact, path)


def load_weights_into(model, path: str | Path, name: str) -> None:
    """Load a safetensors file into ``model``; a file that does not fit it is refused in one sentence."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Weights file {path} does not exist.")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{path} is not a readable safetensors file ({exc}).") from None
    bad = next((k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all())), None)
    if bad is not None:
        raise InputError(f"{path} holds values that are not finite numbers (in '{bad}'): the weights are broken.")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise InputError(f"{path} does not fit {name}: {str(exc).splitlines()[-1].strip()}") from None
    if missing or unexpected:
        raise InputError(
            f"{path} does not fit {name}: {len(missing)} tensors missing, {len(unexpected)} unexpected "
            f"(first: {(missing or unexpected)[0]})."
        )


def load_model(name: str, weights: str | Path | None = None):
    """``(model, artifact or None)``: :func:`load` for callers that want the pair."""
    loaded = load(name, weights)
    return loaded.model, loaded.artifact
