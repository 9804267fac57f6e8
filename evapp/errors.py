"""User-facing errors: each carries one sentence that names the problem and what to do about it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class EvappError(Exception):
    """An error the CLI reports as one clear sentence and a non-zero exit, without a traceback."""

    exit_code = 2


class InputError(EvappError):
    """The input (file, address, option value) is missing, unreadable or of the wrong kind."""


class SourceLost(EvappError):
    """A live source (camera, network stream) stopped delivering while we were reading it."""

    exit_code = 3


@contextmanager
def as_input_error(*kinds: type[Exception]) -> Iterator[None]:
    """Turn a library's ValueError / RuntimeError (or ``kinds``) about the user's input into an InputError with
    the same sentence, so the CLI prints it without a traceback."""
    caught = kinds or (ValueError, RuntimeError)
    try:
        yield
    except caught as exc:
        raise InputError(f"{str(exc).rstrip('.')}.") from None
