"""Shared fixtures: tests make their own data in the real formats (DESIGN section 7)."""

from __future__ import annotations

import json
import os

import pytest

from evapp.events import SensorGeometry
from evapp.testing import random_stream  # noqa: F401 - the tests' event generator (re-exported)

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

DVX = SensorGeometry(640, 480, "DVXplorer_DXA00000")


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


@pytest.fixture(autouse=True)
def output_folder(tmp_path, monkeypatch):
    """What evapp writes without being given a path (screenshots, confusion PNGs) goes to the test's folder."""
    monkeypatch.setenv("EVAPP_OUTPUT", str(tmp_path / "evapp-output"))
    return tmp_path / "evapp-output"


@pytest.fixture
def shipped_models(monkeypatch):
    """The repository's own ``models/`` folder."""
    monkeypatch.delenv("EVAPP_MODELS", raising=False)


def json_lines(text: str) -> list[dict]:
    """The JSON objects of a command's stdout, one per non-empty line."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]
