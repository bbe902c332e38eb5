"""``asyncsim.compare``, ``sweep``, ``reproduce`` and ``load_run``: the CLI's studies, from Python.

Why: a study in a notebook wants its numbers as pandas frames, not a report
folder to read back. Each function plans, computes and reuses runs through
the very code its CLI command calls (:mod:`sim.compare`,
:mod:`sim.reproduce`, the run store of :mod:`sim.store`), so a run made here
is the run the CLI would make, in the same store (``$ASYNCSIM_RUNS``, else
``reports/runs``), and either reuses the other's. Errors are the CLI's one
line, raised as :class:`sim.errors.UserError`; an output is checked before
anything is computed, by the CLI's rules (:mod:`sim.outputs`): nothing a
user made is overwritten without ``force=True``.
"""
from __future__ import annotations

import json
import operator
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sim import compare as cmp
from sim.cli_common import canonical_command, default_jobs
from sim.errors import UserError
from sim.outputs import atomic_output, check_output_file, check_report_destination, staged_folder
from sim.records import read_summary, run_folder_damage
from sim.report import final_table, primary_metric
from sim.scenario import Scenario, check_distinct, load_scenario, parse_override
from sim.store import run_problem, stored_scenario

#: a scenario file, or a shipped example's name (``"very_heterogeneous"``)
ScenarioFile = str | Path
#: an axis as ``--sweep``/``--grid`` takes it (``"workers=4,8"``), or ``{"workers": [4, 8]}``
Axis = str | Mapping[str, Sequence[Any]]


@dataclass(frozen=True)
class Run:
    """One run folder, proven against its run hash (:func:`load_run`)."""

    folder: Path
    scenario: Scenario  # the resolved scenario the run stores
    metrics: pd.DataFrame  # one row per evaluation: t_local, tau (simulated s), loss, accuracy...
    events: pd.DataFrame  # dispatch, complete, sync... (sim/records.py owns the schema)
    summary: dict[str, Any]  # summary.json: run hash, status, final metrics, versions

    @property
    def run_hash(self) -> str:
        return self.summary["run_hash"]


@dataclass(frozen=True)
class Comparison:
    """The runs of a study as frames: what ``compare`` writes as ``runs.csv`` and ``table.csv``, and every curve."""

    runs: pd.DataFrame  # runs.csv: a row per run (method, seed, sweep, status, final_*, run_hash, folder, traffic)
    table: pd.DataFrame  # table.csv: final metric per method and swept value, mean, std, n
    metrics: pd.DataFrame  # every run's metrics, with scenario, sweep, method and seed columns
    events: pd.DataFrame  # every run's events, with the same columns
    computed: int  # runs this call computed; the others were reused from the run store
    out: Path | None = None  # what ``out=`` wrote: compare's report.md, sweep's CSV


def compare(
    scenario: ScenarioFile | Sequence[ScenarioFile],
    methods: str | Sequence[str] = cmp.DEFAULT_METHODS,
    seeds: int | Iterable[int] = 0,
    sets: Mapping[str, Any] | None = None,
    method_sets: Mapping[str, Mapping[str, Any]] | None = None,
    sweep: Axis | None = None,
    jobs: int | None = None,
    out: str | Path | None = None,
    force: bool = False,
    target: float | None = None,
) -> Comparison:
    """Run methods x seeds (x one swept axis), reusing stored runs: ``asyncsim compare``.

    ``methods`` as a list or ``"diloco,dn_dylu"``; ``sets`` are ``--set``
    (``{"schedule.t_max": 400}``), ``method_sets`` are ``--method-set``
    (``{"diloco": {"method.outer.lr": 0.5}}``), ``sweep`` is ``--sweep``
    (``"workers=4,8"`` or ``{"workers": [4, 8]}``). The report folder is
    written only when ``out`` names one (in a notebook the frames are the
    result); it is the CLI's report, made by the command it records, and
    rewritten only by that command or with ``force=True``. ``jobs``: processes
    in parallel (default: cores / ``compute.threads``); ``target``: the
    time-to-target table's loss.
    """
    files = [Path(f) for f in ([scenario] if isinstance(scenario, (str, Path)) else scenario)]
    method_list, seed_list = _methods(methods), _seeds(seeds)
    set_items, per_method = _settings(sets), {m: _settings(s) for m, s in (method_sets or {}).items()}
    axis_text = _axes(sweep, "sweep")
    if len(axis_text) > 1:
        raise UserError(f"sweep {sweep!r}: compare sweeps one axis; for a grid use asyncsim.sweep")
    specs, axis = cmp.plan(files, method_list, seed_list, axis_text[0] if axis_text else None, set_items, per_method)
    command = canonical_command("compare", [str(f) for f in files], methods=",".join(method_list),
                                seeds=",".join(map(str, seed_list)), sweep=axis_text[0] if axis_text else None,
                                set_=set_items, method_set=[f"{m}:{s}" for m, v in per_method.items() for s in v],
                                out=out, target=target)
    if out is not None:
        check_report_destination(Path(out), command, force, "out")
    computed = _compute(specs, jobs)
    if out is None:
        return _comparison(specs, method_list, computed, None)
    with staged_folder(Path(out)) as staged:  # the whole report or nothing, as the CLI writes it
        written = cmp.build_report(specs, axis, method_list, staged, command, computed, target)
    return _comparison(specs, method_list, computed, Path(out) / written["report"].name)


def sweep(
    scenario: ScenarioFile,
    grid: Axis | Sequence[str] = (),
    methods: str | Sequence[str] | None = None,
    seeds: int | Iterable[int] | None = None,
    sets: Mapping[str, Any] | None = None,
    jobs: int | None = None,
    out: str | Path | None = None,
    force: bool = False,
) -> Comparison:
    """Run the cross product of grid axes (and of ``methods`` and ``seeds``), reusing runs: ``asyncsim sweep``.

    ``grid`` is ``{"schedule.H": [10, 20], "workers": [4, 8]}`` or the CLI's
    ``["schedule.H=10,20", "workers=4,8"]``; a run's ``sweep`` column names
    its setting (``H=10, workers=4``). ``out`` also writes the table of runs
    as CSV there (``--out``), replacing only a file asyncsim wrote unless
    ``force=True``.
    """
    grids = _axes(grid, "grid")
    method_list = _methods(methods) if methods is not None else []
    seed_list = _seeds(seeds) if seeds is not None else []
    if out is not None:
        check_output_file(Path(out), "out", force)
    specs = cmp.plan_grid(Path(scenario), grids, _settings(sets), method_list, seed_list)
    result = _comparison(specs, method_list, _compute(specs, jobs), Path(out) if out is not None else None)
    if out is not None:
        with atomic_output(Path(out)) as tmp:  # whole or not at all; its header is how a later sweep knows it
            result.runs.to_csv(tmp, index=False)
    return result


def reproduce(
    scenario: ScenarioFile = "very_heterogeneous",
    seeds: int | Iterable[int] = (0, 1, 2),
    sets: Mapping[str, Any] | None = None,
    wide_sets: Mapping[str, Any] | None = None,
    method_sets: Mapping[str, Mapping[str, Any]] | None = None,
    budget_rounds: Sequence[int] | None = None,
    jobs: int | None = None,
    out: str | Path | None = None,
    force: bool = False,
) -> Path:
    """Run the paper's comparisons and check each finding on the numbers: ``asyncsim reproduce``; returns report.md.

    The findings are prose and sub-reports (one folder per experiment, each
    with its ``runs.csv``), so this returns the report's path; its runs are in
    the store for :func:`load_run`. ``wide_sets`` are ``--wide-set`` (a
    reduced budget for every experiment but the headline), ``budget_rounds``
    is ``--budget-rounds``; ``out`` defaults to ``reports/paper_toy``, as
    the CLI's does. The CLI's ``--notes`` and ``--executor ray`` are CLI-only.
    """
    from sim.reproduce import reproduce as run_reproduction

    seed_list, set_items, wide = _seeds(seeds), _settings(sets), _settings(wide_sets)
    per_method = {m: _settings(s) for m, s in (method_sets or {}).items()}
    rounds = [operator.index(r) for r in budget_rounds] if budget_rounds else None
    if rounds:
        check_distinct(rounds, "budget_rounds", ",".join(map(str, rounds)))
    command = canonical_command("reproduce", [str(scenario)], out=out, seeds=",".join(map(str, seed_list)),
                                set_=set_items, wide_set=wide,
                                method_set=[f"{m}:{s}" for m, v in per_method.items() for s in v],
                                budget_rounds=",".join(map(str, rounds)) if rounds else None)
    base = load_scenario(scenario, overrides=dict(parse_override(s) for s in set_items))
    out_dir = Path(out) if out is not None else Path("reports") / "paper_toy"
    check_report_destination(out_dir, command, force, "out")
    return run_reproduction(Path(scenario), out_dir, seed_list, _jobs(jobs, [base]), set_items, command,
                            wide_sets=wide, method_sets=per_method, budget_rounds=rounds, on_note=_note)


def load_run(folder: str | Path) -> Run:
    """A run folder's tables, summary and scenario, once it proves itself as the run store's runs do.

    Why the check: a folder is only a claim. Its tables must hash to the run
    hash its summary records and its stored scenario must be the run's
    (:func:`sim.store.run_problem`, what ``compare`` asks before reusing a
    run); anything else raises :class:`UserError` in one line naming the
    folder. Nothing is moved or changed.
    """
    import yaml

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: cannot load a run, no such folder")
    damage = run_folder_damage(folder)  # a quick look first: a folder that is no run at all says so
    if damage is not None:
        raise UserError(f"{folder}: cannot load this run, {damage}")
    try:
        scenario = stored_scenario(folder)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise UserError(f"{folder}: cannot load this run, its scenario.yaml does not validate "
                        f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    problem = run_problem(folder, scenario)
    if problem is not None:
        raise UserError(f"{folder}: cannot load this run, {problem}")
    return Run(folder, scenario, pd.read_parquet(folder / "metrics.parquet"),
               pd.read_parquet(folder / "events.parquet"), read_summary(folder))


# -- the CLI's options as Python values --------------------------------------------


def _note(line: str) -> None:
    """A decision on a run (a stored run set aside, a wait for another command), on stderr as the CLI says it."""
    print(f"note: {line}", file=sys.stderr)


def _methods(methods: str | Sequence[str]) -> list[str]:
    items = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else [str(m) for m in methods]
    items = [m for m in items if m]
    text = ",".join(items)
    if not items:
        raise UserError(f"methods {methods!r}: expected method presets, e.g. ['diloco', 'dn_dylu']")
    check_distinct(items, "methods", text)
    return items


def _seeds(seeds: int | Iterable[int]) -> list[int]:
    try:
        items = [operator.index(seeds)] if not isinstance(seeds, Iterable) else [operator.index(s) for s in seeds]
    except TypeError:
        raise UserError(f"seeds {seeds!r}: expected integers, e.g. [0, 1, 2]") from None
    if not items:
        raise UserError("seeds: expected at least one seed, e.g. [0, 1, 2]")
    check_distinct(items, "seeds", ",".join(map(str, items)))
    return items


def _value_text(value: Any) -> str:
    """A value as ``--set`` would be typed: plain where it reads back as itself, else JSON (a subset of YAML)."""
    text = str(value)
    return text if parse_override(f"x={text}")[1] == value else json.dumps(value)


def _settings(sets: Mapping[str, Any] | None) -> list[str]:
    """``{"schedule.t_max": 400}`` -> ``["schedule.t_max=400"]``, the ``--set`` items the planners take."""
    return [f"{key}={_value_text(value)}" for key, value in (sets or {}).items()]


def _axes(axes: Axis | Sequence[str] | None, option: str) -> list[str]:
    """Axes as ``AXIS=V1,V2`` texts: one string, a list of them, or a mapping of axis -> values."""
    if axes is None:
        return []
    if isinstance(axes, str):
        return [axes]
    if isinstance(axes, Mapping):
        return [f"{axis}={','.join(_value_text(v) for v in values)}" for axis, values in axes.items()]
    if not all(isinstance(a, str) for a in axes):
        raise UserError(f"{option} {axes!r}: expected 'AXIS=V1,V2' texts or a mapping of axis -> values")
    return list(axes)


def _jobs(jobs: int | None, scenarios: Iterable[Scenario]) -> int:
    """``jobs``, or the CLI's default: the cores, divided by the runs' torch threads."""
    if jobs is not None and jobs < 1:
        raise UserError(f"jobs {jobs!r}: expected a number of processes, 1 or more")
    return jobs or default_jobs(max(s.compute.threads for s in scenarios))


def _compute(specs: list[cmp.RunSpec], jobs: int | None) -> int:
    """Compute the runs missing from the store as ``compare`` does (:func:`sim.compare.execute`); returns how many."""
    computed = cmp.execute(specs, jobs=_jobs(jobs, [s.scenario for s in specs]), on_note=_note)
    notice = cmp.version_notice(specs)
    if notice:
        _note(notice)
    return computed


def _comparison(specs: list[cmp.RunSpec], methods: list[str], computed: int, out: Path | None) -> Comparison:
    metrics, events, runs = cmp.load_results(specs)
    order = methods or list(dict.fromkeys(runs["method"]))
    return Comparison(runs, final_table(runs, primary_metric(metrics), order), metrics, events, computed, out)
