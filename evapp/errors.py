"""User-facing errors: each carries one sentence that names the problem and what to do about it."""

from __future__ import annotations

import re
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


_BOOST_LOCATION = re.compile(r"\s*\[[^\[\]]*\bat /[^\[\]]*\]")  # "[system:111 at /path/x.hpp:588 in function '...']"
_CPP_LOCATION = re.compile(r"^/\S+\.(?:hpp|cpp|h)\(\d+\):")  # "/path/simplefile.hpp(313): void f(...) const"


def native_reason(exc: BaseException) -> str:
    """The cause a C++ library (dv-processing, boost) states in its exception, without source paths and function
    signatures; "" when the text is only a location."""
    lines = str(exc).strip().splitlines()
    text = _BOOST_LOCATION.sub("", lines[0]).strip() if lines else ""
    return "" if _CPP_LOCATION.match(text) else text


def with_reason(sentence: str, exc: BaseException) -> str:
    """``sentence`` with the native cause in parentheses where there is one: 'X is unreadable (cause).'"""
    reason = native_reason(exc)
    return f"{sentence} ({reason})." if reason else f"{sentence}."
