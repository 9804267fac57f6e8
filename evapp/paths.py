"""Where the shipped folders are: ``models/`` (the model artifacts) and ``assets/`` (the demo recording).

Each is found in three steps: its environment variable, else the checkout's folder next to the package (when
evapp runs from a source tree that has it), else the folder of that name in the current directory.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["assets_dir", "models_dir", "output_dir"]

CHECKOUT = Path(__file__).resolve().parents[1]  # the folder holding the evapp package


def _find(env_var: str, name: str) -> Path:
    env = os.environ.get(env_var)
    if env:
        return Path(env)
    beside = CHECKOUT / name
    return beside if beside.is_dir() else Path.cwd() / name


def models_dir() -> Path:
    """``$EVAPP_MODELS``, else the checkout's ``models/`` if that folder exists, else ``./models``."""
    return _find("EVAPP_MODELS", "models")


def assets_dir() -> Path:
    """``$EVAPP_ASSETS``, else the checkout's ``assets/`` if that folder exists, else ``./assets``."""
    return _find("EVAPP_ASSETS", "assets")


def output_dir() -> Path:
    """Where evapp writes what the user did not name a path for (window screenshots, eval-stream's confusion
    matrix): ``$EVAPP_OUTPUT``, else ``~/evapp-output``; created when first needed, never the current folder."""
    env = os.environ.get("EVAPP_OUTPUT")
    folder = Path(env) if env else Path.home() / "evapp-output"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
