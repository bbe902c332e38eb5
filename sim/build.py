"""Build what a scenario names: its RNG streams, trainer, outer update, executor, and the engine's parts.

A leaf below the engine: the engine, the runner, the executors' worker
processes and the CLI all build the same pieces the same way, from here.
:func:`assemble` is the one place a run's parts are made from the scenario;
the engine (sim/engine.py) is handed them and never reads the scenario.

Every stream is one purpose of the scenario seed (``SeedSequence([seed,
purpose])``, :func:`trainers.base.seeded_rng`), so the shard draws (Eq. 2),
the device jitter and the churn timelines never shift one another.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from sim.churn import timelines
from sim.compression import Links
from sim.diagnostics import Diagnostics
from sim.dispatch import Dispatcher
from sim.errors import FieldError, UserError
from sim.executors import EXECUTORS, ProcessExecutor, RayExecutor, SerialExecutor, StackedExecutor
from sim.inner_state import InnerStates
from sim.outer.base import OuterUpdate
from sim.outer.registry import construct
from sim.planner import Planner, step_times
from sim.records import Recorder
from sim.scenario import Scenario, resolve_trainer_class
from sim.schedules import schedule_class
from sim.schedules.base import Schedule
from trainers.base import Compiles, Executor, ReportsLayers, Trainer, new_trainer, seeded_int, seeded_rng

#: purposes of the scenario's independent RNG streams (numpy SeedSequence keys)
STREAM_TRAINER, STREAM_SHARDS, STREAM_JITTER, STREAM_CHURN = 0, 1, 2, 3


def trainer_seed(seed: int) -> int:
    """The integer seed a trainer derives its own streams from (model init, data order)."""
    return seeded_int(seed, STREAM_TRAINER)


def build_trainer(scenario: Scenario) -> Trainer:
    """The scenario's trainer, one data shard per worker."""
    cls = resolve_trainer_class(scenario.trainer.name)
    trainer = new_trainer(cls, scenario.trainer.config, seed=trainer_seed(scenario.seed), num_shards=scenario.workers.k)
    if scenario.compute.compile:
        if not isinstance(trainer, Compiles):
            raise FieldError("compute.compile", f"trainer '{scenario.trainer.name}' has no compiled mode "
                             "(no compile_model method); set compute.compile: false")
        trainer.compile_model()
    return trainer


def build_outer(scenario: Scenario) -> OuterUpdate | None:
    """The outer update, wrapped in the staleness fix if the method has one (None for the 1-worker baseline)."""
    method, k = scenario.method, scenario.workers.k
    if method.outer is None:
        return None
    outer = construct(method.outer, k)
    return outer if method.fix is None else construct(method.fix, k, base=outer)


def make_executor(name: str, scenario: Scenario, trainer: Trainer, jobs: int | None = None,
                  address: str | None = None) -> Executor:
    """serial (this process), process (a local pool) or ray; pools build their own trainers with :func:`build_trainer`."""
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


@dataclass(frozen=True)
class RunSettings:
    """The few facts of the scenario the engine and the run's summary read: its budget, cadence and identity."""

    name: str  # the method's preset, for messages ("dn_dylu diverged at ...")
    digest: str  # the scenario's identity, stored in and checked against checkpoints
    scenario_name: str
    seed: int
    simulation: int  # the schedule's simulation version (sim.scenario.SCHEDULE_VERSIONS)
    code: dict[str, str]  # digests of the user's own source files the run names (empty for built-ins)
    k: int  # workers
    t_max: int  # Algorithm 2's budget of synced local steps
    H: int  # local steps per round (the work weight's unit)
    eval_every: int  # evaluate when t_local crosses a multiple of this
    divergence_factor: float  # diverged: eval loss above this times the initial one


@dataclass
class Parts:
    """Everything one run is made of, built from its scenario by :func:`assemble`."""

    settings: RunSettings
    trainer: Trainer
    outer: OuterUpdate | None  # None: the 1-worker baseline adopts its worker's model
    executor: Executor
    schedule: Schedule
    planner: Planner
    links: Links
    dispatcher: Dispatcher
    recorder: Recorder
    diagnostics: Diagnostics | None
    inner: InnerStates
    theta: torch.Tensor  # the initial server model
    batch_size: int
    layer_sizes: list[int] | None


def assemble_run(scenario: Scenario, executor: str = "serial", jobs: int | None = None,
                 address: str | None = None) -> Parts:
    """Everything a run of ``scenario`` needs: its trainer, the executor named, and the engine's parts."""
    settings = run_settings(scenario)
    trainer = build_trainer(scenario)
    pool = make_executor(executor, scenario, trainer, jobs=jobs, address=address)
    try:
        return assemble(scenario, trainer, pool, settings)
    except BaseException:
        pool.close()  # a part the scenario cannot make: the pool's processes must not outlive the error
        raise


def run_settings(scenario: Scenario) -> RunSettings:
    """What the engine and the summary read of ``scenario`` (the user's code hashed here, as the run is assembled)."""
    return RunSettings(name=scenario.method.preset, digest=scenario.digest(), scenario_name=scenario.name,
                       seed=scenario.seed, simulation=scenario.simulation_version(), code=scenario.code_digests(),
                       k=scenario.workers.k, t_max=scenario.schedule.t_max, H=scenario.schedule.H,
                       eval_every=scenario.eval.every, divergence_factor=scenario.eval.divergence_factor)


def assemble(scenario: Scenario, trainer: Trainer, executor: Executor, settings: RunSettings | None = None) -> Parts:
    """The run's parts, each from the scenario's fields and its own RNG stream; the scenario stays here."""
    settings = run_settings(scenario) if settings is None else settings
    seed, k = scenario.seed, scenario.workers.k
    jitter, shards = seeded_rng(seed, STREAM_JITTER), seeded_rng(seed, STREAM_SHARDS)
    outer = build_outer(scenario)
    schedule = schedule_class(scenario.method.schedule)(scenario)
    devices = [scenario.workers.device(w) for w in range(k)]
    seconds, theta = step_times(devices, trainer), trainer.init_params()
    net = None if schedule.lockstep else scenario.network  # the 1-worker baseline sends nothing
    availability = timelines([d.availability for d in devices], seed, STREAM_CHURN)
    planner = Planner(devices, seconds, network=net, num_params=theta.numel(), jitter=jitter,
                      lockstep=schedule.lockstep, local_servers=schedule.local_servers, availability=availability)
    links = Links() if net is None else Links(net.dtype, net.model_dtype, net.block)
    dispatcher = Dispatcher(scenario, trainer.shard_sizes(), trainer.batch_size(), shards, seconds,
                            lockstep=schedule.lockstep)
    diagnostics = scenario.eval.diagnostics
    recorder = Recorder(scenario.method.preset, seed,  # comm / churn columns when they happen
                        comm_columns=planner.communicates or planner.churn, server_column=schedule.local_servers,
                        transfer_columns=schedule.overlaps, diagnostic_columns=diagnostics)
    return Parts(
        settings=settings, trainer=trainer, outer=outer, executor=executor, schedule=schedule, planner=planner,
        links=links, dispatcher=dispatcher, recorder=recorder, diagnostics=Diagnostics(k) if diagnostics else None,
        # the schedules that carry it themselves see reset here: the engine stores nothing for them
        inner=InnerStates("reset" if schedule.carries_inner_state else scenario.method.inner_state),
        theta=theta, batch_size=trainer.batch_size(),
        layer_sizes=trainer.layer_sizes() if isinstance(trainer, ReportsLayers) else None)
