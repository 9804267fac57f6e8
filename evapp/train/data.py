"""Training data: labelled recordings -> frames made exactly as live -> clips of T frames.

Train/infer parity (DESIGN section 1): in the default ``count`` framing every frame comes out of the live
:class:`~evapp.binning.FixedCountBinner`, fed the recording batch by batch through the same source classes
``evapp replay`` uses, with the same sensor mapping and cross-sensor thinning. ``clip`` framing reproduces
the papers' split of each labelled gesture into T frames of equal event count (SpikingJelly
``split_by='number'``, architectures.md section 0.2).

Frames are kept sparse (flat index + uint16 count of each non-zero pixel): a 500-event frame costs ~2.5 kB
instead of 128 kB dense, so a whole synthetic set stays in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evapp.binning import FrameSpec, SensorMapping
from evapp.errors import InputError
from evapp.events import GESTURE_CLASSES, LabelInterval, SensorGeometry, align_labels, labels_at
from evapp.sources import open_source

DVS128_GESTURE_HELP = (
    "get DVS128 Gesture (DvsGesture.tar.gz, IBM: https://research.ibm.com/interactive/dvsgesture/) and extract it "
    "so that {root}/trials_to_train.txt exists, or put tonic's DVSGesture folder there "
    "({root}/DVSGesture/ibmGestureTrain/...; 'evapp train --download' lets tonic fetch it), or make a synthetic set "
    "with 'evapp simulate --dataset {root}'"
)


@dataclass
class Trial:
    """One labelled recording of a split: an .aedat/.aedat4 trial with its labels CSV, or one sample of tonic's
    DVSGesture (``tonic``: tonic's ``save_to`` folder and the sample's index)."""

    path: Path
    split: str
    tonic: tuple[str, int] | None = None

    @property
    def name(self) -> str:
        return f"{self.path.parent.name}/{self.path.name}" if self.tonic else self.path.name

    def open(self):
        if self.tonic is not None:
            from evapp.train.tonic_gesture import TonicSampleSource

            return TonicSampleSource(self.tonic[0], self.split, self.tonic[1])
        return open_source(self.path)


def find_trials(root: str | Path, split: str) -> list[Trial]:
    """The trials of ``split`` ('train' or 'test') under ``root``, in either layout DVS128 Gesture comes in.

    - original (and ``evapp simulate --dataset``): ``trials_to_{split}.txt`` lists ``userNN_<light>.aedat``
      files, each with ``_labels.csv`` beside it;
    - tonic: ``DVSGesture/ibmGesture{Train,Test}/userNN_<light>/<class>.npy``, read through
      ``tonic.datasets.DVSGesture`` (also with ``root`` pointing at the ``DVSGesture`` folder itself).
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"Dataset folder {root} does not exist: " + DVS128_GESTURE_HELP.format(root=root) + ".")
    listing = root / f"trials_to_{split}.txt"
    if listing.is_file():
        names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        trials = [Trial(root / name, split) for name in names]
        missing = [t.path.name for t in trials if not t.path.is_file()]
        if missing:
            raise InputError(f"{listing} lists {len(missing)} trial(s) missing from {root} (first: {missing[0]}).")
        return trials
    from evapp.train.tonic_gesture import tonic_dataset, tonic_save_to

    save_to = tonic_save_to(root)
    dataset = tonic_dataset(str(save_to), split) if save_to is not None else None
    if dataset is not None and len(dataset):  # tonic lists the samples (and loads them: Trial.open)
        return [Trial(Path(p), split, (str(save_to), i)) for i, p in enumerate(dataset.data)]
    raise InputError(f"{root} holds no DVS128 Gesture {split} split: " + DVS128_GESTURE_HELP.format(root=root) + ".")


class FramedTrial:
    """A trial's frames (sparse), each frame's end time and label (-1 outside every labelled gesture)."""

    def __init__(self, name: str, geometry: SensorGeometry, labels: list[LabelInterval], frame_shape: tuple,
                 dense_frames: np.ndarray, t_end_us: np.ndarray, frame_labels: np.ndarray):
        self.name, self.geometry, self.labels = name, geometry, labels
        self.frame_shape = frame_shape
        self.t_end_us = t_end_us
        self.frame_labels = frame_labels
        flat = dense_frames.reshape(dense_frames.shape[0], -1)
        rows, cols = np.nonzero(flat)
        self._ptr = np.searchsorted(rows, np.arange(flat.shape[0] + 1)).astype(np.int64)
        self._index = cols.astype(np.int32)
        self._count = np.minimum(flat[rows, cols], 65535).astype(np.uint16)

    def __len__(self) -> int:
        return self.t_end_us.shape[0]

    def dense(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Frames ``start:stop`` as float32 ``[stop - start, 2, H, W]``."""
        size = int(np.prod(self.frame_shape))
        out = np.zeros((stop - start, size), np.float32) if out is None else out.reshape(stop - start, size)
        out[:] = 0
        for j, f in enumerate(range(start, stop)):
            a, b = self._ptr[f], self._ptr[f + 1]
            out[j, self._index[a:b]] = self._count[a:b]
        return out.reshape(stop - start, *self.frame_shape)

    def segments(self) -> list[tuple[int, int, int]]:
        """``(first frame, stop frame, class)`` of every run of frames with the same gesture label."""
        lab = self.frame_labels
        if lab.shape[0] == 0:
            return []
        edges = np.flatnonzero(np.diff(lab)) + 1
        starts = np.concatenate([[0], edges])
        stops = np.concatenate([edges, [lab.shape[0]]])
        return [(int(a), int(b), int(lab[a])) for a, b in zip(starts, stops, strict=True) if lab[a] >= 0]


def frame_trial(trial: Trial, spec: FrameSpec, T: int, region=None,
                class_names: tuple[str, ...] = GESTURE_CLASSES, other_classes: str = "refuse") -> FramedTrial:
    """Read one trial through the live source classes and bin it as ``spec`` says (``clip`` mode: each
    gesture into ``T`` frames); its labels are numbered by ``class_names`` (matched by name). A labelled class
    outside ``class_names`` is refused with one sentence, or (``other_classes="unlabelled"``) left unlabelled."""
    source = trial.open()
    try:
        mapping = spec.mapping(source.geometry, region)
        if spec.mode == "count":
            binner = spec.binner(source.geometry, region)
            counts, ends = [], []
            for batch in source.batches():
                done = binner.push(batch)
                if len(done):
                    counts.append(done.counts)
                    ends.append(done.t_end_us)
            dense = np.concatenate(counts) if counts else np.zeros((0, *spec.frame_shape), np.float32)
            t_end = np.concatenate(ends) if ends else np.zeros(0, np.int64)
            # a file source knows its labels once read
            labels = _checked_labels(trial, source, class_names, other_classes)
            frame_labels = labels_at(t_end, labels)
        else:
            events = np.concatenate(list(source.batches()))
            labels = _checked_labels(trial, source, class_names, other_classes)
            dense, t_end, frame_labels = _clip_frames(events, mapping, labels, T)
            dense = spec.resize(dense)
    finally:
        source.close()
    return FramedTrial(trial.name, source.geometry, labels, spec.frame_shape, dense, t_end, frame_labels)


def frame_trials(trials: list[Trial], spec: FrameSpec, T: int, class_names: tuple[str, ...] = GESTURE_CLASSES,
                 other_classes: str = "refuse", workers: int | None = None) -> list[FramedTrial]:
    """``frame_trial`` for each trial, in ``workers`` processes (default: one per core; trials are independent and
    reading and binning them is single-threaded, so a 2-core machine frames them in about half the time)."""
    import os
    from functools import partial

    job = partial(frame_trial, spec=spec, T=T, class_names=class_names, other_classes=other_classes)
    workers = min(workers or os.cpu_count() or 1, len(trials))
    if workers <= 1:
        return [job(t) for t in trials]
    import multiprocessing

    # Spawned, not forked: the parent may hold PyTorch's thread pools, which a forked child must not inherit. A
    # Pool, whose exit terminates the workers: Ctrl-C does not wait for the trials being framed.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return pool.map(job, trials, chunksize=1)


def _checked_labels(trial: Trial, source, class_names: tuple[str, ...], other_classes: str) -> list[LabelInterval]:
    if not source.labels:
        raise InputError(f"{trial.path} has no gesture labels (a DVS128 Gesture trial needs its _labels.csv).")
    labels, names = align_labels(source.labels, source.label_classes, class_names)
    if other_classes == "unlabelled":
        return [lab for lab in labels if lab.class_id < len(class_names)]
    if len(names) > len(class_names):
        raise InputError(f"{trial.path} labels the class {names[len(class_names)]!r}, which is not among the "
                         f"{len(class_names)} classes being trained ({', '.join(class_names[:4])}, ...).")
    return labels


def _clip_frames(events: np.ndarray, mapping: SensorMapping, labels: list[LabelInterval], T: int):
    """Each labelled gesture -> T frames of equal event count (the last frame takes the remainder)."""
    t = events["timestamp"]
    frames, ends, frame_labels = [], [], []
    for lab in labels:
        part = events[(t >= lab.start_us) & (t < lab.end_us)]
        keys = mapping.keys(part)
        inside = keys < mapping.bins
        keys, times = keys[inside], part["timestamp"][inside]
        if keys.shape[0] < T:
            continue  # too few events to split: SpikingJelly would make empty frames; skip the gesture
        step = keys.shape[0] // T
        for j in range(T):
            stop = keys.shape[0] if j == T - 1 else (j + 1) * step
            frames.append(np.bincount(keys[j * step : stop], minlength=mapping.bins).astype(np.float32))
            ends.append(times[stop - 1])
            frame_labels.append(lab.class_id)
    shape = mapping.frame_shape
    if not frames:
        return np.zeros((0, *shape), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return (np.stack(frames).reshape(-1, *shape), np.asarray(ends, np.int64), np.asarray(frame_labels, np.int64))


@dataclass(frozen=True)
class Window:
    """A training or evaluation sample: T consecutive frames of one trial."""

    trial: int
    start: int
    label: int  # the gesture class (clip training), or -1 for per-step labels (stream training)


def evaluation_windows(trials: list[FramedTrial], T: int) -> list[Window]:
    """Every non-overlapping window of T frames lying inside one gesture (clip mode: each gesture's clip)."""
    out = []
    for i, ft in enumerate(trials):
        for a, b, cls in ft.segments():
            out.extend(Window(i, s, cls) for s in range(a, b - T + 1, T))
    return out


# Where a window lies in its gesture. The onset and offset windows hold the move from rest into the gesture
# and back (the simulator blends over 0.3 s at each end), the hardest to name: separating them tells a
# transition error from a confusion of two gestures in full swing.
WINDOW_POSITIONS = ("onset", "steady", "offset")


def window_position(trial: FramedTrial, window: Window, T: int) -> str:
    """'onset' if the window starts within the first T frames of its gesture, else 'offset' if it ends within
    the last T, else 'steady' (a trial's own start or end counts as a gesture boundary)."""
    labels, s = trial.frame_labels, window.start
    if s < T or np.any(labels[s - T : s] != window.label):
        return "onset"
    if s + 2 * T > labels.shape[0] or np.any(labels[s + T : s + 2 * T] != window.label):
        return "offset"
    return "steady"


def training_windows(trials: list[FramedTrial], T: int, per_gesture: int, rng: np.random.Generator) -> list[Window]:
    """``per_gesture`` windows at random offsets inside each gesture (fixed-count framing makes many more
    frames per gesture than T, so random crops are the natural augmentation in time)."""
    out = []
    for i, ft in enumerate(trials):
        for a, b, cls in ft.segments():
            if b - a < T:
                continue
            out.extend(Window(i, int(s), cls) for s in rng.integers(a, b - T + 1, size=per_gesture))
    return out


def sample_windows(trials: list[FramedTrial], T: int, count: int, rng: np.random.Generator,
                   first: int = 0) -> list[Window]:
    """``count`` windows of gestures drawn evenly from ``trials[first:]`` (with replacement), each at a random
    offset: a fixed share of an epoch from a pool of any size (fine-tuning's rehearsal of the base's data)."""
    gestures = [(i, a, b, cls) for i in range(first, len(trials)) for a, b, cls in trials[i].segments() if b - a >= T]
    if not gestures or count <= 0:
        return []
    picks = rng.integers(0, len(gestures), size=count)
    return [Window(gestures[k][0], int(rng.integers(gestures[k][1], gestures[k][2] - T + 1)), gestures[k][3])
            for k in picks]


def stream_windows(trials: list[FramedTrial], length: int, count: int, rng: np.random.Generator) -> list[Window]:
    """Random crops of ``length`` frames anywhere in the trials, across gesture boundaries and pauses
    (continuous-stream training for the ``persistent`` policy: no reset inside a crop, a label per step)."""
    usable = [i for i, ft in enumerate(trials) if len(ft) >= length]
    if not usable:
        return []
    picks = rng.choice(usable, size=count)
    return [Window(int(i), int(rng.integers(0, len(trials[i]) - length + 1)), -1) for i in picks]


def load_split(root: str | Path, split: str, spec: FrameSpec, T: int, region=None,
               progress=None, class_names: tuple[str, ...] = GESTURE_CLASSES) -> list[FramedTrial]:
    trials = find_trials(root, split)
    out = []
    for trial in trials:
        out.append(frame_trial(trial, spec, T, region, class_names))
        if progress is not None:
            progress(trial.name)
    return out
