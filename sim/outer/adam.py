"""Adam on pseudo-gradients (bias-corrected, no weight decay), as torch's Adam."""
from __future__ import annotations

import math

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: validating a scenario does not import torch
    import torch

from sim.outer.base import OuterUpdate, PseudoGradient
from sim.outer.registry import register


@register("adam")
class Adam(OuterUpdate):
    def __init__(self, lr: float = 0.01, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.t = 0

    def step(self, theta: torch.Tensor, grad: PseudoGradient) -> bool:
        m, v, g = self.buffer("m", theta), self.buffer("v", theta), grad.delta
        self.t += 1
        m.mul_(self.beta1).add_(g, alpha=1 - self.beta1)
        v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
        m_hat_scale = 1 / (1 - self.beta1**self.t)
        v_hat_sqrt_scale = 1 / math.sqrt(1 - self.beta2**self.t)
        denom = (v.sqrt() * v_hat_sqrt_scale).add_(self.eps)
        theta.addcdiv_(m, denom, value=-self.lr * m_hat_scale)
        return True
