"""``evapp finetune`` on a collect folder: class rows kept by name, new ones added, the loss falls, the artifact is
complete (card with lineage, held-out metrics, confusion PNG) and runs with its own classes in eval-stream, replay
and the window."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
import torch

from evapp.binning import FrameSpec, Region
from evapp.cli.main import main
from evapp.collect.protocol import CollectPlan, Take
from evapp.collect.session import SessionRecord
from evapp.engine.artifact import Preprocessing, read_artifact, write_artifact
from evapp.events import GESTURE_CLASSES, LabelInterval, SensorGeometry
from evapp.nets import calibrate_bn, create_model
from evapp.simulate.sequence import render_performance
from evapp.sources.aedat3 import write_class_names, write_labels_csv
from evapp.sources.aedat4 import write_aedat4
from evapp.testing import random_stream, synthetic_frames
from evapp.train.finetune import adapted_model, classifier
from tests.conftest import json_lines

BASE_CLASSES = ("hand_clapping", "right_hand_wave", "left_hand_wave")
DATA_CLASSES = ("right_hand_wave", "arm_roll", "hand_clapping")  # one kept row moved, one new, one dropped
N, T = 150, 3


def tiny_model(seed: int):
    """A small saformer on 32x32 input whose normalisation statistics are its data's, as a trained base's are."""
    torch.manual_seed(seed)
    model = create_model("saformer-2-256", num_classes=3, class_names=BASE_CLASSES, embed_dims=(32,), num_heads=(2,),
                         input_size=(32, 32), T=T, events_per_frame=N)
    calibrate_bn(model, synthetic_frames(T, 8, (32, 32), N, seed=1))
    return model


def tiny_base(folder) -> None:
    model = tiny_model(seed=1)
    frames = FrameSpec((32, 32), N, reference_px_per_input_px=16.0)  # a DVS128 onto 32x32: 4x4 pixels each
    write_artifact(folder, model, Preprocessing(frames, T, BASE_CLASSES), policy="persistent")


def collect_folder(folder, takes_per_class: int = 3, seed: int = 0) -> None:
    """What 'evapp collect' writes: a take per file (pause, gesture, pause), labels CSV, classes.json, session.json."""
    plan = CollectPlan(DATA_CLASSES, takes_per_class, take_s=1.0, pause_s=0.4, countdown_s=0.0, seed=seed)
    folder.mkdir(parents=True)
    write_class_names(folder, plan.classes)
    record = SessionRecord(plan, "simulated", [128, 128])
    for take in plan.schedule():
        events, labels, geometry = render_performance(GESTURE_CLASSES.index(take.class_name), seed * 1000 + take.index,
                                                      (128, 128), gesture_s=1.0, pause_s=0.4, subject_seed=7)
        lab = LabelInterval(take.class_id, labels[0].start_us, labels[0].end_us)
        t0 = 1_000_000 * (take.index + 1)
        events["timestamp"] += t0
        write_aedat4(folder / f"{take.stem}.aedat4", events, geometry)
        write_labels_csv(folder / f"{take.stem}_labels.csv", [lab], t0_us=t0)
        record.takes.append({"type": "take", "take": take.index + 1, "round": take.round + 1,
                             "class_id": take.class_id, "class_name": take.class_name, "file": f"{take.stem}.aedat4",
                             "events": int(events.shape[0]), "start_us": lab.start_us + t0, "end_us": lab.end_us + t0,
                             "duration_s": (lab.end_us - lab.start_us) / 1e6})
    record.save(folder)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    tiny_base(root / "models" / "tiny-base")
    collect_folder(root / "takes")
    out = root / "models" / "mine"
    os.environ["EVAPP_MODELS"] = str(root / "models")
    try:
        code = main(["finetune", str(root / "models" / "tiny-base"), "--data", str(root / "takes"), "--out", str(out),
                     "--epochs", "4", "--lr", "3e-3", "--threads", "1", "--interpolate", "0.8"])
    finally:
        del os.environ["EVAPP_MODELS"]
    assert code == 0
    return root, out


def test_classifier_rows_are_kept_by_name_and_new_classes_get_new_rows():
    torch.manual_seed(2)
    base = create_model("saformer-2-256", num_classes=3, class_names=BASE_CLASSES, embed_dims=(32,), num_heads=(2,),
                        input_size=(32, 32), T=T, events_per_frame=N)
    model = adapted_model(base, DATA_CLASSES)
    old, new = classifier(base), classifier(model)
    assert model.cfg.class_names == DATA_CLASSES and new.out_features == 3
    for row, name in enumerate(DATA_CLASSES):
        if name in BASE_CLASSES:
            torch.testing.assert_close(new.weight[row], old.weight[BASE_CLASSES.index(name)])
        else:
            assert not any(torch.equal(new.weight[row], w) for w in old.weight)
    base_state, state = base.state_dict(), model.state_dict()
    head = {"fc.weight", "fc.bias"}
    assert all(torch.equal(base_state[k], state[k]) for k in state if k not in head)


def test_finetune_writes_a_complete_artifact_and_the_loss_falls(tuned):
    root, out = tuned
    artifact = read_artifact(out)
    assert artifact.config.class_names == DATA_CLASSES and artifact.preprocessing.class_names == DATA_CLASSES
    history = artifact.training["history"]
    assert len(history) == 4 and history[-1]["train_loss"] < history[0]["train_loss"]
    lineage = artifact.training["finetune"]
    assert lineage["base"].endswith("tiny-base") and lineage["data"][0]["takes"] == 9
    assert artifact.metrics["held_out_takes"] == 3  # the last take of each class
    assert 0 <= artifact.metrics["clip_accuracy"] <= 1 and len(artifact.metrics["per_class_accuracy"]) == 3
    card = (out / "README.md").read_text()
    assert "new: arm_roll" in card and "dropped: left_hand_wave" in card and "confusion.png" in card
    assert lineage["flip"] == "none" and "mirrored" not in card
    assert artifact.preprocessing.frames.view == lineage["view"] == "whole" and "`whole` view" in card
    assert (out / "confusion.png").stat().st_size > 1000
    assert artifact.decoder["idle_below_fps"] >= 0 and "idle_floor_fps" in artifact.decoder


def test_the_artifact_keeps_the_weight_mix_with_the_base_only_where_the_held_out_takes_allow_it(tuned):
    from safetensors.torch import load_file

    from evapp.engine.loading import load
    from evapp.train.interpolate import HELD_OUT_TOLERANCE, interpolated_state

    root, out = tuned
    mix = read_artifact(out).training["finetune"]["interpolation"]
    assert mix["alpha"] == 0.8
    assert mix["kept"] == (mix["held_out_interpolated"] >= mix["held_out_tuned"] - HELD_OUT_TOLERANCE)
    base, artifact, trained = load(str(root / "models" / "tiny-base")), load(str(out)), load(str(out))
    trained.model.load_state_dict(load_file(str(out / "run" / "best.safetensors")))  # the weights training kept
    expected = interpolated_state(base.model, trained.model, 0.8) if mix["kept"] else trained.model.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in artifact.model.state_dict().items())
    held = read_artifact(out).metrics["clip_accuracy"]
    assert held == mix["held_out_interpolated" if mix["kept"] else "held_out_tuned"]
    card = (out / "README.md").read_text()
    assert ("mixed with the base's weights, 0.8 tuned (WiSE-FT)" in card) == mix["kept"] != ("not kept" in card)


def test_the_tuned_artifact_runs_with_its_classes_in_eval_stream_and_replay(tuned, monkeypatch, capsys):
    root, out = tuned
    monkeypatch.setenv("EVAPP_MODELS", str(root / "models"))
    take = sorted((root / "takes").glob("take-*.aedat4"))[0]
    assert main(["eval-stream", str(take), "--model", "mine", "--json",
                 "--confusion", str(root / "c.png")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["class_names"] == list(DATA_CLASSES) and report["gestures"] == 1
    assert np.asarray(report["confusion"]).shape == (3, 4)
    assert main(["replay", str(take), "--model", str(out), "--headless", "--max-speed"]) == 0
    lines = json_lines(capsys.readouterr().out)
    shown = {x["decision"]["class_name"] for x in lines if x.get("type") == "prediction"}
    assert shown <= set(DATA_CLASSES) | {"idle"} and lines[-1]["type"] == "summary"


def test_the_tuned_artifact_sees_all_of_a_wide_sensor_where_its_base_saw_the_centre(tuned, capsys):
    root, out = tuned
    wide = root / "wide.aedat4"
    write_aedat4(wide, random_stream(60_000, 320, 240, seed=5), SensorGeometry(320, 240))  # a DVXplorer Lite
    summaries = {}
    for model in (out, root / "models" / "tiny-base"):
        assert main(["replay", str(wide), "--model", str(model), "--headless", "--max-speed"]) == 0
        summaries[model.name] = json_lines(capsys.readouterr().out)[-1]
    assert summaries["mine"]["region"] == "0,-40,320,320" and summaries["mine"]["events_outside_region"] == 0
    assert summaries["tiny-base"]["region"] == "40,0,240,240"
    assert 0.2 < summaries["tiny-base"]["events_outside_region"] / 60_000 < 0.3  # a quarter of the width is cut


def test_eval_stream_scores_a_class_the_model_does_not_know_as_missed(tuned, monkeypatch, capsys):
    root, _ = tuned
    monkeypatch.setenv("EVAPP_MODELS", str(root / "models"))
    take = next(p for p in sorted((root / "takes").glob("take-*_arm_roll.aedat4")))
    assert main(["eval-stream", str(take), "--model", "tiny-base", "--json", "--confusion", str(root / "d.png")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["class_names"] == [*BASE_CLASSES, "arm_roll"]  # the model's classes, then the unknown one
    assert np.asarray(report["confusion"]).shape == (4, 4) and report["missed_gestures"] == 1


def test_the_default_deep_training_leaves_the_first_two_convolutions_as_the_base_had_them(tuned):
    """``--train deep`` (the default): the first two convolutions and their norms, running statistics included,
    keep the base's weights; every later layer is trained."""
    from safetensors.torch import load_file

    root, out = tuned
    base, tuned_weights = (load_file(str(f / "weights.safetensors")) for f in (root / "models" / "tiny-base", out))
    frozen = [k for k in base if k.startswith(("sps.convs.0.", "sps.convs.1."))]
    assert {k.rsplit(".", 1)[1] for k in frozen} >= {"running_mean", "running_var"}
    assert len(frozen) == 12 and all(torch.equal(base[k], tuned_weights[k]) for k in frozen)
    moved = [k for k in base if k.startswith("sps.convs.2.") and k.endswith("running_mean")]
    assert moved and not torch.equal(base[moved[0]], tuned_weights[moved[0]])  # a trained layer's statistics adapt
    trained = ["sps.convs.2.conv.weight", "sps.rpe.conv.weight", "blocks.0.mlp.fc1.conv.weight"]
    assert all(not torch.equal(base[k], tuned_weights[k]) for k in trained)
    assert read_artifact(out).training["finetune"]["trainable"] == "deep"


@pytest.mark.parametrize("arch", ["saformer-2-256", "sglformer-3-256"])
def test_deep_freezes_the_layers_before_the_third_convolution_of_each_shipped_architecture(arch):
    from evapp.train.finetune import set_trainable

    model = create_model(arch)
    convs = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    trained = set_trainable(model, "deep")
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(not n.startswith(convs[2]) for n in frozen)
    assert {n.removesuffix(".weight") for n in frozen if n.removesuffix(".weight") in convs} == set(convs[:2])
    assert 0.5 < trained / sum(p.numel() for p in model.parameters()) < 1


def test_bfloat16_steps_write_float32_weights_and_the_loss_falls(tuned, capsys):
    root, _ = tuned
    out = root / "models" / "bf16"
    assert main(["finetune", str(root / "models" / "tiny-base"), "--data", str(root / "takes"), "--out", str(out),
                 "--epochs", "4", "--lr", "3e-3", "--threads", "1", "--precision", "bf16", "--train", "all"]) == 0
    assert json.loads(capsys.readouterr().out)["precision"] == "bf16"
    artifact = read_artifact(out)
    history = artifact.training["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert artifact.training["finetune"]["precision"] == "bf16" and "in bf16" in (out / "README.md").read_text()
    from safetensors.torch import load_file

    assert {v.dtype for v in load_file(str(out / "weights.safetensors")).values()} <= {torch.float32, torch.int64}


def test_without_epochs_the_budget_picks_them_from_a_timed_step_that_changes_no_weight(tuned, capsys):
    from evapp.engine.loading import load
    from evapp.train.data import frame_trials
    from evapp.train.finetune import epochs_in_budget, held_out_split, read_collections
    from evapp.train.loop import Prepared
    from evapp.train.settings import FinetuneSettings, TrainSettings

    root, out = tuned
    model = load(str(out)).model
    collection = read_collections([root / "takes"])
    train_trials, test_trials = held_out_split(collection)
    spec = read_artifact(out).preprocessing.frames
    framed = frame_trials(train_trials + test_trials, spec, T, class_names=DATA_CLASSES, workers=1)
    prepared = Prepared(framed[: len(train_trials)], framed[len(train_trials):], spec, T)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    settings = FinetuneSettings(str(out), (str(root / "takes"),), "unused", minutes=2)
    budget = epochs_in_budget(model, prepared, TrainSettings("m", "d", "o", eval_limit=120), settings, spent_s=30)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert budget["steps_per_epoch"] == 1 and budget["step_s"] > 0
    assert 1 < budget["epochs"] <= 500 and budget["epochs"] * budget["epoch_s"] <= 2 * 60 - 30  # what is planned fits
    tight = epochs_in_budget(model, prepared, TrainSettings("m", "d", "o"), dataclasses.replace(settings, minutes=0.5),
                             spent_s=30)
    assert tight["epochs"] == 1  # never none, even when framing spent the whole budget

    bud = root / "models" / "budget"
    assert main(["finetune", str(root / "models" / "tiny-base"), "--data", str(root / "takes"), "--out", str(bud),
                 "--minutes", "1", "--threads", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    lineage = read_artifact(bud).training["finetune"]
    assert lineage["budget"]["minutes"] == 1 and result["epochs"] == lineage["epochs"] == lineage["budget"]["epochs"]
    assert len(read_artifact(bud).training["history"]) == result["epochs"] >= 1
    assert "as many as fit in 1 minutes" in (bud / "README.md").read_text()
    assert lineage["budget"]["planned"] >= 1


def test_the_budget_replans_from_the_epochs_own_time():
    """After each epoch: as many more epochs as fit in what is left of the budget (less the card's held-out
    check), at the mean time of the epochs so far; none once the budget is spent."""
    import time

    from evapp.train.finetune import budget_replan
    from evapp.train.settings import FinetuneSettings

    settings = FinetuneSettings("base", ("takes",), "out", minutes=1)
    now = time.perf_counter()
    replan = budget_replan({"card_eval_s": 8.0}, settings, started=now)
    assert replan(2, 10.0) == 2 + 10  # 60 x 0.97 - 8 = 50.2 s left, at 5 s an epoch
    assert replan(1, 100.0) == 1  # the epochs so far were slow: stop here
    assert budget_replan({"card_eval_s": 0.0}, settings, started=now - 70)(3, 30.0) == 3  # spent


def test_finetune_refuses_what_is_not_a_collect_folder(tmp_path, capsys):
    tiny_base(tmp_path / "base")
    (tmp_path / "empty").mkdir()
    assert main(["finetune", str(tmp_path / "base"), "--data", str(tmp_path / "empty"), "--out",
                 str(tmp_path / "x")]) == 2
    assert "not an 'evapp collect' folder" in capsys.readouterr().err


def test_rehearsal_mixes_the_base_data_in_labelled_by_the_tuned_classes(tuned, capsys):
    """--rehearse: a dataset of the base's kind (here a synthetic train split with all 11 classes) is framed as the
    takes, labelled by the fine-tuned classes only (the others left unlabelled), and mixed into every epoch."""
    from evapp.simulate.writers import write_dataset
    from evapp.train.finetune import rehearsal_trials

    root, plain = tuned
    write_dataset(root / "rehearse", n_users=3, train_users=2, lightings=("led",), seed=4, gesture_s=0.6,
                  pause_s=0.3, fps=500, split="train")
    spec = read_artifact(plain).preprocessing.frames
    assert [t.name for t in rehearsal_trials(str(root / "rehearse"), 1, spec, T, DATA_CLASSES)] == ["user01_led.aedat"]
    trials = rehearsal_trials(str(root / "rehearse"), None, spec, T, DATA_CLASSES)  # the default: all of them
    assert [t.name for t in trials] == ["user01_led.aedat", "user02_led.aedat"]
    for trial in trials:  # one labelled gesture per tuned class, each labelled by its own name
        assert sorted(cls for _, _, cls in trial.segments()) == [0, 1, 2]
        assert {DATA_CLASSES[lab.class_id] for lab in trial.labels} == set(DATA_CLASSES)
    out = root / "models" / "rehearsed"
    assert main(["finetune", str(root / "models" / "tiny-base"), "--data", str(root / "takes"), "--out", str(out),
                 "--epochs", "4", "--lr", "3e-3", "--threads", "1", "--rehearse", str(root / "rehearse"),
                 "--rehearse-share", "2", "--distill", "1", "--flip", "mirror", "--average", "0.8"]) == 0
    assert json.loads(capsys.readouterr().out)["rehearsal_trials"] == 2
    artifact = read_artifact(out)
    steps = [h["step"] for h in artifact.training["history"]]
    own_windows = 6 * 4  # the 6 takes not held out, 4 windows each (the default --windows-per-gesture)
    assert steps[0] == (own_windows + 2 * own_windows) // 16  # and twice as many rehearsal windows, batches of 16
    assert artifact.training["finetune"]["rehearsal"]["trials"] == ["user01_led.aedat", "user02_led.aedat"]
    assert "rehearsal (against forgetting the base's classes): 2 trials" in (out / "README.md").read_text()
    lineage = artifact.training["finetune"]
    assert lineage["rehearsal"]["distill"] == 1.0 and lineage["flip"] == "mirror"
    card = (out / "README.md").read_text()
    assert "distillation weight 1" in card and "mirrored clips relabelled by name" in card
    assert lineage["average"] == 0.8 and "moving average of the weights (decay 0.8) validated and kept" in card


def test_distillation_teaches_the_base_answers_over_the_shared_classes_on_rehearsal_clips_only():
    """The teacher's rows follow the class names; a student that answers as the base costs nothing, one that
    answers otherwise costs more, and clips that are not rehearsal clips neither count nor reach the weights."""
    from evapp.train.distill import Teacher

    torch.manual_seed(1)
    base = create_model("saformer-2-256", num_classes=3, class_names=BASE_CLASSES, embed_dims=(32,), num_heads=(2,),
                        input_size=(32, 32), T=T, events_per_frame=N)
    student = adapted_model(base, DATA_CLASSES)
    teacher = Teacher.of(base, DATA_CLASSES, weight=1.0)
    assert [DATA_CLASSES[r] for r in teacher.student_rows] == ["right_hand_wave", "hand_clapping"]
    assert [BASE_CLASSES[r] for r in teacher.teacher_rows] == ["right_hand_wave", "hand_clapping"]
    assert not any(p.requires_grad for p in base.parameters())
    x = (torch.rand(T, 4, 2, 32, 32) < 0.2).float()
    rehearsed = torch.tensor([True, True, False, False])
    student.eval()
    same = teacher.loss(x, student(x), rehearsed).detach()
    assert float(same) < 1e-6  # the student still is the base on the classes both know
    with torch.no_grad():
        classifier(student).bias.add_(torch.tensor([3.0, 0.0, -3.0]))  # right_hand_wave over hand_clapping
    logits = student(x)
    assert float(teacher.loss(x, logits, rehearsed).detach()) > 1e-3
    logits.retain_grad()
    teacher.loss(x, logits, rehearsed).backward()
    assert logits.grad[2:].abs().sum() == 0 and logits.grad[:2].abs().sum() > 0
    none = teacher.loss(x, student(x), torch.zeros(4, dtype=torch.bool))
    assert float(none.detach()) == 0.0


def test_rehearsal_refuses_a_folder_that_is_no_dataset(tuned, tmp_path, capsys):
    root, _ = tuned
    assert main(["finetune", str(root / "models" / "tiny-base"), "--data", str(root / "takes"), "--out",
                 str(tmp_path / "x"), "--rehearse", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "nowhere does not exist" in err and "Traceback" not in err
    assert main(["finetune", str(root / "models" / "tiny-base"), "--data", str(root / "takes"), "--out",
                 str(tmp_path / "y"), "--distill", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["evapp: error: --distill teaches the base's answers on the rehearsal clips: give --rehearse "
                   "DATASET too."]


def test_framing_in_worker_processes_gives_the_frames_of_one_process(tuned):
    from evapp.train.data import Trial, frame_trials

    root, out = tuned
    trials = [Trial(p, "train") for p in sorted((root / "takes").glob("take-*.aedat4"))[:3]]
    spec = read_artifact(out).preprocessing.frames
    one, pool = (frame_trials(trials, spec, T, DATA_CLASSES, workers=w) for w in (1, 2))
    assert [t.name for t in pool] == [t.name for t in one]
    for a, b in zip(one, pool, strict=True):
        assert len(a) > T and np.array_equal(a.dense(0, len(a)), b.dense(0, len(b)))
        assert np.array_equal(a.frame_labels, b.frame_labels) and np.array_equal(a.t_end_us, b.t_end_us)


def test_take_stems_name_the_files():
    assert Take(6, 1, 2, "wave").stem == "take-007_wave"


def test_a_custom_class_artifact_exports_and_runs_on_onnx_runtime_with_its_classes(tuned, tmp_path, monkeypatch,
                                                                                   capsys):
    """Export and the ONNX engine with the class list of a collect folder (128x128 input: the export's pooling needs
    the input size the zoo's configs have)."""
    root, _ = tuned
    models = tmp_path / "models"
    model = create_model("saformer-2-256", num_classes=3, class_names=DATA_CLASSES, embed_dims=(32,), num_heads=(2,),
                         T=T, events_per_frame=N)
    frames = FrameSpec((128, 128), N, reference_px_per_input_px=1.0)
    write_artifact(models / "mine-128", model, Preprocessing(frames, T, DATA_CLASSES), policy="persistent")
    monkeypatch.setenv("EVAPP_MODELS", str(models))
    assert main(["export", "mine-128"]) == 0
    meta = json.loads((models / "mine-128" / "onnx.json").read_text())
    assert meta["config"]["num_classes"] == 3 and meta["config"]["class_names"] == list(DATA_CLASSES)
    capsys.readouterr()
    take = sorted((root / "takes").glob("take-*.aedat4"))[1]
    reports = {}
    for engine in ("torch", "onnx"):
        assert main(["eval-stream", str(take), "--model", "mine-128", "--engine", engine, "--device", "cpu", "--json",
                     "--confusion", str(tmp_path / f"{engine}.png")]) == 0
        reports[engine] = json.loads(capsys.readouterr().out)
    assert reports["onnx"]["class_names"] == list(DATA_CLASSES)
    assert reports["onnx"]["frames"] == reports["torch"]["frames"]
    assert reports["onnx"]["confusion"] == reports["torch"]["confusion"]
    assert main(["eval", "mine-128", "--data", str(take), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["class_names"] == list(DATA_CLASSES)


def test_the_tuned_artifact_runs_in_the_window_with_its_classes(tuned, qtbot):
    pytest.importorskip("PyQt6", reason="the window needs PyQt6")
    from evapp.gui.app import duration_of
    from evapp.gui.window import MainWindow
    from evapp.model_setup import ModelChoice, build_model_setup
    from evapp.pipeline import Pipeline, ReplayOptions
    from evapp.sources import open_source

    root, out = tuned
    take = sorted((root / "takes").glob("take-*.aedat4"))[0]
    choice = ModelChoice(str(out), device="cpu")
    source = open_source(take)
    pipeline = Pipeline(source, build_model_setup(choice), replay=ReplayOptions(speed=1.0), hold_at_end=True,
                        drop_late_frames=True)
    win = MainWindow(pipeline, choice, "replay", duration_us=duration_of(source))
    qtbot.addWidget(win)
    try:
        win.show()
        qtbot.waitUntil(lambda: win.predictions_shown > 0, timeout=20_000)
        assert list(win.bars.names) == list(DATA_CLASSES)
        assert win.last_prediction.decision.class_name in (*DATA_CLASSES, "idle")
        win.set_region(None)  # right-click: the model's own view, drawn where the binner maps from
        assert win.view.region == pipeline.frame_spec.region(source.geometry) == Region(0, 0, 128, 128)
    finally:
        win.close()
        pipeline.close()


@pytest.mark.parametrize(("trainable", "statistics", "kept"), [("head", "adapt", "all"), ("deep", "adapt", "frozen"),
                                                               ("deep", "keep", "all"), ("all", "adapt", "none")])
def test_a_layer_keeps_its_normalisation_statistics_when_frozen_or_asked(trainable, statistics, kept):
    from evapp.train.finetune import set_trainable

    model = tiny_model(seed=3)
    set_trainable(model, trainable, statistics)
    before = {k: v.clone() for k, v in model.state_dict().items() if k.endswith("running_mean")}
    model.train()
    model(synthetic_frames(T, 4, (32, 32), N, seed=2))
    after = model.state_dict()
    frozen = {n.removesuffix(".weight") for n, p in model.named_parameters() if not p.requires_grad}
    for key, value in before.items():
        layer = key.removesuffix(".running_mean")
        keeps = kept == "all" or (kept == "frozen" and layer in frozen)
        assert torch.equal(value, after[key]) == keeps, key


def test_bench_train_times_a_step_in_both_layouts_which_compute_the_same_function(tmp_path, capsys):
    from evapp.bench.train import _model

    tiny_base(tmp_path / "base")
    assert main(["bench", "train", str(tmp_path / "base"), "--steps", "2", "--batch", "4", "--json"]) == 0
    rows = json_lines(capsys.readouterr().out)[-1]["train"]
    assert [r["layout"] for r in rows] == ["stock", "channels-last"]
    assert all(r["median_s"] > 0 and r["min_s"] <= r["median_s"] and r["batch"] == 4 and r["T"] == T for r in rows)
    assert rows[0]["x_stock"] == 1.0 and rows[1]["x_stock"] > 0
    assert main(["bench", "train", str(tmp_path / "base"), "--train", "most"]) == 2
    assert "choose one of head, last, deep, all" in capsys.readouterr().err
    # the layout is an execution detail: in float32 the logits and the gradients agree
    x = synthetic_frames(T, 4, (32, 32), events=N, seed=3)
    results = []
    for layout in ("stock", "channels-last"):
        model = _model(str(tmp_path / "base"), "all", layout)
        logits = model(x)
        logits.square().sum().backward()
        results.append((logits.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (stock, stock_grads), (last, last_grads) = results
    torch.testing.assert_close(last, stock, rtol=1e-4, atol=1e-4)
    assert stock_grads.keys() == last_grads.keys()
    for name, grad in stock_grads.items():
        torch.testing.assert_close(last_grads[name], grad, rtol=1e-3, atol=1e-4, msg=name)
