"""Write simulated streams as files: an .aedat4 recording with its labels, or a DVS128-Gesture-like folder.

Clock convention. Simulated events are rebased so that the first event is at t = 0. A file stores them
shifted by ``t0_us`` (its first event is at ``t0_us``) and its labels CSV holds absolute times on that same
shifted clock. A reader that rebases the events to the first one and subtracts that same time from the
CSV (``read_labels_csv(path, t0_us=first_event_time)``) gets back exactly the simulated intervals.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from evapp.events import GESTURE_CLASSES, LabelInterval, SensorGeometry
from evapp.simulate.dvs import DvsParams
from evapp.simulate.figure import LIGHTINGS, SIM_MOTIONS
from evapp.simulate.person import person_by_name
from evapp.simulate.sequence import _rng, simulate_sequence
from evapp.sources.aedat3 import labels_path_for, write_aedat3, write_labels_csv
from evapp.sources.aedat4 import write_aedat4

DATASET_LIGHTINGS = tuple(LIGHTINGS)  # fluorescent, fluorescent_led, lab, led, natural
SYNTHETIC_MARKER = "evapp_simulate.json"
CLASSES_JSON = "classes.json"  # a folder's class list: its labels CSVs' 1-based numbers index it


def _shifted(events: np.ndarray, t0_us: int) -> np.ndarray:
    if t0_us == 0:
        return events
    out = events.copy()
    out["timestamp"] += np.int64(t0_us)
    return out


def write_recording(path: str | Path, events: np.ndarray, labels: Sequence[LabelInterval],
                    geometry: SensorGeometry, t0_us: int = 0, camera_name: str | None = None,
                    compression: str = "lz4") -> tuple[Path, Path]:
    """Write ``events`` to ``path`` (.aedat4, via dv-processing) and ``<stem>_labels.csv`` beside it.

    Both are shifted by ``t0_us`` (see the module's clock convention). Returns (aedat4 path, labels path).
    Labels are ``SIM_MOTIONS`` ids; when one lies past DVS128 Gesture's 11, the folder gets a ``classes.json``
    naming them (:func:`ensure_class_list`), before anything is written.
    """
    path = Path(path)
    if path.suffix != ".aedat4":
        raise ValueError(f"{path} must end in .aedat4 (dv-processing refuses other extensions)")
    path.parent.mkdir(parents=True, exist_ok=True)
    ensure_class_list(path.parent, sorted({lab.class_id for lab in labels}))
    write_aedat4(path, _shifted(events, t0_us), geometry, camera_name=camera_name, compression=compression)
    labels_path = labels_path_for(path)
    write_labels_csv(labels_path, list(labels), t0_us=t0_us)
    return path, labels_path


def ensure_class_list(folder: str | Path, class_ids: Sequence[int]) -> Path | None:
    """Make ``folder``'s class list name ``class_ids`` (``SIM_MOTIONS`` indices) as ``SIM_MOTIONS`` does.

    Convention: a labels CSV's 1-based class numbers index the JSON list of names in ``classes.json`` in the
    same folder, and DVS128 Gesture's 11 classes when there is none. The simulator numbers its motions by
    ``SIM_MOTIONS``, whose first 11 are DVS128 Gesture's: ids 0..10 need no file, and a recording with
    ``both_arms_raise`` (id 11) gets ``classes.json`` = ``SIM_MOTIONS``. An existing ``classes.json`` is kept
    when it names every id used here as ``SIM_MOTIONS`` does; otherwise (another tool's class list, e.g. an
    ``evapp collect`` session's) this raises ValueError and writes nothing, since the new CSV would be read
    with the wrong names. Returns the class list's path, or None when the folder needs none.
    """
    path = Path(folder) / CLASSES_JSON
    ids = sorted({int(c) for c in class_ids})
    for c in ids:
        if not 0 <= c < len(SIM_MOTIONS):
            raise ValueError(f"class {c} is out of range 0..{len(SIM_MOTIONS) - 1} (SIM_MOTIONS)")
    if path.exists():
        try:
            names = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path} exists but is not a readable class list ({exc}); move it away") from None
        wrong = [c for c in ids if not (isinstance(names, list) and c < len(names) and names[c] == SIM_MOTIONS[c])]
        if wrong:
            c = wrong[0]
            have = repr(names[c]) if isinstance(names, list) and c < len(names) else "nothing"
            raise ValueError(f"{path} already lists other classes than the simulator's: its class {c + 1} is "
                             f"{have}, this recording's is {SIM_MOTIONS[c]!r}; write the recording to another "
                             "folder (or remove that classes.json)")
        return path
    if any(c >= len(GESTURE_CLASSES) for c in ids):
        path.write_text(json.dumps(list(SIM_MOTIONS), indent=1) + "\n", encoding="utf-8")
        return path
    return None


@dataclass
class DatasetInfo:
    folder: Path
    train: list[str] = field(default_factory=list)  # trial file names, as in trials_to_train.txt
    test: list[str] = field(default_factory=list)
    events: int = 0
    duration_s: float = 0.0


@dataclass(frozen=True)
class _Trial:
    """One trial of a dataset: everything its process needs to render and write it."""

    folder: Path
    user: int
    lighting_index: int
    lighting: str
    in_train: bool
    seed: int
    resolution: tuple[int, int]
    gesture_s: float
    pause_s: float
    fps: float
    params: DvsParams | None
    vary_sensor: bool


def _write_trial(job: _Trial) -> tuple[str, int, float]:
    """Render and write one trial; returns (file name, events, duration in s)."""
    subject_seed = int(np.random.SeedSequence([job.seed, 100, job.user]).generate_state(1)[0])
    trial_seed = int(np.random.SeedSequence([job.seed, 200, job.user, job.lighting_index]).generate_state(1)[0])
    rng = _rng(trial_seed, 9)
    order = rng.permutation(len(GESTURE_CLASSES)).tolist()
    t0 = int(rng.integers(1_000_000, 1_000_000_000))
    trial_params = job.params
    if job.vary_sensor:
        threshold = float(rng.uniform(0.15, 0.5))
        trial_params = replace(job.params or DvsParams(), threshold_on=threshold, threshold_off=threshold,
                               noise_rate_hz=float(np.exp(rng.uniform(np.log(0.01), np.log(0.2)))))
    events, labels, geometry = simulate_sequence(
        order, trial_seed, job.resolution, pause_s=job.pause_s, gesture_s=job.gesture_s, fps=job.fps,
        lighting=job.lighting, subject_seed=subject_seed, params=trial_params,
    )
    if tuple(job.resolution) == (128, 128):  # DVS128 Gesture's own format
        name = f"user{job.user:02d}_{job.lighting}.aedat"
        write_aedat3(job.folder / name, _shifted(events, t0))
        write_labels_csv(labels_path_for(job.folder / name), labels, t0_us=t0)
    else:  # AEDAT 3.1 holds only a DVS128; other sensors get the format their cameras write
        name = f"user{job.user:02d}_{job.lighting}.aedat4"
        write_recording(job.folder / name, events, labels, geometry, t0_us=t0)
    duration_s = float(events["timestamp"][-1]) * 1e-6 if events.shape[0] else 0.0
    return name, int(events.shape[0]), duration_s


def _in_order(results, progress: Callable[[str], None] | None):
    """Pass results through, reporting each trial's file name as it is written."""
    for result in results:
        if progress is not None:
            progress(result[0])
        yield result


def write_dataset(
    folder: str | Path,
    n_users: int = 4,
    lightings: Sequence[str] = ("fluorescent", "led"),
    seed: int = 0,
    resolution: tuple[int, int] = (128, 128),
    train_users: int | None = None,
    gesture_s: float = 3.0,
    pause_s: float = 1.0,
    *,
    fps: float = 2000.0,
    params: DvsParams | None = None,
    progress: Callable[[str], None] | None = None,
    vary_sensor: bool = False,
    split: str = "all",
    workers: int = 1,
) -> DatasetInfo:
    """Write a folder laid out like DVS128 Gesture's ``DvsGesture/``.

    For each user ``NN`` (1-based) and lighting: ``userNN_<lighting>.aedat`` (AEDAT 3.1; ``.aedat4`` for a
    resolution other than the DVS128's 128x128, which AEDAT 3.1 cannot describe) and
    ``userNN_<lighting>_labels.csv`` (classes 1..11, absolute µs), the trial performing all 11 classes
    once in a random order with pauses (the original has about 6 s per gesture; ``gesture_s`` defaults
    shorter to keep the files small). Users ``1..train_users`` are listed in ``trials_to_train.txt``, the
    rest in ``trials_to_test.txt`` (default split 23:6 as in the original, at least one test user when
    there are two or more). Each user is a different random subject (body, clothes, placement), shared by
    that user's lightings; each trial has its own choreography and background lighting. Timestamps start
    at a random non-zero offset so readers must rebase. ``vary_sensor`` draws each trial's contrast threshold
    (0.15..0.5) and background-activity rate (0.01..0.2 Hz per pixel) at random around ``params``, so a model
    trained on the set does not learn one sensor's bias settings. ``split`` ``"train"`` or ``"test"`` writes
    only that split's trials, exactly as the whole set would have them (to render held-out performances at
    another resolution). ``workers`` > 1 renders trials in that many processes (same files as one).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in lightings:
        if name not in LIGHTINGS:
            raise ValueError(f"unknown lighting {name!r}; choose from {', '.join(LIGHTINGS)}")
    if n_users < 1:
        raise ValueError("n_users must be at least 1")
    if train_users is None:
        train_users = n_users if n_users == 1 else min(n_users - 1, max(1, round(n_users * 23 / 29)))
    info = DatasetInfo(folder)
    if split not in ("all", "train", "test"):
        raise ValueError(f"split must be all, train or test, not {split!r}")
    jobs = [_Trial(folder, user, li, lighting, user <= train_users, seed, tuple(resolution), gesture_s, pause_s,
                   fps, params, vary_sensor)
            for user in range(1, n_users + 1)
            if split == "all" or (split == "train") == (user <= train_users)
            for li, lighting in enumerate(lightings)]
    if workers > 1 and len(jobs) > 1:
        # Trials are independent and seeded by (seed, user, lighting) alone, so a pool writes the same files.
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(workers, len(jobs))) as pool:
            results = list(_in_order(pool.map(_write_trial, jobs), progress))
    else:
        results = list(_in_order(map(_write_trial, jobs), progress))
    for job, (name, n_events, duration_s) in zip(jobs, results, strict=True):
        (info.train if job.in_train else info.test).append(name)
        info.events += n_events
        info.duration_s += duration_s
    # A marker that says the set is synthetic, so a model card can never present it as DVS128 Gesture.
    (folder / SYNTHETIC_MARKER).write_text(json.dumps({
        "generator": "evapp simulate", "seed": seed, "users": n_users, "train_users": train_users,
        "lightings": list(lightings), "resolution": list(resolution), "gesture_s": gesture_s, "pause_s": pause_s,
        "vary_sensor": vary_sensor, "split": split}, indent=2) + "\n")
    (folder / "trials_to_train.txt").write_text("".join(f"{n}\n" for n in info.train))
    (folder / "trials_to_test.txt").write_text("".join(f"{n}\n" for n in info.test))
    return info


def parse_classes(spec: str | Sequence[int | str] | None) -> list[int]:
    """Motion list from 0-based ids or names (``"0,1,right_hand_wave,both_arms_raise"``), indices into
    ``SIM_MOTIONS`` (0..10 DVS128 Gesture's classes, 11 ``both_arms_raise``); ``None``/``"all"`` = the 11."""
    if spec is None or spec == "all":
        return list(range(len(GESTURE_CLASSES)))
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out = []
    for item in items:
        item = str(item).strip()
        if item.isdigit():
            cls = int(item)
        elif item in SIM_MOTIONS:
            cls = SIM_MOTIONS.index(item)
        else:
            raise ValueError(f"unknown gesture class {item!r}: use 0..{len(SIM_MOTIONS) - 1} or one of "
                             f"{', '.join(SIM_MOTIONS)}")
        if not 0 <= cls < len(SIM_MOTIONS):
            raise ValueError(f"gesture class {cls} is out of range 0..{len(SIM_MOTIONS) - 1}")
        out.append(cls)
    return out


def simulate_main(
    out_path: str | Path,
    classes: str | Sequence[int | str] | None = None,
    seed: int = 0,
    resolution: tuple[int, int] = (128, 128),
    gesture_s: float = 2.0,
    pause_s: float = 1.0,
    *,
    dataset: bool = False,
    n_users: int = 4,
    lightings: Sequence[str] = ("fluorescent", "led"),
    train_users: int | None = None,
    lighting: str | None = None,
    fps: float = 2000.0,
    threshold: float | None = None,
    noise_hz: float | None = None,
    t0_us: int = 0,
    progress: Callable[[str], None] | None = None,
    compression: str = "lz4",
    vary_sensor: bool = False,
    split: str = "all",
    workers: int = 1,
    person: str | None = None,
    subject_seed: int | None = None,
) -> dict:
    """Entry point for ``evapp simulate``: one recording (``out_path`` = .aedat4) or a dataset folder.

    ``person`` (a preset name, ``newcomer``) renders that person, room and sensor (one recording only);
    ``subject_seed`` picks who (default ``seed``), ``seed`` the choreography. Returns a summary dict (paths,
    events, duration, events/s, bytes) for the CLI to print.
    """
    settings = person_by_name(person) if person is not None else None
    if settings is not None and dataset:
        raise ValueError("--person renders one recording; for more of the same person give other --seed values")
    params = settings.dvs_params() if settings is not None else DvsParams()
    if threshold is not None or noise_hz is not None:
        params = replace(
            params,
            **({"threshold_on": threshold, "threshold_off": threshold} if threshold is not None else {}),
            **({"noise_rate_hz": noise_hz} if noise_hz is not None else {}),
        )
    out_path = Path(out_path)
    if dataset:
        info = write_dataset(out_path, n_users, lightings, seed, resolution, train_users, gesture_s, pause_s,
                             fps=fps, params=params, progress=progress, vary_sensor=vary_sensor,
                             split=split, workers=workers)
        size = sum(p.stat().st_size for p in out_path.iterdir() if p.is_file())
        return {"folder": str(out_path), "train": info.train, "test": info.test, "events": info.events,
                "duration_s": info.duration_s, "bytes": size}
    cls = parse_classes(classes)
    events, labels, geometry = simulate_sequence(cls, seed, resolution, pause_s=pause_s, gesture_s=gesture_s,
                                                 fps=fps, lighting=lighting, params=params, person=settings,
                                                 subject_seed=subject_seed)
    aedat, csv_path = write_recording(out_path, events, labels, geometry, t0_us=t0_us, compression=compression)
    classes_json = out_path.parent / CLASSES_JSON
    duration = float(events["timestamp"][-1]) * 1e-6 if events.shape[0] else 0.0
    return {"path": str(aedat), "labels": str(csv_path), "geometry": str(geometry), "events": int(events.shape[0]),
            "duration_s": duration, "events_per_s": events.shape[0] / max(duration, 1e-9),
            "bytes": aedat.stat().st_size, "classes": [SIM_MOTIONS[c] for c in cls],
            **({"classes_json": str(classes_json)} if classes_json.exists() else {}),
            **({"person": person, "subject_seed": seed if subject_seed is None else subject_seed}
               if person is not None else {})}
