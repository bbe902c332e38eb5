"""Where outputs may go: a user's files are never deleted, truncated or silently replaced.

Every command checks its output locations *before* it computes anything, so
a mistake costs one line, not a finished run:

* a run folder may replace only a folder that is recognisably an earlier
  asyncsim run (:func:`is_run_folder`); anything else is refused;
* a report folder may be rewritten only by the command that made it (the
  ``Made by:`` line of its ``report.md``), unless the user says ``--force``;
* a single output file (``sweep --out``, ``trace --out``) may replace only a
  file asyncsim wrote, known by its first bytes (:func:`made_by_asyncsim`),
  unless the user says ``--force``;
* a path under a file, an unwritable folder or a directory where a file is
  expected is named in one line.

Writing itself goes through :func:`writing`, which turns the system's
``OSError`` into one line naming the path (a full disk gets its own exit
code, :class:`sim.errors.DiskFullError`). Files are written whole or not at
all: :func:`atomic_output` writes a temporary sibling and renames it over
the target, :func:`staged_folder` builds a report in a temporary sibling
folder and moves its files in, so a failed write leaves neither a partial
nor an empty file and never destroys the earlier output.
"""
from __future__ import annotations

import errno
import json
import os
import secrets
import shlex
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sim.errors import DiskFullError, OutputError

#: the files (and hidden work folders) an asyncsim run folder is made of
RUN_FILES = frozenset({
    "scenario.yaml", "metrics.csv", "events.csv", "metrics.parquet", "events.parquet", "summary.json",
    "curves.png", "trace.json", "live.csv", "against.json", "timeline_vs_sim.png",  # the last three: a live run's (sim/live/session.py)
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
        args, options = command_options(command)
    except ValueError:
        return (command,), ()
    return args, tuple(sorted(options))


def command_options(command: str) -> tuple[tuple[str, ...], list[tuple[str, str]]]:
    """A recorded command's arguments and its options in the order given (aliases as one spelling, how it ran aside).

    Order is kept for a command planned again (:mod:`sim.rescore`): a
    ``--set`` given twice takes its last value. A ``ValueError`` if it does
    not split as a shell line.
    """
    tokens = shlex.split(command)
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
    return tuple(args), options


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


#: how every kind of file asyncsim writes at a path the user names begins; it knows its own files by these bytes
#: (a content mark, not a sidecar: it travels with the file, and a file the user made never carries it)
SIGNATURES = (
    b"scenario,sweep,method,seed,status,simulated_seconds,run_hash,folder,",  # a table of runs: sweep --out, runs.csv
    b'{"otherData": {"made_by": "asyncsim',  # a trace: sim.trace.write_trace puts this mark first
    b"# made by asyncsim calibrate",  # a device profile: sim.live.calibrate.CALIBRATED_MARK
    b"noise_scale_sequences,noise_scale_tokens,",  # an estimate: sim.cli_lm.NOISE_SCALE_HEADER
)


def made_by_asyncsim(path: Path) -> bool:
    """``path`` begins as a file asyncsim writes; only its first bytes are read, so a large trace costs nothing."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(max(len(s) for s in SIGNATURES))
    except OSError:
        return False
    return head.startswith(SIGNATURES)


def check_output_file(path: Path, what: str, force: bool) -> None:
    """A command may replace the file ``path`` only if it is empty or asyncsim made it; anything else needs ``--force``.

    The file-level twin of :func:`check_report_destination`: a user's
    ``mydata.csv`` given as ``--out`` by mistake is refused in one line
    before anything is computed. A device or pipe (``/dev/null``) is refused
    even with ``--force``: writing replaces the path with a new file.
    """
    path = Path(path)
    check_file(path, what)
    if not os.path.lexists(path):
        return
    if not path.is_file():
        raise OutputError(f"{what} {path}: is not a regular file; choose a file name")
    if force or path.stat().st_size == 0 or made_by_asyncsim(path):
        return
    raise OutputError(
        f"{what} {path}: exists and was not made by asyncsim; nothing was changed. "
        "Pass --force to replace it, or choose another file"
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


def temporary_sibling(path: Path) -> Path:
    """A hidden, unused name next to ``path`` (same filesystem, so a rename moves it); it keeps ``path``'s suffixes,
    so writers that pick a format or compression from the name (savefig, ``to_csv`` of ``.csv.gz``) still do."""
    path = Path(os.path.abspath(path))  # '.' and '..' have no name of their own
    return path.with_name(f".tmp-{secrets.token_hex(4)}.{path.name}")


@contextmanager
def _new_folders(folder: Path) -> Iterator[None]:
    """Create ``folder`` and its missing parents; if the block fails, remove again the ones made here (if empty)."""
    folder = Path(folder)
    missing = [p for p in (folder, *folder.parents) if not p.exists()]  # innermost first
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for made in missing:
            try:
                made.rmdir()
            except OSError:
                break
        raise


def _publish(tmp: Path, path: Path, replace: bool) -> None:
    """Give the finished ``tmp`` the name ``path`` in one step; without ``replace``, never over an existing file."""
    if replace:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails if path exists, even one that appeared after the checks
    except FileExistsError:
        raise OutputError(f"{path}: exists (it appeared while writing); it was left as it was") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        if os.path.lexists(path):  # a filesystem without hard links: check, then rename
            raise OutputError(f"{path}: exists (it appeared while writing); it was left as it was") from None
        os.replace(tmp, path)


@contextmanager
def atomic_output(path: Path, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; when the block succeeds it becomes ``path`` in one rename.

    Why: a write that fails halfway (a full disk, an interrupt, a bug) must
    leave neither a partial nor an empty file, nor destroy the earlier file
    at ``path``; the temporary is removed instead, and folders made for it
    too. ``replace=False`` publishes only where no file exists yet (``init``
    never overwrites). An ``OSError`` becomes one line naming ``path``
    (:func:`writing`; exit 3 on a full disk).
    """
    path = Path(path)
    tmp = temporary_sibling(path)
    with writing(path), _new_folders(path.parent):
        try:
            yield tmp
            _publish(tmp, path, replace)
        finally:
            tmp.unlink(missing_ok=True)


def _move_files(staged: Path, folder: Path) -> None:
    """Move every file under ``staged`` to the same place under ``folder``, replacing files of the same name.

    ``report.md`` files go last, the top one very last: a report names the
    command that made it (which lets that command rewrite it) only once its
    other files are in place.
    """
    files = [p for p in staged.rglob("*") if p.is_file()]
    files.sort(key=lambda p: (p.name == "report.md", -len(p.parts), str(p)))
    for source in files:
        target = folder / source.relative_to(staged)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)


@contextmanager
def staged_folder(folder: Path) -> Iterator[Path]:
    """Yield an empty hidden folder inside ``folder`` to build a report in; when the block succeeds, its files move up.

    Why: a report is many files, and a failure while drawing the fourth plot
    must leave no new file, no empty plot and the earlier report as it was.
    Each file moves in with one rename (the staging folder sits inside
    ``folder``, so on its filesystem even when ``folder`` is a link to
    another disk); files in ``folder`` that the report does not make are
    kept (``--force`` over a user's folder replaces only the report's own
    files). A ``folder`` made here is removed again on failure. An
    ``OSError`` becomes one line naming ``folder`` (:func:`writing`; exit 3
    on a full disk).
    """
    folder = Path(folder)
    staged = folder / f".tmp-{secrets.token_hex(4)}"
    with writing(folder), _new_folders(folder):
        try:
            staged.mkdir()
            yield staged
            _move_files(staged, folder)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
