"""The workers of a live run: one Ray actor per worker, each emulating its device's time.

A job is launched when the server has dispatched it (and, with links,
once its planned arrival is known). Its actor trains it with the
scenario's trainer, then holds the result until its *deadline*, the real
instant of its planned arrival: its dispatch time on the live clock (the
arrival that freed the worker, as stamped) plus S x its planned duration
(download, compute with jitter, upload). The server's own delay between an
arrival and the launch of the next job (applying the update, evaluating,
Ray's transport) therefore does not pile up along a worker's chain of
jobs; the engine records it per job as the launch lag. When the real
compute runs past the deadline the result goes at once and the overrun is
recorded: a run never hides that the hardware was slower than the
emulated device.

The actor stamps the instant its result leaves (``time.time()``, shared by
the processes of one machine); the server orders arrivals by that stamp.
Tensors travel through Ray's object store: a dispatch snapshot is put once
and shared by the jobs dispatched with it.

``kills``: (worker, n) pairs; that worker's actor process dies (``os._exit``)
in the middle of its n-th job, a real fault the server must survive. Ray
restarts the actor once, as a cluster's supervisor would.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch

from sim.executors import SharedSnapshot, start_ray
from trainers.base import JobResult, JobSpec


@dataclass(eq=False)
class LiveFuture:
    """A job's result on its way from an actor: deferred until launched, then a Ray reference."""

    theta: torch.Tensor | None
    spec: JobSpec
    state: Any
    ref: Any = None
    value: JobResult | None = None
    error: str | None = None
    timing: dict[str, float] = field(default_factory=dict)  # real instants and seconds, see WorkerProcess.run
    planned_arrival: float = float("nan")  # simulated s, as planned when it was launched
    tie_at: float = float("nan")  # the real instant its arrival time was taken from: its deadline if on time, else its tie's first stamp

    @property
    def launched(self) -> bool:
        return self.ref is not None

    def result(self) -> JobResult:
        assert self.value is not None, "a live job's result is read only after it arrived"
        return self.value

    def cancel(self) -> None:
        """The run ended first: its actor is stopped with the fleet."""
        self.theta = self.state = None


class WorkerProcess:
    """One worker: its own trainer, built once; trains a job and holds the result to its deadline."""

    def __init__(self, scenario: dict[str, Any], worker: int):
        from sim.scenario import scenario_from_dict
        from sim.trainer_factory import build_trainer

        sc = scenario_from_dict(scenario, "<live worker>")
        torch.set_num_threads(sc.compute.threads)
        self.trainer = build_trainer(sc)
        self.worker = worker

    def ready(self) -> int:
        return self.worker

    def run(self, theta: torch.Tensor, spec: JobSpec, state: Any, deadline: float, die: bool) -> tuple[JobResult, dict[str, float]]:
        started = time.time()
        result = self.trainer.local_train(theta, spec, state)
        computed = time.time()
        if die:
            os._exit(1)  # a real fault, mid-job: the process is gone
        if computed < deadline:
            time.sleep(deadline - computed)
        return result, {"started": started, "computed": computed, "sent": time.time()}


class LiveFleet:
    """The k worker actors, as the engine's executor: jobs are submitted at dispatch and launched by :meth:`launch`."""

    name = "live"

    def __init__(self, scenario: Any, kills: Iterable[tuple[int, int]] = (), address: str | None = None):
        ray, self.started_here = start_ray("asyncsim live", address)
        self.ray = ray
        actor = ray.remote(num_cpus=0, max_restarts=1, max_task_retries=0)(WorkerProcess)
        resolved = scenario.resolved()
        self.actors = [actor.remote(resolved, w) for w in range(scenario.workers.k)]
        ray.get([a.ready.remote() for a in self.actors])  # trainers built before the clock starts
        self.kills = set(kills)
        self.launches = [0] * scenario.workers.k
        self.snapshot = SharedSnapshot(ray)
        self._in_flight: dict[Any, LiveFuture] = {}  # ray reference -> its job's future

    def submit(self, theta: torch.Tensor, spec: JobSpec, state: Any = None, priority: float = 0.0) -> LiveFuture:
        return LiveFuture(theta, spec, state)

    def launch(self, worker: int, future: LiveFuture, deadline: float) -> None:
        """Send a dispatched job to its worker's actor, its result due at the real instant ``deadline``."""
        assert future.theta is not None
        self.launches[worker] += 1
        die = (worker, self.launches[worker]) in self.kills
        launched = time.time()
        future.ref = self.actors[worker].run.remote(self.snapshot.ref(future.theta), future.spec, future.state,
                                                     deadline, die)
        future.timing.update(launched=launched, deadline=deadline)
        future.theta = future.state = None
        self._in_flight[future.ref] = future

    def wait(self, timeout: float | None) -> list[LiveFuture]:
        """The futures whose results (or faults) are in, waiting up to ``timeout`` seconds for the first."""
        if not self._in_flight:
            if timeout:
                time.sleep(timeout)
            return []
        refs = list(self._in_flight)
        ready, _ = self.ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        return [self._take(ref) for ref in ready]

    def _take(self, ref: Any) -> LiveFuture:
        future = self._in_flight.pop(ref)
        try:
            future.value, timing = self.ray.get(ref)
            future.timing.update(timing)
        except self.ray.exceptions.RayError as exc:  # the actor died mid-job
            future.error = type(exc).__name__
            future.timing["sent"] = time.time()
        return future

    def close(self) -> None:
        for a in getattr(self, "actors", []):
            self.ray.kill(a)
        self._in_flight.clear()
        self.snapshot.clear()
        if self.started_here:
            self.ray.shutdown()
