"""Errors a user can fix, and the run's interruption, in one leaf module that every layer may import.

The CLI prints a :class:`UserError` as one line and exits with its
``exit_code`` (2 unless a subclass says otherwise); anything else that
escapes is a bug and keeps its traceback.
"""
from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (bad data path, no network for C4, an output that cannot be written...)."""

    exit_code = 2


class ScenarioError(UserError, ValueError):
    """A user error in a scenario: the message is one line, ready to print."""


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
