"""Bad input gets one sentence and exit 2 (issue 19): the general mechanisms, a few cases each."""

from __future__ import annotations

import pytest

from evapp.cli.main import main
from evapp.events import LabelInterval
from evapp.sources.aedat3 import write_aedat3, write_labels_csv
from evapp.testing import random_stream


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
                                    ["--speed", "inf"], ["--speed", "nan"], ["--max-rate", "-inf"]])
def test_non_finite_numbers_are_refused_by_the_option_parser(recording, option, capsys):
    assert main(["replay", str(recording), "--headless", "--no-model", *option]) == 2
    sentence = one_sentence(capsys)
    assert f"Invalid value for '{option[0]}'" in sentence and ("finite" in sentence or "not in the range" in sentence)


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


def test_an_os_error_is_one_sentence(recording, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert main(["eval-stream", str(recording), "--model", "saformer-2-256", "--device", "cpu",
                 "--confusion", str(blocker / "confusion.png")]) == 2
    assert "a_file" in one_sentence(capsys)
