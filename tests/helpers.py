"""Scenario builders shared by the tests."""
from __future__ import annotations

from typing import Any

from sim.scenario import Scenario, scenario_from_dict

TINY_TOY = {"dim": 16, "hidden": 16, "clusters_per_class": 2, "shard_size": 256, "eval_size": 256, "batch_size": 8}


def scenario(
    speeds: list[float],
    *,
    preset: str = "async_diloco",
    trainer: str = "null",
    trainer_config: dict[str, Any] | None = None,
    H: int = 10,
    t_max: int = 200,
    grace: float = 0.0,
    grace_wait: str = "last_sync",
    dylu: bool | None = None,
    jitter: float = 0.0,
    seed: int = 0,
    eval_every: int = 10**9,
    method: dict[str, Any] | None = None,
    lr: float = 1e-2,
) -> Scenario:
    m: dict[str, Any] = {"preset": preset, **(method or {})}
    if dylu is not None:
        m["dylu"] = dylu
    return scenario_from_dict(
        {
            "name": "test",
            "seed": seed,
            "trainer": {"name": trainer, "config": trainer_config or {}},
            "workers": {"devices": [{"seconds_per_step": s, "jitter": jitter} for s in speeds]},
            "method": m,
            "schedule": {"H": H, "t_max": t_max, "grace_period": grace, "grace_wait": grace_wait},
            "lr": {"max": lr, "min": lr / 100, "warmup": 0},
            "eval": {"every": eval_every},
        }
    )
