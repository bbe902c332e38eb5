"""Every worker's spec for a round, drawn at once, so a model does not depend on who got there first.

Schedules whose workers start rounds at different times but train in
lockstep rounds (Streaming DiLoCo, eager updates) draw round r's specs
(shard, inner learning rates, jitter) for all k workers, in worker order,
when the first worker needs them: the same draws DiLoCo makes when it
dispatches a round, whatever the device and link speeds.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from trainers.base import JobSpec

if TYPE_CHECKING:  # annotations only
    from sim.schedules.base import Run


class RoundSpecs:
    def __init__(self) -> None:
        self.rounds: dict[int, list[tuple[JobSpec, float]]] = {}

    def get(self, run: Run, r: int, worker: int) -> tuple[JobSpec, float]:
        """``worker``'s (spec, jitter factor) for round ``r``; the round is drawn for everyone on first use."""
        if r not in self.rounds:
            self.rounds[r] = [run.draw_spec(w) for w in range(run.k)]
            for old in [q for q in self.rounds if q < r - 2]:  # no worker is more than a round behind
                del self.rounds[old]
        return self.rounds[r][worker]

    def state_dict(self) -> list[Any]:
        return [[r, [[dataclasses.asdict(spec), jitter] for spec, jitter in specs]] for r, specs in sorted(self.rounds.items())]

    def load_state_dict(self, state: list[Any]) -> None:
        self.rounds = {r: [(JobSpec.from_plain(spec), jitter) for spec, jitter in specs] for r, specs in state}
