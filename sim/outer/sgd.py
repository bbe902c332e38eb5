"""Plain SGD on pseudo-gradients: theta <- theta - lr * g (no momentum)."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: validating a scenario does not import torch
    import torch

from sim.outer.base import OuterUpdate, PseudoGradient
from sim.outer.registry import register


@register("sgd")
class SGD(OuterUpdate):
    def __init__(self, lr: float = 0.7):
        self.lr = lr

    def step(self, theta: torch.Tensor, grad: PseudoGradient) -> bool:
        theta.sub_(grad.delta, alpha=self.lr)
        return True
