"""Delay compensation (Zheng et al., 2017) applied to pseudo-gradients.

A stale g(theta_dispatch) is corrected towards g(theta_now) by a first-order
Taylor term whose Hessian is approximated by lambda * g * g (elementwise):

    g <- g + lambda * g * g * (theta_now - theta_dispatch)
"""
from __future__ import annotations

import dataclasses

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: validating a scenario does not import torch
    import torch

from sim.outer.base import OuterUpdate, PseudoGradient, StalenessFix
from sim.outer.registry import register


@register("delay_comp")
class DelayCompensation(StalenessFix):
    def __init__(self, base: OuterUpdate, lam: float = 0.5):
        super().__init__(base)
        self.lam = lam
        self.needs_dispatch_theta = True

    def step(self, theta: torch.Tensor, grad: PseudoGradient) -> bool:
        if grad.theta_at_dispatch is None:
            raise ValueError("delay compensation needs the theta a job was dispatched from")
        g = grad.delta
        corrected = g + self.lam * g * g * (theta - grad.theta_at_dispatch)
        return self.base.step(theta, dataclasses.replace(grad, delta=corrected))
