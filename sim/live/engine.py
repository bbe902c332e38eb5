"""The engine on the real clock: arrivals in the order they really come in, the schedule's code unchanged.

:class:`LiveSimulation` is :class:`sim.engine.Simulation` with one thing
replaced, how the next occurrence is found. The simulation knows every
arrival time at dispatch; a real server does not. So here:

- an arrival is a job whose actor's result is in, placed on the simulated
  axis (:mod:`sim.live.clock`) by one of the next two rules;
- a padded result computed by its deadline arrives at its planned time:
  the actors' sleep overshoot is the emulator's, not the device's, so exact
  ties stay ties (applied in worker order, as the simulation does; DyLU
  ends rounds together on purpose) and near-ties keep their order;
- an overrun, or an un-padded result, arrives at its actor's send stamp;
  such results stamped within ``tie_window`` real seconds of the first of a
  batch are one arrival time, applied in worker order; the run counts how
  often a tie's stamps disagreed with worker order;
- timed occurrences (a device going down or back up, the grace window's
  close, HALoS's transfers between servers) are acted on once the real
  clock has passed them by ``tie_window`` with no earlier arrival in;
- the schedule is asked for its next action with a stand-in for "an arrival
  may still come" (:data:`UNKNOWN`) instead of the next planned arrival,
  which is exactly Algorithm 5's ``grace_wait: window`` reading: the window
  closes at tau_sync + tau_grace unless an arrival comes first;
- a worker actor that dies mid-job loses its job as churn does: the server
  goes on with the others and the worker rejoins once Ray restarts it.

Without padding (``pad=False``, time scale 1) a result leaves as soon as it
is computed: the run takes the hardware's own time, to be set beside a
simulation of a fleet calibrated on it (:mod:`sim.live.calibrate`).

A job's planned duration still comes from the planner at dispatch; the
real one is what the actor took. Uploads queued behind each other on the
server's link are re-planned when later jobs are dispatched; a launched
job keeps the deadline it was given (the real link is not emulated).
"""
from __future__ import annotations

import bisect
import time
from dataclasses import dataclass
from typing import Any, Callable

from sim.build import Parts
from sim.engine import Simulation
from sim.jobs import Job, JobTable
from sim.live.clock import RealClock
from sim.live.fleet import LiveFleet, LiveFuture
from sim.simtime import Time, later
from trainers.base import JobResult

#: how long (real s) past its deadline the server waits for a padded result that may come before (or tie with) the
#: occurrence it is about to apply (on a loaded machine Ray reports results tens of ms after they leave)
SETTLE = 0.05

#: the schedules a live server can run: their transfers are inside the jobs or timed by the server itself
LIVE_SCHEDULES = ("async", "sync", "single", "halos")


@dataclass(frozen=True)
class _Unknown:
    """Stands in for the next arrival while jobs are still out: it may come at any time, none is known yet."""

    completes_at: Time = Time(2**62, float("inf"))
    worker: int = 2**31


UNKNOWN: Any = _Unknown()


class LiveJobs(JobTable):
    """Jobs in flight; arrivals are the jobs whose results are in, by (arrival time, worker)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: list[Job] = []

    def start(self, job: Job, executor: Any) -> None:
        """Submitted now, launched once its arrival is planned (:meth:`LiveSimulation._launch`); no arrival queue."""
        if job.lost_at is not None:
            super().start(job, executor)  # a planned loss: the churn queue, never computed
            return
        job.future = executor.submit(job.snapshot, job.spec, job.state, priority=job.completes_at.seconds)
        self.in_flight[job.worker] = job

    def land(self, job: Job) -> None:
        bisect.insort(self.arrived, job, key=lambda j: j.order)

    def next_arrival(self) -> Job | None:
        return self.arrived[0] if self.arrived else None

    def out(self) -> list[Job]:
        """Jobs still training or sending: neither in nor lost."""
        return [j for j in self.by_worker() if j.lost_at is None and j not in self.arrived]

    def remove(self, job: Job) -> None:
        del self.in_flight[job.worker]
        if job in self.arrived:
            self.arrived.remove(job)

    def reschedule(self, arrivals: dict[int, Time]) -> None:
        for worker, at in arrivals.items():
            job = self.in_flight[worker]
            if not job.future.launched:  # a launched job's deadline is fixed
                job.completes_at = at

    def clear(self) -> None:
        super().clear()
        self.arrived.clear()


class LiveSimulation(Simulation):
    """One live run of one scenario (:mod:`sim.live`). Call :meth:`run` once."""

    def __init__(self, parts: Parts, fleet: LiveFleet, clock: RealClock, tie_window: float = 0.002,
                 progress: Any = None, notify: Callable[[str], None] | None = None, pad: bool = True):
        super().__init__(parts, progress=progress)
        self.fleet, self.clock, self.tie_window, self.pad = fleet, clock, tie_window, pad
        self.notify = notify or (lambda _line: None)
        self.jobs = LiveJobs()
        self.faulted: list[Job] = []
        self.log: list[dict[str, Any]] = []  # one row per job that came back or failed
        self.ties = {"batches": 0, "reordered": 0}
        self.settle = SETTLE
        self.overruns = 0

    def begin(self) -> None:
        self.notify(f"{self.k} worker actors ready; the live clock starts")
        self.clock.begin()

    def _launch(self) -> None:
        for job in self.jobs.by_worker():
            future = job.future
            if isinstance(future, LiveFuture) and not future.launched:
                future.planned_arrival = job.completes_at.seconds
                deadline = self.clock.real_at(job.completes_at.seconds) if self.pad else 0.0  # 0: as soon as computed
                self.fleet.launch(job.worker, future, deadline)
                future.timing["dispatched"] = self.clock.real_at(job.dispatched_at.seconds)

    def _next(self) -> tuple[Time, Callable[[], None]]:
        while True:
            self._launch()
            if self.faulted:
                job = self.faulted.pop(0)
                return self.state.now, lambda: self._fault(job)
            decision = self._decide()
            due = None if decision is None else self.clock.real_at(decision[0].seconds) + self.tie_window
            if due is not None and time.time() >= due:
                ready = self.fleet.wait(0)  # results already in may belong to its tie, or come before it
                if ready:
                    self._land(ready)
                    continue
                owed = self._owed(due)
                if owed is None:
                    return decision
                self._await(owed)  # a result due by then is still on its way to the server
                continue
            if decision is None and not self.jobs.out():
                raise RuntimeError(f"{type(self.schedule).__name__} waits, but nothing is left to happen")
            self._await(due)

    def _owed(self, until: float) -> float | None:
        """Until when to wait for padded results due by the real instant ``until`` that have not reached the server.

        Such a result left at its deadline (or later, an overrun), so it may
        belong to the tie being applied, or come before the timed occurrence.
        It is waited for up to :data:`SETTLE` past its deadline (later, it is
        an overrun or its actor died). None: nothing to wait for.
        """
        if not self.pad:
            return None
        now = time.time()
        ends = [j.future.timing["deadline"] + self.settle for j in self.jobs.out()
                if j.future.launched and j.future.timing["deadline"] <= until and now < j.future.timing["deadline"] + self.settle]
        return min(ends, default=None)

    def _decide(self) -> tuple[Time, Callable[[], None]] | None:
        """The simulation's choice over what is known now; None: wait for an arrival."""
        arrival = self.jobs.next_arrival()
        return self._choose(arrival, peek=arrival if arrival is not None else (UNKNOWN if self.jobs.out() else None))

    def _await(self, until: float | None) -> None:
        """Wait for results until the real instant ``until`` (None: until one comes), then land a batch."""
        timeout = None if until is None else max(0.0, until - time.time())
        ready = self.fleet.wait(timeout)
        if ready:
            self._land(ready)

    def _land(self, ready: list[LiveFuture]) -> None:
        """Land a batch of results: on time, at their planned arrival; otherwise at their send stamps."""
        on_time, stamped = self._split(ready)
        self._land_on_time(on_time)
        self._land_stamped(stamped)

    def _split(self, ready: list[LiveFuture]) -> tuple[list[LiveFuture], list[LiveFuture]]:
        """``ready`` as (on time, stamped), in one pass: see :meth:`_on_time`."""
        parts: tuple[list[LiveFuture], list[LiveFuture]] = ([], [])
        for future in ready:
            parts[0 if self._on_time(future) else 1].append(future)
        return parts

    def _on_time(self, future: LiveFuture) -> bool:
        """A padded result computed by its deadline: it arrives when the simulation plans it to.

        Its actor then sleeps to the deadline and sends. How long past it the
        stamp lands (sleep overshoot, milliseconds on a loaded VM) is the
        emulator's error, not the emulated device's, so the stamp does not
        move the arrival: ties stay exact ties, two results the simulation puts
        a millisecond apart stay in order, and no drift builds up along a
        worker's chain. An overrun is not on time: it arrives when it comes.
        """
        t = future.timing
        return self.pad and future.error is None and t.get("computed", float("inf")) <= t["deadline"]

    def _land_on_time(self, ready: list[LiveFuture]) -> None:
        if not ready:
            return
        jobs = {id(j.future): j for j in self.jobs.by_worker()}
        for future in ready:
            job = jobs[id(future)]
            future.tie_at = future.timing["deadline"]
            self._count_tie([j for j in self.jobs.arrived if self._on_time(j.future) and j.future.tie_at == future.tie_at],
                            [job])
            job.completes_at = later(self.state.now, job.completes_at)  # as planned, unless the server went past it
            self.jobs.land(job)

    def _land_stamped(self, ready: list[LiveFuture]) -> None:
        """Overruns and un-padded results: those sent within the tie window of the first are one arrival time.

        A result that reaches the server after its tie's first one (it was sent
        later in the window, or was still on its way) joins that tie while its
        arrivals wait to be applied.
        """
        if not ready:
            return
        first = min(f.timing["sent"] for f in ready)
        pause = first + self.tie_window - time.time()
        if pause > 0:  # results sent within the tie window of the first may still be on their way
            time.sleep(pause)
        came_on_time, came_stamped = self._split(self.fleet.wait(0))
        self._land_on_time(came_on_time)
        ready = ready + came_stamped
        stamped = [j for j in self.jobs.arrived if not self._on_time(j.future)]
        waiting = [j.future.tie_at for j in stamped if 0 <= first - j.future.tie_at <= self.tie_window]
        first = min(waiting, default=first)  # this batch joins a tie that has landed but is not applied yet
        jobs = {id(j.future): j for j in self.jobs.by_worker()}
        batch = sorted(((f.timing["sent"], jobs[id(f)]) for f in ready), key=lambda p: (p[0], p[1].worker))
        tied = [job for sent, job in batch if sent - first <= self.tie_window and job.future.error is None]
        self._count_tie([j for j in stamped if j.future.tie_at == first], tied)
        for sent, job in batch:
            if job.future.error is not None:
                self.faulted.append(job)
                continue
            at = first if job in tied else sent
            job.future.tie_at = at
            job.completes_at = later(self.state.now, Time.of(self.clock.sim_of(at)))
            self.jobs.land(job)

    def _count_tie(self, joined: list[Job], new: list[Job]) -> None:
        """Count a tie that formed (or grew), and whether its send stamps ordered it against worker order."""
        def stamps_disagree(group: list[Job]) -> bool:
            by_stamp = sorted(group, key=lambda j: j.future.timing["sent"])
            return [j.worker for j in by_stamp] != sorted(j.worker for j in group)

        group = joined + new
        if len(group) < 2:
            return
        if len(joined) < 2:  # a new tie (one that grew is counted once)
            self.ties["batches"] += 1
        self.ties["reordered"] += stamps_disagree(group) and not (len(joined) > 1 and stamps_disagree(joined))

    def _collect(self, job: Job) -> JobResult:
        timing = job.future.timing
        if self.pad and timing["computed"] > timing["deadline"]:
            self.overruns += 1
            if self.overruns == 1:
                self.notify(f"worker {job.worker}'s job {job.id} computed {timing['computed'] - timing['deadline']:.3f} s "
                            "past its emulated time: the hardware is slower than the device at this time scale "
                            "(counted per job in live.csv; raise --time-scale)")
        self._log(job, handled=time.time())
        return super()._collect(job)

    def _fault(self, job: Job) -> None:
        """The worker's actor died mid-job: its round is lost, as when its device goes down."""
        job.lost_at = later(self.state.now, Time.of(self.clock.sim_now()))
        self.notify(f"worker {job.worker}'s actor died during job {job.id} ({job.future.error}); the round is lost "
                    "and the worker rejoins when Ray has restarted it")
        self._log(job, handled=time.time(), fault=job.future.error)
        self._lose(job)
        self.schedule.on_loss(self, job)

    def _log(self, job: Job, handled: float, fault: str | None = None) -> None:
        t = job.future.timing
        real = {k: v - self.clock.started for k, v in t.items() if k != "deadline"}  # real s since the start
        self.log.append({
            "job": job.id, "worker": job.worker, "steps": job.spec.steps,
            "dispatched": job.dispatched_at.seconds, "planned_arrival": job.future.planned_arrival,
            "arrival": job.completes_at.seconds if fault is None else float("nan"),
            **{f"real_{k}": v for k, v in real.items()},
            "real_handled": handled - self.clock.started,
            "launch_lag_s": t["launched"] - t["dispatched"],
            "compute_s": t.get("computed", float("nan")) - t.get("started", float("nan")),
            "overrun_s": max(0.0, t.get("computed", 0.0) - t.get("deadline", float("inf"))) if self.pad else 0.0,
            "fault": fault or "",
        })
