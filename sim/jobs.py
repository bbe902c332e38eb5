"""Jobs in flight, and what happens to them next, in the order it happens.

A job is one worker's local round: its inputs (the model it started from,
its :class:`~trainers.base.JobSpec`, carried state) and its planned times.
:class:`JobTable` holds the jobs in flight and two queues: arrivals at the
server, ordered by (completion time, worker), and churn, the losses and
rejoins of devices (sim/churn.py), ordered by (time, worker). Ties in
simulated time break by worker id, never by chance or insertion order.
"""
from __future__ import annotations

import dataclasses
import heapq
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from sim.simtime import Time
from trainers.base import Executor, JobFuture, JobResult, JobSpec

if TYPE_CHECKING:  # annotations only
    import torch


class _Never:
    """The future of a job whose device goes down before it can report: nothing to compute."""

    def result(self) -> Any:
        raise AssertionError("a lost job has no result")

    def cancel(self) -> None:
        pass


NEVER = _Never()


@dataclass(eq=False)
class Job:
    """One local round in flight (without communication, it trains from dispatch to arrival).

    A job that does not upload (``uploads=False``) completes when its training
    ends; the schedule then sends what it wants over its own transfers.
    """

    id: int
    worker: int
    spec: JobSpec
    dispatch_version: int  # server updates applied when it started (staleness is measured from here)
    dispatched_at: Time
    completes_at: Time  # arrival at the server (re-planned while uploads queue on the server's link)
    train_start: Time
    upload_start: Time
    lost_at: Time | None  # the device goes down first: the pseudo-gradient never arrives
    snapshot: torch.Tensor | None  # the model it started from, shared by the jobs dispatched with it
    state: Any  # worker state carried into the round (the 1-worker baseline's optimizer)
    keep_theta: bool  # the outer update needs the model the job started from (delay compensation)
    uploads: bool = True  # False: it only trains; the schedule moves what it sends (Streaming DiLoCo, eager)
    future: JobFuture = NEVER  # set when the job starts (:meth:`JobTable.start`)

    @property
    def order(self) -> tuple[Time, int]:
        """Arrivals are taken in this order: by time, ties by worker id."""
        return (self.completes_at, self.worker)

    @property
    def theta_at_dispatch(self) -> torch.Tensor | None:
        return self.snapshot if self.keep_theta else None

    def release(self) -> None:
        """The result is in: keep the snapshot only if the outer update still needs it."""
        self.state = None
        if not self.keep_theta:
            self.snapshot = None

    def plain(self, snapshot_key: int) -> dict[str, Any]:
        """Checkpoint form: plain data, the snapshot named by ``snapshot_key`` (shared snapshots are stored once)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("snapshot", "future")}
        out.update(spec=dataclasses.asdict(self.spec), snapshot=snapshot_key)
        for key in _TIMES:
            out[key] = None if out[key] is None else out[key].plain()
        return out

    @classmethod
    def from_plain(cls, plain: dict[str, Any], snapshot: torch.Tensor) -> Job:
        """:meth:`plain`'s output back as a job (not yet started)."""
        fields = {**plain, "snapshot": snapshot, "spec": JobSpec.from_plain(plain["spec"])}
        for key in _TIMES:
            fields[key] = None if plain[key] is None else Time.from_plain(plain[key])
        return cls(**fields)


@dataclass(frozen=True)
class Finished:
    """What the records need of a completed job, kept by a schedule until the sync it feeds closes."""

    id: int
    worker: int
    spec: JobSpec
    dispatch_version: int
    train_start: Time
    upload_start: Time

    @classmethod
    def of(cls, job: Job) -> Finished:
        return cls(job.id, job.worker, job.spec, job.dispatch_version, job.train_start, job.upload_start)

    def plain(self) -> dict[str, Any]:
        return {"id": self.id, "worker": self.worker, "spec": dataclasses.asdict(self.spec),
                "dispatch_version": self.dispatch_version, "train_start": self.train_start.plain(),
                "upload_start": self.upload_start.plain()}

    @classmethod
    def from_plain(cls, plain: dict[str, Any]) -> Finished:
        return cls(plain["id"], plain["worker"], JobSpec.from_plain(plain["spec"]), plain["dispatch_version"],
                   Time.from_plain(plain["train_start"]), Time.from_plain(plain["upload_start"]))


_TIMES = ("dispatched_at", "completes_at", "train_start", "upload_start", "lost_at")


class Churn(NamedTuple):
    """A device event: its job is ``lost`` (the device went down), or it can ``rejoin`` (back up)."""

    at: Time
    worker: int
    kind: Literal["lost", "rejoin"]
    job: int  # the lost job's id; -1 for a rejoin


class DoneFuture:
    """A job whose result a checkpoint kept (a stacked executor's, ``saved()``): restored, not trained again."""

    __slots__ = ("_value",)

    def __init__(self, value: JobResult):
        self._value = value

    def result(self) -> JobResult:
        return self._value

    def cancel(self) -> None:
        pass

    def saved(self) -> JobResult:
        return self._value


class JobTable:
    """The jobs in flight (at most one per worker) and the queues of what happens to them next."""

    def __init__(self) -> None:
        self.in_flight: dict[int, Job] = {}
        self._arrivals: list[tuple[int, int, int]] = []  # (completion ticks, worker, job id): a heap
        self._churn: list[Churn] = []  # a heap by (time, worker)

    def start(self, job: Job, executor: Executor, saved: JobResult | None = None) -> None:
        """Every job starts here, dispatched or restored: submitted at once, its result awaited at its arrival.

        A job is a pure function of its inputs, so when it is computed never
        matters; a lost job is never computed at all. A restored job whose
        result the checkpoint kept (``saved``) is not computed again.
        """
        if job.lost_at is None:
            job.future = DoneFuture(saved) if saved is not None else executor.submit(
                job.snapshot, job.spec, job.state, priority=job.completes_at.seconds)
        self.in_flight[job.worker] = job
        if job.lost_at is None:
            heapq.heappush(self._arrivals, (job.completes_at.ticks, job.worker, job.id))
        else:
            heapq.heappush(self._churn, Churn(job.lost_at, job.worker, "lost", job.id))

    def by_worker(self) -> list[Job]:
        return [self.in_flight[w] for w in sorted(self.in_flight)]

    def next_arrival(self) -> Job | None:
        """The job that reaches the server first: smallest (completion time, worker)."""
        return self.in_flight[self._arrivals[0][1]] if self._arrivals else None

    def next_churn(self) -> Churn | None:
        return self._churn[0] if self._churn else None

    def pop_churn(self) -> Churn:
        return heapq.heappop(self._churn)

    def remove(self, job: Job) -> None:
        """The job arrived (the next arrival, necessarily) or was lost."""
        del self.in_flight[job.worker]
        if job.lost_at is None:
            top = heapq.heappop(self._arrivals)
            assert top[2] == job.id, "jobs arrive in (time, worker) order"

    def rejoin_at(self, worker: int, at: Time) -> None:
        heapq.heappush(self._churn, Churn(at, worker, "rejoin", -1))

    def forget_rejoins(self) -> None:
        """A synchronous schedule starts its next round with every device up then: older rejoins are moot."""
        self._churn = [c for c in self._churn if c.kind != "rejoin"]
        heapq.heapify(self._churn)

    def reschedule(self, arrivals: dict[int, Time]) -> None:
        """New arrival times by worker (uploads queued behind new ones on the server's link)."""
        for worker, at in arrivals.items():
            self.in_flight[worker].completes_at = at
        self._arrivals = [(j.completes_at.ticks, j.worker, j.id) for j in self.in_flight.values() if j.lost_at is None]
        heapq.heapify(self._arrivals)

    def clear(self) -> None:
        self.in_flight.clear()
        self._arrivals.clear()

    def state_dict(self) -> dict[str, Any]:
        """Jobs in flight with their inputs (each shared snapshot once), the results already computed that an
        executor asks to keep (``saved()``: a stacked executor's), and the pending rejoins."""
        snapshots: dict[int, Any] = {}
        jobs = []
        for job in self.by_worker():
            snapshots.setdefault(id(job.snapshot), job.snapshot)
            plain = job.plain(id(job.snapshot))
            saved = getattr(job.future, "saved", None)
            result = saved() if saved is not None else None
            jobs.append(plain if result is None else {**plain, "result": dataclasses.asdict(result)})
        rejoins = [[c.at.plain(), c.worker] for c in self._churn if c.kind == "rejoin"]  # losses come with their jobs
        return {"snapshots": snapshots, "jobs": jobs, "rejoins": rejoins}

    def load_rejoins(self, rejoins: list[list[Any]]) -> None:
        for at, worker in rejoins:
            self.rejoin_at(worker, Time.from_plain(at))
