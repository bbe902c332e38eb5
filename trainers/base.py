"""The one interface between the simulator and the payloads it drives.

The simulator decides *when* a worker trains, on which shard, for how many
steps and with which learning rates; a trainer decides *what* that training
produces. A job is a pure function of what is known at dispatch time
(``theta`` and a :class:`JobSpec`), so it can be computed whenever and
wherever is convenient and the results stay bit-for-bit identical.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol, runtime_checkable

import numpy as np

from sim.errors import FieldError, UserError  # noqa: F401  (re-exported: trainers raise them)

if TYPE_CHECKING:  # annotations only: validating a scenario imports this module without torch
    import torch


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

    @classmethod
    def from_plain(cls, plain: dict[str, Any]) -> "JobSpec":
        """``dataclasses.asdict(spec)`` back as a spec (a checkpoint keeps the learning rates as a list)."""
        return cls(**{**plain, "lrs": tuple(plain["lrs"])})


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
    """A payload the simulator can drive. Parameters travel as one flat vector.

    These five methods are all the simulator calls. Two more things are
    optional and used when present: a class attribute ``Config`` (a pydantic
    model that validates the scenario's ``trainer.config``, see
    :class:`TrainerClass`) and ``flops_per_step()`` (:class:`ReportsFlops`),
    needed only by devices rated in FLOP/s.
    """

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


#: the methods every trainer implements (checked when a scenario names a trainer)
TRAINER_METHODS = ("init_params", "shard_sizes", "batch_size", "local_train", "evaluate")


@runtime_checkable
class ReportsFlops(Protocol):
    """Optional: a trainer whose step cost is known, so FLOP-rated devices can be timed."""

    def flops_per_step(self) -> float:
        """Floating-point operations of one inner step of one worker (~6 x parameters x tokens)."""
        ...


@runtime_checkable
class ReportsLayers(Protocol):
    """Optional: a trainer whose flat parameter vector is a sequence of layers (Streaming DiLoCo's fragments)."""

    def layer_sizes(self) -> list[int]:
        """Values of each layer, in the flat vector's order; they add up to the number of parameters."""
        ...


@runtime_checkable
class Compiles(Protocol):
    """Optional: a trainer that can train with its model compiled (``compute.compile``)."""

    def compile_model(self) -> None:
        """Train every later job through the compiled model; pretraining and evaluation stay eager."""
        ...


class TrainerClass(Protocol):
    """What a scenario's ``trainer.name`` names: a class built as ``cls(config, *, seed=..., num_shards=...)``.

    ``seed`` is the trainer's own stream of the scenario seed; ``num_shards``
    (the number of workers, one data shard each) is optional: a constructor
    that does not declare it is built without it. ``Config``, if present,
    validates ``trainer.config`` (its defaults become part of the run's identity).
    """

    Config: ClassVar[type | None]

    def __call__(self, config: dict[str, Any], *, seed: int, num_shards: int = ...) -> Trainer: ...


def new_trainer(cls: Callable[..., Trainer], config: dict[str, Any], *, seed: int, num_shards: int) -> Trainer:
    """Build a trainer the way :class:`TrainerClass` says: ``num_shards`` only if the constructor takes it."""
    optional = {"num_shards": num_shards} if "num_shards" in inspect.signature(cls).parameters else {}
    return cls(config, seed=seed, **optional)


class JobFuture(Protocol):
    """A job's result, computed now or later; the engine asks for it at the job's simulated completion."""

    def result(self) -> Any: ...

    def cancel(self) -> Any:
        """The result will never be needed (the run ended first): skip the work if it has not started."""
        ...


class Executor(Protocol):
    """Where jobs are computed (sim/executors.py); results never depend on which one, only speed does."""

    name: str

    def submit(self, theta: torch.Tensor, spec: JobSpec, state: Any = None, priority: float = 0.0) -> JobFuture:
        """Start (or queue) one job; ``priority`` is its planned completion: lower is needed sooner."""
        ...

    def close(self) -> None: ...


def seeded_rng(seed: int, *purpose: int) -> np.random.Generator:
    """An independent numpy stream for one purpose (data order, init, shard draws...) of one seed.

    Every stream in the project comes from here, keyed by
    ``SeedSequence([seed, *purpose])``, so adding a purpose never shifts
    the draws of another.
    """
    return np.random.default_rng(np.random.SeedSequence([seed, *purpose]))


def seeded_int(seed: int, *purpose: int) -> int:
    """A 63-bit integer seed for one purpose (``torch.Generator().manual_seed``), from the same key."""
    return int(np.random.SeedSequence([seed, *purpose]).generate_state(1, dtype=np.uint64)[0] >> 1)


def flatten_params(module: torch.nn.Module) -> torch.Tensor:
    """All parameters of ``module`` concatenated into one new flat tensor."""
    import torch

    return torch.cat([p.detach().reshape(-1) for p in module.parameters()]).clone()


def load_flat_params(module: torch.nn.Module, flat: torch.Tensor) -> None:
    """Copy ``flat`` into ``module``'s parameters.

    Unlike ``torch.nn.utils.vector_to_parameters`` this copies, so the module
    never aliases (and later mutates) the caller's vector.
    """
    import torch

    offset = 0
    with torch.no_grad():
        for p in module.parameters():
            n = p.numel()
            p.copy_(flat[offset : offset + n].view_as(p))
            offset += n
    if offset != flat.numel():
        raise ValueError(f"flat vector has {flat.numel()} values, model needs {offset}")


def carry_inner_state(opt: torch.optim.Optimizer, state: dict[str, Any] | None) -> None:
    """Continue ``opt`` from a job's carried inner state (None: a fresh AdamW, as the paper resets it each round).

    ``Optimizer.load_state_dict`` copies only the dict, not the moment
    tensors, so stepping would advance the caller's tensors in place: a
    schedule's stored state, or a checkpoint being written. A deep copy keeps
    a job a pure function of its inputs.
    """
    if state is not None:
        import copy

        opt.load_state_dict(copy.deepcopy(state))


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
