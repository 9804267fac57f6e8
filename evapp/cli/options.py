"""Option sets and value parsers shared by the commands, each declared once."""

from __future__ import annotations

import dataclasses
import functools
import math

import click

from evapp.errors import InputError

# evapp.engine.torch_engine.PRECISIONS, spelled out so that the CLI starts without importing torch (a test keeps
# the two equal).
PRECISION_CHOICES = ("fp32", "tf32", "fp16", "bf16")


def json_option(help_text: str = "Print JSON instead of a table."):
    return click.option("--json", "as_json", is_flag=True, help=help_text)


class FiniteFloat(click.FloatRange):
    """click's FloatRange that also refuses nan, inf and magnitudes past ``LARGEST`` (no option of evapp means
    anything there, and a time of 1e308 s overflows every clock)."""

    LARGEST = 1e12
    name = "float range"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number) or abs(number) > self.LARGEST:
            self.fail(f"{value!r} is not a finite number up to {self.LARGEST:g}.", param, ctx)
        return number


def device_option(help_text: str | None = None):
    return click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda", help=help_text)


def parse_speed(ctx, param, value):
    if value is None:
        return None
    try:
        speed = float(value)
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a number.") from None
    if not 0 < speed <= FiniteFloat.LARGEST:
        raise click.BadParameter(f"'{value}' must be greater than 0 (and finite).")
    return speed


def parse_region(ctx, param, value):
    if value is None:
        return None
    from evapp.binning import Region

    try:
        return Region.parse(value)
    except InputError as exc:
        raise click.BadParameter(str(exc)) from None


def parse_resolution(ctx, param, value):
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"'{value}' is not WIDTHxHEIGHT.") from None
    if w < 32 or h < 32:
        raise click.BadParameter(f"'{value}' is too small (at least 32x32).")
    return w, h


def parse_policy(policy: str) -> str:
    from evapp.engine.base import parse_policy as parse

    try:
        parse(policy)
    except ValueError as exc:
        raise InputError(f"{exc}.") from None
    return policy


def region_option(help_text: str = "Sensor region mapped onto the input (default: the centred square)."):
    return click.option("--region", callback=parse_region, metavar="x,y,w,h", help=help_text)


def events_per_frame_option(help_text: str = "Events per frame (default: the model's N, or 5000 without a model)."):
    return click.option("--events-per-frame", "-N", type=click.IntRange(min=1), help=help_text)


def _apply(func, options):
    for option in reversed(options):
        func = option(func)
    return func


def decoder_options(func):
    """--smoothing/--threshold/--hold/--idle-fps/--idle-floor-fps: override the model's decoder settings; the
    command gets them as one ``decoder_overrides`` dict of the options given (DecoderSettings field names)."""
    from evapp.decoder import DecoderSettings

    d = DecoderSettings()
    options = [
        click.option("--smoothing", type=click.IntRange(min=1),
                     help=f"Answers averaged by the decoder (default: the model's, else {d.smoothing})."),
        click.option("--threshold", type=FiniteFloat(0, 1),
                     help=f"Confidence needed to name a gesture (the model's, else {d.threshold})."),
        click.option("--hold", type=click.IntRange(min=1),
                     help=f"Answers a new label must lead before it shows (the model's, else {d.hold})."),
        click.option("--idle-fps", type=FiniteFloat(min=0),
                     help="Frames/s over the last two frame intervals below which the scene is idle "
                          f"(the model's, else {d.idle_below_fps:g}: never idle)."),
        click.option("--idle-floor-fps", type=FiniteFloat(min=0),
                     help="The training streams' motion floor: a stream whose own floor is lower scales the idle "
                          f"threshold down by the ratio (the model's, else {d.idle_floor_fps:g}: never scaled)."),
    ]

    @functools.wraps(func)
    def wrapper(*args, smoothing, threshold, hold, idle_fps, idle_floor_fps, **kwargs):
        given = {"smoothing": smoothing, "threshold": threshold, "hold": hold, "idle_below_fps": idle_fps,
                 "idle_floor_fps": idle_floor_fps}
        return func(*args, decoder_overrides={k: v for k, v in given.items() if v is not None}, **kwargs)

    return _apply(wrapper, options)


def torch_options(func):
    """--precision/--compile/--cuda-graph, passed to the command as one ``torch_opts`` argument."""
    from evapp.model_setup import TorchOptions

    @functools.wraps(func)
    def wrapper(*args, precision, compile_step, cuda_graph, **kwargs):
        return func(*args, torch_opts=TorchOptions(precision, compile_step, cuda_graph), **kwargs)

    return _apply(wrapper, [
        click.option("--precision", type=click.Choice(PRECISION_CHOICES), default="fp32", show_default=True,
                     help="Torch engine arithmetic: fp32 exact; tf32, fp16 (CUDA) and bf16 faster, a few answers "
                          "differ."),
        click.option("--compile", "compile_step", is_flag=True,
                     help="torch.compile the step (the first frame waits for the compile: seconds to a minute)."),
        click.option("--cuda-graph", is_flag=True,
                     help="Replay each step as one CUDA graph (CUDA; no spike rate). About 10x faster on an H100."),
    ])


def model_options(func=None, *, frames_only: bool = True, realtime: str = "never"):
    """--model/--weights/--policy/--device/--engine, the torch and decoder options (and --no-model where a
    command can run without a model), passed to the command as one ``choice`` (a ModelChoice whose name is
    already the default model when none was named; None with --no-model). ``realtime``: ``always`` (live) or
    ``window`` (replay without --headless): answers must keep up, so the defaults are the CPU's real-time model
    and ``--policy auto``; ``never``: the best model and its own policy."""
    if func is None:
        return functools.partial(model_options, frames_only=frames_only, realtime=realtime)

    @functools.wraps(func)
    def wrapper(*args, model_name, weights, policy, device, engine_kind, torch_opts, decoder_overrides,
                no_model=False, **kwargs):
        from evapp.model_setup import ModelChoice, resolve_model_name

        if weights and not model_name:
            raise InputError("--weights needs --model NAME.")
        live = realtime == "always" or (realtime == "window" and not kwargs.get("headless", True))
        choice = ModelChoice(resolve_model_name(model_name, no_model, realtime_on=device if live else None), weights,
                             policy or ("auto" if live else None), device, engine_kind, torch_opts,
                             decoder_overrides)
        return func(*args, choice=choice, **kwargs)

    options = [
        click.option("--model", "model_name", metavar="NAME",
                     help="Model to run (see 'evapp models'; default: the best shipped one)."),
        *([click.option("--no-model", is_flag=True, help="Run no model: only bin frames and show the events.")]
          if frames_only else []),
        click.option("--weights", type=click.Path(dir_okay=False), help="Weights (.safetensors) for --model."),
        click.option("--policy", metavar="auto|window|staggered:K|persistent",
                     help="When state is reset and answers are given (default: auto for live and the window, "
                          "else the model's; see the README)."),
        device_option("Where the model runs."),
        click.option("--engine", "engine_kind", type=click.Choice(["torch", "onnx"]), default="torch",
                     show_default=True, help="Inference engine: PyTorch, or ONNX Runtime on the exported step."),
        torch_options,
        decoder_options,
    ]
    return _apply(wrapper, options)


def with_frames(choice, events_per_frame: int | None, input_size: int | None = None):
    """The choice with the user's -N and --input-size."""
    return dataclasses.replace(choice, events_per_frame=events_per_frame, input_size=input_size)


def settings_option(settings_cls, name: str, *decls: str, **kwargs):
    """A click option whose default is the dataclass field's own (so a default is stated once, in the
    settings class)."""
    default = next(f.default for f in dataclasses.fields(settings_cls) if f.name == name)
    if default is not None:
        kwargs.setdefault("default", default)
        kwargs.setdefault("show_default", True)
    return click.option(*decls, name, **kwargs)


class Group(click.Group):
    """A click group whose command list shows each command's whole first sentence, wrapped, never cut short
    with '...'."""

    def format_commands(self, ctx, formatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
