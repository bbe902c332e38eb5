"""Schedules that train in rounds (Algorithm 1, the 1-worker baseline): the next round starts when it is due."""
from __future__ import annotations

from abc import abstractmethod
from typing import Any

from sim.jobs import Job
from sim.scenario import Scenario
from sim.schedules.base import Run, Schedule
from sim.simtime import Time


class RoundSchedule(Schedule):
    """A round is due at the start, when the last one is over, and, if every
    device it needed was down, when the first is back (a worker that is down
    at a round's start gets a rejoin instead of a job: :meth:`Run.dispatch`).
    """

    def __init__(self, scenario: Scenario):
        super().__init__(scenario)
        self.due = False  # the next round starts now

    @abstractmethod
    def start_round(self, run: Run) -> None:
        """Dispatch the round's workers."""

    def start(self, run: Run) -> None:
        self.due = True

    def wake_at(self, run: Run, arrival: Job | None) -> Time | None:
        return run.state.now if self.due else None

    def on_wake(self, run: Run) -> None:
        self.due = False
        self.start_round(run)

    def next_round(self, run: Run) -> None:
        """The round is over (or could not start): the next starts now, with every device that is up then."""
        run.jobs.forget_rejoins()
        self.due = True

    def on_rejoin(self, run: Run, worker: int, at: Time) -> None:
        """Every device the round needed was down; the first one back starts the next."""
        run.advance(at)
        self.next_round(run)

    def state_dict(self) -> dict[str, Any]:
        return {"due": self.due}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.due = state["due"]
