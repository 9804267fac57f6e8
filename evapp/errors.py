"""User-facing errors: each carries one sentence that names the problem and what to do about it."""


class EvappError(Exception):
    """An error the CLI reports as one clear sentence and a non-zero exit, without a traceback."""

    exit_code = 2


class InputError(EvappError):
    """The input (file, address, option value) is missing, unreadable or of the wrong kind."""


class SourceLost(EvappError):
    """A live source (camera, network stream) stopped delivering while we were reading it."""

    exit_code = 3
