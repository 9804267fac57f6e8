"""``evapp bench``: speed measurements, each table printed with the machine it ran on."""

from __future__ import annotations

import json
from pathlib import Path

import click

from evapp.cli.options import FiniteFloat, Group, device_option, json_option, parse_policy
from evapp.errors import InputError, as_input_error
from evapp.sinks.jsonl import print_json


def describe_machine() -> str:
    from evapp.machine import describe_machine as describe

    return describe()


def require_architectures(names) -> None:
    from evapp.engine.loading import require_architectures as require

    require(names)


def bench_all_options(func):
    """The options of ``evapp bench`` and ``evapp bench all`` (the same command)."""
    options = [
        json_option(),
        click.option("--quick", is_flag=True, help="Small sizes (1 M binning events, 10 steps, 10 s of replay)."),
        click.option("--device", "devices", default="all", show_default=True, metavar="all|cpu|cuda",
                     help="Devices for the step and replay rows (all: cpu and, if present, cuda)."),
        click.option("--no-compile", is_flag=True,
                     help="Skip the torch.compile rows (compiling takes minutes on a CPU)."),
        click.option("--ort-threads", type=click.IntRange(min=1),
                     help="ONNX Runtime intra-op threads (default: ORT's)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.group(cls=Group, invoke_without_command=True, short_help="Measure speed; without a subcommand, everything.")
@bench_all_options
@click.pass_context
def bench(ctx, as_json, quick, devices, no_compile, ort_threads) -> None:
    """Measure speed (this machine is described in every table). Without a subcommand: everything, one table."""
    if ctx.invoked_subcommand is None:
        _bench_all(as_json, quick, devices, no_compile, ort_threads)


@bench.command("all")
@bench_all_options
def bench_all_cmd(as_json, quick, devices, no_compile, ort_threads) -> None:
    """Every benchmark as one table: binning, ms/step per model and engine, replay of the demo (x real time)."""
    _bench_all(as_json, quick, devices, no_compile, ort_threads)


def _bench_all(as_json, quick, devices, no_compile, ort_threads) -> None:
    from evapp.bench.suite import ENGINES, bench_all, format_suite
    from evapp.bench.suite import devices as available
    from evapp.nets import list_models

    if devices == "all":
        devs = available()
    elif devices in ("cpu", "cuda"):
        if devices not in available():
            raise InputError("--device cuda was requested but no CUDA GPU is available; use --device cpu.")
        devs = [devices]
    else:
        raise InputError(f"--device '{devices}' is not one of all, cpu, cuda.")
    engines = [e for e in ENGINES if not (no_compile and e == "torch compiled")]
    rows = bench_all(list_models(), devs, engines, binning_events=1_000_000 if quick else 10_000_000,
                     with_tonic=not quick, iters=10 if quick else 30, replay_seconds=10.0 if quick else None,
                     ort_threads=ort_threads)
    if as_json:
        print_json({"machine": describe_machine(), "rows": rows})
    else:
        click.echo(format_suite(rows))


@bench.command("binning")
@click.option("--events", type=click.IntRange(min=1000), default=10_000_000, show_default=True,
              help="Number of synthetic events per case.")
@click.option("--batch", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="Events per batch pushed into the binner.")
@json_option()
@click.option("--no-tonic", is_flag=True, help="Skip tonic's ToFrame (it is slow and memory-hungry).")
def bench_binning_cmd(events: int, batch: int, as_json: bool, no_tonic: bool) -> None:
    """Our fixed-count binner against tonic's ToFrame(event_count=N) on the same events."""
    from evapp.bench.binning import bench_binning, format_table

    rows = bench_binning(n_events=events, batch=batch, with_tonic=not no_tonic)
    if as_json:
        print_json({"machine": describe_machine(), "binning": rows})
    else:
        click.echo(describe_machine())
        click.echo(format_table(rows))


@bench.command("model")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@device_option("Where the models run.")
@click.option("--batch", "batches", default="1,4", show_default=True, metavar="B[,B...]",
              help="Batch sizes (K of staggered:K runs as a batch of K).")
@click.option("--iters", type=click.IntRange(min=1), default=50, show_default=True, help="Timed steps per case.")
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True, help="Untimed steps first.")
@click.option("--per-layer", is_flag=True, help="Also print the spike rate of every neuron layer.")
@click.option("--frames", "frames_path", metavar="FILE",
              help="Labelled recording whose frames NeuroBench's metrics are measured on (default: the demo).")
@click.option("--no-neurobench", is_flag=True, help="Skip NeuroBench's metrics.")
@json_option()
def bench_model_cmd(names, device, batches, iters, warmup, per_layer, frames_path, no_neurobench, as_json) -> None:
    """Milliseconds per time step of each model (median, p99), spike rates, energy per step (45 nm), and
    NeuroBench's metrics (footprint, activation sparsity, synaptic operations, execution rate). A name that is an
    artifact (e.g. a shipped model) runs its trained weights, an architecture untrained weights."""
    from evapp.bench.model import bench_models, format_model_bench
    from evapp.engine import resolve_device
    from evapp.engine.loading import find_artifact
    from evapp.nets import list_models
    from evapp.paths import assets_dir

    require_architectures([n for n in names if find_artifact(n) is None])
    frames = None
    if not no_neurobench:
        frames = Path(frames_path) if frames_path else assets_dir() / "demo.aedat4"
        if not frames.is_file():
            raise InputError(f"{frames} does not exist (NeuroBench's metrics are measured on its frames; pass "
                             "--frames FILE or --no-neurobench).")
    try:
        sizes = tuple(int(b) for b in batches.split(","))
    except ValueError:
        raise InputError(f"--batch '{batches}' is not a comma-separated list of integers.") from None
    with as_input_error(RuntimeError):
        dev = resolve_device(device)
    rows = bench_models(names or list_models(), dev, sizes, warmup=warmup, iters=iters, neurobench_frames=frames)
    if as_json:
        print_json({"machine": describe_machine(), "models": rows})
    else:
        click.echo(format_model_bench(rows, per_layer=per_layer))


@bench.command("train")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True, help="Clips per step.")
@click.option("--steps", type=click.IntRange(min=1), default=5, show_default=True,
              help="Timed steps per layout (after one untimed step each).")
@click.option("--train", "trainable", default="deep", show_default=True, metavar="head|last|deep|all",
              help="What is trained, as evapp finetune --train.")
@click.option("--precision", default="auto", show_default=True, metavar="auto|fp32|bf16",
              help="The step's precision, as evapp finetune --precision.")
@json_option()
def bench_train_cmd(names, batch, steps, trainable, precision, as_json) -> None:
    """Seconds per fine-tuning step on the CPU (batch x T frames, forward and backward) in PyTorch's stock layout
    and in the channels-last layout training runs in, interleaved (default: the shipped models)."""
    from evapp.bench.train import DEFAULT_MODELS, bench_train, format_train_bench
    from evapp.engine.loading import find_artifact

    require_architectures([n for n in names if find_artifact(n) is None])
    rows = bench_train(names or DEFAULT_MODELS, batch, steps, trainable, precision)
    if as_json:
        print_json({"machine": describe_machine(), "train": rows})
    else:
        click.echo(format_train_bench(rows))


@bench.group("live", cls=Group)
def bench_live() -> None:
    """Real-time measurements: end-to-end latency at the demo's rate, highest live rate without drops (CPU)."""


@bench_live.command("latency")
@click.option("--model", "models", multiple=True, metavar="NAME",
              help="Model (repeatable; default: saformer-2-256, sglformer-3-256, spikingresformer-dvsg).")
@click.option("--seconds", type=FiniteFloat(min=0, min_open=True), default=56.0, show_default=True,
              help="Seconds of the demo recording replayed at its own speed.")
@click.option("--window", is_flag=True, help="Latency to the answer painted in the window (offscreen Qt).")
@click.option("--policy", default="window", show_default=True, metavar="window|staggered:K|persistent",
              help="The engine's policy (persistent answers every frame: many more samples than window).")
@json_option()
def bench_live_latency_cmd(models, seconds, window, policy, as_json) -> None:
    """Replay assets/demo.aedat4 at its own speed; latency from an answer's last event to the answer shown."""
    from evapp.bench.live import DEFAULT_MODELS, format_latency, measure_latency

    parse_policy(policy)
    require_architectures(models)
    rows = [measure_latency(m, seconds, window, policy) for m in models or DEFAULT_MODELS]
    if as_json:
        print_json({"machine": describe_machine(), "latency": rows})
    else:
        click.echo(format_latency(rows))


@bench_live.command("served")
@click.option("--model", "model_name", metavar="NAME", help="Model (default: the best shipped one).")
@click.option("--factors", default="1,3,10", show_default=True, metavar="F[,F...]",
              help="Serve the demo at these multiples of its event rate (its clock compressed by F).")
@click.option("--policy", default="auto", show_default=True, metavar="auto|window|staggered:K|persistent")
@json_option()
def bench_live_served_cmd(model_name, factors, policy, as_json) -> None:
    """The demo served live over tcp:// (a dv-processing NetworkWriter on 127.0.0.1) at 1x, 3x and 10x its event
    rate into `evapp live`'s pipeline: how often the label shown is right, latency, gaps, drops."""
    from evapp.bench.live import format_served, measure_served

    try:
        values = [float(f) for f in factors.split(",")]
    except ValueError:
        raise InputError(f"--factors '{factors}' is not a comma-separated list of numbers.") from None
    if not values or min(values) <= 0:
        raise InputError(f"--factors '{factors}' must list positive numbers.")
    if policy != "auto":
        parse_policy(policy)
    rows = []
    for factor in values:
        rows.append(measure_served(model_name, factor, policy))
        click.echo(json.dumps({k: v for k, v in rows[-1].items() if k != "policy_changes"}), err=True)
    if as_json:
        print_json({"machine": describe_machine(), "served": rows})
    else:
        click.echo(format_served(rows))


@bench_live.command("reader")
@click.option("--events", type=click.IntRange(min=10_000), default=3_000_000, show_default=True,
              help="Events per burst.")
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True)
@json_option()
def bench_live_reader_cmd(events, rounds, as_json) -> None:
    """Events per second through the network reader in a child process (how evapp reads tcp://) against the
    same reader in process, interleaved, from a local NetworkWriter's burst."""
    from evapp.bench.reader import bench_reader
    from evapp.tables import format_rows

    rows = bench_reader(events, rounds)
    if as_json:
        print_json({"machine": describe_machine(), "reader": rows})
    else:
        click.echo(describe_machine())
        click.echo(format_rows(rows, [("round", "round", "d"), ("reader", "reader", ""),
                                      ("mev_per_s", "Mev/s", ".2f"), ("x_demo_rate", "x the demo's rate", ",d")]))


@bench_live.command("max-rate")
@click.option("--model", "models", multiple=True, metavar="NAME",
              help="Model (repeatable; default: saformer-2-256, sglformer-3-256, spikingresformer-dvsg).")
@click.option("--seconds", type=FiniteFloat(min=0, min_open=True), default=6.0, show_default=True,
              help="Seconds streamed at each rate.")
@click.option("--rates", metavar="R[,R...]",
              help="Event rates (ev/s) tried in order until frames are dropped (default: 50e3 to 800e3 in 9 steps).")
@json_option()
def bench_live_max_rate_cmd(models, seconds, rates, as_json) -> None:
    """Stream random events over the whole 640x480 sensor from a local NetworkWriter at rising rates into the
    live pipeline (policy window, the model's N); the highest rate without a dropped frame."""
    from evapp.bench.live import DEFAULT_MODELS, DEFAULT_RATES, format_max_rate, max_rate

    require_architectures(models)
    try:
        rate_list = [float(r) for r in rates.split(",")] if rates is not None else list(DEFAULT_RATES)
    except ValueError:
        raise InputError(f"--rates '{rates}' is not a comma-separated list of numbers.") from None
    if not rate_list or min(rate_list) <= 0:
        raise InputError(f"--rates '{rates}' must list positive event rates.")

    def progress(step: dict) -> None:
        click.echo(json.dumps(step), err=True)

    rows = [max_rate(m, rate_list, seconds, progress) for m in models or DEFAULT_MODELS]
    if as_json:
        print_json({"machine": describe_machine(), "max_rate": rows})
    else:
        click.echo(format_max_rate(rows))


COMMANDS = (bench,)
