"""Pseudo-gradients weighted by the work behind them (issue 23's remedy for DyLU's short rounds).

With DyLU (Eq. 6) a slow worker's round has fewer local steps, and Delayed
Nesterov (Alg. 3) applies every pseudo-gradient alike, ``g / N``: on the
micro LM an 8-step round moves the model as much as a 50-step one, its
pseudo-gradient larger per step and less aligned with the mean direction
(reports/lm_micro_plateau). This fix scales each arrival by its share of
the work::

    reference: H       g <- (s / H) g                     s: the round's local steps, H: a full round's
    reference: fleet   g <- (k s / sum_w s_w) g           sum_w s_w: one round of every worker (DyLU's plan)

``fleet`` keeps the weights' mean at one over a round of every worker, so
the outer learning rate keeps its scale; ``H`` shrinks it by the fleet's
mean share. With equal step counts (no DyLU, or a homogeneous fleet) both
weights are exactly 1 and the run is bit for bit the unweighted one
(tests/test_outer.py). It weighs arrivals one at a time, so it is for the
asynchronous schedule; a synchronous round already averages its workers.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # annotations only: validating a scenario does not import torch
    import torch

from sim.outer.base import OuterUpdate, PseudoGradient, StalenessFix
from sim.outer.registry import register


def work_weight(steps: int, round_steps: int, fleet_steps: int, k: int, reference: str) -> float:
    """The weight of a round of ``steps`` local steps: ``steps / round_steps`` or ``k steps / fleet_steps``."""
    return steps / round_steps if reference == "H" else (k * steps) / fleet_steps


@register("work")
class Work(StalenessFix):
    def __init__(self, base: OuterUpdate, reference: Literal["H", "fleet"] = "fleet"):
        if reference not in ("H", "fleet"):
            raise ValueError(f"reference must be 'H' or 'fleet', got {reference!r}")
        super().__init__(base)
        self.reference = reference
        self.needs_work = True

    def step(self, theta: torch.Tensor, grad: PseudoGradient) -> bool:
        w = grad.work
        if w is None:
            raise ValueError("the work fix needs each pseudo-gradient's step counts (asynchronous schedules give them)")
        scale = work_weight(w.steps, w.round_steps, w.fleet_steps, w.workers, self.reference)
        return self.base.step(theta, dataclasses.replace(grad, delta=grad.delta * scale))
