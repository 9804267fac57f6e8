"""The headless sink: one JSON object per line on stdout (``--headless``)."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evapp.pipeline import Pipeline


def print_json(record: dict) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def run_headless(pipeline: Pipeline, duration_s: float | None = None, stop: list | None = None) -> None:
    """Print the pipeline's records as JSON lines until the stream ends, ``duration_s`` has passed or a stop
    is requested (``stop`` non-empty: see evapp.interrupts); a replay shows its progress on a terminal."""
    from evapp.pipeline import Prediction
    from evapp.sinks.progress import ReplayProgress

    deadline = None if duration_s is None else time.monotonic() + duration_s
    stop = [] if stop is None else stop
    progress = ReplayProgress(pipeline)
    pipeline.start()
    try:
        while not pipeline.finished and not stop and (deadline is None or time.monotonic() < deadline):
            progress.update()
            record = pipeline.wait_output(0.1)
            if record is None:
                continue
            print_json(record.to_json())
            if isinstance(record, Prediction):
                pipeline.report_shown(record)
    finally:
        progress.close()
