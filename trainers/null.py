"""A trainer that does no training: for scheduling studies, tests and benchmarks.

Its pseudo-gradient is a deterministic function of the job (shard, steps and
learning rates), so outer updates still act on something, but a job costs
microseconds. Use it to study wall-clock and staleness of a fleet alone, or
to measure the simulator's own overhead.
"""
from __future__ import annotations

from typing import Any

import torch

from trainers.base import JobResult, JobSpec
from trainers.configs import NullConfig


class NullTrainer:
    Config = NullConfig

    def __init__(self, config: NullConfig | dict[str, Any] | None = None, *, seed: int = 0, num_shards: int = 4):
        self.config = config if isinstance(config, NullConfig) else NullConfig(**(config or {}))
        self.num_shards = num_shards
        self.dtype = getattr(torch, self.config.dtype)

    def init_params(self) -> torch.Tensor:
        return torch.ones(self.config.dim, dtype=self.dtype)

    def shard_sizes(self) -> list[int]:
        return [self.config.shard_size] * self.num_shards

    def batch_size(self) -> int:
        return self.config.batch_size

    def flops_per_step(self) -> float:
        return 6.0 * self.config.dim * self.config.batch_size

    def local_train(self, theta: torch.Tensor, job: JobSpec, optimizer_state: Any = None) -> JobResult:
        # A step of size lr towards zero per local step: delta grows with work done.
        scale = min(sum(job.lrs) / (1.0 + job.shard), 1.0)
        return JobResult(delta=theta * scale, train_loss=scale, optimizer_state=optimizer_state)

    def evaluate(self, theta: torch.Tensor) -> dict[str, float]:
        return {"loss": float(theta.abs().sum())}
