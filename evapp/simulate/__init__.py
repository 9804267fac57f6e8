"""Synthetic DVS gesture streams: a figure performing the 11 DVS128 Gesture classes, seen by a DVS model.

- :mod:`evapp.simulate.figure`: the subject, the choreography of each class, antialiased rendering.
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
