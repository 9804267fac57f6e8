"""Bad input gets one sentence and exit 2 (issue 19): the general mechanisms, a few cases each."""

from __future__ import annotations

import pytest

from evapp.cli.main import main
from evapp.events import LabelInterval
from evapp.sources.aedat3 import write_aedat3, write_labels_csv
from evapp.testing import random_stream
from tests.conftest import DVX


@pytest.fixture
def recording(tmp_path):
    path = tmp_path / "take.aedat"
    events = random_stream(20_000, 128, 128, seed=2)
    write_aedat3(path, events)
    write_labels_csv(tmp_path / "take_labels.csv", [LabelInterval(2, 1000, 9000)], t0_us=int(events["timestamp"][0]))
    return path


def one_sentence(capsys) -> str:
    """The error line (after any warnings): one sentence, no traceback."""
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if not line.startswith("evapp: WARNING:")]
    assert len(errors) == 1 and errors[0].startswith("evapp: error: ") and errors[0].endswith("."), err
    return errors[0]


@pytest.mark.parametrize("option", [["--start", "nan"], ["--start", "1e308"], ["--threshold", "inf"],
                                    ["--speed", "inf"], ["--speed", "nan"], ["--max-rate", "-inf"],
                                    ["--smoothing", "1e20"], ["--start", "inf"]])
def test_non_finite_numbers_are_refused_by_the_option_parser(recording, option, capsys):
    assert main(["replay", str(recording), "--headless", "--no-model", *option]) == 2
    sentence = one_sentence(capsys)
    assert f"Invalid value for '{option[0]}'" in sentence and any(
        phrase in sentence for phrase in ("finite", "not in the range", "is not a valid integer"))


@pytest.mark.parametrize("device", ["meta", "cuda:x", "banana"])
def test_a_device_that_cannot_run_a_model_is_refused(recording, device, capsys):
    assert main(["replay", str(recording), "--headless", "--model", "saformer-2-256", "--device", device]) == 2
    assert f"device '{device}'" in one_sentence(capsys)


@pytest.mark.parametrize("rows, phrase", [
    (b"class,startTime_usec,endTime_usec\n3,1\xff\xfe00,2000\n", "is not a text labels file"),
    (b"class,startTime_usec,endTime_usec\n0,1000,2000\n", "labels class 0 in row 2, outside"),
    (b"class,startTime_usec,endTime_usec\n12,1000,2000\n", "labels class 12 in row 2, outside its class list's 1..11"),
    (b"class,startTime_usec,endTime_usec\n3,-5,2000\n", "has a negative time in row 2"),
    (b"class,start,end\n3,1000,2000\n", "is not a DVS128 Gesture labels file (row 2"),
])
def test_one_labels_reader_checks_encoding_classes_and_times(recording, rows, phrase, capsys):
    recording.with_name("take_labels.csv").write_bytes(rows)
    assert main(["info", str(recording)]) == 2
    assert phrase in one_sentence(capsys)


def test_a_labels_row_that_ends_before_it_starts_is_dropped_with_one_warning(recording, capsys):
    recording.with_name("take_labels.csv").write_bytes(b"class,startTime_usec,endTime_usec\n3,5000,2000\n"
                                                       b"4,6000,9000\n")
    assert main(["info", str(recording)]) == 0
    captured = capsys.readouterr()
    assert "labels      1 gesture intervals" in captured.out
    assert captured.err.strip() == "evapp: WARNING: take_labels.csv: row 2 (class 3) ends before it starts, dropped"


def test_an_os_error_is_one_sentence(recording, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert main(["eval-stream", str(recording), "--model", "saformer-2-256", "--device", "cpu",
                 "--confusion", str(blocker / "confusion.png")]) == 2
    assert "a_file" in one_sentence(capsys)


REPO_MODEL = __import__("pathlib").Path(__file__).resolve().parent.parent / "models" / "saformer-2-256"


def broken_copy(root, name: str, change) -> None:
    """A copy of a shipped artifact's config (no weights needed to be refused) with one thing broken."""
    import json

    folder = root / name
    folder.mkdir()
    data = json.loads((REPO_MODEL / "config.json").read_text())
    data = change(data)
    (folder / "config.json").write_text(json.dumps(data))


BROKEN = {
    "null": (lambda d: None, "not an object"),
    "a-list": (lambda d: [d], "not an object"),
    "t-zero": (lambda d: {**d, "preprocessing": {**d["preprocessing"], "T": 0}}, "T 0 is outside 1..256"),
    "negative-size": (lambda d: {**d, "model": {**d["model"], "input_size": [-128, 128]}}, "input side -128"),
    "huge": (lambda d: {**d, "model": {**d["model"], "embed_dims": [65536]}}, "embed dim 65536 is outside"),
    "n-zero": (lambda d: {**d, "preprocessing": {**d["preprocessing"], "events_per_frame": 0}},
               "events_per_frame 0 is outside"),
    "n-disagrees": (lambda d: {**d, "preprocessing": {**d["preprocessing"], "events_per_frame": 500}},
                    "disagree on T, input size, classes or events per frame"),
    "word-threshold": (lambda d: {**d, "decoder": {**d["decoder"], "threshold": "high"}}, "threshold"),
    "nan-density": (lambda d: {**d, "preprocessing": {**d["preprocessing"], "reference_px_per_input_px": "nan"}},
                    "reference_px_per_input_px nan is not a positive number"),
}


def test_broken_artifacts_are_listed_as_broken_and_never_picked(tmp_path, monkeypatch, capsys):
    import shutil

    root = tmp_path / "models"
    root.mkdir()
    shutil.copytree(REPO_MODEL, root / "good")
    for name, (change, _) in BROKEN.items():
        broken_copy(root, name, change)
    monkeypatch.setenv("EVAPP_MODELS", str(root))
    from evapp.engine import loading

    loading._warned_broken.clear()
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name, (_, phrase) in BROKEN.items():
        line = next(line for line in out.splitlines() if line.startswith(f"broken: {name}:"))
        assert phrase in line, (name, line)
        assert main(["replay", "x.aedat4", "--headless", "--model", name]) == 2
        assert phrase in one_sentence(capsys)
    assert "good (default)" in out
    loading._warned_broken.clear()
    assert loading.default_model_name() == "good"  # the broken ones are skipped, each with one warning


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:99999", "tcp://127.0.0.1:abc", "tcp://127.0.0.1:0", "tcp://:5"])
def test_bad_network_addresses_are_one_sentence(address, capsys):
    assert main(["replay", address, "--headless", "--no-model"]) == 2
    assert "is not a network address of the form tcp://HOST:PORT" in one_sentence(capsys)


def test_files_that_are_not_what_they_claim(tmp_path, capsys):
    import numpy as np

    cases = []
    np.save(tmp_path / "words.npy", np.array([["a", "b", "c", "d"]]))
    cases.append((tmp_path / "words.npy", "expected an N x 4 array of numbers"))
    arr = np.ones((10, 4))
    arr[3, 3] = np.nan
    np.save(tmp_path / "nan.npy", arr)
    cases.append((tmp_path / "nan.npy", "holds values no DVS sample has"))
    (tmp_path / "noeol.aedat").write_bytes(b"#!AER-DAT3.1\r\n#!END-HEADER")
    cases.append((tmp_path / "noeol.aedat", "its header has no '#!END-HEADER' line"))
    for path, phrase in cases:
        assert main(["replay", str(path), "--headless", "--no-model", "--max-speed"]) == 2
        assert phrase in one_sentence(capsys), path


def test_weights_that_are_not_finite_are_refused(tmp_path, capsys):
    from safetensors.torch import save_file

    from evapp.nets import create_model

    model = create_model("saformer-2-256", embed_dims=[32], num_heads=[2], input_size=[32, 32], T=2)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first].view(-1)[0] = float("nan")
    save_file(state, str(tmp_path / "w.safetensors"))
    from evapp.engine.loading import load_weights_into

    with pytest.raises(Exception, match="not finite numbers"):
        load_weights_into(model, tmp_path / "w.safetensors", "tiny")


def test_a_json_line_never_holds_nan(capsys):
    import json

    from evapp.sinks.jsonl import print_json

    print_json({"type": "prediction", "confidence": float("nan"), "probs": [0.5, float("inf"), 0.5],
                "decision": {"confidence": float("-inf")}})
    line = capsys.readouterr().out.strip()
    assert json.loads(line) == {"type": "prediction", "confidence": None, "probs": [0.5, None, 0.5],
                                "decision": {"confidence": None}}
    assert "NaN" not in line and "Infinity" not in line


def test_record_paths_are_checked_before_any_camera_is_opened(tmp_path, capsys):
    # nothing listens on the address: a check that waited for the connection would report that instead
    for path, phrase in [("/proc/evapp-test.aedat4", "Cannot write into /proc"),
                         (str(tmp_path / "take.AEDAT4"), "should end in lower-case .aedat4")]:
        assert main(["live", "--camera", "tcp://127.0.0.1:9", "--headless", "--no-model", "--record", path]) == 2
        assert phrase in one_sentence(capsys)


def test_an_upper_case_aedat4_extension_is_a_sentence_that_says_what_to_do(tmp_path, capsys):
    from evapp.sources.aedat4 import write_aedat4

    written = tmp_path / "TAKE.aedat4"
    write_aedat4(written, random_stream(1000, 64, 64, seed=1), DVX)
    path = written.rename(tmp_path / "TAKE.AEDAT4")
    assert main(["info", str(path)]) == 2
    assert "rename it to TAKE.aedat4" in one_sentence(capsys)

    # and writing one (dv-processing's writer would abort the process)
    assert main(["simulate", str(tmp_path / "NEW.AEDAT4"), "--classes", "0", "--gesture-s", "0.2"]) == 2
    assert "should end in" in one_sentence(capsys)


def test_events_that_go_back_in_time_are_kept_and_counted(tmp_path, capsys):
    import json

    events = random_stream(30_000, 128, 128, seed=5)
    backwards = events.copy()
    backwards[10_000:20_000]["timestamp"] -= 5_000_000  # a corrupt stretch stamped before the stream's start
    path = tmp_path / "backwards.aedat"
    write_aedat3(path, backwards)
    assert main(["replay", str(path), "--headless", "--no-model", "--max-speed", "-N", "1000"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["events_total"] == 30_000 and summary["events_time_clamped"] == 10_000
    assert summary["frames"] * 1000 + summary["leftover_events"] == 30_000  # every event in a frame or left over
    assert captured.err.count("stamped earlier than the events before them") == 1
    descending = events[::-1].copy()
    write_aedat3(path, descending)
    assert main(["replay", str(path), "--headless", "--no-model", "--max-speed", "-N", "1000"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["events_total"] == 30_000 and summary["frames"] == 30


def test_a_backlog_before_the_pipeline_is_measured_dropped_past_its_bound_and_counted():
    """A real paced stream (100 k events/s on the camera's clock) and a reader stalled for 3 s: the events that
    waited in the network reader are dropped oldest first until the backlog is under half a second again, and
    every event is accounted for."""
    import time

    from evapp.binning import FrameSpec
    from evapp.model_setup import ModelSetup
    from evapp.pipeline import Pipeline
    from evapp.sources.network import NetworkSource
    from evapp.testing import free_port, start_server

    port = free_port()
    server = start_server(port, 600_000, seed=7, rate=100_000, batch=5000, paced=True, linger=1.0)
    try:
        source = NetworkSource(f"tcp://127.0.0.1:{port}", idle_timeout_s=1.5)
        pipeline = Pipeline(source, ModelSetup.frames_only(FrameSpec((128, 128), 2000)), with_frames=True)
        stalled = []

        def stall_once(batch):
            if not stalled and pipeline.first_batch_at and time.perf_counter() - pipeline.first_batch_at > 1.0:
                stalled.append(True)
                time.sleep(3.0)

        pipeline.watch_batches(stall_once)
        for _ in pipeline.records():
            pass
        summary = pipeline.summary().to_json()
        pipeline.close()
    finally:
        server.kill()
    assert stalled and summary["events_total"] == 600_000
    assert summary["max_behind_s"] > 2.5
    assert 150_000 < summary["events_dropped_behind"] < 320_000
    assert (summary["frames"] * 2000 + summary["leftover_events"] + summary["events_outside_region"]
            + summary["events_thinned"] + summary["events_dropped_behind"]) == 600_000
