"""Work that many runs share, done once before they fan out: pretraining.

Every method and seed of an LM study starts from the same cached pretrained
checkpoint. Started in parallel on an empty cache, each process would find
the checkpoint missing and pretrain it again (the trainer's file lock makes
the others wait instead, idle). Pretraining each distinct checkpoint here,
in the calling process and with a progress callback, before the pool
starts, keeps every core for runs and shows the user what the pause is.
"""
from __future__ import annotations

import json
from typing import Callable, Iterable

from sim.scenario import Scenario

#: (label, steps done, total steps); called as pretraining advances
PretrainProgress = Callable[[str, int, int], None]


def _setup_key(scenario: Scenario) -> str:
    """What a pretrained checkpoint can depend on: the trainer and the thread count, not the seed or method."""
    return json.dumps([scenario.trainer.name, scenario.trainer.config, scenario.compute.threads], sort_keys=True, default=str)


def pretrain_once(scenarios: Iterable[Scenario], progress: PretrainProgress | None = None) -> int:
    """Build each distinct missing pretrained checkpoint once; returns how many were built."""
    from sim.trainer_factory import build_trainer

    built, seen = 0, set()
    for scenario in scenarios:
        key = _setup_key(scenario)
        if key in seen:
            continue
        seen.add(key)
        if not scenario.trainer.config.get("pretrain_steps"):
            continue
        trainer = build_trainer(scenario)
        threads = scenario.compute.threads
        if not callable(getattr(trainer, "pretrain", None)) or trainer.pretrain_path(threads).exists():
            continue
        label = f"pretrain {scenario.trainer.config.get('size', scenario.trainer.name)}"
        trainer.pretrain(threads, progress=(lambda step, total, _loss: progress(label, step, total)) if progress else None)
        built += 1
    return built
