"""The model-facing commands end to end: replay --model, eval-stream, simulate, models."""

import json

import numpy as np

from evapp.cli.main import main
from evapp.sources import open_source
from tests.conftest import json_lines


def test_models_lists_the_zoo(capsys):
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["models"]}
    assert set(rows) == {"sglformer-3-256", "saformer-2-256", "spikingresformer-dvsg"}
    assert rows["sglformer-3-256"]["params"] == 4_164_691 and rows["sglformer-3-256"]["T"] == 16


def test_simulate_then_replay_with_model_and_eval_stream(tmp_path, capsys):
    out = tmp_path / "two.aedat4"
    assert main(["simulate", str(out), "--classes", "1,4", "--gesture-s", "1.0", "--pause-s", "0.5",
                 "--seed", "3", "--t0-us", "5000000"]) == 0
    summary = json.loads(capsys.readouterr().out)
    source = open_source(out)
    events = np.concatenate(list(source.batches()))
    assert summary["events"] == events.shape[0] and [lab.class_id for lab in source.labels] == [1, 4]
    assert main(["simulate", str(out), "--classes", "1"]) == 2  # never overwrites without --force
    assert "already exists" in capsys.readouterr().err

    n = max(200, events.shape[0] // 40)  # about 40 frames: two 16-frame windows and more
    assert main(["replay", str(out), "--headless", "--max-speed", "--model", "saformer-2-256", "-N", str(n),
                 "--policy", "staggered:4", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    records = json_lines(captured.out)
    predictions = [r for r in records if r["type"] == "prediction"]
    frames = records[-1]["frames"]
    assert records[-1]["type"] == "summary" and records[-1]["predictions"] == len(predictions)
    assert len(predictions) == (frames - 16) // 4 + 1  # staggered:4 answers every T/K = 4 frames after T
    for p in predictions:
        assert len(p["probs"]) == 11 and abs(sum(p["probs"]) - 1) < 1e-3
        assert p["class_name"] and p["decision"]["class_name"] and p["step_ms"] > 0
    assert "random initialisation" in captured.err

    png = tmp_path / "conf.png"
    assert main(["eval-stream", str(out), "--model", "saformer-2-256", "-N", str(n), "--device", "cpu",
                 "--confusion", str(png), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["gestures"] == 2 and png.is_file()
    assert report["frames"] == frames and report["answers"] == frames // 16
    assert np.asarray(report["confusion"]).sum() == report["frames_in_gestures"]


def test_model_errors_are_one_sentence(tmp_path, capsys):
    from evapp.sources.aedat3 import write_aedat3
    from evapp.testing import random_stream

    path = tmp_path / "x.aedat"
    write_aedat3(path, random_stream(5000, 128, 128))
    cases = [
        (["--model", "nope"], "no model named 'nope'"),
        (["--model", "sglformer-3-256", "--policy", "staggered:5"], "K to divide T=16"),
        (["--model", "sglformer-3-256", "--input-size", "64"], "takes 128x128 input"),
        (["--model", "sglformer-3-256", "--weights", str(tmp_path / "none.safetensors")], "does not exist"),
        (["--model", "sglformer-3-256", "--weights", str(path)], "not a readable safetensors file"),
        (["--weights", str(path)], "--weights needs --model"),
        (["--model", "saformer-2-256", "--precision", "fp16"], "precision fp16 needs a CUDA device"),
        (["--model", "saformer-2-256", "--cuda-graph"], "a CUDA graph needs a CUDA device"),
        (["--model", "saformer-2-256", "--engine", "onnx", "--compile"], "apply to --engine torch"),
    ]
    for args, phrase in cases:
        code = main(["replay", str(path), "--headless", "--max-speed", "--device", "cpu", *args])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and phrase in err[-1] and err[-1].startswith("evapp: error:"), (args, err)
