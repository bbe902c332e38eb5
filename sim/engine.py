"""The discrete-event core: a job table, a schedule that decides, and the server that applies.

What a job *computes* comes from the trainer; *when* it arrives comes from
the planner (sim/planner.py), fixed at dispatch. The engine merges what
happens next, an arrival at the server or a device going down or coming
back, in (time, worker) order, advances SimPy's clock to it, and hands it
to the schedule (sim/schedules/), which dispatches, applies or waits. Ties
in simulated time break by worker id; times are exact (sim/simtime.py).

A run's state is the model, the outer update's state, the jobs in flight
with their dispatch inputs, each component's own state and the scalars of
:class:`RunState`. At a *safe point* (between two occurrences, unless the
schedule is busy) that is all a checkpoint needs: a resumed run ends with
the same bytes as an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterator, Sequence

import simpy
import torch

from sim.build import STREAM_CHURN, STREAM_JITTER, STREAM_SHARDS, stream
from sim.checkpointing import Resumable
from sim.churn import timelines
from sim.compression import Links
from sim.diagnostics import Diagnostics, step_norm
from sim.dispatch import Dispatcher
from sim.inner_state import InnerStates
from sim.jobs import Finished, Job, JobTable
from sim.outer.base import OuterUpdate, PseudoGradient, Work
from sim.planner import Planner, RoundPlan, step_times
from sim.records import Recorder
from sim.runstate import Checkpoints, Outcome, RunState
from sim.scenario import Scenario
from sim.schedules import schedule_class
from sim.simtime import Time, later
from trainers.base import Executor, JobResult, JobSpec, ReportsLayers, Trainer

#: a run stops as stalled after this many jobs per worker in a row are lost to churn
STALL_LOSSES_PER_WORKER = 50

ProgressFn = Callable[[int, int, dict[str, Any] | None], None]


class Simulation(Resumable):
    """One run of one scenario. Call :meth:`run` once."""

    def __init__(self, scenario: Scenario, trainer: Trainer, outer: OuterUpdate | None, executor: Executor,
                 progress: ProgressFn | None = None, checkpoints: Checkpoints | None = None):
        self.sc, self.trainer, self.outer, self.executor = scenario, trainer, outer, executor
        self.progress = progress or (lambda t_local, t_max, row: None)
        self.checkpoints, self.stop_requested, self.resumed_from = checkpoints, False, None
        self.k = scenario.workers.k
        self.schedule = schedule_class(scenario.method.schedule)(scenario)
        devices = [scenario.workers.device(w) for w in range(self.k)]
        seconds = step_times(devices, trainer)
        self.theta = trainer.init_params()
        self.batch_size = trainer.batch_size()
        self.layer_sizes = trainer.layer_sizes() if isinstance(trainer, ReportsLayers) else None
        net = None if self.schedule.lockstep else scenario.network  # the 1-worker baseline sends nothing
        self.links = Links() if net is None else Links(net.dtype, net.model_dtype, net.block)
        self.planner = Planner(devices, seconds, network=net, num_params=self.theta.numel(),
                               jitter=stream(scenario.seed, STREAM_JITTER), lockstep=self.schedule.lockstep,
                               availability=timelines([d.availability for d in devices], scenario.seed, STREAM_CHURN),
                               local_servers=self.schedule.local_servers)
        self.dispatcher = Dispatcher(scenario, trainer.shard_sizes(), trainer.batch_size(),
                                     stream(scenario.seed, STREAM_SHARDS), seconds, lockstep=self.schedule.lockstep)
        self.recorder = Recorder(scenario.method.preset, scenario.seed,  # comm / churn columns when they happen
                                 comm_columns=self.planner.communicates or self.planner.churn,
                                 server_column=self.schedule.local_servers, transfer_columns=self.schedule.overlaps,
                                 diagnostic_columns=scenario.eval.diagnostics)
        self.diagnostics = Diagnostics(self.k) if scenario.eval.diagnostics else None
        # the schedules that carry it themselves see reset here: the engine stores nothing for them
        self.inner = InnerStates("reset" if self.schedule.carries_inner_state else scenario.method.inner_state)
        self.jobs = JobTable()
        self.state = RunState(next_checkpoint=checkpoints.every if checkpoints else 0)
        self.env = simpy.Environment()  # the clock; order comes from the job table

    def run(self) -> Outcome:
        """Evaluate the initial model, let the schedule start, and handle occurrences until the budget is spent."""
        if self.resumed_from is None:
            self.evaluate(force=True)
            self.begin()
            self.schedule.start(self)
        self.env.run(until=self.env.process(self._loop()))
        for job in self.jobs.by_worker():  # the run is over: work still in flight is discarded, never computed
            job.future.cancel()
            self._event("discard", job)
        self.jobs.clear()
        last, s = self.recorder.metric_rows[-1], self.state
        if last["t_local"] != s.t_local or last["server_updates"] != s.version:
            self.evaluate(force=True)
        return Outcome(self.recorder, self.theta, s.now.seconds, s.diverged, s.stalled, self.resumed_from)

    def begin(self) -> None:
        """The clock starts: simulated time needs nothing (a live run starts its real clock, sim/live/)."""

    def _loop(self) -> Iterator[simpy.Event]:
        """Handle what happens next, one occurrence at a time, until the run is over."""
        while True:
            if not self.schedule.busy:
                if not self.running():
                    return
                self._safe_point()
            at, handle = self._next()
            yield self.env.timeout(max(at.seconds - self.env.now, 0.0))
            handle()

    def running(self) -> bool:
        """Algorithm 2's loop condition t_local < t_max, unless the run diverged or stalled."""
        s = self.state
        return s.t_local < self.sc.schedule.t_max and s.diverged is None and s.stalled is None

    def _next(self) -> tuple[Time, Callable[[], None]]:
        """The earliest arrival or device event (ties by worker id), or the schedule's own action.

        The schedule acts at the time it names unless a device event is due by
        then or an arrival before then (it has seen the next arrival and may
        decline it: Algorithm 5 closes its window instead).
        """
        arrival = self.jobs.next_arrival()
        choice = self._choose(arrival, peek=arrival)
        if choice is None:
            raise RuntimeError(f"{type(self.schedule).__name__} waits, but nothing is left to happen")
        return choice

    def _choose(self, arrival: Job | None, peek: Any) -> tuple[Time, Callable[[], None]] | None:
        """Of the next ``arrival``, the next device event and the schedule's action, the one due first.

        ``peek`` is what the schedule is shown as the next arrival: the
        arrival itself here; in a live run, which cannot know it, a stand-in
        while jobs are still out (sim/live/engine.py). None: nothing is due.
        """
        churn = self.jobs.next_churn()
        if churn is not None and arrival is not None and arrival.order < (churn.at, churn.worker):
            churn = None  # the arrival comes first
        wake = self.schedule.wake_at(self, peek)
        if wake is not None and not (churn is not None and churn.at <= wake) \
                and not (arrival is not None and arrival.completes_at < wake):
            return wake, lambda: (self.advance(wake), self.schedule.on_wake(self))
        if churn is not None:
            return churn.at, self._device_event
        if arrival is None:
            return None
        return arrival.completes_at, lambda: self.schedule.on_arrival(self, arrival, self._collect(arrival))

    def _device_event(self) -> None:
        """A device went down with a job in flight (the job is lost), or is back up."""
        churn = self.jobs.pop_churn()
        if churn.kind == "rejoin":
            self.schedule.on_rejoin(self, churn.worker, churn.at)
            return
        job = self.jobs.in_flight[churn.worker]
        self._lose(job)
        self.schedule.on_loss(self, job)

    # -- what a schedule may do (sim.schedules.base.Run) -------------------------------------
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
        ``jitter``: the device's factor for it, drawn by :meth:`draw_jitter`.
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

    def record_transfer(self, kind: str, job: Finished, fragment: int, sent: Time, num_bytes: int) -> None:
        """A transfer the schedule moved landed now (upload: at the server; download: at the worker), or a merge."""
        self._event(kind, job, fragment=fragment, nbytes=num_bytes, sent=sent.seconds)

    def apply(self, job: Job, delta: torch.Tensor) -> None:
        assert self.outer is not None
        s = self.state
        staleness = s.version - job.dispatch_version
        work = Work(job.spec.steps, self.sc.schedule.H, self.dispatcher.fleet_steps(), self.k) \
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

    def _measure(self, deltas: list[torch.Tensor], before: torch.Tensor | None) -> list[dict[str, float]]:
        """The diagnostic columns of pseudo-gradients synced together (none when diagnostics are off)."""
        if self.diagnostics is None or before is None:
            return [{} for _ in deltas]
        moved = step_norm(before, self.theta)
        return [{"delta_norm": norm, "cosine": cos, "update_norm": moved}
                for norm, cos in self.diagnostics.measure(deltas)]

    def record_sync(self, job: Job, staleness: int, applied: bool, server: int) -> None:
        """A region's own server applied (or dropped) ``job``'s pseudo-gradient (HALoS's LPS)."""
        self._count(job.spec.steps)
        self._event("sync" if applied else "drop", job, staleness=staleness, server=server)

    def apply_global(self, delta: torch.Tensor, staleness: int, server: int) -> None:
        """The global server's outer step on a region server's accumulated change (HALoS's GPS)."""
        assert self.outer is not None
        self.outer.step(self.theta, PseudoGradient(delta=delta, staleness=staleness))
        self.state.version += 1
        self.server_event("global", server, staleness=staleness)

    def server_event(self, kind: str, server: int, staleness: int = -1) -> None:
        s = self.state
        self.recorder.event(kind, job=-1, worker=-1, shard=-1, steps=0, tau=s.now.seconds, server_version=s.version,
                            dispatch_version=-1, t_local=s.t_local, staleness=staleness, server=server)

    def transfer_time(self, region: str | None, model: bool) -> Time:
        """A region server's push to the global server (``model``: the global model back) across the region matrix."""
        return self.planner.region_transfer(region, model)

    def adopt(self, job: Job, delta: torch.Tensor) -> None:
        self.theta.sub_(delta)
        self._count(job.spec.steps * self.k)  # each step does k workers' worth of work
        self.state.version += 1
        self._event("sync", job, staleness=0)

    def evaluate(self, force: bool = False) -> None:
        s, sc = self.state, self.sc
        if not force and s.t_local < s.next_eval:
            return
        values = self.trainer.evaluate(self.theta)
        row = self.recorder.metrics(tau=s.now.seconds, server_updates=s.version, t_local=s.t_local, values=values)
        loss = row["loss"]
        if s.loss_limit == math.inf and math.isfinite(loss):
            s.loss_limit = sc.eval.divergence_factor * abs(loss)
        elif s.diverged is None and not loss <= s.loss_limit:
            s.diverged = (f"{sc.method.preset} diverged at server update {s.version}: eval loss {loss:.4g} exceeds "
                          f"{sc.eval.divergence_factor:g}x the initial loss (last sync from worker {s.last_worker})")
        s.next_eval = (s.t_local // sc.eval.every + 1) * sc.eval.every
        self.progress(s.t_local, sc.schedule.t_max, row)

    def rejoin(self, worker: int, at: Time) -> None:
        self.advance(at)
        self.recorder.rejoin(worker, tau=self.state.now.seconds, server_version=self.state.version, t_local=self.state.t_local)

    def rejoin_when_up(self, worker: int, after: Time) -> None:
        self.jobs.rejoin_at(worker, self.planner.up_at(worker, after))

    # -- arrivals and losses -----------------------------------------------------------------
    def _collect(self, job: Job) -> JobResult:
        """Await an arrived job's result, check it, and record its completion."""
        s = self.state
        result = self.links.upload(job.future.result()) if job.uploads else job.future.result()
        self.advance(job.completes_at)
        if job.uploads:
            s.uplink_free = job.completes_at
        s.losses_in_a_row = 0  # a round came back: churn is not losing all
        self.inner.arrived(job.worker, job.spec.shard, result.optimizer_state)
        self.dispatcher.observe(job.worker, job.spec.steps, job.completes_at.seconds - job.dispatched_at.seconds)
        loss = float(result.train_loss)
        if not (loss <= s.loss_limit and math.isfinite(float(result.delta.sum()))):  # NaN and inf survive a sum
            what = "pseudo-gradient is not finite" if loss <= s.loss_limit else f"train loss {loss:.4g} is out of bounds"
            s.diverged = f"{self.sc.method.preset} diverged at server update {s.version}: worker {job.worker}'s {what}"
        self._event("complete", job, train_loss=loss)
        self.jobs.remove(job)
        job.release()
        return result

    def _lose(self, job: Job) -> None:
        """The job's device went down: record the loss; its pseudo-gradient never arrives."""
        assert job.lost_at is not None
        s = self.state
        self.advance(job.lost_at)
        self._event("lost", job)
        self.jobs.remove(job)
        job.release()
        s.losses_in_a_row += 1
        if s.losses_in_a_row >= STALL_LOSSES_PER_WORKER * self.k:
            s.stalled = (f"{self.sc.method.preset} stalled at server update {s.version}: the last {s.losses_in_a_row} "
                         f"jobs were all lost to device churn (rounds last longer than the devices stay up)")

    # -- records -----------------------------------------------------------------------------
    def _count(self, steps: int) -> None:
        self.state.t_local += steps
        self.progress(self.state.t_local, self.sc.schedule.t_max, None)  # the bar moves with synced work

    def _event(self, kind: str, job: Job | Finished, **extra: Any) -> None:
        s = self.state
        if self.recorder.comm_columns:
            extra.update(train_start=job.train_start.seconds, upload_start=job.upload_start.seconds)
        if self.recorder.server_column:
            extra.setdefault("server", self.schedule.server_of(job.worker))
        self.recorder.event(kind, job=job.id, worker=job.worker, shard=job.spec.shard, steps=job.spec.steps,
                            tau=s.now.seconds, server_version=s.version, dispatch_version=job.dispatch_version,
                            t_local=s.t_local, **extra)
