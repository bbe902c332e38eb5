"""Build what a scenario names: its RNG streams, trainer, outer update and executor.

A leaf below the engine: the engine, the runner, the executors' worker
processes and the CLI all build the same pieces the same way, from here.

Every stream is one purpose of the scenario seed (``SeedSequence([seed,
purpose])``, :func:`trainers.base.seeded_rng`), so the shard draws (Eq. 2),
the device jitter and the churn timelines never shift one another.
"""
from __future__ import annotations

import numpy as np

from sim.errors import UserError
from sim.executors import EXECUTORS, ProcessExecutor, RayExecutor, SerialExecutor, StackedExecutor
from sim.outer.base import OuterUpdate
from sim.outer.registry import construct
from sim.scenario import Scenario, resolve_trainer_class
from trainers.base import Executor, Trainer, new_trainer, seeded_int, seeded_rng

#: purposes of the scenario's independent RNG streams (numpy SeedSequence keys)
STREAM_TRAINER, STREAM_SHARDS, STREAM_JITTER, STREAM_CHURN = 0, 1, 2, 3


def stream(seed: int, purpose: int) -> np.random.Generator:
    """The scenario's RNG stream for one purpose (``STREAM_*``)."""
    return seeded_rng(seed, purpose)


def trainer_seed(seed: int) -> int:
    """The integer seed a trainer derives its own streams from (model init, data order)."""
    return seeded_int(seed, STREAM_TRAINER)


def build_trainer(scenario: Scenario) -> Trainer:
    """The scenario's trainer, one data shard per worker."""
    cls = resolve_trainer_class(scenario.trainer.name)
    return new_trainer(cls, scenario.trainer.config, seed=trainer_seed(scenario.seed), num_shards=scenario.workers.k)


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
        if name == "ray":
            raise UserError(f"compute.stack {scenario.compute.stack} trains jobs together in this process or a "
                            "local pool; it does not combine with --executor ray yet (use serial or process)")
        if not hasattr(trainer, "local_train_stacked"):
            raise UserError(f"compute.stack: trainer '{scenario.trainer.name}' cannot train jobs together "
                            "(it has no local_train_stacked); set compute.stack: 1")
        pool = ProcessExecutor(scenario, build_trainer, jobs) if name == "process" else None
        return StackedExecutor(trainer, scenario.compute.stack, pool)
    if name == "serial":
        return SerialExecutor(trainer)
    if name == "process":
        return ProcessExecutor(scenario, build_trainer, jobs)
    if name == "ray":
        return RayExecutor(scenario, build_trainer, jobs, address)
    raise ValueError(f"unknown executor {name!r}; expected one of {', '.join(EXECUTORS)}")
