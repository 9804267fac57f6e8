"""Training and clip evaluation: data (recordings -> frames as live -> clips), augmentation, the loop."""

from evapp.train.data import Framing, find_trials, frame_trial, load_split
from evapp.train.loop import TrainSettings, evaluate_clips, train

__all__ = ["Framing", "TrainSettings", "evaluate_clips", "find_trials", "frame_trial", "load_split", "train"]
