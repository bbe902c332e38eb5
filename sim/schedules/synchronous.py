"""Algorithm 1 (DiLoCo): a barrier; every worker starts from the same model, one outer step on the mean.

A round dispatches every worker that is up (one that is down sits the round
out). When the last of the round's jobs has arrived or been lost, the
server averages the pseudo-gradients that arrived, Delta = (1/k') sum delta_i
(line 11, k' of them, in worker order), and takes one outer step with it
(line 12). If every device is down, the next round starts when the first
one is back.
"""
from __future__ import annotations

from typing import Any

import torch

from sim.jobs import Job
from sim.scenario import Scenario
from sim.schedules.base import Run
from sim.schedules.rounds import RoundSchedule
from sim.simtime import Time
from trainers.base import JobResult


class Synchronous(RoundSchedule):
    def __init__(self, scenario: Scenario):
        super().__init__(scenario)
        self.pending = 0  # jobs of the current round neither arrived nor lost
        self.results: list[tuple[Job, torch.Tensor]] = []  # the round's pseudo-gradients so far

    @property
    def busy(self) -> bool:
        return self.pending > 0

    def start_round(self, run: Run) -> None:
        """Lines 2-3: every worker that is up starts from the server's model."""
        run.dispatch(range(run.k))
        self.pending = len(run.jobs.in_flight)

    def on_arrival(self, run: Run, job: Job, result: JobResult) -> None:
        self.results.append((job, result.delta))
        self._resolved(run)

    def on_loss(self, run: Run, job: Job) -> None:
        self._resolved(run)

    def on_rejoin(self, run: Run, worker: int, at: Time) -> None:
        if not self.pending:  # mid-round, the next round takes every device that is up when it starts
            super().on_rejoin(run, worker, at)

    def _resolved(self, run: Run) -> None:
        """One of the round's jobs is in or lost; after the last, lines 11-12."""
        self.pending -= 1
        if self.pending:
            return
        results, self.results = sorted(self.results, key=lambda r: r[0].worker), []
        if run.state.diverged:
            return
        if results:
            mean = torch.stack([delta for _, delta in results]).sum(dim=0) / len(results)
            run.apply_mean([job for job, _ in results], mean, [delta for _, delta in results])
            run.evaluate()
        self.next_round(run)

    def state_dict(self) -> dict[str, Any]:
        assert not self.busy, "a synchronous round is checkpointed only between rounds"
        return super().state_dict()
