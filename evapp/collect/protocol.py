"""The guided capture protocol of ``evapp collect``: which gesture to perform when, as typed prompts.

A plan is ``takes`` rounds over the class list, each round in its own shuffled order. One take is three phases:
a countdown that names the gesture ("3, 2, 1"), the take itself ("go", ``take_s`` long) and a pause (``pause_s``).
Every phase is recorded: the countdown and the pause are what the person looks like at rest, which is what the
idle rule is calibrated on. Each take is one recording file holding its countdown, the take and the pause after it,
so every event received lies in exactly one file and an interrupted session keeps each finished take whole.

``Prompt.to_json()`` is the JSON line ``evapp collect --headless`` prints for each phase; a simulated performer
(``evapp.simulate.performer``) and the window's prompt panel read the same records.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_CLASS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")


def parse_class_names(text: str) -> tuple[str, ...]:
    """``"wave,clap, push"`` -> ``("wave", "clap", "push")``; ValueError for an empty, repeated or odd name."""
    names = tuple(n.strip() for n in text.split(","))
    if not names or any(not n for n in names):
        raise ValueError(f"--classes {text!r} holds an empty name; give NAME,NAME,... (at least one).")
    bad = [n for n in names if not _CLASS_NAME.match(n)]
    if bad:
        raise ValueError(f"class name {bad[0]!r} may hold only letters, digits, '_' and '-' "
                         "(it names files and columns).")
    seen = set()
    for n in names:
        if n in seen:
            raise ValueError(f"class {n!r} is listed twice in --classes.")
        seen.add(n)
    if "idle" in seen:
        raise ValueError("'idle' is what evapp shows between gestures; name the class something else.")
    return names


@dataclass(frozen=True)
class Take:
    """One take of the plan: its place in the session and the gesture asked for."""

    index: int  # 0-based position in the session
    round: int  # 0-based round
    class_id: int  # index into the plan's classes
    class_name: str

    @property
    def stem(self) -> str:
        """The recording's file name without extension: ``take-007_wave``."""
        return f"take-{self.index + 1:03d}_{self.class_name}"


@dataclass(frozen=True)
class CollectPlan:
    classes: tuple[str, ...]
    takes: int = 5  # per class
    take_s: float = 3.0
    pause_s: float = 2.0
    countdown_s: float = 3.0  # one second per number: "3, 2, 1"
    seed: int = 0  # the shuffle of each round

    def __post_init__(self):
        if not self.classes:
            raise ValueError("a plan needs at least one class")
        if self.takes < 1 or self.take_s <= 0 or self.pause_s < 0 or self.countdown_s < 0:
            raise ValueError("takes and --take-s must be positive, the pause and the countdown not negative")

    def schedule(self) -> list[Take]:
        """Every take in order: ``takes`` rounds, each a fresh shuffle of the classes."""
        rng = np.random.default_rng(self.seed)
        out = []
        for r in range(self.takes):
            for cls in rng.permutation(len(self.classes)).tolist():
                out.append(Take(len(out), r, int(cls), self.classes[int(cls)]))
        return out

    def to_dict(self) -> dict:
        return {"classes": list(self.classes), "takes": self.takes, "take_s": self.take_s, "pause_s": self.pause_s,
                "countdown_s": self.countdown_s, "seed": self.seed}

    @staticmethod
    def from_dict(d: dict) -> CollectPlan:
        return CollectPlan(tuple(d["classes"]), int(d["takes"]), float(d["take_s"]), float(d["pause_s"]),
                           float(d["countdown_s"]), int(d["seed"]))


@dataclass(frozen=True)
class Prompt:
    """What the person is asked to do now.

    ``phase``: ``countdown`` (``count`` = 3, 2, 1: get ready for ``class_name``), ``go`` (perform it for
    ``seconds``), ``pause`` (rest for ``seconds``), ``done`` (the session is over). ``stream_us`` is the camera's
    time when the prompt was shown, on the recording's own clock (``TakeFiles.stream_time``), ``None`` before the
    first event."""

    phase: str
    take: Take | None
    of: int  # takes in the session
    seconds: float  # how long this phase lasts
    count: int | None = None
    stream_us: int | None = None
    redo: bool = False  # this take replaces one the user discarded

    def to_json(self) -> dict:
        out = {"type": "prompt", "phase": self.phase, "seconds": round(self.seconds, 3), "of": self.of,
               "stream_us": self.stream_us}
        if self.take is not None:
            out.update(take=self.take.index + 1, round=self.take.round + 1, class_id=self.take.class_id,
                       class_name=self.take.class_name, file=self.take.stem + ".aedat4")
        if self.count is not None:
            out["count"] = self.count
        if self.redo:
            out["redo"] = True
        return out

    def text(self) -> str:
        """The one human line of this prompt (stderr in headless mode, the window's panel)."""
        if self.phase == "done" or self.take is None:
            return "done: every take is recorded"
        where = f"take {self.take.index + 1}/{self.of}"
        name = self.take.class_name.replace("_", " ")
        if self.phase == "countdown":
            return f"{where}: {name} in {self.count}"
        if self.phase == "go":
            return f"{where}: {name} - go ({self.seconds:g} s)"
        return f"{where}: rest ({self.seconds:g} s)"
