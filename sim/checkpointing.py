"""How a simulation saves itself at a safe point and continues from what it saved.

A run's state is the model, the outer update's state, the jobs in flight
with their dispatch inputs, each component's own state (dispatcher,
planner, schedule, outer update) and the scalars of
:class:`~sim.runstate.RunState`: tensors and plain data only, so a
checkpoint loads with ``weights_only=True``. A resumed run ends with the
same bytes as an uninterrupted one (tests/test_resume.py).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import simpy

from sim.errors import RunInterrupted
from sim.jobs import Job, JobTable
from sim.runstate import Checkpoints, RunState
from trainers.base import JobResult

if TYPE_CHECKING:  # annotations only
    import torch

    from sim.dispatch import Dispatcher
    from sim.build import RunSettings
    from sim.inner_state import InnerStates
    from sim.outer.base import OuterUpdate
    from sim.planner import Planner
    from sim.records import Recorder
    from sim.schedules.base import Schedule
    from trainers.base import Executor


class Resumable:
    """The checkpoint half of :class:`sim.engine.Simulation`."""

    settings: RunSettings
    state: RunState
    theta: torch.Tensor
    outer: OuterUpdate | None
    dispatcher: Dispatcher
    inner: InnerStates
    planner: Planner
    schedule: Schedule
    recorder: Recorder
    jobs: JobTable
    executor: Executor
    env: simpy.Environment
    checkpoints: Checkpoints | None
    stop_requested: bool
    resumed_from: int | None

    def request_stop(self) -> None:
        """Stop at the next safe point, after saving the state (SIGINT / SIGTERM)."""
        self.stop_requested = True

    def _safe_point(self) -> None:
        c, s = self.checkpoints, self.state
        if c is None:
            return
        if (c.every > 0 and s.version >= s.next_checkpoint) or self.stop_requested:
            if c.every > 0:
                s.next_checkpoint = (s.version // c.every + 1) * c.every
            c.save(self.state_dict())
        if self.stop_requested:
            raise RunInterrupted()

    def _parts(self) -> dict[str, Any]:
        """The components that keep state of their own, each with ``state_dict`` / ``load_state_dict``."""
        parts = {"dispatcher": self.dispatcher, "planner": self.planner, "schedule": self.schedule, "inner": self.inner}
        return parts if self.outer is None else {**parts, "outer": self.outer}

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs, as tensors and plain data; jobs in flight keep their dispatch inputs."""
        return {"scenario_digest": self.settings.digest, "state": self.state.plain(), "theta": self.theta,
                "jobs": self.jobs.state_dict(), "recorder": (self.recorder.events, self.recorder.metric_rows),
                **{name: part.state_dict() for name, part in self._parts().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s output (before :meth:`run`)."""
        if state["scenario_digest"] != self.settings.digest:
            raise ValueError("checkpoint belongs to a different scenario")
        self.state = RunState.from_plain(state["state"])
        self.theta = state["theta"]
        for name, part in self._parts().items():
            part.load_state_dict(state[name])
        self.recorder.events, self.recorder.metric_rows = state["recorder"]
        self.env = simpy.Environment(initial_time=self.state.now.seconds)
        jobs = state["jobs"]
        for plain in jobs["jobs"]:
            saved = plain.get("result")
            job = Job.from_plain({key: value for key, value in plain.items() if key != "result"},
                                 jobs["snapshots"][plain["snapshot"]])
            self.jobs.start(job, self.executor, None if saved is None else JobResult(**saved))
        self.jobs.load_rejoins(jobs["rejoins"])
        self.resumed_from = self.state.version
