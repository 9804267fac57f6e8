"""The ``evapp`` group and entry point. Every command has ``--help``; ``--debug`` (anywhere) shows tracebacks.

User-facing failures raise ``EvappError`` subclasses and end as one sentence on stderr with a non-zero exit
code; anything else is a bug and says so (with the traceback under ``--debug``).
"""

from __future__ import annotations

import logging
import os
import sys
import traceback

import click

from evapp.cli import bench, data, models, stream, teach
from evapp.cli.options import Group
from evapp.cpu_memory import keep_freed_memory
from evapp.errors import EvappError

log = logging.getLogger("evapp")


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, help="Show full tracebacks and debug logging.")
@click.option("-v", "--verbose", is_flag=True, help="More log output on stderr.")
@click.version_option(package_name="evapp")
def cli(debug: bool, verbose: bool) -> None:
    """evapp: real-time gesture recognition from event cameras with stateful spiking transformers."""
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    # Only evapp's own loggers speak at -v: libraries (torch at exit, for one) stay at warnings.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="evapp: %(levelname)s: %(message)s",
                        force=True)
    log.setLevel(level)
    keep_freed_memory()  # before torch allocates anything: see evapp/cpu_memory.py


for module in (data, stream, teach, models, bench):
    for command in module.COMMANDS:
        cli.add_command(command)


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the click group and turns errors into one sentence and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("EVAPP_DEBUG") == "1"
    if debug and "--debug" in args:  # the flag belongs to the group: accepted after the command too
        args.remove("--debug")
        args.insert(0, "--debug")
    try:
        # Not cli.main(): it turns a broken stdout pipe into exit 1 before we could see it.
        with cli.make_context("evapp", args) as ctx:
            cli.invoke(ctx)
        return 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("evapp: interrupted.", err=True)
        return 130
    except click.exceptions.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        click.echo(f"evapp: error: {exc.format_message().rstrip('.')}{hint}.", err=True)
        return exc.exit_code
    except EvappError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"evapp: error: {exc}", err=True)
        return exc.exit_code
    except BrokenPipeError:
        return _reader_went_away()
    except OSError as exc:  # the system refused (permissions, a full disk, a vanished file): not a bug of ours
        if debug:
            traceback.print_exc()
        click.echo(f"evapp: error: {os_error_sentence(exc)}", err=True)
        return 2
    except Exception as exc:  # noqa: BLE001 - the last line of defence for the user
        if debug:
            traceback.print_exc()
        click.echo(f"evapp: internal error: {type(exc).__name__}: {exc} (run with --debug for details).", err=True)
        return 1


def os_error_sentence(exc: OSError) -> str:
    """'Permission denied: /data/x.aedat4.' from an OSError (its message where it has no errno)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    where = f": {exc.filename}" if exc.filename else ""
    return f"{reason}{where}."


def _reader_went_away() -> int:
    """The reader of our stdout went away (``| head``): not an error of ours. stdout now points at /dev/null so
    that the interpreter's final flush does not fail again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def run() -> None:
    """Console-script entry point. A process started in the background by a shell without job control inherits
    SIGINT ignored; evapp's promise is that Ctrl-C (SIGINT) ends any command, so it is honoured from the start
    (while a pipeline runs, evapp.interrupts handles it in any case)."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
