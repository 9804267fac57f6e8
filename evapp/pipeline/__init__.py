"""The pipeline: source -> binner -> engine -> decoder -> records, on a reader and an inference thread."""

from evapp.pipeline.core import Pipeline
from evapp.pipeline.records import FrameRecord, Label, Prediction, Record, Summary
from evapp.sources.replay import ReplayOptions

__all__ = ["FrameRecord", "Label", "Pipeline", "Prediction", "Record", "ReplayOptions", "Summary"]
