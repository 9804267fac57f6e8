"""A running capture session: the plan's prompts on the wall clock, each take into its own recording.

``TakeFiles`` is a pipeline tap (as the recorder is): every EventStore the live source delivers goes, exactly as
received, into the file of its take. ``CollectSession.tick()`` is called by the headless loop or the window's
timer; it moves through the phases on the wall clock and returns the prompts to show. Each prompt is placed on the
camera's clock (``TakeFiles.stream_time``: read off the store that came with the least delay), and the files are
cut on that clock too, splitting a store that spans a cut: a reader that falls behind the camera delays the files,
never moves a gesture into the wrong one, and every event received lies in exactly one file.

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

import numpy as np

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
        if redo_last and discard_last(folder, record) is None:
            raise InputError(f"{folder} holds no finished take to redo.")
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


def discard_last(folder: Path, record: SessionRecord) -> dict | None:
    """Move the last finished take's files to ``discarded/`` (the user asked to redo it; nothing is deleted) and
    drop it from ``session.json``; its entry, or None when there is none."""
    if not record.takes:
        return None
    take = record.takes.pop()
    target = folder / "discarded"
    target.mkdir(exist_ok=True)
    aedat = folder / take["file"]
    for path in (aedat, labels_path_for(aedat)):
        if path.exists():
            shutil.move(str(path), str(target / path.name))
    log.info("take %s moved to %s", take["file"], target)
    record.save(folder)
    return take


def _split(store, cut_us: int):
    """(events before ``cut_us``, the rest) as two new stores: dv-processing's writer would write the whole packets
    behind a ``sliceTime`` view."""
    from evapp.sources.aedat4 import to_event_store

    events = store.numpy()
    at = int(np.searchsorted(events["timestamp"], cut_us))
    return to_event_store(events[:at]), to_event_store(events[at:])


class TakeFiles:
    """The pipeline tap: every store into the file of its take, the files cut at camera-clock times; counts what
    is received. Runs on the reader thread; the session reads ``closed`` from its own."""

    def __init__(self, folder: Path, geometry: SensorGeometry, clock=time.monotonic):
        self.folder, self.geometry, self.clock = folder, geometry, clock
        self._offset_us: float | None = None  # camera clock - ``clock``, from the store that came with the least delay
        self._lock = threading.Lock()
        self._recorder: AedatRecorder | None = None
        self._cuts: deque[tuple[int, Path | None]] = deque()  # (camera time, the file that starts there)
        self.closed: deque[tuple[Path, int, int | None]] = deque()  # finalised files: path, events, last time
        self.received = 0
        self.latest_us: int | None = None

    def __call__(self, store) -> None:
        with self._lock:
            n = len(store)
            if not n or (self._recorder is None and not self._cuts):
                return  # the session is over: what arrives while the source closes is not part of it
            now = self.clock()
            previous, self.latest_us = self.latest_us, int(store.getHighestTime())
            offset_us = self.latest_us - now * 1e6
            new_clock = previous is not None and (self.latest_us < previous
                                                  or offset_us > self._offset_us + NEW_CLOCK_US)
            if self._offset_us is None or new_clock:
                self._offset_us = offset_us  # a new clock (a camera started again): read it afresh
            self._offset_us = max(self._offset_us, offset_us)
            while self._cuts and self._cuts[0][0] <= self.latest_us:
                cut_us, path = self._cuts.popleft()
                if store.getLowestTime() < cut_us:
                    before, store = _split(store, cut_us)
                    self._write(before)
                self._rotate(path)
            self._write(store)

    def _write(self, store) -> None:
        if self._recorder is not None and len(store):
            self._recorder.write_store(store)
            self.received += len(store)  # received during the session (after its last cut the stream is not)

    def _rotate(self, path: Path | None) -> None:
        old, self._recorder = self._recorder, AedatRecorder(path, self.geometry, force=True) if path else None
        if old is not None:
            old.close()
            self.closed.append((old.path, old.events, old.last_time_us))

    def stream_time(self, at: float) -> int | None:
        """The camera's time at ``at`` (on ``clock``): read off the store that came with the least delay since the
        clock started, so a source or a reader that falls behind for a while does not shift a label; never before
        the newest event received."""
        with self._lock:
            if self.latest_us is None:
                return None
            return max(self.latest_us, int(at * 1e6 + self._offset_us))

    def open(self, path: Path) -> None:
        """The first file: every store goes there until the first cut."""
        with self._lock:
            self._rotate(path)

    def cut_at(self, cut_us: int, path: Path | None) -> None:
        """From camera time ``cut_us`` on, events go to ``path`` (None: the session's last file ends there)."""
        with self._lock:
            self._cuts.append((cut_us, path))

    def continue_into(self, path: Path) -> bool:
        """The session's last cut, still ahead, starts ``path`` instead of ending the recording: False if it has
        passed already."""
        with self._lock:
            if self._cuts and self._cuts[-1][1] is None:
                self._cuts[-1] = (self._cuts[-1][0], path)
                return True
            return False

    def close_now(self) -> None:
        """End the file on now (the session stops before the stream reaches its cuts)."""
        with self._lock:
            self._cuts.clear()
            self._rotate(None)

    @property
    def pending_cuts(self) -> int:
        with self._lock:
            return len(self._cuts)


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
        self._labels: dict[Path, tuple[Take, int, int]] = {}  # a file's take and label, once fixed
        self._takes_of: dict[Path, Take] = {}
        self.finished: list[FinishedTake] = []
        self._stopped = False
        self._pending_prompts: list[Prompt] = []  # prompts of a take asked again after the last one
        self.max_behind_s = 0.0  # the most the events reaching the files lagged behind the camera's clock
        if self.queue:  # the first take's file is open before the first event: every event lands in a file
            self.current, self.redo = self.queue.popleft()
            self._takes_of[self._path(self.current)] = self.current
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
        """Every take prompted and its file finalised (the stream has reached the last cut)."""
        return self.phase == "done" and self.files.pending_cuts == 0 and not self.files.closed

    def behind_s(self) -> float:
        """How far the events written lag behind the camera's clock now (a reader that falls behind)."""
        now_us, latest = self.files.stream_time(self.clock()), self.files.latest_us
        return 0.0 if now_us is None or latest is None else (now_us - latest) / 1e6

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
        self.max_behind_s = max(self.max_behind_s, self.behind_s())
        if self.phase == "waiting":
            if self.files.latest_us is None:
                return out  # the protocol starts with the first event: the person sees the camera works
            out += self._begin(now)
        while self.phase not in ("done", "waiting") and now >= self._phase_ends:
            out += self._advance(self._phase_ends)
        out += self._collect_closed()
        out += self._pending_prompts
        self._pending_prompts = []
        return out

    def _next_take(self, at: float) -> list[Prompt]:
        """The pause is over: the take's file ends here on the camera's clock; start the next take, or end."""
        nxt = self.queue.popleft() if self.queue else None
        path = self._path(nxt[0]) if nxt else None
        if path is not None:
            self._takes_of[path] = nxt[0]
        self.files.cut_at(self.files.stream_time(at), path)
        if nxt is None:
            self.phase, self.current = "done", None
            return [self._prompt("done", 0.0, at=at)]
        self.current, self.redo = nxt
        return self._begin(at)

    def _begin(self, at: float) -> list[Prompt]:
        if self.plan.countdown_s > 0:
            self.phase, self._count, self._phase_ends = "countdown", 3, at + self.plan.countdown_s / 3
            return [self._prompt("countdown", self.plan.countdown_s / 3, 3, at=at)]
        return self._start_go(at)

    def _start_go(self, at: float) -> list[Prompt]:
        self.phase, self._phase_ends = "go", at + self.plan.take_s
        self._go_us = self.files.stream_time(at)
        return [self._prompt("go", self.plan.take_s, at=at)]

    def _advance(self, at: float) -> list[Prompt]:
        if self.phase == "countdown":
            if self._count > 1:
                self._count -= 1
                self._phase_ends = at + self.plan.countdown_s / 3
                return [self._prompt("countdown", self.plan.countdown_s / 3, self._count, at=at)]
            return self._start_go(at)
        if self.phase == "go":
            self._labels[self._path(self.current)] = (self.current, self._go_us, self.files.stream_time(at))
            self.phase, self._phase_ends = "pause", at + self.plan.pause_s
            return [self._prompt("pause", self.plan.pause_s, at=at)]
        return self._next_take(at)  # the pause is over

    def _collect_closed(self) -> list[FinishedTake]:
        out = []
        while self.files.closed:
            out += self._finish(*self.files.closed.popleft())
        return out

    def _finish(self, path: Path, events: int, last_us: int | None) -> list[FinishedTake]:
        """A finalised take file: label it and list it in session.json when it holds the whole gesture, else keep
        it as unfinished (and ask for the take again while the session runs)."""
        label = self._labels.pop(path, None)
        take = self._takes_of.pop(path, None)
        if label is None or last_us is None or last_us < label[2] or events == 0:
            unfinished = path.with_name(path.stem + ".unfinished.aedat4")
            if path.exists():
                path.replace(unfinished)
                log.info("the unfinished take is kept as %s", unfinished)
            if take is not None and not self._stopped and label is not None:
                self.queue.append((take, True))  # the stream broke off during it: ask again
                if self.phase == "done":
                    self._restart_after_done()
            return []
        take, start_us, end_us = label
        write_labels_csv(labels_path_for(path), [LabelInterval(take.class_id, start_us, end_us)])
        finished = FinishedTake(take, path.name, events, start_us, end_us, (end_us - start_us) / 1e6)
        self.finished.append(finished)
        self.record.takes = [t for t in self.record.takes if t["take"] != take.index + 1] + [finished.to_json()]
        self.record.save(self.folder)
        return [finished]

    def _restart_after_done(self) -> None:
        """A take asked again after the last prompt (a redo, a take the stream lost): the session goes on with it.
        Its file starts where the session's last file was to end, or now if that file has ended."""
        if self._stopped or not self.queue:
            return
        take, self.redo = self.queue.popleft()
        path = self._path(take)
        self._takes_of[path] = take
        now = self.clock()
        if not self.files.continue_into(path):
            self.files.cut_at(self.files.stream_time(now), path)
        self.current = take
        self._pending_prompts = self._begin(now)

    def redo_last(self) -> Take | None:
        """Discard the last finished take (moved to ``discarded/``) and ask for it again after the take on now."""
        last = discard_last(self.folder, self.record)
        if last is None:
            return None
        take = Take(last["take"] - 1, last["round"] - 1, last["class_id"], last["class_name"])
        self.finished = [f for f in self.finished if f.take != take]
        self.queue.appendleft((take, True))
        if self.phase == "done":
            self._restart_after_done()
        return take

    def close(self) -> list[FinishedTake]:
        """End the session now (Ctrl-C, window closed, stream over): every file is finalised; a take whose gesture
        the file holds whole is kept as finished, any other as unfinished."""
        self._stopped = True
        self.files.close_now()
        self.phase = "done"
        return self._collect_closed()
