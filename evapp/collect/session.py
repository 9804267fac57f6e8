"""A running capture session: the plan's prompts on the wall clock, each take into its own recording.

``TakeFiles`` is a pipeline tap (as the recorder is): every EventStore the live source receives goes, exactly as
received, into the file of the take on now. The files rotate between two stores, so every event received lies in
exactly one file. ``CollectSession.tick()`` is called by the headless loop or the window's timer; it moves
through the phases and returns the prompts to show. A take's label is the stream time (the newest event
received, on the recording's own clock) at "go" and at the end of the take: within one event batch of the prompt.

The folder: ``classes.json`` (the ordered class names the labels CSVs number), ``session.json`` (the plan and the
finished takes, rewritten after each), ``take-NNN_<class>.aedat4`` with ``take-NNN_<class>_labels.csv`` for each
finished take; a take cut short is kept, finalised, as ``take-NNN_<class>.unfinished.aedat4``; a take the user
redid is moved to ``discarded/``. Nothing received is deleted.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from evapp.collect.protocol import CollectPlan, Prompt, Take
from evapp.errors import InputError
from evapp.events import LabelInterval, SensorGeometry
from evapp.sinks.recorder import AedatRecorder
from evapp.sources.aedat3 import labels_path_for, read_class_names, write_class_names, write_labels_csv

log = logging.getLogger(__name__)

SESSION_FILE = "session.json"
NEW_CLOCK_US = 3_000_000  # a camera clock this far ahead of the estimate, or going back, is a new clock


@dataclass
class FinishedTake:
    """A take on disk: its file, the events in it and its label on the file's own clock."""

    take: Take
    file: str
    events: int
    start_us: int
    end_us: int
    duration_s: float

    def to_json(self) -> dict:
        return {"type": "take", "take": self.take.index + 1, "round": self.take.round + 1,
                "class_id": self.take.class_id, "class_name": self.take.class_name, "file": self.file,
                "events": self.events, "start_us": self.start_us, "end_us": self.end_us,
                "duration_s": round(self.duration_s, 3)}


@dataclass
class SessionRecord:
    """``session.json``: the plan, the sensor and every finished take."""

    plan: CollectPlan
    camera: str = ""
    geometry: list[int] = field(default_factory=list)
    takes: list[dict] = field(default_factory=list)

    def save(self, folder: Path) -> None:
        data = {"format": "evapp-collect/1", "plan": self.plan.to_dict(), "camera": self.camera,
                "geometry": self.geometry, "takes": self.takes}
        tmp = folder / (SESSION_FILE + ".tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        tmp.replace(folder / SESSION_FILE)

    @staticmethod
    def load(folder: Path) -> SessionRecord:
        path = folder / SESSION_FILE
        try:
            data = json.loads(path.read_text())
            return SessionRecord(CollectPlan.from_dict(data["plan"]), data.get("camera", ""),
                                 list(data.get("geometry", [])), list(data["takes"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path} is not a readable collect session ({exc}).") from None


def prepare_folder(folder: str | Path, plan: CollectPlan, redo_last: bool = False) -> SessionRecord:
    """Create the folder, or continue the session already in it (same classes); ``redo_last`` discards the last
    finished take so that it is recorded again."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} is a file; --out names a folder for the takes.")
    if (folder / SESSION_FILE).is_file():
        record = SessionRecord.load(folder)
        if record.plan.classes != plan.classes:
            raise InputError(f"{folder} holds a session of the classes {', '.join(record.plan.classes)}; use another "
                             "--out, or the same --classes to continue it.")
        record.plan = plan
        if redo_last:
            if not record.takes:
                raise InputError(f"{folder} holds no finished take to redo.")
            _discard(folder, record.takes.pop())
            record.save(folder)
        return record
    if redo_last:
        raise InputError(f"{folder} holds no collect session (no {SESSION_FILE}); --redo-last continues one.")
    if folder.is_dir() and any(folder.iterdir()):
        raise InputError(f"{folder} is not empty and holds no collect session; give a new or empty folder.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if (folder / "classes.json").is_file() and read_class_names(folder) != plan.classes:
            raise InputError(f"{folder / 'classes.json'} lists other classes.")
        write_class_names(folder, plan.classes)
        record = SessionRecord(plan)
        record.save(folder)
    except OSError as exc:
        raise InputError(f"{folder} cannot be written ({exc.strerror or exc}).") from None
    return record


def _discard(folder: Path, take: dict) -> None:
    """Move a take's files to ``discarded/`` (the user asked to redo it; nothing is deleted)."""
    target = folder / "discarded"
    target.mkdir(exist_ok=True)
    aedat = folder / take["file"]
    for path in (aedat, labels_path_for(aedat)):
        if path.exists():
            shutil.move(str(path), str(target / path.name))
    log.info("take %s moved to %s", take["file"], target)


class TakeFiles:
    """The pipeline tap: every store into the current take's file; counts everything received."""

    def __init__(self, folder: Path, geometry: SensorGeometry, clock=time.monotonic):
        self.folder, self.geometry, self.clock = folder, geometry, clock
        self._offset_us: float | None = None  # camera clock - ``clock``, from the store that came with the least delay
        self._lock = threading.Lock()
        self._recorder: AedatRecorder | None = None
        self.received = 0
        self.latest_us: int | None = None
        self.first_store_at: float | None = None

    def __call__(self, store) -> None:
        with self._lock:
            n = len(store)
            if not n:
                return
            if self._recorder is None:
                return  # the session is over: what arrives while the source closes is not part of it
            now = self.clock()
            if self.first_store_at is None:
                self.first_store_at = now
            self.received += n
            previous, self.latest_us = self.latest_us, int(store.getHighestTime())
            offset_us = self.latest_us - now * 1e6
            new_clock = previous is not None and (self.latest_us < previous
                                                  or offset_us > self._offset_us + NEW_CLOCK_US)
            if self._offset_us is None or new_clock:
                self._offset_us = offset_us  # a new clock (a camera started again): read it afresh
            self._offset_us = max(self._offset_us, offset_us)
            self._recorder.write_store(store)

    def stream_time(self, at: float) -> int | None:
        """The stream's time at ``at`` (on ``clock``): the camera's clock is read off the store that came with the
        least delay since the clock started, so a source that falls behind for a while does not shift a label; never
        before the newest event received."""
        with self._lock:
            if self.latest_us is None:
                return None
            return max(self.latest_us, int(at * 1e6 + self._offset_us))

    def open(self, path: Path | None) -> tuple[Path, int] | None:
        """Send the next store to ``path`` (None: to no file) and finalise the file on now, between two stores;
        returns that file's path and the events written to it."""
        recorder = AedatRecorder(path, self.geometry, force=True) if path is not None else None
        with self._lock:
            old, self._recorder = self._recorder, recorder
        if old is None:
            return None
        old.close()
        return old.path, old.events

    @property
    def events_in_file(self) -> int:
        with self._lock:
            return 0 if self._recorder is None else self._recorder.events


class CollectSession:
    """The phases of the takes still to record, on the wall clock; ``tick()`` advances them."""

    def __init__(self, folder: str | Path, record: SessionRecord, files: TakeFiles, clock=time.monotonic):
        self.folder, self.record, self.files, self.clock = Path(folder), record, files, clock
        plan = record.plan
        done = {t["take"] for t in record.takes}
        self.queue: deque[tuple[Take, bool]] = deque((t, False) for t in plan.schedule() if t.index + 1 not in done)
        self.total = len(plan.schedule())
        self.current: Take | None = None
        self.redo = False
        self.phase = "waiting"  # waiting for the first event, then countdown / go / pause, then done
        self._phase_ends = 0.0
        self._count = 0
        self._go_us: int | None = None
        self._go_events = 0
        self._pending: tuple[Take, int, int] | None = None
        self.finished: list[FinishedTake] = []
        if self.queue:  # the first take's file is open before the first event: every event lands in a file
            self.current, self.redo = self.queue.popleft()
            self.files.open(self._path(self.current))
        else:
            self.phase = "done"

    def _path(self, take: Take) -> Path:
        return self.folder / f"{take.stem}.aedat4"

    @property
    def plan(self) -> CollectPlan:
        return self.record.plan

    @property
    def done(self) -> bool:
        return self.phase == "done"

    def progress(self) -> float:
        """Fraction of the phase on now that has passed (for a progress bar)."""
        length = self._phase_length()
        if length <= 0 or self.phase in ("waiting", "done"):
            return 0.0
        return min(1.0, max(0.0, 1 - (self._phase_ends - self.clock()) / length))

    def _phase_length(self) -> float:
        plan = self.plan
        return {"countdown": plan.countdown_s / 3, "go": plan.take_s, "pause": plan.pause_s}.get(self.phase, 0.0)

    def _prompt(self, phase: str, seconds: float, count: int | None = None, at: float | None = None) -> Prompt:
        stream_us = self.files.stream_time(self.clock() if at is None else at)
        return Prompt(phase, self.current, self.total, seconds, count, stream_us, self.redo)

    def tick(self) -> list[Prompt | FinishedTake]:
        """Advance through every phase boundary passed; the prompts (and finished takes) to show, in order."""
        out: list[Prompt | FinishedTake] = []
        now = self.clock()
        if self.phase == "waiting":
            if self.files.latest_us is None:
                return out  # the protocol starts with the first event: the person sees the camera works
            out += self._begin(now)
        while self.phase not in ("done", "waiting") and now >= self._phase_ends:
            out += self._advance(self._phase_ends)
        return out

    def _next_take(self, at: float) -> list[Prompt | FinishedTake]:
        """Finalise the take on now (its pause is over) and start the next one, or end the session."""
        nxt = self.queue.popleft() if self.queue else None
        out = self._finish(self.files.open(self._path(nxt[0]) if nxt else None))
        if nxt is None:
            self.phase, self.current = "done", None
            return out + [self._prompt("done", 0.0)]
        self.current, self.redo = nxt
        return out + self._begin(at)

    def _begin(self, at: float) -> list[Prompt]:
        if self.plan.countdown_s > 0:
            self.phase, self._count, self._phase_ends = "countdown", 3, at + self.plan.countdown_s / 3
            return [self._prompt("countdown", self.plan.countdown_s / 3, 3, at=at)]
        return self._start_go(at)

    def _start_go(self, at: float) -> list[Prompt]:
        self.phase, self._phase_ends = "go", at + self.plan.take_s
        self._go_us, self._go_events = self.files.stream_time(at), self.files.received
        return [self._prompt("go", self.plan.take_s, at=at)]

    def _advance(self, at: float) -> list[Prompt | FinishedTake]:
        if self.phase == "countdown":
            if self._count > 1:
                self._count -= 1
                self._phase_ends = at + self.plan.countdown_s / 3
                return [self._prompt("countdown", self.plan.countdown_s / 3, self._count, at=at)]
            return self._start_go(at)
        if self.phase == "go":
            self._end_gesture(at)
            self.phase, self._phase_ends = "pause", at + self.plan.pause_s
            return [self._prompt("pause", self.plan.pause_s, at=at)]
        return self._next_take(at)  # the pause is over

    def _end_gesture(self, at: float) -> None:
        """The gesture phase is over: its label is fixed; the file stays open for the pause."""
        take, end_us = self.current, self.files.stream_time(at)
        if self._go_us is None or end_us is None or self.files.received == self._go_events:
            self.queue.appendleft((take, True))  # nothing arrived during the take (the stream dropped): again
            log.warning("no events arrived during take %d (%s); it is asked again", take.index + 1, take.class_name)
            self._pending = None
        else:
            self._pending = (take, self._go_us, end_us)

    def _finish(self, closed: tuple[Path, int] | None) -> list[FinishedTake]:
        """A closed take file: label it and list it in session.json, or keep it as unfinished."""
        if closed is None:
            return []
        path, events = closed
        pending, self._pending = self._pending, None
        if pending is None:
            unfinished = path.with_name(path.stem + ".unfinished.aedat4")
            path.replace(unfinished)
            log.info("the unfinished take is kept as %s", unfinished)
            return []
        take, start_us, end_us = pending
        write_labels_csv(labels_path_for(path), [LabelInterval(take.class_id, start_us, end_us)])
        finished = FinishedTake(take, path.name, events, start_us, end_us, (end_us - start_us) / 1e6)
        self.finished.append(finished)
        self.record.takes = [t for t in self.record.takes if t["take"] != take.index + 1] + [finished.to_json()]
        self.record.save(self.folder)
        return [finished]

    def redo_last(self) -> Take | None:
        """Discard the last finished take (moved to ``discarded/``) and ask for it again after the take on now."""
        if not self.record.takes:
            return None
        last = self.record.takes.pop()
        _discard(self.folder, last)
        self.record.save(self.folder)
        take = Take(last["take"] - 1, last["round"] - 1, last["class_id"], last["class_name"])
        self.finished = [f for f in self.finished if f.take != take]
        self.queue.appendleft((take, True))
        return take

    def close(self) -> list[FinishedTake]:
        """End the session now (Ctrl-C, window closed, stream over): a take whose gesture is complete is kept as
        finished, any other is kept as unfinished; every file is finalised."""
        if self.phase == "go":
            self._pending = None
        out = self._finish(self.files.open(None))
        self.phase = "done"
        return out
