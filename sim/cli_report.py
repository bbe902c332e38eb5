"""Commands that read what is there and compute nothing: ``diff`` (sim/scenario_diff.py) and ``report``
(sim/report_folder.py; a reproduce report's findings judged again from its CSVs: sim/rescore.py).

``sim/cli.py`` calls :func:`register` on its app.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from sim.cli_common import RUNS_OPT, SET_OPT, console, fail, fail_with, method_opt, use_runs_dir
from sim.errors import UserError


def register(app: typer.Typer) -> None:
    app.command("diff")(diff)
    app.command("report")(report)


def diff(
    a: str = typer.Argument(..., metavar="A", help="a scenario file, a shipped example's name, or a run folder",
                            show_default=False),
    b: str = typer.Argument(..., metavar="B", help="the same kinds, compared with A", show_default=False),
    method: Optional[str] = method_opt(None),
    set_: list[str] = SET_OPT,
) -> None:
    """Print the fields that differ between two resolved scenarios (or run folders, with their summaries).

    One line per field, `method.outer.lr: 0.7 -> 0.3`, presets expanded as
    `asyncsim show` does; --method and --set apply to scenario files, not to
    run folders. Exit 0 when identical, 1 when they differ (as diff does).
    """
    from sim.scenario import parse_override
    from sim.scenario_diff import diff_lines, load_side, same_line

    if method is not None and "," in method:
        fail(f"--method {method!r}: diff resolves each scenario with one method")
    try:
        overrides = dict(parse_override(s) for s in set_)
        sides = [load_side(text, method, overrides) for text in (a, b)]
        if (method is not None or set_) and all(s.summary is not None for s in sides):
            fail("--method and --set apply to scenario files; A and B are both run folders")
        lines = diff_lines(*sides)
    except UserError as exc:
        fail_with(exc)
    for line in lines or [same_line(*sides)]:
        console.print(line, markup=False, highlight=False)
    if lines:
        raise typer.Exit(1)


def report(
    folder: Path = typer.Argument(..., metavar="FOLDER", show_default=False,
                                  help="a comparison report folder (made by compare, or one of reproduce's "
                                       "experiments), or a reproduce report whose run folders are gone"),
    runs: Optional[Path] = RUNS_OPT,
) -> None:
    """Draw a comparison report's plots and tables again from its runs, computing nothing.

    From the run folders its runs.csv names when they are all at hand and
    prove themselves, else from the CSVs the report folder kept (committed
    reports: run folders are git-ignored); what those cannot draw is said in
    one line and left as it was. Only the report's own files are rewritten.

    A reproduce report whose run folders are gone has its findings judged
    again by today's rules from its experiments' runs.csv; a finding that
    needs the runs' curves is kept as written, and a note in report.md says
    which are which. Only its report.md is rewritten. Where its run folders
    are all at hand, its recorded command draws it again instead.
    """
    from sim.compare_report import not_drawn
    from sim.report_folder import redraw
    from sim.rescore import is_reproduce_report
    from sim.runner import runs_dir

    use_runs_dir(runs)
    if is_reproduce_report(folder):
        _rescore(folder, runs_dir())
        return
    try:
        done = redraw(folder, runs_dir())
    except UserError as exc:
        fail_with(exc)
    files = done.rendered.files.values()
    plots = sum(path.suffix == ".png" for path in files)
    tables = sum(path.suffix == ".csv" or path.name == "table.md" for path in files)
    why = f" ({done.why_not_runs})" if done.why_not_runs else ""
    say(f"drew {folder} again from {done.source}{why}: report.md, {_count(plots, 'plot')}, "
        f"{_count(tables, 'table')}")
    missing = done.rendered.missing
    if missing:
        kept = "; the files there are kept" if any((folder / name).exists() for name in missing) else ""
        say(f"not drawn: {not_drawn(missing)}{kept}")


def _rescore(folder: Path, store: Path) -> None:
    """Re-score a reproduce report's findings from its runs.csv files and say what moved."""
    from sim.rescore import rescore

    try:
        done = rescore(folder, store)
    except UserError as exc:
        fail_with(exc)
    kept = sum(len(labels) for labels in done.kept.values())
    say(f"re-scored {folder / 'report.md'} from its runs.csv files ({done.why_not_runs}): "
        f"{_count(len(done.rescored), 'finding')} judged again, {kept} kept as written")
    for why, labels in done.kept.items():
        say(f"kept ({why}): {'; '.join(labels)}")
    say("verdicts changed: " + "; ".join(f"{name}: {old} -> {new}" for name, old, new in done.changed)
        if done.changed else "no verdict changed (the sections are in today's wording)")
    if done.unknown_budget:
        say(f"budget unknown for {', '.join(dict.fromkeys(done.unknown_budget))}: {done.why_no_budget}")


def say(message: str) -> None:
    """A message wrapped at the terminal's width (80 columns when not a terminal), between words."""
    console.print(message, markup=False, highlight=False, soft_wrap=False)


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'}"
