"""The scenario's trainer, built: its class (:mod:`sim.trainer_names`), its seed and its compiled mode.

A leaf below the engine. The runner, the executors' worker processes (each
builds its own trainer from the scenario), the live fleet and the CLI all
build a trainer the same way, from here, so a job computed anywhere starts
from the same data shards and the same initial model.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from sim.errors import FieldError
from sim.streams import STREAM_TRAINER
from sim.trainer_names import resolve_trainer_class
from trainers.base import Compiles, Trainer, new_trainer, seeded_int

if TYPE_CHECKING:
    from sim.scenario import Scenario


def build_trainer(scenario: Scenario) -> Trainer:
    """The scenario's trainer, one data shard per worker, seeded by the scenario's trainer stream."""
    cls = resolve_trainer_class(scenario.trainer.name)
    trainer = new_trainer(cls, scenario.trainer.config, seed=seeded_int(scenario.seed, STREAM_TRAINER),
                          num_shards=scenario.workers.k)
    if scenario.compute.compile:
        if not isinstance(trainer, Compiles):
            raise FieldError("compute.compile", f"trainer '{scenario.trainer.name}' has no compiled mode "
                             "(no compile_model method); set compute.compile: false")
        trainer.compile_model()
    return trainer

