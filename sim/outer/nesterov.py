"""Nesterov momentum exactly as the paper's Eq. 4 (torch's ``SGD(nesterov=True)``).

    m_{t+1} = beta m_t + g_t
    theta_{t+1} = theta_t - lr (beta^2 m_t + (1 + beta) g_t)
                = theta_t - lr (g_t + beta m_{t+1})

This is *not* heavy-ball momentum, which the authors' public notebook
labels "nesterov" by mistake.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: validating a scenario does not import torch
    import torch

from sim.outer.base import OuterUpdate, PseudoGradient
from sim.outer.registry import register


def nesterov_step(theta: torch.Tensor, m: torch.Tensor, g: torch.Tensor, lr: float, beta: float) -> None:
    """One Eq. 4 step on ``theta`` and momentum ``m``, both in place."""
    m.mul_(beta).add_(g)
    theta.sub_(g + beta * m, alpha=lr)


@register("nesterov")
class Nesterov(OuterUpdate):
    def __init__(self, lr: float = 0.7, momentum: float = 0.9):
        self.lr, self.momentum = lr, momentum

    def step(self, theta: torch.Tensor, grad: PseudoGradient) -> bool:
        nesterov_step(theta, self.buffer("m", theta), grad.delta, self.lr, self.momentum)
        return True
