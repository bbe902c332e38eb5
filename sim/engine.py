"""The discrete-event core: Algorithm 2 (async), Algorithm 1 (sync) and the 1-worker baseline.

Workers are SimPy processes that spend simulated time training; the server is
a SimPy process holding a capacity-1 resource while it applies an update.
What a job *computes* comes from the trainer; *when* it finishes comes from
the device profile. Because a job's completion time is fixed when it is
dispatched, the server can look ahead to the next completion, which is how
Algorithm 5's ``get_worker`` is decided without peeking at real results.

Ties in simulated time are broken by worker id: the server always takes the
in-flight job with the smallest ``(completion time, worker)``.

With a ``network`` section a job's completion is its arrival at the server:
download, training, upload and its turn on the server's link, re-planned
over the jobs in flight at every dispatch (sim/network.py). With device
churn a job may instead be lost; losses and rejoins wait on their own heap,
``churn_queue``, and are handled in time order with the arrivals
(sim/churn.py).

Recorded times come from the plan (``self.now``: a completion time fixed at
dispatch, or a window's end), not from SimPy's float clock, which only
orders the processes. That makes a resumed run's times identical to an
uninterrupted one's: ``completes_at - now`` computed at a different ``now``
could differ in the last bit. The server loops keep their state in
attributes and pass through *safe points* (after a sync, or between rounds)
where :meth:`state_dict` captures everything needed to continue.
"""
from __future__ import annotations

import dataclasses
import heapq
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import simpy
import torch

from sim.build import STREAM_CHURN, STREAM_JITTER, STREAM_SHARDS, stream
from sim.churn import timelines
from sim.errors import RunInterrupted
from sim.network import DTYPE_BYTES, fifo_arrivals, transfer_seconds, worker_link
from sim.outer.base import OuterUpdate, PseudoGradient
from sim.records import Recorder
from sim.profiles import round_time
from sim.sampling import LRSchedule, ShardSampler, dylu_steps
from sim.scenario import Scenario
from trainers.base import JobFuture, JobSpec, Trainer, UserError

#: weight of the newest round in online DyLU's speed estimate
ONLINE_DYLU_EMA = 0.5
#: a run stops as stalled after this many jobs per worker in a row are lost to churn
STALL_LOSSES_PER_WORKER = 50


class _Never:
    """The future of a job whose device goes down before it can report: nothing to compute."""

    def result(self) -> Any:
        raise AssertionError("a lost job has no result")


_NEVER = _Never()


@dataclass
class Job:
    """One local round in flight."""

    id: int
    worker: int
    spec: JobSpec
    dispatch_version: int
    dispatched_at: float
    completes_at: float
    future: JobFuture
    done: simpy.Event
    theta_at_dispatch: torch.Tensor | None  # only when the outer update needs it
    inputs: tuple[torch.Tensor, JobSpec, Any]  # (snapshot, spec, carried state): to resubmit after a resume
    # communication and churn (without them: train_start = dispatched_at, upload_start = completes_at)
    train_start: float  # model downloaded, training begins
    upload_start: float  # training done, upload begins
    lost_at: float | None  # the device goes down first: the pseudo-gradient never arrives

    @property
    def order(self) -> tuple[float, int]:
        return (self.completes_at, self.worker)


ProgressFn = Callable[[int, int, dict[str, Any] | None], None]


class Simulation:
    """One run of one scenario. Call :meth:`run` once."""

    def __init__(
        self,
        scenario: Scenario,
        trainer: Trainer,
        outer: OuterUpdate | None,
        executor: Any,
        progress: ProgressFn | None = None,
    ):
        self.sc = scenario
        self.trainer = trainer
        self.outer = outer
        self.executor = executor
        self.progress = progress or (lambda t_local, t_max, row: None)
        self.k = scenario.workers.k
        self.devices = [scenario.workers.device(w) for w in range(self.k)]
        flops = getattr(trainer, "flops_per_step", None)
        try:
            self.step_times = [d.step_time(flops() if callable(flops) else None) for d in self.devices]
        except ValueError as exc:
            raise UserError(f"workers: {exc}") from None
        self.max_speed = max(1.0 / t for t in self.step_times)
        self.speed_estimates: dict[int, float] = {}  # online DyLU: EMA of observed steps/s
        self.env = simpy.Environment()
        self.server = simpy.Resource(self.env, capacity=1)
        self.inboxes = [simpy.Store(self.env) for _ in range(self.k)]
        self.sampler = ShardSampler(trainer.shard_sizes(), stream(scenario.seed, STREAM_SHARDS))
        self.jitter_rng = stream(scenario.seed, STREAM_JITTER)
        single = scenario.method.schedule == "single"
        num_shards = len(self.sampler.shard_sizes)
        # Eq. 3's T: each shard's share of the budget (the baseline has one global schedule).
        self.lr_schedule = LRSchedule(
            lr_max=scenario.lr.max,
            lr_min=scenario.lr.min,
            warmup=scenario.lr.warmup,
            total=max(scenario.schedule.t_max // (self.k if single else num_shards), 1),
        )
        self.lr_counters = [0] * (1 if single else num_shards)
        self.theta = trainer.init_params()
        # per-worker links; None when nothing is sent or sending costs nothing (the 1-worker
        # baseline keeps its model), so such runs have the same bytes as runs without a network
        net = scenario.network
        self.links = None
        if net is not None and not single:
            self.upload_bytes = self.theta.numel() * DTYPE_BYTES[net.dtype]
            self.download_bytes = self.theta.numel() * DTYPE_BYTES[net.model_dtype]
            self.ingress_seconds = transfer_seconds(self.upload_bytes, net.server_bandwidth_gbps, 0.0)
            links = [worker_link(net, d.latency_ms or 0.0, d.bandwidth_gbps or math.inf, d.region) for d in self.devices]
            if self.ingress_seconds > 0 or any(link.transfer(self.download_bytes) + link.transfer(self.upload_bytes) > 0
                                               for link in links):
                self.links = links
        self.uplink_free = 0.0  # when the server's link finished receiving the last collected upload
        self.availability = timelines([d.availability for d in self.devices], scenario.seed, STREAM_CHURN)
        self.churn = any(self.availability)
        self.timed_comm = self.links is not None or self.churn  # comm / churn columns in the log
        self.recorder = Recorder(scenario.method.preset, scenario.seed, comm_columns=self.timed_comm)
        self.churn_queue: list[tuple[float, int, str, int]] = []  # (time, worker, "lost" | "rejoin", job): a heap
        self.version = 0  # server updates applied
        self.t_local = 0
        self.next_job_id = 0
        self.in_flight: dict[int, Job] = {}
        self.queue: list[tuple[float, int, int]] = []  # (completes_at, worker, job id): a heap
        self.next_eval = 0
        self.diverged: str | None = None
        self.stalled: str | None = None  # churn loses every job: the budget can never be reached
        self.losses_in_a_row = 0
        self.loss_limit = math.inf  # divergence_factor x the initial eval loss
        self.last_worker = -1  # the worker whose pseudo-gradient was synced last
        self.now = 0.0  # planned simulated time of the current decision
        self.tau_sync = math.inf  # start of the current grace window (Algorithm 2)
        self.completed: list[int] = []  # workers synced in the current window
        self.carried_state: Any = None  # the 1-worker baseline's inner optimizer state
        self.started = False  # initial dispatch done (False until run(), or restored)
        # checkpointing: called at safe points when due; stop_requested ends the run there
        self.on_checkpoint: Callable[["Simulation"], None] | None = None
        self.checkpoint_every = 0  # server updates between checkpoints (0: only on stop)
        self.next_checkpoint = 0
        self.stop_requested = False

    # -- bookkeeping ---------------------------------------------------------
    def _event(self, kind: str, job: Job, **extra: Any) -> None:
        if self.timed_comm:
            extra.update(train_start=job.train_start, upload_start=job.upload_start)
        self.recorder.event(
            kind,
            job=job.id,
            worker=job.worker,
            shard=job.spec.shard,
            steps=job.spec.steps,
            tau=self.now,
            server_version=self.version,
            dispatch_version=job.dispatch_version,
            t_local=self.t_local,
            **extra,
        )

    def _maybe_eval(self, force: bool = False) -> None:
        if not force and self.t_local < self.next_eval:
            return
        row = self.recorder.metrics(
            tau=self.now,
            server_updates=self.version,
            t_local=self.t_local,
            values=self.trainer.evaluate(self.theta),
        )
        loss = row["loss"]
        if self.loss_limit == math.inf and math.isfinite(loss):
            self.loss_limit = self.sc.eval.divergence_factor * abs(loss)
        elif self.diverged is None and not loss <= self.loss_limit:
            self.diverged = (
                f"{self.sc.method.preset} diverged at server update {self.version}: eval loss {loss:.4g} exceeds "
                f"{self.sc.eval.divergence_factor:g}x the initial loss (last sync from worker {self.last_worker})"
            )
        every = self.sc.eval.every
        self.next_eval = (self.t_local // every + 1) * every
        self.progress(self.t_local, self.sc.schedule.t_max, row)

    def _job_steps(self, worker: int) -> int:
        H = self.sc.schedule.H
        if not self.sc.method.dylu:
            return H
        if self.sc.method.dylu_speeds == "online":  # the paper's footnote 3: speeds learnt from rounds
            est = self.speed_estimates
            return dylu_steps(est[worker], max(est.values()), H) if worker in est else H
        return dylu_steps(1.0 / self.step_times[worker], self.max_speed, H)

    # -- dispatch (Algorithm 4) -------------------------------------------------
    def _dispatch(self, workers: list[int], state: Any = None) -> None:
        """Start a round on each worker, in worker order, all from the current theta.

        A worker that is down now gets no job: it rejoins when it is back up
        (an entry on the churn queue).
        """
        snapshot = self.theta.clone()  # one immutable copy shared by this batch
        single = self.sc.method.schedule == "single"
        multiplier = self.k if single else 1
        for w in sorted(workers):
            back = self._all_up_at(self.now) if single else self._up_at(w, self.now)
            if back > self.now:
                heapq.heappush(self.churn_queue, (back, w, "rejoin", -1))
                continue
            shard = self.sampler.sample()
            steps = self._job_steps(w)
            counter = 0 if single else shard
            lrs = self.lr_schedule.plan(self.lr_counters[counter], steps)
            self.lr_counters[counter] += steps
            offset = self.sampler.dispatched[shard]
            self.sampler.record(shard, steps * self.trainer.batch_size() * multiplier)
            spec = JobSpec(
                worker=w,
                shard=shard,
                lrs=lrs,
                data_offset=offset,
                batch_multiplier=multiplier,
                threads=self.sc.compute.threads,
                keep_optimizer_state=single,
            )
            if single:  # synchronous data parallel: every step waits for the slowest device
                duration = max(
                    round_time(steps, t, d.jitter, self.jitter_rng) for d, t in zip(self.devices, self.step_times)
                )
            else:
                duration = round_time(steps, self.step_times[w], self.devices[w].jitter, self.jitter_rng)
            needs_theta = self.outer is not None and self.outer.needs_dispatch_theta
            train_start, upload_start, reaches, completes_at = self._round_times(w, duration)
            lost_at = self._fails_before(w, reaches, single) if self.churn else None
            job = Job(
                id=self.next_job_id,
                worker=w,
                spec=spec,
                dispatch_version=self.version,
                dispatched_at=self.now,
                completes_at=completes_at if lost_at is None else lost_at,
                future=self.executor.submit(snapshot, spec, state, priority=completes_at) if lost_at is None else _NEVER,
                done=self.env.event(),
                theta_at_dispatch=snapshot if needs_theta else None,
                inputs=(snapshot, spec, state),
                train_start=train_start,
                upload_start=upload_start,
                lost_at=lost_at,
            )
            self.next_job_id += 1
            self._start(job)
            self._event("dispatch", job)
        self._plan_uploads()

    def _round_times(self, w: int, duration: float) -> tuple[float, float, float, float]:
        """(training starts, upload starts, upload reaches the server's link, provisional arrival)."""
        if self.links is None:
            end = self.now + duration
            return self.now, end, end, end
        train_start = self.now + self.links[w].transfer(self.download_bytes)
        upload_start = train_start + duration
        reaches = self._reaches_server(w, upload_start)
        return train_start, upload_start, reaches, reaches + self.ingress_seconds

    def _reaches_server(self, w: int, upload_start: float) -> float:
        """When an upload started at ``upload_start`` has crossed the worker's own link."""
        return upload_start + self.links[w].transfer(self.upload_bytes)  # type: ignore[index]

    def _plan_uploads(self) -> None:
        """Re-plan arrivals through the server's FIFO link after a dispatch (see sim/network.py)."""
        if self.links is None:
            return
        jobs = sorted((j for j in self.in_flight.values() if j.lost_at is None), key=lambda j: j.worker)
        reached = [(self._reaches_server(j.worker, j.upload_start), j.worker) for j in jobs]
        arrivals = fifo_arrivals(reached, self.ingress_seconds, self.uplink_free)
        for job, arrival in zip(jobs, arrivals):
            job.completes_at = arrival
        self.queue = [(j.completes_at, j.worker, j.id) for j in jobs]
        heapq.heapify(self.queue)

    # -- churn -------------------------------------------------------------------
    def _up_at(self, w: int, t: float) -> float:
        timeline = self.availability[w]
        return t if timeline is None else timeline.up_at(t)

    def _all_up_at(self, t: float) -> float:
        """First time >= t at which every device is up (the 1-worker baseline uses them all)."""
        while True:
            back = max(self._up_at(w, t) for w in range(self.k))
            if back == t:
                return t
            t = back

    def _fails_before(self, w: int, t1: float, single: bool) -> float | None:
        """When the job's device (any device, for the baseline) goes down before ``t1``; None if none does."""
        failures = [
            fail for v in (range(self.k) if single else (w,))
            if (tl := self.availability[v]) is not None and (fail := tl.fails_before(self.now, t1)) is not None
        ]
        return min(failures) if failures else None

    def _lose(self, job: Job) -> None:
        """The job's device went down: record the loss; its pseudo-gradient never arrives."""
        self.now = job.lost_at  # type: ignore[assignment]
        self._event("lost", job)
        del self.in_flight[job.worker]
        job.inputs = None  # type: ignore[assignment]
        self.losses_in_a_row += 1
        if self.losses_in_a_row >= STALL_LOSSES_PER_WORKER * self.k:
            self.stalled = (
                f"{self.sc.method.preset} stalled at server update {self.version}: the last {self.losses_in_a_row} jobs "
                f"were all lost to device churn (rounds last longer than the devices stay up)"
            )

    def _start(self, job: Job) -> None:
        self.in_flight[job.worker] = job
        if job.lost_at is None:
            heapq.heappush(self.queue, (job.completes_at, job.worker, job.id))
        else:
            heapq.heappush(self.churn_queue, (job.lost_at, job.worker, "lost", job.id))
        self.inboxes[job.worker].put(job)

    def _worker(self, w: int) -> Iterator[simpy.Event]:
        """A device: take a job, spend its simulated duration, report completion."""
        while True:
            job: Job = yield self.inboxes[w].get()
            yield self.env.timeout(max(job.completes_at - self.env.now, 0.0))
            job.done.succeed()

    def _earliest(self) -> Job | None:
        """The in-flight job with the smallest (completion time, worker id)."""
        return self.in_flight[self.queue[0][1]] if self.queue else None

    def _collect(self, job: Job) -> Any:
        """Await a completed job's result and record its completion."""
        result = job.future.result()
        self.now = self.uplink_free = job.completes_at
        self.losses_in_a_row = 0  # a pseudo-gradient arrived: churn is not losing every job
        observed = job.spec.steps / (job.completes_at - job.dispatched_at)
        old = self.speed_estimates.get(job.worker)
        self.speed_estimates[job.worker] = observed if old is None else ONLINE_DYLU_EMA * observed + (1 - ONLINE_DYLU_EMA) * old
        loss = float(result.train_loss)
        # one reduction instead of an elementwise check: NaN and inf survive a sum
        if not (loss <= self.loss_limit and math.isfinite(float(result.delta.sum()))):
            what = "pseudo-gradient is not finite" if loss <= self.loss_limit else f"train loss {loss:.4g} is out of bounds"
            self.diverged = (
                f"{self.sc.method.preset} diverged at server update {self.version}: worker {job.worker}'s {what}"
            )
        self._event("complete", job, train_loss=loss)
        del self.in_flight[job.worker]
        job.inputs = None  # type: ignore[assignment]  # release the snapshot
        top = heapq.heappop(self.queue)
        assert top[2] == job.id, "jobs complete in (time, worker) order"
        return result

    def _apply(self, job: Job, delta: torch.Tensor) -> Iterator[simpy.Event]:
        """Sync one pseudo-gradient through the outer update (Algorithm 2, line 13)."""
        assert self.outer is not None
        with self.server.request() as req:
            yield req
            staleness = self.version - job.dispatch_version
            applied = self.outer.step(
                self.theta, PseudoGradient(delta=delta, staleness=staleness, theta_at_dispatch=job.theta_at_dispatch)
            )
            self.t_local += job.spec.steps
            self.progress(self.t_local, self.sc.schedule.t_max, None)  # the bar moves with synced work
            if applied:
                self.version += 1
                self.last_worker = job.worker
            self._event("sync" if applied else "drop", job, staleness=staleness)

    # -- the three schedules -------------------------------------------------
    def _running(self) -> bool:
        return self.t_local < self.sc.schedule.t_max and self.diverged is None and self.stalled is None

    def _async_server(self) -> Iterator[simpy.Event]:
        """Algorithm 2 with the grace period of Algorithm 5."""
        grace = self.sc.schedule.grace_period
        if not self.started:
            self.started = True
            self._dispatch(list(range(self.k)))
        while self._running():
            job = self._earliest()
            window_open = self.tau_sync != math.inf
            closing = window_open and (job is None or job.completes_at - self.tau_sync > grace)
            if self.churn_queue and (job is None or self.churn_queue[0][:2] < job.order):
                # a loss or a rejoin comes first, unless the window closes before it
                close_at = self.tau_sync + grace if self.sc.schedule.grace_wait == "window" and job is not None else self.now
                if not closing or self.churn_queue[0][0] <= close_at:
                    self._churn_event()
                    self._safe_point()
                    continue
            if job is not None and not closing:
                yield job.done
                result = self._collect(job)
                self.tau_sync = min(self.tau_sync, self.now)
                if self.diverged:
                    break
                yield from self._apply(job, result.delta)
                self.completed.append(job.worker)
                self._maybe_eval()
                self._safe_point()
                continue
            # Strict reading: a real server cannot see the future, so it waits for
            # the window to close unless no job is left that could still arrive.
            if self.sc.schedule.grace_wait == "window" and job is not None and self.tau_sync + grace > self.now:
                self.now = self.tau_sync + grace
                yield self.env.timeout(max(self.now - self.env.now, 0.0))
            self.tau_sync = math.inf
            self._dispatch(self.completed)
            self.completed = []

    def _churn_event(self) -> None:
        """The async server meets a loss (the worker rejoins when back up) or a rejoin (dispatch it now)."""
        t, w, kind, _ = heapq.heappop(self.churn_queue)
        if kind == "lost":
            job = self.in_flight[w]
            self._lose(job)
            heapq.heappush(self.churn_queue, (self._up_at(w, t), w, "rejoin", -1))
        else:
            self.now = t
            self.recorder.event("rejoin", job=-1, worker=w, shard=-1, steps=0, tau=t, server_version=self.version,
                                dispatch_version=-1, t_local=self.t_local)
            self._dispatch([w])

    def _sync_server(self) -> Iterator[simpy.Event]:
        """Algorithm 1: every worker starts from the same theta; one outer step on the mean."""
        assert self.outer is not None
        while self._running():
            self._safe_point()
            self._dispatch(list(range(self.k)))
            if not self.in_flight:  # every device is down: wait for the first to come back
                yield from self._wait_for_rejoin()
                continue
            jobs = sorted(self.in_flight.values(), key=lambda j: j.order)  # a lost job's completes_at is its loss
            deltas: dict[int, torch.Tensor] = {}
            for job in jobs:
                yield job.done
                if job.lost_at is not None:
                    self._lose(job)
                else:
                    deltas[job.worker] = self._collect(job).delta
            self.churn_queue.clear()  # the next round dispatches every worker that is up then
            if self.diverged:
                break
            if not deltas:  # every job of the round was lost
                continue
            jobs = [j for j in jobs if j.lost_at is None]
            mean = torch.stack([deltas[w] for w in sorted(deltas)]).sum(dim=0) / len(deltas)
            with self.server.request() as req:
                yield req
                self.outer.step(self.theta, PseudoGradient(delta=mean))
                for job in sorted(jobs, key=lambda j: j.worker):
                    self.t_local += job.spec.steps
                    self.progress(self.t_local, self.sc.schedule.t_max, None)  # the bar moves with synced work
                    self._event("sync", job, staleness=0)
                self.version += 1
            self._maybe_eval()

    def _single_server(self) -> Iterator[simpy.Event]:
        """The 1-worker k x batch baseline: continuous AdamW, theta <- worker's theta."""
        while self._running():
            self._safe_point()
            self._dispatch([0], self.carried_state)
            if not self.in_flight:  # a device is down: wait until all are up
                yield from self._wait_for_rejoin()
                continue
            job = self.in_flight[0]
            yield job.done
            if job.lost_at is not None:  # a device failed mid-round: the round is lost, the state kept
                self._lose(job)
                self.churn_queue.clear()
                continue
            result = self._collect(job)
            if self.diverged:
                break
            self.carried_state = result.optimizer_state
            with self.server.request() as req:
                yield req
                self.theta.sub_(result.delta)
                self.t_local += job.spec.steps * self.k  # each step does k workers' worth of work
                self.progress(self.t_local, self.sc.schedule.t_max, None)  # the bar moves with synced work
                self.version += 1
                self._event("sync", job, staleness=0)
            self._maybe_eval()

    def _wait_for_rejoin(self) -> Iterator[simpy.Event]:
        """Synchronous schedules: nobody could start; resume when the first device is back."""
        self.now = min(t for t, *_ in self.churn_queue)
        self.churn_queue.clear()
        yield self.env.timeout(max(self.now - self.env.now, 0.0))

    # -- checkpoints -------------------------------------------------------------
    def _safe_point(self) -> None:
        """Save a checkpoint when one is due; stop here if asked to."""
        if self.on_checkpoint is None:
            return
        due = self.checkpoint_every > 0 and self.version >= self.next_checkpoint
        if due or self.stop_requested:
            self.on_checkpoint(self)
            if self.checkpoint_every > 0:
                self.next_checkpoint = (self.version // self.checkpoint_every + 1) * self.checkpoint_every
        if self.stop_requested:
            raise RunInterrupted()

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs; in-flight jobs keep their dispatch inputs."""
        snapshots: dict[int, torch.Tensor] = {}
        jobs = []
        for job in sorted(self.in_flight.values(), key=lambda j: j.worker):
            theta, spec, state = job.inputs
            snapshots.setdefault(id(theta), theta)
            jobs.append({
                "id": job.id, "worker": job.worker, "spec": dataclasses.asdict(spec), "state": state,
                "dispatch_version": job.dispatch_version, "dispatched_at": job.dispatched_at,
                "completes_at": job.completes_at, "snapshot": id(theta),
                "keep_theta": job.theta_at_dispatch is not None, "train_start": job.train_start,
                "upload_start": job.upload_start, "lost_at": job.lost_at,
            })
        return {
            "scenario_digest": self.sc.digest(),
            "theta": self.theta,
            "outer": None if self.outer is None else self.outer.state_dict(),
            "snapshots": snapshots,
            "jobs": jobs,
            "sampler": {"dispatched": list(self.sampler.dispatched), "rng": self.sampler.rng.bit_generator.state},
            "jitter_rng": self.jitter_rng.bit_generator.state,
            "recorder": (self.recorder.events, self.recorder.metric_rows),
            "rejoins": [entry for entry in self.churn_queue if entry[2] == "rejoin"],  # losses come with their jobs
            "scalars": {key: getattr(self, key) for key in (
                "lr_counters", "version", "t_local", "next_job_id", "next_eval", "diverged", "loss_limit",
                "last_worker", "now", "tau_sync", "completed", "carried_state", "started", "next_checkpoint",
                "speed_estimates", "uplink_free", "stalled", "losses_in_a_row")},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s output (before :meth:`run`)."""
        if state["scenario_digest"] != self.sc.digest():
            raise ValueError("checkpoint belongs to a different scenario")
        self.theta = state["theta"]
        if self.outer is not None:
            self.outer.load_state_dict(state["outer"])
        for shard, n in enumerate(state["sampler"]["dispatched"]):
            self.sampler.record(shard, n)
        self.sampler.rng.bit_generator.state = state["sampler"]["rng"]
        self.jitter_rng.bit_generator.state = state["jitter_rng"]
        self.recorder.events, self.recorder.metric_rows = state["recorder"]
        for key, value in state["scalars"].items():
            setattr(self, key, value)
        self.churn_queue = list(state["rejoins"])
        heapq.heapify(self.churn_queue)
        self.env = simpy.Environment(initial_time=self.now)
        self.server = simpy.Resource(self.env, capacity=1)
        self.inboxes = [simpy.Store(self.env) for _ in range(self.k)]
        for j in state["jobs"]:
            theta = state["snapshots"][j["snapshot"]]
            j["spec"] = JobSpec(**{**j["spec"], "lrs": tuple(j["spec"]["lrs"])})
            lost = j["lost_at"] is not None
            self._start(Job(
                id=j["id"], worker=j["worker"], spec=j["spec"], dispatch_version=j["dispatch_version"],
                dispatched_at=j["dispatched_at"], completes_at=j["completes_at"],
                future=_NEVER if lost else self.executor.submit(theta, j["spec"], j["state"], priority=j["completes_at"]),
                done=self.env.event(),
                theta_at_dispatch=theta if j["keep_theta"] else None, inputs=(theta, j["spec"], j["state"]),
                train_start=j["train_start"], upload_start=j["upload_start"], lost_at=j["lost_at"],
            ))

    # -- driver ----------------------------------------------------------------
    def run(self) -> Recorder:
        for w in range(self.k):
            self.env.process(self._worker(w))
        if not self.started and not self.recorder.metric_rows:
            self._maybe_eval(force=True)
        server = {"async": self._async_server, "sync": self._sync_server, "single": self._single_server}
        proc = self.env.process(server[self.sc.method.schedule]())
        self.env.run(until=proc)
        for job in sorted(self.in_flight.values(), key=lambda j: j.worker):
            cancel = getattr(job.future, "cancel", None)
            if cancel is not None:
                cancel()
            self._event("discard", job)
        self.in_flight.clear()
        self.queue.clear()
        last = self.recorder.metric_rows[-1]
        if last["t_local"] != self.t_local or last["server_updates"] != self.version:
            self._maybe_eval(force=True)
        return self.recorder
