"""The server a schedule drives: what a schedule may do to a run (the :class:`sim.schedules.base.Run` protocol).

A schedule (sim/schedules/) decides; these methods carry its decisions out:
dispatch rounds from one snapshot of the model (Algorithm 4), train jobs
whose transfers the schedule moves itself (Streaming DiLoCo, eager updates),
apply pseudo-gradients through the outer update (Algorithm 2, line 13;
Algorithm 1, lines 11-12), and record every one of these as an event.

:class:`Server` holds no state of its own: the model, the job table, the
run's scalars and the parts it uses are the engine's (sim/engine.py), which
is a ``Server``. It is its own file so that the event loop and the server's
actions read apart.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import torch

from sim.build import RunSettings
from sim.compression import Links
from sim.diagnostics import Diagnostics
from sim.dispatch import Dispatcher
from sim.inner_state import InnerStates
from sim.jobs import Finished, Job, JobTable
from sim.outer.base import OuterUpdate, PseudoGradient, Work
from sim.planner import Planner, RoundPlan
from sim.records import Recorder
from sim.runstate import RunState
from sim.schedules.base import Schedule
from sim.simtime import Time, later
from trainers.base import Executor, JobSpec

ProgressFn = Callable[[int, int, dict[str, Any] | None], None]


class Server:
    """The actions a schedule may take on a run; the engine (:class:`sim.engine.Simulation`) is one."""

    settings: RunSettings
    k: int
    state: RunState
    jobs: JobTable
    theta: torch.Tensor
    outer: OuterUpdate | None
    executor: Executor
    schedule: Schedule
    planner: Planner
    links: Links
    dispatcher: Dispatcher
    recorder: Recorder
    diagnostics: Diagnostics | None
    inner: InnerStates
    progress: ProgressFn

    def advance(self, t: Time) -> None:
        self.state.now = later(self.state.now, t)

    def dispatch(self, workers: Sequence[int], state: Any = None, model: torch.Tensor | None = None) -> list[Job]:
        """Algorithm 4: a round for each worker that is up, in worker order, from one snapshot of theta.

        A worker that is down gets no job; it rejoins when it is back up.
        ``model``: a region's own server's model instead of theta (HALoS).
        """
        snapshot, now, started = self.links.download(self.theta if model is None else model), self.state.now, []
        for w in sorted(workers):
            back = self.planner.up_at(w, now)
            if back != now:
                self.jobs.rejoin_at(w, back)
                continue
            spec = self.dispatcher.spec(w)
            plan = self.planner.plan(w, now, spec.steps)
            started.append(self._start(w, spec, plan, snapshot, state, uploads=True))
        if self.planner.communicates:  # uploads queue on the server's link: re-plan the arrivals
            uploads = {j.worker: j.upload_start for j in self.jobs.by_worker() if j.lost_at is None and j.uploads}
            self.jobs.reschedule(self.planner.arrivals(uploads, self.state.uplink_free))
        return started

    def train(self, worker: int, model: torch.Tensor, spec: JobSpec, state: Any = None, jitter: float = 1.0) -> Job | None:
        """A job that only trains, from ``model`` on the device now (None, with a rejoin queued, if it is down).

        Its result is collected when training ends: what it sends and when
        is the schedule's (Streaming DiLoCo's fragments, eager updates).
        ``jitter``: the device's factor for it, drawn by :meth:`draw_spec`.
        """
        now = self.state.now
        back = self.planner.up_at(worker, now)
        if back != now:
            self.jobs.rejoin_at(worker, back)
            return None
        return self._start(worker, spec, self.planner.train_only(worker, now, spec.steps, jitter), model, state,
                           uploads=False)

    def _start(self, worker: int, spec: JobSpec, plan: RoundPlan, snapshot: torch.Tensor, state: Any,
               uploads: bool) -> Job:
        """Dispatch a planned job now: computed at once by the executor, its end awaited in (time, worker) order.

        Under ``method.inner_state`` keep / shard (sim/inner_state.py) the job
        starts from the stored inner state and returns the one it ends in.
        """
        if self.inner.carried and state is None:
            state = self.inner.start(worker, spec.shard)
            spec = dataclasses.replace(spec, keep_optimizer_state=True)
        job = Job(id=self.state.next_job_id, worker=worker, spec=spec, dispatch_version=self.state.version,
                  dispatched_at=self.state.now, completes_at=plan.arrival if plan.lost_at is None else plan.lost_at,
                  train_start=plan.train_start, upload_start=plan.upload_start, lost_at=plan.lost_at,
                  snapshot=snapshot, state=state, uploads=uploads,
                  keep_theta=uploads and self.outer is not None and self.outer.needs_dispatch_theta)
        self.state.next_job_id += 1
        self.jobs.start(job, self.executor)
        self._event("dispatch", job)
        return job

    def draw_spec(self, worker: int) -> tuple[JobSpec, float]:
        """The next round's spec for ``worker`` (Algorithm 4) and its device's jitter factor, drawn now."""
        return self.dispatcher.spec(worker), self.planner.draw_jitter(worker)

    def link_time(self, worker: int, num_bytes: int) -> Time:
        return self.planner.link_time(worker, num_bytes)

    def ingress_time(self, num_bytes: int) -> Time:
        return self.planner.ingress_time(num_bytes)

    def transfer_time(self, region: str | None, model: bool) -> Time:
        """A region server's push to the global server (``model``: the global model back) across the region matrix."""
        return self.planner.region_transfer(region, model)

    # -- outer steps -------------------------------------------------------------------------
    def apply(self, job: Job, delta: torch.Tensor) -> None:
        assert self.outer is not None
        s = self.state
        staleness = s.version - job.dispatch_version
        work = Work(job.spec.steps, self.settings.H, self.dispatcher.fleet_steps(), self.k) \
            if self.outer.needs_work else None
        grad = PseudoGradient(delta=delta, staleness=staleness, theta_at_dispatch=job.theta_at_dispatch, work=work)
        before = None if self.diagnostics is None else self.theta.clone()
        applied = self.outer.step(self.theta, grad)
        self._count(job.spec.steps)
        if applied:
            s.version += 1
            s.last_worker = job.worker
        self._event("sync" if applied else "drop", job, staleness=staleness, **self._measure([delta], before)[0])

    def apply_mean(self, jobs: Sequence[Job | Finished], mean: torch.Tensor,
                   deltas: Sequence[torch.Tensor] | None = None) -> None:
        """One outer step on the mean; ``deltas``, the jobs' own pseudo-gradients, only for diagnostics."""
        assert self.outer is not None
        before = None if self.diagnostics is None else self.theta.clone()
        self.outer.step(self.theta, PseudoGradient(delta=mean))
        measured = self._measure(list(deltas or [mean] * len(jobs)), before)
        for job, extra in zip(jobs, measured):
            self._count(job.spec.steps)
            self._event("sync", job, staleness=0, **extra)
        self.state.version += 1

    def apply_part(self, index: torch.Tensor | None, outer: OuterUpdate, mean: torch.Tensor,
                   members: Sequence[tuple[Finished, int]]) -> None:
        """One outer step of ``outer`` on the model's values at ``index`` (None: all), members' steps counted."""
        if index is None:
            outer.step(self.theta, PseudoGradient(delta=mean))
        else:
            part = self.theta.index_select(0, index)
            outer.step(part, PseudoGradient(delta=mean))
            self.theta.index_copy_(0, index, part)
        for job, steps in members:
            self._count(steps)
            self._event("sync", job, staleness=0)
        self.state.version += 1

    def apply_global(self, delta: torch.Tensor, staleness: int, server: int) -> None:
        """The global server's outer step on a region server's accumulated change (HALoS's GPS)."""
        assert self.outer is not None
        self.outer.step(self.theta, PseudoGradient(delta=delta, staleness=staleness))
        self.state.version += 1
        self.server_event("global", server, staleness=staleness)

    def adopt(self, job: Job, delta: torch.Tensor) -> None:
        self.theta.sub_(delta)
        self._count(job.spec.steps * self.k)  # each step does k workers' worth of work
        self.state.version += 1
        self._event("sync", job, staleness=0)

    def _measure(self, deltas: list[torch.Tensor], before: torch.Tensor | None) -> list[dict[str, float]]:
        """The diagnostic columns of pseudo-gradients synced together (none when diagnostics are off)."""
        if self.diagnostics is None or before is None:
            return [{} for _ in deltas]
        return self.diagnostics.columns(deltas, before, self.theta)

    # -- records -----------------------------------------------------------------------------
    def record_sync(self, job: Job, staleness: int, applied: bool, server: int) -> None:
        """A region's own server applied (or dropped) ``job``'s pseudo-gradient (HALoS's LPS)."""
        self._count(job.spec.steps)
        self._event("sync" if applied else "drop", job, staleness=staleness, server=server)

    def record_transfer(self, kind: str, job: Finished, fragment: int, sent: Time, num_bytes: int) -> None:
        """A transfer the schedule moved landed now (upload: at the server; download: at the worker), or a merge."""
        self._event(kind, job, fragment=fragment, nbytes=num_bytes, sent=sent.seconds)

    def server_event(self, kind: str, server: int, staleness: int = -1) -> None:
        s = self.state
        self.recorder.event(kind, job=-1, worker=-1, shard=-1, steps=0, tau=s.now.seconds, server_version=s.version,
                            dispatch_version=-1, t_local=s.t_local, staleness=staleness, server=server)

    def rejoin(self, worker: int, at: Time) -> None:
        self.advance(at)
        self.recorder.rejoin(worker, tau=self.state.now.seconds, server_version=self.state.version, t_local=self.state.t_local)

    def rejoin_when_up(self, worker: int, after: Time) -> None:
        self.jobs.rejoin_at(worker, self.planner.up_at(worker, after))

    def _count(self, steps: int) -> None:
        self.state.t_local += steps
        self.progress(self.state.t_local, self.settings.t_max, None)  # the bar moves with synced work

    def _event(self, kind: str, job: Job | Finished, **extra: Any) -> None:
        s = self.state
        if self.recorder.comm_columns:
            extra.update(train_start=job.train_start.seconds, upload_start=job.upload_start.seconds)
        if self.recorder.server_column:
            extra.setdefault("server", self.schedule.server_of(job.worker))
        self.recorder.event(kind, job=job.id, worker=job.worker, shard=job.spec.shard, steps=job.spec.steps,
                            tau=s.now.seconds, server_version=s.version, dispatch_version=job.dispatch_version,
                            t_local=s.t_local, **extra)
