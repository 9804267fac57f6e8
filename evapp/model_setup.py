"""The composition root: what the user chose (a model, weights, policy, device, engine, options) becomes a
runnable :class:`ModelSetup`: the engine, the decoder, the class names and the frames the model needs.

Every consumer builds models here and nowhere else: ``evapp replay``, ``live``, ``eval-stream``, ``bench``,
the window (when the user switches model) and the tests. The CLI only parses options into a
:class:`ModelChoice`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from evapp.binning import FrameSpec
from evapp.decoder import Decoder, DecoderSettings
from evapp.errors import InputError, as_input_error

log = logging.getLogger(__name__)

# Frames made when no model runs (``--no-model``): the README's defaults.
FRAMES_ONLY = FrameSpec((128, 128), 5000)


@dataclass(frozen=True)
class TorchOptions:
    """The torch engine's fast paths (README, Deployment)."""

    precision: str = "fp32"
    compile: bool = False
    cuda_graph: bool = False

    @property
    def any(self) -> bool:
        return self != EXACT_EAGER


EXACT_EAGER = TorchOptions()  # the default: fp32, eager, no graph


@dataclass(frozen=True)
class ModelChoice:
    """A model as the user names it. ``name``: an artifact's name, an artifact folder, or a zoo architecture
    (None: no model, frames only); ``policy`` None: the artifact's default policy (else ``window``);
    ``events_per_frame`` / ``input_size``: the user's -N / --input-size (None: the model's)."""

    name: str | None
    weights: str | None = None
    policy: str | None = None
    device: str = "auto"
    engine: str = "torch"
    torch: TorchOptions = EXACT_EAGER
    decoder_overrides: Mapping = field(default_factory=dict)
    events_per_frame: int | None = None
    input_size: int | None = None

    def switched(self, name: str | None, policy: str | None, device: str, engine: str = "torch") -> ModelChoice:
        """Another model, as the window's model row asks: the weights and -N / --input-size were the first
        model's and do not carry over; the torch fast paths apply to the torch engine only."""
        return dataclasses.replace(self, name=name, weights=None, policy=policy, device=device, engine=engine,
                                   torch=self.torch if engine == "torch" else EXACT_EAGER,
                                   events_per_frame=None, input_size=None)


@dataclass(frozen=True)
class ModelSetup:
    """A model ready to stream: the engine (None: frames only), its decoder and class names, and the frame spec
    the pipeline must bin with (the model's training frames)."""

    name: str | None
    engine: object | None  # evapp.engine.base.StreamingEngine
    decoder: Decoder | None
    class_names: tuple[str, ...]
    frame_spec: FrameSpec
    governor: object | None = None  # evapp.engine.auto_policy.AutoPolicy under --policy auto

    @classmethod
    def frames_only(cls, frame_spec: FrameSpec = FRAMES_ONLY) -> ModelSetup:
        return cls(None, None, None, (), frame_spec)

    @property
    def policy_text(self) -> str:
        """What runs now: ``staggered:4``, or ``auto: staggered:4`` while --policy auto chooses."""
        if self.engine is None:
            return "none"
        return f"auto: {self.engine.policy_text}" if self.governor is not None else self.engine.policy_text

    @property
    def engine_kind(self) -> str | None:
        return self.engine.kind if self.engine is not None else None


# The shipped model that keeps up with a camera, and evaluates the demo in well under two minutes, on a 2-core CPU
# (README, "Two commands" and "Real-time measurements"): the default where answers must come in real time.
CPU_REALTIME_MODEL = "saformer-2-256"


def resolve_model_name(name: str | None, no_model: bool = False, realtime_on: str | None = None) -> str | None:
    """``name`` if given, else the best shipped artifact (None with ``no_model`` or when none ships). With
    ``realtime_on`` a device (live, the window, the demo) that resolves to a CPU: the shipped model that keeps up
    there, if it ships."""
    if name or no_model:
        return name
    from evapp.engine.loading import default_model_name, find_artifact

    name = default_model_name()
    if name and realtime_on is not None and find_artifact(CPU_REALTIME_MODEL) is not None and _on_cpu(realtime_on):
        name = CPU_REALTIME_MODEL
    if name:
        log.info("using the default model %s (choose another with --model, or --no-model for frames only)", name)
    return name


def _on_cpu(device: str) -> bool:
    if device == "cpu":
        return True
    from evapp.engine.torch_engine import resolve_device

    with as_input_error(RuntimeError):
        return resolve_device(device).type == "cpu"


def build_model_setup(choice: ModelChoice) -> ModelSetup:
    """Load the model, check the user's frame options against it, and build its engine and decoder.

    ``engine`` ``onnx`` runs the exported step with ONNX Runtime (the artifact's model.onnx when it was exported
    from these weights, else an in-memory export)."""
    if choice.weights and not choice.name:
        raise InputError("--weights needs --model NAME.")
    if not choice.name:
        return ModelSetup.frames_only(FrameSpec(choice.input_size or FRAMES_ONLY.input_size[0],
                                                choice.events_per_frame or FRAMES_ONLY.events_per_frame))
    if choice.engine == "onnx" and choice.torch.any:
        raise InputError("--precision, --compile and --cuda-graph apply to --engine torch.")
    from evapp.engine.loading import load

    loaded = load(choice.name, choice.weights)
    spec = frame_spec_for(choice, loaded)
    default = loaded.artifact.policy if loaded.artifact else "window"
    policy = choice.policy or default
    auto = policy == "auto"
    if auto:  # a stream-trained model runs persistent; the others start at the most accurate rung
        from evapp.engine.auto_policy import ladder

        policy = "persistent" if default == "persistent" else ladder(loaded.cfg.T)[0]
    with as_input_error():
        if choice.engine == "onnx":
            from evapp.engine.onnx_engine import OnnxEngine

            engine = OnnxEngine.for_loaded(loaded, device=choice.device, policy=policy, frame_spec=spec)
        else:
            from evapp.engine.torch_engine import TorchEngine

            opts = choice.torch
            engine = TorchEngine(loaded.model, device=choice.device, policy=policy, precision=opts.precision,
                                 compile=opts.compile, cuda_graph=opts.cuda_graph, frame_spec=spec)
    governor = None
    if auto and engine.policy == "staggered":
        if engine.can_change_policy and not choice.torch.cuda_graph:
            from evapp.engine.auto_policy import AutoPolicy

            governor = AutoPolicy(engine)
        else:
            log.warning("--policy auto needs the torch engine without --cuda-graph to change K while streaming; "
                        "running %s", default)
            if default != engine.policy_text:
                return build_model_setup(dataclasses.replace(choice, policy=default))
    return ModelSetup(choice.name, engine, _decoder(loaded.artifact, choice.decoder_overrides),
                      tuple(loaded.cfg.class_names), spec, governor)


def frame_spec_for(choice: ModelChoice, loaded) -> FrameSpec:
    """A trained artifact's frames, refusing other -N or --input-size; an untrained model's config, with the
    user's -N if given (warned)."""
    from evapp.engine.artifact import check_pipeline

    size = (choice.input_size, choice.input_size) if choice.input_size is not None else None
    n = choice.events_per_frame
    if loaded.artifact is not None:
        check_pipeline(loaded.artifact, events_per_frame=n, input_size=size)
        return loaded.artifact.preprocessing.frames
    cfg = loaded.cfg
    if size is not None and size != tuple(cfg.input_size):
        raise InputError(f"{choice.name} takes {cfg.input_size[0]}x{cfg.input_size[1]} input, "
                         f"not {choice.input_size}x{choice.input_size}.")
    if n is not None and n != cfg.events_per_frame:
        log.warning("%s was configured for N=%d events per frame; using N=%d.", choice.name, cfg.events_per_frame, n)
    return FrameSpec(tuple(cfg.input_size), n or cfg.events_per_frame)


def decoder_for(name: str | None, overrides: Mapping | None = None) -> Decoder:
    """The model artifact's decoder settings (or the defaults), with the command line's overrides."""
    from evapp.engine.loading import find_artifact

    return _decoder(find_artifact(name) if name else None, overrides)


def _decoder(artifact, overrides: Mapping | None) -> Decoder:
    return Decoder(DecoderSettings.from_dict({**(artifact.decoder if artifact else {}), **(overrides or {})}))
