"""Where jobs are computed. Results never depend on the executor, only speed does.

A job is a pure function of its dispatch-time inputs, so the engine submits
it at dispatch and asks for the result at its simulated completion. Jobs in
flight at the same simulated time can therefore run concurrently:

- ``serial``: in this process, lazily, when the result is first needed;
- ``process``: a local pool of P processes, each with its own trainer built
  from the scenario; tensors travel through shared memory (torch's
  multiprocessing reductions), not as pickled copies;
- ``ray``: Ray tasks (``pip install 'asyncsim[ray]'``), local or on a cluster
  (``--address``); the dispatch snapshot goes into the object store once per
  dispatch batch. The core never imports ray unless asked to.

Every job computes with exactly ``compute.threads`` torch threads, whichever
executor runs it, because torch's bits depend on the thread count.
"""
from __future__ import annotations

import functools
import heapq
import itertools
import os
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable

import torch

from sim.errors import UserError
from sim.trainer_factory import build_trainer
from trainers.base import JobResult, JobSpec, Trainer
from trainers.stacked import StackedJob

#: builds a trainer from a scenario, in a pool's own processes (sim.trainer_factory.build_trainer)
TrainerFactory = Callable[[Any], Trainer]
EXECUTORS = ("serial", "process", "ray")


class LazyFuture:
    """Computes on first ``result()`` and then forgets its inputs.

    Deferring the work to the simulated completion keeps at most one job's
    inner-optimizer state alive at a time in a serial run.
    """

    __slots__ = ("_fn", "_args", "_value", "_done")

    def __init__(self, fn: Callable[..., Any], *args: Any):
        self._fn, self._args = fn, args
        self._value: Any = None
        self._done = False

    def result(self) -> Any:
        if not self._done:
            self._value = self._fn(*self._args)
            self._done = True
            self._fn, self._args = None, ()  # type: ignore[assignment]
        return self._value

    def cancel(self) -> None:
        """Drop a job whose result will never be needed (budget reached)."""
        if not self._done:
            self._fn, self._args = None, ()  # type: ignore[assignment]


class SerialExecutor:
    """Computes each job in this process, when its result is first needed."""

    name = "serial"

    def __init__(self, trainer: Trainer):
        self.trainer = trainer

    def submit(self, theta: torch.Tensor, spec: JobSpec, state: Any = None, priority: float = 0.0) -> LazyFuture:
        return LazyFuture(self.trainer.local_train, theta, spec, state)

    def close(self) -> None:
        pass


class StackedFuture:
    """A job waiting in a :class:`StackedExecutor`; asking for its result trains every waiting job."""

    __slots__ = ("_owner", "job", "steps", "_value", "_done", "_group")

    def __init__(self, owner: "StackedExecutor", job: StackedJob):
        self._owner, self.job, self.steps = owner, job, job.spec.steps
        self._value: JobResult | None = None
        self._done = False
        self._group: tuple[Future, int] | None = None  # (its stack's future in a process pool, its place there)

    def result(self) -> JobResult:
        if not self._done and self._group is None:
            self._owner.compute_waiting()
        if self._group is not None:
            group, place = self._group
            self.set_result(group.result()[place])
            self._group = None
        assert self._value is not None
        return self._value

    def wait_on(self, group: Future, place: int) -> None:
        self._group, self.job = (group, place), None  # type: ignore[assignment]

    @property
    def done(self) -> bool:
        """Trained, or training in a pool (its work is spent either way)."""
        return self._done or self._group is not None

    def set_result(self, value: JobResult) -> None:
        self._value, self._done, self.job = value, True, None  # type: ignore[assignment]  # the inputs are not needed now

    def cancel(self) -> None:
        """A job the run no longer needs: never trained if still waiting, counted as discarded if it was."""
        self._owner.discard(self)

    def saved(self) -> JobResult | None:
        """The result, if trained, for a checkpoint: a resumed run must not train it again in another stack."""
        return self.result() if self.done else None


class StackedExecutor:
    """Trains the jobs in flight together (``compute.stack``), in this process or a pool's.

    Every job is submitted at its dispatch with its inputs fixed, so when
    the server needs the first result, every job submitted and not yet
    trained is trained then: in groups of at most ``stack`` jobs that share a
    batch size and a thread count, each group as one stacked pass
    (trainers/stacked.py, the trainer's ``local_train_stacked``). Results wait
    on their futures until their arrival. Jobs cancelled at the end of the
    budget after they were trained are counted in :attr:`discarded_steps`.
    With a ``pool`` (``--executor process`` or ``ray``), the stacks of one call
    train side by side, one per process or Ray task: the same stacks, so the
    same bits.

    A job's bits may depend on its place in a stack (trainers/stacked.py), so
    a stack is a function of the waiting jobs alone: in worker order (then
    by data offset, should a worker have two). A checkpoint keeps the results of
    the jobs already trained (:meth:`StackedFuture.saved`), so a resumed run
    stacks exactly the jobs the uninterrupted one did and ends with the same
    bytes.
    """

    def __init__(self, trainer: Trainer, stack: int, pool: "ProcessExecutor | RayExecutor | None" = None):
        self.trainer, self.stack, self.pool = trainer, stack, pool
        self.name = "serial" if pool is None else pool.name
        self._waiting: list[StackedFuture] = []
        self.trained_steps = 0  # local steps trained in stacks
        self.discarded_steps = 0  # of those, the steps of jobs the run then cancelled
        self.passes = 0  # stacked passes run

    def submit(self, theta: torch.Tensor, spec: JobSpec, state: Any = None, priority: float = 0.0) -> StackedFuture:
        future = StackedFuture(self, StackedJob(theta, spec, state))
        self._waiting.append(future)
        return future

    def compute_waiting(self) -> None:
        """Train every waiting job, grouped by (threads, batch) in worker order, ``stack`` jobs per pass."""
        waiting, self._waiting = sorted(self._waiting, key=lambda f: (f.job.spec.worker, f.job.spec.data_offset)), []
        groups: dict[tuple[int, int], list[StackedFuture]] = {}
        for future in waiting:
            groups.setdefault((future.job.spec.threads, future.job.spec.batch_multiplier), []).append(future)
        for group in groups.values():
            for lo in range(0, len(group), self.stack):
                part = group[lo:lo + self.stack]
                jobs = [future.job for future in part]
                self.trained_steps += sum(job.spec.steps for job in jobs)
                self.passes += 1
                if self.pool is not None:  # the stacks train side by side, one per process
                    stack = self.pool.submit_stack(jobs)
                    for place, future in enumerate(part):
                        future.wait_on(stack, place)
                    continue
                for future, result in zip(part, self.trainer.local_train_stacked(jobs)):  # type: ignore[attr-defined]
                    future.set_result(result)

    def discard(self, future: StackedFuture) -> None:
        if future.done:
            self.discarded_steps += future.steps
        elif future in self._waiting:
            self._waiting.remove(future)

    def close(self) -> None:
        self._waiting.clear()
        if self.pool is not None:
            self.pool.close()


# -- process pool ------------------------------------------------------------------

_WORKER_TRAINER: Trainer | None = None


def exit_with_parent(parent: int) -> None:
    """In a pool process: exit when the parent dies, instead of training on as an orphan.

    A killed ``compare`` or ``run --executor process`` would otherwise leave
    its workers computing jobs nobody will collect. ``parent`` comes from the
    parent itself: by the time a slow-starting child asks ``getppid()`` it
    may already have been re-parented.
    """
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def _init_process(make_trainer: TrainerFactory, scenario: dict[str, Any], parent: int) -> None:
    """Pool initializer: build this process's own trainer once."""
    global _WORKER_TRAINER
    exit_with_parent(parent)
    from sim.scenario import scenario_from_dict

    sc = scenario_from_dict(scenario, "<executor>")
    torch.set_num_threads(sc.compute.threads)
    _WORKER_TRAINER = make_trainer(sc)


def _run_stack_in_process(jobs: list[StackedJob]) -> list[JobResult]:
    assert _WORKER_TRAINER is not None, "pool initializer did not run"
    return _WORKER_TRAINER.local_train_stacked(jobs)  # type: ignore[attr-defined]


def _run_in_process(theta: torch.Tensor, spec: JobSpec, state: Any) -> JobResult:
    assert _WORKER_TRAINER is not None, "pool initializer did not run"
    return _WORKER_TRAINER.local_train(theta, spec, state)


class ProcessExecutor:
    """A local pool of processes; jobs in flight together compute in parallel.

    The pool never holds more jobs than it has processes: the rest wait here
    and start in order of ``priority`` (the engine passes each job's planned
    completion time). So the result the server needs next is computed
    first, and the jobs still pending when the budget is reached, which the
    run discards, are never computed at all (as with the serial executor).
    """

    name = "process"

    def __init__(self, scenario: Any, make_trainer: TrainerFactory, jobs: int | None = None):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        threads = scenario.compute.threads
        self.jobs = jobs or max(1, (os.cpu_count() or 1) // threads)
        # spawn, not fork: forking a process whose OpenMP pool is running can hang.
        self.pool = ProcessPoolExecutor(
            max_workers=self.jobs,
            mp_context=mp.get_context("spawn"),
            initializer=_init_process,
            initargs=(make_trainer, scenario.resolved(), os.getpid()),
        )
        self._lock = threading.RLock()  # the pool's callback thread starts the next job
        self._waiting: list[tuple[float, int, tuple[Any, ...], Future]] = []  # a heap by (priority, order)
        self._order = itertools.count()
        self._running = 0

    def submit_stack(self, jobs: list[StackedJob]) -> Future:
        """One stacked pass of ``jobs`` in a pool process (:class:`StackedExecutor`); its result lists theirs."""
        return self.pool.submit(_run_stack_in_process, jobs)

    def submit(self, theta: torch.Tensor, spec: JobSpec, state: Any = None, priority: float = 0.0) -> Future:
        future: Future = Future()
        with self._lock:
            heapq.heappush(self._waiting, (priority, next(self._order), (theta, spec, state), future))
            self._start_waiting()
        return future

    def _start_waiting(self) -> None:
        while self._running < self.jobs and self._waiting:
            _, _, args, future = heapq.heappop(self._waiting)
            if not future.set_running_or_notify_cancel():
                continue  # cancelled before it started: never computed
            self._running += 1
            self.pool.submit(_run_in_process, *args).add_done_callback(functools.partial(self._finished, future))

    def _finished(self, future: Future, done: Future) -> None:
        with self._lock:
            self._running -= 1
            self._start_waiting()
        error = done.exception()
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(done.result())

    def close(self) -> None:
        with self._lock:
            for *_, future in self._waiting:
                future.cancel()
            self._waiting.clear()
        self.pool.shutdown(wait=True, cancel_futures=True)


# -- ray -------------------------------------------------------------------------------


class _RayFuture:
    __slots__ = ("ref", "_ray")

    def __init__(self, ref: Any, ray: Any):
        self.ref, self._ray = ref, ray

    def result(self) -> Any:
        return self._ray.get(self.ref)

    def cancel(self) -> None:
        self._ray.cancel(self.ref)


_RAY_TRAINERS: dict[str, Trainer] = {}


def _ray_job(make_trainer: TrainerFactory, scenario: dict[str, Any], digest: str, theta: torch.Tensor, spec: JobSpec,
             state: Any) -> JobResult:
    """Runs inside a Ray worker process; the trainer is built once per process."""
    torch.set_num_threads(spec.threads)
    return _ray_trainer(make_trainer, scenario, digest).local_train(theta, spec, state)


def _ray_trainer(make_trainer: TrainerFactory, scenario: dict[str, Any], digest: str) -> Trainer:
    """This Ray worker process's trainer for the scenario ``digest``, built on first use."""
    if digest not in _RAY_TRAINERS:
        from sim.scenario import scenario_from_dict

        _RAY_TRAINERS[digest] = make_trainer(scenario_from_dict(scenario, "<ray>"))
    return _RAY_TRAINERS[digest]


def _ray_stack(make_trainer: TrainerFactory, scenario: dict[str, Any], digest: str,
               jobs: list[StackedJob]) -> list[JobResult]:
    """One stacked pass inside a Ray worker process (:class:`StackedExecutor` over :class:`RayExecutor`)."""
    torch.set_num_threads(jobs[0].spec.threads)
    return _ray_trainer(make_trainer, scenario, digest).local_train_stacked(jobs)  # type: ignore[attr-defined]


def start_ray(needed_by: str, address: str | None = None, **init: Any) -> tuple[Any, bool]:
    """Ray, and whether it was started here (then the caller shuts it down); one line when it is not installed.

    A Ray already running in this process is used as it is. Without an
    ``address`` a new local Ray is started, never a cluster that happens to
    run on this machine (``ray.init()`` alone joins one started by ``ray
    start``, whose workers and load are not this run's). A local Ray
    started here runs its workers at nice 0, not Ray's default 15: here they
    are the work, not a background chore. ``init``: ``ray.init`` arguments for
    a local Ray (an ``address`` names a cluster that has its own).
    """
    try:
        import ray
    except ImportError:
        raise UserError(f"{needed_by} needs Ray: pip install 'asyncsim[ray]' (or pip install ray)") from None
    if ray.is_initialized():
        return ray, False
    if address is None:
        os.environ.setdefault("RAY_worker_niceness", "0")
    ray.init(include_dashboard=False, log_to_driver=False, **({"address": address} if address else
                                                               {"address": "local", **init}))
    return ray, True


class SharedSnapshot:
    """The object-store copy of the last dispatch snapshot: jobs dispatched together share one tensor, put once."""

    def __init__(self, ray: Any):
        self.ray = ray
        self._last: tuple[torch.Tensor, Any] | None = None

    def ref(self, theta: torch.Tensor) -> Any:
        if self._last is None or self._last[0] is not theta:
            self._last = (theta, self.ray.put(theta))
        return self._last[1]

    def clear(self) -> None:
        self._last = None


class RayExecutor:
    """Ray tasks, one per job; the snapshot a batch starts from is put in the object store once."""

    name = "ray"

    def __init__(self, scenario: Any, make_trainer: TrainerFactory, jobs: int | None = None, address: str | None = None):
        ray, self.started_here = start_ray("the ray executor", address, num_cpus=jobs or os.cpu_count() or 1)
        self.ray = ray
        self.scenario = scenario.resolved()
        self.digest = scenario.digest()
        self.make_trainer = make_trainer
        self.task = ray.remote(num_cpus=scenario.compute.threads)(_ray_job)
        self.stack_task = ray.remote(num_cpus=scenario.compute.threads)(_ray_stack)
        self.scenario_ref = ray.put(self.scenario)
        self.snapshot = SharedSnapshot(ray)

    def submit(self, theta: torch.Tensor, spec: JobSpec, state: Any = None, priority: float = 0.0) -> _RayFuture:
        ref = self.task.remote(self.make_trainer, self.scenario_ref, self.digest, self.snapshot.ref(theta), spec, state)
        return _RayFuture(ref, self.ray)

    def submit_stack(self, jobs: list[StackedJob]) -> _RayFuture:
        """One stacked pass of ``jobs`` as a Ray task (:class:`StackedExecutor`); its result lists theirs."""
        return _RayFuture(self.stack_task.remote(self.make_trainer, self.scenario_ref, self.digest, jobs), self.ray)

    def close(self) -> None:
        self.snapshot.clear()
        if self.started_here:
            self.ray.shutdown()



def make_executor(name: str, scenario: Any, trainer: Trainer, jobs: int | None = None,
                  address: str | None = None) -> Any:
    """serial (this process), process (a local pool) or ray, stacked when ``compute.stack`` > 1.

    Pools build their own trainers with :func:`sim.trainer_factory.build_trainer`.
    """
    if scenario.compute.stack > 1:
        if not hasattr(trainer, "local_train_stacked"):
            raise UserError(f"compute.stack: trainer '{scenario.trainer.name}' cannot train jobs together "
                            "(it has no local_train_stacked); set compute.stack: 1")
        pool: ProcessExecutor | RayExecutor | None = None  # serial: the stacks train in this process
        if name == "process":
            pool = ProcessExecutor(scenario, build_trainer, jobs)
        elif name == "ray":
            pool = RayExecutor(scenario, build_trainer, jobs, address)
        return StackedExecutor(trainer, scenario.compute.stack, pool)
    if name == "serial":
        return SerialExecutor(trainer)
    if name == "process":
        return ProcessExecutor(scenario, build_trainer, jobs)
    if name == "ray":
        return RayExecutor(scenario, build_trainer, jobs, address)
    raise ValueError(f"unknown executor {name!r}; expected one of {', '.join(EXECUTORS)}")
