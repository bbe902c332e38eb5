"""SGD with heavy-ball momentum (torch's ``SGD(momentum=b)``).

    m <- beta m + g,   theta <- theta - lr m
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: validating a scenario does not import torch
    import torch

from sim.outer.base import OuterUpdate, PseudoGradient
from sim.outer.registry import register


@register("sgdm")
class SGDMomentum(OuterUpdate):
    def __init__(self, lr: float = 0.7, momentum: float = 0.9):
        self.lr, self.momentum = lr, momentum

    def step(self, theta: torch.Tensor, grad: PseudoGradient) -> bool:
        m = self.buffer("m", theta)
        m.mul_(self.momentum).add_(grad.delta)
        theta.sub_(m, alpha=self.lr)
        return True
