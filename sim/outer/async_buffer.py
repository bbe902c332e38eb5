"""Async buffer, a FedBuff-like outer update (Nguyen et al., 2022).

Pseudo-gradients accumulate first-in first-out; every N arrivals their
average is applied with one Nesterov step (Eq. 4). Between those steps the
server model does not move, unlike Delayed Nesterov.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: validating a scenario does not import torch
    import torch

from sim.outer.base import OuterUpdate, PseudoGradient
from sim.outer.nesterov import nesterov_step
from sim.outer.registry import register


@register("async_buffer")
class AsyncBuffer(OuterUpdate):
    def __init__(self, lr: float = 0.7, momentum: float = 0.9, N: int = 4):
        if N < 1:
            raise ValueError(f"N must be >= 1, got {N}")
        self.lr, self.momentum, self.N = lr, momentum, N
        self.count = 0

    def step(self, theta: torch.Tensor, grad: PseudoGradient) -> bool:
        summed = self.buffer("delta_sum", theta)
        summed.add_(grad.delta)
        self.count += 1
        if self.count == self.N:
            nesterov_step(theta, self.buffer("m", theta), summed / self.N, self.lr, self.momentum)
            summed.zero_()
            self.count = 0
        return True
