"""The headless sink: one JSON object per line on stdout (``--headless``)."""

from __future__ import annotations

import json
import math
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evapp.pipeline import Pipeline


def print_json(record: dict) -> None:
    """One JSON line. NaN and infinity are not JSON: a number that is not finite is written as null."""
    try:
        line = json.dumps(record, allow_nan=False)
    except ValueError:  # rare (a model with broken weights): only then pay for the walk
        line = json.dumps(finite_only(record), allow_nan=False)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def finite_only(value):
    """``value`` with every non-finite float replaced by None (dicts, lists and tuples walked)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_only(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_only(v) for v in value]
    return value


def past_duration(pipeline: Pipeline, duration_s: float | None) -> bool:
    """``--duration S``: S seconds have passed since the stream's first event arrived (start-up excluded)."""
    first = pipeline.first_batch_at
    return duration_s is not None and first is not None and time.perf_counter() - first >= duration_s


def run_headless(pipeline: Pipeline, duration_s: float | None = None, stop: list | None = None) -> None:
    """Print the pipeline's records as JSON lines until the stream ends, ``duration_s`` has passed or a stop
    is requested (``stop`` non-empty: see evapp.interrupts); a replay shows its progress on a terminal."""
    from evapp.pipeline import Prediction
    from evapp.sinks.progress import ReplayProgress

    stop = [] if stop is None else stop
    progress = ReplayProgress(pipeline)
    pipeline.start()
    try:
        while not pipeline.finished and not stop and not past_duration(pipeline, duration_s):
            progress.update()
            record = pipeline.wait_output(0.1)
            if record is None:
                continue
            print_json(record.to_json())
            if isinstance(record, Prediction):
                pipeline.report_shown(record)
    finally:
        progress.close()
