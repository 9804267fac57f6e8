"""Training, clip evaluation and model artifacts, on a small synthetic set in DVS128 Gesture's layout."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from evapp.binning import FrameSpec
from evapp.cli.main import main
from evapp.engine.artifact import read_artifact
from evapp.errors import InputError
from evapp.events import GESTURE_CLASSES
from evapp.simulate.sequence import simulate_sequence
from evapp.simulate.writers import write_dataset, write_recording
from evapp.train import TrainSettings, find_trials, frame_trial, train
from evapp.train.augment import RandomFlip, SNNAugmentWide, mirror_classes
from evapp.train.data import evaluation_windows, frame_trials, stream_windows, training_windows

# A tiny SAFormer on 32x32 input (a DVS128 sensor, 4x4 sensor pixels per input pixel) trains in seconds.
TINY = ["--set", "embed_dims=[32]", "--set", "num_heads=[2]", "--set", "input_size=[32,32]"]
TINY_OVERRIDES = {"embed_dims": [32], "num_heads": [2], "input_size": [32, 32]}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synth")
    write_dataset(folder, n_users=3, lightings=("fluorescent",), seed=5, resolution=(128, 128), train_users=2,
                  gesture_s=1.2, pause_s=0.4)
    return folder


def settings(dataset, out, **kw) -> TrainSettings:
    base = dict(model="saformer-2-256", data=str(dataset), out=str(out), epochs=2, batch_size=4, lr=2e-3, T=3,
                events_per_frame=150, windows_per_gesture=1, mixup=False, augment=True, seed=3,
                device="cpu", max_steps_per_epoch=3, model_overrides=dict(TINY_OVERRIDES), threads=1,
                eval_limit=16)
    base.update(kw)
    return TrainSettings(**base)


def test_trials_are_framed_by_the_live_binner_and_labelled(dataset):
    trials = find_trials(dataset, "train")
    assert [t.path.name for t in trials] == ["user01_fluorescent.aedat", "user02_fluorescent.aedat"]
    ft = frame_trial(trials[0], FrameSpec((32, 32), 150), 3)
    frames = ft.dense(0, len(ft))
    assert frames.shape == (len(ft), 2, 32, 32)
    assert np.all(frames.reshape(len(ft), -1).sum(1) == 150)  # every frame holds exactly N events
    assert np.all(np.diff(ft.t_end_us) >= 0)
    segments = ft.segments()
    assert sorted(c for _, _, c in segments) == list(range(len(GESTURE_CLASSES)))  # one of each class
    for a, b, cls in segments:  # a segment's frames end inside that gesture's labelled interval
        lab = next(lab for lab in ft.labels if lab.class_id == cls)
        assert lab.start_us <= ft.t_end_us[a] and ft.t_end_us[b - 1] < lab.end_us
    windows = evaluation_windows([ft], 3)
    assert windows and all(ft.frame_labels[w.start : w.start + 3].tolist() == [w.label] * 3 for w in windows)
    rng = np.random.default_rng(0)
    assert all(ft.frame_labels[w.start + 2] == w.label for w in training_windows([ft], 3, 2, rng))
    crops = stream_windows([ft], 20, 5, rng)
    assert len(crops) == 5 and all(w.start + 20 <= len(ft) for w in crops)


def test_clip_framing_splits_each_gesture_into_T_equal_frames(dataset):
    ft = frame_trial(find_trials(dataset, "test")[0], FrameSpec((32, 32), 0, mode="clip"), 4)
    assert len(ft) == 4 * len(GESTURE_CLASSES)
    counts = ft.dense(0, len(ft)).reshape(len(GESTURE_CLASSES), 4, -1).sum(-1)
    assert np.all(counts[:, :3] == counts[:, :1])  # equal counts; the last frame takes the remainder
    assert np.all(counts[:, 3] >= counts[:, 0]) and np.all(counts[:, 3] < 2 * counts[:, 0])


def test_missing_dataset_says_where_to_get_it(tmp_path):
    with pytest.raises(InputError, match="DvsGesture.tar.gz"):
        find_trials(tmp_path / "nowhere", "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="evapp simulate --dataset"):
        find_trials(tmp_path / "empty", "train")
    assert main(["train", "saformer-2-256", "--data", str(tmp_path / "nowhere")]) == 2


def test_tonic_layout_is_read_with_the_file_name_as_label(tmp_path):
    events, _, _ = simulate_sequence([4], 3, (128, 128), pause_s=0.0, gesture_s=0.6)
    folder = tmp_path / "DVSGesture" / "ibmGestureTest" / "user24_led"
    folder.mkdir(parents=True)
    arr = np.stack([events["x"], events["y"], events["polarity"], events["timestamp"] / 1000.0], 1)
    np.save(folder / "4.npy", arr)  # tonic's layout: x, y, p, t in ms; the file name is the class
    np.save(folder / "7.npy", arr[: len(arr) // 2])
    trials = find_trials(tmp_path, "test")
    # listed by tonic.datasets.DVSGesture itself (its save_to folder and sample index travel with the trial)
    assert sorted(t.name for t in trials) == ["user24_led/4.npy", "user24_led/7.npy"]
    assert {t.tonic[0] for t in trials} == {str(tmp_path)}
    four = next(t for t in trials if t.path.name == "4.npy")
    ft = frame_trial(four, FrameSpec((128, 128), 500), 4)
    assert len(ft) == len(events) // 500 and set(ft.frame_labels.tolist()) == {4}
    assert ft.name == "user24_led/4.npy"
    # the DVSGesture folder itself works too, and two worker processes frame as one process does
    again = find_trials(tmp_path / "DVSGesture", "test")
    assert [t.tonic[1] for t in again] == [t.tonic[1] for t in trials]
    serial = frame_trials(trials, FrameSpec((128, 128), 500), 4, workers=1)
    parallel = frame_trials(trials, FrameSpec((128, 128), 500), 4, workers=2)
    assert [p.frame_labels.tolist() for p in parallel] == [s.frame_labels.tolist() for s in serial]
    assert [len(p) for p in parallel] == [len(events) // 500, len(events) // 2 // 500]


def test_download_that_cannot_reach_tonic_url_says_where_to_put_the_dataset(tmp_path, monkeypatch, capfd):
    from tonic.datasets import DVSGesture

    from evapp.train.tonic_gesture import tonic_dataset

    tonic_dataset.cache_clear()
    unreachable = "http://127.0.0.1:9/ibmGestureTrain.tar.gz"  # the discard port: nothing listens there
    monkeypatch.setattr(DVSGesture, "train_url", unreachable)
    assert main(["train", "saformer-2-256", "--data", str(tmp_path / "dvsg"), "--download"]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("evapp: error: tonic could not download DVS128 Gesture's train split "
                                               f"from {unreachable} (")
    assert err[0].endswith(f"extract it into {tmp_path / 'dvsg' / 'DVSGesture'}/.")


def test_mirror_flip_swaps_hands_and_rotation_sense():
    names = list(GESTURE_CLASSES)
    mirror = mirror_classes(names)
    assert names[mirror[names.index("right_hand_wave")]] == "left_hand_wave"
    assert names[mirror[names.index("right_arm_clockwise")]] == "left_arm_counter_clockwise"
    assert names[mirror[names.index("left_arm_clockwise")]] == "right_arm_counter_clockwise"
    assert names[mirror[names.index("hand_clapping")]] == "hand_clapping"
    assert [mirror[c] for c in mirror] == list(range(len(names)))  # an involution
    x = torch.rand(6, 3, 2, 8, 8)
    y = torch.arange(6)
    fx, fy = RandomFlip("mirror", names, p=1.0)(x, y, torch.Generator().manual_seed(0))
    assert torch.equal(fx, x.flip(-1)) and fy.tolist() == [mirror[c] for c in range(6)]
    steps = torch.tensor([[1, -1, 3], [0, 2, -1]])  # per-step labels [B, L], -1 in pauses
    _, fsteps = RandomFlip("mirror", names, p=1.0)(x[:2], steps, torch.Generator().manual_seed(0))
    assert fsteps.tolist() == [[mirror[1], -1, mirror[3]], [0, mirror[2], -1]]
    px, py = RandomFlip("paper", names, p=1.0)(x, y, torch.Generator().manual_seed(0))
    assert torch.equal(px, x.flip(-1)) and torch.equal(py, y)


def test_mirror_flip_goes_by_name_and_leaves_a_class_without_its_mirror_unflipped():
    names = ["swipe_left", "both_arms_raise", "swipe_right", "point_left"]  # a user's own list, any order
    assert mirror_classes(names) == [2, 1, 0, -1]
    x = torch.rand(4, 3, 2, 8, 8)
    fx, fy = RandomFlip("mirror", names, p=1.0)(x, torch.arange(4), torch.Generator().manual_seed(0))
    assert fy.tolist() == [2, 1, 0, 3]
    assert torch.equal(fx[:3], x[:3].flip(-1)) and torch.equal(fx[3], x[3])  # no class is point_left's mirror image
    steps = torch.tensor([[0, -1, 3], [1, 1, -1]])  # a stream crop holding point_left stays as it is
    sx, sy = RandomFlip("mirror", names, p=1.0)(x[:2], steps, torch.Generator().manual_seed(0))
    assert torch.equal(sx[0], x[0]) and sy[0].tolist() == [0, -1, 3] and sy[1].tolist() == [1, 1, -1]


def test_augmentation_is_one_transform_for_all_frames_and_reproducible():
    x = torch.zeros(16, 4, 2, 32, 32)
    x[:, :, :, 12:20, 10:14] = 1.0
    aug = SNNAugmentWide()
    a = aug(x, torch.Generator().manual_seed(7))
    b = aug(x, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert torch.equal(a, a[:, :1].expand_as(a))  # identical frames in, identical frames out
    assert not torch.equal(a, x)  # some clip of 16 was transformed


def test_training_lowers_the_loss_and_writes_a_run(dataset, tmp_path):
    # 22 training gestures, four windows of each per epoch, four epochs: 44 steps of 8 clips.
    s = settings(dataset, tmp_path / "run", epochs=4, max_steps_per_epoch=None, windows_per_gesture=4,
                 batch_size=8, augment=False, lr=3e-3, label_smoothing=0.0, warmup_epochs=0.25)
    result = train(s, progress=False)
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.2, history
    assert history[-1]["train_accuracy"] > history[0]["train_accuracy"]
    assert 0.0 <= result["best_test_clip_accuracy"] <= 1.0
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    # A DVS128 onto the 32x32 input: 16 sensor pixels per input pixel.
    assert run["px_per_input_px"] == 16.0 and run["settings"]["seed"] == 3
    assert set(load_file(str(tmp_path / "run" / "best.safetensors"))) == set(torch.load(
        tmp_path / "run" / "last.pt", weights_only=True)["model"])


def test_a_resumed_run_equals_the_uninterrupted_one(dataset, tmp_path):
    train(settings(dataset, tmp_path / "straight", epochs=3), progress=False)
    train(settings(dataset, tmp_path / "halves", epochs=3, stop_after=1), progress=False)
    assert torch.load(tmp_path / "halves" / "last.pt", weights_only=True)["epoch"] == 0  # stopped after epoch 1
    train(settings(dataset, tmp_path / "halves", epochs=3), resume=True, progress=False)
    straight = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    resumed = torch.load(tmp_path / "halves" / "last.pt", weights_only=True)
    assert resumed["epoch"] == straight["epoch"] == 2 and resumed["step"] == straight["step"]
    assert all(torch.equal(straight["model"][k], resumed["model"][k]) for k in straight["model"])
    lines = (tmp_path / "halves" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]


def test_two_processes_under_torchrun_train_one_model(dataset, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
           "-m", "evapp", "train", "saformer-2-256", "--data", str(dataset), "--out", str(tmp_path / "ddp"),
           "--epochs", "1", "--batch-size", "2", "--T", "3", "-N", "150", "--max-steps-per-epoch", "2",
           "--windows-per-gesture", "1", "--no-mixup", "--device", "cpu", "--threads", "1", "--no-progress",
           "--eval-limit", "8", *TINY]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "ddp" / "run.json").read_text())["world_size"] == 2
    history = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 1 and history[0]["step"] == 2  # rank 0 alone logs and checkpoints


@pytest.fixture(scope="module")
def packaged(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("pack")
    train(settings(dataset, out / "run", epochs=1), progress=False)
    assert main(["package", str(out / "run"), str(out / "models" / "tiny-saformer"), "--policy", "staggered:3"]) == 0
    return out


def test_the_weight_average_is_what_is_validated_kept_and_resumed(dataset, tmp_path):
    """average_decay: the moving average of the weights, not the last step's, is validated and written as the
    best weights, and a resumed run carries the average on exactly."""
    train(settings(dataset, tmp_path / "straight", epochs=2, average_decay=0.9), progress=False)
    train(settings(dataset, tmp_path / "halves", epochs=2, stop_after=1, average_decay=0.9), progress=False)
    half = torch.load(tmp_path / "halves" / "last.pt", weights_only=True)
    best = load_file(str(tmp_path / "halves" / "best.safetensors"))  # after one epoch the only one so far
    assert all(torch.equal(best[k], v) for k, v in half["average"]["model"].items())
    assert not all(torch.equal(best[k], v) for k, v in half["model"].items() if v.is_floating_point())
    train(settings(dataset, tmp_path / "halves", epochs=2, average_decay=0.9), resume=True, progress=False)
    straight = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    resumed = torch.load(tmp_path / "halves" / "last.pt", weights_only=True)
    assert resumed["average"]["updates"] == straight["average"]["updates"] == straight["step"]
    assert all(torch.equal(straight["average"]["model"][k], v) for k, v in resumed["average"]["model"].items())


def test_a_replan_after_each_epoch_stretches_or_shrinks_the_run_and_its_schedule(dataset, tmp_path):
    """train's replan (fine-tuning's time budget): asked after every epoch but the last planned, with the epochs
    done and the time so far; the run goes on to the epochs it answers and the learning rate keeps falling."""
    asked = []

    def four(done, seconds):
        asked.append((done, seconds > 0))
        return 4

    final = train(settings(dataset, tmp_path / "longer", epochs=2), progress=False, replan=four)
    history = [json.loads(line) for line in (tmp_path / "longer" / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4] and asked == [(1, True), (2, True), (3, True)]
    rates = [h["lr"] for h in history][1:]  # the first epoch ends inside the warm-up
    assert rates == sorted(rates, reverse=True) and rates[-1] < 0.1 * rates[0]  # near the end of the cosine
    assert final["epoch"] == 4
    train(settings(dataset, tmp_path / "shorter", epochs=4), progress=False, replan=lambda done, seconds: 1)
    assert len((tmp_path / "shorter" / "metrics.jsonl").read_text().splitlines()) == 1  # never fewer than done
    ended = []
    train(settings(dataset, tmp_path / "ended", epochs=1), progress=False, replan=lambda *a: ended.append(a) or 5)
    assert not ended  # the one planned epoch ran the whole schedule: nothing left to re-plan


def test_a_retargeted_cosine_schedule_neither_jumps_nor_rises():
    from evapp.train.loop import CosineSchedule

    plain = CosineSchedule(100, 10, 1e-2, 1e-5)
    stretched = CosineSchedule(100, 10, 1e-2, 1e-5)
    rates = [stretched.lr(s) for s in range(40)]
    stretched.retarget(40, 160)  # the budget gives more steps
    rates += [stretched.lr(s) for s in range(40, 120)]
    stretched.retarget(120, 130)  # then fewer
    rates += [stretched.lr(s) for s in range(120, 131)]
    assert [plain.lr(s) for s in range(41)] == rates[:41]  # the same until the first retarget, that step included
    after_warmup = rates[10:]
    assert after_warmup == sorted(after_warmup, reverse=True)
    biggest_plain_drop = max(plain.lr(s) - plain.lr(s + 1) for s in range(10, 100))
    assert max(a - b for a, b in zip(after_warmup[:-1], after_warmup[1:], strict=True)) <= biggest_plain_drop * 1.5
    assert rates[130] == pytest.approx(1e-5) and rates[129] > rates[130]


def test_the_weight_average_warms_up_its_decay():
    """After n updates the average moves by 1 - min(decay, (1 + n) / (10 + n)) towards the current weights;
    integer buffers are copied."""
    from evapp.train.averaging import WeightAverage

    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    average = WeightAverage(model, decay=0.5)
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].num_batches_tracked.fill_(7)
    average.update(model)
    keep = 2 / 11  # below the decay: the warm-up's
    expected = keep * start["0.weight"] + (1 - keep) * model[0].weight
    assert torch.allclose(average.model[0].weight, expected)
    assert int(average.model[1].num_batches_tracked) == 7
    for _ in range(20):
        average.update(model)
    assert average.updates == 21 and torch.allclose(average.model[0].weight, model[0].weight, atol=1e-5)
    with pytest.raises(ValueError):
        WeightAverage(model, decay=1.0)


def test_package_writes_an_artifact_with_card_and_preprocessing(packaged):
    artifact = read_artifact(packaged / "models" / "tiny-saformer")
    pre = artifact.preprocessing
    frames = pre.frames
    assert (frames.input_size, frames.events_per_frame, pre.T, frames.reference_px_per_input_px) == ((32, 32), 150, 3,
                                                                                                     16.0)
    assert artifact.policy == "staggered:3" and artifact.config.embed_dims == (32,)
    assert 0.0 <= artifact.metrics["clip_accuracy"] <= 1.0 and artifact.metrics["data_kind"] == "synthetic"
    card = (packaged / "models" / "tiny-saformer" / "README.md").read_text()
    assert "synthetic" in card and "not DVS128 Gesture" in card and "evapp" in card
    # every decoder setting is written out; the idle threshold comes from the training split's pauses
    assert set(artifact.decoder) == {"smoothing", "threshold", "hold", "idle_below_fps", "idle_floor_fps"}
    assert artifact.decoder["idle_below_fps"] > 1.0 and f"idle below {artifact.decoder['idle_below_fps']}" in card
    assert artifact.decoder["idle_floor_fps"] > 0 and f"streams' {artifact.decoder['idle_floor_fps']} frames/s" in card
    # the figures: the test split's confusion matrix and the learning curve, drawn from the run's history
    import cv2

    folder = packaged / "models" / "tiny-saformer"
    assert artifact.training["history"] == [json.loads(line) for line in
                                            (packaged / "run" / "metrics.jsonl").read_text().splitlines()]
    for png in ("confusion.png", "learning_curve.png"):
        assert f"]({png})" in card and cv2.imread(str(folder / png)).shape[1] >= 600


def test_fine_tuning_starts_from_given_weights_and_the_card_names_them(packaged, dataset, tmp_path):
    start = load_file(str(packaged / "run" / "best.safetensors"))
    # A learning rate too small to move anything: the weights after one step are the ones started from.
    # The run's own config (T 3, N 150, the tiny sizes) comes with --init: none of it is given again here.
    tuned = settings(dataset, tmp_path / "tuned", epochs=1, max_steps_per_epoch=1, lr=1e-12, warmup_epochs=0,
                     init=str(packaged / "run"), T=None, events_per_frame=None, model_overrides={})
    train(tuned, progress=False)
    after = torch.load(tmp_path / "tuned" / "last.pt", weights_only=True)["model"]
    learned = [k for k in start if "running_" not in k and "num_batches" not in k]  # BN statistics move anyway
    assert learned and all(torch.allclose(after[k], start[k], atol=1e-6) for k in learned)
    assert main(["package", str(tmp_path / "tuned"), str(tmp_path / "models" / "tuned")]) == 0
    card = (tmp_path / "models" / "tuned" / "README.md").read_text()
    assert f"started from `{packaged / 'run'}`, trained by `" in card and "(1 epochs" in card
    # an artifact brings its config and its story too (re-packaging into the same folder replaces the artifact)
    from evapp.train.run_folder import starting_weights

    artifact = starting_weights(str(tmp_path / "models" / "tuned"))
    assert artifact.overrides["T"] == 3 and artifact.lineage["epochs"] == 1
    assert artifact.lineage["command"] == json.loads((tmp_path / "tuned" / "run.json").read_text())["command"]
    assert artifact.lineage["init_from"]["path"] == str(packaged / "run")
    with pytest.raises(InputError, match="holds neither"):
        train(settings(dataset, tmp_path / "bad", init=str(tmp_path)), progress=False)


def test_artifact_drives_replay_with_its_frames_and_refuses_other_N(packaged, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("EVAPP_MODELS", str(packaged / "models"))
    events, labels, geometry = simulate_sequence([1], 9, (256, 256), pause_s=0.2, gesture_s=0.8)
    path, _ = write_recording(tmp_path / "wave.aedat4", events, labels, geometry)
    capfd.readouterr()
    assert main(["replay", str(path), "--headless", "--max-speed"]) == 0  # the default model: the only artifact
    out, _ = capfd.readouterr()
    records = [json.loads(line) for line in out.splitlines()]
    summary = records[-1]
    assert summary["input_size"] == [32, 32]
    # A 256x256 sensor onto 32x32 is 64 pixels per input pixel against the training sensor's 16: keep 1 in 4.
    assert summary["events_thinned"] > 0
    kept = summary["frames"] * 150 + summary["leftover_events"]
    assert abs(kept - events.shape[0] / 4) <= 1
    assert kept + summary["events_thinned"] + summary["events_outside_region"] == summary["events_total"]
    predictions = [r for r in records if r["type"] == "prediction"]
    assert len(predictions) == (summary["frames"] - 3) // 1 + 1  # staggered:3 with T=3: an answer per frame
    assert main(["replay", str(path), "--headless", "--max-speed", "-N", "500"]) == 2
    assert "trained on frames of 150 events" in capfd.readouterr().err
    assert main(["models", "--json"]) == 0
    listed = json.loads(capfd.readouterr().out)["models"]
    assert any(m["name"] == "tiny-saformer" and m["weights"] != "none" for m in listed)


def test_eval_reports_clip_accuracy_and_a_confusion_png(packaged, dataset, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("EVAPP_MODELS", str(packaged / "models"))
    png = tmp_path / "confusion.png"
    assert main(["eval", "tiny-saformer", "--data", str(dataset), "--json", "--confusion", str(png)]) == 0
    report = json.loads(capfd.readouterr().out)
    artifact = read_artifact(packaged / "models" / "tiny-saformer")
    assert report["clips"] == artifact.metrics["clips"]
    assert report["clip_accuracy"] == pytest.approx(artifact.metrics["clip_accuracy"], abs=1e-4)
    assert np.asarray(report["confusion"]).sum() == report["clips"] and png.stat().st_size > 1000
    assert report["learning_curve_png"] == str(tmp_path / "learning_curve.png")
    assert (tmp_path / "learning_curve.png").stat().st_size > 1000
    by_position = report["accuracy_by_position"]
    assert list(by_position) == ["onset", "steady", "offset"]
    assert sum(r["clips"] for r in by_position.values()) == report["clips"]
    assert sum(r["correct"] for r in by_position.values()) == np.trace(report["confusion"])
    assert by_position["onset"]["clips"] > 0  # every gesture has a first window
    assert artifact.metrics["accuracy_by_position"] == by_position
    assert "by position in the gesture: onset" in (packaged / "models" / "tiny-saformer" / "README.md").read_text()


def test_window_position_tells_gesture_transitions_from_full_swing():
    from evapp.train.data import FramedTrial, Window, evaluation_windows, window_position

    # a pause of 2 frames, 20 frames of class 3, a pause, 4 frames of class 5 (one window), and class 7 running
    # off the end of the trial
    labels = np.array([-1] * 2 + [3] * 20 + [-1] * 3 + [5] * 4 + [-1] + [7] * 9)
    t = np.arange(labels.shape[0], dtype=np.int64) * 1000
    ft = FramedTrial("x", None, [], (2, 2, 2), np.ones((labels.shape[0], 2, 2, 2), np.float32), t, labels)
    windows = evaluation_windows([ft], 4)
    found = [(w.start, w.label, window_position(ft, w, 4)) for w in windows]
    assert found == [(2, 3, "onset"), (6, 3, "steady"), (10, 3, "steady"), (14, 3, "steady"), (18, 3, "offset"),
                     (25, 5, "onset"), (30, 7, "onset"), (34, 7, "offset")]
    assert window_position(ft, Window(0, 0, -1), 4) == "onset"  # the trial's own start is a boundary


def test_idle_threshold_separates_pauses_from_gestures():
    from evapp.train.data import FramedTrial
    from evapp.train.package import idle_rate_threshold, motion_floor

    # 3 s of pause at 2 frames/s, then 3 s of gesture at 40 frames/s, then a pause again.
    t = np.concatenate([np.arange(0, 3e6, 5e5), np.arange(3e6, 6e6, 2.5e4), np.arange(6e6, 9e6, 5e5)]).astype(np.int64)
    labels = np.where((t >= 3e6) & (t < 6e6), 4, -1)
    ft = FramedTrial("x", None, [], (2, 4, 4), np.ones((t.shape[0], 2, 4, 4), np.float32), t, labels)
    threshold = idle_rate_threshold([ft])
    assert 3 <= threshold <= 40
    # the motion floor is weighted by time: 6 of the 9 s are quiet, though the gesture makes most of the frames
    assert motion_floor([ft]) == 2.0


def test_stream_objective_trains_on_crops_across_gesture_boundaries(dataset, tmp_path):
    result = train(settings(dataset, tmp_path / "stream", epochs=1, objective="stream", stream_length=12,
                            max_steps_per_epoch=2, batch_size=2), progress=False)
    history = [json.loads(line) for line in (tmp_path / "stream" / "metrics.jsonl").read_text().splitlines()]
    assert history[0]["step"] == 2 and np.isfinite(history[0]["train_loss"]) and history[0]["train_loss"] > 0
    assert result["framing"]["T"] == 3


def test_recorded_command_is_what_a_user_types():
    """run.json names the command as ``evapp ...`` however evapp was started (the card shows it)."""
    from evapp.train.run_folder import command_line

    args = ["train", "sglformer-3-256", "--data", "my data"]
    assert command_line(["/venv/bin/evapp", *args]) == "evapp train sglformer-3-256 --data 'my data'"
    assert command_line(["/src/evapp/__main__.py", *args]) == "evapp train sglformer-3-256 --data 'my data'"
    assert command_line(["/src/other/__main__.py", *args]) == "/src/other/__main__.py train sglformer-3-256 " \
                                                               "--data 'my data'"


def test_decoder_options_on_the_command_line_override_the_artifacts(packaged, dataset, monkeypatch, capfd):
    from evapp.model_setup import decoder_for

    monkeypatch.setenv("EVAPP_MODELS", str(packaged / "models"))
    artifact = read_artifact(packaged / "models" / "tiny-saformer")
    settings = decoder_for("tiny-saformer", {"hold": 3, "idle_floor_fps": 0.0}).settings
    assert (settings.hold, settings.idle_floor_fps) == (3, 0.0)
    assert (settings.smoothing, settings.idle_below_fps) == (artifact.decoder["smoothing"],
                                                             artifact.decoder["idle_below_fps"])
    trial = str(find_trials(dataset, "test")[0].path)
    reports = []
    # a zero confidence threshold names a gesture at every answer, unless the idle rule says the scene is quiet:
    # never with --idle-fps 0, always with 1e6 (every frame comes slower than a million a second)
    for idle_fps in ("0", "1e6"):
        assert main(["eval-stream", trial, "--model", "tiny-saformer", "--device", "cpu", "--threshold", "0",
                     "--idle-fps", idle_fps, "--idle-floor-fps", "0", "--json",
                     "--confusion", str(packaged / f"c{idle_fps}.png")]) == 0
        reports.append(json.loads(capfd.readouterr().out))
    never, always = reports
    assert np.asarray(never["confusion"])[:, -1].sum() == 0  # no frame shown idle
    assert np.asarray(always["confusion"])[:, -1].sum() == always["frames_in_gestures"]  # every frame shown idle
    assert always["false_alarms"] == 0 and always["missed_gestures"] == always["gestures"]
