"""Corrupt files from a seed (flipped bytes, truncations, random stretches), replayed by the real command: each
ends with exit 0 and every event accounted for, or exit 2 and one sentence, within a time bound (issue 19)."""

from __future__ import annotations

import json
import os
import time
import zlib

import numpy as np
import pytest

from evapp.cli.main import main
from evapp.events import LabelInterval
from evapp.sources.aedat3 import write_aedat3, write_labels_csv
from evapp.sources.aedat4 import write_aedat4
from evapp.testing import random_stream
from tests.conftest import DVX

SEED = int(os.environ.get("EVAPP_FUZZ_SEED", "0"))  # another seed, another set of corruptions
BOUND_S = 12.0  # the slowest clean outcome: a reader stuck on a corrupt packet is killed after 3 s


def corrupt(raw: bytes, how: str, rng) -> bytes:
    b = bytearray(raw)
    if how == "flips":
        for i in rng.integers(16, len(b), 30):
            b[i] ^= 0xFF
    elif how == "truncated":
        b = b[: int(len(b) * rng.uniform(0.2, 0.98))]
    elif how == "stretch":
        start = int(rng.integers(16, max(17, len(b) - 4096)))
        b[start : start + 4096] = rng.integers(0, 256, min(4096, len(b) - start), dtype=np.uint8).tobytes()
    return bytes(b)


def outcome(path, capsys) -> tuple[int, float, str, str]:
    started = time.monotonic()
    code = main(["replay", str(path), "--headless", "--no-model", "--max-speed", "-N", "1000"])
    captured = capsys.readouterr()
    return code, time.monotonic() - started, captured.out, captured.err


def check(code, took, out, err, path):
    assert took < BOUND_S, (path, took)
    errors = [line for line in err.strip().splitlines() if not line.startswith("evapp: WARNING:")]
    if code == 0:
        summary = json.loads(out.strip().splitlines()[-1])
        accounted = (summary["frames"] * 1000 + summary["leftover_events"] + summary["events_outside_region"]
                     + summary["events_thinned"])
        assert accounted == summary["events_total"] and not errors, (path, summary, err)
    else:
        assert code == 2 and len(errors) == 1 and errors[0].startswith("evapp: error: "), (path, code, err)
        assert "Traceback" not in err and "internal error" not in err


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    events = random_stream(200_000, 640, 480, seed=1)
    write_aedat4(folder / "take.aedat4", events, DVX)
    small = random_stream(60_000, 128, 128, seed=2)
    write_aedat3(folder / "take.aedat", small)
    np.save(folder / "take.npy", np.stack([small["x"], small["y"], small["polarity"], small["timestamp"] / 1000.0], 1))
    raw = np.zeros(small.shape[0], dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])
    raw["t"], raw["x"], raw["y"], raw["p"] = small["timestamp"], small["x"], small["y"], small["polarity"]
    from expelliarmus import Wizard

    Wizard(encoding="evt3").save(folder / "take.raw", raw)
    write_labels_csv(folder / "labels.csv", [LabelInterval(i % 11, 100_000 * i, 100_000 * i + 50_000)
                                             for i in range(8)], t0_us=int(small["timestamp"][0]))
    return folder


@pytest.mark.parametrize("suffix", [".aedat4", ".aedat", ".npy", ".raw"])
@pytest.mark.parametrize("how", ["flips", "truncated", "stretch"])
def test_a_corrupt_recording_ends_cleanly(originals, tmp_path, suffix, how, capsys):
    rng = np.random.default_rng(zlib.crc32(f"{suffix} {how} {SEED}".encode()))
    path = tmp_path / f"corrupt{suffix}"
    path.write_bytes(corrupt((originals / f"take{suffix}").read_bytes(), how, rng))
    check(*outcome(path, capsys), path)


@pytest.mark.parametrize("how", ["flips", "truncated", "stretch"])
def test_a_corrupt_labels_file_ends_cleanly(originals, tmp_path, how, capsys):
    rng = np.random.default_rng(zlib.crc32(f"labels {how} {SEED}".encode()))
    path = tmp_path / "corrupt.aedat"
    path.write_bytes((originals / "take.aedat").read_bytes())
    (tmp_path / "corrupt_labels.csv").write_bytes(corrupt((originals / "labels.csv").read_bytes(), how, rng))
    check(*outcome(path, capsys), path)
