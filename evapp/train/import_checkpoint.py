"""``evapp import-checkpoint``: a checkpoint saved by the official SGLFormer or SpikingResformer training code
becomes an evapp artifact (config, weights, card) that runs everywhere an artifact runs.

The checkpoint is read with ``torch.load(weights_only=True)``: tensors and plain values only, plus
``argparse.Namespace`` (SGLFormer's ``train.py`` saves its arguments in every checkpoint; a namespace rebuilds
as an attribute holder and runs no code). The tensors are renamed by the explicit name tables of
:mod:`evapp.nets.official`. The artifact carries the official preprocessing: ``clip`` framing (each gesture split
into T frames of equal event count, SpikingJelly's ``split_by='number'``, for ``evapp eval`` on DVS128 Gesture),
and for SpikingResformer counts at 128x128 resized to 64x64 bilinearly with antialiasing; streams are framed by
count with the architecture's N.
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from evapp.errors import InputError


@dataclass(frozen=True)
class OfficialArch:
    registry: str  # the evapp architecture whose graph equals the official code's
    repository: str
    input_size: tuple[int, int]
    binned_size: tuple[int, int] | None  # counted at this size, then resized (the official pipeline)
    default_T: int  # the official DVS128 Gesture config's T where the weights do not fix it


OFFICIAL = {
    "sglformer": OfficialArch("sglformer-3-256", "ZhangHanN1/SGLFormer (dvs128-gesture)", (128, 128), None, 16),
    # configs/direct_training/dvs128gesture.yaml: T 16, input 3x64x64 (the third channel is added by the model)
    "spikingresformer": OfficialArch("spikingresformer-dvsg", "xyshi2000/SpikingResformer (spikingresformer_dvsg)",
                                     (64, 64), (128, 128), 16),
}


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The state dict of an official checkpoint (``{"model": state, ...}`` or a bare state dict) and the plain
    values saved beside it (epoch, best accuracy)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist.")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # a refusal says enough
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()[0][:200]
        raise InputError(f"{path.name} holds more than tensors and plain values, which evapp refuses to unpickle "
                         f"(torch.load with weights_only=True: {reason}).") from None
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise InputError(f"{path.name} is not a PyTorch checkpoint ({str(exc).splitlines()[0][:200]}).") from None
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise InputError(f"{path.name} holds no state dict of tensors (expected the official training code's "
                         "{'model': state_dict, ...} or a bare state dict).")
    extra = {k: v for k, v in obj.items() if k != "model" and isinstance(v, int | float | str)} \
        if state is not obj else {}
    return state, extra


def import_checkpoint(arch: str, path: str | Path, out: str | Path, T: int | None = None,
                      events_per_frame: int | None = None) -> dict:
    """Write the artifact ``out`` from the official checkpoint ``path``; returns a summary."""
    from evapp.binning import FrameSpec
    from evapp.decoder import DecoderSettings
    from evapp.engine.artifact import Preprocessing, write_artifact
    from evapp.events import GESTURE_CLASSES
    from evapp.machine import describe_machine
    from evapp.nets import create_model, get_config
    from evapp.nets.official import NameTableError, convert_state

    official = OFFICIAL[arch]
    state, extra = read_checkpoint(path)
    classes_key = "head.weight" if arch == "sglformer" else "classifier.weight"
    if classes_key not in state:
        raise InputError(f"{Path(path).name} is not a {arch} checkpoint (it has no '{classes_key}').")
    num_classes = int(state[classes_key].shape[0])
    if arch == "sglformer" and "full_size_conv.weight" in state:
        T_weights = int(state["full_size_conv.weight"].shape[-1])  # the STB head's kernel spans T frames
        if T is not None and T != T_weights:
            raise InputError(f"The checkpoint's head was trained on T={T_weights} frames, not --T {T}.")
        T = T_weights
    T = T or official.default_T
    names = GESTURE_CLASSES if num_classes == len(GESTURE_CLASSES) else tuple(f"class_{i}" for i in range(num_classes))
    n = events_per_frame or get_config(official.registry).events_per_frame
    model = create_model(official.registry, T=T, num_classes=num_classes, class_names=names, events_per_frame=n)
    try:
        model.load_state_dict(convert_state(arch, state, model))
    except NameTableError as exc:
        raise InputError(f"{Path(path).name} does not match the official {arch} model: {exc}.") from None
    for name, buffer in model.named_buffers():
        if name.endswith("fr_initialized"):
            buffer.fill_(True)  # the firing rates are the trained ones
    bad = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise InputError(f"{Path(path).name} has non-finite values in '{bad[0]}'.")
    model.eval()
    spec = FrameSpec(official.input_size, n, "clip", 1.0, official.binned_size)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    training = {"imported_from": {"file": str(Path(path).resolve()), "sha256": digest, "architecture": arch,
                                  "repository": official.repository, "tensors": len(state), **extra},
                "command": "evapp import-checkpoint", "machine": describe_machine(),
                "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    metrics = {"data_kind": "DVS128 Gesture (the official training; not measured by evapp)"}
    decoder = DecoderSettings().to_dict()
    card = import_card(Path(out).name, arch, official, model.cfg, spec, training["imported_from"])
    write_artifact(out, model, Preprocessing(spec, T, names), policy="window", decoder=decoder, metrics=metrics,
                   training=training, card=card)
    return {"artifact": str(out), "architecture": arch, "T": T, "classes": num_classes, "tensors": len(state),
            "events_per_frame": n, "framing": "clip", "binned_size": list(official.binned_size or official.input_size)}


def import_card(name: str, arch: str, official: OfficialArch, cfg, spec, source: dict) -> str:
    resize = (f"events counted at {spec.binned_size[0]}x{spec.binned_size[1]} and resized to "
              f"{spec.input_size[0]}x{spec.input_size[1]} bilinearly with antialiasing (torchvision "
              "`Resize(antialias=True)`, as the official input pipeline; the model adds the third channel, the sum of "
              "the polarities)" if spec.binned_size else
              f"events counted at {spec.input_size[0]}x{spec.input_size[1]}")
    lines = [
        f"# {name}: model card (imported)", "",
        f"Weights trained by the official {arch} code ({official.repository}), imported by `evapp import-checkpoint`"
        f" from `{Path(source['file']).name}` (sha256 `{source['sha256'][:16]}...`, {source['tensors']} tensors"
        + (f", epoch {source['epoch']}" if "epoch" in source else "") + ").", "",
        f"- architecture `{cfg.name}` (`evapp/nets/{'sglformer' if arch == 'sglformer' else 'spikingresformer'}.py`,"
        f" the official graph), T = {cfg.T}, {cfg.num_classes} classes",
        f"- frames: the papers' `clip` framing (each gesture split into T frames of equal event count, SpikingJelly "
        f"`split_by='number'`), {resize}; `evapp eval` frames each gesture so. A stream has no known gesture end: "
        f"replay and live frame it by count, N = {spec.events_per_frame} events per frame.",
        "- accuracy: whatever the official training reached on DVS128 Gesture; evapp has not measured these "
        "weights (run `evapp eval NAME --data DVS128_GESTURE_DIR`).",
    ]
    return "\n".join(lines) + "\n"
