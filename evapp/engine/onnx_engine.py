"""ONNX Runtime inference engine for the exported step (evapp.engine.export), same interface and policies
as :class:`evapp.engine.TorchEngine` (the policy code is the shared :class:`StreamingEngine`).

State never leaves the device: the state tensors live in two sets of ORT-owned buffers (``OrtValue``) on the
execution provider's device and each step reads one set and writes the other through a prebuilt IOBinding
(ping-pong), so per step only the frame goes in and the logits and the per-layer spike counts (a few hundred
bytes) come back. A reset binds a third, never-written set holding the reset values as the next step's input
(no copy at all); a per-row reset (``staggered:K``) runs a tiny ONNX graph on the same provider,
``state * keep + fill * (1 - keep)`` with ``keep`` the row mask, writing the other set - so that also
stays on the device, with one general mechanism for every provider.

Providers, in order: TensorRT, CUDA, CPU, as far as this onnxruntime build has them and they start (a build
may list CUDA without a GPU present; ORT then falls back, and the providers actually used are logged).
TensorRT builds an engine for the batch on the first step (slow once) and caches it in
``$XDG_CACHE_HOME/evapp/tensorrt``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..binning import FrameSpec
from .base import StreamingEngine
from .export import META_FILE, ONNX_FILE, export_step, read_meta

__all__ = ["OnnxEngine", "choose_providers"]

log = logging.getLogger(__name__)

_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def _trt_cache() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "evapp", "tensorrt")


def choose_providers(device: str = "auto") -> list:
    """Provider list for ``device`` ``auto`` (TensorRT, CUDA, CPU, those this build has), ``cuda`` or ``cpu``."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device not in ("auto", "cuda"):
        raise ValueError(f"unknown device {device!r}; use auto, cpu or cuda")
    out: list = []
    if "TensorrtExecutionProvider" in have:
        out.append(("TensorrtExecutionProvider", {"trt_engine_cache_enable": True,
                                                  "trt_engine_cache_path": _trt_cache()}))
    if "CUDAExecutionProvider" in have:
        out.append("CUDAExecutionProvider")
    if device == "cuda" and not out:
        raise RuntimeError("device 'cuda' was requested but this onnxruntime build has no CUDA provider")
    return out + ["CPUExecutionProvider"]


def _gpu_present() -> bool:
    """Whether a CUDA GPU is visible (without initialising ORT's CUDA provider on a machine without one)."""
    try:
        import torch

        if torch.cuda.is_available():
            return True
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/nvidia0")


def _reset_graph(meta: dict, opset: int) -> bytes:
    """ONNX graph ``(keep[B], state_i...) -> (state_i * keep + fill_i * (1 - keep))...`` for per-row reset."""
    import onnx
    from onnx import TensorProto, helper

    types = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE, "float16": TensorProto.FLOAT16}
    ins = [helper.make_tensor_value_info("keep", TensorProto.FLOAT, ["batch"])]
    outs, nodes, inits = [], [], []
    states = [i for i in meta["inputs"] if "state" in i]
    for i, s in enumerate(states):
        ty = types[s["dtype"]]
        rank = len(s["shape"])
        ins.append(helper.make_tensor_value_info(s["name"], ty, s["shape"]))
        outs.append(helper.make_tensor_value_info(f"out_{i}", ty, s["shape"]))
        inits.append(helper.make_tensor(f"axes_{i}", TensorProto.INT64, [rank - 1], list(range(1, rank))))
        inits.append(helper.make_tensor(f"fill_{i}", ty, [], [float(s.get("fill", 0.0))]))
        nodes += [
            helper.make_node("Cast", ["keep"], [f"k_{i}"], to=ty),
            helper.make_node("Unsqueeze", [f"k_{i}", f"axes_{i}"], [f"kb_{i}"]),
            helper.make_node("Sub", [s["name"], f"fill_{i}"], [f"d_{i}"]),
            helper.make_node("Mul", [f"d_{i}", f"kb_{i}"], [f"m_{i}"]),
            helper.make_node("Add", [f"m_{i}", f"fill_{i}"], [f"out_{i}"]),
        ]
    graph = helper.make_graph(nodes, "evapp_reset_rows", ins, outs, inits)
    # IR version 8 (ONNX 1.13): what every ORT >= 1.14 reads; the onnx package would default to its newest
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


class OnnxEngine(StreamingEngine):
    """Run an exported step under a streaming policy with ONNX Runtime.

    ``model`` is the ONNX file (path or bytes) and ``meta`` its ``onnx.json`` dict; see :meth:`from_folder`
    and :meth:`from_model`. ``device``: ``auto`` (TensorRT, CUDA, CPU), ``cuda`` or ``cpu``.
    ``intra_op_threads``: ORT's intra-op thread pool; default on the CPU provider: all cores but one, which is
    left to the pipeline's reader/binner thread (as the torch engine does; README, Deployment). Elsewhere
    ORT's default.
    ``optimization``: ORT graph optimisation level ``disable|basic|extended|all``.
    """

    kind = "onnx"

    def __init__(
        self,
        model: str | Path | bytes,
        meta: dict,
        device: str = "auto",
        policy: str = "window",
        record_spikes: bool = True,
        intra_op_threads: int | None = None,
        optimization: str = "all",
        frame_spec: FrameSpec | None = None,
    ) -> None:
        import onnxruntime as ort

        from ..nets import ModelConfig

        self.meta = meta
        self.cfg = ModelConfig.from_dict(meta["config"])
        super().__init__(self.cfg.T, policy, tuple(meta["inputs"][0]["shape"][1:]),
                         frame_spec or FrameSpec(tuple(self.cfg.input_size), int(self.cfg.events_per_frame)))
        self.record_spikes = record_spikes
        device = str(device)
        providers = choose_providers(device)
        if device == "auto" and not _gpu_present():
            providers = ["CPUExecutionProvider"]
        so = ort.SessionOptions()
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[optimization]
        if intra_op_threads is None and providers == ["CPUExecutionProvider"]:
            intra_op_threads = max(1, (os.cpu_count() or 2) - 1)
        if intra_op_threads:
            so.intra_op_num_threads = int(intra_op_threads)
        self.intra_op_threads = intra_op_threads
        so.log_severity_level = 3  # provider fall-back chatter; what is used is logged below
        src = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(src, so, providers=providers)
        self.providers = self.session.get_providers()
        if device == "cuda" and not any(p in self.providers for p in _GPU_PROVIDERS):
            raise RuntimeError("device 'cuda' was requested but ONNX Runtime could not start a GPU provider")
        on_gpu = any(p in self.providers for p in _GPU_PROVIDERS)
        self.device = dev = "cuda" if on_gpu else "cpu"  # where the state lives (ORT's device name)
        log.info("onnx engine: %s on providers %s", self.cfg.name, ", ".join(self.providers))
        # the reset graph is a few elementwise ops: CUDA (or CPU) runs it; a TensorRT engine for it is not worth
        # building
        reset_providers = [p for p in providers if not (isinstance(p, tuple) and p[0].startswith("Tensorrt"))]
        self._reset_session = ort.InferenceSession(_reset_graph(meta, int(meta["opset"])), so,
                                                   providers=reset_providers)

        K = self.K
        states = [i for i in meta["inputs"] if "state" in i]
        self._state_names = [s["name"] for s in states]
        self._new_names = [o["name"] for o in meta["outputs"] if "feeds" in o]
        dtypes = [np.dtype(s["dtype"]) for s in states]
        shapes = [(K, *s["shape"][1:]) for s in states]
        fills = [float(s.get("fill", 0.0)) for s in states]

        def dev_value(arr: np.ndarray):
            return ort.OrtValue.ortvalue_from_numpy(arr, dev, 0)

        # three state sets on the device: 0 and 1 ping-pong, 2 holds the reset values and is never written
        self._sets = [
            [dev_value(np.full(sh, f, dt)) for sh, f, dt in zip(shapes, fills, dtypes, strict=True)]
            for _ in range(3)
        ]
        self._frame_host = np.zeros((K, *self.input_shape), np.float32)
        self._frame = dev_value(self._frame_host) if on_gpu else ort.OrtValue.ortvalue_from_numpy(self._frame_host)
        n_layers = len(meta["spike_layers"])
        self._logits_host = np.zeros((K, self.cfg.num_classes), np.float32)
        self._spikes_host = np.zeros((K, n_layers), np.float32)
        # outputs bound to host buffers: ORT writes the logits and spike counts straight into them
        logits_v = ort.OrtValue.ortvalue_from_numpy(self._logits_host)
        spikes_v = ort.OrtValue.ortvalue_from_numpy(self._spikes_host)
        self._neurons = np.asarray(meta["spike_neurons"], np.float64) * K
        self._spike_sum = np.zeros(n_layers, np.float64)
        self._spike_steps = 0

        def binding(src: int, dst: int):
            b = self.session.io_binding()
            b.bind_ortvalue_input("frame", self._frame)
            for name, v in zip(self._state_names, self._sets[src], strict=True):
                b.bind_ortvalue_input(name, v)
            b.bind_ortvalue_output("logits", logits_v)
            for name, v in zip(self._new_names, self._sets[dst], strict=True):
                b.bind_ortvalue_output(name, v)
            b.bind_ortvalue_output("spike_counts", spikes_v)
            return b

        self._bindings = {(s, d): binding(s, d) for s in (0, 1, 2) for d in (0, 1) if s != d}
        self._keep_host = np.ones(K, np.float32)
        self._keep = dev_value(self._keep_host)

        def reset_binding(src: int, dst: int):
            b = self._reset_session.io_binding()
            b.bind_ortvalue_input("keep", self._keep)
            for name, v in zip(self._state_names, self._sets[src], strict=True):
                b.bind_ortvalue_input(name, v)
            for i, v in enumerate(self._sets[dst]):
                b.bind_ortvalue_output(f"out_{i}", v)
            return b

        self._reset_bindings = {(0, 1): reset_binding(0, 1), (1, 0): reset_binding(1, 0)}
        self._cur = 2  # the set holding the current state
        self._run_options = ort.RunOptions()
        self.reset()

    # -- constructors ---------------------------------------------------------------------------------
    @classmethod
    def from_folder(cls, folder: str | Path, **kw) -> OnnxEngine:
        """Load ``model.onnx`` + ``onnx.json`` written by ``evapp export``."""
        folder = Path(folder)
        meta = read_meta(folder)
        return cls(folder / meta.get("file", ONNX_FILE), meta, **kw)

    @classmethod
    def from_model(cls, model, opset: int | None = None, **kw) -> OnnxEngine:
        """Export ``model``'s step in memory (nothing is written) and run it."""
        from .export import DEFAULT_OPSET

        data, meta = export_step(model, opset or DEFAULT_OPSET)
        return cls(data, meta, **kw)

    @classmethod
    def for_loaded(cls, loaded, **kw) -> OnnxEngine:
        """Engine for an :class:`evapp.engine.loading.LoadedModel`: its folder's ``model.onnx`` when that export
        was made from the same weights (sha256 in ``onnx.json``), else an in-memory export of the model."""
        from .export import weights_digest
        from .loading import models_dir

        folder = loaded.artifact.folder if loaded.artifact is not None else models_dir() / loaded.cfg.name
        if cls.artifact(folder):
            meta = read_meta(folder)
            from ..nets import ModelConfig

            same = ModelConfig.from_dict(meta["config"]) == loaded.cfg and (meta.get("weights") or {}).get(
                "sha256") == weights_digest(loaded.weights)
            if same:
                return cls(folder / meta.get("file", ONNX_FILE), meta, **kw)
            log.info("%s was exported from other weights or config; exporting in memory", folder / ONNX_FILE)
        else:
            log.info("no ONNX export in %s; exporting %s in memory (evapp export saves one)", folder, loaded.cfg.name)
        return cls.from_model(loaded.model, **kw)

    @staticmethod
    def artifact(folder: str | Path) -> bool:
        folder = Path(folder)
        return (folder / ONNX_FILE).is_file() and (folder / META_FILE).is_file()

    # -- backend primitives ---------------------------------------------------------------------------
    def _stage(self, frame) -> None:
        if not isinstance(frame, np.ndarray):
            frame = frame.detach().cpu().numpy()
        self._frame_host[...] = frame  # broadcast into every row
        if self.device != "cpu":
            self._frame.update_inplace(self._frame_host)

    def _reset_rows(self, row: int | None) -> None:
        if row is None:
            self._cur = 2  # next step reads the reset values
            return
        if self._cur == 2:
            return  # already all reset
        self._keep_host[:] = 1.0
        self._keep_host[row] = 0.0
        if self.device != "cpu":
            self._keep.update_inplace(self._keep_host)
        dst = 1 - self._cur
        b = self._reset_bindings[(self._cur, dst)]
        self._reset_session.run_with_iobinding(b, self._run_options)
        self._cur = dst

    def _step(self) -> None:
        dst = 1 if self._cur != 1 else 0
        self.session.run_with_iobinding(self._bindings[(self._cur, dst)], self._run_options)
        self._cur = dst
        if self.record_spikes:
            self._spike_sum += self._spikes_host.sum(0)
            self._spike_steps += 1

    def _logits(self, row: int) -> np.ndarray:
        return self._logits_host[row].copy()

    def _take_spike_rate(self) -> float | None:
        if not self.record_spikes or self._spike_steps == 0:
            return None
        rate = float(np.mean(self._spike_sum / (self._neurons * self._spike_steps)))
        self._clear_spike_counts()
        return rate

    def _clear_spike_counts(self) -> None:
        self._spike_sum[:] = 0.0
        self._spike_steps = 0

    # -- introspection --------------------------------------------------------------------------------
    def state(self) -> list[np.ndarray]:
        """Host copies of the current state tensors (for tests and debugging; not used while streaming)."""
        return [v.numpy() for v in self._sets[self._cur]]

    def last_spike_counts(self) -> np.ndarray:
        """``[K, layers]`` spikes emitted by each neuron layer in the last step."""
        return self._spikes_host.copy()
