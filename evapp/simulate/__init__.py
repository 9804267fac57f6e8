"""Synthetic DVS gesture streams: a figure performing the 11 DVS128 Gesture classes, seen by a DVS model.

- :mod:`evapp.simulate.figure`: the subject, the choreography of each class (and ``both_arms_raise``, the
  motion ``SIM_MOTIONS`` adds as id 11), antialiased rendering.
- :mod:`evapp.simulate.scene`: lighting presets, background textures, sensor placement.
- :mod:`evapp.simulate.person`: ``PersonSettings`` and the ``NEWCOMER`` preset (outside the training ranges).
- :mod:`evapp.simulate.stream`: ``LiveScene``, the same rendering chunk by chunk on a live clock.
- :mod:`evapp.simulate.performer`: a live person on a dv-processing network camera, following
  ``evapp collect``'s prompts.
- :mod:`evapp.simulate.dvs`: the pixel model (log-intensity thresholds, mismatch, refractory, noise).
- :mod:`evapp.simulate.sequence`: gesture sequences with pauses -> events + labels.
- :mod:`evapp.simulate.writers`: .aedat4 + labels CSV, and DVS128 Gesture's dataset folder layout.
"""

from evapp.simulate.dvs import DvsParams
from evapp.simulate.figure import LIGHTINGS
from evapp.simulate.sequence import geometry_for, render_performance, simulate_sequence

__all__ = [
    "LIGHTINGS",
    "DvsParams",
    "geometry_for",
    "render_performance",
    "simulate_sequence",
]
