"""Where outputs may go: a user's files are never deleted, truncated or silently replaced.

Every command checks its output locations *before* it computes anything, so
a mistake costs one line, not a finished run:

* a run folder may replace only a folder that is recognisably an earlier
  asyncsim run (:func:`is_run_folder`); anything else is refused;
* a report folder may be rewritten only by the command that made it (the
  ``Made by:`` line of its ``report.md``), unless the user says ``--force``;
* a path under a file, an unwritable folder or a directory where a file is
  expected is named in one line.

Writing itself goes through :func:`writing`, which turns the system's
``OSError`` into one line naming the path (a full disk gets its own exit
code, :class:`sim.errors.DiskFullError`).
"""
from __future__ import annotations

import errno
import json
import os
import shlex
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sim.errors import DiskFullError, OutputError

#: the files (and hidden work folders) an asyncsim run folder is made of
RUN_FILES = frozenset({
    "scenario.yaml", "metrics.csv", "events.csv", "metrics.parquet", "events.parquet", "summary.json",
    "curves.png", "trace.json",
})


def is_run_folder(folder: Path) -> bool:
    """An existing folder made by ``asyncsim run``: a readable summary with a run hash, and only run files."""
    folder = Path(folder)
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        names = {p.name for p in folder.iterdir()}
    except (OSError, ValueError):
        return False
    return isinstance(summary, dict) and "run_hash" in summary and names <= RUN_FILES


def _existing_ancestor(path: Path) -> Path:
    """The nearest part of ``path`` that exists; raises if that part is a file (a path under a file)."""
    probe = path.absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"{path}: cannot create it, {probe} is a file, not a folder")
    return probe


def check_folder(path: Path, what: str) -> None:
    """``path`` can be created (or is an existing folder) and written to."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path}: is a file, expected a folder")
    base = _existing_ancestor(path)
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {path}: {base} is not writable")


def check_file(path: Path, what: str) -> None:
    """``path`` can be written as a file (its folder can be created; it is not a folder)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path}: is a folder, expected a file name")
    check_folder(path.parent, what)
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{what} {path}: is not writable")


def check_run_destination(folder: Path, what: str = "--out") -> None:
    """A run may write ``folder`` only if it is new, empty, or an earlier asyncsim run."""
    folder = Path(folder)
    check_folder(folder, what)
    if folder.is_dir() and any(folder.iterdir()) and not is_run_folder(folder):
        names = sorted(p.name for p in folder.iterdir())
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise OutputError(
            f"{what} {folder}: holds files that are not an asyncsim run ({shown}); nothing was changed. "
            "Choose a new or empty folder"
        )


def report_command(folder: Path) -> str | None:
    """The command recorded in a report folder's ``report.md`` (the line after ``Made by:``), if any."""
    try:
        lines = (Path(folder) / "report.md").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    for i, line in enumerate(lines):
        if line.strip() == "Made by:":
            rest = [line.strip() for line in lines[i + 1:] if line.strip()]
            return rest[0] if rest else None
    return None


#: options that change how a command runs, not what it produces; aliases -> one spelling
_IGNORED_OPTIONS = {"--jobs": 1, "-j": 1, "--quiet": 0, "-q": 0, "--force": 0, "--runs": 1}
_ALIASES = {"--methods": "--method", "-m": "--method", "--seeds": "--seed", "-s": "--set", "-o": "--out"}


def command_key(command: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """What a report command produces: its arguments and options, order and parallelism aside."""
    try:
        tokens = shlex.split(command)
    except ValueError:
        return (command,), ()
    args, options, i = [], [], 0
    while i < len(tokens):
        token = tokens[i]
        flag, eq, inline = token.partition("=") if token.startswith("--") else (token, "", "")
        if flag in _IGNORED_OPTIONS:
            i += 1 + (0 if eq else _IGNORED_OPTIONS[flag])
            continue
        if flag.startswith("-"):
            value = inline if eq else (tokens[i + 1] if i + 1 < len(tokens) else "")
            options.append((_ALIASES.get(flag, flag), value))
            i += 1 if eq else 2
        else:
            args.append(token)
            i += 1
    return tuple(args), tuple(sorted(options))


def check_report_destination(folder: Path, command: str, force: bool, what: str = "--out") -> None:
    """A report folder is rewritten only by the command that made it, or with ``--force``."""
    folder = Path(folder)
    check_folder(folder, what)
    if force or not folder.is_dir() or not any(folder.iterdir()):
        return
    made_by = report_command(folder)
    if made_by is not None and command_key(made_by) == command_key(command):
        return
    origin = f"was made by `{made_by}`" if made_by else "holds files that are not an asyncsim report"
    raise OutputError(
        f"{what} {folder}: {origin}; nothing was changed. Pass --force to replace it, or choose another --out"
    )


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an ``OSError`` while writing ``path`` into one line that names it."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(f"{path}: disk full while writing ({reason}); nothing half-written was kept") from None
        raise OutputError(f"{path}: cannot write ({reason})") from None
