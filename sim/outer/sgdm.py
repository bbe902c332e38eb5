"""SGD with heavy-ball momentum (torch's ``SGD(momentum=b)``).

    m <- beta m + g,   theta <- theta - lr m
"""
from __future__ import annotations

import torch

from sim.outer.base import OuterUpdate, PseudoGradient
from sim.outer.registry import register


@register("sgdm")
class SGDMomentum(OuterUpdate):
    def __init__(self, lr: float = 0.7, momentum: float = 0.9):
        self.lr, self.momentum = lr, momentum
        self.m: torch.Tensor | None = None

    def step(self, theta: torch.Tensor, grad: PseudoGradient) -> bool:
        if self.m is None:
            self.m = torch.zeros_like(theta)
        self.m.mul_(self.momentum).add_(grad.delta)
        theta.sub_(self.m, alpha=self.lr)
        return True

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {} if self.m is None else {"m": self.m}
