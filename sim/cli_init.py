"""``asyncsim init DIR``: a folder to start from, with an example scenario and its fleet.

Installed from a wheel, the shipped scenarios and fleets live inside the
package (``sim/scenarios``, ``sim/device_profiles``), where a user neither
finds nor should edit them. ``init`` copies one scenario into ``DIR`` and
the fleet it names into ``DIR/device_profiles/``, and points the scenario's
``workers.fleet`` at that copy by a path relative to the scenario file, so
editing the copied fleet changes the run from any working directory.

It never overwrites or deletes a file: every target is checked before the
first is written, and each is created exclusively, so a file that appears
in between is refused too. It writes all or nothing: a failure (a full
disk is exit 3) removes the files and folders this call made, so no
partial or empty file is left. ``sim/cli.py`` calls :func:`register`; the
console and ``fail`` come from :mod:`sim.cli_common`.
"""
from __future__ import annotations

import os
import re
from contextlib import suppress
from pathlib import Path

import typer
import yaml

from sim.errors import UserError
from sim.outputs import atomic_output
from sim.profiles import PROFILE_DIR, SCENARIO_DIR, fleet_path

#: the example ``asyncsim init`` copies unless told otherwise (the ``make demo`` scenario)
DEFAULT_EXAMPLE = "very_heterogeneous"
#: the copied fleet's folder inside DIR, mirroring the repository's layout
FLEET_FOLDER = "device_profiles"


def register(app: typer.Typer) -> None:
    """Add ``init`` to ``app``."""
    app.command("init")(init)


def shipped_examples() -> list[str]:
    """Names of the shipped example scenarios."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def plan(example: str) -> dict[Path, bytes]:
    """The files ``init`` writes for ``example``: paths relative to DIR, and their bytes.

    Raises ValueError (one line) for an unknown example.
    """
    source = SCENARIO_DIR / f"{example.removesuffix('.yaml')}.yaml"
    if not source.is_file():
        raise ValueError(f"no example scenario {example!r}; choose one of: {', '.join(shipped_examples())}")
    text = source.read_bytes().decode("utf-8")
    workers = (yaml.safe_load(text) or {}).get("workers") or {}
    fleet = workers.get("fleet")
    if "devices" in workers or not isinstance(fleet, str):
        # devices written inline (or the default fleet): the scenario alone is the example
        return {Path(source.name): text.encode("utf-8")}
    named = not fleet.endswith((".yaml", ".yml")) and "/" not in fleet
    fleet_file = PROFILE_DIR / f"{fleet}.yaml" if named else fleet_path(fleet, source.parent)
    target = f"{FLEET_FOLDER}/{fleet_file.name}"
    pattern = re.compile(r"^(?P<head>[ \t]+fleet:[ \t]*)(?P<q>['\"]?)" + re.escape(fleet) + r"(?P=q)(?P<tail>[ \t]*(#.*)?)$", re.M)
    rewritten, count = pattern.subn(lambda m: f"{m['head']}{target}{m['tail']}", text)
    if count != 1 or (yaml.safe_load(rewritten).get("workers") or {}).get("fleet") != target:
        raise ValueError(f"{source}: cannot point its workers.fleet at the copied fleet (expected one 'fleet: {fleet}' line)")
    return {Path(source.name): rewritten.encode("utf-8"), Path(target): fleet_file.read_bytes()}


def _refusal(directory: Path, files: dict[Path, bytes]) -> str | None:
    """Why ``files`` cannot be written under ``directory`` without touching an existing file, or None."""
    if os.path.lexists(directory) and not directory.is_dir():
        return f"{directory} exists and is not a folder"
    for rel in files:
        for parent in reversed(rel.parents[:-1]):  # folders the file needs, outermost first
            if os.path.lexists(directory / parent) and not (directory / parent).is_dir():
                return f"{directory / parent} exists and is not a folder"
        if os.path.lexists(directory / rel):
            return f"{directory / rel} exists; asyncsim init never overwrites a file (choose another folder)"
    return None


def write_all_or_nothing(files: dict[Path, bytes]) -> None:
    """Create every file, none over an existing one; on any failure remove the files and folders made here.

    Why: an interrupted ``init`` (a full disk on the second file) must not
    leave a scenario pointing at a fleet file that is missing or empty.
    """
    made: list[Path] = []  # folders and files this call created, in creation order
    try:
        for path, data in files.items():
            made += reversed([p for p in (path.parent, *path.parent.parents) if not p.exists()])  # outermost first
            with atomic_output(path, replace=False) as tmp:  # exclusive, even against a file that appeared meanwhile
                tmp.write_bytes(data)
            made.append(path)
    except BaseException:
        for item in reversed(made):  # innermost first, so each folder is empty when its turn comes
            with suppress(OSError):
                if item.is_file():
                    item.unlink()
                else:
                    item.rmdir()
        raise


def init(
    directory: Path = typer.Argument(..., help="folder to write into (created if missing; existing files are never touched)", show_default=False),
    example: str = typer.Option(DEFAULT_EXAMPLE, "--example", help="shipped example scenario to copy (an unknown name lists them)"),
) -> None:
    """Copy an example scenario and the fleet file it uses into DIR, to start from."""
    from sim.cli_common import console, fail, fail_with

    try:
        files = plan(example)
    except (ValueError, OSError, yaml.YAMLError) as exc:
        fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return  # unreachable, for type checkers
    reason = _refusal(directory, files)
    if reason is not None:
        fail(reason)
    try:
        write_all_or_nothing({directory / rel: data for rel, data in files.items()})
    except UserError as exc:
        fail_with(exc)
    for rel in files:
        console.print(f"wrote {directory / rel}", markup=False)
    scenario = directory / next(iter(files))
    console.print(f"next: asyncsim run {scenario} (asyncsim validate {scenario} checks an edit)", markup=False)
