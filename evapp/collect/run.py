"""Running a capture session: the live source through a pipeline with the take files as its tap, prompts out.

Headless, every prompt is a JSON line on stdout (``Prompt.to_json``), each finished take a ``take`` line, and the
session ends with a ``summary`` line; each prompt is also one human line on stderr. The window (``evapp.gui``)
drives the same session from its timer.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from evapp.collect.protocol import Prompt
from evapp.collect.session import CollectSession, FinishedTake, SessionRecord, TakeFiles

log = logging.getLogger(__name__)

STALL_S = 5.0  # after the last prompt, how long a silent stream is waited for before the session ends


def open_session(folder: str | Path, record: SessionRecord, pipeline, camera: str = "") -> CollectSession:
    """The session of ``record`` (``prepare_folder``), its take files tapped into ``pipeline``'s live source."""
    geometry = pipeline.source.geometry
    record.camera, record.geometry = camera, [geometry.width, geometry.height]
    files = TakeFiles(Path(folder), geometry)
    session = CollectSession(folder, record, files)
    pipeline.add_tap(files)
    done = len(record.takes)
    if done:
        log.info("continuing the session in %s: %d of %d takes are recorded", folder, done, session.total)
    return session


def summary(session: CollectSession) -> dict:
    recorded = sum(t["events"] for t in session.record.takes)
    return {"type": "summary", "folder": str(session.folder), "takes_recorded": len(session.record.takes),
            "takes_planned": session.total, "takes_this_run": len(session.finished),
            "received_events": session.files.received, "events_in_finished_takes": recorded,
            "complete": len(session.record.takes) == session.total,
            "max_behind_s": round(session.max_behind_s, 2)}


def run_headless(pipeline, session: CollectSession, stop: list, emit) -> None:
    """Tick the session until it is done or a stop is requested; ``emit(dict)`` prints a JSON line."""
    pipeline.start()
    waiting_said = False
    last_received, last_change = -1, time.monotonic()
    try:
        while not session.done and not stop:
            if pipeline.finished:
                break  # the source broke off for good (a file) or the pipeline failed: raised below
            for item in session.tick():
                _show(item, emit)
            if session.phase == "waiting" and not waiting_said and pipeline.first_batch_at is None:
                print("waiting for the first events ...", file=sys.stderr, flush=True)
                waiting_said = True
            if session.files.received != last_received:
                last_received, last_change = session.files.received, time.monotonic()
            elif session.phase == "done" and time.monotonic() - last_change > STALL_S:
                break  # every take is prompted and the stream has stopped: end with what arrived
            pipeline.poll()  # frames or answers are not shown headless
            time.sleep(0.01)
    finally:
        for item in session.close():
            _show(item, emit)
        pipeline.close()


def _show(item: Prompt | FinishedTake, emit) -> None:
    emit(item.to_json())
    if isinstance(item, Prompt):
        print(item.text(), file=sys.stderr, flush=True)
    else:
        print(f"  recorded {item.file}: {item.events:,} events", file=sys.stderr, flush=True)
