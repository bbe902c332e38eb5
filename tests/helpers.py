"""Scenario builders shared by the tests."""
from __future__ import annotations

from typing import Any

from sim.scenario import Scenario, scenario_from_dict

#: rounds recorded by tests/test_inner_state.py's stamping trainer (here: a module every copy imports once)
STAMPED_ROUNDS: list = []

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
    eval_diagnostics: bool | None = None,
    method: dict[str, Any] | None = None,
    lr: float = 1e-2,
    device_extra: list[dict[str, Any]] | dict[str, Any] | None = None,
    network: dict[str, Any] | None = None,
) -> Scenario:
    """A scenario on explicit step times; ``device_extra`` adds link / churn fields (one dict for all, or one each)."""
    m: dict[str, Any] = {"preset": preset, **(method or {})}
    if dylu is not None:
        m["dylu"] = dylu
    extra = device_extra if isinstance(device_extra, list) else [device_extra or {}] * len(speeds)
    raw: dict[str, Any] = {
        "name": "test",
        "seed": seed,
        "trainer": {"name": trainer, "config": trainer_config or {}},
        "workers": {"devices": [{"seconds_per_step": s, "jitter": jitter, **x} for s, x in zip(speeds, extra)]},
        "method": m,
        "schedule": {"H": H, "t_max": t_max, "grace_period": grace, "grace_wait": grace_wait},
        "lr": {"max": lr, "min": lr / 100, "warmup": 0},
        "eval": {"every": eval_every, **({} if eval_diagnostics is None else {"diagnostics": eval_diagnostics})},
    }
    if network is not None:
        raw["network"] = network
    return scenario_from_dict(raw)


class SavedStates(list):
    """A checkpoint sink for ``Checkpoints(saved, every=...)``: each state kept as the bytes ``torch.save`` writes."""

    def __call__(self, state: dict[str, Any]) -> None:
        import io

        import torch

        buf = io.BytesIO()
        torch.save(state, buf)
        self.append(buf.getvalue())

    def load(self, blob: bytes, weights_only: bool = False) -> dict[str, Any]:
        import io

        import torch

        return torch.load(io.BytesIO(blob), weights_only=weights_only)
