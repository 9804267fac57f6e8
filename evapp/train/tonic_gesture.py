"""DVS128 Gesture through tonic: ``tonic.datasets.DVSGesture`` lists the samples and loads them (its own folder
layout, ``<root>/DVSGesture/ibmGesture{Train,Test}/userNN_<light>/<class>.npy``, its ms -> µs conversion and its
targets), and downloads the dataset where a network allows it (``evapp train --download``).

tonic treats a folder as present only when the archive it downloaded lies beside at least 100 extracted samples;
here the extracted samples are enough (a copied or partial folder is read, never downloaded over), and tonic
downloads only when asked to.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from evapp.errors import InputError
from evapp.events import GESTURE_CLASSES, LabelInterval, make_events
from evapp.sources.base import EventSource
from evapp.sources.files import DVS128

TONIC_FOLDER = "DVSGesture"
SPLIT_FOLDERS = {"train": "ibmGestureTrain", "test": "ibmGestureTest"}


class _NotDownloading(Exception):
    pass


def _dataset_class(download: bool):
    from tonic.datasets import DVSGesture as TonicDVSGesture

    class DVSGesture(TonicDVSGesture):  # tonic's folder is the class's name
        def _check_exists(self) -> bool:
            extracted = Path(self.location_on_system, self.folder_name)
            return super()._check_exists() or any(extracted.glob("*/*.npy"))

        def download(self) -> None:
            if not download:
                raise _NotDownloading
            super().download()

    return DVSGesture


def tonic_save_to(root: str | Path) -> Path | None:
    """The folder to hand tonic (``save_to``, which holds ``DVSGesture/``): ``root`` or, when ``root`` is the
    ``DVSGesture`` folder itself, its parent; None when neither holds a split."""
    root = Path(root)
    for save_to in (root, root.parent if root.name == TONIC_FOLDER else None):
        if save_to is not None and any((save_to / TONIC_FOLDER / f).is_dir() for f in SPLIT_FOLDERS.values()):
            return save_to
    return None


@functools.lru_cache(maxsize=4)
def tonic_dataset(save_to: str, split: str, download: bool = False):
    """tonic's DVSGesture for ``split`` under ``save_to`` (one per process: a trial loads by index)."""
    cls = _dataset_class(download)
    try:
        return cls(save_to, train=split == "train")
    except _NotDownloading:
        return None
    except Exception as exc:  # noqa: BLE001 - urllib, tarfile and tonic's own checks raise many kinds
        url = cls.train_url if split == "train" else cls.test_url
        raise InputError(f"tonic could not download DVS128 Gesture's {split} split from {url} ({exc}): download "
                         f"{SPLIT_FOLDERS[split]}.tar.gz from there and extract it into "
                         f"{Path(save_to) / TONIC_FOLDER}/.") from None


def download_dvs_gesture(root: str | Path) -> Path:
    """Let tonic download and extract both splits into ``root/DVSGesture`` (nothing happens for a split that is
    there already)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for split in SPLIT_FOLDERS:
        tonic_dataset(str(root), split, download=True)
    return root / TONIC_FOLDER


def tonic_sample_count(save_to: str | Path, split: str) -> int:
    dataset = tonic_dataset(str(save_to), split)
    return 0 if dataset is None else len(dataset)


class TonicSampleSource(EventSource):
    """Sample ``index`` of tonic's DVSGesture as an event source: ``dataset[index]`` (events with t in µs, the
    class index); the whole sample is labelled with its class."""

    format_name = "tonic DVSGesture sample"

    def __init__(self, save_to: str | Path, split: str, index: int):
        dataset = tonic_dataset(str(save_to), split)
        if dataset is None or not 0 <= index < len(dataset):
            raise InputError(f"tonic's DVSGesture has no {split} sample {index} under {save_to}.")
        self.path = Path(dataset.data[index])
        try:
            events, target = dataset[index]
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.path} is not a readable tonic DVSGesture sample ({exc}).") from None
        events = np.sort(events, order="t", kind="stable")
        self._events = make_events(events["t"], events["x"], events["y"], events["p"])
        labels = []
        if 0 <= int(target) < len(GESTURE_CLASSES) and self._events.shape[0]:
            t = self._events["timestamp"]
            labels = [LabelInterval(int(target), 0, int(t[-1] - t[0]) + 1)]
        super().__init__(DVS128, labels)

    def _raw_batches(self):
        for start in range(0, self._events.shape[0], 100_000):
            yield self._events[start : start + 100_000].copy()

    def describe(self) -> str:
        return str(self.path)
