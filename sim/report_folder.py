"""``asyncsim report FOLDER``: draw a comparison report again from what it was made of, computing nothing.

A comparison report (``compare``, or one experiment of ``reproduce``)
names its runs in ``runs.csv``. When every one of those run folders is at
hand and proves itself (:func:`sim.store.run_problem`: its tables hash to
its run hash, which is the one the report recorded), the report is drawn
from them, as ``compare`` drew it. Where they are gone (committed reports:
the run store is git-ignored), it is drawn from the CSVs the report folder
kept; plots that need the runs' events are then left as they were.

Only a folder whose ``report.md`` says a comparison made it is touched, and
only the report's own files are rewritten (:data:`sim.compare_report.REPORT_FILES`),
through :func:`sim.outputs.staged_folder`: the whole report or nothing, and
files the report does not make (a README beside it) are never touched.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sim.compare_report import KEPT_TABLES, ReportData, Rendered, render_report
from sim.errors import UserError
from sim.outputs import check_folder, made_by_asyncsim, report_command, staged_folder
from sim.scenario import Scenario

#: how compare's report.md states what it compared (sim/compare_report.py writes this line)
METHODS_LINE = re.compile(r"^Methods: (?P<methods>[^;]+); seeds: [^;.]+(?:; swept (?P<axis>\S+): .*?)?\. "
                          r"(?P<provenance>\d+ runs .*)$")
#: the columns of the report's tables that hold names, not numbers (read as text: sweep '0.10' stays '0.10')
TEXT_COLUMNS = ("scenario", "sweep", "method", "status", "run_hash", "folder", "device")


@dataclass(frozen=True)
class Recorded:
    """What a report's report.md says of how it was made: what ``render_report`` needs besides the tables."""

    command: str
    methods: list[str]
    axis_label: str | None
    provenance: str
    target: float | None


@dataclass(frozen=True)
class StoredRun:
    """A run that runs.csv names, found in its folder: what :func:`sim.compare.load_results` reads of a RunSpec."""

    folder: Path
    scenario: Scenario
    method: str
    seed: int
    sweep_value: str | None


@dataclass(frozen=True)
class Redrawn:
    """What was drawn, from what (``its run folders`` or ``its CSVs``), and why not from the runs (None if it was)."""

    rendered: Rendered
    source: str
    why_not_runs: str | None


def read_recorded(folder: Path) -> Recorded:
    """The settings of the comparison report in ``folder``; a :class:`UserError` if it is not one asyncsim made."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: {'is a file, expected' if folder.exists() else 'no such'} report folder")
    try:
        lines = (folder / "report.md").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        raise UserError(f"{folder}: not a comparison report (no readable report.md); nothing was changed") from None
    if lines and lines[0].startswith("# Reproducing"):
        parts = sorted(p.name for p in folder.iterdir() if (p / "runs.csv").is_file())
        raise UserError(f"{folder}: a reproduce report; its experiments are comparison reports, e.g. "
                        f"asyncsim report {folder / (parts[0] if parts else 'headline')}")
    command = report_command(folder)
    if not lines or not lines[0].startswith("# Comparison: ") or not command or not command.startswith("asyncsim "):
        raise UserError(f"{folder / 'report.md'}: not a comparison report made by asyncsim; nothing was changed")
    if not made_by_asyncsim(folder / "runs.csv"):
        raise UserError(f"{folder / 'runs.csv'}: missing, or not a table of runs made by asyncsim; nothing was changed")
    found = next((m for m in map(METHODS_LINE.match, lines) if m), None)
    if found is None:
        raise UserError(f"{folder / 'report.md'}: no 'Methods: ...; seeds: ...' line as compare writes it; "
                        "nothing was changed")
    return Recorded(command, [m.strip() for m in found["methods"].split(",")], found["axis"],
                    found["provenance"], _target(command))


def _target(command: str) -> float | None:
    """The ``--target`` a compare command was given (None: the worst method's mean final value)."""
    tokens = shlex.split(command)
    for i, token in enumerate(tokens):
        value = token.partition("=")[2] if token.startswith("--target=") else (
            tokens[i + 1] if token == "--target" and i + 1 < len(tokens) else None)
        if value is not None:
            try:
                return float(value)
            except ValueError:
                return None
    return None


def read_table(path: Path) -> pd.DataFrame:
    """A CSV the report wrote, read back as it was written: floats to the last bit, names as text ('' not NaN)."""
    head = pd.read_csv(path, nrows=0).columns
    text = [c for c in TEXT_COLUMNS if c in head]
    frame = pd.read_csv(path, dtype={c: str for c in text})  # floats read back to the last bit (pandas >= 3)
    frame[text] = frame[text].fillna("")
    return frame


def stored_runs(runs: pd.DataFrame, store: Path) -> tuple[list[StoredRun] | None, str | None]:
    """The runs that ``runs`` names, if every one is at hand and holds the recorded run; else None and why.

    A run folder is looked for where runs.csv says, then by its name in
    ``store``. Nothing in the store is changed: a folder that does not prove
    itself is named, not set aside (that is for commands that compute).
    """
    from sim.records import read_summary
    from sim.scenario import load_scenario
    from sim.store import run_problem

    found, gone = [], 0
    for row in runs.itertuples():
        recorded = Path(row.folder)
        folder = next((f for f in (recorded, Path(store) / recorded.name) if (f / "summary.json").is_file()), None)
        if folder is None:
            gone += 1
            continue
        try:
            scenario = load_scenario(folder / "scenario.yaml")
        except UserError as exc:
            return None, f"{folder}: {exc}"
        problem = run_problem(folder, scenario)
        if problem is None and read_summary(folder).get("run_hash") != row.run_hash:
            problem = "it holds another run than the report's (run hash differs)"
        if problem is not None:
            return None, f"{folder}: not used, {problem}"
        found.append(StoredRun(folder, scenario, row.method, int(row.seed), row.sweep or None))
    if gone:
        return None, f"{gone} of {len(runs)} run folders are gone"
    return found, None


def load_from_csvs(folder: Path, runs: pd.DataFrame) -> ReportData:
    """What the report folder kept: runs.csv, and the curves, time per worker, time to target, diagnostics CSVs."""
    kept = {name: read_table(folder / name) for name in KEPT_TABLES if name != "runs.csv" and (folder / name).is_file()}
    return ReportData(runs, metrics=kept.get("curves.csv"), budgets=kept.get("time_per_worker.csv"),
                      times=kept.get("time_to_target.csv"), diagnostics=kept.get("diagnostics.csv"))


def redraw(folder: Path, store: Path) -> Redrawn:
    """Draw the comparison report in ``folder`` again, from its run folders if they prove themselves, else its CSVs."""
    folder = Path(folder)
    rec = read_recorded(folder)
    check_folder(folder, "report")
    runs = read_table(folder / "runs.csv")
    if runs.empty:
        raise UserError(f"{folder / 'runs.csv'}: names no runs; nothing was changed")
    found, why = stored_runs(runs, store)
    if found is not None:
        from sim.compare import load_results

        metrics, events, loaded = load_results(found)  # type: ignore[arg-type]  # StoredRun reads as a RunSpec
        loaded["folder"] = runs["folder"].to_numpy()  # as recorded, though a run was found in the store
        data = ReportData(loaded, metrics, events, {f: r.scenario for f, r in zip(runs["folder"], found)})
    else:
        data = load_from_csvs(folder, runs)
    existing = frozenset(p.name for p in folder.iterdir() if p.is_file())
    with staged_folder(folder) as staged:  # the whole report or nothing; other files in the folder stay as they are
        rendered = render_report(data, rec.axis_label, rec.methods, staged, rec.command, rec.provenance,
                                 rec.target, existing)
    rendered.files = {key: folder / path.name for key, path in rendered.files.items()}
    return Redrawn(rendered, "its run folders" if found is not None else "its CSVs", why)
