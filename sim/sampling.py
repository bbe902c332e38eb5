"""The paper's Section 3 and 5 rules: which shard, which learning rates, how many steps."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


def shard_weights(shard_sizes: Sequence[int], dispatched: Sequence[int]) -> np.ndarray:
    """Unnormalised Eq. 2 weights, max(|D_i|/sum|D| - n_i/sum n, 0).

    Computed in exact integer arithmetic (both fractions over a common
    denominator), so shards exactly at their target share get weight 0, not
    a rounding error's worth. When every weight is 0 (at the start, or all
    shards exactly balanced) the weights fall back to the shard sizes.
    """
    total_size, total_n = sum(shard_sizes), sum(dispatched)
    w = np.array([max(s * total_n - n * total_size, 0) for s, n in zip(shard_sizes, dispatched)], dtype=float)
    if not w.any():
        w = np.asarray(shard_sizes, dtype=float)
    return w


def is_under_sampled(shard: int, shard_sizes: Sequence[int], dispatched: Sequence[int]) -> bool:
    """n_i / sum n <= |D_i| / sum |D| (vacuously true before anything is dispatched)."""
    total_n = sum(dispatched)
    return total_n == 0 or dispatched[shard] * sum(shard_sizes) <= shard_sizes[shard] * total_n


class ShardSampler:
    """Samples the next shard by Eq. 2 from its own RNG stream.

    ``dispatched[i]`` is n_i: examples *dispatched* to shard i so far,
    in-flight work included, so two idle workers are not both sent to the
    same under-sampled shard.

    The draw is numpy's ``Generator.choice(k, p=w / w.sum())`` written out
    (normalise, cumulative sum, one uniform, right-sided search): the same
    bits, without choice's argument checks, which cost more than the rest.
    """

    def __init__(self, shard_sizes: Sequence[int], rng: np.random.Generator):
        self.shard_sizes = list(shard_sizes)
        self.dispatched = [0] * len(shard_sizes)
        self.rng = rng
        self._sizes = np.asarray(self.shard_sizes, dtype=np.int64)
        self._total_size = int(self._sizes.sum())
        self._n = np.zeros(len(shard_sizes), dtype=np.int64)

    def sample(self) -> int:
        total_n = int(self._n.sum())
        w = np.maximum(self._sizes * total_n - self._n * self._total_size, 0).astype(float)
        if not w.any():
            w = self._sizes.astype(float)
        cdf = (w / w.sum()).cumsum()
        cdf /= cdf[-1]
        return int(cdf.searchsorted(self.rng.random(), side="right"))

    def record(self, shard: int, examples: int) -> None:
        self.dispatched[shard] += examples
        self._n[shard] += examples


@dataclass(frozen=True)
class LRSchedule:
    """Eq. 3: linear warmup, then cosine decay from lr_max to lr_min over T steps.

    The cosine ratio is clipped to [0, 1] and T - warmup is kept positive, so
    a shard that overruns T keeps learning at lr_min > 0 (Section 3).
    """

    lr_max: float
    lr_min: float
    warmup: int
    total: int  # T, the target number of steps for one shard

    def __call__(self, t: int) -> float:
        if t < self.warmup:
            return t * self.lr_max / self.warmup
        span = max(self.total - self.warmup, 1)
        ratio = min(max((t - self.warmup) / span, 0.0), 1.0)
        return self.lr_min + 0.5 * (self.lr_max - self.lr_min) * (1 + math.cos(ratio * math.pi))  # plan() inlines this

    def plan(self, start: int, steps: int) -> tuple[float, ...]:
        """Learning rates of ``steps`` consecutive steps from counter ``start`` (Eq. 3, inlined)."""
        lr_max, lr_min, warmup = self.lr_max, self.lr_min, self.warmup
        span = max(self.total - warmup, 1)
        half, cos, pi = 0.5 * (lr_max - lr_min), math.cos, math.pi
        return tuple(
            t * lr_max / warmup if t < warmup else lr_min + half * (1 + cos(min(max((t - warmup) / span, 0.0), 1.0) * pi))
            for t in range(start, start + steps)
        )


def dylu_steps(speed: float, max_speed: float, H: int, rounding: str = "floor") -> int:
    """Eq. 6: floor(v(w) / max v * H), clamped to at least one step; ``rounding="ceil"`` rounds up instead.

    The paper's floor reaches 0 for a device more than H times slower than
    the fastest; such a worker would never contribute, so we give it 1 step.
    The HALoS authors' simulator rounds up, ``max(1, ceil(H * v / max v))``
    (utnslab/halos, src/halos/simulation/common.py), for HALoS and for their
    flat baselines alike (``method.dylu_rounding``).
    """
    ratio = speed / max_speed * H
    return max(1, math.ceil(ratio) if rounding == "ceil" else math.floor(ratio))
