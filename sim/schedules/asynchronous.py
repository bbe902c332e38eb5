"""Algorithm 2 with Algorithm 5's grace period: apply each pseudo-gradient as it arrives.

The first arrival after a dispatch opens a window at tau_sync (line 12);
every arrival within tau_sync + tau_grace is synced too, in arrival order
(Algorithm 5's ``get_worker``: the earliest completed worker, if
``w.completed_time - tau_sync <= tau_grace``). When the next arrival falls
outside, the window closes (lines 16-19): the workers synced in it restart
together from the same model. Arrival times are planned at dispatch, so the
server knows when the window may close without waiting for it.

They restart at the last sync of the window (``grace_wait: last_sync``, as
in the authors' notebook: syncs take no time) or, the stricter reading, when
the window closes (``grace_wait: window``: a real server cannot see the
future), unless no job is left that could still arrive. A huge grace period
reproduces the synchronous schedule. A worker whose device goes down loses
its round and rejoins, with the current model, when it is back up.

Arrivals at the same exact instant (sim/simtime.py) are one arrival time:
a tie is never split between windows, whatever the grace period. Line 5 of
Algorithm 5 itself is read on the recorded seconds, as the event log shows
it (an arrival tied with the last sync is recorded at that sync's time).
"""
from __future__ import annotations

from typing import Any

from sim.jobs import Job
from sim.scenario import Scenario
from sim.schedules.base import Run, Schedule
from sim.simtime import Time, later
from trainers.base import JobResult


class Asynchronous(Schedule):
    def __init__(self, scenario: Scenario):
        super().__init__(scenario)
        self.grace = scenario.schedule.grace_period  # tau_grace, seconds
        self.waits_for_window = scenario.schedule.grace_wait == "window"
        self.opened: Time | None = None  # tau_sync: when the current window opened (None: no window open)
        self.completed: list[int] = []  # W_completed: workers synced in the current window

    def start(self, run: Run) -> None:
        run.dispatch(range(run.k))  # line 5

    def wake_at(self, run: Run, arrival: Job | None) -> Time | None:
        """Algorithm 5: the window closes once the next arrival falls outside it (or none is left).

        It closes at the last sync (``last_sync``, now) or at tau_sync + tau_grace (``window``).
        """
        if self.opened is None:
            return None
        if arrival is None:
            return run.state.now
        if self._in_window(run, arrival.completes_at):
            return None  # get_worker returns it
        return self.opened + Time.of(self.grace) if self.waits_for_window else run.state.now

    def _in_window(self, run: Run, arrival: Time) -> bool:
        """``w.completed_time - tau_sync <= tau_grace``, at the time the log records for the arrival."""
        assert self.opened is not None
        return later(run.state.now, arrival).seconds - self.opened.seconds <= self.grace

    def on_wake(self, run: Run) -> None:
        """Lines 17-19: tau_sync = inf, and the workers synced in the window train again, from one model."""
        self.opened = None
        run.dispatch(self.completed)
        self.completed = []

    def on_arrival(self, run: Run, job: Job, result: JobResult) -> None:
        """Lines 12-15: open the window at the first arrival, sync, remember the worker."""
        if run.state.diverged:
            return
        if self.opened is None:
            self.opened = run.state.now
        run.apply(job, result.delta)
        self.completed.append(job.worker)
        run.evaluate()

    def on_loss(self, run: Run, job: Job) -> None:
        assert job.lost_at is not None
        run.rejoin_when_up(job.worker, job.lost_at)

    def on_rejoin(self, run: Run, worker: int, at: Time) -> None:
        """Back up: train again at once, from the current model."""
        run.rejoin(worker, at)
        run.dispatch([worker])

    def state_dict(self) -> dict[str, Any]:
        return {"opened": None if self.opened is None else self.opened.plain(), "completed": list(self.completed)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.opened = None if state["opened"] is None else Time.from_plain(state["opened"])
        self.completed = list(state["completed"])
