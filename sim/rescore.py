"""A committed reproduce report's findings judged again from its CSVs, by today's verdict rules.

``asyncsim reproduce`` writes ``report.md`` with one section per finding
(``### claim``, ``**verdict** (seeds; budget)``, evidence bullets) and one
comparison report per experiment, each with its ``runs.csv``: every run's
method, swept value, seed, status and final metrics. The run folders are
git-ignored, so on another machine only those CSVs are left, and running the
experiments again costs CPU hours. When a verdict rule changes, the findings
that need only final metrics are judged again from the CSVs
(:meth:`sim.findings.Results.from_runs`); a finding that reads the runs'
curves raises :class:`sim.findings.NotRecorded` and its section is kept byte
for byte. A note under ``## Findings`` says which were re-scored and which
kept.

The budget a verdict line states (t_max, rounds per worker) is not in
runs.csv. It is taken from the recorded command planned again
(:func:`sim.reproduce.experiments`, :func:`sim.compare.plan`) only where
that plan names exactly the runs runs.csv records (run folder names carry
the resolved scenario's digest), else from the section's committed verdict
line, else it is said to be unknown: never a guess.

Only a folder whose report.md a reproduce command made, with a runs.csv made
by asyncsim in every experiment it lists, is touched, and only its
report.md is rewritten, through :func:`sim.outputs.staged_folder`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from sim import compare as cmp
from sim.confidence import Basis, planned_budget
from sim.errors import UserError
from sim.findings import (Finding, NotRecorded, Results, advantage_shrinks_with_workers, async_worse_even_homogeneous,
                          budget_gap_finding, c_makes_little_difference, dn_dylu_matches_diloco, fixes_barely_help,
                          holds_across_model_sizes, local_sgd_beats_finetune, section_lines, sgd_outer_async_beats_sync)
from sim.findings_table import short
from sim.outputs import check_folder, command_options, made_by_asyncsim, report_command, staged_folder
from sim.report_folder import read_table, stored_runs
from sim.reproduce import experiments, steps_per_round
from sim.runner import run_folder_name
from sim.scenario import load_scenario, parse_override

Budget = tuple[tuple[int, ...], tuple[float, ...]]

#: the first line reproduce writes in report.md
TITLE = "# Reproducing the paper's findings: "
FINDINGS_HEADING = "## Findings"
#: how the note this module writes begins (a second re-score replaces it)
NOTE = "Re-scored from this folder's runs.csv files"
#: the reference that ends a finding's heading (as sim.findings_table reads it) -> the function that judges it
JUDGES: dict[str, Callable[[Results], Finding]] = {
    "(Fig. 7)": async_worse_even_homogeneous,
    "(Fig. 6)": sgd_outer_async_beats_sync,
    "(Fig. 8)": fixes_barely_help,
    "(Fig. 2, Table 1)": dn_dylu_matches_diloco,
    "(Table 4)": c_makes_little_difference,
    "(Tables 1-3)": local_sgd_beats_finetune,
    "(Table 2)": advantage_shrinks_with_workers,
    "(Table 3)": holds_across_model_sizes,
    "(a question of this project, not a claim of the paper)": budget_gap_finding,
}
#: an experiment listed in the report's "## Experiments" section
EXPERIMENT_LINK = re.compile(r"^- \[.*\]\(([^/()]+)/report\.md\)", flags=re.M)
#: the budget at the end of a verdict line (sim.confidence.budget_phrase)
BASIS_BUDGET = re.compile(r"; t_max (\d+)(?:-(\d+))? local steps(?:, ([\d.]+)(?:-([\d.]+))? rounds per worker)?\)$")


@dataclass(frozen=True)
class Committed:
    """A reproduce report.md cut at its findings: the text before them, one text per finding, the text after."""

    head: str  # up to the first finding (an earlier re-score's note taken out)
    sections: list[str]  # "### claim" up to the next heading, byte for byte
    tail: str  # from the first "## " heading after the findings


@dataclass(frozen=True)
class Plan:
    """Each experiment's budget where it is known, k x H where it is, and why the others are not."""

    budgets: dict[str, Budget]
    steps_per_round: int | None
    why_not: str | None  # why the recorded command does not give an experiment's budget


@dataclass
class Rescored:
    """What a re-score did: the sections judged again, those kept and why, verdicts that moved, the budgets' source."""

    rescored: list[str] = field(default_factory=list)
    kept: dict[str, list[str]] = field(default_factory=dict)  # why -> labels
    changed: list[tuple[str, str, str]] = field(default_factory=list)  # label, old short verdict, new
    unknown_budget: list[str] = field(default_factory=list)  # experiments of re-scored findings
    budget_from_line: list[str] = field(default_factory=list)
    why_no_budget: str | None = None
    why_not_runs: str = ""


def reference(claim: str) -> str:
    """The parenthesis that ends a finding's heading, "(Fig. 7)"; "" if none."""
    found = re.search(r"\([^()]*\)$", claim.strip())
    return found.group(0) if found else ""


def label(claim: str) -> str:
    """A short name for a finding: its figure or table, else the heading up to its colon."""
    ref = reference(claim)
    return ref[1:-1] if ref.startswith(("(Fig", "(Table")) else claim.split(":")[0].strip()


def is_reproduce_report(folder: Path) -> bool:
    """``folder`` holds a report.md that begins as reproduce's does (whether asyncsim made it is checked later)."""
    try:
        with open(Path(folder) / "report.md", encoding="utf-8") as fh:
            return fh.readline().startswith(TITLE)
    except (OSError, UnicodeDecodeError):
        return False


def read_reproduce(folder: Path) -> tuple[str, str]:
    """report.md's text and recorded command; a :class:`UserError` if a reproduce command did not make it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: {'is a file, expected' if folder.exists() else 'no such'} report folder")
    try:
        text = (folder / "report.md").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise UserError(f"{folder}: not a reproduce report (no readable report.md); nothing was changed") from None
    command = report_command(folder)
    if not text.startswith(TITLE) or not command or not command.startswith("asyncsim reproduce "):
        raise UserError(f"{folder / 'report.md'}: not a reproduce report made by asyncsim; nothing was changed")
    if f"\n{FINDINGS_HEADING}\n" not in text:
        raise UserError(f"{folder / 'report.md'}: no '{FINDINGS_HEADING}' section as reproduce writes it; "
                        "nothing was changed")
    return text, command


def read_runs(folder: Path, text: str) -> dict[str, pd.DataFrame]:
    """Each listed experiment's runs.csv, read back as written; a :class:`UserError` if one is not asyncsim's."""
    names = list(dict.fromkeys(EXPERIMENT_LINK.findall(text.partition(f"\n{FINDINGS_HEADING}\n")[2])))
    if not names:
        raise UserError(f"{folder / 'report.md'}: lists no experiments ('- [title](NAME/report.md)'); "
                        "nothing was changed")
    runs = {}
    for name in names:
        path = Path(folder) / name / "runs.csv"
        if not made_by_asyncsim(path):
            raise UserError(f"{path}: missing, or not a table of runs made by asyncsim; nothing was changed")
        runs[name] = read_table(path)
    return runs


def runs_at_hand(runs: dict[str, pd.DataFrame], store: Path) -> str | None:
    """None if every run folder the tables name is at hand and proves itself, else why not (for the user)."""
    folders = list(dict.fromkeys(Path(f) for table in runs.values() for f in table["folder"]))  # shared runs once
    gone = sum(not any((f / "summary.json").is_file() for f in (folder, Path(store) / folder.name))
               for folder in folders)
    if gone:
        return f"{gone} of {len(folders)} run folders are gone"
    for table in runs.values():
        found, why = stored_runs(table, store)
        if found is None:
            return why
    return None


def cut(text: str) -> Committed:
    """report.md cut into the text before the findings, each finding's section, and the rest."""
    lines = text.splitlines(keepends=True)
    start = lines.index(f"{FINDINGS_HEADING}\n") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    first = next((i for i in range(start, end) if lines[i].startswith("### ")), end)
    head = list(lines[:first])
    for i in range(start, first):  # an earlier re-score's note and its blank line
        if lines[i].startswith(NOTE):
            head[i] = ""
            if i + 1 < first and lines[i + 1] == "\n":
                head[i + 1] = ""
    starts = [i for i in range(first, end) if lines[i].startswith("### ")] + [end]
    return Committed("".join(head), ["".join(lines[a:b]) for a, b in zip(starts, starts[1:])], "".join(lines[end:]))


def recorded_plan(command: str) -> tuple[str, list[int], list[str], list[str], dict[str, list[str]], list[int] | None]:
    """A reproduce command's scenario, seeds, --set, --wide-set, --method-set and --budget-rounds; ValueError if odd."""
    args, options = command_options(command)
    if len(args) != 3:
        raise ValueError(f"expected one scenario after 'asyncsim reproduce', got {len(args) - 2}")
    given: dict[str, list[str]] = {}
    for flag, value in options:
        given.setdefault(flag, []).append(value)
    per_method: dict[str, list[str]] = {}
    for item in given.get("--method-set", []):
        method, _, setting = item.partition(":")
        per_method.setdefault(method.strip(), []).append(setting)
    seeds = [int(x) for x in given.get("--seed", ["0,1,2"])[-1].split(",") if x.strip()]
    rounds = given.get("--budget-rounds")
    return (args[2], seeds, given.get("--set", []), given.get("--wide-set", []), per_method,
            [int(x) for x in rounds[-1].split(",") if x.strip()] if rounds else None)


def plan_budgets(command: str, runs: dict[str, pd.DataFrame]) -> Plan:
    """The budget of each experiment whose runs the recorded command, planned again today, names exactly.

    Run folder names end in the resolved scenario's digest, so a plan whose
    names equal runs.csv's proves that these scenarios (t_max, k, H
    included) made the runs. A scenario edited since, or a field default
    added, changes the digests: those experiments get no budget from here.
    k x H (rounds per worker of the budget sweep) is known when every
    experiment is proven.
    """
    try:
        scenario, seeds, sets, wide, per_method, rounds = recorded_plan(command)
        base = load_scenario(Path(scenario), overrides=dict(parse_override(s) for s in sets))
        planned = {exp.name: exp for exp in experiments(base, rounds)}
        budgets = {}
        for name, table in runs.items():
            exp = planned.get(name)
            if exp is None:
                continue
            specs, _ = cmp.plan([Path(scenario)], list(exp.methods), seeds, exp.sweep,
                                sets + (wide if exp.wide else []), per_method)
            if sorted(run_folder_name(s.scenario) for s in specs) == sorted(Path(f).name for f in table["folder"]):
                budgets[name] = planned_budget([(s.scenario.schedule.t_max, s.scenario.workers.k, s.scenario.schedule.H)
                                                for s in specs])
    except (UserError, ValueError) as exc:
        return Plan({}, None, f"the recorded command cannot be planned today ({exc})")
    proven = len(budgets) == len(runs)
    return Plan(budgets, steps_per_round(base) if proven else None,
                None if proven else "the recorded command, planned today, does not name the runs runs.csv "
                                    "records (the scenario or its defaults changed since)")


def results_from_csvs(runs: dict[str, pd.DataFrame], command: str) -> tuple[Results, Plan]:
    """:class:`Results` from a reproduce report's tables of runs alone, with the budgets its command proves."""
    plan = plan_budgets(command, runs)
    return Results.from_runs(runs, plan.budgets, plan.steps_per_round), plan


def committed_results(folder: Path) -> tuple[Results, Plan]:
    """:class:`Results` of the reproduce report in ``folder`` from its committed runs.csv files; nothing is written."""
    text, command = read_reproduce(folder)
    return results_from_csvs(read_runs(folder, text), command)


def committed_budget(section: str) -> Budget | None:
    """The budget a committed verdict line states ("; t_max 16000 local steps, 80 rounds per worker)"), if any."""
    line = next((line for line in section.splitlines() if line.startswith("**")), "")
    found = BASIS_BUDGET.search(line)
    if found is None:
        return None
    t_lo, t_hi, r_lo, r_hi = found.groups()
    t_max = tuple(sorted({int(t_lo), int(t_hi or t_lo)}))
    return t_max, tuple(sorted({float(r_lo), float(r_hi or r_lo)})) if r_lo else ()


def verdict_of(section: str) -> str:
    """The bold verdict of a section, short as the README's table says it (reproduced / partly / not)."""
    found = re.search(r"^\*\*(.+?)\*\*", section, flags=re.M)
    return short(found.group(1) if found else None)


def rescore_section(section: str, res: Results, plan: Plan, done: Rescored) -> str:
    """The section judged again by today's code, or as committed where that needs what runs.csv does not hold."""
    claim = section.splitlines()[0][4:]
    judge = JUDGES.get(reference(claim))
    try:
        if judge is None:
            raise NotRecorded("no finding of today's code judges them")
        f = judge(res)
    except NotRecorded as exc:
        done.kept.setdefault(str(exc), []).append(label(claim))
        return section
    basis = res.basis(f.experiment)
    if f.experiment not in plan.budgets:
        budget = committed_budget(section)
        (done.unknown_budget if budget is None else done.budget_from_line).append(f.experiment)
        basis = Basis(basis.n, *budget) if budget is not None else basis
    text = "\n".join(section_lines(f, basis)) + "\n"
    done.rescored.append(label(f.claim))
    if verdict_of(text) != verdict_of(section):
        done.changed.append((label(f.claim), verdict_of(section), verdict_of(text)))
    return text


def _names(items: list[str]) -> str:
    return "; ".join(dict.fromkeys(items))


def note(done: Rescored) -> str:
    """The note under "## Findings": what was re-scored, what kept and why, where the budgets came from."""
    text = (f"{NOTE} by `asyncsim report` (the run folders, git-ignored, were not at hand), with today's verdict "
            "rules (sim/findings.py, sim/confidence.py: a gap is also a tie where the paired per-seed interval "
            f"contains 0): {_names(done.rescored) or 'none'}.")
    for why, labels in done.kept.items():
        text += f" Kept as first written ({why}): {_names(labels)}."
    if done.rescored and not done.unknown_budget and not done.budget_from_line:
        text += " Budgets from the recorded command, planned again: it names the runs runs.csv records."
    if done.budget_from_line:
        text += f" Budget of {', '.join(dict.fromkeys(done.budget_from_line))} as the committed verdict line stated it."
    if done.unknown_budget:
        text += (f" Budget unknown for {', '.join(dict.fromkeys(done.unknown_budget))}: {done.why_no_budget}; "
                 "their verdict lines say so.")
    return text


def rescore(folder: Path, store: Path) -> Rescored:
    """Re-score the reproduce report in ``folder`` from its runs.csv files and rewrite its report.md; nothing else.

    Refused (a :class:`UserError`) where every run folder is at hand: the
    recorded command then draws the whole report from them, computing nothing.
    """
    folder = Path(folder)
    text, command = read_reproduce(folder)
    runs = read_runs(folder, text)
    why_not_runs = runs_at_hand(runs, store)
    if why_not_runs is None:
        raise UserError(f"{folder}: its run folders are at hand; its command draws the whole report again from them "
                        f"and computes nothing: {command}")
    check_folder(folder, "report")
    res, plan = results_from_csvs(runs, command)
    done = Rescored(why_no_budget=plan.why_not, why_not_runs=why_not_runs)
    committed = cut(text)
    sections = [rescore_section(s, res, plan, done) for s in committed.sections]
    written = committed.head + note(done) + "\n\n" + "".join(sections) + committed.tail
    with staged_folder(folder) as staged:  # report.md or nothing; every other file in the folder stays as it is
        (staged / "report.md").write_text(written, encoding="utf-8")
    return done
