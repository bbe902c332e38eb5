"""``asyncsim compare``: many runs (methods x seeds x a swept axis), one report.

Every run goes through :func:`sim.runner.run` with its default folder, which
is keyed by the resolved scenario's digest: a run that exists is reused, so
a second ``compare`` computes nothing and no run overwrites another. Missing
runs are computed in parallel processes, one whole run per process.
"""
from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pandas as pd

from sim.cluster import Cluster
from sim.errors import RunInterrupted, ScenarioError, naming_file
from sim.prepare import PretrainProgress, pretrain_once
from sim.records import read_summary
from sim.runner import default_run_folder
from sim.scenario import Scenario, check_distinct, load_scenario, parse_override
from sim.store import reusable
from sim.traffic import peak_rates, run_traffic

DEFAULT_METHODS = ("finetune_1w", "diloco", "async_diloco", "async_poly", "async_buffer", "dn_dylu")

#: friendly names for swept axes -> the scenario field they set
SWEEP_ALIASES = {
    "workers": "workers.k",
    "k": "workers.k",
    "heterogeneity": "workers.fleet",
    "fleet": "workers.fleet",
    "model": "trainer.config.size",
    "size": "trainer.config.size",
    "c": "method.outer.c",
    "H": "schedule.H",
    "grace": "schedule.grace_period",
}
#: short heterogeneity names as in the paper's Table 1
FLEET_ALIASES = {
    "no": "homogeneous",
    "slight": "slightly_heterogeneous",
    "moderate": "moderately_heterogeneous",
    "very": "very_heterogeneous",
}


@dataclass(frozen=True)
class RunSpec:
    """One cell of the comparison grid."""

    file: str
    method: str
    seed: int
    sweep_value: Any  # None when nothing is swept
    scenario: Scenario

    @cached_property
    def folder(self) -> Path:
        """Looked up once: it hashes the scenario and may replay an older run's schedule (sim/adopt.py)."""
        return default_run_folder(self.scenario)


def parse_sweep(text: str, option: str = "--sweep") -> tuple[str, str, list[Any]]:
    """``workers=4,8,16`` -> (label, field, values); errors name ``option`` (--sweep or --grid).

    A value given twice (``workers=4,4``, or ``heterogeneity=very,very_heterogeneous``)
    is refused: its runs would count twice.
    """
    label, sep, values = text.partition("=")
    if not sep or not values.strip(", "):
        raise ScenarioError(f"{option} {text!r}: expected AXIS=V1,V2,..., e.g. workers=4,8,16")
    label = label.strip()
    field = SWEEP_ALIASES.get(label, label)
    raw = [v.strip() for v in values.split(",") if v.strip()]
    if field == "workers.fleet":  # names, not YAML: 'no' must not become False
        if label == "heterogeneity":  # the paper's levels, nothing else
            unknown = [v for v in raw if v not in FLEET_ALIASES and v not in FLEET_ALIASES.values()]
            if unknown:
                raise ScenarioError(f"{option} {text!r}: heterogeneity {unknown[0]!r} is not a level; expected "
                                    f"{', '.join(FLEET_ALIASES)} (or sweep fleet=NAME for any fleet)")
        parsed: list[Any] = [FLEET_ALIASES.get(v, v) for v in raw]
    else:
        parsed = [parse_override(f"x={v}")[1] for v in raw]
    check_distinct(parsed, option, text)
    return label, field, parsed


def plan(
    files: list[Path],
    methods: list[str],
    seeds: list[int],
    sweep: str | None = None,
    sets: list[str] | None = None,
    method_sets: dict[str, list[str]] | None = None,
) -> tuple[list[RunSpec], str | None]:
    """Resolve every (file, method, seed, sweep value) into a validated scenario.

    ``method_sets`` adds overrides for one method only (a tuned setting),
    applied after ``sets`` and before the swept value. A swept field that
    none of the methods has is refused (``c`` exists for Delayed Nesterov only).
    """
    common = dict(parse_override(s) for s in (sets or []))
    per_method = {m: dict(parse_override(s) for s in v) for m, v in (method_sets or {}).items()}
    label, field, values = parse_sweep(sweep) if sweep else (None, None, [None])
    specs = []
    for file in files:
        for value in values:
            for method in methods:
                base = {**common, **per_method.get(method, {})}
                for seed in seeds:
                    overrides = {**base, "seed": seed}
                    if field is not None:
                        if field.startswith("method.outer.") and not _accepts(file, method, base, field):
                            continue  # e.g. c only exists for Delayed Nesterov
                        overrides[field] = value
                    sc = load_scenario(file, overrides=overrides, method=method)
                    specs.append(RunSpec(str(file), method, seed, value, sc))
    if not specs:
        raise ScenarioError(f"--sweep {sweep}: none of the methods {', '.join(methods)} has that field")
    return specs, label


def plan_grid(
    file: Path, grids: list[str], sets: list[str] | None = None, methods: Sequence[str] = (), seeds: Sequence[int] = ()
) -> list[RunSpec]:
    """Cross product of ``--grid KEY=V1,V2`` axes (method, seed or any field), and of ``methods`` and ``seeds``."""
    import itertools

    grids = [*grids, *([f"method={','.join(methods)}"] if methods else []),
             *([f"seed={','.join(map(str, seeds))}"] if seeds else [])]
    if not grids:
        raise ScenarioError("nothing to sweep: give --grid FIELD=V1,V2 (repeatable), --method A,B or --seed 0,1,2")
    base = dict(parse_override(s) for s in (sets or []))
    axes = [parse_sweep(g, "--grid") for g in grids]
    fields = [field for _label, field, _values in axes]
    if len(set(fields)) < len(fields):
        raise ScenarioError(f"--grid: an axis is given twice ({', '.join(sorted({f for f in fields if fields.count(f) > 1}))})")
    short = short_names(fields)
    specs = []
    for combo in itertools.product(*[[(field, v) for v in values] for _label, field, values in axes]):
        overrides = dict(base)
        method = None
        for field, value in combo:
            if field in ("method", "method.preset"):
                method = str(value)
            else:
                overrides[field] = value
        sc = load_scenario(file, overrides=overrides, method=method)
        label = ", ".join(f"{short[f]}={v}" for f, v in combo if f not in ("method", "method.preset", "seed"))
        specs.append(RunSpec(str(file), sc.method.preset, sc.seed, label or None, sc))
    return specs


def short_names(fields: list[str]) -> dict[str, str]:
    """Each dotted field's shortest trailing part that no other field ends with (``method.outer.lr`` -> ``lr``)."""
    out = {}
    for field in fields:
        parts = field.split(".")
        for n in range(1, len(parts) + 1):
            tail = ".".join(parts[-n:])
            if not any(other != field and (other == tail or other.endswith("." + tail)) for other in fields):
                break
        out[field] = tail
    return out


def _accepts(file: Path, method: str, base: dict[str, Any], field: str) -> bool:
    sc = load_scenario(file, overrides=base, method=method)
    return sc.method.outer is not None and field.split(".")[-1] in _outer_params(sc.method.outer["name"])


def _outer_params(name: str) -> set[str]:
    import inspect

    from sim.outer.registry import resolve

    return set(inspect.signature(resolve(name).__init__).parameters)


def _run_one(scenario_dict: dict[str, Any]) -> tuple[bool, list[str]]:
    """Process-pool entry: run one resolved scenario into its default folder; (reused, the run's notes).

    It was missing when planned, but another command sharing the store may
    have computed it since (the run waits for that one's lock, then reuses).
    A checkpoint that cannot be trusted is set aside and the run starts afresh.
    """
    from sim.runner import run
    from sim.scenario import scenario_from_dict

    notes: list[str] = []
    # resume: a run interrupted in an earlier call continues from its checkpoint
    result = run(scenario_from_dict(scenario_dict, "<compare>"), checkpoint_every=100, resume=True,
                 notify=notes.append, bad_checkpoint="restart")
    return result.reused, [note for note in notes if not note.startswith("--resume: no checkpoint")]


def execute(
    specs: list[RunSpec],
    jobs: int = 1,
    on_done: Callable[[RunSpec, bool], None] | None = None,
    on_pretrain: PretrainProgress | None = None,
    on_start: Callable[[RunSpec], None] | None = None,
    cluster: Cluster | None = None,
    on_queued: Callable[[int], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> int:
    """Compute the runs whose folders are missing; returns how many were computed.

    A stored run is reused only once it proves itself (:func:`sim.store.reusable`:
    a folder that fails is set aside, named to ``on_note``, and computed
    again). Shared pretraining is done first, once per checkpoint
    (:mod:`sim.prepare`), so parallel runs never pretrain the same model side
    by side. ``on_start`` hears of a run when a process takes it, ``on_done``
    when it is finished (or found complete). With ``cluster``, each missing
    run is a Ray task (sim/cluster.py) instead of a local process.
    """
    note = on_note or (lambda line: None)
    started = on_start or (lambda spec: None)
    finished = on_done or (lambda spec, reused: None)
    todo = {}
    for spec in specs:
        if spec.folder in todo:
            continue  # identical scenarios run once
        if reusable(spec.folder, spec.scenario, note):
            finished(spec, True)
        else:
            todo[spec.folder] = spec
    if not todo:
        return 0
    with naming_file(", ".join(sorted({spec.file for spec in todo.values()}))):
        pretrain_once((spec.scenario for spec in todo.values()), on_pretrain)
    if cluster is not None:
        from sim.cluster import execute_on_ray

        with sigterm_as_interrupt():
            return execute_on_ray(list(todo.values()), cluster, started, finished, on_queued or (lambda n: None))
    reused_meanwhile = 0

    def collect(spec: RunSpec, outcome: tuple[bool, list[str]]) -> None:
        nonlocal reused_meanwhile
        reused, notes = outcome
        for line in notes:
            note(f"{spec.folder.name}: {line}" if spec.folder.name not in line else line)
        reused_meanwhile += reused
        finished(spec, reused)

    if jobs <= 1:
        try:
            with sigterm_as_interrupt():
                for spec in todo.values():
                    started(spec)
                    with naming_file(spec.file):
                        collect(spec, _run_one(spec.scenario.resolved()))
        except KeyboardInterrupt:
            raise RunInterrupted() from None
        return len(todo) - reused_meanwhile
    import multiprocessing as mp

    from sim.executors import exit_with_parent

    waiting = list(todo.values())
    pool = ProcessPoolExecutor(
        max_workers=jobs, mp_context=mp.get_context("spawn"), initializer=exit_with_parent, initargs=(os.getpid(),)
    )
    running: dict[Future[tuple[bool, list[str]]], RunSpec] = {}
    try:
        with sigterm_as_interrupt():
            # at most `jobs` runs are handed to the pool, so a stop has nothing queued to cancel
            while waiting or running:
                while waiting and len(running) < jobs:
                    spec = waiting.pop(0)
                    running[pool.submit(_run_one, spec.scenario.resolved())] = spec
                    started(spec)
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    with naming_file(running[fut].file):
                        outcome = fut.result()
                    collect(running.pop(fut), outcome)
    except (KeyboardInterrupt, RunInterrupted):
        stop_running_runs(pool)
        raise RunInterrupted() from None
    finally:
        pool.shutdown(wait=True)
    return len(todo) - reused_meanwhile


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops a multi-run command the way Ctrl-C does (in the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def stop_running_runs(pool: ProcessPoolExecutor) -> None:
    """Ask every run in the pool to checkpoint and stop at its next safe point (SIGTERM, see runner).

    Runs not started yet are cancelled; finished ones are already in the run store.
    A Ctrl-C in a terminal reaches the pool's processes anyway; a SIGTERM sent
    to this process alone would not, so it is passed on.
    """
    processes = getattr(pool, "_processes", None) or {}  # pid -> Process; private, hence the guard
    for process in list(processes.values()):
        if process.is_alive():
            process.terminate()


def version_notice(specs: list[RunSpec]) -> str | None:
    """One line when some runs were made with other software versions than this one (their summaries say)."""
    from sim.summary import made_with_other_versions, software_versions, versions_text

    other = [(spec, why) for spec in specs if (why := made_with_other_versions(read_summary(spec.folder)))]
    if not other:
        return None
    spec, why = other[0]
    return (f"{len(other)} of {len(specs)} runs were made with other versions than this one "
            f"({versions_text(software_versions())}), e.g. {spec.folder.name}, {why}")


def load_results(specs: list[RunSpec]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Metrics and events of every run (with file / sweep columns) and one summary row per run."""
    metrics, events, rows = [], [], []
    for spec in specs:
        m = pd.read_parquet(spec.folder / "metrics.parquet")
        e = pd.read_parquet(spec.folder / "events.parquet")
        s = read_summary(spec.folder)
        for df in (m, e):
            df["scenario"] = spec.scenario.name
            df["sweep"] = str(spec.sweep_value) if spec.sweep_value is not None else ""
            df["method"] = spec.method
            df["seed"] = spec.seed
        metrics.append(m)
        events.append(e)
        rows.append(
            {
                "scenario": spec.scenario.name,
                "sweep": str(spec.sweep_value) if spec.sweep_value is not None else "",
                "method": spec.method,
                "seed": spec.seed,
                "status": s.get("status", "finished"),
                "simulated_seconds": s["simulated_seconds"],
                "run_hash": s["run_hash"],
                "folder": str(spec.folder),
                **{f"final_{k}": v for k, v in s["final"].items() if k not in ("method", "seed")},
                **run_traffic(e, spec.scenario, s.get("num_params") or _num_params(spec.scenario)),
                **peak_rates(e, spec.scenario, s.get("num_params") or _num_params(spec.scenario)),
            }
        )
    return pd.concat(metrics, ignore_index=True), pd.concat(events, ignore_index=True), pd.DataFrame(rows)


def _num_params(scenario: Scenario) -> int:
    """The model's size, for runs made before summaries recorded it."""
    from sim.trainer_factory import build_trainer

    return int(build_trainer(scenario).init_params().numel())


def build_report(
    specs: list[RunSpec],
    axis_label: str | None,
    methods: list[str],
    out_dir: Path,
    command: str,
    computed: int,
    target: float | None = None,
) -> dict[str, Path]:
    """Write plots, tables and report.md for a finished comparison (``target``: of the time-to-target table).

    The drawing itself is :func:`sim.compare_report.render_report`, which
    ``asyncsim report`` calls again later without running anything.
    """
    from sim.compare_report import ReportData, render_report

    metrics, events, runs = load_results(specs)
    data = ReportData(runs, metrics, events, {str(s.folder): s.scenario for s in specs})
    provenance = f"{len(runs)} runs ({computed} computed now, {len(runs) - computed} reused from reports/runs/)."
    return render_report(data, axis_label, methods, out_dir, command, provenance, target).files
