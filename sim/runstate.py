"""A run's explicit state: the scalars a checkpoint stores, how checkpoints are taken, and what a run returns.

Everything else a run needs to continue is owned by a component with its own
``state_dict`` (the outer update, the job table, the dispatcher, the planner,
the schedule, the recorder); :meth:`sim.engine.Simulation.state_dict`
gathers them. All of it is tensors and plain data, so a checkpoint loads with
``torch.load(weights_only=True)`` and never unpickles (so never runs) code.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from sim.simtime import ZERO, Time

if TYPE_CHECKING:  # annotations only
    import torch

    from sim.records import Recorder


@dataclass
class RunState:
    """The run's scalars; a checkpoint stores them all (:meth:`plain`)."""

    now: Time = ZERO  # simulated time of the current decision (a planned time, never SimPy's float clock)
    version: int = 0  # server updates applied (t)
    t_local: int = 0  # synced local steps (Algorithm 2's t_local)
    next_job_id: int = 0
    next_eval: int = 0  # evaluate when t_local reaches this
    next_checkpoint: int = 0  # save when the version reaches this
    loss_limit: float = math.inf  # divergence_factor x the initial eval loss
    last_worker: int = -1  # whose pseudo-gradient was synced last
    losses_in_a_row: int = 0
    uplink_free: Time = ZERO  # the server's link finished receiving the last collected upload
    diverged: str | None = None
    stalled: str | None = None  # churn loses every job: the budget can never be reached

    def plain(self) -> dict[str, Any]:
        return {key: value.plain() if isinstance(value, Time) else value for key, value in vars(self).items()}

    @classmethod
    def from_plain(cls, data: dict[str, Any]) -> RunState:
        times = {f.name for f in dataclasses.fields(cls) if isinstance(f.default, Time)}
        return cls(**{key: Time.from_plain(value) if key in times else value for key, value in data.items()})


@dataclass(frozen=True)
class Outcome:
    """What a finished run hands back."""

    recorder: Recorder  # events and metric curves
    theta: torch.Tensor  # the final server model
    simulated_seconds: float
    diverged: str | None
    stalled: str | None
    resumed_from: int | None  # the server update a resumed run continued from

    @property
    def status(self) -> str:
        return "diverged" if self.diverged else "stalled" if self.stalled else "finished"


@dataclass(frozen=True)
class Checkpoints:
    """Save the run's state (:meth:`Simulation.state_dict`) every ``every`` server updates (0: only when stopped)."""

    save: Callable[[dict[str, Any]], None]
    every: int = 0
