"""Build a run's parts from its scenario: the one place the engine's parts are made.

The runner builds the trainer (:mod:`sim.trainer_factory`) and the executor
(:func:`sim.executors.make_executor`); :func:`assemble` makes everything
else from the scenario's fields, and the engine (sim/engine.py) is handed
the result and never reads the scenario. The live engine, the replay of old
folders (sim/adopt.py) and the benchmarks assemble the same way.

Every part that draws randomness gets its own stream of the scenario seed
(:mod:`sim.streams`), so the shard draws (Eq. 2), the device jitter and the
churn timelines never shift one another.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from sim.churn import timelines
from sim.compression import Links
from sim.diagnostics import Diagnostics
from sim.dispatch import Dispatcher
from sim.inner_state import InnerStates
from sim.outer.base import OuterUpdate
from sim.outer.registry import build_outer
from sim.planner import Planner, step_times
from sim.records import Recorder
from sim.scenario import Scenario
from sim.schedules import schedule_class
from sim.schedules.base import Schedule
from sim.streams import STREAM_CHURN, STREAM_JITTER, STREAM_SHARDS
from trainers.base import Executor, ReportsLayers, Trainer, seeded_rng


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


def run_settings(scenario: Scenario) -> RunSettings:
    """What the engine and the summary read of ``scenario`` (the user's code hashed here, as the run is assembled)."""
    return RunSettings(name=scenario.method.preset, digest=scenario.digest(), scenario_name=scenario.name,
                       seed=scenario.seed, simulation=scenario.simulation_version(), code=scenario.code_digests(),
                       k=scenario.workers.k, t_max=scenario.schedule.t_max, H=scenario.schedule.H,
                       eval_every=scenario.eval.every, divergence_factor=scenario.eval.divergence_factor)


def assemble(scenario: Scenario, trainer: Trainer, executor: Executor) -> Parts:
    """The run's parts, each from the scenario's fields and its own RNG stream; the scenario stays here."""
    settings = run_settings(scenario)
    seed, k = scenario.seed, scenario.workers.k
    jitter, shards = seeded_rng(seed, STREAM_JITTER), seeded_rng(seed, STREAM_SHARDS)
    churn = [seeded_rng(seed, STREAM_CHURN, w) for w in range(k)]
    schedule = schedule_class(scenario.method.schedule)(scenario)
    outer = build_outer(scenario.method.outer, scenario.method.fix, k)
    devices = [scenario.workers.device(w) for w in range(k)]
    availability = timelines([d.availability for d in devices], churn)
    seconds, theta = step_times(devices, trainer), trainer.init_params()
    net = None if schedule.lockstep else scenario.network  # the 1-worker baseline sends nothing
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
