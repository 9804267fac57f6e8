"""The shipped artifacts in models/: they load against the pipeline, the default is the best of them, and each
recognises two gestures cut from the demo recording with its own default policy and decoder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evapp.cli.main import main

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p.name for p in (REPO / "models").iterdir() if (p / "weights.safetensors").is_file())
DEMO = REPO / "assets" / "demo.aedat4"


def test_the_repository_ships_the_trained_models():
    assert "sglformer-3-256" in SHIPPED and "saformer-2-256" in SHIPPED


def test_shipped_artifacts_load_and_the_default_is_the_most_accurate(shipped_models, capsys):
    from evapp.engine.loading import default_model_name, list_artifacts, load

    artifacts = {a.name: a for a in list_artifacts()}
    assert sorted(artifacts) == SHIPPED
    for name, artifact in artifacts.items():
        loaded = load(name)  # strict weight loading and the artifact's own consistency checks
        assert loaded.artifact.folder == REPO / "models" / name and loaded.cfg.num_classes == 11
        assert artifact.metrics["data_kind"] == "synthetic"  # never presented as DVS128 Gesture
    best = max(artifacts.values(), key=lambda a: a.metrics["clip_accuracy"]).name
    assert default_model_name() == best

    assert main(["models", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["default"] == best
    trained = {r["name"]: r for r in listing["models"] if r["weights"] != "none"}
    assert sorted(trained) == SHIPPED and all("(synthetic)" in r["accuracy"] for r in trained.values())


@pytest.fixture(scope="module")
def demo_rotations(tmp_path_factory):
    """right_arm_clockwise then right_arm_counter_clockwise (the demo's 4th and 5th gestures), cut from the demo
    recording into a real .aedat4 with its labels: the rotation sense is the demo's hardest distinction."""
    from evapp.sources.aedat3 import labels_path_for, read_labels_csv, write_labels_csv
    from evapp.sources.aedat4 import Aedat4Source, write_aedat4

    kept = read_labels_csv(DEMO.parent / "demo_labels.csv")[3:5]  # absolute µs (no rebasing)
    assert [lab.class_id for lab in kept] == [3, 4]
    start = kept[0].start_us - 1_000_000
    end = kept[1].end_us + 500_000
    source = Aedat4Source(DEMO)
    cut = np.concatenate([b[(b["timestamp"] >= start) & (b["timestamp"] <= end)] for b in source._raw_batches()])
    path = tmp_path_factory.mktemp("demo_cut") / "rotations.aedat4"
    write_aedat4(path, cut, source.geometry)
    write_labels_csv(labels_path_for(path), kept)
    return path


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_recognises_demo_gestures(name, demo_rotations, shipped_models, tmp_path, capsys):
    png = tmp_path / "confusion.png"
    assert main(["eval-stream", str(demo_rotations), "--model", name, "--device", "cpu", "--confusion", str(png),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert png.is_file()
    assert report["gestures"] == 2 and report["missed_gestures"] == 0 and report["false_alarms"] == 0
    assert report["frame_accuracy"] >= 0.8, report["confusion"]
    onset = report["accuracy_since_onset"]["without_other_gestures"]
    assert onset["gestures_at_onset"] == 2 and onset["accuracy"][0] == 0.0 and onset["accuracy"][-1] == 1.0
    assert 0 < onset["stable_ms"]["median"] < 1000 and onset["stable_ms"]["never"] == 0
    assert Path(report["onset_png"]) == tmp_path / "onset.png" and (tmp_path / "onset.png").is_file()


def test_demo_prints_what_was_named_and_how_soon(demo_rotations, shipped_models, monkeypatch, output_folder, capsys):
    """`evapp demo` (the README's first command) on the two rotations: one line per labelled gesture with the
    gesture named and its latency, then the totals a newcomer reads first."""
    assets = demo_rotations.parent / "assets"
    assets.mkdir(exist_ok=True)
    for f in (demo_rotations, demo_rotations.with_name("rotations_labels.csv")):
        (assets / f.name.replace("rotations", "demo")).write_bytes(f.read_bytes())
    monkeypatch.setenv("EVAPP_ASSETS", str(assets))
    assert main(["demo", "--device", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "saformer-2-256" in out[0]  # the shipped model that runs the demo in time on a CPU
    rows = [line.split() for line in out[2:4]]
    assert [r[0] for r in rows] == ["right_arm_clockwise", "right_arm_counter_clockwise"]
    assert all(r[3] == r[0] and r[-1] == "ms" for r in rows)  # named as labelled, with the latency
    assert out[4].startswith("2 of 2 gestures named") and "frame accuracy" in out[4]
    assert out[5].startswith("accuracy since onset (all classes, 2 gestures): ")
    assert out[6].startswith("accuracy since onset (without other_gestures, 2 gestures): ")
    assert (output_folder / "demo_confusion.png").is_file() and out[7].endswith("demo_confusion.png")
    assert (output_folder / "demo_onset.png").is_file() and out[8].endswith("demo_onset.png")
    assert out[9].endswith(" s") and "of recording evaluated in" in out[9]


def test_render_writes_the_replay_with_its_predictions_as_a_video(demo_rotations, shipped_models, tmp_path, capsys):
    """2 s around the change from right_arm_clockwise to counter-clockwise, rendered and read back with OpenCV:
    every frame is there at the size asked for, and the label drawn over the events changes with the answer."""
    import cv2
    from PyQt6.QtGui import QColor

    from evapp.events import GESTURE_CLASSES
    from evapp.gui.widgets import class_colour

    video = tmp_path / "rotations.mp4"
    assert main(["render", str(demo_rotations), "--out", str(video), "--model", "saformer-2-256", "--device", "cpu",
                 "--start", "4.3", "--duration", "2", "--fps", "25", "--size", "1280x720"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == 51 and report["size"] == [1280, 720]  # 0, 40, ..., 2000 ms of recording
    capture = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == 51 and frames[0].shape == (720, 1280, 3)
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(25)
    runs = report["shown"]
    assert sum(r["frames"] for r in runs) == 51
    labels = [r["label"] for r in runs]
    assert labels[0] == "right_arm_clockwise" and "right_arm_counter_clockwise" in labels

    def label_pixels(frame, name: str) -> int:
        """Pixels of the label's colour where the decided gesture is written (top left of the event view)."""
        colour = QColor(150, 150, 150) if name == "idle" else class_colour(GESTURE_CLASSES.index(name))
        bgr = np.array(colour.lighter(120).getRgb()[2::-1], np.int16)
        crop = frame[:90, :900].astype(np.int16)
        return int((np.abs(crop - bgr).max(axis=2) < 40).sum())

    for before, after in zip(runs, runs[1:], strict=False):
        a = frames[before["first_frame"] + before["frames"] // 2]
        b = frames[after["first_frame"] + after["frames"] // 2]
        assert label_pixels(a, before["label"]) > 5 * max(label_pixels(b, before["label"]), 20), (before, after)
        assert label_pixels(b, after["label"]) > 5 * max(label_pixels(a, after["label"]), 20), (before, after)
