"""The composition root: a ModelChoice becomes a ModelSetup the same way for every command and the window."""

from __future__ import annotations

import pytest

from evapp.binning import FrameSpec
from evapp.errors import InputError
from evapp.model_setup import EXACT_EAGER, ModelChoice, TorchOptions, build_model_setup


def test_no_model_makes_frames_with_the_users_settings():
    setup = build_model_setup(ModelChoice(None, events_per_frame=700, input_size=64))
    assert setup.engine is None and setup.decoder is None and setup.class_names == ()
    assert setup.frame_spec == FrameSpec((64, 64), 700) and setup.policy_text == "none"
    assert build_model_setup(ModelChoice(None)).frame_spec == FrameSpec((128, 128), 5000)
    with pytest.raises(InputError, match="--weights needs --model"):
        build_model_setup(ModelChoice(None, weights="w.safetensors"))


def test_an_untrained_model_declares_its_frames_on_the_engine(caplog):
    setup = build_model_setup(ModelChoice("saformer-2-256", policy="staggered:4", device="cpu",
                                          events_per_frame=3000))
    assert setup.engine.frame_spec == setup.frame_spec == FrameSpec((128, 128), 3000)
    assert setup.engine.kind == "torch" and setup.policy_text == "staggered:4" and len(setup.class_names) == 11
    assert "using N=3000" in caplog.text
    with pytest.raises(InputError, match="takes 128x128 input, not 64x64"):
        build_model_setup(ModelChoice("saformer-2-256", device="cpu", input_size=64))
    with pytest.raises(InputError, match="apply to --engine torch"):
        build_model_setup(ModelChoice("saformer-2-256", engine="onnx", torch=TorchOptions(precision="bf16")))
    with pytest.raises(InputError, match="There is no model named 'nope'"):
        build_model_setup(ModelChoice("nope"))


def test_a_shipped_artifact_brings_its_frames_policy_and_decoder(shipped_models):
    from evapp.engine.loading import find_artifact, model_names

    artifact = find_artifact("saformer-2-256")
    setup = build_model_setup(ModelChoice("saformer-2-256", device="cpu", decoder_overrides={"hold": 4}))
    assert setup.frame_spec == artifact.preprocessing.frames and setup.frame_spec.reference_px_per_input_px
    assert setup.policy_text == artifact.policy
    assert setup.decoder.settings.hold == 4
    assert setup.decoder.settings.idle_below_fps == artifact.decoder["idle_below_fps"]
    with pytest.raises(InputError, match="trained on frames of"):
        build_model_setup(ModelChoice("saformer-2-256", device="cpu", events_per_frame=123))
    names = model_names()  # what the window's model box offers, as `evapp models` lists them
    assert names[:2] == ["saformer-2-256", "sglformer-3-256"] and "spikingresformer-dvsg" in names
    assert len(names) == len(set(names))


def test_switching_model_keeps_the_command_lines_decoder_and_torch_options():
    first = ModelChoice("sglformer-3-256", weights="w.safetensors", policy="window", device="cpu",
                        torch=TorchOptions(precision="bf16"), decoder_overrides={"hold": 3}, events_per_frame=900,
                        input_size=128)
    torch_choice = first.switched("saformer-2-256", "persistent", "auto", "torch")
    assert (torch_choice.name, torch_choice.weights, torch_choice.policy, torch_choice.device) == (
        "saformer-2-256", None, "persistent", "auto")
    assert torch_choice.events_per_frame is None and torch_choice.input_size is None
    assert torch_choice.torch.precision == "bf16" and torch_choice.decoder_overrides == {"hold": 3}
    assert first.switched("saformer-2-256", None, "cpu", "onnx").torch == EXACT_EAGER


def test_models_and_assets_are_found_without_a_checkout(tmp_path, monkeypatch):
    """An installed package has no checkout beside it: the folders are then looked up in the current directory."""
    import evapp.paths as paths

    monkeypatch.delenv("EVAPP_MODELS", raising=False)
    monkeypatch.delenv("EVAPP_ASSETS", raising=False)
    assert paths.models_dir() == paths.CHECKOUT / "models"
    monkeypatch.setattr(paths, "CHECKOUT", tmp_path / "site-packages")
    monkeypatch.chdir(tmp_path)
    assert paths.models_dir() == tmp_path / "models" and paths.assets_dir() == tmp_path / "assets"
    monkeypatch.setenv("EVAPP_MODELS", str(tmp_path / "elsewhere"))
    assert paths.models_dir() == tmp_path / "elsewhere"
