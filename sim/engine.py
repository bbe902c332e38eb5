"""The discrete-event core: Algorithm 2 (async), Algorithm 1 (sync) and the 1-worker baseline.

Workers are SimPy processes that spend simulated time training; the server is
a SimPy process holding a capacity-1 resource while it applies an update.
What a job *computes* comes from the trainer; *when* it finishes comes from
the device profile. Because a job's completion time is fixed when it is
dispatched, the server can look ahead to the next completion, which is how
Algorithm 5's ``get_worker`` is decided without peeking at real results.

Ties in simulated time are broken by worker id: the server always takes the
in-flight job with the smallest ``(completion time, worker)``.

Recorded times come from the plan (``self.now``: a completion time fixed at
dispatch, or a window's end), not from SimPy's float clock, which only
orders the processes. That makes a resumed run's times identical to an
uninterrupted one's: ``completes_at - now`` computed at a different ``now``
could differ in the last bit. The server loops keep their state in
attributes and pass through *safe points* (after a sync, or between rounds)
where :meth:`state_dict` captures everything needed to continue.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import simpy
import torch

from sim.executors import JobFuture
from sim.outer.base import OuterUpdate, PseudoGradient
from sim.records import Recorder
from sim.profiles import round_time
from sim.sampling import LRSchedule, ShardSampler, dylu_steps
from sim.scenario import Scenario
from trainers.base import JobSpec, Trainer, UserError

#: purposes of the scenario's independent RNG streams (numpy SeedSequence keys)
STREAM_TRAINER, STREAM_SHARDS, STREAM_JITTER = 0, 1, 2
#: weight of the newest round in online DyLU's speed estimate
ONLINE_DYLU_EMA = 0.5


def stream(seed: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, purpose]))


def trainer_seed(seed: int) -> int:
    return int(np.random.SeedSequence([seed, STREAM_TRAINER]).generate_state(1, dtype=np.uint64)[0] >> 1)


class RunInterrupted(Exception):
    """Raised at a safe point after a stop was requested (SIGINT / SIGTERM)."""


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
        self.recorder = Recorder(scenario.method.preset, scenario.seed)
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
        self.version = 0  # server updates applied
        self.t_local = 0
        self.next_job_id = 0
        self.in_flight: dict[int, Job] = {}
        self.queue: list[tuple[float, int, int]] = []  # (completes_at, worker, job id): a heap
        self.next_eval = 0
        self.diverged: str | None = None
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
        """Start a round on each worker, in worker order, all from the current theta."""
        snapshot = self.theta.clone()  # one immutable copy shared by this batch
        single = self.sc.method.schedule == "single"
        multiplier = self.k if single else 1
        for w in sorted(workers):
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
            job = Job(
                id=self.next_job_id,
                worker=w,
                spec=spec,
                dispatch_version=self.version,
                dispatched_at=self.now,
                completes_at=self.now + duration,
                future=self.executor.submit(snapshot, spec, state),
                done=self.env.event(),
                theta_at_dispatch=snapshot if needs_theta else None,
                inputs=(snapshot, spec, state),
            )
            self.next_job_id += 1
            self._start(job)
            self._event("dispatch", job)

    def _start(self, job: Job) -> None:
        self.in_flight[job.worker] = job
        heapq.heappush(self.queue, (job.completes_at, job.worker, job.id))
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
        self.now = job.completes_at
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
            if applied:
                self.version += 1
                self.last_worker = job.worker
            self._event("sync" if applied else "drop", job, staleness=staleness)

    # -- the three schedules -------------------------------------------------
    def _running(self) -> bool:
        return self.t_local < self.sc.schedule.t_max and self.diverged is None

    def _async_server(self) -> Iterator[simpy.Event]:
        """Algorithm 2 with the grace period of Algorithm 5."""
        grace = self.sc.schedule.grace_period
        if not self.started:
            self.started = True
            self._dispatch(list(range(self.k)))
        while self._running():
            job = self._earliest()
            if job is not None and (self.tau_sync == math.inf or job.completes_at - self.tau_sync <= grace):
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

    def _sync_server(self) -> Iterator[simpy.Event]:
        """Algorithm 1: every worker starts from the same theta; one outer step on the mean."""
        assert self.outer is not None
        while self._running():
            self._safe_point()
            self._dispatch(list(range(self.k)))
            jobs = sorted(self.in_flight.values(), key=lambda j: j.order)
            deltas: dict[int, torch.Tensor] = {}
            for job in jobs:
                yield job.done
                deltas[job.worker] = self._collect(job).delta
            if self.diverged:
                break
            mean = torch.stack([deltas[w] for w in sorted(deltas)]).sum(dim=0) / len(deltas)
            with self.server.request() as req:
                yield req
                self.outer.step(self.theta, PseudoGradient(delta=mean))
                for job in sorted(jobs, key=lambda j: j.worker):
                    self.t_local += job.spec.steps
                    self._event("sync", job, staleness=0)
                self.version += 1
            self._maybe_eval()

    def _single_server(self) -> Iterator[simpy.Event]:
        """The 1-worker k x batch baseline: continuous AdamW, theta <- worker's theta."""
        while self._running():
            self._safe_point()
            self._dispatch([0], self.carried_state)
            job = self.in_flight[0]
            yield job.done
            result = self._collect(job)
            if self.diverged:
                break
            self.carried_state = result.optimizer_state
            with self.server.request() as req:
                yield req
                self.theta.sub_(result.delta)
                self.t_local += job.spec.steps * self.k  # each step does k workers' worth of work
                self.version += 1
                self._event("sync", job, staleness=0)
            self._maybe_eval()

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
                "id": job.id, "worker": job.worker, "spec": spec, "state": state,
                "dispatch_version": job.dispatch_version, "dispatched_at": job.dispatched_at,
                "completes_at": job.completes_at, "snapshot": id(theta),
                "keep_theta": job.theta_at_dispatch is not None,
            })
        return {
            "scenario_digest": self.sc.digest(),
            "theta": self.theta,
            "outer": self.outer,
            "snapshots": snapshots,
            "jobs": jobs,
            "sampler": {"dispatched": list(self.sampler.dispatched), "rng": self.sampler.rng.bit_generator.state},
            "jitter_rng": self.jitter_rng.bit_generator.state,
            "recorder": (self.recorder.events, self.recorder.metric_rows),
            "scalars": {key: getattr(self, key) for key in (
                "lr_counters", "version", "t_local", "next_job_id", "next_eval", "diverged", "loss_limit",
                "last_worker", "now", "tau_sync", "completed", "carried_state", "started", "next_checkpoint",
                "speed_estimates")},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s output (before :meth:`run`)."""
        if state["scenario_digest"] != self.sc.digest():
            raise ValueError("checkpoint belongs to a different scenario")
        self.theta = state["theta"]
        self.outer = state["outer"]
        for shard, n in enumerate(state["sampler"]["dispatched"]):
            self.sampler.record(shard, n)
        self.sampler.rng.bit_generator.state = state["sampler"]["rng"]
        self.jitter_rng.bit_generator.state = state["jitter_rng"]
        self.recorder.events, self.recorder.metric_rows = state["recorder"]
        for key, value in state["scalars"].items():
            setattr(self, key, value)
        self.env = simpy.Environment(initial_time=self.now)
        self.server = simpy.Resource(self.env, capacity=1)
        self.inboxes = [simpy.Store(self.env) for _ in range(self.k)]
        for j in state["jobs"]:
            theta = state["snapshots"][j["snapshot"]]
            self._start(Job(
                id=j["id"], worker=j["worker"], spec=j["spec"], dispatch_version=j["dispatch_version"],
                dispatched_at=j["dispatched_at"], completes_at=j["completes_at"],
                future=self.executor.submit(theta, j["spec"], j["state"]), done=self.env.event(),
                theta_at_dispatch=theta if j["keep_theta"] else None, inputs=(theta, j["spec"], j["state"]),
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
