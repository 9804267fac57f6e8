"""Shared fixtures: tests make their own data in the real formats (DESIGN section 7)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from evapp.events import SensorGeometry, make_events

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

DVX = SensorGeometry(640, 480, "DVXplorer_DXA00000")


def random_stream(n: int, width: int, height: int, seed: int = 0, t0: int = 1_700_000_000_000_000,
                  rate_per_us: float = 1.0) -> np.ndarray:
    """n events, uniform over the sensor, monotonic µs timestamps starting at an absolute t0 (so readers rebase)."""
    rng = np.random.default_rng(seed)
    dt = rng.exponential(1.0 / rate_per_us, n).astype(np.int64)
    return make_events(t0 + np.cumsum(dt), rng.integers(0, width, n), rng.integers(0, height, n),
                       rng.integers(0, 2, n))


@pytest.fixture(scope="session")
def big_dvx_recording(tmp_path_factory):
    """A 640x480 .aedat4 of 1.2 M events written with dv-processing, and the events written."""
    from evapp.sources.aedat4 import write_aedat4

    path = tmp_path_factory.mktemp("rec") / "dvx_1m.aedat4"
    events = random_stream(1_200_000, 640, 480, seed=1, rate_per_us=0.5)
    write_aedat4(path, events, DVX)
    return path, events


@pytest.fixture(autouse=True)
def no_shipped_models(tmp_path_factory, monkeypatch):
    """Tests see an empty model folder, so a shipped default artifact never changes what a test runs; the
    tests of the shipped artifacts use the ``shipped_models`` fixture instead."""
    monkeypatch.setenv("EVAPP_MODELS", str(tmp_path_factory.mktemp("no_models")))


@pytest.fixture
def shipped_models(monkeypatch):
    """The repository's own ``models/`` folder."""
    monkeypatch.delenv("EVAPP_MODELS", raising=False)
