"""`evapp bench` (all): one table of binning, ms per step per engine and replay speed, on a small scale."""

from __future__ import annotations

import pytest
import torch

from evapp.bench.suite import _bench_one, _calibrated, bench_all, format_suite
from evapp.cli.main import main
from evapp.testing import synthetic_frames


def test_suite_rows_cover_binning_steps_per_engine_and_replay():
    rows = bench_all(["saformer-2-256"], ["cpu"], ("torch eager", "onnx"), binning_events=200_000, with_tonic=False,
                     iters=3, replay_seconds=2.0, ort_threads=1)
    by_bench = {b: [r for r in rows if r["bench"] == b] for b in ("binning", "step", "replay")}
    assert by_bench["binning"] and all(r["median"] > 0 and r["unit"] == "Mev/s" for r in by_bench["binning"])
    steps = by_bench["step"]
    assert [(r["case"], r["engine"]) for r in steps] == [("saformer-2-256 b1", "torch eager"),
                                                         ("saformer-2-256 b1", "onnx")]
    for r in steps:
        assert "failed" not in r["note"] and 0 < r["median"] <= r["p99"], r
    assert "CPU" in steps[1]["note"] and "1 thread(s)" in steps[1]["note"]
    replay = by_bench["replay"]
    assert [r["engine"] for r in replay] == ["torch eager", "onnx"]
    for r in replay:
        assert r["unit"] == "x real time" and r["median"] > 0 and "answers" in r["note"], r
    table = format_suite(rows)
    machine, *lines = table.splitlines()
    assert "cores" in machine and any("saformer-2-256 b1" in line and "onnx" in line for line in lines)


def test_an_engine_that_cannot_run_here_is_a_row_saying_why():
    model = _calibrated("saformer-2-256")
    frames = synthetic_frames(model.cfg.T, 1, model.cfg.input_size, 200, seed=3)[:, 0].numpy()
    row = _bench_one("saformer-2-256", model, frames, "cpu", "torch cuda-graph", 1, 0, 1, 1)
    assert row["median"] is None and row["note"].startswith("failed: ValueError") and "CUDA" in row["note"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a CUDA GPU")
def test_bench_on_cuda_without_a_gpu_is_one_sentence(capsys):
    assert main(["bench", "all", "--device", "cuda"]) == 2
    assert "no CUDA GPU is available" in capsys.readouterr().err
