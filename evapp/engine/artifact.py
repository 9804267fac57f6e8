"""Model artifacts (DESIGN section 2): a folder ``models/<name>/`` that says how to rebuild the model AND how
to make its frames.

    config.json          {"format", "model": ModelConfig, "preprocessing": {...}, "policy", "decoder", "metrics",
                          "training"}
    weights.safetensors  the weights (no pickle on load)
    README.md            the model card (command, data, seed, hardware, time, metrics)
    model.onnx, onnx.json  optional ONNX export (``evapp export``)

``preprocessing`` is what the pipeline must reproduce: input size, polarity channels, events per frame N at
the input resolution, T, the framing, class names, and the training sensor's density in sensor pixels per
input pixel (the reference for cross-sensor thinning). :func:`check_pipeline` refuses a pipeline that would
feed the model different frames.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evapp.binning import FrameSpec
from evapp.errors import InputError

FORMAT = "evapp-model/1"


def _optional_float(value) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class Preprocessing:
    """What the artifact says about its inputs: the frame contract, the clip length T and the class names."""

    frames: FrameSpec
    T: int
    class_names: tuple[str, ...]
    polarity_channels: int = 2

    def to_dict(self) -> dict:
        return {**self.frames.to_dict(), "polarity_channels": self.polarity_channels, "T": self.T,
                "class_names": list(self.class_names)}

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        binned = d.get("binned_size")
        frames = FrameSpec(tuple(d["input_size"]), int(d["events_per_frame"]), d.get("framing", "count"),
                           _optional_float(d.get("reference_px_per_input_px", 1.0)),
                           tuple(binned) if binned is not None else None, d.get("view", "centre"))
        return cls(frames, int(d["T"]), tuple(d["class_names"]), int(d.get("polarity_channels", 2)))


@dataclass
class Artifact:
    folder: Path
    config: Any  # evapp.nets.ModelConfig
    preprocessing: Preprocessing
    policy: str = "window"
    decoder: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def weights_path(self) -> Path:
        return self.folder / "weights.safetensors"


# What a config may ask for before anything is built: far past every architecture evapp ships, short of sizes
# that would allocate gigabytes from a few bytes of JSON.
BOUNDS = {"T": (1, 256), "input side": (8, 1024), "events_per_frame": (1, 10_000_000), "embed dim": (1, 2048),
          "depth": (1, 64), "heads": (1, 64), "classes": (1, 1000), "mlp_ratio": (1, 16)}


def out_of_bounds(cfg, pre: Preprocessing) -> str | None:
    """The first setting of a config outside ``BOUNDS`` (or not a whole number), else None."""
    checks = [("T", cfg.T), ("T", pre.T), ("events_per_frame", cfg.events_per_frame),
              ("events_per_frame", pre.frames.events_per_frame), ("classes", cfg.num_classes),
              ("mlp_ratio", cfg.mlp_ratio)]
    checks += [("input side", v) for v in (*cfg.input_size, *pre.frames.input_size)]
    checks += [("embed dim", v) for v in cfg.embed_dims] + [("depth", v) for v in cfg.depths]
    checks += [("heads", v) for v in cfg.num_heads]
    for name, value in checks:
        low, high = BOUNDS[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            return f"{name} {value!r} is outside {low}..{high:,}"
    if not cfg.embed_dims or len(cfg.embed_dims) != len(cfg.depths) or len(cfg.depths) != len(cfg.num_heads):
        return "embed_dims, depths and num_heads must be lists of one length"
    density = pre.frames.reference_px_per_input_px
    if density is not None and not (isinstance(density, int | float) and 0 < density < 1e6):
        return f"reference_px_per_input_px {density!r} is not a positive number"
    return None


def read_artifact(folder: str | Path) -> Artifact:
    from evapp.nets import ModelConfig, list_models

    folder = Path(folder)
    path = folder / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"a JSON {type(data).__name__}, not an object")
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {FORMAT!r}")
        cfg = ModelConfig.from_dict(data["model"])
        pre = Preprocessing.from_dict(data["preprocessing"])
    except FileNotFoundError:
        raise InputError(f"{folder} is not a model artifact (no config.json).") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{path} is not a valid evapp model config ({exc}).") from None
    from evapp.decoder import DecoderSettings

    problem = out_of_bounds(cfg, pre) or DecoderSettings.problem(data.get("decoder", {}))
    if problem:
        raise InputError(f"{path} is not a usable evapp model config: {problem}.")
    if cfg.name not in list_models():
        raise InputError(f"{path} describes architecture '{cfg.name}', which this evapp does not have.")
    if (pre.T, pre.frames.input_size, len(pre.class_names), pre.frames.events_per_frame) != (
            cfg.T, tuple(cfg.input_size), cfg.num_classes, cfg.events_per_frame):
        raise InputError(f"{path} contradicts itself: preprocessing and model disagree on T, input size, classes or "
                         "events per frame.")
    return Artifact(folder, cfg, pre, data.get("policy", "window"), data.get("decoder", {}),
                    data.get("metrics", {}), data.get("training", {}))


def write_artifact(folder: str | Path, model, preprocessing: Preprocessing, *, policy: str = "window",
                   decoder: dict | None = None, metrics: dict | None = None, training: dict | None = None,
                   card: str | None = None) -> Path:
    """Write config.json, weights.safetensors and (if given) the model card README.md into ``folder``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "weights.safetensors"))
    data = {"format": FORMAT, "model": model.cfg.to_dict(), "preprocessing": preprocessing.to_dict(),
            "policy": policy, "decoder": decoder or {}, "metrics": metrics or {}, "training": training or {}}
    (folder / "config.json").write_text(json.dumps(data, indent=2) + "\n")
    if card is not None:
        (folder / "README.md").write_text(card)
    return folder


def check_pipeline(artifact: Artifact, *, events_per_frame: int | None = None, input_size=None,
                   class_names=None) -> None:
    """Refuse a pipeline that would feed the model frames unlike its training frames, or other classes."""
    pre = artifact.preprocessing
    trained = pre.frames
    if events_per_frame is not None and events_per_frame != trained.events_per_frame:
        raise InputError(f"Model '{artifact.name}' was trained on frames of {trained.events_per_frame} events; "
                         f"-N {events_per_frame} would feed it frames unlike its training frames "
                         "(leave -N out, or retrain with 'evapp train -N').")
    if input_size is not None and tuple(input_size) != trained.input_size:
        raise InputError(f"Model '{artifact.name}' takes {trained.input_size[0]}x{trained.input_size[1]} input, not "
                         f"{input_size[0]}x{input_size[1]}.")
    if class_names is not None and tuple(class_names) != tuple(pre.class_names):
        raise InputError(f"Model '{artifact.name}' knows {len(pre.class_names)} classes "
                         f"({', '.join(pre.class_names[:3])}, ...), not the {len(class_names)} this data uses.")
