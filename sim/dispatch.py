"""What a dispatched round trains on: Algorithm 4's ``train()``, minus the training.

For each worker, in worker order: sample a shard (Eq. 2), size the round
(DyLU, Eq. 6), and plan its inner learning rates (Eq. 3). The result is a
:class:`~trainers.base.JobSpec`, everything the trainer needs to compute the
round as a pure function of the model it starts from.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from sim.sampling import LRSchedule, ShardSampler, dylu_steps
from sim.scenario import Scenario
from trainers.base import JobSpec

#: weight of the newest round in online DyLU's speed estimate
ONLINE_DYLU_EMA = 0.5


class Dispatcher:
    """Builds job specs; keeps the shard counts, the per-shard LR counters and online DyLU's speed estimates.

    ``lockstep`` is the 1-worker baseline: one job uses all k devices with k
    times the batch, follows one LR schedule over the whole budget
    (T = t_max / k) and carries its inner optimizer state across rounds.
    """

    def __init__(self, scenario: Scenario, shard_sizes: Sequence[int], batch_size: int, rng: np.random.Generator,
                 step_seconds: Sequence[float], lockstep: bool = False):
        self.sc, self.batch_size, self.lockstep = scenario, batch_size, lockstep
        self.sampler = ShardSampler(shard_sizes, rng)
        k, shards = scenario.workers.k, len(shard_sizes)
        self.multiplier = k if lockstep else 1
        # Eq. 3's T: each shard's share of the budget (the baseline has one global schedule)
        self.lr = LRSchedule(lr_max=scenario.lr.max, lr_min=scenario.lr.min, warmup=scenario.lr.warmup,
                             total=max(scenario.schedule.t_max // (k if lockstep else shards), 1))
        self.lr_counters = [0] * (1 if lockstep else shards)
        self.speeds = [1.0 / s for s in step_seconds]  # v(w) known a priori (Eq. 6)
        self.fastest = max(self.speeds)
        self.speed_estimates: dict[int, float] = {}  # online DyLU: EMA of observed steps/s (footnote 3)

    def steps(self, worker: int) -> int:
        """H, or with DyLU floor(v(w) / max v * H) (Eq. 6; ceil with ``dylu_rounding``), from known or learnt speeds."""
        H, method = self.sc.schedule.H, self.sc.method
        if not method.dylu:
            return H
        if method.dylu_speeds == "online":
            est = self.speed_estimates
            return dylu_steps(est[worker], max(est.values()), H, method.dylu_rounding) if worker in est else H
        return dylu_steps(self.speeds[worker], self.fastest, H, method.dylu_rounding)

    def fleet_steps(self) -> int:
        """Local steps of one round of every worker, as DyLU plans them now (k H without DyLU)."""
        return sum(self.steps(w) for w in range(self.sc.workers.k))

    def spec(self, worker: int) -> JobSpec:
        """The next round of ``worker``: shard (Eq. 2), steps (Eq. 6), inner learning rates (Eq. 3)."""
        shard = self.sampler.sample()
        steps = self.steps(worker)
        counter = 0 if self.lockstep else shard
        lrs = self.lr.plan(self.lr_counters[counter], steps)
        self.lr_counters[counter] += steps
        offset = self.sampler.dispatched[shard]
        self.sampler.record(shard, steps * self.batch_size * self.multiplier)
        return JobSpec(worker=worker, shard=shard, lrs=lrs, data_offset=offset, batch_multiplier=self.multiplier,
                       threads=self.sc.compute.threads, keep_optimizer_state=self.lockstep)

    def observe(self, worker: int, steps: int, seconds: float) -> None:
        """A round of ``steps`` took ``seconds`` from dispatch to arrival: update the speed estimate."""
        observed = steps / seconds
        old = self.speed_estimates.get(worker)
        self.speed_estimates[worker] = observed if old is None else ONLINE_DYLU_EMA * observed + (1 - ONLINE_DYLU_EMA) * old

    def state_dict(self) -> dict[str, Any]:
        return {"dispatched": list(self.sampler.dispatched), "rng": self.sampler.rng.bit_generator.state,
                "lr_counters": list(self.lr_counters), "speed_estimates": dict(self.speed_estimates)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for shard, n in enumerate(state["dispatched"]):
            self.sampler.record(shard, n)
        self.sampler.rng.bit_generator.state = state["rng"]
        self.lr_counters = list(state["lr_counters"])
        self.speed_estimates = dict(state["speed_estimates"])


def segment(spec: JobSpec, start: int, stop: int, batch_size: int, keep_state: bool) -> JobSpec:
    """Steps ``start .. stop`` of a round drawn by :meth:`Dispatcher.spec`: the same shard, data and learning rates.

    A schedule that cuts a round into jobs (Streaming DiLoCo syncs fragments
    mid-round) trains exactly what the whole round would have, in pieces.
    """
    offset = spec.data_offset + start * batch_size * spec.batch_multiplier
    return dataclasses.replace(spec, lrs=spec.lrs[start:stop], data_offset=offset, keep_optimizer_state=keep_state)
