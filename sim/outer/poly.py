"""Polynomial staleness weighting (Xie et al., 2019) and the async soup weight.

    g <- weight * (1 + staleness)^(-exponent) * g

``exponent=0.5`` is the paper's "Poly"; ``exponent=0`` with ``weight<1`` is
its constant "async soup weight" (Table 5).
"""
from __future__ import annotations

import dataclasses

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: validating a scenario does not import torch
    import torch

from sim.outer.base import OuterUpdate, PseudoGradient, StalenessFix
from sim.outer.registry import register


def poly_weight(staleness: int, exponent: float, weight: float = 1.0) -> float:
    return weight * (1.0 + staleness) ** (-exponent)


@register("poly")
class Poly(StalenessFix):
    def __init__(self, base: OuterUpdate, exponent: float = 0.5, weight: float = 1.0):
        super().__init__(base)
        self.exponent, self.weight = exponent, weight

    def step(self, theta: torch.Tensor, grad: PseudoGradient) -> bool:
        scale = poly_weight(grad.staleness, self.exponent, self.weight)
        return self.base.step(theta, dataclasses.replace(grad, delta=grad.delta * scale))
