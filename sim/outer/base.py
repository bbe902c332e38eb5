"""The interface every outer (server-side) update implements.

An outer update receives pseudo-gradients one at a time, in the order the
server syncs them, and changes the server parameters in place. Synchronous
DiLoCo is the special case of a single call with the workers' average.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PseudoGradient:
    """One worker's contribution: delta = theta_at_dispatch - theta_worker."""

    delta: torch.Tensor
    staleness: int = 0  # server updates applied since the job was dispatched
    theta_at_dispatch: torch.Tensor | None = None  # only kept when needed


class OuterUpdate(ABC):
    """Server-side optimiser over a flat parameter vector."""

    #: set to True by updates that need the model a job started from
    needs_dispatch_theta: bool = False
    #: named state tensors (momentum, buffers), created lazily by :meth:`buffer`
    state: dict[str, torch.Tensor]

    @abstractmethod
    def step(self, theta: torch.Tensor, grad: PseudoGradient) -> bool:
        """Apply one pseudo-gradient to ``theta`` in place.

        Returns False when the update was deliberately dropped (e.g. too
        stale), so the engine can record it.
        """

    def buffer(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """The state tensor ``name``, zero-initialised like ``theta`` on first use."""
        if not hasattr(self, "state"):
            self.state = {}
        if name not in self.state:
            self.state[name] = torch.zeros_like(like)
        return self.state[name]

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Named optimiser state, for checkpoints and memory accounting."""
        return dict(getattr(self, "state", {}))


class StalenessFix(OuterUpdate):
    """An outer update that transforms a pseudo-gradient, then defers to ``base``."""

    def __init__(self, base: OuterUpdate):
        self.base = base
        self.needs_dispatch_theta = base.needs_dispatch_theta

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return self.base.state_tensors()
