"""ONNX export of ONE streaming time step with the model's state as explicit inputs and outputs.

The exported graph is ``(frame, state_0, ..., state_k) -> (logits, new_state_0, ..., new_state_k,
spike_counts)``:

- ``frame``: float32 ``[batch, 2, H, W]`` event counts (one frame per row);
- ``state_i``: the model's flat state (:func:`evapp.snn.state.get_state` order: membranes, readout
  accumulators, SGLFormer's ring buffer), each with the batch as dim 0; a reset is the ``fill`` value recorded
  for each state in ``onnx.json`` (0 for every model in the zoo);
- ``logits``: ``[batch, K]``, exactly what ``model.step`` returns;
- ``new_state_i``: the state after the step, to be fed back as ``state_i`` next step;
- ``spike_counts``: ``[batch, L]`` spikes emitted in this step by each of the L neuron layers (float32, exact
  integers); divided by ``spike_neurons`` of ``onnx.json`` it gives the per-layer firing rate. It is the
  exported form of the torch neurons' spike recording, which itself mutates Python attributes and is
  therefore switched off while tracing.

The batch axis is dynamic (``staggered:K`` runs K rows). The graph is made by PyTorch's TorchScript-based
exporter (``dynamo=False``; the dynamo exporter needs onnxscript, which evapp does not depend on).
Opset 17 by default: the newest opset that both ONNX Runtime's CUDA provider and TensorRT >= 8.6 accept
for every operator used here (https://onnxruntime.ai/docs/reference/compatibility.html,
https://github.com/onnx/onnx-tensorrt/blob/main/docs/operators.md).
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import InputError
from ..snn.neurons import BaseNode
from ..snn.state import get_state, set_spike_recording, set_state, state_specs, stateful_modules

__all__ = ["DEFAULT_OPSET", "StepWrapper", "export_onnx", "export_step", "read_meta", "spike_layers", "weights_digest"]

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
SUPPORTED_OPSETS = (17, 18)
ONNX_FILE = "model.onnx"
META_FILE = "onnx.json"


def spike_layers(model: nn.Module) -> list[tuple[str, BaseNode]]:
    """The neuron layers in ``model.modules()`` order: the columns of ``spike_counts``."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, BaseNode)]


class StepWrapper(nn.Module):
    """``forward(frame, *state) -> (logits, *new_state, spike_counts)``: one pure, stateless step.

    Sets the model's state from the inputs, calls ``model.step`` and returns the logits, the new flat state
    and the per-row, per-layer spike counts (collected by forward hooks on the neurons, so nothing in the
    model is mutated in place and no Python counter is touched). Used for export and, eagerly, as the
    torch reference in the parity tests.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.n_state = sum(len(m.state_tensors()) for _, m in stateful_modules(model))
        self._layers = [m for _, m in spike_layers(model)]

    def forward(self, frame: Tensor, *state: Tensor):
        spikes: dict[int, Tensor] = {}

        def hook(mod, inp, out):
            # multi-step mode gives [1, B, ...], single-step [B, ...]; count per row
            s = out[0] if mod.step_mode == "m" else out
            spikes[id(mod)] = s.flatten(1).sum(1)

        handles = [m.register_forward_hook(hook) for m in self._layers]
        try:
            set_state(self.model, list(state))
            logits = self.model.step(frame)
            new_state = get_state(self.model)
        finally:
            for h in handles:
                h.remove()
        counts = torch.stack([spikes[id(m)] for m in self._layers], 1)
        return (logits, *new_state, counts)


def _io_names(n_state: int) -> tuple[list[str], list[str]]:
    inputs = ["frame"] + [f"state_{i}" for i in range(n_state)]
    outputs = ["logits"] + [f"new_state_{i}" for i in range(n_state)] + ["spike_counts"]
    return inputs, outputs


def _dtype_name(dt: torch.dtype) -> str:
    return str(dt).replace("torch.", "")


def export_step(model: nn.Module, opset: int = DEFAULT_OPSET, batch: int = 2) -> tuple[bytes, dict]:
    """Export ``model``'s single step; returns the ONNX bytes and the ``onnx.json`` metadata dict.

    ``batch`` is the tracing batch (2, so that no size-1 broadcasting gets baked in); the exported batch
    axis is dynamic. The model is exported in eval mode on the CPU with spike recording off; its own state
    and mode are left as they were (a copy is traced).
    """
    import copy

    if opset not in SUPPORTED_OPSETS:
        raise ValueError(f"opset {opset} is not supported; use one of {SUPPORTED_OPSETS}")
    m = copy.deepcopy(model).cpu().eval()
    set_spike_recording(m, False)
    specs = state_specs(m, batch)
    wrapper = StepWrapper(m).eval()
    inputs, outputs = _io_names(wrapper.n_state)
    _fixed_adaptive_pools(m, batch)
    g = torch.Generator().manual_seed(0)
    frame = torch.poisson(torch.full((batch, *m.input_shape), 0.2), generator=g)
    state = [torch.full(s.shape, s.fill, dtype=s.dtype) for s in specs]
    with torch.no_grad():
        ref = wrapper(frame, *state)
    dynamic = {name: {0: "batch"} for name in inputs + outputs}
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings about Python-constant shapes (T=1 per step) and the
        # TorchScript exporter's deprecation notice
        torch.onnx.export(
            wrapper,
            (frame, *state),
            buf,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    layers = spike_layers(m)
    meta = {
        "format": "evapp-onnx-step/1",
        "file": ONNX_FILE,
        "opset": opset,
        "torch": torch.__version__,
        "model": m.cfg.name,
        "config": m.cfg.to_dict(),
        "batch_axis": 0,
        "inputs": [{"name": "frame", "shape": ["batch", *m.input_shape], "dtype": "float32"}]
        + [
            {"name": inputs[i + 1], "state": s.name, "shape": ["batch", *s.shape[1:]], "dtype": _dtype_name(s.dtype),
             "fill": s.fill}
            for i, s in enumerate(specs)
        ],
        "outputs": [{"name": "logits", "shape": ["batch", m.cfg.num_classes], "dtype": "float32"}]
        + [
            {"name": outputs[i + 1], "state": s.name, "shape": ["batch", *s.shape[1:]], "dtype": _dtype_name(s.dtype),
             "feeds": inputs[i + 1]}
            for i, s in enumerate(specs)
        ]
        + [{"name": "spike_counts", "shape": ["batch", len(layers)], "dtype": "float32"}],
        "spike_layers": [n for n, _ in layers],
        # neurons per row of each layer, from the probe step: spike_counts / spike_neurons = firing rate
        "spike_neurons": [int(t.shape[1:].numel()) for t in _layer_sizes(m, layers, batch)],
    }
    assert len(ref) == len(outputs)
    return buf.getvalue(), meta


def _fixed_adaptive_pools(model: nn.Module, batch: int) -> None:
    """Replace each ``AdaptiveAvgPool2d`` whose input size divides its output size by the equal ``AvgPool2d``.

    The TorchScript exporter cannot export an adaptive pool whose input shape it loses track of (SAFormer's
    pool sits behind a reshape with the dynamic batch); the input size is fixed per model, so a plain average
    pool with kernel = stride = in / out computes the same means."""
    pools = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
    if not pools:
        return
    sizes: dict[int, tuple[int, int]] = {}
    handles = [m.register_forward_hook(lambda mod, inp, out: sizes.__setitem__(id(mod), inp[0].shape[-2:]))
               for _, m in pools]
    try:
        specs = state_specs(model, batch)
        with torch.no_grad():
            StepWrapper(model)(torch.zeros(batch, *model.input_shape), *[torch.full(s.shape, s.fill) for s in specs])
    finally:
        for h in handles:
            h.remove()
    for name, m in pools:
        out = m.output_size if isinstance(m.output_size, tuple) else (m.output_size, m.output_size)
        (h, w) = sizes[id(m)]
        if out[0] and out[1] and h % out[0] == 0 and w % out[1] == 0:
            k = (h // out[0], w // out[1])
            parent, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, leaf, nn.AvgPool2d(k, k))


def _layer_sizes(model: nn.Module, layers, batch: int) -> list[Tensor]:
    """One probe step's spike tensor of each layer, as ``[B, ...]`` (for the neuron counts)."""
    seen: dict[int, Tensor] = {}

    def hook(mod, inp, out):
        seen[id(mod)] = out[0] if mod.step_mode == "m" else out

    handles = [m.register_forward_hook(hook) for _, m in layers]
    try:
        wrapper = StepWrapper(model)
        specs = state_specs(model, batch)
        with torch.no_grad():
            wrapper(torch.zeros(batch, *model.input_shape), *[torch.full(s.shape, s.fill) for s in specs])
    finally:
        for h in handles:
            h.remove()
    return [seen[id(m)] for _, m in layers]


def weights_digest(path: str | Path | None) -> str | None:
    """sha256 of a weights file (None for random initialisation): ties an ONNX export to its weights."""
    if path is None:
        return None
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_onnx(
    model: nn.Module, out_dir: str | Path, opset: int = DEFAULT_OPSET, weights: str | Path | None = None
) -> tuple[Path, Path]:
    """Export and write ``model.onnx`` and ``onnx.json`` into ``out_dir`` (created if missing); nothing else.

    ``weights`` (the file the model's weights came from, if any) is recorded with its sha256 so that the ORT
    engine uses this export only for the same weights. The graph is checked with ``onnx.checker`` before
    anything is written."""
    import onnx

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"Cannot create the output folder {out} ({exc.strerror}).") from None
    if not out.is_dir():
        raise InputError(f"{out} is not a folder.")
    data, meta = export_step(model, opset)
    meta["weights"] = {"file": str(weights) if weights else None, "sha256": weights_digest(weights)}
    onnx.checker.check_model(onnx.load_from_string(data))
    onnx_path, meta_path = out / ONNX_FILE, out / META_FILE
    try:
        onnx_path.write_bytes(data)
        meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    except OSError as exc:
        raise InputError(f"Cannot write into {out} ({exc.strerror}); choose another folder with --out.") from None
    log.info("wrote %s (%.1f MB) and %s", onnx_path, len(data) / 1e6, meta_path)
    return onnx_path, meta_path


def read_meta(folder: str | Path) -> dict:
    """``onnx.json`` of an artifact folder."""
    path = Path(folder) / META_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path} does not exist; run 'evapp export NAME' first.") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is not a readable onnx.json ({exc}).") from None
