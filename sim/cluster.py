"""Whole runs as Ray tasks: a sweep spread over a cluster, with the same run hashes and one run store.

A run is a pure function of its resolved scenario, so where it is computed
never changes its bytes. Each missing run becomes one Ray task that asks
for ``compute.threads`` CPUs (and a GPU when its trainer runs on cuda),
builds its trainer, simulates, and returns the run folder's files; the
driver writes them into the digest-keyed run store atomically (a hidden
sibling renamed into place), exactly where a local run would put them.
With ``store`` (a path every node sees) a task writes its folder there
itself, through the same atomic writer. Runs that exist are never sent.

Faults: a task whose worker or node dies is retried by Ray up to
``retries`` times; after that the run is reported in one line naming it and
the others complete and are kept. Ctrl-C (or SIGTERM) cancels what is
still outstanding; nothing half-written is left in the store, since only
complete folders are ever renamed into it. Ray stays an optional extra:
only this module imports it, and only when asked to.
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from sim.errors import RunInterrupted, UserError
from sim.outputs import writing
from sim.records import copy_problem, is_complete_run

if TYPE_CHECKING:  # annotations only
    from sim.scenario import Scenario


class RunSpec(Protocol):
    """What this module needs of a planned run (sim.compare.RunSpec): its scenario and its store folder."""

    @property
    def scenario(self) -> Scenario: ...

    @property
    def folder(self) -> Path: ...


@dataclass(frozen=True)
class Cluster:
    """Where whole runs go instead of local processes: a Ray cluster."""

    address: str | None = None  # None: start a local Ray
    store: Path | None = None  # a run store every node sees: tasks write their folders there themselves
    retries: int = 3  # Ray reruns a task whose worker process or node died this many times


def _run_task(scenario: dict[str, Any], store: str | None) -> dict[str, bytes] | None:
    """Inside a Ray worker: compute one run; its folder's files (or None: written to the shared store)."""
    from sim.runner import run
    from sim.scenario import scenario_from_dict

    sc = scenario_from_dict(scenario, "<ray>")
    if store is not None:
        os.environ["ASYNCSIM_RUNS"] = store
        run(sc, checkpoint_every=100, resume=True)
        return None
    with tempfile.TemporaryDirectory(prefix="asyncsim-run-") as tmp:
        folder = Path(tmp) / "run"
        run(sc, out=folder)
        return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def write_files(folder: Path, files: dict[str, bytes], scenario_digest: str) -> str | None:
    """A run folder from its returned files, atomically, if they are that run; else why they were refused.

    The files go beside it under a hidden name, are checked there
    (:func:`sim.records.copy_problem` re-hashes the tables), and only then
    renamed into place.
    """
    if is_complete_run(folder):
        return None  # computed meanwhile by someone else: the same bytes
    tmp = folder.parent / f".{folder.name}.ray-{os.getpid()}"
    try:
        with writing(folder):
            folder.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            for name, data in files.items():
                if name != "summary.json":
                    (tmp / name).write_bytes(data)
            if "summary.json" in files:
                (tmp / "summary.json").write_bytes(files["summary.json"])  # last: it marks a complete folder
            problem = copy_problem(tmp, scenario_digest)
            if problem is not None:
                return problem
            if folder.exists():  # an empty or damaged leftover of ours
                shutil.rmtree(folder)
            tmp.rename(folder)
            return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _needs_gpu(spec: RunSpec) -> bool:
    device = str(spec.scenario.trainer.config.get("device") or "")
    return device.startswith("cuda")


def execute_on_ray(
    todo: list[RunSpec],
    cluster: Cluster,
    started: Callable[[RunSpec], None] = lambda spec: None,
    finished: Callable[[RunSpec, bool], None] = lambda spec, reused: None,
    queued: Callable[[int], None] = lambda n: None,
) -> int:
    """Compute ``todo`` as Ray tasks on ``cluster`` (its address None: a local Ray); returns how many."""
    address = cluster.address
    try:
        import ray
        from ray.exceptions import RayError, TaskCancelledError
    except ImportError:
        raise UserError("--executor ray needs Ray: pip install 'asyncsim[ray]' (or pip install ray)") from None
    started_here = not ray.is_initialized()
    if started_here and address is not None and not address.startswith("ray://"):
        _probe(address)
    if started_here:
        if address is None:  # Ray runs its workers at nice 15: a whole run is the work, not a background chore
            os.environ.setdefault("RAY_worker_niceness", "0")
        try:
            env = _forwarded_env()
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                     **({"runtime_env": {"env_vars": env}} if env else {}))
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UserError(f"--address {address}: cannot connect to a Ray cluster ({str(exc).splitlines()[0]})") from None
    try:
        return _execute(ray, RayError, TaskCancelledError, todo, cluster.store, cluster.retries, started, finished,
                        queued)
    finally:
        if started_here:
            ray.shutdown()


def _probe(address: str, timeout_s: float = 10.0) -> None:
    """One line now, rather than Ray retrying for minutes, when nothing listens at ``host:port``."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as exc:
        raise UserError(f"--address {address}: no Ray cluster answers there ({exc}); expected host:port of a "
                        "head node started with `ray start --head`, or ray://host:10001") from None


def _forwarded_env() -> dict[str, str]:
    """The settings a task needs from the driver's environment (the pretraining cache)."""
    return {k: os.environ[k] for k in ("ASYNCSIM_CACHE",) if k in os.environ}


def _why(exc: Exception, retries: int) -> str:
    """Why a task failed: the run's own error (never retried), or its worker or node lost ``retries`` + 1 times."""
    cause = getattr(exc, "cause", None)
    if cause is not None:  # the run raised: a bug or a user error, the same on any node
        return f"{type(cause).__name__}: {str(cause).splitlines()[0][:200] if str(cause) else ''}"
    return f"{type(exc).__name__} after {retries} retries"


def _execute(ray: Any, RayError: type, TaskCancelledError: type, todo: list[RunSpec], store: Path | None,
             retries: int, started: Callable[[RunSpec], None], finished: Callable[[RunSpec, bool], None],
             queued: Callable[[int], None]) -> int:
    cpus = ray.cluster_resources().get("CPU", 1.0)
    task, refs = ray.remote(_run_task), {}
    for spec in todo:
        options = task.options(num_cpus=spec.scenario.compute.threads, num_gpus=1 if _needs_gpu(spec) else 0,
                               max_retries=retries, retry_exceptions=False)
        refs[options.remote(spec.scenario.resolved(), None if store is None else str(store))] = spec
    order = list(refs)  # Ray starts tasks in about the order they were submitted, as far as resources allow
    running: set[Any] = set()
    failed: list[str] = []

    def fill() -> None:
        capacity = max(1, int(cpus))
        for ref in order:
            if len(running) >= capacity:
                break
            if ref not in running:
                running.add(ref)
                started(refs[ref])
        queued(len(order) - len(running))

    try:
        fill()
        while order:
            done, _ = ray.wait(order, num_returns=1, timeout=1.0)
            for ref in done:
                spec = refs[ref]
                order.remove(ref)
                running.discard(ref)
                try:
                    files = ray.get(ref)
                except TaskCancelledError:
                    continue
                except RayError as exc:
                    failed.append(f"{spec.folder.name}: {_why(exc, retries)}")
                    finished(spec, False)
                    continue
                digest = spec.scenario.digest()
                if files is not None:
                    problem = write_files(spec.folder, files, digest)
                elif not is_complete_run(spec.folder):
                    problem = f"its task finished, but no complete run is at {spec.folder} (is --store the same path on every node?)"
                else:
                    problem = copy_problem(spec.folder, digest)
                if problem is not None:
                    failed.append(f"{spec.folder.name}: {problem}")
                finished(spec, False)
            fill()
    except KeyboardInterrupt:
        for ref in order:
            ray.cancel(ref, force=True)
        time.sleep(0.5)  # let the cancellations reach the workers before the driver disconnects
        raise RunInterrupted() from None
    if failed:
        raise UserError(f"{len(failed)} of {len(todo)} runs failed on the cluster (the others are kept): "
                        + "; ".join(failed))
    return len(todo)
