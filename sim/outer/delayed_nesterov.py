"""Delayed Nesterov (the paper's Algorithm 3).

Pseudo-gradients are applied with plain gradient descent (g/N, plus a
fraction c of the old momentum) on every sync, and summed into a buffer;
every N-th sync the momentum absorbs the buffer's average. With N = k,
c = 0 and k simultaneous arrivals this equals one Nesterov step on the
average (the paper's footnote 5), which is what makes it match DiLoCo.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: validating a scenario does not import torch
    import torch

from sim.outer.base import OuterUpdate, PseudoGradient
from sim.outer.registry import register


@register("delayed_nesterov")
class DelayedNesterov(OuterUpdate):
    def __init__(self, lr: float = 0.7, momentum: float = 0.9, N: int = 4, c: float = 0.0):
        if N < 1:
            raise ValueError(f"N must be >= 1, got {N}")
        if not 0.0 <= c <= 1.0 / N:
            raise ValueError(f"c must lie in [0, 1/N] = [0, {1.0 / N:g}] (Algorithm 3), got {c}")
        self.lr, self.momentum, self.N, self.c = lr, momentum, N, c
        self.t = 0

    def step(self, theta: torch.Tensor, grad: PseudoGradient) -> bool:
        m, summed = self.buffer("m", theta), self.buffer("delta_sum", theta)
        g, beta, N, c = grad.delta, self.momentum, self.N, self.c
        summed.add_(g)
        if (self.t + 1) % N == 0:
            m.mul_(beta).add_(summed, alpha=1.0 / N)
            theta.sub_((1 - c * N + c) * beta * m + g / N, alpha=self.lr)
            summed.zero_()
        else:
            theta.sub_(c * beta * m + g / N, alpha=self.lr)
        self.t += 1
        return True
