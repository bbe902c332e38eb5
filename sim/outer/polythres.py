"""PolyThres: Poly weighting, and pseudo-gradients staler than a threshold are dropped."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: validating a scenario does not import torch
    import torch

from sim.outer.base import OuterUpdate, PseudoGradient
from sim.outer.poly import Poly
from sim.outer.registry import register


@register("polythres")
class PolyThres(Poly):
    def __init__(self, base: OuterUpdate, exponent: float = 0.5, weight: float = 1.0, threshold: int = 10):
        super().__init__(base, exponent=exponent, weight=weight)
        self.threshold = threshold

    def step(self, theta: torch.Tensor, grad: PseudoGradient) -> bool:
        if grad.staleness > self.threshold:
            return False
        return super().step(theta, grad)
