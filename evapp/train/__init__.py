"""Training and clip evaluation: data (recordings -> frames as live -> clips), augmentation, the loop.

The names below are loaded on first use, so that ``evapp.train.settings`` (what the CLI needs to declare its
options) can be imported without torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"TrainSettings": "evapp.train.settings", "evaluate_clips": "evapp.train.loop",
            "find_trials": "evapp.train.data", "frame_trial": "evapp.train.data", "load_split": "evapp.train.data",
            "train": "evapp.train.loop"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'evapp.train' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
