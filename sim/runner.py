"""Build the pieces a scenario names, run the simulation, write the run folder."""
from __future__ import annotations

import os
import shutil
import signal
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from sim.adopt import same_schedule
from sim.build import assemble
from sim.checkpoint_file import BadCheckpoint, Checkpointing
from sim.engine import Simulation
from sim.errors import UserError
from sim.executors import make_executor
from sim.outputs import check_folder, check_run_destination
from sim.prepare import PretrainProgress, pretrain_once
from sim.records import is_complete_run, read_summary, write_run_folder, write_summary
from sim.runstate import Checkpoints
from sim.scenario import Scenario
from sim.signals import on_stop_signals
from sim.store import Notify, computing, reusable, run_problem
from sim.summary import made_with_other_versions, run_summary, software_versions, versions_text
from sim.trainer_factory import build_trainer

#: where run folders go unless ``$ASYNCSIM_RUNS`` says otherwise (relative to the working directory)
DEFAULT_RUNS_DIR = Path("reports") / "runs"


def runs_dir() -> Path:
    """The run store: ``$ASYNCSIM_RUNS``, else ``reports/runs`` in the working directory."""
    return Path(os.environ.get("ASYNCSIM_RUNS") or DEFAULT_RUNS_DIR)


@dataclass
class RunResult:
    scenario: Scenario
    metrics: pd.DataFrame
    events: pd.DataFrame
    run_hash: str
    summary: dict[str, Any]
    folder: Path | None = None
    reused: bool = False
    params: Any = None  # final server parameters (in-memory runs only)
    resumed_from: int | None = None  # server update a resumed run continued from


@contextmanager
def stop_on_signals(sim: Simulation) -> Iterator[None]:
    """SIGINT / SIGTERM ask the run to stop at its next safe point (after a checkpoint).

    A second SIGINT interrupts at once. Only installed in the main thread.
    """
    def request_stop(signum: int, frame: Any) -> None:
        if sim.stop_requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        sim.request_stop()

    with on_stop_signals(request_stop):
        yield


def simulate(
    scenario: Scenario,
    executor: str = "serial",
    progress: Any = None,
    jobs: int | None = None,
    address: str | None = None,
    checkpointing: Checkpointing | None = None,
    notify: Notify | None = None,
) -> RunResult:
    """Run a scenario in memory; nothing is written to disk unless checkpointing.

    ``executor`` (serial / process / ray) changes only how fast jobs are
    computed, never the results. With ``checkpointing``, the run saves its
    state every N server updates and when stopped by SIGINT / SIGTERM
    (raising :class:`sim.errors.RunInterrupted`), and can resume from it
    with identical bytes in the end.
    """
    import torch

    # Evaluation runs in this process: give it the job thread count too,
    # since torch's results depend on the number of threads.
    torch.set_num_threads(scenario.compute.threads)
    trainer = build_trainer(scenario)
    pool = make_executor(executor, scenario, trainer, jobs=jobs, address=address)
    checkpoints = None if checkpointing is None else Checkpoints(checkpointing.save, checkpointing.every)
    try:  # from here on, the pool's processes must not outlive an error
        parts = assemble(scenario, trainer, pool)
        state = None if checkpointing is None else checkpointing.load(parts.settings.digest, notify)
        sim = Simulation(parts, progress=progress, checkpoints=checkpoints)
        if checkpointing is not None and state is not None:
            try:
                sim.load_state_dict(state)
            except (KeyError, TypeError, ValueError) as exc:  # a state this asyncsim's parts do not hold
                raise UserError(f"{checkpointing.path}: this asyncsim cannot continue that checkpoint "
                                f"({type(exc).__name__}: {str(exc)[:120]}); remove it to start afresh") from None
        with stop_on_signals(sim) if checkpointing is not None else nullcontext():
            outcome = sim.run()
    finally:
        pool.close()
    metrics, events = outcome.recorder.metrics_frame(), outcome.recorder.events_frame()
    summary = run_summary(parts.settings, outcome, metrics, events)
    return RunResult(scenario, metrics, events, summary["run_hash"], summary, params=outcome.theta,
                     resumed_from=outcome.resumed_from)


def partial_folder(folder: Path) -> Path:
    """Where an unfinished run keeps its checkpoint, beside its final folder."""
    return folder.parent / f".{folder.name}.partial"


def run_folder_name(scenario: Scenario) -> str:
    """``NAME-METHOD-sSEED-DIGEST12``: a report's runs.csv records it, so a plan can be checked against it."""
    return f"{scenario.name}-{scenario.method.preset}-s{scenario.seed}-{scenario.digest()[:12]}"


def default_run_folder(scenario: Scenario, root: Path | None = None) -> Path:
    """Run folders are keyed by the resolved scenario's digest: same scenario, same folder.

    When a newer asyncsim adds a field with a default, the digest of an old
    folder's scenario changes although its results still hold. So a miss
    looks at the folders of the same name, method and seed, re-validates
    their stored scenarios with this version, and adopts (renames) one whose
    digest now matches and whose tables prove themselves
    (:func:`sim.store.run_problem`), provided the same simulation made it
    (its summary's ``simulation``, :meth:`sim.scenario.Scenario.simulation_version`); a folder of an older
    simulation is adopted only when this engine replays its schedule exactly (:mod:`sim.adopt`).
    """
    root = runs_dir() if root is None else root
    folder = root / run_folder_name(scenario)
    if is_complete_run(folder) or not root.exists():
        return folder
    for old in sorted(root.glob(f"{scenario.name}-{scenario.method.preset}-s{scenario.seed}-*")):
        if old == folder or not is_complete_run(old):
            continue
        # the stored scenario is re-read with today's code, so the summary says which code and simulation made it
        summary = read_summary(old)
        if summary.get("code", {}) != scenario.code_digests() or run_problem(old, scenario) is not None:
            continue
        if summary.get("simulation") == scenario.simulation_version():
            old.rename(folder)
            break
        if summary.get("status", "finished") == "finished" and same_schedule(scenario, old):
            _adopt(old, folder, summary, scenario.simulation_version())
            break
    return folder


def _adopt(old: Path, folder: Path, summary: dict[str, Any], version: int) -> None:
    """Take an older simulation's run folder whose schedule this engine reproduces exactly (:mod:`sim.adopt`)."""
    write_summary(old, {**summary, "simulation": version,
                        "adopted": {"from_simulation": summary.get("simulation", 1), "schedule_checked": True}})
    old.rename(folder)


def run(
    scenario: Scenario,
    out: Path | None = None,
    executor: str = "serial",
    progress: Any = None,
    plots: bool = True,
    jobs: int | None = None,
    address: str | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    notify: Notify | None = None,
    bad_checkpoint: BadCheckpoint = "stop",
    on_pretrain: PretrainProgress | None = None,
) -> RunResult:
    """Run into a folder. Without ``out``, an existing complete run of the same
    scenario is reused; with ``out`` the run is always computed afresh.
    ``on_pretrain(label, step, total)`` follows a pretraining that a computed
    run needs first (a reused run needs none).

    The output location is checked before anything is computed: ``out`` may
    only be new, empty or an earlier asyncsim run (never a user's folder). A
    stored run is reused only once it proves itself (:func:`sim.store.reusable`);
    one that does not is kept aside (``NAME.damaged``) and the run computed
    again. While a store's run is computed its folder's lock is held, so a
    second command sharing the store waits and then reuses it. The
    checkpoint of an unfinished run lives in a hidden ``.NAME.partial``
    folder beside the run folder; ``resume=True`` continues from it once it
    proves itself (``bad_checkpoint`` says what to do when it does not), and
    it is removed once the complete folder has been written. ``notify``
    receives one line for each of these decisions.
    """
    say = notify or (lambda _line: None)
    if out is not None:
        folder = Path(out)
        check_run_destination(folder, "--out")
        return _compute(scenario, folder, say, resume, bad_checkpoint, checkpoint_every, plots, on_pretrain,
                        executor=executor, progress=progress, jobs=jobs, address=address)
    folder = default_run_folder(scenario)
    check_folder(folder.parent, "run store")
    with computing(folder, say) as waited:
        if reusable(folder, scenario, say):
            if waited:
                say(f"reused {folder.name}, which the other asyncsim has just computed")
            return _stored(scenario, folder, say)
        return _compute(scenario, folder, say, resume, bad_checkpoint, checkpoint_every, plots, on_pretrain,
                        executor=executor, progress=progress, jobs=jobs, address=address)


def _stored(scenario: Scenario, folder: Path, say: Notify) -> RunResult:
    """A proven run folder as a result (:func:`run`'s reuse)."""
    summary = read_summary(folder)
    other = made_with_other_versions(summary)
    if other:
        say(f"reused {folder}: {other}, now {versions_text(software_versions())}")
    return RunResult(scenario, pd.read_parquet(folder / "metrics.parquet"), pd.read_parquet(folder / "events.parquet"),
                     summary["run_hash"], summary, folder=folder, reused=True)


def _compute(scenario: Scenario, folder: Path, say: Notify, resume: bool, bad_checkpoint: BadCheckpoint,
             checkpoint_every: int, plots: bool, on_pretrain: PretrainProgress | None, **how: Any) -> RunResult:
    """Simulate (continuing from the checkpoint when asked) and write the complete run folder."""
    if on_pretrain is not None:
        pretrain_once([scenario], on_pretrain)  # cached: the run's own trainer loads it
    partial = partial_folder(folder)
    checkpointing = Checkpointing(partial / "checkpoint.pt", every=checkpoint_every, resume=resume,
                                  if_bad=bad_checkpoint)
    if resume and not checkpointing.path.exists():
        say(f"--resume: no checkpoint of this run at {checkpointing.path}; starting from the beginning")
    elif not resume and checkpointing.path.exists():
        say(f"an interrupted run of this scenario left a checkpoint at {checkpointing.path}; starting afresh as asked "
            "(it is overwritten at this run's first checkpoint; use --resume to continue it instead)")
    result = simulate(scenario, checkpointing=checkpointing, notify=say, **how)
    extra = {}
    if plots:
        from sim.report import plot_run_curves

        extra["curves.png"] = lambda path: plot_run_curves(result.metrics, path, title=_title(scenario))
    write_run_folder(
        folder,
        scenario=scenario.resolved(),
        metrics=result.metrics,
        events=result.events,
        summary=result.summary,
        extra_files=extra,
    )
    result.folder = folder
    shutil.rmtree(partial, ignore_errors=True)
    return result


def _title(scenario: Scenario) -> str:
    return f"{scenario.name} - {scenario.method.preset} (k={scenario.workers.k}, seed {scenario.seed})"

