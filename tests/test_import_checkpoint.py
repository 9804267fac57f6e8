"""`evapp import-checkpoint`: checkpoints written here with the official training code's key names and shapes
(tests/data, facts read off the released models' state_dict) import as artifacts whose tensors are the source's
and whose answers are the source weights' answers; anything but tensors and plain values is refused."""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from evapp.cli.main import main

DATA = Path(__file__).parent / "data"


def official_state(arch: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under the official names and shapes; BatchNorm statistics and firing rates plausible."""
    facts = json.loads((DATA / f"official_{arch}_keys.json").read_text())["tensors"]
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape, dtype in facts:
        if dtype == "torch.int64":
            state[name] = torch.tensor(1000 + len(state), dtype=torch.int64).reshape(shape)
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=g) + 0.5
        elif name.endswith(("firing_rate_x", "firing_rate_attn")):
            state[name] = torch.rand(shape, generator=g) * 0.3 + 0.05
        elif name.endswith(".w"):  # PLIF: 1/tau = sigmoid(w)
            state[name] = torch.randn(shape, generator=g) * 0.1
        else:
            state[name] = torch.randn(shape, generator=g) * 0.2
    return state


def save_official(path: Path, state: dict, arch: str) -> Path:
    """As the official scripts save: SGLFormer's train.py adds its argparse arguments."""
    checkpoint = {"model": state, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4}]}, "epoch": 191,
                  "max_acc1": 97.2}
    if arch == "sglformer":
        checkpoint["args"] = argparse.Namespace(T=16, lr=5e-3, model="sglformer")
    torch.save(checkpoint, path)
    return path


def fingerprints(tensors) -> list[str]:
    return sorted(hashlib.sha1(t.detach().contiguous().numpy().tobytes() + str(tuple(t.shape)).encode()).hexdigest()
                  for t in tensors)


@pytest.mark.parametrize("arch", ["sglformer", "spikingresformer"])
def test_an_official_checkpoint_imports_with_every_tensor_and_its_preprocessing(arch, tmp_path, monkeypatch, capsys):
    from safetensors.torch import load_file

    from evapp.engine.artifact import read_artifact

    state = official_state(arch)
    ckpt = save_official(tmp_path / "checkpoint_max_test_acc1.pth", state, arch)
    out = tmp_path / "models" / f"{arch}-paper"
    assert main(["import-checkpoint", arch, str(ckpt), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["tensors"] == len(state) == (171 if arch == "sglformer" else 249) and summary["T"] == 16
    weights = load_file(str(out / "weights.safetensors"))
    # every source tensor is in the artifact, bit for bit, once (evapp's own flag of trained firing rates aside)
    ours = [v for k, v in weights.items() if not k.endswith("fr_initialized")]
    assert fingerprints(ours) == fingerprints(state.values())
    artifact = read_artifact(out)
    frames = artifact.preprocessing.frames
    assert frames.mode == "clip" and artifact.preprocessing.T == 16
    if arch == "sglformer":  # spot checks of the name table against both codes
        assert torch.equal(weights["local_block.dw2.conv.weight"], state["blocks.0.loc.dwconv3x3.conv3x3.weight"])
        assert torch.equal(weights["ssa.2.proj.bn.running_var"], state["blocks.0.ssa3.proj_conv.bn.running_var"])
        assert torch.equal(weights["head.conv.weight"], state["full_size_conv.weight"])
        assert frames.input_size == (128, 128) and frames.binned_size is None
    else:
        assert torch.equal(weights["stages.1.0.conv.bn.weight"], state["layers.1.0.norm.bn.weight"])
        assert torch.equal(weights["stages.2.3.w.bn.bias"], state["layers.2.3.norm.bn.bias"])
        assert torch.equal(weights["stages.2.4.act2.w"], state["layers.2.4.conv.0.0.w"])
        assert frames.input_size == (64, 64) and frames.binned_size == (128, 128)
        assert all(bool(v) for k, v in weights.items() if k.endswith("fr_initialized"))
    card = (out / "README.md").read_text()
    assert "imported" in card and hashlib.sha256(ckpt.read_bytes()).hexdigest()[:16] in card

    # the answer is the source weights' answer: the classifier the source's head tensors make, applied to what
    # reaches the imported model's classifier
    monkeypatch.setenv("EVAPP_MODELS", str(tmp_path / "models"))
    from evapp.engine.loading import load

    model = load(out.name).model.eval()
    head = model.head.fc if arch == "sglformer" else model.fc
    seen = []
    handle = head.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    H = frames.input_size[0]
    clip = (torch.rand(16, 1, 2, H, H, generator=torch.Generator().manual_seed(1)) < 0.05).float() * 3
    with torch.no_grad():
        logits = model(clip)
    handle.remove()
    if arch == "sglformer":
        reference = F.linear(seen[0], state["head.weight"], state["head.bias"])
    else:
        reference = F.linear(seen[0], state["classifier.weight"]).reshape(16, 1, -1).mean(0)
    torch.testing.assert_close(logits, reference, rtol=0, atol=1e-6)
    assert logits.abs().sum() > 0


def test_the_official_spikingresformer_resize_is_bilinear_with_antialiasing():
    """128 -> 64 with antialiasing is not a 2x2 block sum: it weighs a 4x4 neighbourhood (1, 3, 3, 1) / 8 per
    axis, so the total count falls to a quarter (evapp's own binner sums 2x2 blocks)."""
    from evapp.binning import FrameSpec
    from evapp.events import SensorGeometry
    from evapp.testing import random_stream

    events = random_stream(40_000, 128, 128, seed=3)
    geometry = SensorGeometry(128, 128, "DVS128")
    official = FrameSpec((64, 64), 2000, binned_size=(128, 128)).binner(geometry).push(events)
    full = FrameSpec((128, 128), 2000).binner(geometry).push(events)
    summed = FrameSpec((64, 64), 2000).binner(geometry).push(events)
    assert official.counts.shape == summed.counts.shape == (20, 2, 64, 64)
    np.testing.assert_array_equal(official.t_end_us, full.t_end_us)
    c = full.counts[0, 0].astype(np.float64)
    w = np.array([1, 3, 3, 1]) / 8.0  # an interior output pixel (away from the renormalised border)
    assert official.counts[0, 0, 10, 20] == pytest.approx(w @ c[19:23, 39:43] @ w, abs=1e-5)
    assert official.counts.sum() == pytest.approx(full.counts.sum() / 4, rel=1e-3)  # borders renormalise
    assert summed.counts.sum() == full.counts.sum()


def test_a_checkpoint_with_code_in_it_is_refused_in_one_sentence(tmp_path, capsys):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"model": {"w": torch.zeros(1)}, "hook": Payload()}, f)
    assert main(["import-checkpoint", "sglformer", str(path), "--out", str(tmp_path / "m")]) == 2
    captured = capsys.readouterr()
    assert "this must never run" not in captured.out
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "evil.pth holds more than tensors and plain values" in err[0]
    wrong = tmp_path / "wrong.pth"
    torch.save({"model": {"fc.weight": torch.zeros(11, 192)}}, wrong)
    assert main(["import-checkpoint", "sglformer", str(wrong), "--out", str(tmp_path / "m")]) == 2
    assert "is not a sglformer checkpoint" in capsys.readouterr().err
    half = official_state("sglformer")
    del half["blocks.0.ssa2.k_conv.bn.weight"]
    torch.save({"model": half}, wrong)
    assert main(["import-checkpoint", "sglformer", str(wrong), "--out", str(tmp_path / "m")]) == 2
    assert "lacks 1 tensor(s) of the model (first: 'ssa.1.k.bn.weight')" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
