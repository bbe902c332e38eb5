"""Errors a user can fix, and the run's interruption, in one leaf module that every layer may import.

The CLI prints a :class:`UserError` as one line and exits with its
``exit_code`` (2 unless a subclass says otherwise); anything else that
escapes is a bug and keeps its traceback.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


class UserError(Exception):
    """A problem the user can fix (bad data path, no network for C4, an output that cannot be written...)."""

    exit_code = 2


class ScenarioError(UserError, ValueError):
    """A user error in a scenario: the message is one line, ready to print; ``field`` names the field, when one is at fault."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class FieldError(UserError):
    """A scenario field that proves invalid only once the run is built (it needs the trainer's model or data).

    Raised deep in a run, where the scenario's file is not known; the command
    that read the file names it with :meth:`in_file`, so the user still gets
    one line with the file and the field.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)  # both in args, so the error survives a process pool's pickling
        self.field, self.message = field, message

    def __str__(self) -> str:
        return f"field '{self.field}': {self.message}"  # the wording of a ScenarioError's field

    def in_file(self, file: object) -> "ScenarioError":
        """The same error, prefixed with the scenario file it came from."""
        return ScenarioError(f"{file}: {self}")


@contextmanager
def naming_file(file: object) -> Iterator[None]:
    """Run a block that builds or runs the scenario read from ``file``; a :class:`FieldError` in it names the file."""
    try:
        yield
    except FieldError as exc:
        raise exc.in_file(file) from None


class OutputError(UserError):
    """An output could not be written: named path, the system's reason."""


class DiskFullError(OutputError):
    """The disk filled up while writing; distinct code so scripts can tell it from a mistake."""

    exit_code = 3


class RunDiverged(UserError):
    """A run stopped because its losses became non-finite or exploded; its metrics so far are kept."""

    exit_code = 4


class RunInterrupted(Exception):
    """A run stopped at a safe point because a stop was requested (SIGINT / SIGTERM); its state is saved."""
