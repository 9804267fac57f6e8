"""Finding and loading models: registry name -> module, with weights from ``--weights`` or ``models/<name>/``.

A model artifact (DESIGN section 2) is a folder ``models/<name>/`` with ``config.json`` and
``weights.safetensors``. Without weights the model runs with random initialisation, and says so once.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from evapp.errors import InputError

log = logging.getLogger("evapp")


def models_dir() -> Path:
    """``$EVAPP_MODELS``, else the repository's ``models/`` folder next to the package."""
    env = os.environ.get("EVAPP_MODELS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "models"


def artifact_weights(name: str) -> Path | None:
    path = models_dir() / name / "weights.safetensors"
    return path if path.is_file() else None


def load_model(name: str, weights: str | Path | None = None):
    """Build a zoo model and load its weights; returns ``(model, weights_path_or_None)``."""
    from evapp.nets import create_model, list_models

    if name not in list_models():
        raise InputError(f"There is no model named '{name}' (available: {', '.join(list_models())}).")
    model = create_model(name)
    path = Path(weights) if weights else artifact_weights(name)
    if path is None:
        log.warning("%s has no trained weights; running with random initialisation (predictions are noise).", name)
        return model, None
    if not path.is_file():
        raise InputError(f"Weights file {path} does not exist.")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{path} is not a readable safetensors file ({exc}).") from None
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise InputError(f"{path} does not fit {name}: {str(exc).splitlines()[-1].strip()}") from None
    if missing or unexpected:
        raise InputError(
            f"{path} does not fit {name}: {len(missing)} tensors missing, {len(unexpected)} unexpected "
            f"(first: {(missing or unexpected)[0]})."
        )
    return model, path
