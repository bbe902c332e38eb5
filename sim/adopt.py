"""Run folders of an older simulation, kept when this one provably makes the same run.

:data:`sim.scenario.SIMULATION_VERSION` (or a schedule's own version,
:data:`sim.scenario.SCHEDULE_VERSIONS`) changes when the engine may schedule
differently (version 2: exact time decides ties that floats split by 1e-13
s; 3, the overlapping schedules: a worker back up is not sent what it no
longer owes). Most old runs never met such a tie, and recomputing them costs hours for
an LM study. A job is a pure function of its dispatch-time state, and the
schedule never depends on what a job computes (only divergence stops a run
early, and only finished runs are considered). So if this engine, driving
stand-in jobs that compute nothing, records the same schedule as the old
folder (every dispatch, completion, sync, drop, discard, loss and rejoin,
with the same workers, shards, steps, times, versions and staleness, in the
same order), it would compute the same bits: the folder is adopted and its
summary says so. Any difference, however small, means the run is computed
again.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from sim.build import assemble
from sim.engine import Simulation
from sim.executors import make_executor
from sim.scenario import Scenario
from sim.trainer_factory import build_trainer
from trainers.base import JobResult, JobSpec, Trainer

#: event columns that are the schedule (everything but what jobs computed)
COMPUTED_COLUMNS = ("train_loss",)


class _StandIn:
    """The scenario's own trainer (same shards, batch, parameter count), whose jobs compute nothing."""

    def __init__(self, trainer: Trainer):
        self._trainer = trainer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trainer, name)

    def local_train(self, theta: Any, job: JobSpec, optimizer_state: Any = None) -> JobResult:
        return JobResult(delta=theta.new_zeros(theta.shape), train_loss=0.0,
                         optimizer_state={} if job.keep_optimizer_state else None)

    def evaluate(self, theta: Any) -> dict[str, float]:
        return {"loss": 1.0}


def schedule_of(scenario: Scenario) -> pd.DataFrame:
    """The event log this engine records for ``scenario``, jobs computing nothing."""
    import torch

    torch.set_num_threads(scenario.compute.threads)
    trainer = _StandIn(build_trainer(scenario))
    executor = make_executor("serial", scenario, trainer)
    try:
        events = Simulation(assemble(scenario, trainer, executor)).run().recorder.events_frame()
    finally:
        executor.close()
    return events.drop(columns=[c for c in COMPUTED_COLUMNS if c in events.columns])


def same_schedule(scenario: Scenario, folder: Path) -> bool:
    """Would this engine schedule the run stored in ``folder`` exactly as it was scheduled there?"""
    old = pd.read_parquet(Path(folder) / "events.parquet")
    old = old.drop(columns=[c for c in COMPUTED_COLUMNS if c in old.columns])
    new = schedule_of(scenario)
    return list(old.columns) == list(new.columns) and old.reset_index(drop=True).equals(new.reset_index(drop=True))
