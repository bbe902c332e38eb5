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

import math
from typing import Any, Callable, Iterator

import simpy

from sim.build import Parts
from sim.checkpointing import Resumable
from sim.jobs import Job, JobTable
from sim.runstate import Checkpoints, Outcome, RunState
from sim.server import ProgressFn, Server
from sim.simtime import Time
from trainers.base import JobResult

#: a run stops as stalled after this many jobs per worker in a row are lost to churn
STALL_LOSSES_PER_WORKER = 50


class Simulation(Server, Resumable):
    """One run, handed its parts (:func:`sim.build.assemble`). Call :meth:`run` once.

    The actions a schedule takes on the run are :class:`sim.server.Server`'s;
    this class is the event loop that decides which occurrence comes next,
    collects arrivals, loses jobs to churn and evaluates the model.
    """

    def __init__(self, parts: Parts, progress: ProgressFn | None = None, checkpoints: Checkpoints | None = None):
        self.settings, self.k = parts.settings, parts.settings.k
        self.trainer, self.outer, self.executor, self.schedule = parts.trainer, parts.outer, parts.executor, parts.schedule
        self.planner, self.links, self.dispatcher, self.inner = parts.planner, parts.links, parts.dispatcher, parts.inner
        self.recorder, self.diagnostics = parts.recorder, parts.diagnostics
        self.theta, self.batch_size, self.layer_sizes = parts.theta, parts.batch_size, parts.layer_sizes
        self.progress = progress or (lambda t_local, t_max, row: None)
        self.checkpoints, self.stop_requested, self.resumed_from = checkpoints, False, None
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
        return s.t_local < self.settings.t_max and s.diverged is None and s.stalled is None

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

    def evaluate(self, force: bool = False) -> None:
        """Evaluate the server model when t_local has crossed the next multiple of eval.every (or ``force``)."""
        s, settings = self.state, self.settings
        if not force and s.t_local < s.next_eval:
            return
        values = self.trainer.evaluate(self.theta)
        row = self.recorder.metrics(tau=s.now.seconds, server_updates=s.version, t_local=s.t_local, values=values)
        loss = row["loss"]
        if s.loss_limit == math.inf and math.isfinite(loss):
            s.loss_limit = settings.divergence_factor * abs(loss)
        elif s.diverged is None and not loss <= s.loss_limit:
            s.diverged = (f"{settings.name} diverged at server update {s.version}: eval loss {loss:.4g} exceeds "
                          f"{settings.divergence_factor:g}x the initial loss (last sync from worker {s.last_worker})")
        s.next_eval = (s.t_local // settings.eval_every + 1) * settings.eval_every
        self.progress(s.t_local, settings.t_max, row)

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
            s.diverged = f"{self.settings.name} diverged at server update {s.version}: worker {job.worker}'s {what}"
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
            s.stalled = (f"{self.settings.name} stalled at server update {s.version}: the last {s.losses_in_a_row} "
                         f"jobs were all lost to device churn (rounds last longer than the devices stay up)")
