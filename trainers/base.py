"""The one interface between the simulator and the payloads it drives.

The simulator decides *when* a worker trains, on which shard, for how many
steps and with which learning rates; a trainer decides *what* that training
produces. A job is a pure function of what is known at dispatch time
(``theta`` and a :class:`JobSpec`), so it can be computed whenever and
wherever is convenient and the results stay bit-for-bit identical.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

import torch

from sim.errors import UserError  # noqa: F401  (re-exported: trainers raise it)


@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs to run one local round (Algorithm 4)."""

    worker: int
    shard: int
    lrs: tuple[float, ...]  # one inner learning rate per local step (Eq. 3)
    data_offset: int  # examples of this shard dispatched before this job
    batch_multiplier: int = 1  # k for the 1-worker k x batch baseline
    threads: int = 1  # torch threads; part of the run's identity
    keep_optimizer_state: bool = False  # return the inner optimizer state (finetune baseline)

    @property
    def steps(self) -> int:
        return len(self.lrs)


@dataclass
class JobResult:
    """What a local round sends back: the pseudo-gradient and a summary.

    ``delta`` follows the paper's sign: theta_at_dispatch - theta_after_round,
    so an outer SGD step ``theta -= lr * delta`` moves towards the worker.
    ``optimizer_state`` is only filled when the caller asked to carry the
    inner optimizer across rounds (the single-worker finetune baseline).
    """

    delta: torch.Tensor
    train_loss: float
    optimizer_state: Any = None
    extra: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class Trainer(Protocol):
    """A payload the simulator can drive. Parameters travel as one flat vector."""

    #: name of the metric that is lower-is-better and shown first ("loss")
    def init_params(self) -> torch.Tensor:
        """Initial (possibly pretrained) server parameters as a flat vector."""
        ...

    def shard_sizes(self) -> list[int]:
        """Number of examples in each data shard (|D_i| in Eq. 2)."""
        ...

    def batch_size(self) -> int:
        """Examples per inner step for one worker."""
        ...

    def local_train(
        self, theta: torch.Tensor, job: JobSpec, optimizer_state: Any = None
    ) -> JobResult:
        """Run ``job.steps`` inner steps from ``theta``; must not modify ``theta``."""
        ...

    def evaluate(self, theta: torch.Tensor) -> dict[str, float]:
        """Held-out metrics of the server model; must include ``loss``."""
        ...


def flatten_params(module: torch.nn.Module) -> torch.Tensor:
    """All parameters of ``module`` concatenated into one new flat tensor."""
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()]).clone()


def load_flat_params(module: torch.nn.Module, flat: torch.Tensor) -> None:
    """Copy ``flat`` into ``module``'s parameters.

    Unlike ``torch.nn.utils.vector_to_parameters`` this copies, so the module
    never aliases (and later mutates) the caller's vector.
    """
    offset = 0
    with torch.no_grad():
        for p in module.parameters():
            n = p.numel()
            p.copy_(flat[offset : offset + n].view_as(p))
            offset += n
    if offset != flat.numel():
        raise ValueError(f"flat vector has {flat.numel()} values, model needs {offset}")


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def epoch_order(n: int, offset: int, count: int, permutation: Callable[[int], np.ndarray]) -> np.ndarray:
    """Positions ``offset .. offset+count`` in a sequence of epochs over ``n`` items.

    Epoch ``e`` visits the items in ``permutation(e)`` order, so the items a
    job sees depend only on where it starts (``offset``) and the permutations.
    """
    out = np.empty(count, dtype=np.int64)
    filled = 0
    while filled < count:
        epoch, start = divmod(offset + filled, n)
        take = min(n - start, count - filled)
        out[filled : filled + take] = permutation(epoch)[start : start + take]
        filled += take
    return out
