"""The interface every outer (server-side) update implements.

An outer update receives pseudo-gradients one at a time, in the order the
server syncs them, and changes the server parameters in place. Synchronous
DiLoCo is the special case of a single call with the workers' average.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: validating a scenario does not import torch
    import torch


#: Bounds every outer update's (and fix's) arguments obey by name, checked when a
#: scenario is validated: (low, high, low is allowed, high is allowed). A negative
#: learning rate or a momentum of 5 is a typo, never an experiment.
ARGUMENT_BOUNDS: dict[str, tuple[float, float, bool, bool]] = {
    "lr": (0.0, math.inf, False, False),
    "momentum": (0.0, 1.0, True, False),
    "beta1": (0.0, 1.0, True, False),
    "beta2": (0.0, 1.0, True, False),
    "eps": (0.0, math.inf, False, False),
    "weight": (0.0, math.inf, False, False),
    "exponent": (0.0, math.inf, True, False),
    "lam": (0.0, math.inf, True, False),
    "threshold": (0.0, math.inf, True, False),
}


def check_argument(name: str, value: object) -> str | None:
    """Why ``value`` is out of bounds for an argument called ``name`` (None if fine or unknown)."""
    if name not in ARGUMENT_BOUNDS or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    low, high, low_ok, high_ok = ARGUMENT_BOUNDS[name]
    inside = (value > low or (low_ok and value == low)) and (value < high or (high_ok and value == high))
    if inside:
        return None
    interval = f"{'[' if low_ok else '('}{low:g}, {high:g}{']' if high_ok else ')'}".replace("inf", "infinity")
    return f"must lie in {interval}, got {value!r}"


@dataclass(frozen=True)
class Work:
    """The local steps behind a pseudo-gradient, and what they compare with (sim/outer/work.py)."""

    steps: int  # the round's local steps (DyLU: fewer on a slower worker)
    round_steps: int  # a full round's, H
    fleet_steps: int  # one round of every worker, as planned now
    workers: int  # k


@dataclass(frozen=True)
class PseudoGradient:
    """One worker's contribution: delta = theta_at_dispatch - theta_worker."""

    delta: torch.Tensor
    staleness: int = 0  # server updates applied since the job was dispatched
    theta_at_dispatch: torch.Tensor | None = None  # only kept when needed
    work: Work | None = None  # one arrival's step counts (the asynchronous schedule gives them)


class OuterUpdate(ABC):
    """Server-side optimiser over a flat parameter vector."""

    #: set to True by updates that need the model a job started from
    needs_dispatch_theta: bool = False
    #: set to True by updates that weigh a pseudo-gradient by its round's steps (PseudoGradient.work)
    needs_work: bool = False
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
            self.state[name] = like.new_zeros(like.shape)  # zeros_like without importing torch
        return self.state[name]

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Named optimiser state, for checkpoints and memory accounting."""
        return dict(getattr(self, "state", {}))

    def state_dict(self) -> dict[str, Any]:
        """Every attribute as plain data (tensors, numbers, nested dicts), for checkpoints.

        Plain data loads with ``torch.load(weights_only=True)``: a checkpoint
        never unpickles an object, so a checkpoint someone else made cannot
        run code. A fix's ``base`` update is nested as its own state dict.
        """
        return {key: value.state_dict() if isinstance(value, OuterUpdate) else value for key, value in vars(self).items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` into an update built from the same scenario."""
        for key, value in state.items():
            current = getattr(self, key, None)
            if isinstance(current, OuterUpdate):
                current.load_state_dict(value)
            else:
                setattr(self, key, value)


class StalenessFix(OuterUpdate):
    """An outer update that transforms a pseudo-gradient, then defers to ``base``."""

    def __init__(self, base: OuterUpdate):
        self.base = base
        self.needs_dispatch_theta = base.needs_dispatch_theta
        self.needs_work = base.needs_work

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return self.base.state_tensors()
