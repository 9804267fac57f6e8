"""Model benchmark: ms per step, firing rate per neuron layer, theoretical energy per step.

Energy uses the 45 nm model of Horowitz (ISSCC 2014) as SGLFormer does (papers/000 section 2.5, after
Zhou et al. 2023): E_MAC = 4.6 pJ, E_AC = 0.9 pJ. The first layer (it sees the real-valued count frame)
costs MACs; later layers cost ACs = synaptic ops x firing rate of their input. Here that rule is applied
per executed op, measured by hooks over a few streaming steps:

- Conv2d/Linear/MatMul whose input is non-negative integers (spikes, or spike sums on SGLFormer's
  residual stream): ACs = dense MACs x mean input (a count of n spikes costs n accumulates);
- if both operands of a MatMul are spike-like: ACs = MACs x rate_a x rate_b (independence);
- real-valued inputs (the first layer, SpikingResformer's real-valued head): MACs. BN is folded (free).

It counts what one streaming ``step`` executes, per sample, so SGLFormer's STB head (re-applied to the ring
buffer every step) is counted each step. Untrained weights are BN-calibrated on synthetic frames first so
that firing rates are realistic; pass a loaded model to measure trained weights.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from evapp.machine import describe_machine
from evapp.tables import format_rows

from ..nets import calibrate_bn, count_params, create_model
from ..nets.layers import MatMul
from ..snn.state import firing_rates, reset_spike_counts, set_spike_recording
from ..testing import synthetic_frames

__all__ = ["E_AC_PJ", "E_MAC_PJ", "bench_models", "format_model_bench", "op_counts"]

E_MAC_PJ = 4.6  # 45 nm, 32-bit float multiply-accumulate (Horowitz 2014; papers/000 section 2.5)
E_AC_PJ = 0.9  # 45 nm, 32-bit float accumulate


def _spike_like(x: Tensor) -> bool:
    return bool((x >= 0).all()) and bool((x == torch.round(x)).all())


@torch.inference_mode()
def op_counts(model: nn.Module, frames: Tensor) -> dict[str, float]:
    """MACs and ACs per step per sample, averaged over stepping ``frames`` [T, B, 2, H, W] from reset."""
    stats = {"mac": 0.0, "ac": 0.0}
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear))
    B = frames.shape[1]

    def dense_macs(m: nn.Module, x: Tensor, y: Tensor) -> float:
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            return y.numel() * (m.in_channels // m.groups) * kh * kw
        return y.numel() * m.in_features

    def hook(m, inp, out):
        x = inp[0]
        macs = dense_macs(m, x, out) / B
        if m is not first and _spike_like(x):
            stats["ac"] += macs * float(x.float().mean())
        else:
            stats["mac"] += macs

    def mm_hook(m, inp, out):
        a, b = inp
        macs = a.numel() * b.shape[-1] / B
        sa, sb = _spike_like(a), _spike_like(b)
        if sa and sb:
            stats["ac"] += macs * float(a.float().mean()) * float(b.float().mean())
        elif sa or sb:
            stats["ac"] += macs * float((a if sa else b).float().mean())
        else:
            stats["mac"] += macs

    handles = [
        m.register_forward_hook(mm_hook if isinstance(m, MatMul) else hook)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear | MatMul)
    ]
    try:
        model.reset()
        for t in range(frames.shape[0]):
            model.step(frames[t])
    finally:
        for h in handles:
            h.remove()
        model.reset()
    T = frames.shape[0]
    mac, ac = stats["mac"] / T, stats["ac"] / T
    return {"mac": mac, "ac": ac, "energy_uj": (mac * E_MAC_PJ + ac * E_AC_PJ) * 1e-6}


def bench_models(
    names: Sequence[str | nn.Module],
    device: str | torch.device = "cpu",
    batch_sizes: Sequence[int] = (1, 4),
    warmup: int = 5,
    iters: int = 50,
    seed: int = 0,
    neurobench_frames: str | Path | None = None,
) -> list[dict]:
    """Time ``model.step`` per model and batch size; one dict per (model, batch).

    ``names`` holds artifact names (their trained weights), registry names (untrained weights, BN-calibrated) or
    ready models (used as given). With ``neurobench_frames`` (a labelled recording) each row also carries
    NeuroBench's metrics at the model's default policy (``evapp.bench.neurobench``).
    Keys: model, device, batch, params, ms_median, ms_p99, spike_rate (mean over layers), spike_rates
    (per layer), mac_m / ac_m (millions per step per sample), energy_uj (per step per sample).
    """
    from ..engine.torch_engine import resolve_device

    dev = resolve_device(device)
    rows = []
    for entry in names:
        model, weights, policy, spec = _model_of(entry, seed)
        model = model.to(dev).eval()
        cfg = model.cfg
        harness = _neurobench(model, spec, policy, neurobench_frames) if neurobench_frames else None
        frames = synthetic_frames(cfg.T, max(batch_sizes), cfg.input_size, cfg.events_per_frame, seed, dev)
        ops = op_counts(model, frames[:, :1])
        for bs in batch_sizes:
            x = frames[:, :bs]
            times = []
            set_spike_recording(model, True)
            with torch.inference_mode():
                model.reset()
                for i in range(warmup + iters):
                    if i % cfg.T == 0:
                        model.reset()
                    if i == warmup:
                        reset_spike_counts(model)
                    t0 = time.perf_counter()
                    model.step(x[i % cfg.T])
                    if dev.type == "cuda":
                        torch.cuda.synchronize(dev)
                    if i >= warmup:
                        times.append((time.perf_counter() - t0) * 1e3)
            rates = firing_rates(model)
            set_spike_recording(model, False)
            reset_spike_counts(model)
            model.reset()
            rows.append(
                {
                    "model": cfg.name,
                    "device": str(dev),
                    "batch": bs,
                    "params": count_params(model),
                    "ms_median": float(np.median(times)),
                    "ms_p99": float(np.percentile(times, 99)),
                    "spike_rate": float(np.mean(list(rates.values()))) if rates else None,
                    "spike_rates": rates,
                    "mac_m": ops["mac"] / 1e6,
                    "ac_m": ops["ac"] / 1e6,
                    "energy_uj": ops["energy_uj"],
                    "weights": weights,
                    "neurobench": harness,
                }
            )
    return rows


def _model_of(entry, seed: int):
    """(model, what its weights are, its default policy, its frame spec): a shipped artifact's trained weights,
    else the registry's untrained architecture with BatchNorm calibrated on synthetic frames."""
    from ..engine.loading import find_artifact, load
    from ..engine.torch_engine import model_frame_spec

    if not isinstance(entry, str):
        return entry, "as given", "window", model_frame_spec(entry.cfg)
    artifact = find_artifact(entry)
    if artifact is not None and artifact.weights_path.is_file():
        loaded = load(entry)
        return loaded.model, "trained (artifact)", artifact.policy, artifact.preprocessing.frames
    model = create_model(entry)
    calib = synthetic_frames(model.cfg.T, 2, model.cfg.input_size, model.cfg.events_per_frame, seed=seed + 1)
    calibrate_bn(model, calib)
    return model, "untrained, BN-calibrated", "window", model_frame_spec(model.cfg)


def _neurobench(model, spec, policy: str, recording) -> dict:
    """NeuroBench's metrics on T-frame samples of ``recording`` (one per labelled gesture), on the CPU."""
    from ..engine.base import parse_policy
    from .neurobench import neurobench_metrics, recording_samples

    samples, frame_rate = recording_samples(recording, spec, model.cfg.T)
    device = next(model.parameters()).device
    result = neurobench_metrics(model.cpu(), samples, execution_rate_hz=frame_rate * parse_policy(policy)[1],
                                policy=policy, frames=f"{Path(recording).name}, N={spec.events_per_frame}")
    model.to(device)
    return result.to_dict()


def format_model_bench(rows: list[dict], per_layer: bool = False) -> str:
    """Text table (with the machine line) of :func:`bench_models` rows; ``per_layer`` adds firing rates."""
    table = [dict(r, params_m=r["params"] / 1e6) for r in rows]
    cols = [
        ("model", "model", "s"),
        ("device", "device", "s"),
        ("batch", "batch", "d"),
        ("params_m", "params (M)", ".3f"),
        ("ms_median", "ms/step median", ".2f"),
        ("ms_p99", "ms/step p99", ".2f"),
        ("spike_rate", "spike rate", ".3f"),
        ("mac_m", "MAC (M)", ".1f"),
        ("ac_m", "AC (M)", ".1f"),
        ("energy_uj", "energy uJ/step", ".1f"),
    ]
    text = describe_machine() + "\n" + format_rows(table, cols)
    text += "\nenergy: 45 nm model, E_MAC 4.6 pJ, E_AC 0.9 pJ, per step per sample (SGLFormer paper, sec. 2.5)"
    harness = [dict(r["neurobench"], model=r["model"], weights=r["weights"]) for r in rows
               if r.get("neurobench") and r["batch"] == rows[0]["batch"]]
    if harness:
        for h in harness:
            h.update(footprint_kb=h["footprint_bytes"] / 1e3, state_kb=h["state_bytes"] / 1e3,
                     macs_m=h["effective_macs_per_frame"] / 1e6, acs_m=h["effective_acs_per_frame"] / 1e6,
                     dense_m=h["dense_ops_per_frame"] / 1e6)
        text += "\n\nNeuroBench metrics (the neurobench package's classes), on " + harness[0]["frames"].split(",")[0]
        text += ":\n" + format_rows(harness, [
            ("model", "model", "s"), ("weights", "weights", "s"), ("footprint_kb", "footprint kB", ".1f"),
            ("state_kb", "+ state kB", ".1f"), ("activation_sparsity", "act. sparsity", ".3f"),
            ("macs_m", "eff. MACs/frame (M)", ".3f"), ("acs_m", "eff. ACs/frame (M)", ".2f"),
            ("dense_m", "dense ops/frame (M)", ".1f"), ("policy", "policy", "s"),
            ("execution_rate_hz", "exec. rate Hz", ".1f")])
    if per_layer:
        seen = set()
        for r in rows:
            if r["model"] in seen:
                continue
            seen.add(r["model"])
            text += f"\n\n{r['model']} firing rate per neuron layer:\n"
            text += "\n".join(f"  {k:<48s} {v:.4f}" for k, v in r["spike_rates"].items())
    return text
