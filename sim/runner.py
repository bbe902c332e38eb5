"""Build the pieces a scenario names, run the simulation, write the run folder."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sim.engine import Simulation, trainer_seed
from sim.executors import make_executor
from sim.outer.base import OuterUpdate
from sim.outer.registry import resolve
from sim.records import is_complete_run, read_summary, run_hash, write_run_folder
from sim.scenario import Scenario, resolve_trainer_class
from trainers.base import Trainer

RUNS_DIR = Path("reports") / "runs"


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


def build_trainer(scenario: Scenario) -> Trainer:
    cls = resolve_trainer_class(scenario.trainer.name)
    kwargs: dict[str, Any] = {"seed": trainer_seed(scenario.seed)}
    if "num_shards" in inspect.signature(cls).parameters:
        kwargs["num_shards"] = scenario.workers.k
    return cls(scenario.trainer.config, **kwargs)


def _outer_args(spec: dict[str, Any], k: int) -> dict[str, Any]:
    return {key: (k if value == "k" else value) for key, value in spec.items() if key != "name"}


def build_outer(scenario: Scenario) -> OuterUpdate | None:
    """The outer update, wrapped in the staleness fix if the method has one."""
    method, k = scenario.method, scenario.workers.k
    if method.outer is None:
        return None
    outer = resolve(method.outer["name"])(**_outer_args(method.outer, k))
    if method.fix is not None:
        outer = resolve(method.fix["name"])(outer, **_outer_args(method.fix, k))
    return outer


def simulate(
    scenario: Scenario,
    executor: str = "serial",
    progress: Any = None,
    jobs: int | None = None,
    address: str | None = None,
) -> RunResult:
    """Run a scenario in memory; nothing is written to disk.

    ``executor`` (serial / process / ray) changes only how fast jobs are
    computed, never the results.
    """
    import torch

    # Evaluation runs in this process: give it the job thread count too,
    # since torch's results depend on the number of threads.
    torch.set_num_threads(scenario.compute.threads)
    trainer = build_trainer(scenario)
    engine_exec = make_executor(executor, scenario, trainer, jobs=jobs, address=address)
    try:
        sim = Simulation(scenario, trainer, build_outer(scenario), engine_exec, progress=progress)
        recorder = sim.run()
    finally:
        engine_exec.close()
    metrics, events = recorder.metrics_frame(), recorder.events_frame()
    digest = run_hash(metrics, events)
    final = metrics.iloc[-1].to_dict()
    summary = {
        "name": scenario.name,
        "method": scenario.method.preset,
        "seed": scenario.seed,
        "scenario_digest": scenario.digest(),
        "run_hash": digest,
        "status": "diverged" if sim.diverged else "finished",
        "diverged": sim.diverged,
        "final": {k: (v.item() if hasattr(v, "item") else v) for k, v in final.items()},
        "simulated_seconds": float(sim.env.now),
        "jobs": int((events["event"] == "dispatch").sum()),
    }
    return RunResult(scenario, metrics, events, digest, summary, params=sim.theta)


def default_run_folder(scenario: Scenario, root: Path = RUNS_DIR) -> Path:
    """Run folders are keyed by the resolved scenario's digest: same scenario, same folder."""
    return root / f"{scenario.name}-{scenario.method.preset}-s{scenario.seed}-{scenario.digest()[:12]}"


def run(
    scenario: Scenario,
    out: Path | None = None,
    executor: str = "serial",
    progress: Any = None,
    plots: bool = True,
    jobs: int | None = None,
    address: str | None = None,
) -> RunResult:
    """Run into a folder. Without ``out``, an existing complete run of the same
    scenario is reused; with ``out`` the run is always computed afresh."""
    folder = Path(out) if out is not None else default_run_folder(scenario)
    if out is None and is_complete_run(folder):
        summary = read_summary(folder)
        return RunResult(
            scenario,
            pd.read_parquet(folder / "metrics.parquet"),
            pd.read_parquet(folder / "events.parquet"),
            summary["run_hash"],
            summary,
            folder=folder,
            reused=True,
        )
    result = simulate(scenario, executor=executor, progress=progress, jobs=jobs, address=address)
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
    return result


def _title(scenario: Scenario) -> str:
    return f"{scenario.name} - {scenario.method.preset} (k={scenario.workers.k}, seed {scenario.seed})"

