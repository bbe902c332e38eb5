"""The 1-worker baseline: one model trained with k x the batch, synchronously data-parallel over the k devices.

Each round runs on every device in lockstep (a step waits for the slowest)
and its inner AdamW state persists across rounds: it is plain data-parallel
training, and rounds only pace the evaluations. The server takes the
worker's model as its own (theta <- theta - delta); each local step counts
as k workers' worth toward t_max. A device failing mid-round loses the round
(the optimizer state before it is kept); the next starts when all are up.
"""
from __future__ import annotations

from typing import Any

from sim.jobs import Job
from sim.scenario import Scenario
from sim.schedules.base import Run
from sim.schedules.rounds import RoundSchedule
from trainers.base import JobResult


class SingleWorker(RoundSchedule):
    lockstep = True
    carries_inner_state = True

    def __init__(self, scenario: Scenario):
        super().__init__(scenario)
        self.keep = scenario.method.inner_state == "keep"  # the default: one training process throughout
        self.carried: Any = None  # the inner optimizer state, carried from round to round

    def start_round(self, run: Run) -> None:
        run.dispatch([0], self.carried if self.keep else None)

    def on_arrival(self, run: Run, job: Job, result: JobResult) -> None:
        if run.state.diverged:
            return
        self.carried = result.optimizer_state
        run.adopt(job, result.delta)
        run.evaluate()
        self.next_round(run)

    def on_loss(self, run: Run, job: Job) -> None:
        self.next_round(run)  # the round is lost, the state kept; it restarts once every device is up

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "carried": self.carried}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.carried = state["carried"]
